"""Transformer baseline: the HRM blocks stacked without recursion (the ARC Prize ablation of HRM).

`L_level` holds H_layers + L_layers blocks (8 for the hrm-paper shape, so the parameter count matches HRM).
One ACT segment is one full-gradient pass z_H = blocks(z_H + x) from the carry (H_init when reset); with
halt_max_steps 1 (the preset) it is a plain non-causal transformer with a q_head kept for the same outputs.
"""

from __future__ import annotations

import torch

from hrmkit.config import ArchConfig
from hrmkit.models.act import InnerBase
from hrmkit.models.layers import Block, ReasoningModule
from hrmkit.models.puzzle_embedding import puzzle_prefix_len


class TransformerInner(InnerBase):
    """forward(carry, batch) -> (new carry (detached), logits [B, seq_len, vocab], (q_halt, q_continue) float32 [B])."""

    def __init__(self, arch: ArchConfig, seq_len: int, vocab_size: int, num_puzzle_identifiers: int):
        puzzle_len = puzzle_prefix_len(arch)
        super().__init__(arch, seq_len, vocab_size, num_puzzle_identifiers, puzzle_len)
        n = arch.H_layers + arch.L_layers
        self.L_level = ReasoningModule(
            [Block(arch.hidden_size, arch.num_heads, arch.expansion, arch.rms_norm_eps) for _ in range(n)]
        )
        self._init_states()

    def recur(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cs) -> tuple[torch.Tensor, torch.Tensor]:
        """One full-gradient pass z_H = blocks(z_H + x); z_L is carried unchanged."""
        return self.L_level(z_H, x, cs), z_L
