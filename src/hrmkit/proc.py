"""Process-level facts and settings: whether a process still runs on this host (the liveness test behind stale
run locks, train/run_folders.py, and the sweep of temporary folders left by killed writers,
fsutil.sweep_leftovers), and `keep_freed_cpu_memory` (the allocator setting `hrm` and `train()` make). No torch
import: `hrm --help` and `hrm data` start without loading PyTorch."""

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


def keep_freed_cpu_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (`mallopt`: blocks up to 32 MiB from the heap, heap top
    never trimmed below 1 GiB) instead of returning it to the kernel. A CPU training step frees and reallocates
    the same few-MiB activation buffers every step; returned memory comes back through page faults (about 1,600
    a step on the CPU demo, measured with getrusage), kept memory does not. The process's resident size stays at
    its peak. Returns False (and changes nothing) where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))
