"""A case where adaptation must help (BENCHMARKS.md "hrm adapt"): a family of generated ARC tasks, "recolour
colour a to colour b" (every other cell unchanged), where which (a, b) a task uses is shown only by its
demonstrations. A small TRM is pretrained on some members; new members' test inputs cannot be answered without
learning their puzzle embedding from their demonstrations, which `hrm adapt` does.

    python examples/adapt_recolour_family.py WORKDIR [--pretrain-steps N] [--adapt-steps N]

Writes WORKDIR/{pretrain,eval,new}/ task files, WORKDIR/data (hrm data arc), WORKDIR/runs (hrm train) and
WORKDIR/adapt (hrm adapt, with --solutions); prints the adapt report (pass@k before and after).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_task(rng: np.random.Generator, a: int, b: int, n_demo: int = 3, size: int = 6) -> dict:
    """One member: inputs hold colour a among two other colours and black; outputs have a replaced by b."""
    others = [c for c in range(1, 10) if c not in (a, b)]

    def pair():
        palette = np.array([0, a, *rng.choice(others, 2, replace=False)])
        x = palette[rng.integers(0, 4, (size, size))]
        x[rng.integers(0, size), rng.integers(0, size)] = a  # a always occurs
        y = np.where(x == a, b, x)
        return {"input": x.tolist(), "output": y.tolist()}

    return {"train": [pair() for _ in range(n_demo)], "test": [pair()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--pretrain-steps", type=int, default=600)
    ap.add_argument("--pretrain-time", type=float, default=900)
    ap.add_argument("--adapt-steps", type=int, default=200)
    ap.add_argument("--new", type=int, default=10)
    args = ap.parse_args()
    w = Path(args.workdir)
    rng = np.random.default_rng(0)
    pairs = [(a, b) for a in range(1, 10) for b in range(1, 10) if a != b]
    rng.shuffle(pairs)
    new, evals, pretrain = pairs[:args.new], pairs[args.new:args.new + 4], pairs[args.new + 4:]
    for name, members in (("pretrain", pretrain), ("eval", evals)):
        (w / name).mkdir(parents=True, exist_ok=True)
        for a, b in members:
            (w / name / f"recolour_{a}_{b}.json").write_text(json.dumps(make_task(rng, a, b)))
    tasks = {f"new_{a}_{b}": make_task(rng, a, b) for a, b in new}
    ch = {t: {"train": v["train"], "test": [{"input": p["input"]} for p in v["test"]]} for t, v in tasks.items()}
    so = {t: [p["output"] for p in v["test"]] for t, v in tasks.items()}
    (w / "challenges.json").write_text(json.dumps(ch))
    (w / "solutions.json").write_text(json.dumps(so))
    hrm = [sys.executable, "-m", "hrmkit.cli"]
    if not (w / "data").exists():
        subprocess.run(hrm + ["data", "arc", "--tasks-dir", f"training={w / 'pretrain'}", "--tasks-dir",
                              f"evaluation={w / 'eval'}", "--eval-policy", "strict", "--num-aug", "0",
                              "--out", str(w / "data")], check=True)
    arch = ["arch.name=trm", "arch.hidden_size=32", "arch.num_heads=2", "arch.expansion=2", "arch.H_layers=0",
            "arch.L_layers=1", "arch.H_cycles=1", "arch.L_cycles=1", "arch.halt_max_steps=1",
            "arch.puzzle_emb_ndim=32", "arch.puzzle_emb_len=1", "arch.pos_encodings=rope", "arch.mlp_t=false",
            "arch.no_ACT_continue=true", "arch.forward_dtype=float32"]
    if not list((w / "runs").glob("*/checkpoints/*.pt")):
        subprocess.run(hrm + ["train", f"data_path={w / 'data'}", f"out_dir={w / 'runs'}", *arch,
                              "global_batch_size=16", "lr=3e-3", "lr_warmup_steps=50", "puzzle_emb_lr=1e-2",
                              "weight_decay=0.1", "puzzle_emb_weight_decay=0.1", "eval_interval=null",
                              f"max_steps={args.pretrain_steps}", f"max_time_s={args.pretrain_time}",
                              "checkpoint_every=250", "log_every=50", "eval_max_examples=64", "eval_batch_size=64",
                              "log.progress=lines", "device=cpu"], check=True)
    run = sorted(p for p in (w / "runs").iterdir() if p.is_dir())[-1]
    subprocess.run(hrm + ["adapt", "--checkpoint", str(run), "--tasks", str(w / "challenges.json"), "--solutions",
                          str(w / "solutions.json"), "--out", str(w / "adapt"), "--num-aug", "2", "--device", "cpu",
                          f"max_steps={args.adapt_steps}", "lr=1e-3", "global_batch_size=16"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
