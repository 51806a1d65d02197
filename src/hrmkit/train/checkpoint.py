"""Checkpoints: the full training state in one file, written atomically, loaded without running pickled code.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save` and read with
`torch.load(weights_only=True)`. Files are `checkpoints/step_{global_step:08d}.pt` inside the run folder.
A file is written under a temporary name, fsynced, renamed, and the folder is fsynced, so after a crash
(SIGKILL, power loss) a checkpoint file is either complete or absent; leftover temporary files are removed by
`remove_temporary_files` on resume. Retention keeps the newest `keep` files and any protected ones (the best,
and the newest healthy one that a rollback would go back to).
"""

from __future__ import annotations

import io
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.loading import checkpoint_path, list_checkpoints, load_checkpoint


def rng_state() -> dict[str, Any]:
    """Python, numpy (global) and torch (CPU and every CUDA device) RNG states, in weights_only-safe types."""
    return {
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps(np.random.get_state(legacy=False), default=lambda o: o.tolist()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = json.loads(state["numpy"])
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int, protect: set[Path] = frozenset()) -> Path:
    """Write `state` to `checkpoints/step_{step}.pt` atomically; keep the newest `keep` files and `protect`.

    Returns the path written.
    """
    path = checkpoint_path(run_dir, step)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    fsync_dir(path.parent)
    protect = {Path(p).resolve() for p in protect}
    existing = list_checkpoints(run_dir)
    for old in existing[:-keep] if keep > 0 else []:
        if old.resolve() not in protect and old != path:
            old.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename or unlink inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` leftovers of writes interrupted by a crash, in the run folder and its
    `checkpoints/` (files, and folders such as a half-written `best/`); returns what was removed."""
    import shutil

    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for p in folder.glob(".*.tmp") if folder.is_dir() else []:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def latest_valid_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu",
                            healthy_only: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; corrupt or truncated ones are skipped with a warning. With
    `healthy_only`, the newest one written with no bad streak open and finite weights (its `healthy` entry,
    train/guards.py): the target of a rollback."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path, map_location)
        except HrmkitError as e:
            warnings.warn(f"skipping corrupt checkpoint: {e}", stacklevel=2)
            print(f"warning: skipping corrupt checkpoint: {e}", flush=True)
            continue
        if not healthy_only or state.get("healthy", True):
            return path, state
    return None
