"""Typed configuration: one place for every knob (the schemas, with their ranges), and `parse_override` for
`key=value` overrides (`arch.L_cycles=6`). Presets and the resolution of defaults < preset < YAML file <
overrides into a `TrainConfig` are in hrmkit/presets.py; this module imports nothing that loads a model.

Keys use the reference implementations' names where they exist (sapientinc/HRM `cfg_pretrain.yaml`,
`config/arch/hrm_v1.yaml`). Validation errors name the key and the bad value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from hrmkit import limits as L

# Every count, period and rate has a range (and every float is finite: allow_inf_nan=False below), so a bad
# value fails here, naming its key, instead of deep inside a run.
Positive = Annotated[int, Field(ge=1)]  # counts and periods
NonNegative = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy generators take unsigned 32-bit seeds
Rate = Annotated[float, Field(ge=0.0)]  # learning rates, weight decays
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]


def _upto(lo: int, hi: int) -> Any:
    return Annotated[int, Field(ge=lo, le=hi)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LossConfig(_Strict):
    """ACT loss head options (reference `arch.loss`; the head is always `models.losses.ACTLossHead`)."""

    loss_type: Literal["stablemax_cross_entropy", "softmax_cross_entropy"] = "stablemax_cross_entropy"
    label_smoothing: Beta = 0.0  # LM loss, training only (not in the reference)

    @model_validator(mode="before")
    @classmethod
    def _ignore_old_name(cls, data: Any) -> Any:
        # Runs, checkpoints and exports written before the key was dropped hold `name: ACTLossHead`; they still load.
        if isinstance(data, dict) and "name" in data:
            data = {k: v for k, v in data.items() if k != "name"}
        return data


class ArchConfig(_Strict):
    """Model architecture (reference `arch`).

    name: "hrm" (HRM ACT v1, docs/design.md §3), "trm" (TRM, §4) or "transformer" (the same blocks stacked
    without recursion, for the ARC Prize ablation).
    """

    name: Literal["hrm", "trm", "transformer"] = "hrm"
    # upper bounds: hrmkit.limits (past them the model cannot be built or a segment cannot finish)
    H_cycles: _upto(1, L.MAX_CYCLES) = 2
    L_cycles: _upto(1, L.MAX_CYCLES) = 2
    H_layers: _upto(0, L.MAX_LAYERS) = 4  # unused by TRM
    L_layers: _upto(1, L.MAX_LAYERS) = 4
    hidden_size: _upto(1, L.MAX_HIDDEN_SIZE) = 512
    expansion: Annotated[float, Field(gt=0.0, le=L.MAX_EXPANSION)] = 4.0
    num_heads: _upto(1, L.MAX_NUM_HEADS) = 8
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    rope_theta: PositiveFloat = 10000.0
    rms_norm_eps: PositiveFloat = 1e-5
    halt_max_steps: _upto(1, L.MAX_SEGMENTS) = 16
    halt_exploration_prob: Fraction = 0.1
    puzzle_emb_ndim: _upto(0, L.MAX_PUZZLE_EMB_NDIM) = 512
    puzzle_emb_len: _upto(0, L.MAX_PUZZLE_EMB_LEN) = 16  # TRM only: prefix tokens reserved for the puzzle embedding
    mlp_t: bool = False  # TRM only: SwiGLU across the sequence instead of attention
    no_ACT_continue: bool = True  # TRM only: halt on q_halt > 0, no q_continue head loss
    # auto: bf16 on CUDA, float32 on CPU; float64 only to measure float32 rounding noise (verify-reference)
    forward_dtype: Literal["auto", "float32", "bfloat16", "float64"] = "auto"
    loss: LossConfig = LossConfig()

    # Checks across keys, on the later key of each pair (fields validate in declaration order).
    @field_validator("H_layers")
    @classmethod
    def _hrm_has_h_blocks(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("name") == "hrm" and v < 1:
            raise ValueError("HRM needs at least one H block")
        return v

    @field_validator("num_heads")
    @classmethod
    def _heads_divide_width(cls, v: int, info: ValidationInfo) -> int:
        d = info.data.get("hidden_size")
        if d is not None and d % v:
            raise ValueError(f"must divide hidden_size={d}")
        return v

    @field_validator("pos_encodings")
    @classmethod
    def _rope_needs_even_heads(cls, v: str, info: ValidationInfo) -> str:
        d, h = info.data.get("hidden_size"), info.data.get("num_heads")
        if v == "rope" and d is not None and h is not None and (d // h) % 2:
            raise ValueError(f"needs an even head size, but hidden_size={d} / num_heads={h} = {d // h}")
        return v

    @field_validator("puzzle_emb_len")
    @classmethod
    def _trm_prefix_fits(cls, v: int, info: ValidationInfo) -> int:
        d, n = info.data.get("hidden_size"), info.data.get("puzzle_emb_ndim")
        if info.data.get("name") == "trm" and v and d is not None and n is not None and n > v * d:
            raise ValueError(f"{v} tokens of hidden_size={d} cannot hold puzzle_emb_ndim={n}")
        return v


class ModelShape(_Strict):
    """The dataset shape a model is built for (`model_shape` of checkpoints and exports): tokens per example,
    vocabulary size and rows of the puzzle embedding table. Integers only (strict: "16" or 16.0 are refused),
    bounded by hrmkit.limits so that a tampered file cannot ask for terabytes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    seq_len: _upto(1, L.MAX_SEQ_LEN)
    vocab_size: _upto(1, L.MAX_VOCAB_SIZE)
    num_puzzle_identifiers: _upto(1, L.MAX_PUZZLE_IDENTIFIERS)


def describe_errors(e: ValidationError, prefix: str = "") -> str:
    """One line for a pydantic ValidationError: `key=value: reason` per error, joined by "; ", each key
    preceded by `prefix` (e.g. "model_shape.")."""
    problems = []
    for err in e.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        problems.append(f"{key.rstrip('.') or 'value'}={err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


class DemoDataConfig(_Strict):
    """How `hrm train` builds its default dataset when `data_path` does not exist yet (the CPU demo): the
    `hrm data sudoku` options of the same names."""

    size: Literal[4, 6, 9] = 4
    train: Positive = 3000
    test: Positive = 1000
    seed: Seed = 0
    num_aug: NonNegative = 0
    max_clues: Positive | None = None
    disjoint_solutions: bool = False  # no test solution grid occurs in train (augmented versions included)


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

    fast_every: Positive | None = None
    fast_examples: Positive = 1000
    fast_seed: Seed = 0
    full_every: Positive | None = None
    gate_delta: Rate | None = None
    best_metric: str = "exact_accuracy"
    best_mode: Literal["max", "min"] = "max"
    # ARC: also pool the votes of every full evaluation of the run so far (TinyRecursiveModels' aggregated
    # voting), reported under `arc_aggregated/` keys beside the per-evaluation pass@k
    arc_aggregate: bool = False


class GuardsConfig(_Strict):
    """Divergence guards (`guards.*`).

    A step whose loss or gradient is NaN/Inf is skipped (no optimizer step, no EMA update), counted and logged.
    After `max_bad_steps` consecutive skipped steps the run rolls back to its newest checkpoint and multiplies
    every learning rate by `rollback_lr_factor`; after `max_rollbacks` rollbacks it stops with an error.
    """

    skip_nonfinite: bool = True
    max_bad_steps: Positive = 5
    rollback_lr_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    max_rollbacks: NonNegative = 3


class LogConfig(_Strict):
    """Logging sinks (`log.*`). metrics.jsonl is always written.

    tensorboard: event files in RUN/tensorboard (optional dependency `tensorboard`); wandb: Weights & Biases,
    offline by default (`wandb_mode`; optional dependency `wandb`); progress: `auto` draws a progress bar (tqdm)
    on a terminal and prints plain lines otherwise, `bar` always draws one, `lines` never does.
    eta_window_s: the ETA and samples/s come from the steps of the last `eta_window_s` seconds of training time.
    """

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "hrmkit"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    progress: Literal["auto", "bar", "lines"] = "auto"
    eta_window_s: PositiveFloat = 300.0


class DistillConfig(_Strict):
    """Knowledge distillation (`distill.*`, `hrm distill`; Hinton et al. 2015, arXiv 1503.02531) per ACT segment.

    teacher: the trained model the student learns from (a run folder, checkpoint or reference checkpoint; set
    by `hrm distill --teacher`, recorded so that a resume finds it). Per segment the loss is
    (1 - alpha) * CE(labels) + alpha * temperature^2 * KL(teacher || student), both at `temperature` for the
    KL, plus 0.5 * the Q losses, where with `halting` (and the same halt_max_steps) the Q-halt target mixes
    the same way: (1 - alpha) * BCE(q_halt, answer right) + alpha * BCE(q_halt, sigmoid(teacher q_halt)).
    """

    teacher: str | None = None
    temperature: PositiveFloat = 2.0
    alpha: Fraction = 0.5
    halting: bool = True


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
    global_batch_size: Positive | Literal["auto"] = 768
    epochs: Positive = 100000
    eval_interval: Positive | None = 10000
    max_steps: Positive | None = None
    max_time_s: PositiveFloat | None = None
    lr: Rate = 1e-4
    lr_min_ratio: Fraction = 1.0
    lr_warmup_steps: NonNegative = 2000
    weight_decay: Rate = 0.1
    beta1: Beta = 0.9
    beta2: Beta = 0.95
    puzzle_emb_lr: Rate = 1e-2
    puzzle_emb_weight_decay: Rate = 0.1
    grad_clip_norm: PositiveFloat | None = None
    ema: bool = False
    ema_rate: Fraction = 0.999
    seed: Seed = 0
    checkpoint_every: Positive = 1000
    keep_checkpoints: Positive = 3
    log_every: Positive = 50
    eval_batch_size: Positive | None = None  # default: global_batch_size
    eval_max_examples: Positive | None = None  # evaluate on the first N test examples only (None: all)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    out_dir: str = "runs"
    preset: str | None = None
    model: str | None = None  # architecture preset (`hrm model list`) under `arch`; arch.* keys given override it
    # --- long-run machinery (hrmkit additions) ---
    eval: EvalConfig = EvalConfig()
    guards: GuardsConfig = GuardsConfig()
    log: LogConfig = LogConfig()
    status_interval_s: PositiveFloat = 60.0
    early_stop_patience: Positive | None = None
    lr_schedule: Literal["cosine", "constant", "cosine_restarts"] = "cosine"
    lr_restart_period: Positive = 1000
    lr_restart_mult: Annotated[float, Field(ge=1.0)] = 1.0
    grad_accum_steps: Positive = 1
    compile: bool = False
    prefetch_batches: Literal["auto"] | NonNegative = "auto"  # batches drawn ahead in a thread; auto: 2 on CUDA, else 0
    memory_headroom: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    auto_batch_max: Positive = 8192
    dist_timeout_s: PositiveFloat = 7200.0
    # --- fine-tuning (`loading.init_from_checkpoint`) ---
    # start from this checkpoint's weights: an hrmkit run folder or checkpoint, or a reference step_N file whose
    # all_config.yaml also gives the architecture unless model= or arch.* keys are set
    init_from: str | None = None
    # how init_from fills a puzzle-embedding table of another size: `mean` (every row the mean of the
    # checkpoint's rows, TinyRecursiveModels' load_checkpoint) or `extend` (the checkpoint's rows kept as rows
    # 0..N-1, the new identifiers N.. set to the mean of its trained rows 1..N-1: `hrm adapt`)
    init_from_puzzle_rows: Literal["mean", "extend"] = "mean"
    distill: DistillConfig = DistillConfig()  # `hrm distill` (deploy/distill_cli.py)


def parse_override(item: str) -> dict:
    """Turn `arch.L_cycles=6` into `{"arch": {"L_cycles": 6}}`; the value is parsed as YAML (6 -> int).

    Raises HrmkitError when the item has no `=`.
    """
    import yaml

    from hrmkit.errors import HrmkitError

    if "=" not in item:
        raise HrmkitError(f"override {item!r}: expected key=value (for example arch.L_cycles=6)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as e:
        raise HrmkitError(f"override {item!r}: the value is not plain YAML ({str(e).splitlines()[0]})") from None
    out: dict = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out
