"""TRM: the Tiny Recursive Model's inner network (docs/design.md §4; arXiv 2510.04871).

One network `L_level` (L_layers blocks; H_layers is unused) updates both the latent z (kept in z_L) and the
answer y (kept in z_H): a cycle is L_cycles updates z = net(z, y + x) then y = net(y, z). H_cycles - 1 cycles
run without gradient, the last one with full backpropagation. `puzzle_emb_len` prefix tokens hold the
(zero-padded) puzzle embedding; `mlp_t` replaces attention by a SwiGLU across the sequence axis. Same math
and state-dict names as the reference `models/recursive_reasoning/trm.py`.
"""

from __future__ import annotations

import torch

from hrmkit.config import ArchConfig
from hrmkit.models.act import InnerBase
from hrmkit.models.layers import Block, ReasoningModule
from hrmkit.models.puzzle_embedding import puzzle_prefix_len


class TRMInner(InnerBase):
    """TRM network: `L_level` plus the I/O of `InnerBase`.

    forward(carry, batch) -> (new carry (detached), logits [B, seq_len, vocab], (q_halt, q_continue) float32 [B]).
    Raises ValueError if the puzzle embedding does not fit in puzzle_emb_len tokens.
    """

    def __init__(self, arch: ArchConfig, seq_len: int, vocab_size: int, num_puzzle_identifiers: int):
        puzzle_len = puzzle_prefix_len(arch)
        if arch.puzzle_emb_ndim > puzzle_len * arch.hidden_size:
            raise ValueError(f"puzzle_emb_ndim {arch.puzzle_emb_ndim} > puzzle_emb_len {puzzle_len} x hidden_size")
        super().__init__(arch, seq_len, vocab_size, num_puzzle_identifiers, puzzle_len)
        tokens = seq_len + puzzle_len if arch.mlp_t else None
        self.L_level = ReasoningModule(
            [Block(arch.hidden_size, arch.num_heads, arch.expansion, arch.rms_norm_eps, tokens) for _ in range(arch.L_layers)]
        )
        self._init_states()

    def recur(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cs) -> tuple[torch.Tensor, torch.Tensor]:
        """H_cycles cycles of (L_cycles updates z = net(z, y + x), then y = net(y, z)), the last with gradient."""
        y, z = z_H, z_L
        with torch.no_grad():
            for _ in range(self.arch.H_cycles - 1):
                for _ in range(self.arch.L_cycles):
                    z = self.L_level(z, y + x, cs)
                y = self.L_level(y, z, cs)
        for _ in range(self.arch.L_cycles):
            z = self.L_level(z, y + x, cs)
        y = self.L_level(y, z, cs)
        return y, z
