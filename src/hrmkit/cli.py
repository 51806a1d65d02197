"""The `hrm` command: `hrm data|train|eval|model|solve|verify-reference ...`.

Each subcommand family lives beside the code it drives and registers itself through a `register(subparsers)`
function; this module only wires them together and turns HrmkitError into a clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hrmkit.errors import HrmkitError

# Modules that each define `register(subparsers)`.
_COMMAND_MODULES = [
    "hrmkit.data.cli",
    "hrmkit.train.cli",
    "hrmkit.eval.cli",
    "hrmkit.models.cli",
    "hrmkit.deploy.solve_cli",
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
    except KeyboardInterrupt:
        print("hrm: interrupted", file=sys.stderr, flush=True)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
