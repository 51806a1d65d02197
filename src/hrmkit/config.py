"""Typed configuration: one place for every knob, YAML files and `key=value` overrides (`arch.L_cycles=6`).

Keys use the reference implementations' names where they exist (sapientinc/HRM `cfg_pretrain.yaml`,
`config/arch/hrm_v1.yaml`). Validation errors name the key and the bad value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LossConfig(_Strict):
    """ACT loss head options (reference `arch.loss`)."""

    name: str = "ACTLossHead"
    loss_type: Literal["stablemax_cross_entropy", "softmax_cross_entropy"] = "stablemax_cross_entropy"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)  # LM loss, training only (not in the reference)


class ArchConfig(_Strict):
    """Model architecture (reference `arch`).

    name: "hrm" (HRM ACT v1, DESIGN.md §3), "trm" (TRM, §4) or "transformer" (the same blocks stacked
    without recursion, for the ARC Prize ablation).
    """

    name: Literal["hrm", "trm", "transformer"] = "hrm"
    H_cycles: int = 2
    L_cycles: int = 2
    H_layers: int = 4
    L_layers: int = 4
    hidden_size: int = 512
    expansion: float = 4.0
    num_heads: int = 8
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    puzzle_emb_ndim: int = 512
    puzzle_emb_len: int = 16  # TRM only: prefix tokens reserved for the puzzle embedding
    mlp_t: bool = False  # TRM only: SwiGLU across the sequence instead of attention
    no_ACT_continue: bool = True  # TRM only: halt on q_halt > 0, no q_continue head loss
    # auto: bf16 on CUDA, float32 on CPU; float64 only to measure float32 rounding noise (verify-reference)
    forward_dtype: Literal["auto", "float32", "bfloat16", "float64"] = "auto"
    loss: LossConfig = LossConfig()


class DemoDataConfig(_Strict):
    """How `hrm train` builds its default dataset when `data_path` does not exist yet (the CPU demo)."""

    size: int = 4
    train: int = 3000
    test: int = 1000
    seed: int = 0
    num_aug: int = 0


class EvalConfig(_Strict):
    """Evaluation cadence during training (`eval.*`).

    Fast evaluation: every `fast_every` optimizer steps on a fixed subset of `fast_examples` test examples
    drawn with `fast_seed` (the same subset for the whole run). Full evaluation: every `full_every` steps on the
    whole test split (or its first `eval_max_examples`); when unset, every `eval_interval` epochs (the
    reference cadence). With `gate_delta`, a due full evaluation runs only when the fast score improved by at
    least `gate_delta` since the last full one (without `full_every`: whenever a fast evaluation improved that
    much). The best checkpoint is chosen on full evaluations (on fast ones when no full cadence is set) by
    `best_metric` (a key of the evaluation summary), higher is better unless `best_mode: min`.
    """

    fast_every: int | None = Field(default=None, ge=1)
    fast_examples: int = Field(default=1000, ge=1)
    fast_seed: int = 0
    full_every: int | None = Field(default=None, ge=1)
    gate_delta: float | None = Field(default=None, ge=0.0)
    best_metric: str = "exact_accuracy"
    best_mode: Literal["max", "min"] = "max"


class GuardsConfig(_Strict):
    """Divergence guards (`guards.*`).

    A step whose loss or gradient is NaN/Inf is skipped (no optimizer step, no EMA update), counted and logged.
    After `max_bad_steps` consecutive skipped steps the run rolls back to its newest checkpoint and multiplies
    every learning rate by `rollback_lr_factor`; after `max_rollbacks` rollbacks it stops with an error.
    """

    skip_nonfinite: bool = True
    max_bad_steps: int = Field(default=5, ge=1)
    rollback_lr_factor: float = Field(default=0.5, gt=0.0, le=1.0)
    max_rollbacks: int = Field(default=3, ge=0)


class LogConfig(_Strict):
    """Logging sinks (`log.*`). metrics.jsonl is always written.

    tensorboard: event files in RUN/tensorboard (optional dependency `tensorboard`); wandb: Weights & Biases,
    offline by default (`wandb_mode`; optional dependency `wandb`); progress: `auto` draws a progress bar on a
    terminal when tqdm is installed and prints plain lines otherwise, `bar` requires tqdm, `lines` never
    draws a bar. eta_window_s: the ETA and samples/s come from the steps of the last `eta_window_s` seconds of
    training time.
    """

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "hrmkit"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    progress: Literal["auto", "bar", "lines"] = "auto"
    eta_window_s: float = Field(default=300.0, gt=0.0)


class TrainConfig(_Strict):
    """One training run (reference `cfg_pretrain.yaml` names where they exist).

    Units: `epochs` and `eval_interval` count epochs (passes over the training groups, as the reference);
    `max_steps`, `checkpoint_every`, `log_every`, `lr_warmup_steps` count optimizer steps; `max_time_s` is
    wall-clock seconds of training (evaluation excluded) after which the run stops cleanly.

    One optimizer step takes `grad_accum_steps` ACT segments (batches); `global_batch_size` is per segment and
    `auto` (CUDA only) picks the largest batch that leaves `memory_headroom` (fraction) of GPU memory free.
    `lr_schedule`: `cosine` (reference: linear warmup, then cosine to lr * lr_min_ratio), `constant` (warmup,
    then lr) or `cosine_restarts` (warmup, then cosine cycles of `lr_restart_period` steps, each cycle
    `lr_restart_mult` times longer than the previous). `status_interval_s` is the heartbeat period (seconds);
    `early_stop_patience` counts best-tracking evaluations without improvement. bf16 on CUDA is the models'
    `arch.forward_dtype: auto` (`bfloat16` trains in bf16 on a CPU too); `compile: true` compiles every ACT segment
    into one graph (`models.compile_model`; pays on CPU for small models, see BENCHMARKS.md).
    """

    data_path: str = "data/sudoku-4x4-demo"
    demo_data: DemoDataConfig | None = None  # build data_path with this recipe when it is missing
    arch: ArchConfig = ArchConfig()
    global_batch_size: int | Literal["auto"] = 768
    epochs: int = 100000
    eval_interval: int | None = 10000
    max_steps: int | None = None
    max_time_s: float | None = None
    lr: float = 1e-4
    lr_min_ratio: float = 1.0
    lr_warmup_steps: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2
    puzzle_emb_weight_decay: float = 0.1
    grad_clip_norm: float | None = None
    ema: bool = False
    ema_rate: float = 0.999
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    eval_batch_size: int | None = None  # default: global_batch_size
    eval_max_examples: int | None = None  # evaluate on the first N test examples only (None: all)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs"
    preset: str | None = None
    model: str | None = None  # architecture preset (`hrm model list`) under `arch`; arch.* keys given override it
    # --- long-run machinery (hrmkit additions) ---
    eval: EvalConfig = EvalConfig()
    guards: GuardsConfig = GuardsConfig()
    log: LogConfig = LogConfig()
    status_interval_s: float = Field(default=60.0, gt=0.0)
    early_stop_patience: int | None = Field(default=None, ge=1)
    lr_schedule: Literal["cosine", "constant", "cosine_restarts"] = "cosine"
    lr_restart_period: int = Field(default=1000, ge=1)
    lr_restart_mult: float = Field(default=1.0, ge=1.0)
    grad_accum_steps: int = Field(default=1, ge=1)
    compile: bool = False
    memory_headroom: float = Field(default=0.1, ge=0.0, lt=1.0)
    auto_batch_max: int = Field(default=8192, ge=1)
    dist_timeout_s: float = Field(default=7200.0, gt=0.0)


# Presets are partial configs (nested dicts) applied before the YAML file and the key=value overrides.
PRESETS: dict[str, dict] = {
    # The CPU demo: a small HRM learns 4x4 Sudoku (about 60% blank cells) on a laptop in under 10 minutes.
    "demo": {
        "data_path": "data/sudoku-4x4-demo",
        "demo_data": {"size": 4, "train": 3000, "test": 1000, "seed": 0},
        "arch": {
            "name": "hrm", "hidden_size": 64, "num_heads": 4, "expansion": 4.0,
            "H_layers": 2, "L_layers": 2, "H_cycles": 2, "L_cycles": 2,
            "halt_max_steps": 4, "halt_exploration_prob": 0.1, "puzzle_emb_ndim": 64,
            "pos_encodings": "rope",
        },
        "global_batch_size": 64,
        "epochs": 100000,
        "eval_interval": None,
        "max_steps": 4500,
        "max_time_s": 540,
        "lr": 2e-3,
        "lr_warmup_steps": 100,
        "lr_min_ratio": 0.1,
        "weight_decay": 0.1,
        "puzzle_emb_lr": 2e-3,
        "puzzle_emb_weight_decay": 0.1,
        "checkpoint_every": 500,
        "log_every": 100,
        "eval_batch_size": 500,
    },
    # Reference recipes (DESIGN.md §3 table); architecture from the model presets.
    "hrm-sudoku-extreme-1k": {
        "model": "hrm-paper", "global_batch_size": 768, "epochs": 20000, "eval_interval": 2000,
        "lr": 1e-4, "puzzle_emb_lr": 1e-4, "weight_decay": 1.0, "puzzle_emb_weight_decay": 1.0,
        "lr_warmup_steps": 2000,
    },
    "hrm-arc": {
        "model": "hrm-paper", "global_batch_size": 768, "epochs": 100000, "eval_interval": 10000,
        "lr": 1e-4, "puzzle_emb_lr": 1e-2, "weight_decay": 0.1, "puzzle_emb_weight_decay": 0.1,
        "lr_warmup_steps": 2000,
    },
}


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> dict:
    """Turn `arch.L_cycles=6` into `{"arch": {"L_cycles": 6}}`; the value is parsed as YAML (6 -> int).

    Raises HrmkitError when the item has no `=`.
    """
    import yaml

    from hrmkit.errors import HrmkitError

    if "=" not in item:
        raise HrmkitError(f"override {item!r}: expected key=value (for example arch.L_cycles=6)")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    out: dict = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def resolve_config(
    preset: str | None = None, config_file: str | None = None, overrides: list[str] | None = None,
    base: dict | None = None,
) -> TrainConfig:
    """Build the TrainConfig: defaults < `base` (e.g. a resumed run's config) < preset < YAML file < overrides.

    Raises HrmkitError naming the preset, file, key and value at fault.
    """
    import yaml
    from pydantic import ValidationError

    from hrmkit.errors import HrmkitError

    merged: dict = dict(base or {})
    user: dict = {}  # what the YAML file and the overrides set: beats the `model` architecture preset
    if preset is not None:
        if preset not in PRESETS:
            raise HrmkitError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
        merged = _deep_merge(merged, PRESETS[preset])
        merged["preset"] = preset
    source = "overrides"
    if config_file is not None:
        try:
            with open(config_file) as f:
                loaded = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise HrmkitError(f"{config_file}: cannot read config: {e}") from e
        if not isinstance(loaded, dict):
            raise HrmkitError(f"{config_file}: expected a mapping of keys, got {type(loaded).__name__}")
        user = _deep_merge(user, loaded)
        source = config_file
    for item in overrides or []:
        user = _deep_merge(user, parse_override(item))
    merged = _deep_merge(merged, user)
    if isinstance(merged.get("model"), str):
        from hrmkit.models.presets import get_preset

        arch = get_preset(merged["model"]).model_dump()
        for layer in (base or {}, user):  # a resumed run's arch, then the user's arch.* keys
            arch = _deep_merge(arch, layer.get("arch") or {})
        merged["arch"] = arch
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"{key}={err.get('input')!r}: {err['msg']}")
        raise HrmkitError(f"invalid config ({source}): " + "; ".join(problems)) from None
