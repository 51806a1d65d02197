"""`hrm eval TARGET...`: held-out scores next to the trivial baselines, an input-sensitivity check, ARC pass@k,
checkpoint comparisons and an HTML report.

    hrm eval RUN_DIR                       newest checkpoint of a run
    hrm eval CKPT.pt [CKPT.pt ...]         one or several checkpoints (several: compared side by side)
    hrm eval RUN_DIR --all-checkpoints     every checkpoint of the run, compared
    hrm eval ... --report DIR              also write DIR/report.html (ARC: DIR/submission.json too); an
                                           existing report.html is kept unless --overwrite
    hrm eval ... --max-examples N          a partial evaluation: ARC writes submission.partial.json, never
                                           over a full submission.json
    hrm eval ... --json                    one JSON object on stdout
    hrm eval A.pt B.pt --aggregate-checkpoints   ARC: pool the votes of several checkpoints
    hrm eval RUN --segments 16             think longer: accuracy after every segment up to 16, and at halting
    hrm eval RUN --tta 8 [--verify]        vote over 8 augmented versions of every puzzle (Sudoku, mazes)
    hrm eval A.pt B.pt --ensemble [--tta K]      pool the votes of several checkpoints of one task

The last checkpoint given (for a run folder, the newest) is the primary one: its summary, diagnosis and
examples are reported; the others appear in the comparison.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hrmkit import tasks
from hrmkit.errors import HrmkitError
from hrmkit.loading import check_dataset, load_trained, resolve_checkpoints, run_dir_of

if TYPE_CHECKING:
    from hrmkit.eval.evaluate import EvalResult


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate runs or checkpoints on a test split, with baselines and an input-sensitivity check",
        description="Evaluate trained models on the test split of their dataset (or --data): exact accuracy (whole "
        "answer right) beside token accuracy over the cells to fill, mean ACT steps and the step at which the "
        "halting rule stops, q-halt accuracy, and the same numbers for the trivial baselines (copy the input; "
        "predict the most common training label token). The model is also run on shuffled and random inputs to "
        "check that its output depends on its input: input-invariant models, collapsed outputs and outputs made "
        "of tokens no answer holds are flagged. ARC datasets are scored by voting over augmentations "
        "(pass@1/2/5/10/100/1000, ARC Prize rule; an empty crop votes too, as in the references) next to the ARC "
        "baselines (test input unchanged; most common demonstration output), and a Kaggle submission.json is written to the --report folder, else the run "
        "folder. Several checkpoints are compared side by side.",
    )
    p.add_argument("targets", nargs="+", metavar="TARGET",
                   help="a run folder (its newest checkpoint; every one with --all-checkpoints), a checkpoint "
                        "file (.pt), or a reference checkpoint (sapientinc/HRM or TinyRecursiveModels step_N file, or "
                        "its folder, with all_config.yaml beside it); several TARGETs are compared, the last one is "
                        "the primary")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="evaluate every checkpoint of each run folder given (oldest first) and compare them")
    p.add_argument("--aggregate-checkpoints", action="store_true",
                   help="ARC only: pool the votes of all the checkpoints evaluated into one pass@k and submission "
                        "(off by default: each checkpoint is scored on its own)")
    p.add_argument("--report", metavar="DIR", help="write DIR/report.html (summary, baselines, input-sensitivity "
                   "verdict, learning curves, ARC task table, rendered examples, checkpoint comparison)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR/report.html (without it, "
                   "--report refuses a folder that holds one: exit 2, nothing evaluated)")
    p.add_argument("--examples", type=_positive, default=8, metavar="N",
                   help="failures and successes each rendered in the report (default 8)")
    p.add_argument("--data", metavar="DIR", help="dataset folder (default: the first checkpoint's data_path)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    p.add_argument("--batch-size", type=_positive, default=None, metavar="N", help="evaluation batch size "
                   "(default: the run's eval_batch_size or global_batch_size)")
    p.add_argument("--max-examples", type=_positive, default=None, metavar="N",
                   help="evaluate the first N examples only (a partial evaluation: ARC's Kaggle submission goes to "
                   "submission.partial.json, so a full submission.json is never replaced by a partial one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to run (default: auto: CUDA when available, else CPU; mps on Apple silicon)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when the checkpoint "
                   "holds an EMA copy (default: EMA when present, as the TRM reference evaluates)")
    p.add_argument("--segments", type=int, default=None, metavar="N",
                   help="ACT segments per puzzle (default: the model's halt_max_steps; up to "
                        f"{_max_segments()}, more than training ran lets the model think longer); the JSON holds the "
                        "accuracy after every segment (segments_curve) and where the halting rule stops (at_halt)")
    p.add_argument("--tta", type=int, default=None, metavar="K",
                   help="also vote over K versions of every puzzle through the task's augmentations and their "
                        "inverses (Sudoku: digit relabelling, transpose, band and stack shuffles; mazes: dihedral, "
                        "K <= 8; grids: dihedral and colours; other tasks: their own); answers ranked by votes, "
                        "then mean sigmoid(q_halt); reported in a tta block")
    p.add_argument("--ensemble", action="store_true",
                   help="pool the votes of all the checkpoints given (one task; combinable with --tta)")
    p.add_argument("--verify", action="store_true",
                   help="tasks with rules (Sudoku, mazes, ...): also report the best-ranked voted answer that passes "
                        "the task's verifier (a separate 'verified' figure: the verifier knows rules the model was to "
                        "learn)")
    p.add_argument("--tta-seed", type=int, default=0, metavar="S", help="seed of the augmented versions (default 0)")
    p.set_defaults(func=_eval)


def _max_segments() -> int:
    from hrmkit.limits import MAX_SEGMENTS

    return MAX_SEGMENTS


# ------------------------------------------------------------------------------------------------ evaluation

@dataclass
class CheckpointEval:
    """One checkpoint's evaluation: the file, its global step, the data and split it was scored on, the run
    folder holding it (None outside a run), what `evaluate_split` measured and, for the report, its views."""

    checkpoint: Path
    step: int
    data: Path
    split: str
    run_dir: Path | None
    result: EvalResult
    views: dict | None = None  # the report's extra views (`views.report_views`), primary checkpoint with --report


def evaluate_checkpoints(paths: list[Path], args: argparse.Namespace,
                         submission_path: Path | None) -> list[CheckpointEval]:
    """Evaluate each checkpoint on the same data. Only the last (primary) keeps its predictions and writes
    `submission_path` (unless votes are pooled). Raises HrmkitError for bad targets or data, or data that does
    not fit a checkpoint's model."""
    from hrmkit.data.format import load_split
    from hrmkit.device import pick_device
    from hrmkit.eval.evaluate import evaluate_split

    device = pick_device(args.device)
    results, split, data = [], None, None
    for i, path in enumerate(paths):
        primary = i == len(paths) - 1
        model = load_trained(path, device, use_ema=not args.raw_weights, data=args.data)
        cfg = model.config
        if split is None:
            data = Path(args.data or cfg.data_path)
            split = load_split(data, args.split).require_examples()
            task = tasks.of_metadata(split.metadata)
            if args.aggregate_checkpoints and not task.votes_over_dataset_versions:
                raise HrmkitError(f"--aggregate-checkpoints pools ARC votes, but {data} holds task {task.name!r}")
        check_dataset(model, split.metadata, data)
        batch_size = args.batch_size or cfg.eval_batch_size or cfg.global_batch_size
        result = evaluate_split(model.head, split, batch_size=batch_size, device=device, max_examples=args.max_examples,
                                submission_path=submission_path if primary and not args.aggregate_checkpoints else None,
                                segments=args.segments, tta=_versions(args), verify=args.verify,
                                tta_seed=args.tta_seed, checkpoint_name=str(path))
        views = None
        if primary and args.report:
            from hrmkit.eval.views import report_views

            views = report_views(model.head, cfg, result, split, args.examples, device)
        if not primary:
            result.predictions = result.arc_ranked = None
            if not args.ensemble:
                result.votes = None
            if not args.aggregate_checkpoints:
                result.arc_predictions = None
        results.append(CheckpointEval(path, model.step, data, args.split, run_dir_of(path), result, views))
        del model
    return results


def _versions(args: argparse.Namespace) -> int | None:
    """Versions each checkpoint votes with: --tta K, or 1 when only --ensemble or --verify asks for votes."""
    if args.tta is not None:
        return args.tta
    return 1 if args.ensemble or args.verify else None


def _check_options(args: argparse.Namespace, paths: list[Path]) -> None:
    """Refuse option values before any model is loaded (exit 2)."""
    from hrmkit.eval.rollout import check_segments
    from hrmkit.eval.tta import check_versions

    check_segments(args.segments, "--segments")
    if args.tta is not None:
        check_versions(args.tta)
    if args.ensemble and len(paths) < 2:
        raise HrmkitError(f"--ensemble pools the votes of several checkpoints, got {len(paths)}: give two or more "
                          "TARGETs (or a run with --all-checkpoints)")
    if args.ensemble and args.aggregate_checkpoints:
        raise HrmkitError("--ensemble and --aggregate-checkpoints both pool checkpoints: use --aggregate-checkpoints "
                          "for ARC, --ensemble for tasks voted by test-time augmentation (Sudoku, mazes, grids, ...)")


def _pass_keys(d: dict) -> dict:
    return {k: v for k, v in d.items() if k.startswith("pass@")}


def _model_table(result: EvalResult) -> dict:
    """Flat metrics of the model row (compute_metrics "overall" + ARC pass@k)."""
    return {**result.metrics["overall"], **result.summary.pass_at_k}


def _baseline_table(result: EvalResult) -> dict:
    """Token-level baselines and ARC baselines, as the summary tables show them."""
    return {**result.baseline_metrics, **(result.arc_baselines or {})}


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


def _notes(result: EvalResult, pooled: dict | None) -> list[str]:
    """Sentences printed under the summary and listed under the report's verdict."""
    notes = []
    s = result.summary
    if s.halt_step_histogram and s.mean_steps is not None:
        hist = ", ".join(f"{k}: {v}" for k, v in s.halt_step_histogram.items())
        n = round(s.mean_steps)
        notes.append(f"ACT: every example ran {n} segment{'s' * (n != 1)} (evaluation runs halt_max_steps, or "
                     f"--segments); the "
                     f"halting rule said stop at step (examples) {hist}, mean {s.mean_halt_step:.2f}.")
    if s.reference_token_accuracy is not None:
        notes.append(f"Token accuracy as the references count it (each example's share of correct answer cells, "
                     f"given cells included, averaged over examples): {100 * s.reference_token_accuracy:.1f}% "
                     f"(docs/parity.md).")
    copy = result.baselines["copy_input"].exact_accuracy if "copy_input" in result.baselines else None
    if result.task.clues_given and copy is not None:
        notes.append(f"The copy-input baseline gets {100 * copy:.1f}% exact on {result.task.title}: copying the "
                     f"given clues never fills the blank cells, so any exact accuracy above {100 * copy:.1f}% is real "
                     "solving; token accuracy counts the blank cells only.")
    arc = pooled["arc"] if pooled else result.arc
    if arc:
        ks = ", ".join(f"pass@{k} {100 * arc[f'pass@{k}']:.1f}%" for k in arc["ks"] if arc.get(f"pass@{k}") is not None)
        where = (f"votes pooled over {pooled['arc']['n_prediction_sets']} checkpoints"
                 if pooled else "votes over the augmented versions")
        notes.append(f"ARC ({where}): {ks} over {arc['n_tasks']} of {arc['n_tasks_in_dataset']} tasks "
                     f"({arc['n_test_inputs']} test inputs, ARC Prize rule: a task scores the share of its test "
                     f"inputs solved; headline pass@2); {arc['n_invalid']} of {arc['n_predictions']} predictions "
                     "could not be decoded.")
        if arc.get("n_unsolved_tasks"):
            notes.append(f"{arc['n_unsolved_tasks']} tasks have no known test outputs (competition test challenges): "
                         "they are predicted into the submission, not scored.")
        if arc.get("submission_path"):
            notes.append(f"Kaggle submission written to {arc['submission_path']}.")
    return notes


FLAGS = ("input_invariant", "collapsed", "invalid_outputs", "low_sensitivity")


def _baselines_json(result: EvalResult) -> dict:
    return {name: b.to_dict() for name, b in result.baselines.items()}


def _comparison_json(results: list[CheckpointEval]) -> list[dict]:
    rows = []
    for c in results:
        r, s = c.result, c.result.summary
        rows.append({"checkpoint": str(c.checkpoint), "step": c.step, "exact_accuracy": s.exact_accuracy,
                     "token_accuracy": s.token_accuracy, "n_examples": s.n_examples, **s.pass_at_k,
                     "q_halt_accuracy": s.q_halt_accuracy, "mean_halt_step": s.mean_halt_step,
                     "baselines": _baselines_json(r), "arc_baselines": r.arc_baselines,
                     "input_sensitivity": s.input_sensitivity,
                     **{f: bool(r.diagnosis and r.diagnosis.get(f)) for f in FLAGS}, "diagnosis": r.diagnosis})
    return rows


def _comparison_text(rows: list[dict]) -> str:
    pass_keys = sorted({k for r in rows for k in r if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"
    cols = ["checkpoint", "step", "exact", "token", *pass_keys, "copy_input exact", "copy_input token",
            "most_common_token exact", "most_common_token token", "input sens.", "flags"]
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


def _examples(result: EvalResult, max_examples: int) -> list[dict]:
    """Report examples of the primary result: ARC test inputs in the original frame (voted answers), else the
    closest failures (fewest wrong cells first) and a seeded sample of solved examples, from their tokens."""
    from hrmkit.eval.arc_eval import arc_examples
    from hrmkit.eval.breakdown import pick_examples
    from hrmkit.eval.report import make_example

    if result.arc_ranked is not None:
        return arc_examples(result.arc_ranked, result.arc_tasks, max_examples=max_examples)
    p, kind = result.predictions, result.task
    if p is None or not len(p.preds):
        return []
    fails, wins = pick_examples(p.labels, p.preds, max_examples)
    return [make_example(kind, p.inputs[i], p.labels[i], [p.preds[i]], ok, name=f"#{i}")
            for rows, ok in ((fails, False), (wins, True)) for i in rows]


def _title(c: CheckpointEval) -> str:
    return f"{c.checkpoint} (step {c.step}) on {c.data} [{c.split}]"


def _primary_table(c: CheckpointEval, pooled: dict | None) -> dict:
    model = _model_table(c.result)
    if pooled:
        model.update(_pass_keys(pooled["arc"]))
    return model


def _write_report(out_dir: Path, results: list[CheckpointEval], pooled: dict | None, max_examples: int) -> Path:
    from hrmkit.eval.report import write_report

    c = results[-1]
    r = c.result
    comparison = [{"name": x.checkpoint.name, "step": x.step, "metrics": _model_table(x.result),
                   "baselines": _baseline_table(x.result), "diagnosis": x.result.diagnosis}
                  for x in results] if len(results) > 1 else None
    metrics_log = c.run_dir / "metrics.jsonl" if c.run_dir and (c.run_dir / "metrics.jsonl").exists() else None
    arc = pooled["arc"] if pooled else r.arc
    return write_report(out_dir, _primary_table(c, pooled), _baseline_table(r), r.diagnosis, metrics_log,
                        _examples(r, max_examples), arc["task_table"] if arc else None, comparison,
                        title=_title(c), max_examples=max_examples, notes=_notes(r, pooled) + _scaling_lines(r),
                        scaling={"segments_curve": r.segments_curve, "at_halt": r.at_halt, "seconds": r.seconds,
                                 "tta": r.tta}, **(c.views or {}))


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (np.ndarray,)):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _json_object(results: list[CheckpointEval], pooled: dict | None, report: Path | None) -> dict:
    c = results[-1]
    r = c.result
    summary = r.summary.to_dict()
    out = {"checkpoint": str(c.checkpoint), "step": c.step, "data": str(c.data), "split": c.split, "task": r.task.name,
           "summary": summary, "baselines": _baselines_json(r), **summary, "diagnosis": r.diagnosis}
    arc = pooled["arc"] if pooled else r.arc
    if arc:
        out["arc"] = {k: v for k, v in arc.items() if k != "task_table"}
        out["arc_baselines"] = pooled["arc_baselines"] if pooled else r.arc_baselines
        out.update(_pass_keys(arc))
        out["submission"] = arc.get("submission_path")
        if pooled:
            out["aggregated_checkpoints"] = [str(x.checkpoint) for x in results]
    if len(results) > 1:
        out["comparison"] = _comparison_json(results)
    out["report"] = str(report) if report else None
    out["segments_curve"], out["at_halt"], out["eval_seconds"] = r.segments_curve, r.at_halt, r.seconds
    if r.tta is not None:
        out["tta"] = r.tta
    return out


def submission_name(max_examples: int | None) -> str:
    """The file an evaluation's Kaggle submission goes to: `submission.partial.json` for a partial evaluation
    (--max-examples), so it can never replace the full `submission.json` of an earlier evaluation."""
    return "submission.json" if max_examples is None else "submission.partial.json"


def check_report_dir(report_dir: Path, overwrite: bool) -> None:
    """Refuse (HrmkitError, before any work) a --report folder that already holds report.html, unless
    `overwrite`: a report is a result, not a cache."""
    path = report_dir / "report.html"
    if path.exists() and not overwrite:
        raise HrmkitError(f"--report {report_dir}: {path} already exists; pass --overwrite to replace it, or choose "
                          "another folder")


def _scaling_lines(r: EvalResult) -> list[str]:
    """The test-time scaling figures as text: accuracy per segment, at halting, and the vote."""
    from hrmkit.eval.baselines import _pct

    lines = []
    if r.segments_curve:
        n = len(r.segments_curve)
        pts = ", ".join(f"{p['segments']}: {_pct(p['exact_accuracy'])}" for p in r.segments_curve
                        if p["segments"] in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, n))
        lines.append(f"Exact accuracy after N segments (one rollout of {n}, {r.seconds:.1f} s): {pts}.")
    h = r.at_halt
    if h and h.get("mean_segments") is not None:
        lines.append(f"Stopping where q_halt says: {_pct(h['exact_accuracy'])} exact with {h['mean_segments']:.2f} "
                     f"segments on average (of {h['max_segments']}).")
    t = r.tta
    if t:
        who = f"{t['checkpoints']} checkpoints x " if t["checkpoints"] > 1 else ""
        lines.append(f"Voting over {who}{t['versions']} version{'s' * (t['versions'] != 1)}: {_pct(t['exact_accuracy'])} "
                     f"exact, {_pct(t['token_accuracy'])} token; all votes agree on {_pct(t['unanimous_share'])} of the "
                     f"puzzles ({t['seconds']:.1f} s).")
        v = t.get("verified")
        if v:
            lines.append(f"Verified (best-ranked answer passing the task's verifier, not the model's own score): "
                         f"{_pct(v['exact_accuracy'])} exact; a candidate passed for {_pct(v['passed_share'])}.")
    return lines


def _eval(args: argparse.Namespace) -> int:
    from hrmkit.eval.baselines import format_summary

    paths = [p for t in args.targets for p in resolve_checkpoints(t, args.all_checkpoints)]
    _check_options(args, paths)
    report_dir = Path(args.report) if args.report else None
    if report_dir is not None:
        check_report_dir(report_dir, args.overwrite)
    paths = [p for t in args.targets for p in resolve_checkpoints(t, args.all_checkpoints)]
    primary_run = run_dir_of(paths[-1])
    sub_dir = report_dir or primary_run
    sub_path = sub_dir / submission_name(args.max_examples) if sub_dir else None
    results = evaluate_checkpoints(paths, args, sub_path)
    pooled = None
    if args.aggregate_checkpoints:
        from hrmkit.eval.arc_eval import score_prediction_sets

        sets = [c.result.arc_predictions for c in results if c.result.arc_predictions is not None]
        if sets:
            pooled = score_prediction_sets(sets, results[-1].data, submission_path=sub_path)
            pooled = score_prediction_sets(sets, results[-1].data,
                                           submission_path=sub_dir / "submission.json" if sub_dir else None)
    if args.ensemble:
        from hrmkit.eval.tta import tta_block

        results[-1].result.tta = tta_block([c.result.votes for c in results], results[-1].result.task, args.verify)
    report = _write_report(report_dir, results, pooled, args.examples) if report_dir else None
    if args.json:
        obj = _json_object(results, pooled, report)
        if args.ensemble:
            obj["ensemble"] = [str(c.checkpoint) for c in results]
        print(json.dumps(obj, default=_json_default))
        return 0
    c = results[-1]
    r = c.result
    print(format_summary(_primary_table(c, pooled), _baseline_table(r), title=_title(c)))
    print(_sensitivity_line(r.diagnosis))
    if r.diagnosis and r.diagnosis.get("warning"):
        print(f"WARNING: {r.diagnosis['warning']}")
    for note in _notes(r, pooled):
        print(note)
    for line in _scaling_lines(r):
        print(line)
    if len(results) > 1:
        print()
        print(_comparison_text(_comparison_json(results)))
    if report:
        print(f"report written to {report}")
    return 0
