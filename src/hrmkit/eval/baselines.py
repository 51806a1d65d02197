"""Trivial baselines scored exactly like the model, and a summary table that always shows them.

A number means nothing without the score of a predictor that ignores the problem (docs/design.md §7): on padded
ARC canvases "predict background everywhere" reaches a high token accuracy; on Sudoku copying the input
gets every clue right. The baselines here are computed on the same examples with the same cell rules as
`metrics.compute_metrics`.

Token-level baselines (any task), `compute_baselines`:
- "copy_input": the prediction is the input sequence unchanged (for ARC this is "the test input unchanged"
  on the canvas, EOS frame included).
- "most_common_token": every cell gets the single most common answer token. The token is counted over the
  answer cells (not ignored, not PAD) of `train_labels` when given (source "train"), otherwise over the
  evaluated labels themselves (source "eval", an optimistic baseline since it peeks at the answers).
- the task's own (`Task.baselines`), e.g. Sudoku's "naked_singles": propagation without search, which tells
  how much of a score the rules alone give.

Grid-level ARC baselines (original frame, scored with `arc_scoring`), `arc_baselines`:
- "arc_test_input": answer the test input grid unchanged.
- "arc_most_common_demo_output": the task's demonstration outputs ranked by how often each occurs
  (ties: first occurrence); attempt 2 is the second most common.

Public API
----------
- `compute_baselines(inputs, labels, *, train_labels=None, sets=None, task="generic", mask_fn=None,
  pad_id=0, ignore_label_id=-100) -> dict[str, dict]`
- `most_common_token(labels, *, pad_id=0, ignore_label_id=-100) -> int`
- `arc_baselines(demonstrations, test_inputs, solutions, *, ks=(1, 2)) -> dict[str, dict]`
- `format_summary(model_metrics, baselines, *, title=None) -> str`
- `summary_rows(model_metrics, baselines) -> (columns, rows)`: the table as data (used by the report).
- `baseline_verdict(model_metrics, baselines) -> str | None`: what the model fails to beat, if anything.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from hrmkit import tasks
from hrmkit.eval.arc_scoring import ArcPrediction, score_arc
from hrmkit.eval.metrics import IGNORE_LABEL_ID, PAD_ID, MaskFn, _as_2d, answer_mask, compute_metrics
from hrmkit.tasks import Task


def most_common_token(labels: Any, *, pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID) -> int:
    """Most frequent token among the answer cells of `labels` (int [N, S]); smallest token on ties.

    Raises ValueError when there is no answer cell at all.
    """
    labels = _as_2d("labels", labels)
    cells = labels[answer_mask(labels, pad_id=pad_id, ignore_label_id=ignore_label_id)]
    if cells.size == 0:
        raise ValueError("no answer cells to count the most common token from")
    if cells.min() >= 0:  # token ids: a bincount is much faster than sorting millions of cells
        return int(np.argmax(np.bincount(cells)))
    values, counts = np.unique(cells, return_counts=True)
    return int(values[np.argmax(counts)])


def compute_baselines(inputs: Any, labels: Any, *, train_labels: Any = None, sets: Sequence[str] | None = None,
                      task: Task | str | None = "generic", mask_fn: MaskFn | None = None,
                      pad_id: int | None = PAD_ID, ignore_label_id: int = IGNORE_LABEL_ID) -> dict[str, dict]:
    """Score the copy_input and most_common_token baselines, and the task's own, on the evaluated examples.

    inputs, labels: int [N, S] (the arrays the model was scored on); train_labels: int [M, S] labels of the
    training split, optional (see the module docstring for which labels the token is counted over).
    Other arguments as `metrics.compute_metrics`. Returns {baseline name: compute_metrics result + "baseline":
    {"description", and for most_common_token "token" and "source" ("train" | "eval")}}.
    """
    inputs = _as_2d("inputs", inputs)
    labels = _as_2d("labels", labels)
    kw = dict(sets=sets, task=task, mask_fn=mask_fn, pad_id=pad_id, ignore_label_id=ignore_label_id)
    out: dict[str, dict] = {}
    copy = compute_metrics(inputs, labels, inputs, **kw)
    copy["baseline"] = {"description": "predict the input unchanged"}
    out["copy_input"] = copy
    source = "train" if train_labels is not None else "eval"
    try:
        token = most_common_token(train_labels if train_labels is not None else labels, pad_id=pad_id,
                                  ignore_label_id=ignore_label_id)
    except ValueError:
        token = None
    if token is not None:
        mc = compute_metrics(inputs, labels, np.full_like(labels, token), **kw)
        mc["baseline"] = {"description": f"predict token {token} everywhere (most common {source} label)",
                          "token": token, "source": source}
        out["most_common_token"] = mc
    for name, (description, preds) in tasks.resolve(task).baselines(inputs).items():
        own = compute_metrics(inputs, labels, preds, **kw)
        own["baseline"] = {"description": description, "source": "task"}
        out[name] = own
    return out


def _demo_ranking(pairs: Sequence[tuple[Any, Any]]) -> list[np.ndarray]:
    """Distinct demonstration outputs, most common first (ties: first occurrence)."""
    seen: dict[tuple, list] = {}
    for i, (_, out) in enumerate(pairs):
        g = np.asarray(out, dtype=np.int64)
        key = (g.shape, g.tobytes())
        if key not in seen:
            seen[key] = [g, 0, i]
        seen[key][1] += 1
    return [g for g, _, _ in sorted(seen.values(), key=lambda e: (-e[1], e[2]))]


def arc_baselines(demonstrations: Mapping[str, Sequence[tuple[Any, Any]]], test_inputs: Mapping[str, Sequence[Any]],
                  solutions: Mapping[str, Sequence[Any]], *, ks: Sequence[int] = (1, 2)) -> dict[str, dict]:
    """ARC grid baselines scored with `arc_scoring.score_arc` (pass@k per task, ARC Prize rule).

    demonstrations: {task_id: [(input grid, output grid), ...]} (the task's train pairs);
    test_inputs: {task_id: [test input grid, ...]}; solutions: {task_id: [expected output grid, ...]}.
    Grids: int [h, w], colours 0..9. Returns {name: score dict} where each score has "exact_accuracy"
    (share of test inputs solved by attempt 1), "pass@k", "n_examples" and a "baseline" description.
    """
    def as_metrics(score: dict, description: str) -> dict:
        score = {k: v for k, v in score.items() if k != "tasks"}
        score["exact_accuracy"] = score.get("test_inputs_pass@1")
        score["n_examples"] = score["n_test_inputs"]
        score["baseline"] = {"description": description}
        return score

    copy_preds = [ArcPrediction(t, i, grid=g) for t, grids in test_inputs.items() for i, g in enumerate(grids)]
    demo_preds = []
    for t, grids in test_inputs.items():
        ranking = _demo_ranking(demonstrations.get(t, []))
        for i in range(len(grids)):
            # Votes decrease with rank so the scorer keeps the demonstration ranking.
            for r, g in enumerate(ranking):
                demo_preds += [ArcPrediction(t, i, grid=g)] * (len(ranking) - r)
    ks = tuple(ks) if 1 in ks else (1, *ks)
    return {
        "arc_test_input": as_metrics(score_arc(copy_preds, solutions, ks=ks), "answer the test input unchanged"),
        "arc_most_common_demo_output": as_metrics(score_arc(demo_preds, solutions, ks=ks),
                                                  "answer the task's most common demonstration output"),
    }


def _flat(metrics: Mapping) -> Mapping:
    """The overall metric dict of a compute_metrics result, or `metrics` itself when already flat."""
    return metrics["overall"] if "overall" in metrics and isinstance(metrics["overall"], Mapping) else metrics


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100.0 * float(x):.1f}%"


def summary_rows(model_metrics: Mapping, baselines: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """The summary table as text cells: model row first, then one row per baseline.

    Columns: predictor, exact accuracy, token accuracy, pass@k columns when any row has them, q-halt
    accuracy, mean steps, examples. Exact and token accuracy are always adjacent.
    """
    named = [("model", _flat(model_metrics))] + [(n, _flat(b)) for n, b in baselines.items()]
    pass_keys = sorted({k for _, m in named for k in m if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    columns = ["predictor", "exact accuracy", "token accuracy", *pass_keys, "q-halt accuracy", "mean steps",
               "examples"]
    rows = []
    for name, m in named:
        steps = m.get("mean_steps")
        rows.append([name, _pct(m.get("exact_accuracy")), _pct(m.get("token_accuracy")),
                     *[_pct(m.get(k)) for k in pass_keys], _pct(m.get("q_halt_accuracy")),
                     "—" if steps is None else f"{steps:.2f}", str(m.get("n_examples", "—"))])
    return columns, rows


def baseline_verdict(model_metrics: Mapping, baselines: Mapping[str, Mapping]) -> str | None:
    """A warning naming every measure (pass@2, exact accuracy, token accuracy) on which the model does not beat
    the best baseline, or None when it beats them all (or nothing can be compared)."""
    model = _flat(model_metrics)
    problems = []
    for key in ("pass@2", "exact_accuracy", "token_accuracy"):
        mine = model.get(key)
        rivals = [(n, _flat(b).get(key)) for n, b in baselines.items() if _flat(b).get(key) is not None]
        if mine is None or not rivals:
            continue
        best_name, best = max(rivals, key=lambda r: r[1])
        if mine <= best:
            problems.append(f"model {key.replace('_', ' ')} {_pct(mine)} does not beat the best baseline "
                            f"({best_name} {_pct(best)})")
    return "; ".join(problems) or None


def format_summary(model_metrics: Mapping, baselines: Mapping[str, Mapping], *, title: str | None = None) -> str:
    """Plain-text table: the model and every baseline, exact accuracy beside token accuracy.

    model_metrics: a `compute_metrics` result (its "overall" part is used, and one table per set follows
    when both sides have "sets") or a flat metric dict (may carry ARC pass@k keys).
    baselines: {name: same shape}. Ends with a WARNING line when the model does not beat the baselines.
    """
    def table(m: Mapping, b: Mapping[str, Mapping], heading: str) -> list[str]:
        columns, rows = summary_rows(m, b)
        widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return [heading, fmt(columns), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]]

    lines = table(model_metrics, baselines, title or "overall")
    sets = model_metrics.get("sets") if isinstance(model_metrics, Mapping) else None
    if sets:
        for name, m in sets.items():
            b = {bn: bm["sets"][name] for bn, bm in baselines.items() if name in bm.get("sets", {})}
            lines += [""] + table(m, b, f"set {name}")
    verdict = baseline_verdict(model_metrics, baselines)
    if verdict:
        lines += ["", f"WARNING: {verdict}"]
    return "\n".join(lines)
