"""How many worker processes a dataset build uses."""

from __future__ import annotations

import os


def num_workers(requested: int | None) -> int:
    """`requested` when given (at least 1), else the cores this process may run on (its CPU affinity)."""
    if requested:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
