"""Test-time scaling: what thinking longer and voting buy on a trained model, and what each costs.

    .venv/bin/python benchmarks/bench_tts.py --model runs/RUN [--data DIR] [--segments 1,2,4,8,16]
        [--tta 1,2,4,8,16] [--combine] [--batch-size 1000] [--max-examples N]

Rows (a Markdown table on stdout, one line per setting):
- `segments N`: every puzzle runs N ACT segments (`evaluate.predict_split`, N may exceed halt_max_steps),
  timed on its own; plus `at halting`: each puzzle stops where its halting rule says (from the N-max rollout;
  time = that rollout's time per segment times the mean segments, an estimate).
- `tta K`: vote over K augmented versions at halt_max_steps segments (`tta.predict_versions`, timed on its own);
  `--combine` adds K versions at the longest N.
Columns: exact and token accuracy of the plain (top-voted) answer; the verified exact accuracy of the votes
(best-ranked candidate passing the task's verifier: a separate figure, the verifier knows the rules); the wall time; the
cost against the plain evaluation (compute = segments x versions / halt_max_steps; time ratio measured).
No setting sees a label: labels are read only to score.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import torch

from hrmkit.bench.measure import machine_summary
from hrmkit.data.format import load_split
from hrmkit.eval.evaluate import SegmentScores, predict_split
from hrmkit.eval.metrics import accuracy_pair
from hrmkit.eval.tta import predict_versions, task_augmentation, tta_block
from hrmkit.loading import load_model
from hrmkit.tasks import of_metadata


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--segments", default="1,2,4,8,16")
    ap.add_argument("--tta", default="1,2,4,8,16")
    ap.add_argument("--combine", action="store_true", help="also vote over each K at the longest N")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--max-examples", type=int)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    trained = load_model(args.model)
    head, cfg = trained.head, trained.config
    data = Path(args.data or cfg.data_path)
    split = load_split(data, args.split).require_examples()
    task = of_metadata(split.metadata)
    hms = int(cfg.arch.halt_max_steps)
    check = task.verify if task.has_verifier else None
    rows = []
    total = split.num_examples if args.max_examples is None else min(split.num_examples, args.max_examples)
    args.batch_size = min(args.batch_size, total)  # a padded last batch would time rows nobody asked for

    predict_split(head, split, args.batch_size, max_examples=8)  # warm-up, untimed
    base_seconds = None
    longest = max(_ints(args.segments))
    for n in sorted(set(_ints(args.segments) + [hms])):
        scores = SegmentScores()
        t0 = time.perf_counter()
        p = predict_split(head, split, args.batch_size, max_examples=args.max_examples, segments=n, scores=scores)
        sec = time.perf_counter() - t0
        labels = p.labels
        exact, token = accuracy_pair(p.inputs, p.labels, p.preds, task=task)
        if n == hms:
            base_seconds = sec
        rows.append([f"segments {n}", n, 1, exact, token, None, sec, n / hms])  # one candidate: nothing to verify
        if n == longest:
            h = scores.at_halt()
            rows.append([f"at halting (rollout of {n})", round(h["mean_segments"], 2), 1, h["exact_accuracy"],
                         h["token_accuracy"], None, sec / n * h["mean_segments"], h["mean_segments"] / hms])
    combos = [(k, None) for k in _ints(args.tta)] + ([(k, longest) for k in _ints(args.tta)] if args.combine else [])
    for k, n in combos:
        aug = task_augmentation(task, split.metadata.seq_len, k, seed=0)
        votes = predict_versions(head, split, aug, args.batch_size, max_examples=args.max_examples, segments=n)
        b = tta_block([votes], task, verify=check is not None)
        segs = n or hms
        rows.append([f"tta {k}" + (f" x segments {n}" if n else ""), segs, k, b["exact_accuracy"], b["token_accuracy"],
                     (b.get("verified") or {}).get("exact_accuracy"), votes.seconds, segs * k / hms])
    n_examples = len(labels)
    print(f"Test-time scaling on {args.model} ({cfg.arch.name}, halt_max_steps {hms}), {n_examples} {args.split} "
          f"puzzles of {data}; {machine_summary()}; torch threads "
          f"{torch.get_num_threads()}; {datetime.date.today()}\n")
    print("| setting | segments | versions | exact | token | verified exact | seconds | compute x | time x |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, segs, k, e, t, v, sec, comp in rows:
        ratio = "—" if not base_seconds else f"{sec / base_seconds:.2f}"
        print(f"| {name} | {segs} | {k} | {_pct(e)} | {_pct(t)} | {_pct(v)} | {sec:.2f} | {comp:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
