"""Finding and loading trained models: checkpoint files, run folders, `RUN/best/`, reference checkpoints and
exported folders.

This sits below `train`, `eval` and `deploy` so that none of them imports another to read a model. Checkpoint
files are `RUN/checkpoints/step_{global_step:08d}.pt`, written by `train.checkpoint.save_checkpoint`: a dict of
tensors and plain values (`model`, `ema`, `config` (JSON of the TrainConfig), `model_shape`, `step`, and the
training state) read with `torch.load(weights_only=True)`, so loading never runs pickled code.

Reference checkpoints (sapientinc/HRM, TinyRecursiveModels) are state-dict files `step_N` (keys with or
without torch.compile's `_orig_mod.`) in a folder with the run's `all_config.yaml` (HRM or TRM layout,
`data_path` or `data_paths`), which gives the architecture (`models.reference.read_reference_checkpoint`).

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
from typing import TYPE_CHECKING, Any, Callable

from hrmkit.config import ModelShape, TrainConfig, describe_errors
from hrmkit.errors import HrmkitError
from hrmkit.limits import MAX_STEP, check_int

if TYPE_CHECKING:  # torch loads lazily so that `hrm --help` and `hrm data` start fast
    import torch

    from hrmkit.config import ArchConfig
    from hrmkit.data.format import DatasetMetadata

_NAME = re.compile(r"^step_(\d{8})\.pt$")
_REFERENCE_NAME = re.compile(r"^step_(\d+)$")  # pretrain.py save_train_state; step_N_all_preds.R are not models

EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_ONNX = "config.json", "model.safetensors", "model.onnx"
EXPORT_FORMAT, EXPORT_FORMAT_VERSION = "hrmkit-export", 1


def is_dataset(folder: Path) -> bool:
    """Whether `folder` holds a dataset (a train/ or test/ split with its dataset.json)."""
    return any((Path(folder) / s / "dataset.json").is_file() for s in ("test", "train"))


def dataset_metadata(folder: Path) -> "DatasetMetadata | None":
    """The `DatasetMetadata` of a dataset folder, read from its train split's dataset.json (else its test
    split's); None when it has neither. HrmkitError naming the file when it is invalid."""
    from hrmkit.data.format import DatasetMetadata
    from hrmkit.fsutil import read_json

    found = next((m for m in (Path(folder) / s / "dataset.json" for s in ("train", "test")) if m.is_file()), None)
    return DatasetMetadata.from_json(read_json(found), str(found)) if found else None


def find_dataset(trained: "TrainedModel") -> Path | None:
    """The folder of the dataset a model was trained on: its `config.data_path` as given (relative to the
    working folder), or relative to the folder holding the run's `runs/` (where `hrm train` ran); None when
    neither holds a dataset."""
    data = Path(trained.config.data_path)
    candidates = [data]
    run = run_dir_of(trained.path)
    if not data.is_absolute() and run is not None:
        candidates.append(run.parent.parent / data)
    return next((c for c in candidates if is_dataset(c)), None)


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
        ref = sorted((p for p in target.iterdir() if _REFERENCE_NAME.match(p.name) and p.is_file()),
                     key=lambda p: int(p.name[5:]))
        if ref and (target / "all_config.yaml").is_file():  # a reference checkpoint folder
            return ref if all_checkpoints else ref[-1:]
        raise HrmkitError(f"{target}: not a run folder with checkpoints (no checkpoints/step_*.pt in it) nor a "
                          f"reference checkpoint folder (step_N files with all_config.yaml)")
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
    `model_shape` (seq_len, vocab_size, num_puzzle_identifiers of the dataset it was built for), `reference`
    (True for a reference checkpoint, whose `config` is translated from its all_config.yaml) and which
    `weights` it holds: "ema" (the EMA copy) or "raw" (a reference checkpoint's saved weights are already its
    EMA copy when the run used EMA). `task`: the task record ({"name", "params"}, `hrmkit.tasks.from_record`)
    the checkpoint or export saved, or for a reference checkpoint the one its dataset's layout says; None for
    checkpoints written before hrmkit recorded it."""

    head: torch.nn.Module
    config: TrainConfig
    step: int
    path: Path
    model_shape: dict[str, int] | None = None
    reference: bool = False
    weights: str = "raw"
    task: dict | None = None


def _rebuild(cfg: TrainConfig, model_shape: dict[str, int], weights: dict[str, torch.Tensor], source: Path,
             ema: dict[str, Any] | None = None):
    """An ACTLossHead of `cfg.arch` and `model_shape` holding `weights` (every key, nothing more), then the EMA
    copy `ema` (an `EMA.state_dict()`) when given. Raises HrmkitError naming `source` when they do not fit."""
    from hrmkit.models import build_model

    head = build_model(cfg.arch, **model_shape)
    try:
        head.load_state_dict(weights)
        if ema is not None:
            from hrmkit.models.ema import EMA

            shadow = EMA(head)
            shadow.load_state_dict(ema)
            shadow.copy_to()
    except (RuntimeError, KeyError, TypeError) as e:
        raise HrmkitError(f"{source}: the weights do not fit the {cfg.arch.name} model its config describes "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
    return head


def is_reference_checkpoint(path: Path) -> bool:
    """A reference checkpoint: a file named `step_N` (no suffix) or any file with an `all_config.yaml` beside
    it that is not an hrmkit `.pt` checkpoint."""
    path = Path(path)
    return path.is_file() and (bool(_REFERENCE_NAME.match(path.name)) or
                               (path.suffix != ".pt" and (path.parent / "all_config.yaml").is_file()))


# TrainConfig keys that reference configs (pretrain.py PretrainConfig) share with hrmkit, under the same names
_SHARED_KEYS = ("global_batch_size", "epochs", "eval_interval", "lr", "lr_min_ratio", "lr_warmup_steps",
                "weight_decay", "beta1", "beta2", "puzzle_emb_lr", "puzzle_emb_weight_decay", "seed", "ema", "ema_rate")


def _as_run(arch: "ArchConfig") -> "ArchConfig":
    """A reference arch as hrmkit runs it: the references' CUDA choice `forward_dtype: bfloat16` (their
    default) becomes `auto` (bfloat16 on CUDA, float32 elsewhere)."""
    return arch.model_copy(update={"forward_dtype": "auto"}) if arch.forward_dtype == "bfloat16" else arch


def load_reference(path: Path, device: torch.device | str = "cpu", data: str | Path | None = None) -> TrainedModel:
    """Rebuild a reference checkpoint (module docstring) as a TrainedModel: architecture from all_config.yaml,
    shared training keys translated into `config` (data_path: `data`, else the config's first dataset).
    seq_len comes from the dataset the checkpoint was trained on when it is found where its config says, else
    from `data`'s dataset.json. Raises HrmkitError for an unreadable file, a missing or wrong all_config.yaml,
    or weights that do not fit the architecture."""
    from hrmkit.models.reference import (build_reference_model, read_all_config, read_reference_checkpoint,
                                         reference_data_paths)

    own = reference_data_paths(read_all_config(path))[:1]
    meta = dataset_metadata(own[0]) if own else None
    if meta is None and data is not None:
        meta = dataset_metadata(data)
    seq_len = meta.seq_len if meta is not None else None
    # the reference datasets record no task: dataset.json reading recognised their layout
    task = {"name": meta.task, "params": dict(meta.task_params)} if meta is not None and meta.task else None
    ref = read_reference_checkpoint(path, seq_len=seq_len)
    arch = _as_run(ref.arch)
    shared = {k: ref.config[k] for k in _SHARED_KEYS if isinstance(ref.config, dict) and ref.config.get(k) is not None}
    paths = reference_data_paths(ref.config)
    try:
        cfg = TrainConfig.model_validate({**shared, "arch": arch.model_dump(),
                                          "data_path": str(data or (paths[0] if paths else "."))})
    except Exception as e:  # pydantic ValidationError: a reference value hrmkit does not accept
        raise HrmkitError(f"{path}: all_config.yaml has values hrmkit cannot use: {e}") from e
    head = build_reference_model(ref, arch)
    return TrainedModel(head.to(device).eval(), cfg, ref.step, Path(path), dict(ref.model_shape), reference=True,
                        task=task)


def load_trained(path: Path, device: torch.device | str = "cpu", use_ema: bool = True,
                 data: str | Path | None = None) -> TrainedModel:
    """Rebuild the model saved in checkpoint `path`, with its EMA weights when it holds some and `use_ema`.
    A reference checkpoint (`is_reference_checkpoint`) is read by `load_reference` (`data`: the dataset it
    will run on, for its seq_len; its saved weights are already the EMA copy when the run used EMA).

    Raises HrmkitError when the file is neither a readable hrmkit checkpoint nor a reference checkpoint."""
    if is_reference_checkpoint(path):
        return load_reference(path, device, data)
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"config", "model", "model_shape"} <= set(state):
        raise HrmkitError(f"{path}: not an hrmkit checkpoint (no config/model/model_shape entries) nor a reference "
                          f"checkpoint (a step_N file with all_config.yaml beside it)")
    cfg = saved_config(state, path)
    shape = model_shape(state["model_shape"], f"{path}: entry 'model_shape'")
    step = check_int(state.get("step", 0), f"{path}: entry 'step'", 0, MAX_STEP)
    ema = state.get("ema") if use_ema else None
    head = _rebuild(cfg, shape, state["model"], Path(path), ema)
    return TrainedModel(head.to(device).eval(), cfg, step, Path(path), shape,
                        weights="ema" if ema is not None else "raw", task=state.get("task"))


def model_shape(value: Any, where: str) -> dict[str, int]:
    """`value` (a checkpoint's or export's `model_shape`) checked by `config.ModelShape`: exactly seq_len,
    vocab_size and num_puzzle_identifiers, integers within hrmkit.limits. Raises HrmkitError starting with
    `where` (the file and field) and naming the key and value at fault."""
    from pydantic import ValidationError

    if not isinstance(value, dict):
        raise HrmkitError(f"{where}: expected a mapping of seq_len, vocab_size, num_puzzle_identifiers, got "
                          f"{type(value).__name__} {value!r}"[:300])
    try:
        return ModelShape.model_validate(value).model_dump()
    except ValidationError as e:
        raise HrmkitError(f"{where}: {describe_errors(e)}") from None


def saved_config(state: dict[str, Any], path: Path) -> TrainConfig:
    """The TrainConfig a checkpoint was written with (its `config` entry, JSON). Raises HrmkitError naming the
    checkpoint and the keys at fault when it is not valid JSON or not a valid config."""
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(json.loads(state["config"]))
    except (KeyError, TypeError, ValueError) as e:  # ValidationError is a ValueError
        if isinstance(e, ValidationError):
            e = describe_errors(e)
        raise HrmkitError(f"{path}: its config does not fit this version of hrmkit ({e})") from None


def check_dataset(model: TrainedModel, metadata: Any, data: str | Path) -> None:
    """Raise HrmkitError when the dataset at `data` (its split `metadata`, a `data.format.DatasetMetadata`) does
    not fit `model`: another sequence length, vocabulary or number of puzzle identifiers."""
    bad = metadata.shape_differences(model.model_shape or {})
    if bad:
        raise HrmkitError(f"{model.path} does not fit the dataset {data}: {'; '.join(bad)}. Evaluate it on the dataset "
                          f"it was trained on, or fine-tune it on this one with `hrm train data_path={data} "
                          f"init_from={model.path}` (a puzzle table of another size is rebuilt)")


def load_model(target: str | Path, device: torch.device | str = "cpu", use_ema: bool = True,
               data: str | Path | None = None) -> TrainedModel:
    """Any trained model hrmkit reads, by what `target` is: a run folder (its newest checkpoint), `RUN/best/`,
    a checkpoint file, a reference checkpoint (a `step_N` file, or its folder, with all_config.yaml) or an
    exported folder (`use_ema` does not apply: it holds the weights chosen at export). `data`: the dataset it
    will run on (used for a reference checkpoint's seq_len). Raises HrmkitError naming the target when it is
    none of these or is unreadable."""
    if is_export_folder(target):
        return load_exported(Path(target), device)
    return load_trained(resolve_checkpoints(target)[-1], device, use_ema, data)


def init_from_checkpoint(head: torch.nn.Module, target: str | Path, log: Callable[[str], None] = print,
                         data: str | Path | None = None, puzzle_rows: str = "mean") -> Path:
    """Initialise a freshly built model (`head`, an ACTLossHead) with the weights of an hrmkit checkpoint (its
    EMA weights when it holds some) or a reference checkpoint, for fine-tuning (`init_from=PATH` in training).

    A puzzle-embedding table of another size (another dataset) is rebuilt per `puzzle_rows`
    (`init_from_puzzle_rows`): "mean" as TinyRecursiveModels' `load_checkpoint` does (every row of the new
    table is the mean of the checkpoint's rows); "extend" keeps the checkpoint's N rows as rows 0..N-1 and sets
    the new rows N.. to the mean of its trained rows 1..N-1 (row 0 is the blank identifier), for datasets whose
    new puzzles are numbered after the checkpoint's (`hrm adapt`). A message goes through `log`. Everything
    else must match exactly. Returns the checkpoint file used. Raises HrmkitError naming the file and the
    tensors that do not fit (another architecture, or a table smaller than the checkpoint's with "extend").
    `data`: the dataset being trained on (a reference checkpoint's seq_len).
    """
    import torch

    from hrmkit.models.reference import load_reference_state_dict

    path = resolve_checkpoints(target)[-1]
    source = load_trained(path, "cpu", use_ema=True, data=data)
    state = dict(source.head.state_dict())
    name = "model.inner.puzzle_emb.weights"
    own = head.state_dict()
    if name in state and name in own and state[name].shape != own[name].shape:
        old, new = state[name], own[name]
        if old.shape[1:] != new.shape[1:]:
            raise HrmkitError(f"{path}: puzzle embedding width {old.shape[1]} != {new.shape[1]} "
                              f"(arch.puzzle_emb_ndim differs)")
        if puzzle_rows == "extend":
            if new.shape[0] < old.shape[0]:
                raise HrmkitError(f"init_from_puzzle_rows=extend: {path} has {old.shape[0]} puzzle embedding rows, "
                                  f"more than this dataset's {new.shape[0]} identifiers")
            trained = old[1:] if old.shape[0] > 1 else old
            fill = trained.mean(dim=0, keepdim=True).expand(new.shape[0] - old.shape[0], -1)
            state[name] = torch.cat([old, fill]).to(new.dtype).contiguous()
            log(f"init_from={target}: puzzle embedding table extended from {old.shape[0]} to {new.shape[0]} rows; "
                f"the {new.shape[0] - old.shape[0]} new rows start at the mean of the checkpoint's trained rows")
        else:
            log(f"init_from={target}: puzzle embedding table {tuple(old.shape)} does not fit this dataset's "
                f"{tuple(new.shape)}: every row reset to the mean of the checkpoint's {old.shape[0]} rows "
                f"(as TinyRecursiveModels' load_checkpoint)")
            state[name] = old.mean(dim=0, keepdim=True).expand_as(new).to(new.dtype).contiguous()
    try:
        load_reference_state_dict(head, state)  # strict: names and shapes
    except HrmkitError as e:
        raise HrmkitError(f"init_from={target}: {path} does not fit the configured model: {e}. Use the "
                          f"checkpoint's architecture (for a reference checkpoint it is the default when no "
                          f"model= or arch.* key is given)") from e
    log(f"init_from={target}: initialised from {path} (step {source.step}{', reference checkpoint' if source.reference else ''})")
    return path


def checkpoint_arch(target: str | Path) -> dict:
    """The architecture (an `arch` config dict) of the checkpoint `target` would load: read from an hrmkit
    checkpoint's config or a reference checkpoint's all_config.yaml (bfloat16 -> auto),
    without building the model. Raises HrmkitError as `load_model`."""
    from hrmkit.models.reference import arch_from_reference_config, read_all_config

    path = resolve_checkpoints(target)[-1]
    if is_reference_checkpoint(path):
        cfg = read_all_config(path)
        if not isinstance(cfg, dict) or not isinstance(cfg.get("arch"), dict):
            raise HrmkitError(f"{path}: no all_config.yaml with an 'arch' section beside it")
        return _as_run(arch_from_reference_config(cfg["arch"])).model_dump()
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "config" not in state:
        raise HrmkitError(f"{path}: not an hrmkit checkpoint (no config entry)")
    return json.loads(state["config"])["arch"]


def read_export_config(folder: Path) -> dict[str, Any]:
    """The `config.json` of an exported folder, checked to be an hrmkit export of a known format version.
    Raises HrmkitError naming the file and field otherwise."""
    from hrmkit.fsutil import read_json

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
    check_card_hashes(folder)
    config = read_export_config(folder)
    where = f"{folder / EXPORT_CONFIG}: field"
    shape = model_shape(config["model_shape"], f"{where} 'model_shape'")
    step = check_int(config["step"], f"{where} 'step'", 0, MAX_STEP)
    weights = folder / EXPORT_WEIGHTS
    if not weights.is_file():
        if (folder / EXPORT_ONNX).is_file():
            raise HrmkitError(f"{folder}: an ONNX export holds no PyTorch weights; run it with "
                              "hrmkit.deploy.onnx_runner.ACTRunner, or export again with --format safetensors")
        raise HrmkitError(f"{weights}: missing")
    try:
        cfg = TrainConfig.model_validate(config["train_config"])
    except ValidationError as e:
        raise HrmkitError(f"{where} 'train_config' is not a valid training config "
                          f"({describe_errors(e, 'train_config.')})") from None
    try:
        state = load_file(weights)
    except Exception as e:  # truncated or foreign file
        raise HrmkitError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    head = _rebuild(cfg, shape, state, weights)
    return TrainedModel(head.to(device).eval(), cfg, step, folder, shape,
                        weights=str(config.get("weights", "raw")), task=config.get("task"))


def is_export_folder(target: str | Path) -> bool:
    """Whether `target` is a folder with an export `config.json` (what `hrm export` writes)."""
    return Path(target).is_dir() and (Path(target) / EXPORT_CONFIG).is_file()


EXPORT_CARD = "README.md"
# a row of the model card's file table (hrmkit.deploy.card.model_card): | `name` | 1,234 | `sha256` |
_CARD_ROW = re.compile(r"^\|\s*`([^`/]+)`\s*\|\s*[\d,]+\s*\|\s*`([0-9a-f]{64})`\s*\|\s*$")


def card_hashes(folder: Path) -> dict[str, str]:
    """{file name: sha256} listed in the model card (README.md) of an exported folder; empty when the folder
    has no card (an export being validated before its card is written) or the card lists no files."""
    card = Path(folder) / EXPORT_CARD
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8", errors="replace")
    return {m.group(1): m.group(2) for m in map(_CARD_ROW.match, text.splitlines()) if m}


def check_card_hashes(folder: Path) -> None:
    """Check every file the model card lists against its SHA-256 there, before anything is read from them.
    Raises HrmkitError naming the file that is missing or differs (edited, truncated or swapped)."""
    from hrmkit.fsutil import sha256

    for name, expected in card_hashes(folder).items():
        path = Path(folder) / name
        if not path.is_file():
            raise HrmkitError(f"{path}: listed in {EXPORT_CARD} but missing")
        found = sha256(path)
        if found != expected:
            raise HrmkitError(f"{path}: SHA-256 {found} differs from the {expected} recorded in {EXPORT_CARD}: the "
                              f"file was changed after export; export the model again")
