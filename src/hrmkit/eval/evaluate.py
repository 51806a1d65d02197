"""Run a model over a dataset split and collect its per-example predictions (reference evaluation semantics).

Evaluation mode runs every row for exactly `halt_max_steps` ACT segments (sapientinc/HRM `evaluate`); the
predictions are the argmax of the last segment's logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hrmkit.data.format import SplitData
from hrmkit.data.sampler import test_batches


@dataclass
class Predictions:
    """Per-example results of one pass over a split (N = examples evaluated, S = seq_len).

    inputs, labels, preds: int64 [N, S] (labels use -100 for ignored cells); puzzle_identifiers: int64 [N];
    q_halt: float32 [N] (last segment's q_halt logit); steps: int64 [N] (segments run);
    halt_step: int64 [N] (first segment whose halting rule said stop: q_halt > q_continue, or q_halt > 0
    without a q_continue head; halt_max_steps when it never did) — the adaptive compute the model asks for.
    """

    inputs: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    puzzle_identifiers: np.ndarray
    q_halt: np.ndarray
    steps: np.ndarray
    halt_step: np.ndarray


@torch.no_grad()
def predict_split(head: torch.nn.Module, split: SplitData, batch_size: int, device: torch.device | str = "cpu",
                  max_examples: int | None = None) -> Predictions:
    """Predict every example of `split` (the first `max_examples` when given) in evaluation mode.

    The model is put in eval mode and left there; the caller switches back to training.
    """
    head.eval()
    device = torch.device(device)
    out: dict[str, list[np.ndarray]] = {k: [] for k in Predictions.__dataclass_fields__}
    seen = 0
    for batch, n_valid in test_batches(split, batch_size):
        if max_examples is not None and seen >= max_examples:
            break
        n = n_valid if max_examples is None else min(n_valid, max_examples - seen)
        batch = {k: v.to(device) for k, v in batch.items()}
        carry = head.initial_carry(batch)
        segments = 0
        halt_step = torch.zeros(batch["inputs"].shape[0], dtype=torch.long, device=device)
        while True:
            carry, _, _, outputs, all_finished = head(carry, batch)
            segments += 1
            q_halt = outputs["q_halt_logits"].float()
            q_cont = outputs.get("q_continue_logits")
            wants_halt = q_halt > (q_cont.float() if q_cont is not None else 0.0)
            halt_step = torch.where((halt_step == 0) & wants_halt, segments, halt_step)
            if bool(all_finished):
                break
        halt_step = torch.where(halt_step == 0, segments, halt_step)
        out["inputs"].append(batch["inputs"][:n].long().cpu().numpy())
        out["labels"].append(batch["labels"][:n].long().cpu().numpy())
        out["preds"].append(outputs["preds"][:n].long().cpu().numpy())
        out["puzzle_identifiers"].append(batch["puzzle_identifiers"][:n].long().cpu().numpy())
        out["q_halt"].append(q_halt[:n].cpu().numpy())
        out["steps"].append(np.full(n, segments, dtype=np.int64))
        out["halt_step"].append(halt_step[:n].cpu().numpy())
        seen += n
    return Predictions(**{k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()})


def _flat(metrics: dict) -> dict:
    o = metrics["overall"]
    return {"exact_accuracy": o["exact_accuracy"], "token_accuracy": o["token_accuracy"],
            "num_examples": o["n_examples"], "num_cells": o["n_cells"], "q_halt_accuracy": o["q_halt_accuracy"],
            "mean_steps": o["mean_steps"], "steps_histogram": o["steps_histogram"]}


def evaluate_split(head: torch.nn.Module, split: SplitData, batch_size: int, device: torch.device | str = "cpu",
                   max_examples: int | None = None) -> dict:
    """Predict `split` and score it next to the trivial baselines on the same examples.

    Returns a dict: `task`; `summary` (JSON-ready: exact_accuracy, token_accuracy over the cells to fill,
    num_examples, num_cells, q_halt_accuracy, mean_steps, steps_histogram, mean_halt_step); `baselines`
    ({"copy_input": ..., "most_common_token": ...} with exact_accuracy, token_accuracy, num_examples);
    `metrics` and `baseline_metrics` (the full `compute_metrics` results); `predictions` (Predictions).
    """
    from hrmkit.eval.baselines import compute_baselines
    from hrmkit.eval.metrics import compute_metrics

    task = split.metadata.task or "generic"
    p = predict_split(head, split, batch_size, device, max_examples)
    metrics = compute_metrics(p.inputs, p.labels, p.preds, q_halt=p.q_halt, steps=p.steps, task=task)
    summary = _flat(metrics)
    summary["mean_halt_step"] = float(p.halt_step.mean()) if len(p.halt_step) else None
    baseline_metrics = compute_baselines(p.inputs, p.labels, task=task)
    baselines = {name.replace("-", "_"): {k: _flat(m)[k] for k in ("exact_accuracy", "token_accuracy", "num_examples")}
                 for name, m in baseline_metrics.items()}
    return {"task": task, "summary": summary, "baselines": baselines, "metrics": metrics,
            "baseline_metrics": baseline_metrics, "predictions": p}
