"""Test-time training on new ARC tasks (`hrm adapt`): a pretrained HRM/TRM learns the puzzle
embeddings of tasks it never saw from their demonstration pairs, then answers their test inputs by voting over
augmented versions, into a Kaggle `submission.json`.

The references reach their ARC scores by training on the evaluation tasks' demonstration pairs
(github.com/sapientinc/HRM/issues/18; TinyRecursiveModels' builder does the same); a model never trained on a
task has no puzzle embedding for it. `adapt` does that training after the fact, for the new tasks only:

1. the challenges file (Kaggle layout `{task_id: {"train": [...], "test": [{"input": ...}]}}`) is validated;
   any test `output` in it is dropped, so no test answer can enter the data (`--solutions` is read for scoring
   only, after predicting);
2. `DIR/data` is an ARC dataset (`data.arc_build.write_arc_tasks`, the reference augmentation: identity +
   `num_aug` dihedral/colour versions per task) whose train split holds the demonstration pairs and whose test
   split holds the test inputs with PAD labels; its identifiers 1..N-1 are reserved for the checkpoint's
   puzzle-table rows and the new versions follow them;
3. the model is built for that dataset and initialised with `init_from=CHECKPOINT init_from_puzzle_rows=extend`
   (the checkpoint's rows kept, the new rows at the mean of its trained rows, every other weight loaded);
   its votes are written to `DIR/submission.json` first, as the un-adapted answer;
4. it fine-tunes as a normal `hrm train` run in `DIR/runs/` (status.json, checkpoints, SIGTERM, resume) with
   `ADAPT_DEFAULTS`, overridable by key=value; evaluation during training is off (the test split has no
   answers), the run's closing evaluation sees only PAD labels and is ignored;
5. the adapted model's votes replace `DIR/submission.json` atomically; with solutions, pass@k before and after
   and the ARC baselines go to `DIR/adapt_report.json`.

With a time budget the training gets what is left after the un-adapted pass, minus the time of one more
prediction pass and a margin (`plan_training_time`), as `max_time_s`; a crash during training leaves the
un-adapted submission in place.

Public API: `AdaptConfig`, `ADAPT_DEFAULTS`, `load_challenges`, `load_solutions`, `adapt`, `AdaptResult`,
`plan_training_time`, `checkpoint_model_shape`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hrmkit.data import arc
from hrmkit.errors import HrmkitError, RunCrashed
from hrmkit.fsutil import read_json

# Adaptation defaults (BENCHMARKS.md "hrm adapt"): a short constant-rate fine-tune, the puzzle embeddings at the
# references' rate. Every key is a `hrm train` key and can be overridden with key=value.
ADAPT_DEFAULTS: dict[str, Any] = {
    "global_batch_size": 32,
    "epochs": 100000,
    "eval_interval": None,
    "max_steps": 300,
    "lr": 1e-4,
    "lr_warmup_steps": 10,
    "lr_min_ratio": 1.0,
    "weight_decay": 0.1,
    "puzzle_emb_lr": 1e-2,
    "puzzle_emb_weight_decay": 0.1,
    "checkpoint_every": 100,
    "keep_checkpoints": 2,
    "log_every": 25,
    "eval_max_examples": 1,  # the closing evaluation of the run has no answers to score (see module docstring)
    "log": {"progress": "lines"},
}
DEFAULT_NUM_AUG = 100
MARGIN_S = 5.0  # time kept back from a budget beyond the measured prediction pass
DATA, RUNS, SUBMISSION, REPORT = "data", "runs", "submission.json", "adapt_report.json"


@dataclass
class AdaptConfig:
    """One `hrm adapt` call: `checkpoint` (hrmkit run/checkpoint/export or reference step_N), `tasks` (Kaggle
    challenges JSON), `out` (folder), `solutions` (Kaggle solutions JSON, scoring only), `num_aug` (augmented
    versions per task besides the identity), `time_budget_s` (wall-clock seconds for the whole call), `overrides`
    (key=value training keys), `seed` (augmentation), `device`."""

    checkpoint: str
    tasks: str
    out: str
    solutions: str | None = None
    num_aug: int = DEFAULT_NUM_AUG
    time_budget_s: float | None = None
    overrides: Sequence[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"


@dataclass
class AdaptResult:
    """What `adapt` did: the submission path, the run folder (None when no training ran), the steps trained,
    pass@k before/after adaptation and the ARC baselines (None without solutions), seconds per phase, and
    `exit_code` (0; 128 + signal when training was interrupted; 3 when training crashed)."""

    submission: Path
    run_dir: Path | None
    steps: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    baselines: dict[str, Any] | None
    seconds: dict[str, float]
    exit_code: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"submission": str(self.submission), "run_dir": str(self.run_dir) if self.run_dir else None,
                "steps": self.steps, "before": self.before, "after": self.after, "baselines": self.baselines,
                "seconds": self.seconds, "exit_code": self.exit_code, "note": self.note}


# ------------------------------------------------------------------------------------------------ input files
def load_challenges(path: str | Path) -> list[arc.ArcTask]:
    """The tasks of a Kaggle challenges file, validated (grids at most 30x30, colours 0..9, at least one
    demonstration pair and one test input per task), as evaluation tasks without test outputs: a test `output`
    present in the file is dropped. Raises HrmkitError naming the file, task and field."""
    path = Path(path)
    if not path.is_file():
        raise HrmkitError(f"--tasks {path}: file not found")
    obj = read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise HrmkitError(f"--tasks {path}: expected a non-empty object {{task_id: task}}, got "
                          f"{type(obj).__name__ if obj != {} else 'an empty object'}")
    tasks = []
    for task_id, task in obj.items():
        if isinstance(task, dict) and isinstance(task.get("test"), list):
            task = {**task, "test": [{"input": ex.get("input")} if isinstance(ex, dict) else ex for ex in task["test"]]}
        tasks.append(arc.parse_task(task, task_id, "evaluation", str(path), solved=False))
    return tasks


def load_solutions(path: str | Path, tasks: Sequence[arc.ArcTask]) -> dict[str, list[np.ndarray]]:
    """Expected outputs per task from a Kaggle solutions file (`{task_id: [grid per test input]}`), for every
    task of `tasks`. Raises HrmkitError naming the file, task and field when one is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise HrmkitError(f"--solutions {path}: file not found")
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise HrmkitError(f"--solutions {path}: expected an object {{task_id: [output grid, ...]}}")
    out = {}
    for task in tasks:
        grids = obj.get(task.task_id)
        if not isinstance(grids, list) or len(grids) != len(task.test):
            raise HrmkitError(f"--solutions {path}: task {task.task_id}: expected a list of {len(task.test)} output "
                              f"grids (one per test input), got {str(grids)[:60]}")
        out[task.task_id] = [arc.parse_grid(g, str(path), task.task_id, f"[{i}]") for i, g in enumerate(grids)]
    return out


def checkpoint_model_shape(target: str | Path) -> dict[str, int]:
    """The model shape (seq_len, vocab_size, num_puzzle_identifiers) of the checkpoint `target` without building
    the model; a reference checkpoint is read at the ARC sequence length. Raises HrmkitError when it is not an
    ARC model (vocabulary 12, 900 cells)."""
    from hrmkit.loading import (is_export_folder, is_reference_checkpoint, load_checkpoint, read_export_config,
                                resolve_checkpoints)

    if is_export_folder(target):
        shape = read_export_config(Path(target))["model_shape"]
    else:
        path = resolve_checkpoints(target)[-1]
        if is_reference_checkpoint(path):
            from hrmkit.models.reference import read_reference_checkpoint

            shape = read_reference_checkpoint(path, seq_len=arc.SEQ_LEN).model_shape
        else:
            state = load_checkpoint(path)
            shape = state.get("model_shape") if isinstance(state, dict) else None
            if not isinstance(shape, dict):
                raise HrmkitError(f"--checkpoint {path}: not an hrmkit checkpoint (no model_shape entry)")
    shape = {k: int(v) for k, v in dict(shape).items()}
    if shape.get("vocab_size") != arc.VOCAB_SIZE or shape.get("seq_len") != arc.SEQ_LEN:
        raise HrmkitError(f"--checkpoint {target}: not an ARC model (vocab_size {shape.get('vocab_size')}, seq_len "
                          f"{shape.get('seq_len')}; ARC models have {arc.VOCAB_SIZE} and {arc.SEQ_LEN})")
    return shape


# ------------------------------------------------------------------------------------------------- planning
def plan_training_time(budget_s: float | None, elapsed_s: float, predict_s: float) -> float | None:
    """Seconds of training (`max_time_s`) that fit a budget of `budget_s` wall-clock seconds when `elapsed_s`
    are spent and one more prediction pass takes about `predict_s`: what is left minus 1.5 prediction passes
    (the run's start-up and closing evaluation, the final votes) and MARGIN_S. None without a budget; 0 when
    nothing is left (no training)."""
    if budget_s is None:
        return None
    return max(0.0, budget_s - elapsed_s - 1.5 * predict_s - MARGIN_S)


# ------------------------------------------------------------------------------------------------- the call
def _build_data(cfg: AdaptConfig, tasks: list[arc.ArcTask], pretrained_rows: int, log: Callable[[str], None]) -> Path:
    from hrmkit.data.arc_build import ArcBuildConfig, write_arc_tasks

    data = Path(cfg.out) / DATA
    stamp = {"tasks": str(Path(cfg.tasks).resolve()), "num_aug": cfg.num_aug, "seed": cfg.seed,
             "pretrained_rows": pretrained_rows, "task_ids": [t.task_id for t in tasks]}
    stamp_path = Path(cfg.out) / "adapt_data.json"
    if data.is_dir() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        log(f"adapt: reusing {data}")
        return data
    build = ArcBuildConfig(out=str(data), num_aug=cfg.num_aug, seed=cfg.seed, eval_policy="reference", force=True)
    first = ["<blank>"] + [f"<pretrained {i}>" for i in range(1, pretrained_rows)]
    write_arc_tasks(build, [], tasks, log, first_names=first)
    from hrmkit.fsutil import atomic_write_json

    atomic_write_json(stamp_path, stamp)
    return data


def _votes(head, data: Path, batch_size: int, device) -> Any:
    """RankedAnswers of `head` over the test split of `data`: every augmented version votes. Votes are counted
    batch by batch (`arc_scoring.VoteTally`), so memory holds the distinct answers, not every predicted canvas
    (120 tasks x 1000 versions would be GBs of int64 rows). Test example j of a puzzle is its task's test
    input j (`data.arc_build`)."""
    import torch

    from hrmkit.data.format import load_identifiers, load_split
    from hrmkit.data.sampler import test_batches
    from hrmkit.eval.arc_eval import test_indices
    from hrmkit.eval.arc_scoring import ArcPrediction, VoteTally
    from hrmkit.eval.rollout import rollout

    split = load_split(data, "test")
    names = load_identifiers(data)
    index = test_indices(split, split.num_examples)
    tally, done, parsed = VoteTally(), 0, {}
    head.eval()
    with torch.inference_mode():
        for batch, n in test_batches(split, batch_size):
            out = rollout(head, {k: v.to(device) for k, v in batch.items()}).outputs
            preds = out["preds"][:n].long().cpu().numpy()
            q_halt = out["q_halt_logits"][:n].float().cpu().numpy()
            votes = []
            for i, (pid, grid) in enumerate(zip(batch["puzzle_identifiers"][:n].tolist(), arc.decode_grids(preds))):
                if pid not in parsed:
                    parsed[pid] = arc.parse_identifier(names[pid])
                task_id, tid, perm = parsed[pid]
                votes.append(ArcPrediction(task_id, int(index[done + i]), tokens=preds[i] if grid is None else None,
                                           grid=grid, dihedral_id=tid, colour_perm=perm, q_halt=float(q_halt[i])))
            tally.add(votes)
            done += n
    return tally.ranked()


def _write(ranked, tasks: list[arc.ArcTask], path: Path) -> None:
    from hrmkit.eval.arc_scoring import build_submission, write_submission

    write_submission(path, build_submission(ranked, {t.task_id: len(t.test) for t in tasks}))


def _score(ranked, solutions: dict | None) -> dict | None:
    from hrmkit.eval.arc_scoring import score_ranked

    if solutions is None:
        return None
    s = score_ranked(ranked, solutions, ks=(1, 2))
    return {k: s[k] for k in ("pass@1", "pass@2", "n_tasks", "n_test_inputs", "tasks_solved_pass@2")} | {
        "per_task": {row["task_id"]: row["pass@2"] for row in s["tasks"]}}


def _baselines(tasks: list[arc.ArcTask], solutions: dict | None) -> dict | None:
    from hrmkit.eval.baselines import arc_baselines

    if solutions is None:
        return None
    scores = arc_baselines({t.task_id: list(t.train) for t in tasks}, {t.task_id: [i for i, _ in t.test] for t in tasks},
                           solutions, ks=(1, 2))
    return {name: {"pass@1": s["pass@1"], "pass@2": s["pass@2"], "description": s["baseline"]["description"]}
            for name, s in scores.items()}


def train_config(cfg: AdaptConfig, data: Path, max_time_s: float | None):
    """The TrainConfig of the adaptation run: ADAPT_DEFAULTS < the call's fixed keys < key=value overrides
    (`max_time_s` from the budget caps any given one). Raises HrmkitError for a bad key or value."""
    from hrmkit.presets import resolve_config

    fixed = {"data_path": str(data), "init_from": str(cfg.checkpoint), "init_from_puzzle_rows": "extend",
             "out_dir": str(Path(cfg.out) / RUNS), "device": cfg.device}
    tc = resolve_config(base={**ADAPT_DEFAULTS, **fixed}, base_source="hrm adapt defaults",
                        overrides=list(cfg.overrides))
    if tc.init_from_puzzle_rows != "extend" or Path(tc.data_path) != data or tc.init_from != str(cfg.checkpoint):
        raise HrmkitError("hrm adapt: data_path, init_from and init_from_puzzle_rows are set by hrm adapt "
                          "(--out, --checkpoint), not by key=value")
    if max_time_s is not None:
        tc = tc.model_copy(update={"max_time_s": min(max_time_s, tc.max_time_s or max_time_s)})
    return tc


def adapt(cfg: AdaptConfig, log: Callable[[str], None] = print) -> AdaptResult:
    """Run `hrm adapt` (module docstring). Every input is validated before anything is written. Raises
    HrmkitError for bad input (nothing written); training crashes are caught once the un-adapted submission
    exists (exit_code 3, the earlier submission stays)."""
    import torch

    from hrmkit.device import pick_device
    from hrmkit.loading import init_from_checkpoint
    from hrmkit.models import build_model

    t0 = time.monotonic()
    if cfg.num_aug < 0:
        raise HrmkitError(f"--num-aug: must be >= 0, got {cfg.num_aug}")
    if cfg.time_budget_s is not None and cfg.time_budget_s <= 0:
        raise HrmkitError(f"--time-budget: must be > 0 seconds, got {cfg.time_budget_s}")
    tasks = load_challenges(cfg.tasks)
    solutions = load_solutions(cfg.solutions, tasks) if cfg.solutions else None
    shape = checkpoint_model_shape(cfg.checkpoint)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise HrmkitError(f"--out {out}: exists and is not a folder")
    train_config(cfg, out / DATA, None)  # bad key=value: fail before writing anything
    device = pick_device(cfg.device)
    seconds: dict[str, float] = {}

    out.mkdir(parents=True, exist_ok=True)
    data = _build_data(cfg, tasks, shape["num_puzzle_identifiers"], log)
    seconds["data"] = round(time.monotonic() - t0, 2)
    tc = train_config(cfg, data, None)
    from hrmkit.data.format import load_split

    meta = load_split(data, "test").metadata
    head = build_model(tc.arch, seq_len=meta.seq_len, vocab_size=meta.vocab_size,
                       num_puzzle_identifiers=meta.num_puzzle_identifiers)
    init_from_checkpoint(head, cfg.checkpoint, log, data, puzzle_rows="extend")
    head.to(device)
    batch = int(tc.eval_batch_size or (tc.global_batch_size if tc.global_batch_size != "auto" else 64))
    t1 = time.monotonic()
    ranked = _votes(head, data, batch, device)
    predict_s = time.monotonic() - t1
    submission = out / SUBMISSION
    _write(ranked, tasks, submission)
    before = _score(ranked, solutions)
    seconds["before"] = round(time.monotonic() - t1, 2)
    log(f"adapt: wrote {submission} from the un-adapted model ({predict_s:.1f}s for {meta.total_groups} tasks)"
        + (f"; pass@2 {before['pass@2']:.4f}" if before else ""))
    del head

    result = AdaptResult(submission, None, 0, before, None, _baselines(tasks, solutions), seconds)
    max_time = plan_training_time(cfg.time_budget_s, time.monotonic() - t0, predict_s)
    if max_time is not None and max_time < 1.0:
        result.note = f"no time left for training within --time-budget {cfg.time_budget_s}s"
        log(f"adapt: {result.note}; the un-adapted submission stays")
        return _finish(result, out, t0)
    tc = train_config(cfg, data, max_time)
    t2 = time.monotonic()
    try:
        run = _train(tc, log)
    except (RunCrashed, RuntimeError, MemoryError) as e:  # the earlier submission stays
        result.exit_code, result.note = 3, f"training crashed ({type(e).__name__}: {e}); the un-adapted submission stays"
        log(f"adapt: {result.note}")
        return _finish(result, out, t0)
    seconds["train"] = round(time.monotonic() - t2, 2)
    result.run_dir = run.run_dir
    if run.state != "finished":
        result.exit_code = run.exit_code
        result.note = f"training {run.state}; resume with the same hrm adapt command"
    from hrmkit.loading import load_model

    model = load_model(run.run_dir, device, data=data)
    result.steps = model.step
    left = None if cfg.time_budget_s is None else cfg.time_budget_s - (time.monotonic() - t0)
    if left is not None and left < 1.2 * predict_s:
        result.note = "no time left within --time-budget for the adapted model's votes; the un-adapted submission stays"
        log(f"adapt: {result.note}")
    elif model.step > 0 and run.state == "finished":
        t3 = time.monotonic()
        ranked = _votes(model.head, data, batch, device)
        _write(ranked, tasks, submission)
        result.after = _score(ranked, solutions)
        seconds["after"] = round(time.monotonic() - t3, 2)
        log(f"adapt: replaced {submission} with the votes of the model adapted for {model.step} steps"
            + (f"; pass@2 {result.after['pass@2']:.4f}" if result.after else ""))
    return _finish(result, out, t0)


def _train(tc, log: Callable[[str], None]):
    """Train (or resume the unfinished adaptation run in out_dir) and return its RunResult."""
    from hrmkit.train.loop import train
    from hrmkit.train.run_folders import find_resumable

    found = find_resumable(Path(tc.out_dir))
    if found is not None:
        log(f"adapt: resuming {found}")
    return train(tc, resume_dir=str(found) if found else None)


def _finish(result: AdaptResult, out: Path, t0: float) -> AdaptResult:
    from hrmkit.fsutil import atomic_write_json

    result.seconds["total"] = round(time.monotonic() - t0, 2)
    atomic_write_json(out / REPORT, result.to_json())
    return result
