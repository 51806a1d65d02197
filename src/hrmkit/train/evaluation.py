"""Evaluation during training: when to run the fast and full evaluations, the best checkpoint, early stopping.

See `EvalConfig` (config `eval.*`) for the cadence. The decision logic is pure (`EvalPlan`, `EvalTracker`);
the loop runs the evaluations. The best checkpoint is archived in `RUN/best/`: `checkpoint.pt` (a hard link
to, or a copy of, the checkpoint of that step, which retention also keeps), `config.yaml` and `metrics.json`
(metric, value, step, the evaluation summary and its change against the previous best).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.config import EvalConfig
from hrmkit.data.format import SetArrays, SplitData
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory, atomic_write_json


def fast_subset(split: SplitData, n: int, seed: int) -> SplitData:
    """A fixed subset of `n` examples of `split`, drawn with `seed` (sorted, so batches keep the split's order).

    Each kept example becomes its own puzzle and group, with its original puzzle identifier. The whole split
    when n >= its size.
    """
    if n >= split.num_examples:
        return split
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(split.num_examples, size=n, replace=False))
    sets, offset = {}, 0
    for name, arrs in split.sets.items():
        local = picked[(picked >= offset) & (picked < offset + arrs.num_examples)] - offset
        offset += arrs.num_examples
        if local.size == 0:
            continue
        puzzle = np.searchsorted(arrs.puzzle_indices, local, side="right") - 1
        k = np.arange(local.size + 1, dtype=np.int32)
        sets[name] = SetArrays(np.asarray(arrs.inputs[local]), np.asarray(arrs.labels[local]),
                               arrs.puzzle_identifiers[puzzle].astype(np.int32), k, k.copy())
    return SplitData(split.path, split.metadata, sets)


class EvalPlan:
    """Which evaluations are due after a global step.

    `full_every` defaults to `full_every_steps` (the reference `eval_interval` in epochs, converted to steps).
    With a fast cadence but no full cadence and no gate, the best checkpoint is chosen on fast evaluations;
    with no cadence at all, on the full evaluation at the end of training.
    """

    def __init__(self, cfg: EvalConfig, full_every_steps: int | None):
        self.fast_every = cfg.fast_every
        self.full_every = cfg.full_every or full_every_steps
        self.gated = cfg.gate_delta is not None
        self.best_on_fast = bool(self.fast_every) and self.full_every is None and not self.gated

    def due(self, step: int) -> tuple[bool, bool]:
        """(run a fast evaluation, a full evaluation is due) at `step`. A gated full evaluation needs a fast
        score at the same step, so a due full evaluation with a gate also asks for a fast one."""
        fast = bool(self.fast_every) and step % self.fast_every == 0
        if self.full_every:
            full = step % self.full_every == 0
        else:
            full = self.gated and fast
        return fast or (full and self.gated), full


class EvalTracker:
    """Best score, the gate reference and the early-stopping counter; saved in checkpoints (`state_dict`).

    best: {metric, value, step, checkpoint, summary} or None; last_eval: {step, kind, metrics, diagnosis?};
    gate_ref: the fast score when the last full evaluation ran; stale_evals: best-tracking evaluations since
    the last improvement.
    """

    def __init__(self, cfg: EvalConfig, patience: int | None):
        self.cfg, self.patience = cfg, patience
        self.best: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        self.last_fast: dict[str, Any] | None = None
        self.gate_ref: float | None = None
        self.stale_evals = 0

    def score(self, summary: dict[str, Any]) -> float:
        """The tracked metric of an evaluation summary. Raises HrmkitError when the summary lacks it."""
        value = summary.get(self.cfg.best_metric)
        if not isinstance(value, (int, float)):
            keys = sorted(k for k, v in summary.items() if isinstance(v, (int, float)))
            raise HrmkitError(f"eval.best_metric={self.cfg.best_metric!r} is not a numeric field of the evaluation "
                              f"summary; choose one of {', '.join(keys)}")
        return float(value)

    def better(self, value: float, than: float | None, delta: float = 0.0) -> bool:
        if than is None:
            return True
        return value >= than + delta if self.cfg.best_mode == "max" else value <= than - delta

    def gate_open(self, fast_value: float | None) -> bool:
        """Whether a due full evaluation runs (always without a gate)."""
        if self.cfg.gate_delta is None or fast_value is None or self.gate_ref is None:
            return True
        return self.better(fast_value, self.gate_ref, self.cfg.gate_delta)

    def record(self, step: int, summary: dict[str, Any], checkpoint: str) -> bool:
        """A best-tracking evaluation at `step`; returns whether it is a new best (strictly better)."""
        value = self.score(summary)
        old = self.best["value"] if self.best else None
        if old is None or (value != old and self.better(value, old)):
            previous = self.best
            self.best = {"metric": self.cfg.best_metric, "value": value, "step": step, "checkpoint": checkpoint,
                         "summary": _scalars(summary), "previous": _strip(previous)}
            self.stale_evals = 0
            return True
        self.stale_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.stale_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "last_eval": self.last_eval, "last_fast": self.last_fast,
                "gate_ref": self.gate_ref, "stale_evals": self.stale_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("best", "last_eval", "last_fast", "gate_ref", "stale_evals"):
            if key in state:
                setattr(self, key, state[key])


def _scalars(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _strip(best: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if best is None else {k: v for k, v in best.items() if k != "previous"}


def public_best(best: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `best` entry of status.json: metric, value, step, checkpoint."""
    return None if best is None else {k: best.get(k) for k in ("metric", "value", "step", "checkpoint")}


def diagnosis_of(result: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(the evaluation's `diagnosis` made JSON-safe, its warning text or None, loud): loud when the model is
    flagged input-invariant or collapsed (DESIGN.md §7), quiet for the other warnings (e.g. invalid outputs of
    an untrained model)."""
    diag = result.get("diagnosis")
    if not isinstance(diag, dict):
        return None, None, False
    diag = json.loads(json.dumps(diag, default=str))
    flags = [name for name in ("input_invariant", "collapsed") if diag.get(name)]
    text = diag.get("warning") or (f"model output flagged: {', '.join(flags)}" if flags else None)
    return diag, text or None, bool(flags)


def archive_best(run_dir: Path, checkpoint: Path, config_yaml: bytes, best: dict[str, Any]) -> Path:
    """Write `RUN/best/` atomically (module docstring); returns the folder."""
    final = Path(run_dir) / "best"
    with atomic_directory(final, overwrite=True) as tmp:
        try:
            os.link(checkpoint, tmp / "checkpoint.pt")
        except OSError:
            shutil.copy2(checkpoint, tmp / "checkpoint.pt")
        (tmp / "config.yaml").write_bytes(config_yaml)
        prev = best.get("previous")
        change = None
        if prev:
            old, new = prev.get("summary") or {}, best.get("summary") or {}
            change = {k: new[k] - old[k] for k in new if isinstance(new[k], (int, float)) and not isinstance(new[k], bool)
                      and isinstance(old.get(k), (int, float))}
            change["steps"] = best["step"] - prev["step"]
        atomic_write_json(tmp / "metrics.json", {**best, "change": change})
    return final
