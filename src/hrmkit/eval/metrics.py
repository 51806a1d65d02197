"""Accuracy metrics over per-example predictions, per set and overall (pure numpy, JSON-serialisable output).

Why several numbers (docs/design.md §7): per-cell accuracy on padded canvases is dominated by easy cells, so
hrmkit always reports the *exact* accuracy (the whole answer right) next to the *token* accuracy, and the
token accuracy only counts cells the model actually has to predict.

Cells (arrays are [N, S]: N examples, S sequence positions):
- answer cells: labels that are neither `ignore_label_id` (-100 at batch time) nor `pad_id` (0 in every
  hrmkit token layout; pass `pad_id=None` if 0 is a real label). Exact accuracy needs all of them right.
- scored cells (token accuracy): the answer cells, narrowed by the task's `scored_mask` (Sudoku: only the
  cells whose input is the blank token, i.e. the given clues are excluded: copying them is free). A custom
  `mask_fn(inputs, labels) -> bool [N, S]` replaces the task rule (it is ANDed with the answer cells).
`task` is a `hrmkit.tasks.Task` or a registered task name ("generic" by default).
Examples without any answer cell (the padding rows of a test batch) are left out of every count and
reported as `n_empty`.

Public API
----------
- `compute_metrics(inputs, labels, preds, *, q_halt=None, steps=None, sets=None, task="generic",
  mask_fn=None, pad_id=0, ignore_label_id=-100) -> dict`
- `answer_cells(labels, pad_id=0, ignore_label_id=-100)`: the answer-cell rule on numpy or torch arrays;
  `answer_mask(labels, *, pad_id=0, ignore_label_id=-100) -> bool [N, S]` (numpy)
- `scored_mask(inputs, labels, *, task="generic", mask_fn=None, pad_id=0, ignore_label_id=-100) -> bool [N, S]`
- `exact_correct(labels, preds, *, pad_id=0, ignore_label_id=-100) -> bool [N]`
- `accuracy_pair(inputs, labels, preds, *, task) -> (exact, token)`: the two headline figures alone
- constants `IGNORE_LABEL_ID` (from data/format.py), `PAD_ID`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from hrmkit.data.format import IGNORE_LABEL_ID
from hrmkit.tasks import Task, resolve

PAD_ID = 0

MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or torch tensor (moved to CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_2d(name: str, x: Any) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim == 1 and arr.size == 0:  # no examples at all
        arr = arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, S], got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def answer_cells(labels: Any, pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID) -> Any:
    """The one rule for the cells that belong to the answer: labels neither ignored nor PAD. labels: int
    [..., S], numpy or torch (on any device); returns a bool array of the same kind and shape."""
    mask = labels != ignore_label_id
    if pad_id is not None:
        mask = mask & (labels != pad_id)
    return mask


def answer_mask(labels: Any, *, pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID) -> np.ndarray:
    """`answer_cells` of labels int [N, S] (numpy or torch, read as numpy). Returns bool [N, S]."""
    return answer_cells(_as_2d("labels", labels), pad_id, ignore_label_id)


def scored_mask(inputs: Any, labels: Any, *, task: Task | str | None = "generic", mask_fn: MaskFn | None = None,
                pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID) -> np.ndarray:
    """Cells counted by token accuracy: answer cells, narrowed by the task's `scored_mask` (Sudoku: minus the
    given clues).

    inputs, labels: int [N, S]. mask_fn: optional `(inputs, labels) -> bool [N, S]` used instead of the task
    rule (ANDed with the answer cells). Returns bool [N, S]. Raises HrmkitError on an unknown task name and
    ValueError on a mask of the wrong shape.
    """
    t = resolve(task)
    inputs = _as_2d("inputs", inputs)
    labels = _as_2d("labels", labels)
    mask = answer_mask(labels, pad_id=pad_id, ignore_label_id=ignore_label_id)
    if mask_fn is not None:
        extra = _to_numpy(mask_fn(inputs, labels)).astype(bool)
        if extra.shape != mask.shape:
            raise ValueError(f"mask_fn returned shape {extra.shape}, expected {mask.shape}")
        return mask & extra
    return t.scored_mask(inputs, mask)


def exact_correct(labels: Any, preds: Any, *, pad_id: int | None = PAD_ID,
                  ignore_label_id: int = IGNORE_LABEL_ID) -> np.ndarray:
    """Per example: every answer cell predicted right (False for examples without answer cells).

    labels, preds: int [N, S]. Returns bool [N].
    """
    labels = _as_2d("labels", labels)
    preds = _as_2d("preds", preds)
    mask = answer_mask(labels, pad_id=pad_id, ignore_label_id=ignore_label_id)
    return ((preds == labels) | ~mask).all(axis=1) & mask.any(axis=1)


def accuracy_pair(inputs: Any, labels: Any, preds: Any, *, task: Task | str | None = "generic") -> tuple[float | None, float | None]:
    """(exact accuracy, token accuracy) as `compute_metrics` counts them overall: exact over the examples with
    answer cells, token over the `scored_mask` cells (Sudoku: the blank ones). None when nothing is counted.
    inputs, labels, preds: int [N, S]."""
    labels, preds = _as_2d("labels", labels), _as_2d("preds", preds)
    rows = answer_mask(labels).any(axis=1)
    exact = exact_correct(labels, preds)
    scored = scored_mask(inputs, labels, task=task)
    right = ((preds == labels) & scored).sum()
    return _ratio(exact[rows].sum(), rows.sum()), _ratio(right, scored.sum())


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _summarise(rows: np.ndarray, exact: np.ndarray, tok_right: np.ndarray, tok_total: np.ndarray,
               q_halt: np.ndarray | None, steps: np.ndarray | None, n_empty: int, row_accuracy: np.ndarray) -> dict:
    """Metric dict over the selected rows (bool [N]; rows already exclude empty examples)."""
    n = int(rows.sum())
    out: dict[str, Any] = {
        "n_examples": n,
        "n_empty": n_empty,
        "exact_accuracy": _ratio(exact[rows].sum(), n),
        "n_exact": int(exact[rows].sum()),
        "token_accuracy": _ratio(tok_right[rows].sum(), tok_total[rows].sum()),
        "n_cells": int(tok_total[rows].sum()),
        "reference_token_accuracy": float(row_accuracy[rows].mean()) if n else None,
        "q_halt_accuracy": None,
        "mean_steps": None,
        "steps_histogram": None,
    }
    if q_halt is not None:
        out["q_halt_accuracy"] = _ratio(((q_halt[rows] >= 0) == exact[rows]).sum(), n)
    if steps is not None:
        sel = steps[rows]
        out["mean_steps"] = float(sel.mean()) if n else None
        values, counts = np.unique(sel, return_counts=True)
        out["steps_histogram"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    return out


def compute_metrics(inputs: Any, labels: Any, preds: Any, *, q_halt: Any = None, steps: Any = None,
                    sets: Sequence[str] | None = None, task: Task | str | None = "generic",
                    mask_fn: MaskFn | None = None, pad_id: int | None = PAD_ID,
                    ignore_label_id: int = IGNORE_LABEL_ID) -> dict:
    """Exact, token and q-halt accuracy and ACT steps, overall and per set.

    inputs, labels, preds: int [N, S] (numpy or torch); labels use `ignore_label_id` for ignored cells.
    q_halt: float [N] halting logits (q-halt accuracy is `(q_halt >= 0) == exact`), optional.
    steps: int [N] ACT segments run per example, optional. sets: str [N] set/group name per example,
    optional. task / mask_fn / pad_id: which cells count, see the module docstring.

    Returns a JSON-serialisable dict::

        {"task": str, "overall": METRICS, "sets": {name: METRICS} (only when `sets` is given)}
        METRICS = {n_examples, n_empty, exact_accuracy, n_exact, token_accuracy, n_cells,
                   reference_token_accuracy, q_halt_accuracy, mean_steps, steps_histogram {"steps": count}}

    Accuracies are fractions in [0, 1] (None when there is nothing to count); token accuracy is per cell
    (correct scored cells / scored cells, pooled over examples); reference_token_accuracy is the references'
    `accuracy` (ACTLossHead): each example's share of correct answer cells, clues included, averaged over
    examples (reported so that numbers compare with theirs; docs/parity.md). Raises ValueError on mismatched shapes.
    """
    inputs = _as_2d("inputs", inputs)
    labels = _as_2d("labels", labels)
    preds = _as_2d("preds", preds)
    if not (inputs.shape == labels.shape == preds.shape):
        raise ValueError(f"shape mismatch: inputs {inputs.shape}, labels {labels.shape}, preds {preds.shape}")
    n = labels.shape[0]
    q = None if q_halt is None else _to_numpy(q_halt).astype(np.float64).reshape(-1)
    st = None if steps is None else _to_numpy(steps).astype(np.int64).reshape(-1)
    for name, arr in (("q_halt", q), ("steps", st)):
        if arr is not None and arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")

    answer = answer_mask(labels, pad_id=pad_id, ignore_label_id=ignore_label_id)
    scored = scored_mask(inputs, labels, task=task, mask_fn=mask_fn, pad_id=pad_id,
                         ignore_label_id=ignore_label_id)
    has_answer = answer.any(axis=1)
    exact = ((preds == labels) | ~answer).all(axis=1) & has_answer
    tok_right = ((preds == labels) & scored).sum(axis=1)
    tok_total = scored.sum(axis=1)
    # the references' `accuracy` metric: per example over every answer cell (Sudoku clues included), then averaged
    row_accuracy = ((preds == labels) & answer).sum(axis=1) / np.maximum(answer.sum(axis=1), 1)

    result: dict[str, Any] = {
        "task": resolve(task).name,
        "overall": _summarise(has_answer, exact, tok_right, tok_total, q, st, int((~has_answer).sum()), row_accuracy),
    }
    if sets is not None:
        names = np.asarray([str(s) for s in sets])
        if names.shape[0] != n:
            raise ValueError(f"sets has {names.shape[0]} entries, expected {n}")
        result["sets"] = {}
        for name in sorted(set(names.tolist())):
            in_set = names == name
            result["sets"][name] = _summarise(in_set & has_answer, exact, tok_right, tok_total, q, st,
                                              int((in_set & ~has_answer).sum()), row_accuracy)
    return result
