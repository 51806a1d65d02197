"""Finding and loading trained models: checkpoint files, run folders and `RUN/best/`.

This sits below `train`, `eval` and `deploy` so that none of them imports another to read a model. Checkpoint
files are `RUN/checkpoints/step_{global_step:08d}.pt`, written by `train.checkpoint.save_checkpoint`: a dict of
tensors and plain values (`model`, `ema`, `config` (JSON of the TrainConfig), `model_shape`, `step`, and the
training state) read with `torch.load(weights_only=True)`, so loading never runs pickled code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError

if TYPE_CHECKING:  # torch loads lazily so that `hrm --help` and `hrm data` start fast
    import torch

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """`RUN/checkpoints/step_{step:08d}.pt`."""
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first (by step)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing pickled code. Raises HrmkitError if it is unreadable."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, ...
        raise HrmkitError(f"{path}: not a readable hrmkit checkpoint ({type(e).__name__}: {e})") from e


def resolve_checkpoints(target: str | Path, all_checkpoints: bool = False) -> list[Path]:
    """The checkpoint file itself; for a run folder its newest checkpoint (every one, oldest first, with
    `all_checkpoints`); for a folder holding checkpoint.pt (RUN/best/) that file. Raises HrmkitError when the
    target is neither a checkpoint nor a folder with one."""
    target = Path(target)
    if target.is_file():
        return [target]
    if target.is_dir():
        found = list_checkpoints(target)
        if found:
            return found if all_checkpoints else found[-1:]
        if (target / "checkpoint.pt").is_file():  # RUN/best/
            return [target / "checkpoint.pt"]
        raise HrmkitError(f"{target}: not a run folder with checkpoints (no checkpoints/step_*.pt in it)")
    raise HrmkitError(f"{target}: no such run folder or checkpoint file")


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder holding `checkpoint` (RUN/checkpoints/step_*.pt, RUN/best/checkpoint.pt): the nearest of
    its parent and grandparent with a metrics.jsonl or status.json; None when it is not inside a run."""
    for folder in list(Path(checkpoint).resolve().parents)[:2]:
        if (folder / "metrics.jsonl").exists() or (folder / "status.json").exists():
            return folder
    return None


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint: `head` (the ACTLossHead, on `device`, in eval mode), the run's
    `config`, the global `step` it was saved at, the file it came from (`path`) and `model_shape` (seq_len,
    vocab_size, num_puzzle_identifiers of the dataset it was built for)."""

    head: torch.nn.Module
    config: TrainConfig
    step: int
    path: Path
    model_shape: dict[str, int] | None = None


def load_trained(path: Path, device: torch.device | str = "cpu", use_ema: bool = True) -> TrainedModel:
    """Rebuild the model saved in checkpoint `path`, with its EMA weights when it holds some and `use_ema`.

    Raises HrmkitError when the file is not a readable hrmkit checkpoint."""
    from hrmkit.models import build_model

    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"config", "model", "model_shape"} <= set(state):
        raise HrmkitError(f"{path}: not an hrmkit checkpoint (no config/model/model_shape entries)")
    cfg = saved_config(state, path)
    shape = state["model_shape"]
    if not isinstance(shape, dict) or set(shape) != {"seq_len", "vocab_size", "num_puzzle_identifiers"}:
        raise HrmkitError(f"{path}: entry 'model_shape' must hold seq_len, vocab_size, num_puzzle_identifiers, "
                          f"got {shape!r}")
    head = build_model(cfg.arch, **shape)
    try:
        head.load_state_dict(state["model"])
        if use_ema and state.get("ema") is not None:
            from hrmkit.models.ema import EMA

            ema = EMA(head)
            ema.load_state_dict(state["ema"])
            ema.copy_to()
    except (RuntimeError, KeyError, TypeError) as e:
        raise HrmkitError(f"{path}: the weights do not fit the model its config describes ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from None
    return TrainedModel(head.to(device).eval(), cfg, int(state.get("step", 0)), Path(path), dict(shape))


def saved_config(state: dict[str, Any], path: Path) -> TrainConfig:
    """The TrainConfig a checkpoint was written with (its `config` entry, JSON). Raises HrmkitError naming the
    checkpoint and the keys at fault when it is not valid JSON or not a valid config."""
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(json.loads(state["config"]))
    except (KeyError, TypeError, ValueError) as e:  # ValidationError is a ValueError
        if isinstance(e, ValidationError):
            e = "; ".join(f"{'.'.join(map(str, err['loc']))}={err.get('input')!r}: {err['msg']}" for err in e.errors())
        raise HrmkitError(f"{path}: its config does not fit this version of hrmkit ({e})") from None


def load_model(target: str | Path, device: torch.device | str = "cpu", use_ema: bool = True) -> TrainedModel:
    """Any trained model hrmkit reads, by what `target` is: a run folder (its newest checkpoint), `RUN/best/`
    or a checkpoint file. Raises HrmkitError naming the target when it is none of these or is unreadable."""
    return load_trained(resolve_checkpoints(target)[-1], device, use_ema)
