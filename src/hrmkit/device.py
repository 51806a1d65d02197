"""Choosing the torch device (`device: auto|cpu|cuda` in configs and `--device` on the command line)."""

from __future__ import annotations

import torch

from hrmkit.errors import HrmkitError


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU. Raises HrmkitError for `cuda` on a machine without one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HrmkitError("device=cuda: no CUDA device is available (use device=cpu or device=auto)")
    return torch.device(name)
