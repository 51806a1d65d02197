"""Run ids and the `status.json` heartbeat: the single source of truth about a run.

The loop calls `heartbeat()` every step; it rewrites the file (atomically) at most every `interval_s` seconds.
`update()` writes at once (evaluations, checkpoints, state changes). During a long evaluation `background()`
keeps the heartbeat going from a thread, so a slow evaluation is not mistaken for a hung run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from hrmkit.fsutil import atomic_write_json
from hrmkit.train.run_folders import utc_now

__all__ = ["StatusFile", "memory_report", "new_run_id", "utc_now"]


def new_run_id() -> str:
    """UTC time plus a short random suffix, e.g. `20261121-203015-a3f9`."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def memory_report(device: torch.device | None = None) -> dict[str, Any]:
    """Peak memory so far: `peak_cpu_rss_mb` (resource.getrusage, MiB) and, on CUDA, `gpu` with
    peak_allocated_mb, peak_reserved_mb, total_mb, free_mb (now) and headroom_frac = 1 - peak_reserved/total."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out: dict[str, Any] = {"peak_cpu_rss_mb": round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1),
                           "gpu": None}
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.max_memory_reserved(device)
        mb = 1024 * 1024
        out["gpu"] = {"peak_allocated_mb": round(torch.cuda.max_memory_allocated(device) / mb, 1),
                      "peak_reserved_mb": round(reserved / mb, 1), "total_mb": round(total / mb, 1),
                      "free_mb": round(free / mb, 1), "headroom_frac": round(1.0 - reserved / total, 4)}
    return out


class StatusFile:
    """Keeps the run's status fields and rewrites `status.json` atomically (thread-safe).

    Fields: run_id, pid, host, state, phase, global_step, total_steps, epoch, samples_per_s, eta_s, best,
    last_eval, last_checkpoint, memory (see memory_report), status_interval_s, updated_at, plus any extra
    given to `update` (task, preset, stop_reason, error, guards, ...). `enabled=False` (ranks > 0) writes nothing.
    """

    def __init__(self, run_dir: Path, run_id: str, total_steps: int, interval_s: float = 60.0,
                 device: torch.device | None = None, enabled: bool = True, **extra: Any):
        self.path = Path(run_dir) / "status.json"
        self.interval_s, self.device, self.enabled = float(interval_s), device, enabled
        self.fields: dict[str, Any] = {
            "run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "state": "starting",
            "phase": "setup", "global_step": 0, "total_steps": total_steps, "epoch": 0, "samples_per_s": None,
            "eta_s": None, "best": None, "last_eval": None, "last_checkpoint": None, "memory": None,
            "status_interval_s": self.interval_s, "updated_at": None, **extra,
        }
        self._lock = threading.Lock()
        self._last_write = 0.0

    def update(self, **fields: Any) -> None:
        """Set `fields` and write the file now."""
        with self._lock:
            self.fields.update(fields)
            self._write()

    def heartbeat(self, **fields: Any) -> bool:
        """Set `fields`; write only when `interval_s` seconds passed since the last write. Returns whether it wrote."""
        with self._lock:
            self.fields.update(fields)
            if time.monotonic() - self._last_write < self.interval_s:
                return False
            self._write()
            return True

    def _write(self) -> None:
        self._last_write = time.monotonic()
        if not self.enabled:
            return
        self.fields["memory"] = memory_report(self.device)
        self.fields["updated_at"] = utc_now()
        atomic_write_json(self.path, self.fields)

    @contextlib.contextmanager
    def background(self, phase: str) -> Iterator[None]:
        """Within the block, a thread writes the heartbeat every interval with `phase` set (e.g. evaluating)."""
        previous = self.fields.get("phase")
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.interval_s):
                self.update()

        self.update(phase=phase)
        thread = threading.Thread(target=beat, name="hrmkit-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.update(phase=previous)
