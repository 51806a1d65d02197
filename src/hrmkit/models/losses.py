"""Losses and the ACT loss head (docs/design.md §3; reference `models/losses.py`).

Loss per segment (SUM over rows, as the reference): lm_loss = sum_rows mean_over_labelled_tokens CE;
q_halt_loss = BCE(q_halt, row exactly correct); q_continue_loss = BCE(q_continue, target_q_continue) when the
model provides a target; total = lm_loss + 0.5 * (q_halt_loss + q_continue_loss). Divide by the (global)
batch size before backward.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hrmkit.data.format import IGNORE_LABEL_ID
from hrmkit.models.layers import at_least_float32


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(s(x) / sum s(x)) with s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0 (stablemax)."""
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID,
                            label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-token stablemax cross entropy, float64 (float32 on MPS), 0 at ignored labels. logits [..., V], labels [...].

    With label_smoothing eps: (1 - eps) * CE + eps * mean over the vocabulary of -log p (as F.cross_entropy).
    """
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    logp = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != ignore_index
    idx = torch.where(valid, labels, 0).to(torch.long).unsqueeze(-1)
    nll = -torch.gather(logp, -1, idx).squeeze(-1)
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1)
    return torch.where(valid, nll, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID,
                          label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-token softmax cross entropy in float32 (float64 for float64 logits), 0 at ignored labels.
    logits [..., V], labels [...]."""
    flat = F.cross_entropy(
        at_least_float32(logits).reshape(-1, logits.shape[-1]), labels.to(torch.long).reshape(-1),
        ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing,
    )
    return flat.view(labels.shape)


LOSS_FUNCTIONS = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


class ACTLossHead(nn.Module):
    """Loss head around an ACT model (attribute `model`, whose `inner` is the network).

    forward(carry, batch, return_keys=()) -> (new_carry, loss, metrics, outputs, all_finished):
      loss: scalar (float64 with stablemax), summed over rows; metrics: summed over halted rows with >= 1 label:
      count, accuracy (token accuracy per row), exact_accuracy, q_halt_accuracy ((q_halt >= 0) == exact),
      steps, plus lm_loss, q_halt_loss, q_continue_loss (when trained) over all rows; outputs (detached):
      logits [B,S,V], q_halt_logits [B], q_continue_logits [B], target_q_continue [B] (when present),
      preds [B,S] int64 argmax, and any name in `return_keys` found in the outputs or the carry's current
      data; all_finished: bool tensor, every row halted.
    Batch: inputs int32 [B,S], labels int32 [B,S] (-100 ignored), puzzle_identifiers int32 [B].
    label_smoothing (training only; the reference has none): the LM loss per token becomes
    (1 - eps) * CE + eps * mean_v(-log p_v) with the loss type's log-probabilities.
    """

    def __init__(self, model: nn.Module, loss_type: str = "stablemax_cross_entropy", label_smoothing: float = 0.0):
        super().__init__()
        if loss_type not in LOSS_FUNCTIONS:
            raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {sorted(LOSS_FUNCTIONS)}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.model = model
        self.loss_type = loss_type
        self.loss_fn = LOSS_FUNCTIONS[loss_type]
        self.label_smoothing = label_smoothing

    def initial_carry(self, batch: dict[str, torch.Tensor]):
        """A carry with every row halted, so the first call loads the batch."""
        return self.model.initial_carry(batch)

    def forward(self, carry, batch: dict[str, torch.Tensor], return_keys: Sequence[str] = ()):
        new_carry, out = self.model(carry, batch)
        terms, metrics, preds = self.loss_terms(new_carry, out)
        loss = terms["lm_loss"] + 0.5 * (terms["q_halt_loss"] + terms.get("q_continue_loss", 0))
        outputs = {k: v.detach() for k, v in out.items()}
        outputs["preds"] = preds
        for k in return_keys:
            if k not in outputs and k in new_carry.current_data:
                outputs[k] = new_carry.current_data[k]
        return new_carry, loss, metrics, outputs, new_carry.halted.all()

    def loss_terms(self, new_carry, out: dict[str, torch.Tensor]):
        """The parts of one segment's loss, for objectives that mix in other targets (train/distill_loss.py):
        (terms, metrics, preds). terms: differentiable sums over rows of `lm_loss`, `q_halt_loss` and, when the
        model gives a Q-continue target, `q_continue_loss` (the loss is lm + 0.5 * (q_halt + q_continue));
        metrics: as `forward`'s, with the terms detached; preds: int64 [B, S] argmax of the logits.
        `new_carry`, `out`: what `self.model(carry, batch)` returned."""
        labels = new_carry.current_data["labels"]
        with torch.no_grad():
            preds = torch.argmax(out["logits"], dim=-1)
            mask = labels != IGNORE_LABEL_ID
            counts = mask.sum(-1)
            divisor = counts.clamp_min(1).unsqueeze(-1)
            correct = mask & (preds == labels)
            seq_correct = correct.sum(-1) == counts
            valid = new_carry.halted & (counts > 0)
            metrics = {
                "count": valid.sum(),
                "accuracy": torch.where(valid, (correct.to(torch.float32) / divisor).sum(-1), 0).sum(),
                "exact_accuracy": (valid & seq_correct).sum(),
                "q_halt_accuracy": (valid & ((out["q_halt_logits"] >= 0) == seq_correct)).sum(),
                "steps": torch.where(valid, new_carry.steps, 0).sum(),
            }

        eps = self.label_smoothing if self.training else 0.0
        q_halt = out["q_halt_logits"]
        terms = {
            "lm_loss": (self.loss_fn(out["logits"], labels, ignore_index=IGNORE_LABEL_ID, label_smoothing=eps)
                        / divisor).sum(),
            "q_halt_loss": F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype), reduction="sum"),
        }
        if "target_q_continue" in out:
            terms["q_continue_loss"] = F.binary_cross_entropy_with_logits(out["q_continue_logits"],
                                                                          out["target_q_continue"], reduction="sum")
        metrics.update({k: v.detach() for k, v in terms.items()})
        return terms, metrics, preds
