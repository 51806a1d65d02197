"""`hrm eval TARGET...`: held-out scores next to the trivial baselines, an input-sensitivity check, ARC pass@k,
checkpoint comparisons and an HTML report.

    hrm eval RUN_DIR                       newest checkpoint of a run
    hrm eval CKPT.pt [CKPT.pt ...]         one or several checkpoints (several: compared side by side)
    hrm eval RUN_DIR --all-checkpoints     every checkpoint of the run, compared
    hrm eval ... --report DIR              also write DIR/report.html (ARC: DIR/submission.json too)
    hrm eval ... --json                    one JSON object on stdout
    hrm eval A.pt B.pt --aggregate-checkpoints   ARC: pool the votes of several checkpoints

The last checkpoint given (for a run folder, the newest) is the primary one: its summary, diagnosis and
examples are reported; the others appear in the comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.errors import HrmkitError
from hrmkit.loading import load_trained, resolve_checkpoints, run_dir_of

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate runs or checkpoints on a test split, with baselines and an input-sensitivity check",
        description="Evaluate trained models on the test split of their dataset (or --data): exact accuracy (whole "
        "answer right) beside token accuracy over the cells to fill, mean ACT steps and the step at which the "
        "halting rule stops, q-halt accuracy, and the same numbers for the trivial baselines (copy the input; "
        "predict the most common training label token). The model is also run on shuffled and random inputs to "
        "check that its output depends on its input: input-invariant models, collapsed outputs and outputs made "
        "of tokens no answer holds are flagged. ARC datasets are scored by voting over augmentations "
        "(pass@1/2/10, ARC Prize rule) next to the ARC baselines (test input unchanged; most common "
        "demonstration output), and a Kaggle submission.json is written to the --report folder, else the run "
        "folder. Several checkpoints are compared side by side.",
    )
    p.add_argument("targets", nargs="+", metavar="TARGET",
                   help="a run folder (its newest checkpoint; every one with --all-checkpoints) or a checkpoint "
                        "file (.pt); several TARGETs are compared, the last one is the primary")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="evaluate every checkpoint of each run folder given (oldest first) and compare them")
    p.add_argument("--aggregate-checkpoints", action="store_true",
                   help="ARC only: pool the votes of all the checkpoints evaluated into one pass@k and submission "
                        "(off by default: each checkpoint is scored on its own)")
    p.add_argument("--report", metavar="DIR", help="write DIR/report.html (summary, baselines, input-sensitivity "
                   "verdict, learning curves, ARC task table, rendered examples, checkpoint comparison)")
    p.add_argument("--examples", type=int, default=8, metavar="N",
                   help="failures and successes each rendered in the report (default 8)")
    p.add_argument("--data", metavar="DIR", help="dataset folder (default: the first checkpoint's data_path)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="evaluation batch size "
                   "(default: the run's eval_batch_size or global_batch_size)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N", help="evaluate the first N examples only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when the checkpoint "
                   "holds an EMA copy (default: EMA when present, as the TRM reference evaluates)")
    p.set_defaults(func=_eval)


# ------------------------------------------------------------------------------------------------ targets

# ------------------------------------------------------------------------------------------------ evaluation

def _pass_keys(d: dict) -> dict:
    return {k: v for k, v in d.items() if k.startswith("pass@")}


def evaluate_checkpoints(paths: list[Path], args: argparse.Namespace, submission_path: Path | None) -> list[dict]:
    """Evaluate each checkpoint on the same data; returns one `evaluate_split` result per path, with
    checkpoint, step, data, run_dir added. Only the last (primary) keeps its predictions and writes
    `submission_path` (unless votes are pooled). Raises HrmkitError for bad targets or data."""
    from hrmkit.data.format import load_split
    from hrmkit.device import pick_device
    from hrmkit.eval.evaluate import evaluate_split

    device = pick_device(args.device)
    results, split, data = [], None, None
    for i, path in enumerate(paths):
        primary = i == len(paths) - 1
        model = load_trained(path, device, use_ema=not args.raw_weights)
        head, cfg, step = model.head, model.config, model.step
        if split is None:
            data = Path(args.data or cfg.data_path)
            split = load_split(data, args.split)
            if args.aggregate_checkpoints and (split.metadata.task or "generic") != "arc":
                raise HrmkitError(f"--aggregate-checkpoints pools ARC votes, but {data} holds task "
                                  f"{split.metadata.task!r}")
        result = evaluate_split(head, split, batch_size=args.batch_size or cfg.eval_batch_size or cfg.global_batch_size,
                                device=device, max_examples=args.max_examples,
                                submission_path=submission_path if primary and not args.aggregate_checkpoints else None)
        result.update(checkpoint=path, step=step, data=data, split_name=args.split, run_dir=run_dir_of(path))
        if primary and args.report:
            from hrmkit.eval.views import report_views

            result.update(report_views(head, cfg, result, split, args.examples, device))
        if not primary:
            result.pop("predictions", None)
            result.pop("arc_ranked", None)
            if not args.aggregate_checkpoints:
                result.pop("arc_predictions", None)
        results.append(result)
        del head
    return results


def _model_table(result: dict) -> dict:
    """Flat metrics of the model row (compute_metrics "overall" + ARC pass@k)."""
    return {**result["metrics"]["overall"], **_pass_keys(result["summary"])}


def _baseline_table(result: dict) -> dict:
    """Token-level baselines and ARC baselines, as the summary tables show them."""
    arc = {name.replace("_", "-"): b for name, b in (result.get("arc_baselines") or {}).items()}
    return {**result["baseline_metrics"], **arc}


def _sensitivity_line(diagnosis: dict | None) -> str:
    if not diagnosis:
        return "Input sensitivity: not measured."
    sens = diagnosis.get("sensitivity") or {}
    share, cells = sens.get("changed_examples_share"), sens.get("changed_cells_share")
    if share is None:
        return "Input sensitivity: could not be measured (no perturbable input)."
    verdict = "INPUT-INVARIANT" if diagnosis.get("input_invariant") else "reads its input"
    return (f"Input sensitivity: {verdict} - the prediction changed for {share:.1%} of {sens['random_tokens']['n_examples']}"
            f" examples ({(cells or 0):.1%} of the answer cells) when the inputs were shuffled between examples or "
            f"replaced by random tokens (input-invariant below {sens.get('threshold', 0.05):.0%}).")


def _notes(result: dict, pooled: dict | None) -> list[str]:
    """Sentences printed under the summary and listed under the report's verdict."""
    notes = []
    s = result["summary"]
    if s.get("halt_step_histogram"):
        hist = ", ".join(f"{k}: {v}" for k, v in s["halt_step_histogram"].items())
        n = round(s["mean_steps"])
        notes.append(f"ACT: every example ran {n} segment{'s' * (n != 1)} (evaluation runs halt_max_steps); the "
                     f"halting rule said stop at step (examples) {hist}, mean {s['mean_halt_step']:.2f}.")
    copy = result["baselines"].get("copy_input", {}).get("exact_accuracy")
    if result["task"] == "sudoku" and copy is not None:
        notes.append(f"The copy-input baseline gets {100 * copy:.1f}% exact on Sudoku: copying the given clues "
                     f"never fills the blank cells, so any exact accuracy above {100 * copy:.1f}% is real solving; "
                     "token accuracy counts the blank cells only.")
    arc = (pooled or result).get("arc")
    if arc:
        ks = ", ".join(f"pass@{k} {100 * arc[f'pass@{k}']:.1f}%" for k in arc["ks"] if arc.get(f"pass@{k}") is not None)
        where = (f"votes pooled over {pooled['arc']['n_prediction_sets']} checkpoints"
                 if pooled else "votes over the augmented versions")
        notes.append(f"ARC ({where}): {ks} over {arc['n_tasks']} of {arc['n_tasks_in_dataset']} tasks "
                     f"({arc['n_test_inputs']} test inputs, ARC Prize rule: a task scores the share of its test "
                     f"inputs solved; headline pass@2); {arc['n_invalid']} of {arc['n_predictions']} predictions "
                     "could not be decoded.")
        if arc.get("submission_path"):
            notes.append(f"Kaggle submission written to {arc['submission_path']}.")
    return notes


FLAGS = ("input_invariant", "collapsed", "invalid_outputs", "low_sensitivity")


def _comparison_json(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        s = r["summary"]
        rows.append({"checkpoint": str(r["checkpoint"]), "step": r["step"], "exact_accuracy": s["exact_accuracy"],
                     "token_accuracy": s["token_accuracy"], "num_examples": s["num_examples"],
                     **_pass_keys(s), "q_halt_accuracy": s["q_halt_accuracy"], "mean_halt_step": s["mean_halt_step"],
                     "baselines": r["baselines"], "arc_baselines": r.get("arc_baselines"),
                     "input_sensitivity": r["input_sensitivity"],
                     **{f: bool(r["diagnosis"] and r["diagnosis"].get(f)) for f in FLAGS}, "diagnosis": r["diagnosis"]})
    return rows


def _comparison_text(rows: list[dict]) -> str:
    pass_keys = sorted({k for r in rows for k in r if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"
    cols = ["checkpoint", "step", "exact", "token", *pass_keys, "copy-input exact", "copy-input token",
            "most-common exact", "most-common token", "input sens.", "flags"]
    table = [cols]
    for r in rows:
        b = r["baselines"]
        flags = ", ".join(f.upper().replace("_", "-") for f in FLAGS if r[f])
        table.append([Path(r["checkpoint"]).name, str(r["step"]), pct(r["exact_accuracy"]), pct(r["token_accuracy"]),
                      *[pct(r.get(k)) for k in pass_keys],
                      pct(b.get("copy_input", {}).get("exact_accuracy")), pct(b.get("copy_input", {}).get("token_accuracy")),
                      pct(b.get("most_common_token", {}).get("exact_accuracy")),
                      pct(b.get("most_common_token", {}).get("token_accuracy")), pct(r["input_sensitivity"]),
                      flags or "ok"])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join(["checkpoint comparison (same examples)", fmt(cols), "  ".join("-" * w for w in widths),
                      *[fmt(r) for r in table[1:]]])


def _examples(result: dict, max_examples: int) -> list[dict]:
    """Report examples of the primary result: ARC test inputs in the original frame (voted answers), else the
    closest failures (fewest wrong cells first) and a seeded sample of solved examples, from their tokens."""
    from hrmkit.eval.arc_eval import arc_examples
    from hrmkit.eval.breakdown import pick_examples
    from hrmkit.eval.report import KINDS, make_example

    if result.get("arc_ranked") is not None:
        return arc_examples(result["arc_ranked"], result["arc_tasks"], max_examples=max_examples)
    p, kind = result.get("predictions"), result["task"]
    if p is None or kind not in KINDS or not len(p.preds):
        return []
    fails, wins = pick_examples(p.labels, p.preds, max_examples)
    return [make_example(kind, p.inputs[i], p.labels[i], [p.preds[i]], ok, name=f"#{i}")
            for rows, ok in ((fails, False), (wins, True)) for i in rows]


def _write_report(out_dir: Path, results: list[dict], pooled: dict | None, max_examples: int) -> Path:
    from hrmkit.eval.report import write_report

    r = results[-1]
    model = _model_table(r)
    if pooled:
        model.update(_pass_keys(pooled["arc"]))
    comparison = [{"name": Path(c["checkpoint"]).name, "step": c["step"], "metrics": _model_table(c),
                   "baselines": _baseline_table(c), "diagnosis": c["diagnosis"]} for c in results] if len(results) > 1 else None
    metrics_log = r["run_dir"] / "metrics.jsonl" if r["run_dir"] and (r["run_dir"] / "metrics.jsonl").exists() else None
    arc = (pooled or r).get("arc")
    return write_report(out_dir, model, _baseline_table(r), r["diagnosis"], metrics_log, _examples(r, max_examples),
                        arc["task_table"] if arc else None, comparison,
                        title=f"{r['checkpoint']} (step {r['step']}) on {r['data']} [{r['split_name']}]",
                        max_examples=max_examples, notes=_notes(r, pooled),
                        **{k: r[k] for k in ("thinking", "breakdown", "confusion", "halting", "model_info") if k in r})


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (np.ndarray,)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _json_object(results: list[dict], pooled: dict | None, report: Path | None) -> dict:
    r = results[-1]
    out = {"checkpoint": str(r["checkpoint"]), "step": r["step"], "data": str(r["data"]), "split": r["split_name"],
           "task": r["task"], "summary": r["summary"], "baselines": r["baselines"], **r["summary"],
           "input_sensitivity": r["input_sensitivity"], "diagnosis": r["diagnosis"]}
    arc = (pooled or r).get("arc")
    if arc:
        out["arc"] = {k: v for k, v in arc.items() if k != "task_table"}
        out["arc_baselines"] = (pooled or r)["arc_baselines"]
        out.update(_pass_keys(arc))
        out["submission"] = arc.get("submission_path")
        if pooled:
            out["aggregated_checkpoints"] = [str(c["checkpoint"]) for c in results]
    if len(results) > 1:
        out["comparison"] = _comparison_json(results)
    out["report"] = str(report) if report else None
    return out


def _eval(args: argparse.Namespace) -> int:
    from hrmkit.eval.baselines import format_summary

    paths = [p for t in args.targets for p in resolve_checkpoints(t, args.all_checkpoints)]
    report_dir = Path(args.report) if args.report else None
    primary_run = run_dir_of(paths[-1])
    sub_dir = report_dir or primary_run
    results = evaluate_checkpoints(paths, args, sub_dir / "submission.json" if sub_dir else None)
    pooled = None
    if args.aggregate_checkpoints:
        from hrmkit.eval.arc_eval import score_prediction_sets

        sets = [r["arc_predictions"] for r in results if r.get("arc_predictions") is not None]
        if sets:
            pooled = score_prediction_sets(sets, results[-1]["data"],
                                           submission_path=sub_dir / "submission.json" if sub_dir else None)
    report = _write_report(report_dir, results, pooled, args.examples) if report_dir else None
    if args.json:
        print(json.dumps(_json_object(results, pooled, report), default=_json_default))
        return 0
    r = results[-1]
    model = _model_table(r)
    if pooled:
        model.update(_pass_keys(pooled["arc"]))
    print(format_summary(model, _baseline_table(r),
                         title=f"{r['checkpoint']} (step {r['step']}) on {r['data']} [{args.split}]"))
    print(_sensitivity_line(r["diagnosis"]))
    if r["diagnosis"] and r["diagnosis"].get("warning"):
        print(f"WARNING: {r['diagnosis']['warning']}")
    for note in _notes(r, pooled):
        print(note)
    if len(results) > 1:
        print()
        print(_comparison_text(_comparison_json(results)))
    if report:
        print(f"report written to {report}")
    return 0
