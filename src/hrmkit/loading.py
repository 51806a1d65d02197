"""Finding and loading trained models: checkpoint files, run folders, `RUN/best/` and exported folders.

This sits below `train`, `eval` and `deploy` so that none of them imports another to read a model. Checkpoint
files are `RUN/checkpoints/step_{global_step:08d}.pt`, written by `train.checkpoint.save_checkpoint`: a dict of
tensors and plain values (`model`, `ema`, `config` (JSON of the TrainConfig), `model_shape`, `step`, and the
training state) read with `torch.load(weights_only=True)`, so loading never runs pickled code.

An exported folder (`hrm export`, hrmkit.deploy.export) holds `config.json` (format "hrmkit-export", the
training config, the model shape) and `model.safetensors` (the inference weights, puzzle table included); it is
read with safetensors and JSON only. An ONNX export holds `model.onnx` instead and runs with
hrmkit.deploy.onnx_runner, not PyTorch.
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

EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_ONNX = "config.json", "model.safetensors", "model.onnx"
EXPORT_FORMAT, EXPORT_FORMAT_VERSION = "hrmkit-export", 1


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
    `config`, the global `step` it was saved at, the file it came from (`path`; the folder for an export),
    `model_shape` (seq_len, vocab_size, num_puzzle_identifiers of the dataset it was built for) and which
    `weights` it holds: "ema" (the EMA copy) or "raw"."""

    head: torch.nn.Module
    config: TrainConfig
    step: int
    path: Path
    model_shape: dict[str, int] | None = None
    weights: str = "raw"


def _rebuild(cfg: TrainConfig, model_shape: dict[str, int], weights: dict[str, torch.Tensor], source: Path):
    """An ACTLossHead of `cfg.arch` and `model_shape` holding `weights` (every key, nothing more).
    Raises HrmkitError naming `source` when the weights do not fit."""
    from hrmkit.models import build_model

    head = build_model(cfg.arch, **model_shape)
    try:
        head.load_state_dict(weights)
    except RuntimeError as e:
        raise HrmkitError(f"{source}: weights do not fit the {cfg.arch.name} model of its config ({e})") from e
    return head


def load_trained(path: Path, device: torch.device | str = "cpu", use_ema: bool = True) -> TrainedModel:
    """Rebuild the model saved in checkpoint `path`, with its EMA weights when it holds some and `use_ema`.

    Raises HrmkitError when the file is not a readable hrmkit checkpoint."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"config", "model", "model_shape"} <= set(state):
        raise HrmkitError(f"{path}: not an hrmkit checkpoint (no config/model/model_shape entries)")
    cfg = TrainConfig.model_validate(json.loads(state["config"]))
    head = _rebuild(cfg, state["model_shape"], state["model"], Path(path))
    ema_used = use_ema and state.get("ema") is not None
    if ema_used:
        from hrmkit.models.ema import EMA

        ema = EMA(head)
        ema.load_state_dict(state["ema"])
        ema.copy_to()
    return TrainedModel(head.to(device).eval(), cfg, int(state.get("step", 0)), Path(path), dict(state["model_shape"]),
                        "ema" if ema_used else "raw")


def read_export_config(folder: Path) -> dict[str, Any]:
    """The `config.json` of an exported folder, checked to be an hrmkit export of a known format version.
    Raises HrmkitError naming the file and field otherwise."""
    from hrmkit.data.format import read_json

    path = Path(folder) / EXPORT_CONFIG
    config = read_json(path)
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise HrmkitError(f"{path}: not an hrmkit export (field 'format' is {found!r}, expected {EXPORT_FORMAT!r})")
    if config.get("format_version") != EXPORT_FORMAT_VERSION:
        raise HrmkitError(f"{path}: field 'format_version' is {config.get('format_version')!r}; this hrmkit reads "
                          f"version {EXPORT_FORMAT_VERSION}")
    for key in ("train_config", "model_shape", "step"):
        if key not in config:
            raise HrmkitError(f"{path}: missing field {key!r}")
    return config


def load_exported(folder: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the model of an exported folder from `config.json` and `model.safetensors` (no pickle involved).
    The weights are the ones exported (EMA when the run had EMA); `TrainedModel.path` is the folder.

    Raises HrmkitError when the folder is not an hrmkit export, is an ONNX export, or its files are unreadable."""
    from pydantic import ValidationError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_export_config(folder)
    weights = folder / EXPORT_WEIGHTS
    if not weights.is_file():
        if (folder / EXPORT_ONNX).is_file():
            raise HrmkitError(f"{folder}: an ONNX export holds no PyTorch weights; run it with "
                              "hrmkit.deploy.onnx_runner.ACTRunner, or export again with --format safetensors")
        raise HrmkitError(f"{weights}: missing")
    try:
        cfg = TrainConfig.model_validate(config["train_config"])
    except ValidationError as e:
        raise HrmkitError(f"{folder / EXPORT_CONFIG}: field 'train_config' is not a valid training config ({e})") from e
    try:
        state = load_file(weights)
    except Exception as e:  # truncated or foreign file
        raise HrmkitError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    shape = {k: int(v) for k, v in config["model_shape"].items()}
    head = _rebuild(cfg, shape, state, weights)
    return TrainedModel(head.to(device).eval(), cfg, int(config["step"]), folder, shape, str(config.get("weights", "raw")))


def is_export_folder(target: str | Path) -> bool:
    """Whether `target` is a folder with an export `config.json` (what `hrm export` writes)."""
    return Path(target).is_dir() and (Path(target) / EXPORT_CONFIG).is_file()


def load_model(target: str | Path, device: torch.device | str = "cpu", use_ema: bool = True) -> TrainedModel:
    """Any trained model hrmkit reads, by what `target` is: a run folder (its newest checkpoint), `RUN/best/`,
    a checkpoint file or an exported folder (`use_ema` does not apply: it holds the weights chosen at export).
    Raises HrmkitError naming the target when it is none of these or is unreadable."""
    if is_export_folder(target):
        return load_exported(Path(target), device)
    return load_trained(resolve_checkpoints(target)[-1], device, use_ema)
