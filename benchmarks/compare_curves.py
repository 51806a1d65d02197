"""Two or more training runs' learning curves side by side, from their metrics.jsonl (BENCHMARKS.md,
section "bf16 training on the CPU": the demo in bfloat16 against float32, same seed).

    .venv/bin/python benchmarks/compare_curves.py runs/RUN_A runs/RUN_B [--every 500] [--names float32,bfloat16]

Prints a markdown table: per logged step (every `--every` steps) each run's training loss, token accuracy and
exact accuracy on the halted rows of the training batch; then each run's evaluations (exact and token accuracy
on the test split) and its training wall time and samples/s at the end. The runs are produced with e.g.
`hrm train --preset demo max_time_s=null arch.forward_dtype=bfloat16 out_dir=...`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read(run: Path) -> tuple[dict[int, dict], list[dict]]:
    """(train records by global step, eval records in order) of a run folder's metrics.jsonl."""
    train, evals = {}, []
    with open(run / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "train":
                train[int(rec["global_step"])] = rec
            elif rec.get("kind") == "eval":
                evals.append(rec)
    return train, evals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.jsonl)")
    ap.add_argument("--every", type=int, default=500, help="table row every N steps (default 500)")
    ap.add_argument("--names", help="comma-separated column names (default: the folder names)")
    args = ap.parse_args()
    names = args.names.split(",") if args.names else [r.name for r in args.runs]
    data = [read(r) for r in args.runs]
    head = "| step | " + " | ".join(f"{n} loss | {n} token acc | {n} exact" for n in names) + " |"
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    steps = sorted(set().union(*(t.keys() for t, _ in data)))
    for s in [s for s in steps if s % args.every == 0 or s == steps[-1]]:
        cells = []
        for train, _ in data:
            r = train.get(s)
            cells += [f"{r['loss']:.4f}", f"{r['accuracy']:.3f}", f"{r['exact_accuracy']:.3f}"] if r else ["—"] * 3
        print(f"| {s} | " + " | ".join(cells) + " |")
    print()
    for name, (train, evals) in zip(names, data):
        last = train[max(train)] if train else {}
        ev = "; ".join(f"step {e['global_step']} ({e.get('eval_kind', 'eval')}): exact "
                       f"{e.get('eval/exact_accuracy', e.get('eval_fast/exact_accuracy', float('nan'))):.4f}, token "
                       f"{e.get('eval/token_accuracy', e.get('eval_fast/token_accuracy', float('nan'))):.4f}"
                       for e in evals)
        sps = last.get("samples_per_s")
        print(f"- {name}: {ev or 'no evaluation'}; wall {last.get('wall_time', float('nan')):.0f} s at step "
              f"{last.get('global_step')}, {sps:.0f} samples/s at the end" if sps else f"- {name}: {ev}")


if __name__ == "__main__":
    main()
