"""Reference compatibility: load sapientinc/HRM and TinyRecursiveModels checkpoints, and check hrmkit against
parity fixtures recorded from those implementations (format: /work/shared/fixtures/README.md).

A fixture is `NAME.npz` (state_dict.*, batch.*, eval.stepK.*, train.stepK.*) with `NAME.json` beside it
({"config": {...reference arch config + batch_size, seq_len, vocab_size, num_puzzle_identifiers},
"loss_type": ...}). `verify_reference` rebuilds the model from the json, loads the state dict with the same
loader used for real checkpoints, replays the recorded protocol and reports the relative error of every
recorded quantity.

Rounding noise: a recurrent model amplifies float32 rounding from segment to segment (TRM `mlp_t` runs 42
block applications per segment), so two correct float32 implementations whose kernels round differently
(another CPU, another BLAS path) drift apart by far more than 1e-5 after a few segments; the recorded numbers
carry that noise themselves. The replay therefore runs a second time in float64 and measures, per quantity,
how far float32 rounding alone moves it (`noise`: relative error of float32 against float64, at least that
of the same segment's logits, since a scalar's own noise is one noisy sample); a quantity passes when its
error is within max(tolerance, NOISE_FACTOR x noise). A wrong computation differs already in the first
segment, where the noise is about 1e-6, so this keeps the check sharp where it matters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrmkit.config import ArchConfig, LossConfig
from hrmkit.errors import HrmkitError
from hrmkit.models.build import build_model
from hrmkit.models.losses import ACTLossHead

TOLERANCE = 1e-5
NOISE_FACTOR = 10.0  # allowed error, in units of the measured float32 rounding noise
_PREFIXES = ("_orig_mod.", "module.")
_TRM_KEYS = ("mlp_t", "puzzle_emb_len", "no_ACT_continue")


def load_reference_state_dict(head: ACTLossHead, state_dict: dict) -> None:
    """Load a reference state dict (tensors or numpy arrays) into `head`, strictly.

    Strips `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes; casts to the model's dtypes. Raises
    HrmkitError naming missing, unexpected or mis-shaped tensors.
    """
    clean = {}
    for k, v in state_dict.items():
        while k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        clean[k] = torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
    own = head.state_dict()
    missing = sorted(set(own) - set(clean))
    unexpected = sorted(set(clean) - set(own))
    bad = [f"{k}: {tuple(clean[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in clean and clean[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise HrmkitError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}, shapes {bad}")
    head.load_state_dict({k: clean[k].to(own[k].dtype) for k in own}, strict=True)


def arch_from_reference_config(cfg: dict, loss_type: str | None = None, name: str | None = None) -> ArchConfig:
    """ArchConfig from a reference arch config dict (the `arch:` section of `all_config.yaml`, or a fixture's
    "config"). The family comes from `name`, else the reference's `name` entry ("...trm@..." -> trm,
    "...hrm..." -> hrm), else the presence of TRM-only keys. Unknown keys (batch_size, seq_len, ...) are ignored."""
    ref_name = str(cfg.get("name", ""))
    if name is None:
        if "trm" in ref_name.lower() or "recursive" in ref_name.lower() or any(k in cfg for k in _TRM_KEYS):
            name = "trm"
        else:
            name = "hrm"
    fields = set(ArchConfig.model_fields) - {"name", "loss"}
    kw = {k: cfg[k] for k in fields if k in cfg}
    loss = cfg.get("loss") or {}
    loss_type = loss_type or (loss.get("loss_type") if isinstance(loss, dict) else None) or "stablemax_cross_entropy"
    try:
        return ArchConfig(name=name, loss=LossConfig(loss_type=loss_type), **kw)
    except Exception as e:  # pydantic ValidationError
        raise HrmkitError(f"reference config is not a valid arch config: {e}") from e


def read_all_config(checkpoint: str | Path) -> dict | None:
    """The reference `all_config.yaml` beside a checkpoint file (or inside a checkpoint folder), or None.
    Raises HrmkitError when it exists but is not YAML."""
    import yaml

    p = Path(checkpoint)
    cand = p / "all_config.yaml" if p.is_dir() else p.parent / "all_config.yaml"
    if not cand.exists():
        return None
    try:
        with open(cand) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise HrmkitError(f"{cand}: cannot read the reference config: {e}") from e


def reference_data_paths(all_cfg: dict | None) -> list[str]:
    """The dataset folders of a reference config: sapientinc/HRM `data_path` (one), TinyRecursiveModels
    `data_paths` (a list)."""
    if not isinstance(all_cfg, dict):
        return []
    if all_cfg.get("data_paths"):
        return [str(p) for p in all_cfg["data_paths"]]
    return [str(all_cfg["data_path"])] if all_cfg.get("data_path") else []


@dataclass
class ReferenceCheckpoint:
    """A reference checkpoint read from disk: `arch` (from all_config.yaml or given), `model_shape` (seq_len,
    vocab_size, num_puzzle_identifiers), `state_dict` (tensors, `_orig_mod.` prefixes removed), `config` (the
    parsed all_config.yaml, None without one) and `step` (from the file name `step_N`, else 0)."""

    path: Path
    arch: ArchConfig
    model_shape: dict[str, int]
    state_dict: dict
    config: dict | None
    step: int


def read_reference_checkpoint(path: str | Path, *, seq_len: int | None = None,
                              arch: ArchConfig | None = None) -> ReferenceCheckpoint:
    """Read a reference checkpoint file (torch.save of the state dict, as pretrain.py `save_train_state`
    writes it) without building a model.

    The arch comes from `arch` or the `all_config.yaml` beside the file; vocab size and number of puzzle
    identifiers from the state dict; seq_len from the argument, else from the `dataset.json` of the config's
    first `data_path`/`data_paths` entry when it exists, else from a learned-position or mlp_t table. Raises
    HrmkitError naming the file when it is unreadable or something is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise HrmkitError(f"checkpoint {path} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, pickled code
        raise HrmkitError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(sd, dict):
        sd = {k.replace("_orig_mod.", "", 1) if k.startswith("_orig_mod.") else k: v for k, v in sd.items()}
    if not isinstance(sd, dict) or "model.inner.embed_tokens.embedding_weight" not in sd:
        raise HrmkitError(f"{path}: not a reference HRM/TRM state dict (no model.inner.embed_tokens.embedding_weight)")
    all_cfg = read_all_config(path)
    if arch is None:
        if not isinstance(all_cfg, dict) or not isinstance(all_cfg.get("arch"), dict):
            raise HrmkitError(f"{path}: a reference checkpoint needs its run's all_config.yaml beside it (none there, "
                              f"or it has no 'arch' section)")
        arch = arch_from_reference_config(all_cfg["arch"])
    vocab = sd["model.inner.embed_tokens.embedding_weight"].shape[0]
    pt = sd.get("model.inner.puzzle_emb.weights")
    num_ids = pt.shape[0] if pt is not None else 1
    for data in reference_data_paths(all_cfg)[:1]:
        meta = Path(data) / "train" / "dataset.json"
        if seq_len is None and meta.exists():
            seq_len = json.loads(meta.read_text())["seq_len"]
    if seq_len is None:
        from hrmkit.models.puzzle_embedding import puzzle_prefix_len

        P = puzzle_prefix_len(arch)
        if "model.inner.embed_pos.embedding_weight" in sd:
            seq_len = sd["model.inner.embed_pos.embedding_weight"].shape[0] - P
        elif "model.inner.L_level.layers.0.mlp_t.gate_up_proj.weight" in sd:
            seq_len = sd["model.inner.L_level.layers.0.mlp_t.gate_up_proj.weight"].shape[1] - P
        else:
            raise HrmkitError(f"cannot infer seq_len for {path}: its all_config.yaml names no dataset found here "
                              f"(give the dataset: --data DIR, or seq_len)")
    step = int(path.name[5:]) if path.name.startswith("step_") and path.name[5:].isdigit() else 0
    shape = {"seq_len": int(seq_len), "vocab_size": int(vocab), "num_puzzle_identifiers": int(num_ids)}
    return ReferenceCheckpoint(path, arch, shape, sd, all_cfg, step)


def build_reference_model(ref: ReferenceCheckpoint, arch: ArchConfig | None = None) -> ACTLossHead:
    """The hrmkit model of a read reference checkpoint (`arch` replaces `ref.arch`, e.g. another forward_dtype),
    with its weights loaded. Raises HrmkitError naming the file when the weights do not fit the architecture."""
    head = build_model(arch or ref.arch, **ref.model_shape)
    try:
        load_reference_state_dict(head, ref.state_dict)
    except HrmkitError as e:
        raise HrmkitError(f"{ref.path}: {e} (is all_config.yaml the config this checkpoint was trained with?)") from e
    return head


# ---------------------------------------------------------------------------------------------- fixtures


def _np(t) -> np.ndarray:
    t = torch.as_tensor(t).detach().cpu()
    if t.dtype == torch.bool:
        t = t.to(torch.int32)
    return t.numpy()


def replay(head: ACTLossHead, batch: dict[str, torch.Tensor], halt_max_steps: int, train_steps: int = 2) -> dict[str, np.ndarray]:
    """Run the fixture protocol and return every quantity under the fixture's key names.

    eval: fresh carry, halt_max_steps segments under no_grad. train: fresh carry kept across `train_steps`
    calls on the same batch, each call's loss / batch_size backpropagated from zero gradients. Restores the
    module's train/eval mode. Keys: eval.stepK.{logits,q_halt_logits,q_continue_logits,loss,metric.*},
    train.stepK.{...,halted,target_q_continue,grad.<param>,puzzle_emb_local_grad}.
    """
    was_training = head.training
    out: dict[str, np.ndarray] = {}
    B = batch["inputs"].shape[0]
    q_cont = getattr(head.model, "q_continue", True)
    pe = getattr(head.model.inner, "puzzle_emb", None)

    def record(prefix, loss, metrics, outputs):
        out[f"{prefix}.loss"] = _np(loss.reshape(1))
        out[f"{prefix}.logits"] = _np(outputs["logits"])
        out[f"{prefix}.q_halt_logits"] = _np(outputs["q_halt_logits"])
        if q_cont:
            out[f"{prefix}.q_continue_logits"] = _np(outputs["q_continue_logits"])
        if "target_q_continue" in outputs:
            out[f"{prefix}.target_q_continue"] = _np(outputs["target_q_continue"])
        for k, v in metrics.items():
            out[f"{prefix}.metric.{k}"] = _np(v.reshape(1))

    try:
        head.eval()
        with torch.no_grad():
            carry = head.initial_carry(batch)
            for k in range(1, halt_max_steps + 1):
                carry, loss, metrics, outputs, _ = head(carry, batch)
                record(f"eval.step{k}", loss, metrics, outputs)
        head.train()
        carry = head.initial_carry(batch)
        for k in range(1, train_steps + 1):
            head.zero_grad(set_to_none=True)
            if pe is not None:
                pe.local_weights = None
            carry, loss, metrics, outputs, _ = head(carry, batch)
            (loss / B).backward()
            p = f"train.step{k}"
            record(p, loss, metrics, outputs)
            out[f"{p}.halted"] = _np(carry.halted)
            for name, prm in head.named_parameters():
                out[f"{p}.grad.{name}"] = _np(prm.grad if prm.grad is not None else torch.zeros_like(prm))
            if pe is not None and pe.local_weights is not None and pe.local_weights.grad is not None:
                out[f"{p}.puzzle_emb_local_grad"] = _np(pe.local_weights.grad)
        head.zero_grad(set_to_none=True)
    finally:
        head.train(was_training)
    return out


@dataclass
class Check:
    """One compared quantity: `kind` "exact" (integers, halting) or "rel" (||a-b|| / ||b||). For "rel", `noise`
    is the float32 rounding noise of hrmkit's own computation of it (float32 vs float64, same norm) and
    `tolerance` the bound it was held to: max(the report's tolerance, NOISE_FACTOR x noise)."""

    key: str
    kind: str
    error: float
    ok: bool
    note: str = ""
    noise: float | None = None
    tolerance: float | None = None


@dataclass
class VerifyReport:
    """Result of `verify_reference`: every check, the tolerance, and `ok` (all checks passed)."""

    fixture: str
    tolerance: float
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def max_error(self) -> float:
        return max((c.error for c in self.checks if c.kind == "rel"), default=0.0)

    def to_dict(self) -> dict:
        return {"fixture": self.fixture, "tolerance": self.tolerance, "ok": self.ok, "max_rel_error": self.max_error(),
                "checks": [c.__dict__ for c in self.checks]}


def _fixture_spec(npz_path: Path) -> dict:
    from hrmkit.fsutil import read_json

    js = npz_path.with_suffix(".json")
    if not js.exists():
        raise HrmkitError(f"fixture config {js} not found (expected beside {npz_path.name})")
    spec = read_json(js)
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise HrmkitError(f"{js}: missing 'config'")
    return spec


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a fixture .npz, read without unpickling (an object array is refused). Raises HrmkitError
    naming the file when it is not a readable .npz."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise HrmkitError(f"{path}: not a readable fixture .npz ({e})") from None


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).reshape(b.shape), b.astype(np.float64)
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / (nb if nb > 0 else 1.0)


def _compare(key: str, ours: np.ndarray | None, ref: np.ndarray, tol: float, exact: np.ndarray | None = None,
             floor: float = 0.0) -> Check:
    """Compare hrmkit's float32 value `ours` with the recorded `ref`; `exact` is hrmkit's float64 value of the
    same quantity, from which the allowed error grows, `floor` the least noise assumed (module docstring)."""
    if ours is None:
        return Check(key, "missing", math.inf, False, "not produced by hrmkit")
    if ours.size != ref.size:
        return Check(key, "shape", math.inf, False, f"shape {ours.shape} vs {ref.shape}")
    ours, ref = ours.reshape(ref.shape), ref
    integer = not np.issubdtype(ref.dtype, np.floating) or not np.issubdtype(ours.dtype, np.floating)
    if integer:
        diff = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0))
        return Check(key, "exact", diff, diff == 0.0)
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        same = np.array_equal(a, b, equal_nan=True)
        return Check(key, "rel", 0.0 if same else math.inf, same, "non-finite values")
    err = _rel(a, b)
    noise = None
    if exact is not None and exact.size == ours.size and np.isfinite(exact).all():
        noise = max(_rel(a, exact), floor)
        tol = max(tol, NOISE_FACTOR * noise)
    note = "" if float(np.linalg.norm(b)) > 0 else "absolute (reference is zero)"
    return Check(key, "rel", err, err <= tol, note, noise, tol)


def verify_reference(fixture_npz_path: str | Path, tolerance: float = TOLERANCE) -> VerifyReport:
    """Check hrmkit against a parity fixture; returns a VerifyReport (see module docstring).

    Integer quantities (halted, count, exact_accuracy, q_halt_accuracy, steps) must match exactly; float ones
    within max(`tolerance`, NOISE_FACTOR x their float32 rounding noise) relative error. Raises HrmkitError if the fixture or its json is missing or malformed.
    """
    path = Path(fixture_npz_path)
    if not path.is_file():
        raise HrmkitError(f"fixture {path} does not exist")
    spec = _fixture_spec(path)
    cfg = spec["config"]
    arch = arch_from_reference_config(cfg, spec.get("loss_type"), spec.get("arch_name"))
    data = _load_npz(path)
    head = build_model(arch, seq_len=cfg["seq_len"], vocab_size=cfg["vocab_size"],
                       num_puzzle_identifiers=cfg["num_puzzle_identifiers"])
    load_reference_state_dict(head, {k[len("state_dict."):]: data[k] for k in data if k.startswith("state_dict.")})
    batch = {k: torch.from_numpy(data[f"batch.{k}"]) for k in ("inputs", "labels", "puzzle_identifiers")}
    train_steps = len({k.split(".")[1] for k in data if k.startswith("train.")})
    ours = replay(head, batch, arch.halt_max_steps, train_steps)
    head64 = build_model(arch.model_copy(update={"forward_dtype": "float64"}), seq_len=cfg["seq_len"],
                         vocab_size=cfg["vocab_size"], num_puzzle_identifiers=cfg["num_puzzle_identifiers"])
    head64.load_state_dict(head.state_dict())
    exact = replay(head64, batch, arch.halt_max_steps, train_steps)
    report = VerifyReport(str(path), tolerance)
    for key in sorted(data):
        if key.startswith(("eval.", "train.")):
            logits = key.rsplit(".", 1)[0] if key.endswith(".logits") else ".".join(key.split(".")[:2]) + ".logits"
            floor = _rel(ours[logits], exact[logits]) if logits in ours and logits in exact else 0.0
            report.checks.append(_compare(key, ours.get(key), data[key], tolerance, exact.get(key), floor))
    return report
