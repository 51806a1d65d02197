"""The demo model's bare training step, hrmkit against the TinyRecursiveModels reference: losses, interleaved
timing and a torch.profiler table per side.

    .venv/bin/python benchmarks/profile_demo_step.py --trm-ref /tmp/ref-trm [--rounds 6] [--steps 20] [--profile]

One step = forward + backward + AdamAtan2 on a random 6x6-Sudoku-shaped batch (batch 64, seq 36, vocab 8), the
ACT carry kept; both sides start from the reference's weights (loaded into hrmkit), so their losses print side by
side and must agree (the first 11 are the same numbers bit for bit since the `mlp_t` layout change). Timing:
`--rounds` rounds of `--steps` steps per side, the order alternating; median ms per step. With `--profile`, 10
more steps per side under torch.profiler, self CPU time by operator (the table in BENCHMARKS.md, section
"Speed on the demo recipe against the reference, evaluation speed, fresh-clone demo").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reference import random_batches, sides_for  # noqa: E402

from hrmkit.config import ArchConfig  # noqa: E402
from hrmkit.presets import TRAIN_PRESETS  # noqa: E402

S, V, B = 36, 8, 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trm-ref", type=Path, required=True, help="a checkout of SamsungSAILMontreal/TinyRecursiveModels")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    arch = ArchConfig.model_validate(TRAIN_PRESETS["demo"]["arch"])
    sides = sides_for(arch, B, S, V, {"trm": args.trm_ref}, with_compile=False)
    batches = random_batches(B, 4, seed=0, seq_len=S, vocab=V)
    losses = {}
    for s in sides:
        torch.manual_seed(0)
        losses[s.label] = [s.step(batches[i % 4]) for i in range(11)]
        print(f"{s.label:9s} losses {losses[s.label]}")
    print("losses equal bit for bit:", losses["reference"] == losses["hrmkit"])
    for r in range(args.rounds):
        for s in sides if r % 2 == 0 else sides[::-1]:
            t = time.perf_counter()
            for i in range(args.steps):
                s.step(batches[i % 4])
            s.times.append((time.perf_counter() - t) / args.steps)
    for s in sides:
        print(f"{s.label:9s} ms/step rounds {[round(x * 1000, 1) for x in s.times]} median "
              f"{statistics.median(s.times) * 1000:.1f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for s in sides:
            with profile(activities=[ProfilerActivity.CPU]) as p:
                for i in range(10):
                    s.step(batches[i % 4])
            print(f"===== {s.label}: 10 steps")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
