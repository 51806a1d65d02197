"""Knowledge distillation per ACT segment: `DistillLoss`, a segment loss for `train(..., segment_loss=...)`
(train/step.py), and `half_width`, the default student's architecture. `hrm distill` (deploy/distill_cli.py) runs it.

The frozen teacher runs beside the student on the same batches with its own ACT carry, moved in step with the
student's: rows the student resets (halted -> a new puzzle) are reset in the teacher's carry too, so the
teacher always sees the same puzzle at the same segment index as the student, and its logits and Q-halt logit
at that segment are the student's targets (Hinton et al. 2015, arXiv 1503.02531: KL at a temperature T,
scaled by T^2, mixed with the hard-label loss). The teacher's carry is part of the checkpoint (`state_dict`),
so a resumed run continues bitwise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hrmkit.config import ArchConfig, DistillConfig
from hrmkit.data.format import IGNORE_LABEL_ID
from hrmkit.errors import HrmkitError
from hrmkit.models import carry_from_state, carry_to_state
from hrmkit.models.layers import at_least_float32
from hrmkit.models.losses import log_stablemax


def log_probs(logits: torch.Tensor, loss_type: str, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities [..., V] of logits [..., V] / `temperature` under the model's own output
    distribution: stablemax in float64 (float32 on MPS, as `stablemax_cross_entropy`) or softmax in float32
    (float64 for float64 logits; `softmax_cross_entropy`)."""
    if loss_type == "stablemax_cross_entropy":
        dtype = torch.float32 if logits.device.type == "mps" else torch.float64
        return log_stablemax(logits.to(dtype) / temperature, dim=-1)
    return F.log_softmax(at_least_float32(logits) / temperature, dim=-1)


class DistillLoss:
    """The distillation segment loss (module docstring). Call as `(student, carry, batch) -> (new carry, loss
    summed over rows, metrics summed over rows)` like `train.step.act_loss`.

    teacher: an ACTLossHead (frozen: run in eval mode without gradients), on any device (moved to the batch's).
    Per segment (alpha and T from `cfg`; CE, BCE(q_halt, answer right) and the Q-continue loss are the
    student's hard-label terms, `ACTLossHead.loss_terms`):
        loss = (1 - alpha) * CE + alpha * T^2 * KL(p_teacher(z_t / T) || p_student(z_s / T))
               + 0.5 * ((1 - alpha) * BCE(q_halt, answer right) + alpha * BCE(q_halt, sigmoid(teacher q_halt))
                        + Q-continue loss)
    KL is summed over each row's labelled tokens and divided by their count, as the CE; p is each model's own
    output distribution (stablemax or softmax, `arch.loss.loss_type`). The Q-halt target mixes in the teacher's
    only when `cfg.halting` and both models run the same halt_max_steps (`self.halting`); otherwise the Q-halt
    loss is the hard one alone. Metrics are `loss_terms`' (lm_loss etc. are the hard-label terms) plus
    `distill_kl` (T^2 * KL, summed over rows). The student runs eagerly (a torch.compile wrapper is bypassed).
    """

    def __init__(self, teacher: torch.nn.Module, cfg: DistillConfig, student_halt_max_steps: int):
        self.teacher = teacher.eval()
        self.temperature, self.alpha = cfg.temperature, cfg.alpha
        self.halting = cfg.halting and student_halt_max_steps == teacher.model.halt_max_steps
        self.carry: Any = None  # the teacher's ACT carry

    def __call__(self, model: torch.nn.Module, carry: Any, batch: dict[str, torch.Tensor]):
        student = getattr(model, "_orig_mod", model)  # the ACTLossHead under a torch.compile wrapper
        t_out = self.teacher_segment(carry.halted, batch)
        new_carry, out = student.model(carry, batch)
        terms, metrics, _ = student.loss_terms(new_carry, out)
        labels = new_carry.current_data["labels"]
        mask = labels != IGNORE_LABEL_ID
        T, a = self.temperature, self.alpha
        log_t = log_probs(t_out["logits"], self.teacher.loss_type, T)
        log_s = log_probs(out["logits"], student.loss_type, T).to(log_t.dtype)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # [B, S]
        kl = (torch.where(mask, kl, 0).sum(-1) / mask.sum(-1).clamp_min(1)).sum() * T * T
        q_halt = terms["q_halt_loss"]
        if self.halting:
            soft = F.binary_cross_entropy_with_logits(out["q_halt_logits"], torch.sigmoid(
                t_out["q_halt_logits"].to(out["q_halt_logits"].dtype)), reduction="sum")
            q_halt = (1 - a) * q_halt + a * soft
        loss = (1 - a) * terms["lm_loss"] + a * kl + 0.5 * (q_halt + terms.get("q_continue_loss", 0))
        metrics["distill_kl"] = kl.detach()
        return new_carry, loss, metrics

    @torch.no_grad()
    def teacher_segment(self, reset: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One teacher segment on `batch`: rows where `reset` (bool [B], the student's carry's `halted` before
        its segment) start over on the batch's row, the others continue. Returns the teacher ACT model's
        outputs (`logits` [B, S, V], `q_halt_logits` [B], ...)."""
        device = batch["inputs"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        if self.carry is None or self.carry.halted.shape != reset.shape:
            self.carry = self.teacher.initial_carry(batch)
        elif self.carry.halted.device != device:
            self.carry = carry_from_state({k: v.to(device) for k, v in carry_to_state(self.carry).items()})
        self.carry.halted = reset.clone()  # the student's resets, not the teacher's own halting rule
        self.carry, out = self.teacher.model(self.carry, batch)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The teacher's carry (CPU tensors, `models.carry_to_state`), None before the first segment."""
        return {"carry": {k: v.cpu() for k, v in carry_to_state(self.carry).items()} if self.carry is not None
                else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (moved to the batches' device at the next segment)."""
        self.carry = carry_from_state(state["carry"]) if state.get("carry") else None


def half_width(arch: ArchConfig) -> dict:
    """The default student of a teacher with architecture `arch` (an `arch` config dict): hidden_size halved,
    num_heads chosen so that the head size stays valid (halved heads keep the teacher's head size when they
    divide the new width; else the most heads <= the teacher's that divide it with an even head size under
    rope), puzzle_emb_ndim halved when it equals the teacher's width (the references tie them) or, for TRM, when
    it no longer fits its puzzle_emb_len prefix tokens of the new width, everything else the teacher's. Raises HrmkitError when no head count fits (then set arch.hidden_size and arch.num_heads)."""
    width = arch.hidden_size // 2
    heads = ([arch.num_heads // 2] if arch.num_heads % 2 == 0 else []) + list(range(arch.num_heads, 0, -1))
    fits = [h for h in heads if width and width % h == 0 and (arch.pos_encodings != "rope" or (width // h) % 2 == 0)]
    if not fits:
        raise HrmkitError(f"no default student for a teacher with arch.hidden_size={arch.hidden_size}: half of it "
                          f"({width}) fits no head count; set arch.hidden_size and arch.num_heads")
    out = arch.model_dump()
    out.update(hidden_size=width, num_heads=fits[0])
    if arch.puzzle_emb_ndim == arch.hidden_size:
        out["puzzle_emb_ndim"] = width
    elif arch.name == "trm" and arch.puzzle_emb_len and arch.puzzle_emb_ndim > arch.puzzle_emb_len * width:
        # TRM holds the embedding in puzzle_emb_len prefix tokens of the (halved) width: halve it with them
        out["puzzle_emb_ndim"] = min(-(-arch.puzzle_emb_ndim // 2), arch.puzzle_emb_len * width)
    return out
