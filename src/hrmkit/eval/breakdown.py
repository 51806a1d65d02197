"""Where a model fails: accuracy by difficulty, a token confusion table and failures ranked by how close
they came (pure numpy over `evaluate.Predictions`; for `hrm eval --report`).

Difficulty per evaluated row is the task's (`Task.difficulty`): Sudoku the number of clues and, when the
dataset stores them, the solver rating (dead ends; power-of-two buckets as the builder's histogram); mazes the
shortest path length in moves; ARC the larger side of the expected output grid (per augmented test row).
Each breakdown table scores the model and the trivial baselines on the same rows of every bucket.

Public API
----------
- `difficulty_columns(task, inputs, labels, split_dir=None) -> {name: [bucket label per row]}`
- `breakdown_tables(task, inputs, labels, preds, *, split_dir=None, train_labels=None) -> list[dict]`
- `confusion_table(task, inputs, labels, preds, vocab_size) -> dict`
- `wrong_cells(labels, preds) -> int [N]`; `pick_examples(labels, preds, n, seed=0) -> (failures, successes)`
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.eval.metrics import answer_mask, compute_metrics, exact_correct, scored_mask
from hrmkit.tasks import Task, resolve

MAX_BUCKETS = 8


def _buckets(values: np.ndarray, max_buckets: int = MAX_BUCKETS) -> tuple[list[str], dict[str, float]]:
    """A label per value (the value itself when there are few distinct ones, else equal-width ranges
    "lo-hi") and each label's sort key."""
    v = np.asarray(values, np.int64)
    uniq = np.unique(v)
    if uniq.size <= max_buckets:
        return [str(int(x)) for x in v], {str(int(x)): float(x) for x in uniq}
    lo, hi = int(uniq[0]), int(uniq[-1])
    width = -(-(hi - lo + 1) // max_buckets)
    starts = lo + (v - lo) // width * width
    labels = [f"{s}-{s + width - 1}" for s in starts.tolist()]
    return labels, {f"{s}-{s + width - 1}": float(s) for s in np.unique(starts).tolist()}


def _pow2_buckets(values: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """Buckets 0, 1, 2-3, 4-7, ... ("unknown" for negative values)."""
    labels, keys = [], {}
    for r in np.asarray(values, np.int64).tolist():
        if r < 0:
            label, key = "unknown", -1.0
        elif r < 2:
            label, key = str(r), float(r)
        else:
            lo = 1 << (r.bit_length() - 1)
            label, key = f"{lo}-{2 * lo - 1}", float(lo)
        labels.append(label)
        keys[label] = key
    return labels, keys


def difficulty_columns(task: Task | str | None, inputs: np.ndarray, labels: np.ndarray,
                       split_dir: str | Path | None = None) -> dict[str, tuple[list[str], dict[str, float]]]:
    """{difficulty name: (bucket label per row, sort key per label)} for the rows of one evaluation (module
    docstring); {} for tasks without a difficulty measure. Negative values are "unknown"."""
    out: dict[str, tuple[list[str], dict[str, float]]] = {}
    for name, (scale, values) in resolve(task).difficulty(inputs, labels, split_dir).items():
        values = np.asarray(values, np.int64)
        if scale == "pow2":
            out[name] = _pow2_buckets(values)
            continue
        labels_, keys = _buckets(np.maximum(values, 0))
        out[name] = ([lab if v >= 0 else "unknown" for lab, v in zip(labels_, values.tolist())],
                     {**keys, "unknown": -1.0})
    return out


def breakdown_tables(task: Task | str | None, inputs: Any, labels: Any, preds: Any, *, split_dir: str | Path | None = None,
                     train_labels: Any = None) -> list[dict]:
    """Per difficulty measure: {"name", "rows": [{"bucket", "n_examples", "exact_accuracy", "token_accuracy",
    "baselines": {name: exact_accuracy}}]} in difficulty order; rows without an answer are left out."""
    from hrmkit.eval.baselines import compute_baselines

    inputs, labels, preds = (np.asarray(a, np.int64) for a in (inputs, labels, preds))
    tables = []
    for name, (buckets, keys) in difficulty_columns(task, inputs, labels, split_dir).items():
        model = compute_metrics(inputs, labels, preds, sets=buckets, task=task)["sets"]
        base = compute_baselines(inputs, labels, train_labels=train_labels, sets=buckets, task=task)
        rows = []
        for bucket in sorted(model, key=lambda b: keys.get(b, math.inf)):
            m = model[bucket]
            if not m["n_examples"]:
                continue
            rows.append({"bucket": bucket, "n_examples": m["n_examples"], "exact_accuracy": m["exact_accuracy"],
                         "token_accuracy": m["token_accuracy"],
                         "baselines": {b: r["sets"][bucket]["exact_accuracy"] for b, r in base.items()}})
        tables.append({"name": name, "rows": rows})
    return tables


def confusion_table(task: Task | str | None, inputs: Any, labels: Any, preds: Any, vocab_size: int) -> dict:
    """Counts of (expected token, predicted token) over the cells token accuracy scores (Sudoku: the blanks).
    Returns {"task", "tokens": ids in the table, "counts": int [T, T] (row = expected, column = predicted),
    "n_cells"}; tokens are those that occur as expected or predicted."""
    inputs, labels, preds = (np.asarray(a, np.int64) for a in (inputs, labels, preds))
    mask = scored_mask(inputs, labels, task=task)
    want, got = labels[mask], np.clip(preds[mask], 0, vocab_size - 1)
    counts = np.bincount(want * vocab_size + got, minlength=vocab_size * vocab_size).reshape(vocab_size, vocab_size)
    tokens = np.flatnonzero(counts.sum(0) + counts.sum(1))
    return {"task": resolve(task).name, "tokens": tokens.tolist(), "counts": counts[np.ix_(tokens, tokens)].tolist(),
            "n_cells": int(mask.sum())}


def wrong_cells(labels: Any, preds: Any) -> np.ndarray:
    """Answer cells predicted wrong, per row: int [N]."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    return ((labels != preds) & answer_mask(labels)).sum(axis=1)


def pick_examples(labels: Any, preds: Any, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows to show: up to `n` failures, closest first (fewest wrong answer cells, then row order), and up to
    `n` successes (a seeded random sample, in row order)."""
    exact = exact_correct(labels, preds)
    answered = answer_mask(labels).any(axis=1)
    fails = np.flatnonzero(~exact & answered)
    fails = fails[np.argsort(wrong_cells(labels, preds)[fails], kind="stable")][:n]
    wins = np.flatnonzero(exact)
    wins = np.sort(np.random.default_rng(seed).choice(wins, size=min(n, wins.size), replace=False))
    return fails, wins
