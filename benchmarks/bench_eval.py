"""Evaluation speed: model inference in puzzles/s per dtype, whether bf16 keeps the exact
accuracy of float32, and the scoring that follows inference (metrics, baselines, ARC voting) on a whole split.

    # a trained model on its test split (float32 against bfloat16: accuracy equality and speed)
    .venv/bin/python benchmarks/bench_eval.py --model runs/RUN [--data DIR] [--dtypes float32,bfloat16]
    # a random-init model of a preset on a big split (inference on the first --max-examples, scoring on all)
    .venv/bin/python benchmarks/bench_eval.py --preset hrm-arc --data /tmp/arc1k --max-examples 16 --batch-size 8

Inference: `evaluate.predict_split` (eval mode, every example through halt_max_steps segments, batched, under
torch.inference_mode), timed per dtype after one untimed puzzle; puzzles/s = examples / seconds (wall clock).
With a trained model it prints each dtype's exact and token accuracy and the share of examples whose
prediction equals float32's. Scoring: `compute_metrics` and `compute_baselines` over the inferred examples
and, with `--score-all`, over the whole split with the labels standing in for predictions (the model's
cost aside, what scoring a full split costs), plus ARC voting and pass@k (`arc_eval.score_arc_split`) on
ARC datasets. `--compile` compiles the segments first (compile time printed, not timed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from hrmkit.bench.measure import machine_summary
from hrmkit.proc import keep_freed_cpu_memory
from hrmkit.data.format import load_split
from hrmkit.eval.evaluate import Predictions, predict_split
from hrmkit.eval.metrics import compute_metrics
from hrmkit.models import build_model, compile_model, forward_dtype


def _model(args):
    if args.model:
        from hrmkit.loading import load_model

        trained = load_model(args.model)
        return trained.head, trained.config, Path(args.data or trained.config.data_path)
    from hrmkit.bench.cli import bench_config

    cfg = bench_config(args.preset, None, args.overrides)
    data = Path(args.data or cfg.data_path)
    meta = load_split(data, "test").metadata
    torch.manual_seed(0)
    head = build_model(cfg.arch, seq_len=meta.seq_len, vocab_size=meta.vocab_size,
                       num_puzzle_identifiers=meta.num_puzzle_identifiers)
    return head, cfg, data


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _truth(split, n: int | None) -> Predictions:
    """Predictions equal to the labels (and no model) for the first n examples: the scoring workload alone."""
    rows = {k: [] for k in ("inputs", "labels", "puzzle_identifiers")}
    for arrs in split.sets.values():
        puz = np.searchsorted(arrs.puzzle_indices, np.arange(arrs.num_examples), side="right") - 1
        rows["inputs"].append(np.asarray(arrs.inputs, dtype=np.int64))
        rows["labels"].append(np.asarray(arrs.labels, dtype=np.int64))
        rows["puzzle_identifiers"].append(np.asarray(arrs.puzzle_identifiers)[puz].astype(np.int64))
    x, y, pid = (np.concatenate(v)[:n] for v in rows.values())
    ign = split.metadata.ignore_label_id
    y = np.where(y == ign, -100, y) if ign is not None else y
    N = len(x)
    return Predictions(x, y, np.where(y == -100, 0, y), pid, np.zeros(N, np.float32), np.ones(N, np.int64),
                       np.ones(N, np.int64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a run folder, RUN/best or checkpoint (trained model)")
    ap.add_argument("--preset", help="instead of --model: a random-init model of this training or model preset")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for --preset")
    ap.add_argument("--data", help="dataset folder (default: the config's data_path); its test split is used")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="computation dtypes to time (comma-separated)")
    ap.add_argument("--batch-size", type=int, help="evaluation batch (default: the config's eval_batch_size or batch)")
    ap.add_argument("--max-examples", type=int, help="infer only the first N test examples")
    ap.add_argument("--compile", action="store_true", help="compile the segments (compile_model) first")
    ap.add_argument("--score-all", action="store_true", help="also time scoring the whole split (labels as predictions)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()
    keep_freed_cpu_memory()  # as `hrm` does
    if not (args.model or args.preset):
        ap.error("give --model or --preset")
    if args.threads:
        torch.set_num_threads(args.threads)
    head, cfg, data = _model(args)
    if args.compile:
        compile_model(head)
    split = load_split(data, "test")
    B = args.batch_size or cfg.eval_batch_size or int(cfg.global_batch_size)
    task = split.metadata.task or "generic"
    n = min(split.num_examples, args.max_examples or split.num_examples)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine_summary()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load {os.getloadavg()[0]:.2f}")
    print(f"# {data} [test]: {split.num_examples} examples, seq_len {split.metadata.seq_len}; inferring {n}, "
          f"batch {B}, halt_max_steps {cfg.arch.halt_max_steps}; model {cfg.arch.name} D{cfg.arch.hidden_size} "
          f"({'trained: ' + args.model if args.model else 'random init'}){', compiled' if args.compile else ''}")
    first = None
    for name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        with forward_dtype(head, name):
            _, warm, _ = _timed(lambda: predict_split(head, split, 1, max_examples=1))  # warm-up: one puzzle
            p, wall, cpu = _timed(lambda: predict_split(head, split, B, max_examples=n))
        m = compute_metrics(p.inputs, p.labels, p.preds, task=task)["overall"]
        same = "" if first is None or not args.model else f", predictions equal to {first[0]}'s: {np.mean((p.preds == first[1].preds).all(1)):.2%}"
        exact = f"exact {m['exact_accuracy']:.4f} token {m['token_accuracy']:.4f}" if args.model else "(random model)"
        print(f"{name:9s} {n / wall:9.2f} puzzles/s ({wall:.1f} s wall, {cpu:.1f} s CPU; warm-up puzzle {warm:.1f} s) "
              f"{exact}{same}")
        first = first or (name, p)
    _, t_metrics, _ = _timed(lambda: compute_metrics(first[1].inputs, first[1].labels, first[1].preds, task=task))
    print(f"scoring   compute_metrics on {n} examples: {t_metrics:.3f} s")
    if args.score_all:
        truth, t_load, _ = _timed(lambda: _truth(split, None))
        N = len(truth.labels)
        _, t_m, _ = _timed(lambda: compute_metrics(truth.inputs, truth.labels, truth.preds, task=task))
        print(f"scoring   all {N} examples: reading {t_load:.1f} s, compute_metrics {t_m:.2f} s "
              f"({N / max(t_m, 1e-9):.0f} puzzles/s)")
        if task == "arc":
            from hrmkit.eval.arc_eval import score_arc_split

            res, t_arc, _ = _timed(lambda: score_arc_split(truth, split))
            print(f"scoring   ARC voting + pass@k over all {N} examples: {t_arc:.1f} s ({N / t_arc:.0f} puzzles/s); "
                  f"labels as predictions give pass@1 {res['arc'].get('pass@1')}")


if __name__ == "__main__":
    main()
