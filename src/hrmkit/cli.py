"""The `hrm` command: `hrm data|train|eval|solve|model|verify-reference|bench|export|distill ...`.

Each subcommand family lives beside the code it drives and registers itself through a `register(subparsers)`
function; this module only wires them together and turns errors into a message and an exit code: HrmkitError
(bad input) and OSError (a read-only folder, a full disk: the message names the path) exit 2, RunCrashed
(training diverged or ran out of memory) exits 3, an interrupt 130; a subcommand may return its own code
(`hrm train`: 130/143 when stopped by SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hrmkit.errors import HrmkitError, RunCrashed

# Modules that each define `register(subparsers)`.
_COMMAND_MODULES = [
    "hrmkit.data.cli",
    "hrmkit.train.cli",
    "hrmkit.eval.cli",
    "hrmkit.models.cli",
    "hrmkit.deploy.solve_cli",
    "hrmkit.bench.cli",
    "hrmkit.deploy.export_cli",
    "hrmkit.deploy.distill",
    "hrmkit.deploy.adapt_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrm",
        description="hrmkit: train, evaluate and deploy HRM and TRM models on Sudoku, mazes and ARC-AGI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except HrmkitError as e:
        print(f"hrm: error: {e}", file=sys.stderr, flush=True)
        return 2
    except RunCrashed as e:
        print(f"hrm: crashed: {e}", file=sys.stderr, flush=True)
        return 3
    except OSError as e:  # a read-only folder, a full disk, ...: name the path, no traceback
        where = e.filename if e.filename is not None else "?"
        print(f"hrm: error: {where}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or a second signal during `hrm train` (train/run.py SecondSignal)
        print("hrm: interrupted", file=sys.stderr, flush=True)
        return 128 + getattr(e, "signum", 2)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
