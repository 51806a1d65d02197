"""The `hrm` command: `hrm data|train|eval|solve|model|verify-reference|bench|export|distill|serve ...`.

Each subcommand family lives beside the code it drives and registers itself through a `register(subparsers)`
function; this module only wires them together and turns errors into a message and an exit code: HrmkitError
(bad input) and OSError (a read-only folder, a full disk: the message names the path) exit 2, RunCrashed
(training diverged or ran out of memory) exits 3, an interrupt 130 (SIGINT) or 143 (SIGTERM); a subcommand may
return its own code (`hrm train`: 130/143 after checkpointing). SIGTERM raises `Terminated` in this process, so
the `finally` blocks of every command run (an export or a data build removes its temporary folder) instead of
the process dying mid-write.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from hrmkit.errors import HrmkitError, RunCrashed
from hrmkit.proc import keep_freed_cpu_memory

# Modules that each define `register(subparsers)`.
_COMMAND_MODULES = [
    "hrmkit.data.cli",
    "hrmkit.train.cli",
    "hrmkit.eval.cli",
    "hrmkit.models.cli",
    "hrmkit.deploy.solve_cli",
    "hrmkit.bench.cli",
    "hrmkit.deploy.export_cli",
    "hrmkit.deploy.distill_cli",
    "hrmkit.deploy.serve_cli",
    "hrmkit.deploy.adapt_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrm",
        description="hrmkit: train, evaluate and deploy HRM and TRM models on Sudoku, mazes, ARC-AGI and your own "
        "puzzle types.",
    )
    parser.add_argument("--task-file", dest="task_files", metavar="FILE.py[,FILE.py]", default=None,
                        help="Python files defining puzzle types (each calls hrmkit.tasks.register; docs/tasks.md); "
                        "also read from the environment variable HRMKIT_TASK_FILES")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that cleanup runs; the exit status is 128 + 15 = 143."""

    signum = signal.SIGTERM


def _install_sigterm() -> object | None:
    """Raise `Terminated` on SIGTERM in this process (module docstring); returns the handler to restore, or None
    when this is not the main thread or someone else already handles SIGTERM. Forked children (data-build
    workers) inherit the handler but die of SIGTERM as before."""
    owner = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None
        return signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread
        return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_cpu_memory()
    previous = _install_sigterm()
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "task_files", None):
            from hrmkit.tasks import TASK_FILES_ENV, load_task_files

            files = [f for f in args.task_files.split(",") if f.strip()]
            load_task_files(files)
            # child processes (data-parallel ranks, build workers) find the same tasks
            os.environ[TASK_FILES_ENV] = os.pathsep.join([os.environ.get(TASK_FILES_ENV, "")] + files).strip(os.pathsep)
        rc = args.func(args)
    except HrmkitError as e:
        print(f"hrm: error: {e}", file=sys.stderr, flush=True)
        return 2
    except RunCrashed as e:
        print(f"hrm: crashed: {e}", file=sys.stderr, flush=True)
        return 3
    except OSError as e:  # a read-only folder, a full disk, ...: name the path, no traceback
        if e.filename is not None:  # writers name their file (fsutil.named_oserror); this is the last resort
            print(f"hrm: error: {e.filename}: {e.strerror or e}", file=sys.stderr, flush=True)
        else:
            print(f"hrm: error: {e.strerror or e} (the file was not reported)", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or a second signal during `hrm train` (train/run_context.py SecondSignal)
        print("hrm: interrupted", file=sys.stderr, flush=True)
        return 128 + getattr(e, "signum", 2)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
