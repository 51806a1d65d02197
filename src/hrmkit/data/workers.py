"""Worker processes of a dataset build: how many, and the pool they run in."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.pool
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator


def num_workers(requested: int | None) -> int:
    """`requested` when given (at least 1), else the cores this process may run on (its CPU affinity)."""
    if requested:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


TERMINATE_WAIT_S = 10.0


def _terminate_within(pool: mp.pool.Pool, seconds: float) -> None:
    """`pool.terminate()`, given `seconds`; past them the workers still running are killed (SIGKILL) and the
    pool's own threads, blocked on a dead worker's lock, are left behind (daemon threads: the process is on its
    way out after an interrupt). Every pool worker of this process is killed then, not only this pool's."""
    stopper = threading.Thread(target=pool.terminate, name="pool-terminate", daemon=True)
    stopper.start()
    stopper.join(seconds)
    if stopper.is_alive():
        for child in mp.active_children():
            if "PoolWorker" in child.name:
                child.kill()


def _worker_start() -> None:
    # A forked worker inherits its parent's Python SIGTERM handler (hrm's, or a training run's stop flag that only
    # notes the signal); `Pool.terminate` then could not stop a worker waiting for a task, and leaving the pool
    # hung for ever. Workers die of SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def worker_pool(workers: int) -> Iterator[mp.pool.Pool]:
    """A `multiprocessing.Pool` of `workers` processes (forked where the platform can, so that they share the
    parent's arrays), whose workers die of SIGTERM whatever handler the parent installed.

    Leaving the block normally, by an error or by GeneratorExit (a generator holding the pool closed early)
    lets the tasks in flight finish and joins the workers. Only an interrupt (KeyboardInterrupt, hrm's
    SIGTERM) terminates them: `Pool.terminate` kills workers mid-task, and a worker killed while it holds the
    result queue's lock leaves the pool's task thread waiting on that lock for ever (seen: a demo build in
    the test suite hung CI for 90 minutes); so an interrupted build waits at most `TERMINATE_WAIT_S` for it
    and then kills what is left of the pool (tests/test_data_workers.py)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(workers, initializer=_worker_start)
    interrupted = False
    try:
        yield pool
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if interrupted:
            _terminate_within(pool, TERMINATE_WAIT_S)
        else:
            pool.close()
            pool.join()
