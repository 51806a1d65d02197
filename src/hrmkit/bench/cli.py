"""`hrm bench [--preset NAME] [key=value ...] [--device cpu|cuda] [--quick] [--append [FILE]] [--json]`."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

QUICK = {"warmup_steps": 1, "train_steps": 3, "eval_batches": 2, "ceiling_n": 1024}
FULL = {"warmup_steps": 2, "train_steps": 10, "eval_batches": 5, "ceiling_n": None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure training and evaluation throughput, peak memory and MFU of a config",
        description="Time a config's training step (forward + backward + optimizers, the ACT carry kept) and its "
        "evaluation (eval-mode rollouts) on random batches of the dataset's shape (data_path's dataset.json when "
        "it exists, else --seq-len x --vocab-size), count the model's FLOPs and compare the FLOP rate with a "
        "matmul measured on the same device in the same run (MFU). Default config: the demo preset, as `hrm "
        "train`. Examples: hrm bench --quick; hrm bench --preset hrm-paper global_batch_size=32 "
        "arch.forward_dtype=bfloat16; hrm bench --preset trm-attn global_batch_size=768 compile=true --device cuda.")
    p.add_argument("--preset", metavar="NAME", help="a training preset (demo, hrm-arc, ...) or a model preset "
                   "(hrm-paper, trm-attn, ...; see `hrm model list`), default demo")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of configuration keys (applied after the preset)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides, as for `hrm train`")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: the config's `device`)")
    p.add_argument("--quick", action="store_true", help="fewer steps and a smaller ceiling matmul (under a minute for "
                   "the demo preset on a 2-core CPU)")
    p.add_argument("--steps", type=int, metavar="N", help="timed training steps (default 10; --quick 3)")
    p.add_argument("--eval-batches", type=int, metavar="N", help="timed evaluation batches (default 5; --quick 2)")
    p.add_argument("--seq-len", type=int, default=81, help="sequence length without a dataset (default 81, Sudoku 9x9)")
    p.add_argument("--vocab-size", type=int, default=11, help="vocabulary without a dataset (default 11, Sudoku)")
    p.add_argument("--append", nargs="?", const="BENCHMARKS.md", metavar="FILE",
                   help="append a dated row with machine, torch version and command to FILE (default BENCHMARKS.md)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_bench)


def bench_config(preset: str | None, config_file: str | None, overrides: list[str]):
    """The TrainConfig benchmarked: `preset` is a training preset or a model preset (then `model=NAME`), the
    demo preset when neither it nor a config file is given. Raises HrmkitError for an unknown preset."""
    from hrmkit.errors import HrmkitError
    from hrmkit.presets import TRAIN_PRESETS, get_preset, resolve_config

    overrides = list(overrides)
    if preset is not None and preset not in TRAIN_PRESETS:
        try:
            get_preset(preset)
        except HrmkitError as e:
            raise HrmkitError(f"--preset {preset!r}: not a training preset ({', '.join(TRAIN_PRESETS)}); {e}") from None
        preset, overrides = None, [f"model={preset}", *overrides]
    elif preset is None and config_file is None:
        preset = "demo"
    return resolve_config(preset=preset, config_file=config_file, overrides=overrides)


def _shape(cfg, args):
    from hrmkit.bench.measure import Shape
    from hrmkit.data.format import DatasetMetadata
    from hrmkit.fsutil import read_json

    meta_path = Path(cfg.data_path) / "train" / "dataset.json"
    if meta_path.is_file():
        m = DatasetMetadata.from_json(read_json(meta_path), str(meta_path))
        return Shape(m.seq_len, m.vocab_size, m.num_puzzle_identifiers, f"dataset {cfg.data_path}")
    return Shape(args.seq_len, args.vocab_size, 1, f"random (no dataset at {cfg.data_path})")


def _command(args) -> str:
    """The command line of this run, rebuilt from its parsed arguments (without --append and --json)."""
    parts = ["hrm", "bench"]
    for flag, value in (("--preset", args.preset), ("--config", args.config), ("--device", args.device),
                        ("--steps", args.steps), ("--eval-batches", args.eval_batches)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--quick"] * args.quick + list(args.overrides)
    if args.seq_len != 81 or args.vocab_size != 11:
        parts += ["--seq-len", str(args.seq_len), "--vocab-size", str(args.vocab_size)]
    return " ".join(shlex.quote(p) for p in parts)


def _bench(args) -> int:
    from hrmkit.errors import HrmkitError

    for name in ("steps", "eval_batches", "seq_len", "vocab_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise HrmkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    cfg = bench_config(args.preset, args.config, args.overrides)
    if args.device:
        cfg = cfg.model_copy(update={"device": args.device})
    from hrmkit.bench.measure import run_bench
    from hrmkit.bench.table import append_row, format_row
    from hrmkit.device import pick_device

    device = pick_device(cfg.device)
    shape = _shape(cfg, args)
    plan = dict(QUICK if args.quick else FULL)
    if args.steps:
        plan["train_steps"] = args.steps
    if args.eval_batches:
        plan["eval_batches"] = args.eval_batches
    if not args.json:
        print(f"hrm bench: {cfg.preset or cfg.model or 'config'} on {device}, data shape: {shape.source} "
              f"(seq_len {shape.seq_len}, vocab {shape.vocab_size})", flush=True)
    r = run_bench(cfg, device, shape, **plan)
    command = _command(args)
    if args.json:
        print(json.dumps(r.to_dict(), indent=1))
    else:
        print(f"model   {r.model}, {r.parameters:,} parameters, {r.dtype}{', compiled' if r.compile else ''}, "
              f"{r.device} ({r.threads} threads)")
        print(f"train   {r.train_samples_per_s:.1f} samples/s, {r.train_segments_per_s:.2f} segments/s (batch "
              f"{r.batch_size}; step {r.train_step_s * 1e3:.1f} ms, median of {r.train_steps}; warm-up "
              f"{r.warmup_s:.1f} s)")
        print(f"eval    {r.eval_puzzles_per_s:.1f} puzzles/s (batch {r.eval_batch_size}, "
              f"{r.eval_batch_s * 1e3:.1f} ms per batch of all segments, median of {r.eval_batches})")
        print(f"FLOPs   {r.train_flops_per_step / 1e9:.3g} GFLOP/train step -> {r.train_flops_per_s / 1e9:.1f} GFLOP/s; "
              f"ceiling {r.ceiling_flops_per_s / 1e9:.1f} GFLOP/s ({r.ceiling}) -> MFU {100 * r.mfu:.1f}% "
              f"(eval {100 * r.eval_mfu:.1f}%)")
        print(f"memory  {r.peak_memory_mb:.0f} MiB ({r.peak_memory_kind})")
    if args.append:
        append_row(args.append, format_row(r, command))
        if not args.json:
            print(f"appended a row to {args.append}")
    return 0
