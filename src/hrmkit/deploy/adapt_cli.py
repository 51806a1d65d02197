"""`hrm adapt`: test-time training of a pretrained ARC model on new tasks, into a Kaggle submission.json
(hrmkit.deploy.adapt)."""

from __future__ import annotations

import argparse
import contextlib
import json


def register(sub: argparse._SubParsersAction) -> None:
    from hrmkit.deploy.adapt import ADAPT_DEFAULTS, DEFAULT_NUM_AUG

    defaults = " ".join(f"{k}={v}" for k, v in ADAPT_DEFAULTS.items() if not isinstance(v, dict))
    p = sub.add_parser(
        "adapt", help="fine-tune a pretrained ARC model on new tasks' demonstrations and write submission.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Test-time training: builds DIR/data from the new tasks' demonstration pairs "
        "(K augmented versions each; their test inputs, never their outputs, as the test split), extends the "
        "checkpoint's puzzle table with the new tasks (rows at the mean of the trained rows), writes "
        "DIR/submission.json from the un-adapted model's votes, fine-tunes as a normal run in DIR/runs "
        "(status.json, SIGTERM, resume by running the same command again), then replaces DIR/submission.json "
        "with the adapted model's votes. Exit status: 0 done; 2 bad input (nothing written); 3 training crashed "
        "(the un-adapted submission stays); 130/143 interrupted (resumable).",
        epilog=f"adaptation defaults (override with key=value, any `hrm train` key): {defaults}",
    )
    p.add_argument("--checkpoint", required=True, metavar="PRETRAINED",
                   help="hrmkit run folder, checkpoint, export folder, or reference step_N (with all_config.yaml)")
    p.add_argument("--tasks", required=True, metavar="CHALLENGES.json", help="Kaggle-layout challenges file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (data, runs, submission.json)")
    p.add_argument("--solutions", metavar="SOLUTIONS.json",
                   help="Kaggle-layout solutions: report pass@1/pass@2 before and after adaptation and the ARC "
                   "baselines (read after predicting; never trained on)")
    p.add_argument("--num-aug", type=int, default=DEFAULT_NUM_AUG, metavar="K",
                   help=f"augmented versions per task besides the identity (default {DEFAULT_NUM_AUG})")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="wall-clock budget of the whole call: training gets what is left after the un-adapted "
                   "submission is written, minus one prediction pass and a margin")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.add_argument("--json", action="store_true", help="print the report (pass@k before/after, baselines) as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training keys (see `hrm train --help`)")
    p.set_defaults(func=_adapt)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _adapt(args: argparse.Namespace) -> int:
    import sys

    from hrmkit.deploy.adapt import AdaptConfig, adapt

    cfg = AdaptConfig(checkpoint=args.checkpoint, tasks=args.tasks, out=args.out, solutions=args.solutions,
                      num_aug=args.num_aug, time_budget_s=args.time_budget, overrides=args.overrides,
                      seed=args.seed, device=args.device)
    if args.json:  # stdout carries the JSON only: the run's own lines go to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = adapt(cfg)
    else:
        result = adapt(cfg)
    report = result.to_json()
    if args.json:
        print(json.dumps(report, indent=2))
        return result.exit_code
    print(f"submission: {result.submission}" + (f" ({result.note})" if result.note else ""))
    if result.before is not None:
        rows = [("before adaptation", result.before), ("after adaptation", result.after)]
        rows += [(f"baseline {name}", b) for name, b in (result.baselines or {}).items()]
        print(f"{'':40s} pass@1   pass@2")
        for name, r in rows:
            print(f"{name:40s} {_pct((r or {}).get('pass@1')):>7s}  {_pct((r or {}).get('pass@2')):>7s}")
    return result.exit_code
