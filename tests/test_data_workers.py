"""The build pool's exits: tasks in flight finish unless the user interrupts (hrmkit/data/workers.py)."""

import multiprocessing as mp
import time

import pytest

from hrmkit.data.workers import _terminate_within, worker_pool


def _slow_touch(path: str) -> str:
    time.sleep(0.3)
    with open(path, "w") as f:
        f.write("done")
    return path


def _first_result(paths, workers=2):
    """A generator holding the pool, closed by its consumer after the first result (as generate_split does)."""
    with worker_pool(workers) as pool:
        yield from pool.imap(_slow_touch, paths)


def test_closing_a_generator_early_lets_the_tasks_in_flight_finish(tmp_path):
    # Pool.terminate here killed workers mid-task; one killed while writing its result left the pool's task
    # thread blocked on the result queue's lock for ever (the CI hang). Finishing them cannot hang.
    paths = [str(tmp_path / f"t{i}") for i in range(6)]
    stream = _first_result(paths)
    assert next(stream) == paths[0]
    stream.close()
    assert all((tmp_path / f"t{i}").read_text() == "done" for i in range(6))


@pytest.mark.parametrize("error, all_ran", [(ValueError, True), (KeyboardInterrupt, False)])
def test_an_error_lets_the_tasks_in_flight_finish_and_an_interrupt_terminates_them(tmp_path, error, all_ran):
    paths = [str(tmp_path / f"t{i}") for i in range(20)]
    with pytest.raises(error):
        with worker_pool(2) as pool:
            it = pool.imap(_slow_touch, paths)
            next(it)
            raise error("a bad row found by the parent, or Ctrl-C")
    assert all((tmp_path / f"t{i}").exists() for i in range(20)) is all_ran


def test_a_terminate_that_blocks_is_given_up_and_the_workers_killed():
    class StuckPool:  # Pool.terminate waiting on the lock of a worker it killed
        def terminate(self):
            time.sleep(3600)

    worker = mp.get_context("fork").Process(target=time.sleep, args=(3600,), name="ForkPoolWorker-stuck")
    worker.start()
    t0 = time.monotonic()
    _terminate_within(StuckPool(), 0.5)
    worker.join(30)
    assert worker.exitcode == -9 and time.monotonic() - t0 < 30
