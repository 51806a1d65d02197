"""What the long-run machinery costs per step: the bare reference step (forward, backward, optimizers) against
`hrm train`'s step (guards, stats sync, heartbeat, ticks), and the time of one atomic fsynced checkpoint.

    .venv/bin/python benchmarks/bench_train_loop.py [--steps 60] [--data DIR] [--threads 1]

Prints seconds per step (median of 3 repeats) for both, the overhead in percent and the checkpoint time.
Builds a small 4x4 Sudoku dataset in a temporary folder unless --data is given. CPU, tiny model: the overhead
share is an upper bound (larger models make the fixed costs relatively smaller).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hrmkit.cli import main as hrm
from hrmkit.data.format import load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.models import build_model, build_optimizers
from hrmkit.presets import resolve_config
from hrmkit.train.checkpoint import list_checkpoints
from hrmkit.train.loop import train
from hrmkit.train.step import bare_step

TINY = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
        "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "global_batch_size=32",
        "lr=3e-3", "lr_warmup_steps=5", "log_every=10", "max_time_s=null", "eval_max_examples=8"]


def bare_steps(cfg, steps: int) -> float:
    split = load_split(Path(cfg.data_path), "train")
    meta = split.metadata
    head = build_model(cfg.arch, seq_len=meta.seq_len, vocab_size=meta.vocab_size,
                       num_puzzle_identifiers=meta.num_puzzle_identifiers)
    opts = build_optimizers(head, cfg.lr, cfg.puzzle_emb_lr, cfg.weight_decay, cfg.puzzle_emb_weight_decay)
    it, carry = iter(TrainSampler(split, cfg.global_batch_size, seed=0)), None
    t = time.perf_counter()
    for _ in range(steps):
        _, _, batch = next(it)
        carry = bare_step(head, carry, [batch], opts)
    return (time.perf_counter() - t) / steps


def loop_steps(cfg, steps: int) -> tuple[float, float]:
    times = []

    def clock(state):
        times.append(time.perf_counter())

    with contextlib.redirect_stdout(io.StringIO()):
        run = train(cfg, on_step=clock).run_dir
    per_step = (times[-1] - times[0]) / (len(times) - 1)
    path = list_checkpoints(run)[-1]
    from hrmkit.train.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(path)
    t = time.perf_counter()
    save_checkpoint(run, 10**7, state, keep=10)
    return per_step, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or str(Path(tmp) / "sudoku4")
        if args.data is None:
            with contextlib.redirect_stdout(io.StringIO()):
                hrm(["data", "sudoku", "--out", data, "--size", "4", "--train", "300", "--test", "64", "--seed", "0"])
        cfg = resolve_config(preset="demo", overrides=TINY + [f"data_path={data}", f"out_dir={tmp}/runs",
                                                              f"max_steps={args.steps}", "checkpoint_every=100000"])
        bare, loop, ck = [], [], []
        for _ in range(3):
            bare.append(bare_steps(cfg, args.steps))
            s, c = loop_steps(cfg, args.steps)
            loop.append(s)
            ck.append(c)
    b, l_ = statistics.median(bare), statistics.median(loop)
    print(f"bare reference step   {b * 1e3:8.2f} ms")
    print(f"hrm train step        {l_ * 1e3:8.2f} ms  (overhead {100 * (l_ - b) / b:+.1f}%)")
    print(f"checkpoint (fsynced)  {statistics.median(ck) * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
