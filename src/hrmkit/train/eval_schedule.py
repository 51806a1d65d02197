"""The evaluation policy of a training run, in one place: when the fast and full evaluations run, the gate, which
evaluations choose the best checkpoint, and early stopping (config `eval.*`, `early_stop_patience`).

`EvalScheduler` decides and remembers (its `state_dict` is part of every checkpoint); it runs evaluations
through a callback and reports what the loop must do (`Decision`: save and archive a new best, stop early).
Cadence: a fast evaluation every `eval.fast_every` steps; a full one every `eval.full_every` steps, or every
`eval_interval` epochs (the reference cadence) when unset. With `eval.gate_delta` a due full evaluation runs
only when the fast score at the same step improved by at least gate_delta on the fast score at the last full
one (without a full cadence: whenever a fast evaluation improved that much). The best checkpoint is chosen on
full evaluations; on fast ones when there is a fast cadence and neither a full cadence nor a gate; with no
cadence at all, on the full evaluation at the end of training. An evaluation that scored no example (a test split
without answers: `hrm adapt`) never chooses the best and opens no gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from hrmkit.config import EvalConfig


class Summary(Protocol):
    """What the scheduler reads of an evaluation summary (eval.evaluate.EvalSummary)."""

    def metric(self, name: str) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class EvalRecord:
    """One evaluation during training: global step, kind ("fast" | "full"), its summary and diagnosis."""

    step: int
    kind: str
    summary: Summary
    diagnosis: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The `last_eval` entry of status.json and checkpoints: {step, kind, metrics, diagnosis}."""
        return {"step": self.step, "kind": self.kind, "metrics": self.summary.to_dict(), "diagnosis": self.diagnosis}


@dataclass
class Best:
    """The best evaluation so far: `metric` and its `value` at global `step`, the checkpoint of that step, the
    evaluation's scalar summary and the previous best (without its own previous)."""

    metric: str
    value: float
    step: int
    checkpoint: str
    summary: dict[str, Any]
    previous: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The `best` entry of status.json: metric, value, step, checkpoint."""
        return {"metric": self.metric, "value": self.value, "step": self.step, "checkpoint": self.checkpoint}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """What the loop does after the scheduler ran the due evaluations: `new_best` (save the checkpoint of this
    step and archive it as best/), `early_stop` (stop after this step), `notes` (lines to print)."""

    new_best: bool = False
    early_stop: bool = False
    notes: list[str] = field(default_factory=list)


Evaluate = Callable[[str], EvalRecord]  # runs a "fast" or "full" evaluation of the current weights


class EvalScheduler:
    """Module docstring. `full_every_steps`: the reference `eval_interval` converted to steps (or None);
    `patience`: early_stop_patience (best-tracking evaluations without improvement), None for never."""

    def __init__(self, cfg: EvalConfig, full_every_steps: int | None, patience: int | None):
        self.cfg, self.patience = cfg, patience
        self.fast_every = cfg.fast_every
        self.full_every = cfg.full_every or full_every_steps
        self.gated = cfg.gate_delta is not None
        self.best_on_fast = bool(self.fast_every) and self.full_every is None and not self.gated
        self.best: Best | None = None
        self.last_eval: dict[str, Any] | None = None  # EvalRecord.to_json() of the latest evaluation
        self.last_fast: dict[str, Any] | None = None  # {step, value} of the latest fast evaluation
        self.last_full_step: int | None = None
        self.gate_ref: float | None = None  # the fast score when the last full evaluation ran
        self.stale_evals = 0  # best-tracking evaluations since the last improvement

    # --- policy ---------------------------------------------------------------------------------------------
    def due(self, step: int) -> tuple[bool, bool]:
        """(run a fast evaluation, a full evaluation is due) after `step`. A gated full evaluation needs a fast
        score at the same step, so a due full evaluation with a gate also asks for a fast one."""
        fast = bool(self.fast_every) and step % self.fast_every == 0
        full = step % self.full_every == 0 if self.full_every else self.gated and fast
        return fast or (full and self.gated), full

    def better(self, value: float, than: float | None, delta: float = 0.0) -> bool:
        if than is None:
            return True
        return value >= than + delta if self.cfg.best_mode == "max" else value <= than - delta

    def gate_open(self, fast_value: float | None) -> bool:
        """Whether a due full evaluation runs (always without a gate)."""
        if self.cfg.gate_delta is None or fast_value is None or self.gate_ref is None:
            return True
        return self.better(fast_value, self.gate_ref, self.cfg.gate_delta)

    def after_step(self, step: int, evaluate: Evaluate, checkpoint: str, track: bool = True) -> Decision:
        """Run the evaluations due after `step` (`checkpoint`: the path this step's checkpoint has or will
        have). With `track` False (a bad streak is open: no checkpoint may be written) they cannot become
        the best."""
        decision = Decision()
        fast_due, full_due = self.due(step)
        fast_value = None
        if fast_due:
            fast = self._ran(evaluate("fast"))
            fast_value = self.last_fast["value"]
            if self.best_on_fast and track:
                self._track(fast, checkpoint, decision)
        if full_due:
            if self.gate_open(fast_value):
                full = self._ran(evaluate("full"))
                self.gate_ref = fast_value
                if track:
                    self._track(full, checkpoint, decision)
            else:
                metric, delta = self.cfg.best_metric, self.cfg.gate_delta
                decision.notes.append(f"step {step}: full evaluation skipped: fast {metric} {fast_value:.4f} did not "
                                      f"improve by {delta} on {self.gate_ref:.4f}")
        return decision

    def at_end(self, step: int, evaluate: Evaluate, checkpoint: str, track: bool = True) -> Decision:
        """The evaluations closing a run: the final weights get a full evaluation (unless one ran at this
        step) and, when the best is chosen on fast evaluations, a fast one that can choose them. Never stops
        early."""
        decision = Decision()
        if self.best_on_fast and (self.last_fast or {}).get("step") != step:
            fast = self._ran(evaluate("fast"))
            if track:
                self._track(fast, checkpoint, decision)
        if self.last_full_step != step:
            full = self._ran(evaluate("full"))
            if not self.best_on_fast and track:
                self._track(full, checkpoint, decision)
        decision.early_stop = False
        return decision

    def _ran(self, record: EvalRecord) -> EvalRecord:
        self.last_eval = record.to_json()
        if record.kind == "full":
            self.last_full_step = record.step
        else:
            self.last_fast = {"step": record.step, "value": self._value(record)}
        return record

    def _value(self, record: EvalRecord) -> float | None:
        """The best metric of `record`; None when it scored no example (a test split without answers, as
        `hrm adapt`'s new tasks: nothing to choose a best checkpoint by)."""
        if record.summary.to_dict().get("n_examples") == 0:
            return None
        return record.summary.metric(self.cfg.best_metric)

    def _track(self, record: EvalRecord, checkpoint: str, decision: Decision) -> None:
        value = self._value(record)
        if value is None:
            decision.notes.append(f"step {record.step}: the {record.kind} evaluation scored no example (no answers "
                                  "in the test split): no best checkpoint is chosen")
            return
        old = self.best.value if self.best else None
        if old is None or (value != old and self.better(value, old)):
            previous = None if self.best is None else {k: v for k, v in self.best.to_json().items() if k != "previous"}
            scalars = {k: v for k, v in record.summary.to_dict().items()
                       if isinstance(v, (int, float, str, bool)) or v is None}
            self.best = Best(self.cfg.best_metric, value, record.step, checkpoint, scalars, previous)
            self.stale_evals = 0
            decision.new_best = True
            decision.notes.append(f"new best {self.cfg.best_metric} {value:.4f} at step {record.step}")
            return
        self.stale_evals += 1
        if self.patience is not None and self.stale_evals >= self.patience:
            decision.early_stop = True

    # --- state ----------------------------------------------------------------------------------------------
    def public_best(self) -> dict[str, Any] | None:
        return None if self.best is None else self.best.public()

    def state_dict(self) -> dict[str, Any]:
        return {"best": None if self.best is None else self.best.to_json(), "last_eval": self.last_eval,
                "last_fast": self.last_fast, "last_full_step": self.last_full_step, "gate_ref": self.gate_ref,
                "stale_evals": self.stale_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        self.best = Best(**best) if best else None
        for key in ("last_eval", "last_fast", "last_full_step", "gate_ref", "stale_evals"):
            if key in state:
                setattr(self, key, state[key])
