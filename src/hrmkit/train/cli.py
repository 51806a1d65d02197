"""`hrm train`, `hrm status` and `hrm runs`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError
from hrmkit.presets import TRAIN_PRESETS, preset_table, resolve_config


def _keys_help() -> str:
    lines = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            sub = f.annotation if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel) else None
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
            else:
                lines.append(f"  {prefix}{name} (default {f.default!r})")

    walk(TrainConfig, "")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (no arguments: the CPU demo, 6x6 Sudoku)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train HRM/TRM. With no arguments, runs the CPU demo: builds (or reuses) "
        "data/sudoku-6x6-demo and trains the `demo` preset (`--preset demo-4x4`: the first, 4x4 demo). Each run writes runs/<run_id>/ with config.yaml, "
        "metrics.jsonl, status.json, checkpoints/ and best/, and holds runs/<run_id>/run.lock while it runs. "
        "SIGINT/SIGTERM checkpoint and exit cleanly. Data-parallel: torchrun --nproc-per-node N -m hrmkit.cli "
        "train ... Exit status: 0 finished; 2 bad input or config (nothing written); 3 crashed (diverged, out of "
        "memory); 130/143 interrupted by SIGINT/SIGTERM (resumable: hrm train --resume auto).",
        epilog="reference presets (--preset NAME; one per published run, the references' hyperparameters):\n"
        + preset_table() + "\n\nconfiguration keys (set them as key=value, e.g. arch.L_cycles=6 lr=3e-4 "
        "eval.fast_every=200):\n" + _keys_help(),
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of configuration keys (applied after the preset)")
    p.add_argument("--preset", metavar="NAME", help=f"training preset: {', '.join(TRAIN_PRESETS)} (default: demo, "
                   "unless --config or --resume is given)")
    p.add_argument("--resume", metavar="RUN_DIR|auto", help="continue runs/<run_id> from its newest valid checkpoint "
                   "(corrupt ones are skipped); its config.yaml is the base, key=value overrides still apply (e.g. "
                   "max_steps=5000). `auto`: the newest unfinished run in out_dir (of --preset, when given), or a new "
                   "run when there is none")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides")
    p.set_defaults(func=_train)

    states = ("States: running; finished; interrupted (SIGINT/SIGTERM, resumable); crashed (the writer process died "
              "on this host, or the loop recorded an error); stale (status says running but the heartbeat is older "
              "than 3 status intervals: hung, or on another host).")
    s = sub.add_parser("status", help="print a run's status.json heartbeat (and whether it is stale or crashed)",
                       description="Print a run's status.json: step, speed, ETA, best, last evaluation, last "
                       "checkpoint, peak memory, heartbeat age. " + states)
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--json", action="store_true", help="print the JSON, with `observed_state` and `heartbeat_age_s` added")
    s.set_defaults(func=_status)

    r = sub.add_parser("runs", help="list the runs of a folder: id, task, preset, step, best, state",
                       description="List the run folders under DIR: run id, dataset task, preset, global step / total, "
                       "best metric and its step, observed state, last heartbeat. " + states)
    r.add_argument("root", nargs="?", default="runs", metavar="DIR", help="runs folder (default: runs)")
    r.add_argument("--json", action="store_true", help="print one JSON list")
    r.set_defaults(func=_runs)


def _train(args: argparse.Namespace) -> int:
    from hrmkit.train.loop import train
    from hrmkit.train.run_folders import find_resumable, read_run_config

    resume = args.resume
    if resume == "auto":
        probe = resolve_config(preset=args.preset or ("demo" if args.config is None else None),
                               config_file=args.config, overrides=args.overrides)
        found = find_resumable(Path(probe.out_dir), preset=args.preset)
        if found is None:
            print(f"--resume auto: no unfinished run in {probe.out_dir}; starting a new run", flush=True)
            resume = None
        else:
            print(f"--resume auto: resuming {found}", flush=True)
            resume = str(found)
    base = read_run_config(Path(resume)) if resume else None
    preset = args.preset
    if preset is None and args.config is None and base is None:
        preset = "demo"
    cfg = resolve_config(preset=preset, config_file=args.config, overrides=args.overrides, base=base,
                         base_source=f"{resume}/config.yaml")
    if cfg.distill.teacher:
        raise HrmkitError(f"distill.teacher={cfg.distill.teacher!r}: distillation runs are trained and resumed with "
                          "`hrm distill`")
    return train(cfg, resume_dir=resume).exit_code


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def _status(args: argparse.Namespace) -> int:
    from hrmkit.train.run_folders import heartbeat_age_s, observe_state, read_status

    path = Path(args.run_dir) / "status.json"
    if not path.is_file():
        raise HrmkitError(f"{path}: no status.json (is {args.run_dir} a run folder?)")
    status = read_status(path)
    now = time.time()
    observed, age = observe_state(Path(args.run_dir), status, now), heartbeat_age_s(status, now)
    if args.json:
        print(json.dumps({**status, "observed_state": observed, "heartbeat_age_s": age}, indent=2))
        return 0
    state = observed if observed == status.get("state") else f"{observed} (status.json says {status.get('state')})"
    best, last = status.get("best") or {}, status.get("last_eval") or {}
    mem = status.get("memory") or {}
    gpu = mem.get("gpu")
    rows = [
        ("run", f"{status.get('run_id')}  (pid {status.get('pid')} on {status.get('host')})"),
        ("state", state + (f"  [{status.get('phase')}]" if status.get("phase") and observed == "running" else "")),
        ("step", f"{status.get('global_step')}/{status.get('total_steps')}  epoch {status.get('epoch')}"),
        ("speed", f"{status.get('samples_per_s') or 0:.1f} samples/s  ETA {_fmt_age(status.get('eta_s'))}"),
        ("best", f"{best.get('metric')} {best.get('value')} at step {best.get('step')} ({best.get('checkpoint')})"
         if best else "-"),
        ("last eval", f"step {last.get('step')} ({last.get('kind', 'full')}): " + ", ".join(
            f"{k} {v:.4f}" for k, v in (last.get("metrics") or {}).items()
            if k in ("exact_accuracy", "token_accuracy") and isinstance(v, (int, float))) if last else "-"),
        ("checkpoint", str(status.get("last_checkpoint") or "-")),
        ("memory", f"peak RSS {mem.get('peak_cpu_rss_mb')} MiB" + (
            f"; GPU peak {gpu['peak_reserved_mb']} of {gpu['total_mb']} MiB (headroom {gpu['headroom_frac']:.0%})"
            if gpu else "")),
        ("heartbeat", f"{status.get('updated_at')} ("
         + (f"{_fmt_age(age)} ago" if age is None or age >= 0 else f"{_fmt_age(-age)} in the future: clock skew?")
         + f", every {status.get('status_interval_s')}s)"),
    ]
    if status.get("stop_reason"):
        rows.append(("stop reason", str(status["stop_reason"])))
    if status.get("error"):
        rows.append(("error", str(status["error"])))
    diag = last.get("diagnosis") if last else None
    if diag and (diag.get("input_invariant") or diag.get("collapsed") or diag.get("warning")):
        rows.append(("WARNING", str(diag.get("warning") or diag)))
    for key, value in rows:
        print(f"{key:12s} {value}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from hrmkit.train.run_folders import format_runs, list_runs

    rows = list_runs(Path(args.root))
    for row in rows:
        if row.get("problem"):
            print(f"hrm runs: warning: {row['problem']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs in {args.root}")
    else:
        print(format_runs(rows))
    return 0
