"""Logging ticks: the statistics a training step reports, the window they are summed over between ticks (part of
the checkpointed state, so the first tick after a resume covers the same steps as without the interruption),
and the `kind: train` record and console line of a tick."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Per-segment sums every step reports (ACTLossHead metrics), in this order; `bad` is 1 for a non-finite step.
STATS = ("loss", "count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss",
         "q_continue_loss", "bad")
LOSSES = ("loss", "lm_loss", "q_halt_loss", "q_continue_loss")  # summed over rows: logged per example
PER_COUNT = ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps")  # summed over `count` rows: logged per row


def stat_names(metrics: Any) -> tuple[str, ...]:
    """The names a step sums for a segment loss returning `metrics` (a dict of them): STATS, with the
    objective's own metrics (the names not in STATS, sorted, e.g. distillation's `distill_kl`) before `bad`.
    Like the losses, an objective's own metrics are sums over rows and are logged per example."""
    return STATS[:-1] + tuple(sorted(set(metrics) - set(STATS))) + STATS[-1:]


@dataclass
class LogWindow:
    """Sums (float64 [len(names)]) of the named statistics (`stat_names`) over the steps since the last tick,
    and how many ACT segments those steps ran."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(STATS)))
    segments: int = 0
    names: tuple[str, ...] = STATS

    def add(self, sums: np.ndarray, segments: int, names: tuple[str, ...] = STATS) -> None:
        """One step's sums of `names`; non-finite entries (a skipped step) count as 0."""
        if tuple(names) != self.names:  # the objective's metrics join the window (once per run)
            kept = dict(zip(self.names, self.sums.tolist()))
            self.names = tuple(names)
            self.sums = np.array([kept.get(n, 0.0) for n in self.names], dtype=np.float64)
        self.sums += np.where(np.isfinite(sums), sums, 0.0)
        self.segments += segments

    def take(self) -> tuple[dict[str, float], int]:
        """({name: sum}, segments) of the window, which starts over."""
        out = dict(zip(self.names, self.sums.tolist())), self.segments
        self.sums, self.segments = np.zeros(len(self.names)), 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.tolist(), "segments": self.segments, "names": list(self.names)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (checkpoints written before the window carried names hold STATS)."""
        self.sums, self.segments = np.asarray(state["sums"], dtype=np.float64), int(state["segments"])
        self.names = tuple(state.get("names") or STATS)


def tick_record(window: LogWindow, batch_size: int, **fields: Any) -> dict[str, Any]:
    """The `kind: train` record of a tick: `fields` (run_id, global_step, epoch, ...) then the window's means.
    Losses and an objective's own metrics are per example (sums / rows); accuracies and steps per counted
    (halted, labelled) row."""
    stat, segments = window.take()
    rows, count = batch_size * max(segments, 1), max(stat["count"], 1.0)
    return {"kind": "train", **fields,
            **{k: stat[k] / rows for k in LOSSES},
            **{k: stat[k] / count for k in PER_COUNT},
            **{k: v / rows for k, v in stat.items() if k not in STATS}}


def fmt_time(seconds: float | None) -> str:
    """Seconds as HH:MM:SS (`--:--:--` when unknown)."""
    if seconds is None or not np.isfinite(seconds):
        return "--:--:--"
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def tick_line(rec: dict[str, Any], total_steps: int, batches_per_epoch: int) -> str:
    """The console line of a tick record."""
    sps = f"{rec['samples_per_s']:.0f}" if rec["samples_per_s"] is not None else "?"
    return (f"[{rec['run_id']}] step {rec['global_step']}/{total_steps} epoch {rec['epoch']} ({rec['epoch_step']}/"
            f"{batches_per_epoch}) wall {fmt_time(rec['wall_time'])} {sps} samples/s lr {rec['lr']:.3g} "
            f"loss {rec['loss']:.4f} acc {rec['accuracy']:.3f} exact {rec['exact_accuracy']:.3f} "
            f"ETA {fmt_time(rec['eta_s'])}")


class RateWindow:
    """Steps per second over the last `window_s` seconds of training time (a sliding window by time).

    `add(t, step)` after each step with the cumulative training time `t` (seconds, evaluation excluded);
    `rate()` is steps/s between the oldest kept point and the newest, None until two points exist.
    """

    def __init__(self, window_s: float = 300.0):
        self.window_s = window_s
        self.points: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, t: float, step: int) -> None:
        self.points.append((t, step))
        while len(self.points) > 2 and t - self.points[1][0] >= self.window_s:
            self.points.popleft()

    def reset(self) -> None:
        self.points.clear()

    def rate(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None
