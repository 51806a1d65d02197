"""Whether a process still runs on this host: the liveness test behind stale run locks (train/run_folders.py) and the
sweep of temporary folders left by killed writers (fsutil.sweep_leftovers)."""

from __future__ import annotations

import os
from pathlib import Path


def _proc_start_time(pid: int) -> float | None:
    """Start time of `pid` in seconds since the epoch (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # zombie: dead, not yet reaped
            return -1.0
        ticks = int(fields[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def pid_alive(pid: int | None, started_before: float | None = None) -> bool:
    """Whether process `pid` runs on this host. With `started_before` (epoch seconds), a process that started
    after it cannot be the one we look for (pid reuse) and counts as dead; zombies count as dead."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _proc_start_time(pid)
    if start is not None and start < 0:
        return False
    if start is not None and started_before is not None and start > started_before + 2.0:
        return False
    return True
