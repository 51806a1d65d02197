"""Divergence guards: skip non-finite steps, roll back after too many in a row (config `guards.*`).

A step is *bad* when its loss or any gradient (ordinary or puzzle-embedding) is NaN/Inf. A bad step makes no
optimizer step and no EMA update, but it still counts as a global step (the sampler and the schedule move on,
as with AMP's skipped steps). The ACT carry advances as usual (its rows consumed their data); rows whose
recurrent state became non-finite are marked halted, so the next step restarts them from H_init/L_init with
new data (`sanitize_carry`). After `max_bad_steps` consecutive bad steps, or at once when the weights
themselves became non-finite (checked after every optimizer step, `weights_norm`), the loop reloads its newest
*healthy* checkpoint (written with no bad streak open and finite weights; train/checkpoint.py) and multiplies
the learning rates by `rollback_lr_factor` (`lr_scale`, saved in later checkpoints); more than `max_rollbacks`
rollbacks stop the run as crashed (`RunCrashed`, exit code 3).
"""

from __future__ import annotations

from typing import Any

import torch

from hrmkit.config import GuardsConfig
from hrmkit.errors import RunCrashed


class StepGuard:
    """Counters of bad steps and the rollback decision. `record(bad)` returns "ok", "skip" or "rollback"."""

    def __init__(self, cfg: GuardsConfig):
        self.cfg = cfg
        self.total_bad = 0  # bad steps over the whole run
        self.consecutive = 0
        self.rollbacks = 0
        self.lr_scale = 1.0

    def record(self, bad: bool, weights_bad: bool = False) -> str:
        """Count a step; `weights_bad` (non-finite weights) asks for a rollback at once."""
        if weights_bad:
            self.total_bad += 1
            self.consecutive += 1
            return "rollback"
        if not bad:
            self.consecutive = 0
            return "ok"
        self.total_bad += 1
        self.consecutive += 1
        return "rollback" if self.consecutive >= self.cfg.max_bad_steps else "skip"

    def rolled_back(self) -> None:
        """Call after reloading the checkpoint: scales the learning rate. Raises RunCrashed past max_rollbacks."""
        self.rollbacks += 1
        self.consecutive = 0
        if self.rollbacks > self.cfg.max_rollbacks:
            raise RunCrashed(f"training diverged: {self.rollbacks} rollbacks after non-finite steps "
                             f"(guards.max_rollbacks={self.cfg.max_rollbacks}); lower lr or set grad_clip_norm")
        self.lr_scale *= self.cfg.rollback_lr_factor

    def state_dict(self) -> dict[str, Any]:
        return {"total_bad": self.total_bad, "consecutive": self.consecutive, "rollbacks": self.rollbacks,
                "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total_bad = int(state.get("total_bad", 0))
        self.consecutive = int(state.get("consecutive", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))


def sanitize_carry(carry) -> int:
    """Mark as halted every row of an ACT carry whose z_H or z_L is non-finite; returns how many."""
    z = carry.inner_carry
    dims = tuple(range(1, z.z_H.ndim))
    bad = ~(torch.isfinite(z.z_H).all(dim=dims) & torch.isfinite(z.z_L).all(dim=dims))
    n = int(bad.sum())
    if n:
        carry.halted = carry.halted | bad
    return n


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all gradients together (a 0-d tensor on their device; NaN/Inf when any entry is)."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))


def weights_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the L2 norms of `params` (a 0-d tensor on their device, no host sync): finite exactly when every
    weight is. One fused kernel per device and dtype (torch._foreach_norm), cheap enough for every step."""
    if not params:
        return torch.zeros(())
    return torch.stack([n.float() for n in torch._foreach_norm([p.detach() for p in params])]).sum()


def clip_(grads: list[torch.Tensor], max_norm: float, norm: torch.Tensor) -> None:
    """Scale `grads` in place so their total norm `norm` is at most `max_norm` (torch's clip_grad_norm_ rule)."""
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
