"""Does the model read its input? Input-sensitivity and output-collapse checks.

The origin project's model scored "71% validation accuracy" while its output never depended on its input
(docs/design.md §7). These checks catch that directly:

- Input sensitivity: predict a batch, then predict it again with the `inputs` perturbed — (a) "shuffle":
  the rows' inputs are permuted among themselves (a derangement: no row keeps its own input), (b)
  "random_tokens": every position whose token is not in `keep_tokens` (PAD, and EOS for ARC) gets a random
  token from `valid_tokens`. Everything else in the batch (labels, puzzle_identifiers) is left alone, so a
  model that answers from the puzzle identifier alone is caught too. We measure the share of examples
  whose prediction changes in at least one compared cell, and the share of compared cells that change.
  Compared cells are the answer cells (labels not ignored and not PAD) when the batch has labels, else all.
  Rows whose perturbed input equals the original (duplicate rows) are left out of that perturbation.
- Collapse: over the answer cells of the unperturbed predictions — number of distinct predicted tokens,
  prediction entropy vs label entropy (bits), and the share of examples whose prediction equals the most
  common prediction.

Thresholds (documented defaults):
- `DEFAULT_INVARIANCE_THRESHOLD = 0.05`: a model is *input-invariant* when, under every perturbation,
  fewer than 5% of the examples change their prediction at all. Replacing an input by a different puzzle
  changes the answer of any model that solves anything (a change in any single cell counts), so a working
  model sits near 100%; 0% is the origin failure; 5% leaves room for a few near-tied logits flipping.
- `LOW_SENSITIVITY_CELL_SHARE = 0.02`: below that share of changed cells the diagnosis warns (no flag).
- collapsed when: the prediction uses one token while the labels use several; or its entropy is below
  `COLLAPSE_ENTROPY_RATIO` (0.5) of the label entropy; or at least `COLLAPSE_MODE_SHARE` (0.5) of the
  examples get the very same prediction while no label is shared by that many examples.
- `INVALID_OUTPUT_SHARE = 0.05`: with `answer_tokens` given (the tokens an answer can hold, e.g.
  `Task.answer_tokens`), *invalid outputs* are flagged when more than 5% of the answer cells get another
  token (PAD, the Sudoku blank, ...): the model has not learned the output format. This is what flags a
  randomly initialised network, which is input-dependent (not invariant) but predicts arbitrary tokens.

Public API
----------
- `shuffle_rows(inputs, rng) -> (perturbed, perm)`; `randomize_tokens(inputs, rng, valid_tokens,
  keep_tokens=(0,)) -> perturbed`
- `input_sensitivity(predict_fn, batch, *, task=None, valid_tokens=None, keep_tokens=None, seed=0,
  base_preds=None, pad_id=0, ignore_label_id=-100, threshold=DEFAULT_INVARIANCE_THRESHOLD) -> dict`
- `is_input_invariant(changed_share, threshold=DEFAULT_INVARIANCE_THRESHOLD) -> bool`
- `collapse_metrics(preds, labels=None, *, mask=None, pad_id=0, ignore_label_id=-100, answer_tokens=None) -> dict`
- `make_diagnosis(sensitivity, collapse) -> dict`; `diagnose(predict_fn, batch, **kw) -> dict`
- `act_predict_fn(head, device=None) -> predict_fn` for an hrmkit loss head (ACT loop to the end)
The token sets come from the task (`hrmkit.tasks.Task.input_tokens`, `answer_tokens`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hrmkit.eval.metrics import IGNORE_LABEL_ID, PAD_ID, _to_numpy, answer_cells
from hrmkit.tasks import Task, resolve

DEFAULT_INVARIANCE_THRESHOLD = 0.05
LOW_SENSITIVITY_CELL_SHARE = 0.02
COLLAPSE_ENTROPY_RATIO = 0.5
COLLAPSE_MODE_SHARE = 0.5
INVALID_OUTPUT_SHARE = 0.05

PredictFn = Callable[[dict], Any]


def shuffle_rows(inputs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Give every row another row's input (a random derangement). inputs: [B, S]; returns (perturbed, perm)
    with perturbed[i] = inputs[perm[i]] and perm[i] != i (B >= 2; with B < 2 perm is the identity)."""
    b = inputs.shape[0]
    perm = np.arange(b)
    if b >= 2:
        order = rng.permutation(b)
        perm[order] = np.roll(order, -1)  # a single cycle through a random order
    return inputs[perm], perm


def randomize_tokens(inputs: np.ndarray, rng: np.random.Generator, valid_tokens: Sequence[int],
                     keep_tokens: Sequence[int] = (PAD_ID,)) -> np.ndarray:
    """Replace every position whose token is not in `keep_tokens` by a uniform draw from `valid_tokens`.

    inputs: int [B, S]; returns a new array of the same shape and dtype.
    """
    valid = np.asarray(list(valid_tokens), dtype=np.int64)
    if valid.size == 0:
        raise ValueError("valid_tokens is empty")
    out = inputs.copy()
    change = ~np.isin(inputs, np.asarray(list(keep_tokens)))
    out[change] = valid[rng.integers(0, valid.size, size=int(change.sum()))].astype(inputs.dtype)
    return out


def is_input_invariant(changed_share: float | None, threshold: float = DEFAULT_INVARIANCE_THRESHOLD) -> bool:
    """True when the share of examples whose prediction changed under perturbation is below `threshold`
    (see the module docstring for the default). None (nothing could be measured) gives False."""
    return changed_share is not None and changed_share < threshold


def _with_inputs(batch: Mapping, new_inputs: np.ndarray) -> dict:
    """Shallow copy of `batch` with "inputs" replaced, as a torch tensor like the original when it was one."""
    out = dict(batch)
    orig = batch["inputs"]
    if hasattr(orig, "detach"):
        import torch

        out["inputs"] = torch.as_tensor(new_inputs, dtype=orig.dtype, device=orig.device)
    else:
        out["inputs"] = new_inputs.astype(np.asarray(orig).dtype)
    return out


def _predict(predict_fn: PredictFn, batch: Mapping, shape: tuple) -> np.ndarray:
    preds = _to_numpy(predict_fn(dict(batch)))
    if preds.shape != shape:
        raise ValueError(f"predict_fn returned shape {preds.shape}, expected {shape}")
    return preds.astype(np.int64)


def _compare_mask(batch: Mapping, shape: tuple, pad_id: int | None, ignore_label_id: int) -> np.ndarray:
    if "labels" not in batch:
        return np.ones(shape, dtype=bool)
    return answer_cells(_to_numpy(batch["labels"]).astype(np.int64), pad_id, ignore_label_id)


def _change_stats(base: np.ndarray, new: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> dict:
    diff = (base != new) & mask
    n = int(rows.sum())
    cells = int(mask[rows].sum())
    return {
        "n_examples": n,
        "changed_examples_share": float(diff[rows].any(axis=1).mean()) if n else None,
        "changed_cells_share": float(diff[rows].sum() / cells) if cells else None,
    }


def input_sensitivity(predict_fn: PredictFn, batch: Mapping, *, task: Task | str | None = None,
                      valid_tokens: Sequence[int] | None = None, keep_tokens: Sequence[int] | None = None,
                      seed: int = 0, base_preds: Any = None, pad_id: int | None = PAD_ID,
                      ignore_label_id: int = IGNORE_LABEL_ID,
                      threshold: float = DEFAULT_INVARIANCE_THRESHOLD) -> dict:
    """Share of examples (and cells) whose prediction changes when the inputs are perturbed.

    predict_fn: `batch dict -> preds int [B, S]` (numpy or torch), deterministic; it is called 2-3 times.
    batch: dict with "inputs" int [B, S] (numpy or torch; perturbed copies keep type, dtype and device),
    optionally "labels" (selects the compared cells) and anything else predict_fn needs (passed unchanged).
    task: a `Task` (or name) whose `input_tokens` give valid/keep tokens; `valid_tokens` / `keep_tokens`
    override them.
    Without either, valid tokens are the distinct non-kept tokens seen in the batch and keep = (pad_id,).
    base_preds: the unperturbed predictions if already computed. seed: RNG seed (reproducible).

    Returns {"shuffle": STATS | None (B < 2), "random_tokens": STATS, "changed_examples_share",
    "changed_cells_share" (max over perturbations), "threshold", "input_invariant"} with STATS =
    {n_examples, changed_examples_share, changed_cells_share} (shares in [0, 1] or None).
    """
    inputs = _to_numpy(batch["inputs"]).astype(np.int64)
    if inputs.ndim != 2:
        raise ValueError(f"batch['inputs'] must be [B, S], got shape {inputs.shape}")
    preset_valid, preset_keep = (resolve(task).input_tokens(int(inputs.max(initial=0)) + 1) if task is not None
                                 else None) or (None, None)
    keep = tuple(keep_tokens if keep_tokens is not None else preset_keep if preset_keep is not None
                 else (() if pad_id is None else (pad_id,)))
    valid = valid_tokens if valid_tokens is not None else preset_valid
    if valid is None:
        seen = np.unique(inputs)
        valid = [int(t) for t in seen if t not in keep]
        if len(valid) < 2:
            valid = sorted(set(valid) | {max(int(seen.max()) + 1, 1)})
    rng = np.random.default_rng(seed)
    shape = inputs.shape
    base = _predict(predict_fn, batch, shape) if base_preds is None else _to_numpy(base_preds).astype(np.int64)
    mask = _compare_mask(batch, shape, pad_id, ignore_label_id)
    has_cells = mask.any(axis=1)

    result: dict[str, Any] = {"shuffle": None}
    if shape[0] >= 2:
        shuffled, _ = shuffle_rows(inputs, rng)
        rows = has_cells & (shuffled != inputs).any(axis=1)
        result["shuffle"] = _change_stats(base, _predict(predict_fn, _with_inputs(batch, shuffled), shape), mask, rows)
    randomized = randomize_tokens(inputs, rng, valid, keep)
    rows = has_cells & (randomized != inputs).any(axis=1)
    result["random_tokens"] = _change_stats(base, _predict(predict_fn, _with_inputs(batch, randomized), shape),
                                            mask, rows)
    stats = [s for s in (result["shuffle"], result["random_tokens"]) if s is not None]
    for key in ("changed_examples_share", "changed_cells_share"):
        vals = [s[key] for s in stats if s[key] is not None]
        result[key] = max(vals) if vals else None
    result["threshold"] = threshold
    result["input_invariant"] = is_input_invariant(result["changed_examples_share"], threshold)
    return result


def _entropy_bits(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _mode_share(rows: np.ndarray) -> float:
    """Share of rows equal to the most common row."""
    if rows.shape[0] == 0:
        return 0.0
    _, counts = np.unique(rows, axis=0, return_counts=True)
    return float(counts.max() / rows.shape[0])


def collapse_metrics(preds: Any, labels: Any = None, *, mask: Any = None, pad_id: int | None = PAD_ID,
                     ignore_label_id: int = IGNORE_LABEL_ID, answer_tokens: Sequence[int] | None = None) -> dict:
    """Signs that the predictions collapsed to (nearly) one output.

    preds: int [N, S]; labels: int [N, S] optional (without labels only the prediction side is reported and
    `collapsed` needs a single predicted token); mask: bool [N, S] cells to look at (default: answer cells of
    labels, or all cells). Entropies are in bits over the masked cells. Returns {n_distinct_pred_tokens,
    n_distinct_label_tokens, pred_entropy_bits, label_entropy_bits, entropy_ratio, mode_prediction_share,
    label_mode_share, invalid_pred_share (share of the masked cells predicted with a token outside
    `answer_tokens`; None without answer_tokens), collapsed, reasons [str]}.
    """
    preds = _to_numpy(preds).astype(np.int64)
    lab = None if labels is None else _to_numpy(labels).astype(np.int64)
    if mask is None:
        if lab is None:
            mask = np.ones(preds.shape, dtype=bool)
        else:
            mask = answer_cells(lab, pad_id, ignore_label_id)
    mask = _to_numpy(mask).astype(bool)
    rows = mask.any(axis=1)
    pred_cells = preds[mask]
    masked_preds = np.where(mask, preds, -1)[rows]
    out: dict[str, Any] = {
        "n_distinct_pred_tokens": int(np.unique(pred_cells).size),
        "pred_entropy_bits": _entropy_bits(pred_cells),
        "mode_prediction_share": _mode_share(masked_preds),
        "n_distinct_label_tokens": None, "label_entropy_bits": None, "entropy_ratio": None,
        "label_mode_share": None,
        "invalid_pred_share": (float(np.mean(~np.isin(pred_cells, np.asarray(list(answer_tokens)))))
                               if answer_tokens is not None and pred_cells.size else None),
    }
    reasons = []
    if lab is not None:
        label_cells = lab[mask]
        out["n_distinct_label_tokens"] = int(np.unique(label_cells).size)
        out["label_entropy_bits"] = _entropy_bits(label_cells)
        out["label_mode_share"] = _mode_share(np.where(mask, lab, -1)[rows])
        if out["label_entropy_bits"] > 0:
            out["entropy_ratio"] = out["pred_entropy_bits"] / out["label_entropy_bits"]
        if out["n_distinct_pred_tokens"] <= 1 < out["n_distinct_label_tokens"]:
            reasons.append(f"predicts a single token while the labels use {out['n_distinct_label_tokens']}")
        elif out["entropy_ratio"] is not None and out["entropy_ratio"] < COLLAPSE_ENTROPY_RATIO:
            reasons.append(f"prediction entropy {out['pred_entropy_bits']:.2f} bits is under "
                           f"{COLLAPSE_ENTROPY_RATIO:.0%} of the label entropy {out['label_entropy_bits']:.2f} bits")
        if (rows.sum() >= 2 and out["mode_prediction_share"] >= COLLAPSE_MODE_SHARE
                and out["label_mode_share"] < COLLAPSE_MODE_SHARE):
            reasons.append(f"{out['mode_prediction_share']:.0%} of the examples get the same prediction")
    elif out["n_distinct_pred_tokens"] <= 1 and pred_cells.size > 1:
        reasons.append("predicts a single token everywhere")
    out["collapsed"] = bool(reasons)
    out["reasons"] = reasons
    return out


def make_diagnosis(sensitivity: Mapping | None, collapse: Mapping | None) -> dict:
    """Combine `input_sensitivity` and `collapse_metrics` results into flags and a human warning.

    Returns {"input_invariant": bool, "collapsed": bool, "low_sensitivity": bool, "invalid_outputs": bool,
    "ok": bool, "warning": str ("" when nothing is wrong), "sensitivity": ..., "collapse": ...}. A missing
    part gives False for its flags and is mentioned in the warning. invalid_outputs needs the collapse part's
    `invalid_pred_share` (collapse_metrics with answer_tokens) above `INVALID_OUTPUT_SHARE`.
    """
    invariant = bool(sensitivity and sensitivity.get("input_invariant"))
    collapsed = bool(collapse and collapse.get("collapsed"))
    invalid_share = collapse.get("invalid_pred_share") if collapse else None
    invalid = invalid_share is not None and invalid_share > INVALID_OUTPUT_SHARE
    cells = sensitivity.get("changed_cells_share") if sensitivity else None
    low = not invariant and cells is not None and cells < LOW_SENSITIVITY_CELL_SHARE
    msgs = []
    if invariant:
        share = sensitivity.get("changed_examples_share")
        msgs.append(f"INPUT-INVARIANT: only {share:.1%} of the examples changed their prediction when the "
                    "inputs were shuffled or randomised; the output does not depend on the input, so any "
                    "accuracy comes from the labels' statistics, not from solving the puzzles.")
    elif low:
        msgs.append(f"Low input sensitivity: only {cells:.1%} of the answer cells changed when the inputs "
                    "were replaced.")
    if collapsed:
        msgs.append("COLLAPSED: " + "; ".join(collapse.get("reasons", [])) + ".")
    if invalid:
        msgs.append(f"INVALID OUTPUTS: {invalid_share:.1%} of the answer cells get a token no answer holds "
                    "(PAD, blank, ...): the model has not learned the output format (untrained?).")
    if sensitivity is None:
        msgs.append("Input sensitivity was not measured.")
    return {"input_invariant": invariant, "collapsed": collapsed, "low_sensitivity": low, "invalid_outputs": invalid,
            "ok": not (invariant or collapsed or low or invalid) and sensitivity is not None,
            "warning": " ".join(msgs), "sensitivity": sensitivity, "collapse": collapse}


def diagnose(predict_fn: PredictFn, batch: Mapping, *, task: Task | str | None = None,
             valid_tokens: Sequence[int] | None = None, keep_tokens: Sequence[int] | None = None, seed: int = 0,
             pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID,
             threshold: float = DEFAULT_INVARIANCE_THRESHOLD, answer_tokens: Sequence[int] | None = None) -> dict:
    """Run `input_sensitivity` and `collapse_metrics` on one batch and combine them (`make_diagnosis`).

    Arguments as `input_sensitivity`; `answer_tokens` (e.g. the task's `answer_tokens`) turns on the
    invalid-outputs check (see the module docstring). Use a batch of real examples (a few dozen to a few
    hundred rows, padding rows are ignored). Returns the `make_diagnosis` dict.
    """
    inputs = _to_numpy(batch["inputs"])
    base = _predict(predict_fn, batch, inputs.shape)
    sens = input_sensitivity(predict_fn, batch, task=task, valid_tokens=valid_tokens, keep_tokens=keep_tokens,
                             seed=seed, base_preds=base, pad_id=pad_id, ignore_label_id=ignore_label_id,
                             threshold=threshold)
    labels = batch.get("labels")
    coll = collapse_metrics(base, labels, pad_id=pad_id, ignore_label_id=ignore_label_id,
                            answer_tokens=answer_tokens)
    return make_diagnosis(sens, coll)


def act_predict_fn(head: Any, device: Any = None) -> PredictFn:
    """A `predict_fn` for an hrmkit model head: `head.initial_carry(batch)`, then `head(carry, batch) ->
    (carry, loss, metrics, outputs, all_finished)` until all_finished; returns the last `outputs["preds"]`.

    The head runs in eval mode under no_grad (its previous train/eval mode is restored). Batch values are
    converted to tensors on `device` (default: the head's parameters' device); the batch must hold what the
    head needs (inputs, labels, puzzle_identifiers).
    """
    import torch

    from hrmkit.eval.rollout import rollout

    def predict(batch: Mapping) -> Any:
        dev = device if device is not None else next(iter(head.parameters()), torch.empty(0)).device
        b = {k: torch.as_tensor(np.asarray(v) if not hasattr(v, "detach") else v).to(dev) for k, v in batch.items()}
        was_training = head.training
        head.eval()
        try:
            return rollout(head, b).outputs["preds"]
        finally:
            head.train(was_training)

    return predict
