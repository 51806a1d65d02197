"""The model card (README.md) of an exported model, and the facts it is made of.

Facts come from the run folder and the dataset, never from guesses: the dataset's sizes (its dataset.json and
arrays), the evaluation recorded at the exported step (metrics.jsonl; its input-sensitivity diagnosis from
status.json `last_eval`, or best/metrics.json for RUN/best/), the trivial baselines scored on the same
examples as that evaluation, the validation report when one ran. What is not available is said so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit import tasks
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import read_json_object_or_none, read_jsonl
from hrmkit.loading import TrainedModel, find_dataset, run_dir_of

ARCH_NAMES = {"hrm": "An HRM (Hierarchical Reasoning Model, arXiv 2506.21734)",
              "trm": "A TRM (Tiny Recursive Model, arXiv 2510.04871)",
              "transformer": "A transformer baseline (the HRM blocks stacked, one pass)"}


@dataclass
class Facts:
    """What the card says about the data and the run. data_path: the dataset folder used; metadata: its test
    split's DatasetMetadata (None when unreadable); sizes: {split: {groups, puzzles, examples}}; split: the
    SplitData to validate on (only when asked); run_dir; evaluation: the recorded evaluation at the exported
    step ({step, kind, source, metrics, diagnosis}) or None; baselines: {name: compute_metrics "overall"} on
    that evaluation's examples, or None."""

    data_path: Path
    metadata: Any | None
    sizes: dict[str, dict[str, int]] | None
    split: Any | None
    run_dir: Path | None
    evaluation: dict[str, Any] | None
    baselines: dict[str, dict[str, Any]] | None


def _strip(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)}


def recorded_evaluation(model: TrainedModel, run_dir: Path | None) -> dict[str, Any] | None:
    """The evaluation the run recorded at `model.step`: the full one when there is one, else the fast one
    (metrics.jsonl); the diagnosis from status.json `last_eval` when it is that evaluation. For RUN/best/
    without a metrics.jsonl entry, best/metrics.json. None when nothing was recorded at that step."""
    found = None
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
        for rec in read_jsonl(run_dir / "metrics.jsonl"):  # lines cut by a crash or not UTF-8 are skipped
            if not isinstance(rec, dict) or rec.get("kind") != "eval" or rec.get("global_step") != model.step:
                continue
            kind = rec.get("eval_kind", "full")
            if found is None or kind == "full":
                prefix = "eval/" if kind == "full" else "eval_fast/"
                found = {"step": model.step, "kind": kind, "source": "metrics.jsonl",
                         "metrics": _strip(rec, prefix), "diagnosis": None}
    best = read_json_object_or_none(model.path.parent / "metrics.json") if model.path.parent.name == "best" else None
    if found is None and isinstance(best, dict) and best.get("step") == model.step:
        found = {"step": model.step, "kind": "best", "source": "best/metrics.json",
                 "metrics": best.get("summary") or {}, "diagnosis": None}
    last = (read_json_object_or_none(run_dir / "status.json") or {}).get("last_eval") if run_dir else None
    if found and isinstance(last, dict) and last.get("step") == model.step and last.get("kind") in (found["kind"], None):
        found["diagnosis"] = last.get("diagnosis")
    return found


def scored_rows(split: Any, n: int, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """inputs, labels (int64 [n, S], ignored labels -100) of the first `n` examples of `split`, in the order
    evaluation visits them (sampler.test_batches)."""
    from hrmkit.data.sampler import test_batches

    xs, ys, seen = [], [], 0
    for batch, valid in test_batches(split, batch_size):
        k = min(valid, n - seen)
        xs.append(batch["inputs"][:k].long().numpy())
        ys.append(batch["labels"][:k].long().numpy())
        seen += k
        if seen >= n:
            break
    return np.concatenate(xs), np.concatenate(ys)


def baseline_scores(inputs: np.ndarray, labels: np.ndarray, split: Any) -> dict[str, dict[str, Any]]:
    """{baseline name: compute_metrics "overall" (+ "description")} of the trivial baselines on these rows, the
    most common token counted over the train split beside `split` (as `hrm eval` does)."""
    from hrmkit.eval.baselines import compute_baselines
    from hrmkit.eval.evaluate import train_label_sample

    result = compute_baselines(inputs, labels, train_labels=train_label_sample(split), task=tasks.of_metadata(split.metadata))
    return {name: {**m["overall"], "description": m["baseline"]["description"]} for name, m in result.items()}


def _sizes(data_path: Path) -> dict[str, dict[str, int]] | None:
    from hrmkit.data.format import load_split

    sizes = {}
    for name in ("train", "test"):
        try:
            split = load_split(data_path, name)
        except HrmkitError:
            continue
        sets = split.sets.values()
        sizes[name] = {"groups": sum(a.num_groups for a in sets), "puzzles": sum(a.num_puzzles for a in sets),
                       "examples": sum(a.num_examples for a in sets)}
    return sizes or None


def run_facts(model: TrainedModel, data: str | Path | None, validate_split: str | None) -> Facts:
    """Gather the card's facts for `model`. `data`: the dataset folder (default the run's data_path);
    `validate_split`: the split to load for validation, None when not validating. Raises HrmkitError when the
    validation split cannot be read (naming the folder and --data); otherwise a missing dataset only leaves
    the dataset facts out."""
    from hrmkit.data.format import load_split
    from hrmkit.train.evaluation import fast_subset

    data_path = Path(data) if data else find_dataset(model) or Path(model.config.data_path)
    split = None
    if validate_split is not None:
        if not data_path.is_dir():
            hint = "" if data else " (the run's data_path; give --data DIR)"
            raise HrmkitError(f"{data_path}: dataset folder not found{hint}")
        split = load_split(data_path, validate_split)
    try:
        test = split if split is not None and validate_split == "test" else load_split(data_path, "test")
    except HrmkitError:
        test = None
    run_dir = None if model.path.is_dir() else run_dir_of(model.path)
    evaluation = recorded_evaluation(model, run_dir)
    baselines = None
    n = int((evaluation or {}).get("metrics", {}).get("n_examples") or 0)
    if test is not None and n and evaluation["kind"] in ("full", "fast"):
        ev = model.config.eval
        rows = fast_subset(test, ev.fast_examples, ev.fast_seed) if evaluation["kind"] == "fast" else test
        if n <= rows.num_examples:
            baselines = baseline_scores(*scored_rows(rows, n), test)
    return Facts(data_path, test.metadata if test is not None else None, _sizes(data_path) if test else None, split,
                 run_dir, evaluation, baselines)


# ------------------------------------------------------------------------------------------------- the card

def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _verdict(evaluation: dict[str, Any] | None) -> str:
    from hrmkit.eval.sensitivity import DEFAULT_INVARIANCE_THRESHOLD, is_input_invariant

    if not evaluation:
        return "not measured (no evaluation recorded at this step)."
    diag = evaluation.get("diagnosis")
    share = evaluation["metrics"].get("input_sensitivity")
    if isinstance(diag, dict):
        share = (diag.get("sensitivity") or {}).get("changed_examples_share", share)
    if share is None:
        return "not measured."
    invariant = diag.get("input_invariant") if isinstance(diag, dict) else is_input_invariant(share)
    text = (f"**{'INPUT-INVARIANT' if invariant else 'reads its input'}**: the prediction changed for {share:.1%} of "
            f"the checked examples when their inputs were shuffled between examples or replaced by random tokens "
            f"(input-invariant below {DEFAULT_INVARIANCE_THRESHOLD:.0%}).")
    if isinstance(diag, dict) and diag.get("warning"):
        text += f" Warning: {diag['warning']}"
    return text


def _results(facts: Facts) -> list[str]:
    ev = facts.evaluation
    if not ev:
        return ["No evaluation was recorded at this step (run `hrm eval` on the checkpoint for scores)."]
    m = ev["metrics"]
    kind = {"full": "Full evaluation", "fast": "Fast evaluation (fixed subset)", "best": "Best-checkpoint evaluation"}
    lines = [f"{kind.get(ev['kind'], ev['kind'])} at step {ev['step']} on {m.get('n_examples')} `test` examples "
             f"(from the run's {ev['source']}); exact accuracy = whole answer right, token accuracy over the cells "
             "to fill.", ""]
    rows = [["model", _pct(m.get("exact_accuracy")), _pct(m.get("token_accuracy"))]]
    for name, b in (facts.baselines or {}).items():
        rows.append([f"{name} baseline", _pct(b.get("exact_accuracy")), _pct(b.get("token_accuracy"))])
    lines += _table(["predictor", "exact accuracy", "token accuracy"], rows)
    if facts.baselines is None:
        lines += ["", "Baselines: not scored (the dataset was not found at export time)."]
    if m.get("mean_halt_step") is not None:
        lines += ["", f"ACT: evaluation runs every segment; the halting rule would stop at segment "
                      f"{m['mean_halt_step']:.2f} on average."]
    return lines


def _validation(v: dict[str, Any]) -> list[str]:
    ex, tok = v["exact_accuracy"], v["token_accuracy"]
    rows = [["PyTorch (float32, CPU)", _pct(ex["pytorch"]), _pct(tok["pytorch"])],
            [v["backend"], _pct(ex["export"]), _pct(tok["export"])]]
    rows += [[f"{name} baseline", _pct(b.get("exact_accuracy")), _pct(b.get("token_accuracy"))]
             for name, b in v["baselines"].items()]
    lat, th = v["seconds_per_puzzle"], v["threads"]
    return [f"The exported model was run on {v['examples']} `{v['split']}` examples of `{v['data']}` "
            f"({v['segments']} ACT segments each) next to the PyTorch model: "
            f"**{'PASS' if v['ok'] else 'FAIL'}**.", "",
            f"- largest absolute logit difference: {v['max_abs_logit_diff']:.3g} (bound {v['bound']['logits']:.3g}; "
            f"logits up to {v['max_abs_logit']:.3g}); "
            f"Q logits: {v['max_abs_q_diff']:.3g} (bound {v['bound']['q']:.3g})",
            *([f"- non-finite (NaN or infinite) logits and Q logits: PyTorch {v['non_finite']['pytorch']:,}, export "
               f"{v['non_finite']['export']:,}"] if any((v.get("non_finite") or {}).values()) else []),
            f"- PyTorch's own float32 rounding noise on this model (float32 vs float64, first batch): logits "
            f"{v['float32_noise']['logits']:.3g}, Q {v['float32_noise']['q']:.3g}; the bound is {v['bound_rule']}",
            f"- halting decisions ({v['halting_rule']}, every segment): "
            f"{'identical' if v['halting_identical'] else 'DIFFERENT'}",
            f"- answers that differ: {v['differing_answers']}; exact accuracy difference "
            f"{100 * (ex['difference'] or 0):+.2f} points", "",
            *_table(["predictor", "exact accuracy", "token accuracy"], rows), "",
            f"Latency per puzzle (batch {v['batch_size']}, all segments, the exporting machine): PyTorch "
            f"{1e3 * lat['pytorch']:.3f} ms, {v['backend']} {1e3 * lat['export']:.3f} ms (intra-op threads: "
            f"PyTorch {th['pytorch']}, export {th['export']})."]


def model_card(config: dict[str, Any], facts: Facts, files: dict[str, dict[str, Any]],
               validation: dict[str, Any] | None, command: str | None) -> str:
    """README.md text of an export (Markdown): the model, its training data, training, results next to the
    baselines, input sensitivity, validation (when run), file hashes, how to use it, how it was made."""
    import torch

    from hrmkit import __version__

    arch, cfg = config["arch"], config["train_config"]
    shape, ds = config["model_shape"], config["dataset"]
    onnx = config.get("onnx")
    title = f"{config['architecture'].upper()} on {ds['name']}"
    lines = [f"# {title}", "",
             f"{ARCH_NAMES.get(config['architecture'], 'A ' + config['architecture'] + ' model')} trained with hrmkit on "
             f"`{ds['name']}` (task {ds['task'] or 'unknown'}), exported at step {config['step']} "
             f"({'EMA' if config['weights'] == 'ema' else 'raw'} weights) as "
             f"{'an ONNX graph of one ACT segment' if onnx else 'safetensors'}.", "", "## Model", ""]
    puzzle = config["puzzle_table"]
    lines += _table(["", ""], [
        ["architecture", f"{config['architecture']} (hidden {arch['hidden_size']}, {arch['num_heads']} heads, "
                         f"H/L layers {arch['H_layers']}/{arch['L_layers']}, H/L cycles {arch['H_cycles']}/{arch['L_cycles']}"
                         f"{', mlp_t' if arch.get('mlp_t') and config['architecture'] == 'trm' else ''}, "
                         f"positions {arch['pos_encodings']})"],
        ["parameters", f"{config['parameters']:,} (puzzle table excluded"
                       f"{f': {puzzle[0]:,} x {puzzle[1]}' if puzzle else ''})"],
        ["ACT", f"up to {config['halt_max_steps']} segments; halting rule {config['halting_rule']}; "
                "evaluation runs every segment"],
        ["input", f"{shape['seq_len']} tokens, vocabulary {shape['vocab_size']}, "
                  f"{shape['num_puzzle_identifiers']:,} puzzle identifier{'s' * (shape['num_puzzle_identifiers'] != 1)}"],
    ])
    layout = config.get("token_layout")
    if layout:
        lines += ["", f"Tokens: pad {layout['pad_id']}; {layout.get('cells', 'see dataset.json')}"
                      f"{'; grid ' + 'x'.join(map(str, layout['grid'])) if layout.get('grid') else ''}."]
    lines += ["", "## Training data", ""]
    if facts.sizes:
        lines.append(f"`{ds['path']}` ({ds['task']}): " + "; ".join(
            f"{name} {s['groups']:,} groups, {s['puzzles']:,} puzzles, {s['examples']:,} examples"
            for name, s in facts.sizes.items()) + ".")
    else:
        lines.append(f"`{ds['path']}`: not found at export time, sizes unknown.")
    lines += ["", "## Training", "",
              f"{config['step']:,} optimizer steps, batch {cfg['global_batch_size']}, lr {cfg['lr']:g} "
              f"(puzzle embedding {cfg['puzzle_emb_lr']:g}), weight decay {cfg['weight_decay']:g}, "
              f"loss {arch['loss']['loss_type']}, seed {cfg['seed']}"
              f"{', EMA ' + str(cfg['ema_rate']) if cfg['ema'] else ''}"
              f"{f'; run folder `{facts.run_dir}`' if facts.run_dir else ''}.",
              "", "## Results", "", *_results(facts), "", "## Input sensitivity", "", _verdict(facts.evaluation)]
    if validation:
        lines += ["", "## Validation of this export", "", *_validation(validation)]
    lines += ["", "## Files", ""]
    lines += _table(["file", "bytes", "sha256"], [[f"`{n}`", f"{f['bytes']:,}", f"`{f['sha256']}`"] for n, f in files.items()])
    lines += ["", "## Use", "", "```python"]
    if onnx:
        lines += ["from hrmkit.deploy.onnx_runner import ACTRunner  # needs onnxruntime only",
                  "runner = ACTRunner(\"THIS_FOLDER\")", f"out = runner.run(tokens)  # int [batch, {shape['seq_len']}]",
                  "out.preds, out.halt_step, out.q_halt  # answers, where the halting rule stopped, Q per segment"]
    else:
        lines += ["from hrmkit.loading import load_model", "model = load_model(\"THIS_FOLDER\")  # no pickle involved",
                  "model.head  # the PyTorch ACT model (evaluation mode)"]
    made_with = f"hrmkit {__version__}, torch {torch.__version__}"
    if onnx:
        made_with += f", ONNX opset {onnx['opset']} ({onnx['exporter']} exporter)"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["```", "", "## How it was made", "",
              f"`{command or 'hrmkit.deploy.export.export_model(...)'}` from `{config['source']}` on {when} with "
              f"{made_with}.", ""]
    return "\n".join(lines)
