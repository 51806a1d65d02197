"""`hrm train` and `hrm status`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from hrmkit.config import PRESETS, TrainConfig, resolve_config
from hrmkit.errors import HrmkitError


def _keys_help() -> str:
    lines = []
    for name, f in TrainConfig.model_fields.items():
        if name == "arch":
            continue
        lines.append(f"  {name} (default {f.default!r})")
    from hrmkit.config import ArchConfig

    for name, f in ArchConfig.model_fields.items():
        lines.append(f"  arch.{name} (default {f.default!r})")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (no arguments: the CPU demo, 4x4 Sudoku)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train HRM/TRM. With no arguments, runs the CPU demo: builds (or reuses) "
        "data/sudoku-4x4-demo and trains the `demo` preset. Each run writes runs/<run_id>/ with config.yaml, "
        "metrics.jsonl, status.json and checkpoints/. SIGINT/SIGTERM checkpoint and exit cleanly.",
        epilog="configuration keys (set them as key=value, e.g. arch.L_cycles=6 lr=3e-4):\n" + _keys_help(),
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of configuration keys (applied after the preset)")
    p.add_argument("--preset", metavar="NAME", help=f"training preset: {', '.join(PRESETS)} (default: demo, unless "
                   "--config or --resume is given)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue runs/<run_id> from its newest valid checkpoint; "
                   "its config.yaml is the base, key=value overrides still apply (e.g. max_steps=5000)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides")
    p.set_defaults(func=_train)

    s = sub.add_parser("status", help="print a run's status.json heartbeat")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--json", action="store_true", help="print the raw JSON")
    s.set_defaults(func=_status)


def _train(args: argparse.Namespace) -> int:
    from hrmkit.train.loop import train

    base = None
    if args.resume:
        cfg_path = Path(args.resume) / "config.yaml"
        if not cfg_path.is_file():
            raise HrmkitError(f"--resume {args.resume}: {cfg_path} not found (is this a run folder?)")
        base = yaml.safe_load(cfg_path.read_text())
    preset = args.preset
    if preset is None and args.config is None and base is None:
        preset = "demo"
    cfg = resolve_config(preset=preset, config_file=args.config, overrides=args.overrides, base=base)
    train(cfg, resume_dir=args.resume)
    return 0


def _status(args: argparse.Namespace) -> int:
    path = Path(args.run_dir) / "status.json"
    if not path.is_file():
        raise HrmkitError(f"{path}: no status.json (is {args.run_dir} a run folder?)")
    status = json.loads(path.read_text())
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for k, v in status.items():
            print(f"{k:16s} {v}")
    return 0
