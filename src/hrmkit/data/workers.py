"""Worker processes of a dataset build: how many, and the pool they run in."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal


def num_workers(requested: int | None) -> int:
    """`requested` when given (at least 1), else the cores this process may run on (its CPU affinity)."""
    if requested:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_start() -> None:
    # A forked worker inherits its parent's Python SIGTERM handler (hrm's, or a training run's stop flag that only
    # notes the signal); `Pool.terminate` then could not stop a worker waiting for a task, and leaving the pool
    # hung for ever. Workers die of SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_pool(workers: int):
    """A `multiprocessing.Pool` of `workers` processes (forked where the platform can, so that they share the
    parent's arrays), whose workers die of SIGTERM whatever handler the parent installed."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    return ctx.Pool(workers, initializer=_worker_start)
