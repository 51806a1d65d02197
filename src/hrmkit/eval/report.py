"""A self-contained HTML evaluation report: summary with baselines, accuracy by difficulty, input-sensitivity
verdict, halting-step histogram, token confusion table, learning curves (loss, exact and token accuracy,
learning rate), ARC task table, rendered examples, the thinking view (the grid after every ACT segment), a
checkpoint comparison, and the model's configuration and parameter count.

Everything is inline (CSS, and SVG drawn here and by `hrmkit.data.render`; no script, no external file or network access), so the one
`report.html` can be copied anywhere. Token accuracy only ever appears in tables that also show the exact
accuracy and the trivial baselines (docs/design.md §7).

Example dicts (`examples` argument), one per shown example:
    {"kind": the task (`hrmkit.tasks.Task` or its name), "input": grid, "expected": grid, "predictions": [grid | None, ...]
     (best first; None = could not be decoded), "correct": bool, optional "name": str,
     optional "votes": [int per prediction], optional "q": [float per prediction]}
Grids: sudoku int [9, 9] digits 0..9 (0 = blank); arc int [h, w] colours 0..9; maze str [h, w] of
"# SGo" characters or int tokens 1..5. `tokens_to_grid` converts hrmkit token rows; `make_example` builds
a whole dict from token rows.

Public API
----------
- `write_report(out_dir, summary, baselines, diagnosis, metrics_jsonl_path=None, examples=(),
  arc_table=None, comparison=None, *, title="hrmkit evaluation report", max_examples=8, notes=(),
  thinking=(), breakdown=(), confusion=None, halting=None, model_info=None) -> Path`
- `render_report(...same...) -> str` (the HTML, without writing)
- `load_metrics_jsonl(path) -> list[dict]`
- `tokens_to_grid(task, tokens, *, dataset_row=False) -> np.ndarray | None` (from `hrmkit.data.render`)
- `make_example(task, input_tokens, label_tokens, pred_tokens, correct, *, name="", dataset_row=False) -> dict`
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hrmkit.data.render import diff_mask, grid_svg, tokens_to_grid
from hrmkit.eval.baselines import _flat, _pct, baseline_verdict, summary_rows
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.tasks import Task, resolve
from hrmkit.tasks.sudoku import DIFF_COLOUR as SUDOKU_DIFF_COLOUR

SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.model td{font-weight:bold;background:#eef5ff}
.verdict li{margin:4px 0}.warn{color:#a00000;font-weight:bold}.ok{color:#006000}
.example{border:1px solid #ddd;padding:8px;margin:8px 0;border-radius:4px}
.example.correct{border-left:6px solid #2ca02c}.example.wrong{border-left:6px solid #d62728}
figure{display:inline-block;margin:4px 12px 4px 0;vertical-align:top}figcaption{font-size:.85em;color:#444}
.note{color:#555;font-size:.9em}
.strip{border:1px solid #ddd;padding:8px;margin:8px 0;border-radius:4px;overflow-x:auto;white-space:nowrap}
.strip.correct{border-left:6px solid #2ca02c}.strip.wrong{border-left:6px solid #d62728}
.strip figure{white-space:normal}figure.halt figcaption{font-weight:bold;color:#000}
pre.config{background:#f7f7f7;padding:8px;font-size:.8em;max-height:360px;overflow:auto}
"""


# ----------------------------------------------------------------------------------------------- data

def load_metrics_jsonl(path: str | Path) -> list[dict]:
    """Read a metrics.jsonl file: one JSON object per line with "global_step" (lines without it, blank
    lines and lines that do not parse are skipped). Nested objects are flattened with "/" ("eval/loss").
    Returns the records sorted by global_step. A missing file gives []."""
    path = Path(path)
    if not path.exists():
        return []
    from hrmkit.fsutil import read_jsonl

    records = []
    for obj in read_jsonl(path):  # lines that are not UTF-8 JSON are skipped and named on stderr
        if isinstance(obj, dict) and isinstance(obj.get("global_step"), (int, float)):
            records.append(_flatten(obj))
    return sorted(records, key=lambda r: r["global_step"])


def _flatten(obj: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def make_example(kind: Task | str, input_tokens: Any, label_tokens: Any, pred_tokens: Sequence[Any], correct: bool,
                 *, name: str = "", dataset_row: bool = False) -> dict:
    """An example dict for `write_report` from token rows (labels may use -100 for ignored cells; those
    cells are shown as the input's value, i.e. PAD)."""
    labels = np.asarray(label_tokens.detach().cpu() if hasattr(label_tokens, "detach") else label_tokens)
    labels = np.where(labels < 0, 0, labels)
    return {"kind": kind, "name": name, "correct": bool(correct),
            "input": tokens_to_grid(kind, input_tokens, dataset_row=dataset_row),
            "expected": tokens_to_grid(kind, labels, dataset_row=dataset_row),
            "predictions": [tokens_to_grid(kind, p, dataset_row=dataset_row) for p in pred_tokens]}


# ----------------------------------------------------------------------------------------------- svg

def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _nice(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.2e}"


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    raw = (hi - lo) / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _line_chart(series: Mapping[str, list[tuple[float, float]]], title: str, *, y_range: tuple | None = None,
                width: int = 640, height: int = 280, log_y: bool = False, dashed: Sequence[str] = (),
                x_label: str = "global step") -> str:
    """Inline SVG line chart of named (x, y) series; `log_y` plots log10(y) (used when all y > 0); the series
    named in `dashed` are drawn dashed (reference levels)."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    if log_y:
        series = {k: [(x, math.log10(y)) for x, y in s] for k, s in series.items()}
        pts = [p for s in series.values() for p in s]
        title += " (log scale)"
    left, right, top, bottom = 60, 170, 28, 36
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range or (min(ys), max(ys))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom
    sx = lambda x: left + (x - x0) / (x1 - x0) * pw
    sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * ph
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{_esc(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for yv in _ticks(y0, y1):
        out.append(f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{left + pw}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        label = _nice(10 ** yv if log_y else yv)
        out.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{label}</text>')
    for xv in _ticks(x0, x1):
        out.append(f'<text x="{sx(xv):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">'
                   f'{_nice(xv)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" font-size="11" text-anchor="middle">{_esc(x_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        if len(s) > 1:
            dash = ' stroke-dasharray="5 4"' if name in dashed else ""
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
        if len(s) <= 30:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in s]
        ly = top + 12 + 16 * i
        out.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{left + pw + 24}" y="{ly + 1}" font-size="11">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _curves(records: list[dict], baselines: Mapping[str, Mapping] | None = None) -> str:
    """Charts from metrics.jsonl records: loss, exact accuracy / pass@k, the evaluations' token accuracy with
    the baselines' token accuracy on this report's examples as dashed levels (never without them, docs/design.md
    §7; not drawn when there is no baseline), and the learning rate."""
    def series(pred: Callable[[str], bool]) -> dict[str, list[tuple[float, float]]]:
        keys = sorted({k for r in records for k in r if k != "global_step" and pred(k)})[:len(SERIES_COLOURS)]
        out = {}
        for k in keys:
            pts = [(float(r["global_step"]), float(r[k])) for r in records
                   if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) and math.isfinite(r[k])]
            if pts:
                out[k] = pts
        return out

    losses = series(lambda k: "loss" in k.lower())
    ys = [y for s in losses.values() for _, y in s]
    loss = _line_chart(losses, "Loss", log_y=bool(ys) and min(ys) > 0 and max(ys) / min(ys) >= 100)
    acc = _line_chart(series(lambda k: "exact_accuracy" in k or "pass@" in k), "Exact accuracy / pass@k",
                      y_range=(0.0, 1.0))
    last = lambda k: k.rsplit("/", 1)[-1]
    tokens = series(lambda k: last(k) == "token_accuracy")
    levels = {f"{name} (baseline)": _flat(b).get("token_accuracy") for name, b in (baselines or {}).items()}
    levels = {name: v for name, v in levels.items() if isinstance(v, (int, float))}
    tok = ""
    if tokens and levels:
        x0 = min(x for s in tokens.values() for x, _ in s)
        x1 = max(x for s in tokens.values() for x, _ in s)
        tokens.update({name: [(x0, v), (x1, v)] for name, v in levels.items()})
        tok = _line_chart(tokens, "Token accuracy on the cells to fill, and the baselines'", y_range=(0.0, 1.0),
                          dashed=list(levels))
    lrs = series(lambda k: last(k) == "lr" or last(k).endswith("_lr"))
    ys = [y for s in lrs.values() for _, y in s]
    lr = _line_chart(lrs, "Learning rate", log_y=bool(ys) and min(ys) > 0 and max(ys) / min(ys) >= 100)
    charts = [c for c in (loss, acc, tok, lr) if c]
    return "<br>".join(charts) if charts else '<p class="note">No loss or exact-accuracy fields in metrics.jsonl.</p>'


# ----------------------------------------------------------------------------------------------- html

def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, table_id: str = "",
           row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary_section(summary: Mapping, baselines: Mapping[str, Mapping]) -> str:
    columns, rows = summary_rows(summary, baselines)
    parts = ["<h2>Summary</h2>",
             '<p class="note">Exact accuracy: the whole answer right. Token accuracy: cells to predict only '
             "(padding and ignored cells excluded; for Sudoku the given clues too). Baselines are scored on "
             "the same examples.</p>",
             _table(columns, rows, table_id="summary-table", row_classes=["model"] + [""] * (len(rows) - 1))]
    notes = [f"<li><b>{_esc(n)}</b>: {_esc(b['baseline'].get('description', ''))}</li>"
             for n, b in baselines.items() if isinstance(b.get("baseline"), Mapping)]
    if notes:
        parts.append(f"<ul class=\"note\">{''.join(notes)}</ul>")
    for name, m in (summary.get("sets") or {}).items():
        b = {bn: bm["sets"][name] for bn, bm in baselines.items() if name in (bm.get("sets") or {})}
        columns, rows = summary_rows(m, b)
        parts += [f"<h3>Set {_esc(name)}</h3>", _table(columns, rows, row_classes=["model"] + [""] * len(b))]
    return "\n".join(parts)


def _verdict_section(summary: Mapping, baselines: Mapping, diagnosis: Mapping | None, notes: Sequence[str] = ()) -> str:
    items = []
    verdict = baseline_verdict(summary, baselines)
    model = _flat(summary)
    if verdict:
        items.append(("warn", f"WARNING: {verdict}."))
    elif baselines:
        items.append(("ok", f"Model exact accuracy {_pct(model.get('exact_accuracy'))} beats every baseline."))
    else:
        items.append(("warn", "No baselines were computed: the accuracies cannot be judged."))
    if diagnosis:
        if diagnosis.get("warning"):
            items.append(("warn", f"WARNING: {diagnosis['warning']}"))
        sens = diagnosis.get("sensitivity") or {}
        share = sens.get("changed_examples_share")
        if share is not None:
            cls = "warn" if diagnosis.get("input_invariant") else "ok"
            verdict_word = "INPUT-INVARIANT" if diagnosis.get("input_invariant") else "reads its input"
            items.append((cls, f"Input sensitivity: {verdict_word} — the prediction changed for {share:.1%} of "
                               f"the examples (and {sens.get('changed_cells_share') or 0:.1%} of the answer cells) "
                               f"when the inputs were shuffled between examples or replaced by random tokens "
                               f"(input-invariant below {sens.get('threshold', 0.05):.0%})."))
        if not diagnosis.get("collapsed") and diagnosis.get("collapse"):
            items.append(("ok", "No output collapse detected."))
    else:
        items.append(("warn", "Input sensitivity was not measured."))
    items += [("note", n) for n in notes]
    lis = "".join(f'<li class="{c}">{_esc(t)}</li>' for c, t in items)
    return f'<h2>Verdict</h2><ul class="verdict" id="verdict">{lis}</ul>'


def _diagnosis_section(diagnosis: Mapping | None) -> str:
    if not diagnosis:
        return ""
    rows = []
    sens = diagnosis.get("sensitivity") or {}
    for name in ("shuffle", "random_tokens"):
        s = sens.get(name)
        if s:
            rows.append([f"perturbation: {name}", f"{_pct(s['changed_examples_share'])} of examples, "
                         f"{_pct(s['changed_cells_share'])} of cells changed ({s['n_examples']} examples)"])
    col = diagnosis.get("collapse") or {}
    for key in ("n_distinct_pred_tokens", "n_distinct_label_tokens", "pred_entropy_bits", "label_entropy_bits",
                "mode_prediction_share", "label_mode_share"):
        v = col.get(key)
        if v is not None:
            rows.append([key.replace("_", " "), _nice(v) if isinstance(v, float) else v])
    if col.get("invalid_pred_share") is not None:
        rows.append(["answer cells with a non-answer token", _pct(col["invalid_pred_share"])])
    flags = ["input_invariant", "collapsed"] + (["invalid_outputs"] if "invalid_outputs" in diagnosis else [])
    rows.append(["flags", ", ".join(f"{f}={bool(diagnosis.get(f))}" for f in flags)])
    return "<h2>Input sensitivity and collapse</h2>" + _table(["check", "value"], rows, table_id="diagnosis-table")


def _arc_section(arc_table: Sequence[Mapping] | None) -> str:
    if not arc_table:
        return ""
    pass_keys = sorted({k for r in arc_table for k in r if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    columns = ["task", "test inputs", *pass_keys, "votes (best answer)", "mean q (best answer)", "right answer rank",
               "invalid / predictions"]
    rows = []
    for r in arc_table:
        fmt_list = lambda xs, f: ", ".join("—" if x is None else f(x) for x in (xs or []))
        rows.append([r.get("task_id", ""), r.get("n_test", ""), *[_pct(r.get(k)) for k in pass_keys],
                     fmt_list(r.get("top_votes"), str), fmt_list(r.get("top_mean_q"), lambda q: f"{q:.3f}"),
                     fmt_list(r.get("correct_rank"), str), f"{r.get('n_invalid', 0)} / {r.get('n_predictions', 0)}"])
    return "<h2>ARC tasks</h2>" + _table(columns, rows, table_id="arc-table")


def _example_html(ex: Mapping) -> str:
    kind = resolve(ex.get("kind", "arc"))
    expected = ex.get("expected")
    correct = bool(ex.get("correct"))
    figs = [f"<figure>{grid_svg(ex.get('input'), kind)}<figcaption>input</figcaption></figure>",
            f"<figure>{grid_svg(expected, kind)}<figcaption>expected</figcaption></figure>"]
    votes, qs = ex.get("votes") or [], ex.get("q") or []
    for i, pred in enumerate(list(ex.get("predictions") or [])[:2]):
        cap = f"prediction {i + 1}"
        if i < len(votes):
            cap += f", {votes[i]} votes"
        if i < len(qs) and qs[i] is not None:
            cap += f", q {qs[i]:.3f}"
        diff = diff_mask(pred, expected, kind)
        if pred is not None and expected is not None:
            p, e = np.asarray(pred), np.asarray(expected)
            if diff is None:
                cap += f" (shape {p.shape[0]}x{p.shape[1]}, expected {e.shape[0]}x{e.shape[1]})"
            else:
                n_diff = int(diff.sum())
                cap += f" ({n_diff} cell{'s' * (n_diff != 1)} differ{'s' * (n_diff == 1)})" if n_diff else " (right)"
        figs.append(f"<figure>{grid_svg(pred, kind, marked=diff)}<figcaption>{_esc(cap)}</figcaption></figure>")
    title = f"{'✓ solved' if correct else '✗ failed'} — {kind.name} {ex.get('name', '')}"
    return (f'<div class="example {"correct" if correct else "wrong"}"><b>{_esc(title)}</b><br>'
            f"{''.join(figs)}</div>")


def _examples_section(examples: Sequence[Mapping], max_examples: int) -> str:
    if not examples:
        return ""
    fails = [e for e in examples if not e.get("correct")][:max_examples]
    wins = [e for e in examples if e.get("correct")][:max_examples]
    parts = ["<h2>Examples</h2>", '<p class="note">Cells that differ from the expected answer: '
             f'<span style="color:{SUDOKU_DIFF_COLOUR}">red digits</span> (Sudoku) or a cross (ARC, maze).</p>']
    parts += [f"<h3>Failures ({len(fails)} shown)</h3>"] + [_example_html(e) for e in fails]
    parts += [f"<h3>Successes ({len(wins)} shown)</h3>"] + [_example_html(e) for e in wins]
    return "\n".join(parts)


def _comparison_section(comparison: Sequence[Mapping] | None) -> str:
    if not comparison:
        return ""
    flat = [_flat(c.get("metrics") or {}) for c in comparison]
    pass_keys = sorted({k for m in flat for k in m if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    columns = ["checkpoint", "step", "exact accuracy", "token accuracy", *pass_keys, "q-halt accuracy",
               "best baseline (exact)", "best baseline (token)", "input-invariant"]
    rows = []
    for c, m in zip(comparison, flat):
        bl = {n: _flat(b) for n, b in (c.get("baselines") or {}).items()}
        best = lambda key: max(((n, b.get(key)) for n, b in bl.items() if b.get(key) is not None),
                               key=lambda t: t[1], default=None)
        be, bt = best("exact_accuracy"), best("token_accuracy")
        diag = c.get("diagnosis")
        rows.append([c.get("name", ""), c.get("step", ""), _pct(m.get("exact_accuracy")),
                     _pct(m.get("token_accuracy")), *[_pct(m.get(k)) for k in pass_keys],
                     _pct(m.get("q_halt_accuracy")), f"{be[0]} {_pct(be[1])}" if be else "—",
                     f"{bt[0]} {_pct(bt[1])}" if bt else "—",
                     "—" if diag is None else ("YES" if diag.get("input_invariant") else "no")])
    return "<h2>Checkpoint comparison</h2>" + _table(columns, rows, table_id="comparison-table")


def _thinking_html(t: Mapping) -> str:
    kind, frames, q_halt, q_cont = resolve(t["kind"]), t["frames"], t["q_halt"], t.get("q_continue")
    halt = int(t["halt_step"])
    given = kind.given(t["input"]) if t.get("input") is not None else None
    figs = [f"<figure>{grid_svg(t.get('input'), kind)}<figcaption>input</figcaption></figure>"]
    for i, (grid, marked) in enumerate(frames):
        n = "?" if marked is None else int(np.asarray(marked).sum())
        cap = f"segment {i + 1}: q_halt {q_halt[i]:.2f}" + (f", q_cont {q_cont[i]:.2f}" if q_cont else "")
        cap += f", {n} changed"
        cls = ' class="halt"' if i + 1 == halt else ""
        figs.append(f"<figure{cls}>{grid_svg(grid, kind, marked=marked, given=given)}<figcaption>{_esc(cap)}"
                    f"{' ■ halting rule stops' if i + 1 == halt else ''}</figcaption></figure>")
    figs.append(f"<figure>{grid_svg(t.get('expected'), kind, given=given)}<figcaption>expected</figcaption></figure>")
    ok = bool(t.get("correct"))
    title = (f"{'✓ solved' if ok else '✗ failed'} — {kind.name} {t.get('name', '')}"
             + ("" if ok else f" ({t.get('wrong_cells', '?')} answer cells wrong at the end)"))
    return (f'<div class="strip {"correct" if ok else "wrong"}"><b>{_esc(title)}</b><br>{"".join(figs)}</div>')


def _thinking_section(thinking: Sequence[Mapping]) -> str:
    if not thinking:
        return ""
    fails = [t for t in thinking if not t.get("correct")]
    wins = [t for t in thinking if t.get("correct")]
    parts = ['<h2 id="thinking">How the answers form: the grid after every ACT segment</h2>',
             '<p class="note">Evaluation runs every ACT segment; each figure is the answer (argmax) after one '
             "segment, the cells changed since the previous segment marked (Sudoku: "
             f'<span style="color:{SUDOKU_DIFF_COLOUR}">red digits</span> on pink; mazes and ARC: a cross). Captions '
             "give the q_halt (and q_continue) logits; ■ marks the segment after which the halting rule "
             "(q_halt &gt; q_continue, or q_halt &gt; 0) said stop. Failures are the closest ones (fewest wrong "
             "cells).</p>"]
    parts += [f"<h3>Failures ({len(fails)} shown)</h3>"] + [_thinking_html(t) for t in fails]
    parts += [f"<h3>Successes ({len(wins)} shown)</h3>"] + [_thinking_html(t) for t in wins]
    return "\n".join(parts)


def _bar_chart(counts: Mapping[str, int], title: str, x_label: str, width: int = 520, height: int = 220) -> str:
    """Inline SVG bar chart of {label: count}, bars in the given order, each labelled with its count."""
    items = list(counts.items())
    if not items:
        return ""
    left, top, bottom = 40, 28, 40
    pw, ph = width - left - 10, height - top - bottom
    top_count = max(c for _, c in items) or 1
    bw = pw / len(items)
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{_esc(title)}</text>']
    for i, (label, c) in enumerate(items):
        h = ph * c / top_count
        x, y = left + i * bw + bw * 0.1, top + ph - h
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.8:.1f}" height="{h:.1f}" fill="{SERIES_COLOURS[0]}"/>')
        out.append(f'<text x="{x + bw * 0.4:.1f}" y="{y - 3:.1f}" font-size="10" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x + bw * 0.4:.1f}" y="{top + ph + 14}" font-size="11" text-anchor="middle">'
                   f"{_esc(label)}</text>")
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">{_esc(x_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _halting_section(halting: Mapping | None) -> str:
    """halting: {"histogram": {"step": count}, "segments": K, "mean": float}."""
    if not halting or not halting.get("histogram"):
        return ""
    k = halting.get("segments")
    hist = {str(s): halting["histogram"].get(str(s), 0) for s in range(1, k + 1)} if k else halting["histogram"]
    note = (f"Evaluation runs all {k} segments; the halting rule (q_halt &gt; q_continue, or q_halt &gt; 0) would "
            f"have stopped each example after the segment counted here (mean {halting.get('mean', 0):.2f}; "
            f"examples it never stopped count at {k}).")
    return ('<h2 id="halting">When the halting rule says stop</h2>' + f'<p class="note">{note}</p>'
            + _bar_chart(hist, "Examples by halting step", "ACT segment"))


def _breakdown_section(tables: Sequence[Mapping]) -> str:
    if not tables:
        return ""
    parts = ['<h2 id="difficulty">Accuracy by difficulty</h2>',
             '<p class="note">The same evaluated examples split by a difficulty measure; the trivial baselines '
             "are scored on the same examples of each bucket.</p>"]
    for i, t in enumerate(tables):
        names = sorted({b for r in t["rows"] for b in r["baselines"]})
        columns = [t["name"], "examples", "exact accuracy", "token accuracy", *[f"{b} (exact)" for b in names]]
        rows = [[r["bucket"], r["n_examples"], _pct(r["exact_accuracy"]), _pct(r["token_accuracy"]),
                 *[_pct(r["baselines"].get(b)) for b in names]] for r in t["rows"]]
        parts += [f"<h3>By {_esc(t['name'])}</h3>", _table(columns, rows, table_id=f"difficulty-{i}")]
    return "\n".join(parts)


def _confusion_section(confusion: Mapping | None) -> str:
    """confusion: `breakdown.confusion_table` result."""
    if not confusion or not confusion.get("tokens"):
        return ""
    from hrmkit.data.render import token_names

    tokens = confusion["tokens"]
    names = token_names(confusion.get("task"), max(tokens) + 1)
    columns = ["expected \\ predicted", *[names[t] for t in tokens], "right"]
    rows = []
    for t, row in zip(tokens, confusion["counts"]):
        total = sum(row)
        rows.append([names[t], *row, _pct(row[tokens.index(t)] / total) if total else "—"])
    return ('<h2 id="confusion">Token confusion</h2><p class="note">Counts over the '
            f"{confusion['n_cells']} cells token accuracy scores (Sudoku: the blank cells); rows: the expected "
            "token, columns: the predicted one.</p>" + _table(columns, rows, table_id="confusion-table"))


def _scaling_section(scaling: Mapping | None) -> str:
    """Test-time scaling: accuracy against ACT segments (one rollout; the halting rule's choice as a level)
    and against votes (augmented versions x checkpoints), each with the evaluation time it took."""
    if not scaling:
        return ""
    parts = ['<h2 id="scaling">Test-time scaling</h2>']
    curve, halt = scaling.get("segments_curve") or [], scaling.get("at_halt") or {}
    seconds = scaling.get("seconds")
    if curve:
        pct = lambda p, k: None if p.get(k) is None else 100 * p[k]
        series = {name: [(p["segments"], pct(p, key)) for p in curve if p.get(key) is not None]
                  for name, key in (("exact %", "exact_accuracy"), ("token %", "token_accuracy"))}
        if halt.get("exact_accuracy") is not None:
            series["exact % at halting"] = [(1, 100 * halt["exact_accuracy"]), (len(curve), 100 * halt["exact_accuracy"])]
        parts.append(_line_chart(series, "Accuracy after N ACT segments", y_range=(0, 100),
                                 dashed=("exact % at halting",), x_label="ACT segments"))
        per = seconds / len(curve) if seconds else None
        rows = [[p["segments"], _pct(p.get("exact_accuracy")), _pct(p.get("token_accuracy")),
                 "—" if per is None else f"{per * p['segments']:.2f}"] for p in curve]
        if halt.get("mean_segments") is not None:
            rows.append([f"at halting (mean {halt['mean_segments']:.2f})", _pct(halt.get("exact_accuracy")),
                         _pct(halt.get("token_accuracy")),
                         "—" if per is None else f"{per * halt['mean_segments']:.2f}"])
        parts.append(_table(["segments", "exact", "token", "seconds (est.: share of the one rollout)"], rows,
                            table_id="segments-table"))
    tta = scaling.get("tta")
    if tta:
        series = {"exact %": [(p["votes"], 100 * p["exact_accuracy"]) for p in tta["curve"]
                              if p.get("exact_accuracy") is not None],
                  "token %": [(p["votes"], 100 * p["token_accuracy"]) for p in tta["curve"]
                              if p.get("token_accuracy") is not None]}
        verified = tta.get("verified")
        if verified and verified.get("exact_accuracy") is not None:
            series["verified exact % (verifier)"] = [(tta["votes"], 100 * verified["exact_accuracy"])]
        parts.append(_line_chart(series, "Accuracy of the top-voted answer", y_range=(0, 100),
                                 x_label="votes per puzzle (augmented versions x checkpoints)"))
        rows = [[p["versions"], p["votes"], _pct(p.get("exact_accuracy")), _pct(p.get("token_accuracy")),
                 f"{p['est_seconds']:.2f}"] for p in tta["curve"]]
        parts.append(_table(["versions", "votes", "exact", "token", "seconds (est.: share of the measured run)"],
                            rows, table_id="votes-table"))
        note = (f"{tta['checkpoints']} checkpoint(s), {tta['versions']} versions each; all votes agree on "
                f"{_pct(tta.get('unanimous_share'))} of the puzzles; measured {tta['seconds']:.2f} s.")
        if verified:
            note += (f" Verified figure (best-ranked answer passing the task's verifier; knowledge the model does not "
                     f"have, so never the model's score): {_pct(verified.get('exact_accuracy'))} exact.")
        parts.append(f'<p class="note">{_esc(note)}</p>')
    return "".join(parts)


def _model_section(model_info: Mapping | None) -> str:
    """model_info: {"num_parameters": int, "config": dict (the run's TrainConfig), optional "checkpoint"}."""
    if not model_info:
        return ""
    import yaml

    cfg = model_info.get("config") or {}
    arch = cfg.get("arch") or {}
    facts = [["parameters (puzzle embedding table excluded)", f"{model_info.get('num_parameters', 0):,}"]]
    facts += [[k, arch[k]] for k in ("name", "hidden_size", "H_layers", "L_layers", "H_cycles", "L_cycles",
                                     "halt_max_steps", "puzzle_emb_ndim") if k in arch]
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False) if cfg else ""
    return ('<h2 id="model">Model and configuration</h2>' + _table(["", "value"], facts, table_id="model-table")
            + (f'<details><summary>full configuration</summary><pre class="config">{_esc(text)}</pre></details>'
               if text else ""))


def render_report(summary: Mapping, baselines: Mapping[str, Mapping], diagnosis: Mapping | None,
                  metrics_jsonl_path: str | Path | None = None, examples: Sequence[Mapping] = (),
                  arc_table: Sequence[Mapping] | None = None, comparison: Sequence[Mapping] | None = None, *,
                  title: str = "hrmkit evaluation report", max_examples: int = 8, notes: Sequence[str] = (),
                  thinking: Sequence[Mapping] = (), breakdown: Sequence[Mapping] = (), confusion: Mapping | None = None,
                  halting: Mapping | None = None, model_info: Mapping | None = None,
                  scaling: Mapping | None = None) -> str:
    """The report as an HTML string; arguments as `write_report`."""
    curves = ""
    if metrics_jsonl_path is not None:
        records = load_metrics_jsonl(metrics_jsonl_path)
        curves = "<h2>Learning curves</h2>" + (_curves(records, baselines) if records else
                                               f'<p class="note">No records in {_esc(metrics_jsonl_path)}.</p>')
    body = [f"<h1>{_esc(title)}</h1>", _verdict_section(summary, baselines, diagnosis, notes),
            _summary_section(summary, baselines), _breakdown_section(breakdown), _diagnosis_section(diagnosis),
            _halting_section(halting), _scaling_section(scaling), _confusion_section(confusion), curves,
            _arc_section(arc_table), _examples_section(examples, max_examples), _thinking_section(thinking),
            _comparison_section(comparison), _model_section(model_info)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")


def write_report(out_dir: str | Path, summary: Mapping, baselines: Mapping[str, Mapping], diagnosis: Mapping | None,
                 metrics_jsonl_path: str | Path | None = None, examples: Sequence[Mapping] = (),
                 arc_table: Sequence[Mapping] | None = None, comparison: Sequence[Mapping] | None = None, *,
                 title: str = "hrmkit evaluation report", max_examples: int = 8, notes: Sequence[str] = (),
                 thinking: Sequence[Mapping] = (), breakdown: Sequence[Mapping] = (), confusion: Mapping | None = None,
                 halting: Mapping | None = None, model_info: Mapping | None = None,
                 scaling: Mapping | None = None) -> Path:
    """Write `out_dir/report.html` atomically and return its path.

    summary: `metrics.compute_metrics` result (or a flat metric dict, may carry ARC "pass@k" keys).
    baselines: {name: same shape} (`baselines.compute_baselines` / `arc_baselines`).
    diagnosis: `sensitivity.diagnose` result, or None (the report then says it was not measured).
    metrics_jsonl_path: training log (one JSON object per line with global_step) for the learning curves.
    examples: example dicts (module docstring); up to `max_examples` failures and successes each are drawn.
    arc_table: `arc_scoring.arc_task_table(score)` rows. comparison: [{"name", "step", "metrics",
    "baselines", optional "diagnosis"}] one per checkpoint. notes: extra sentences listed under the verdict.
    thinking: `views.segment_strips` dicts (the grid after every ACT segment). breakdown:
    `breakdown.breakdown_tables` (accuracy by difficulty). confusion: `breakdown.confusion_table`. halting: {"histogram": {"step": count}, "segments": K, "mean"}. model_info:
    {"num_parameters", "config"}. scaling: {"segments_curve", "at_halt", "seconds", "tta"} as `hrm eval --json`
    gives them (test-time scaling charts with the time of each setting).
    Raises HrmkitError on an example of an unknown task.
    """
    text = render_report(summary, baselines, diagnosis, metrics_jsonl_path, examples, arc_table, comparison,
                         title=title, max_examples=max_examples, notes=notes, thinking=thinking, breakdown=breakdown,
                         confusion=confusion, halting=halting, model_info=model_info, scaling=scaling)
    path = Path(out_dir) / "report.html"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
