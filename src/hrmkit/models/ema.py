"""Exponential moving average of the weights (TRM evaluates and saves with EMA weights, rate 0.999)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    """EMA of a module's floating-point parameters: shadow = rate * shadow + (1 - rate) * param.

    Buffers (the puzzle table, H_init/L_init) are not averaged: evaluation uses the live ones, as the TRM
    reference's EMA helper does. `update()` after each optimizer step; `swapped()` is a context manager that
    puts the EMA weights into the module and restores the trained weights on exit. Shadow tensors are float32
    on the parameters' device.
    """

    def __init__(self, module: nn.Module, rate: float = 0.999):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"EMA rate must be in [0, 1], got {rate}")
        self.module, self.rate = module, rate
        self.shadow = {n: p.detach().clone().float() for n, p in self._params()}

    def _params(self):
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad and p.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        for n, p in self._params():
            s = self.shadow[n]
            if s.device != p.device:
                s = self.shadow[n] = s.to(p.device)
            s.lerp_(p.detach().float(), 1.0 - self.rate)

    def state_dict(self) -> dict:
        return {"rate": self.rate, "shadow": {n: t.clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)}")
        self.rate = float(state["rate"])
        for n in self.shadow:
            self.shadow[n] = state["shadow"][n].detach().clone().float().to(self.shadow[n].device)

    @torch.no_grad()
    def copy_to(self, module: nn.Module | None = None) -> None:
        """Write the EMA weights into `module` (default: the tracked module)."""
        params = dict((module or self.module).named_parameters())
        for n, s in self.shadow.items():
            params[n].copy_(s)

    @contextlib.contextmanager
    def swapped(self):
        """`with ema.swapped(): evaluate(model)` runs with the EMA weights, then restores the trained ones."""
        backup = {n: p.detach().clone() for n, p in self._params()}
        self.copy_to()
        try:
            yield self.module
        finally:
            with torch.no_grad():
                for n, p in self._params():
                    p.copy_(backup[n])
