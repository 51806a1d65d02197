"""Run folders, run ids and the `status.json` heartbeat: the single source of truth about a run."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from hrmkit.fsutil import atomic_write_json


def new_run_id() -> str:
    """UTC time plus a short random suffix, e.g. `20261121-203015-a3f9`."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class StatusFile:
    """Keeps the run's status fields and rewrites `status.json` atomically on every `update`."""

    def __init__(self, run_dir: Path, run_id: str, total_steps: int):
        self.path = Path(run_dir) / "status.json"
        self.fields: dict[str, Any] = {
            "run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "state": "starting",
            "global_step": 0, "total_steps": total_steps, "epoch": 0, "samples_per_s": None, "eta_s": None,
            "best": None, "last_eval": None, "last_checkpoint": None, "updated_at": None,
        }

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self.fields["updated_at"] = utc_now()
        atomic_write_json(self.path, self.fields)
