"""`hrm distill --teacher RUN_OR_CHECKPOINT [--config F] [key=value ...]`: train a smaller student on the
teacher's dataset with knowledge distillation per ACT segment (train/distill_loss.py), as a normal run (run folder,
status.json, evaluations with baselines, resume, the exit codes of `hrm train`), then compare student and
teacher (deploy/compare.py).

The student's config: the teacher run's training config (for a reference checkpoint, its translated
all_config.yaml) with the architecture at half the teacher's width (`train.distill_loss.half_width`), then the YAML
file and the key=value overrides (`model=NAME` picks an architecture preset instead; `arch.*` keys adjust
either). `distill.teacher` records the teacher's checkpoint file, so `hrm distill --resume RUN` needs nothing else.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hrmkit.config import parse_override
from hrmkit.errors import HrmkitError
from hrmkit.presets import resolve_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="train a smaller student from a trained teacher (knowledge distillation per ACT segment)",
        description="Distil a trained model (the teacher: a run folder, checkpoint or reference checkpoint) into a "
        "student trained on the teacher's dataset. Default student: the teacher's architecture at half the width "
        "(hidden_size / 2, num_heads keeping a valid head size); `model=NAME` (see `hrm model list`) or arch.* keys "
        "choose another. Every ACT segment the teacher runs on the same puzzles at the same segment index (its own "
        "carry, reset where the student's rows halt) and the student learns (1 - distill.alpha) x the hard-label "
        "loss + distill.alpha x distill.temperature^2 x KL(teacher || student) at that temperature; its Q-halt "
        "logit also learns sigmoid(teacher q_halt) when both run the same arch.halt_max_steps (distill.halting). "
        "The other training keys default to the teacher run's (max_steps=200 for a short run). It is a normal "
        "run: runs/<run_id>/ with config.yaml, metrics.jsonl, status.json, checkpoints/, best/. At the end it "
        "prints student vs teacher (parameters, exact accuracy on the test split next to the baselines, CPU "
        "milliseconds per puzzle) and writes RUN/distill.json and RUN/report/report.html. Exit status as "
        "`hrm train`: 0 finished; 2 bad input or config (nothing written); 3 crashed; 130/143 interrupted by "
        "SIGINT/SIGTERM (resumable: hrm distill --resume RUN).",
    )
    p.add_argument("--teacher", metavar="RUN_OR_CHECKPOINT", help="the trained teacher: a run folder (its newest "
                   "checkpoint), RUN/best/, a checkpoint file or a reference checkpoint (step_N with all_config.yaml); "
                   "EMA weights when it has them")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of configuration keys (applied after the "
                   "teacher's config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted distillation run from its newest "
                   "valid checkpoint (its config.yaml names the teacher); a finished run only repeats the comparison")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides, e.g. max_steps=200 "
                   "distill.temperature=4 distill.alpha=0.7 arch.hidden_size=32")
    p.set_defaults(func=_distill)


def _given_data_path(overrides: list[str]) -> str | None:
    """data_path=... among the overrides (a reference teacher may need the dataset to know its seq_len)."""
    found = [parse_override(o)["data_path"] for o in overrides if o.split("=", 1)[0].strip() == "data_path"]
    return str(found[-1]) if found else None


def student_config(args: argparse.Namespace):
    """(TrainConfig of the student run, the teacher as a `loading.TrainedModel` on the CPU). Raises HrmkitError
    for a missing or unreadable teacher, a resumed run that is no distillation run or names another teacher,
    and bad keys."""
    from hrmkit.loading import load_trained, resolve_checkpoints
    from hrmkit.train.distill_loss import half_width
    from hrmkit.train.run_folders import read_run_config

    if args.resume:
        base = read_run_config(Path(args.resume))
        cfg = resolve_config(config_file=args.config, overrides=args.overrides, base=base,
                             base_source=f"{args.resume}/config.yaml")
        if not cfg.distill.teacher:
            raise HrmkitError(f"--resume {args.resume}: not a distillation run (its config.yaml has no "
                              "distill.teacher); resume it with `hrm train --resume`")
        if args.teacher and resolve_checkpoints(args.teacher)[-1].resolve() != Path(cfg.distill.teacher).resolve():
            raise HrmkitError(f"--teacher {args.teacher}: the run {args.resume} distils {cfg.distill.teacher}; "
                              "leave --teacher out to resume it")
        return cfg, load_trained(Path(cfg.distill.teacher), "cpu", data=cfg.data_path)
    if not args.teacher:
        raise HrmkitError("--teacher RUN_OR_CHECKPOINT is required (or --resume RUN_DIR)")
    path = resolve_checkpoints(args.teacher)[-1]
    teacher = load_trained(path, "cpu", data=_given_data_path(args.overrides))
    base = {**teacher.config.model_dump(), "init_from": None, "model": None}
    base["distill"] = {**base["distill"], "teacher": str(path)}
    source = f"teacher {path}"
    cfg = resolve_config(config_file=args.config, overrides=args.overrides, base={**base, "arch": half_width(
        teacher.config.arch)}, base_source=f"{source} at half width")
    if cfg.model:  # an architecture preset: its own arch under the user's arch.* keys, not the teacher's
        cfg = resolve_config(config_file=args.config, overrides=args.overrides,
                             base={k: v for k, v in base.items() if k != "arch"}, base_source=source)
    if cfg.distill.teacher != str(path):
        raise HrmkitError(f"distill.teacher={cfg.distill.teacher!r}: give the teacher with --teacher")
    return cfg, teacher


def _distill(args: argparse.Namespace) -> int:
    from hrmkit.data.format import load_split
    from hrmkit.deploy.compare import compare
    from hrmkit.device import pick_device
    from hrmkit.loading import load_model
    from hrmkit.train.data import ensure_demo_data
    from hrmkit.train.distill_loss import DistillLoss
    from hrmkit.train.loop import train

    cfg, teacher = student_config(args)
    ensure_demo_data(cfg)
    data = Path(cfg.data_path)
    test = load_split(data, "test").require_examples()
    for split in (load_split(data, "train"), test):
        bad = split.metadata.shape_differences(teacher.model_shape or {})
        if bad:
            raise HrmkitError(f"the teacher {teacher.path} does not fit data_path={cfg.data_path!r} ({split.path}): "
                              f"{'; '.join(bad)}; distil on the teacher's dataset ({teacher.config.data_path})")
    objective = DistillLoss(teacher.head, cfg.distill, cfg.arch.halt_max_steps)
    a, t = cfg.arch, teacher.config.arch
    halting = ("on" if objective.halting else "off (distill.halting=false)" if not cfg.distill.halting
               else f"off (halt_max_steps {a.halt_max_steps} vs the teacher's {t.halt_max_steps})")
    print(f"distilling {teacher.path} (step {teacher.step}; {t.name} hidden_size {t.hidden_size}) into {a.name} "
          f"hidden_size {a.hidden_size} num_heads {a.num_heads}: temperature {cfg.distill.temperature}, alpha "
          f"{cfg.distill.alpha}, halting targets {halting}", flush=True)
    result = train(cfg, resume_dir=args.resume, segment_loss=objective)
    if result.state != "finished":
        return result.exit_code
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the comparison runs once, on rank 0
        return 0
    device = pick_device(cfg.device)
    student = load_model(result.run_dir, device)
    teacher.head.to(device)
    batch_size = student.config.eval_batch_size or int(student.config.global_batch_size)  # `auto` settled
    compare(result.run_dir, teacher, student, test, data, batch_size=batch_size, device=device,
            temperature=cfg.distill.temperature, alpha=cfg.distill.alpha, halting=objective.halting)
    return 0
