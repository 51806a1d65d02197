"""`hrm eval RUN_DIR_OR_CHECKPOINT`: held-out scores next to the trivial baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a run or checkpoint on a test split, with baselines",
        description="Evaluate a trained model on the test split of its dataset (or --data): exact accuracy (whole "
        "answer right), token accuracy over the cells to fill, mean ACT steps, q-halt accuracy, and the same "
        "numbers for the trivial baselines (copy the input; predict the most common label token).",
    )
    p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder (its newest checkpoint is used) or a checkpoint file (.pt)")
    p.add_argument("--data", metavar="DIR", help="dataset folder (default: the run's data_path)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="evaluation batch size "
                   "(default: the run's eval_batch_size or global_batch_size)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N", help="evaluate the first N examples only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when the checkpoint "
                   "holds an EMA copy (default: EMA when present, as the TRM reference evaluates)")
    p.set_defaults(func=_eval)


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint file, or the newest valid checkpoint of a run folder. Raises HrmkitError when none."""
    from hrmkit.train.checkpoint import list_checkpoints

    target = Path(target)
    if target.is_file():
        return target
    if target.is_dir():
        found = list_checkpoints(target)
        if found:
            return found[-1]
        raise HrmkitError(f"{target}: no checkpoints/step_*.pt in this folder")
    raise HrmkitError(f"{target}: no such run folder or checkpoint file")


def load_trained(path: Path, device: torch.device, use_ema: bool = True):
    """Rebuild the model saved in checkpoint `path`. Returns (head, TrainConfig, step)."""
    from hrmkit.models import build_model
    from hrmkit.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    cfg = TrainConfig.model_validate(json.loads(state["config"]))
    head = build_model(cfg.arch, **state["model_shape"])
    head.load_state_dict(state["model"])
    if use_ema and state.get("ema") is not None:
        from hrmkit.models.ema import EMA

        ema = EMA(head)
        ema.load_state_dict(state["ema"])
        ema.copy_to()
    return head.to(device), cfg, int(state["step"])


def _eval(args: argparse.Namespace) -> int:
    from hrmkit.data.format import load_split
    from hrmkit.eval.evaluate import evaluate_split
    from hrmkit.train.loop import pick_device

    device = pick_device(args.device)
    path = resolve_checkpoint(args.target)
    head, cfg, step = load_trained(path, device, use_ema=not args.raw_weights)
    data = Path(args.data or cfg.data_path)
    split = load_split(data, args.split)
    result = evaluate_split(head, split, batch_size=args.batch_size or cfg.eval_batch_size or cfg.global_batch_size,
                            device=device, max_examples=args.max_examples)
    if args.json:
        keep = {k: result[k] for k in ("task", "summary", "baselines")}
        print(json.dumps({"checkpoint": str(path), "step": step, "data": str(data), "split": args.split, **keep,
                          **keep["summary"]}))
    else:
        from hrmkit.eval.baselines import format_summary

        print(format_summary(result["metrics"], result["baseline_metrics"],
                             title=f"{path} (step {step}) on {data} [{args.split}]"))
        print(f"mean ACT steps {result['summary']['mean_steps']}; mean step at which the halting rule said stop "
              f"{result['summary']['mean_halt_step']:.2f}")
    return 0
