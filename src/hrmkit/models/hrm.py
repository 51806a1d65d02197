"""HRM ACT v1: the Hierarchical Reasoning Model's inner network (docs/design.md §3; arXiv 2506.21734).

Two recurrent modules, H (slow, H_layers blocks) and L (fast, L_layers blocks). One ACT segment runs
H_cycles x L_cycles L-updates and H_cycles H-updates; all but the last L and H update run without gradient
("1-step gradient" approximation). Same math and state-dict names as the reference
`models/hrm/hrm_act_v1.py` (`HierarchicalReasoningModel_ACTV1_Inner`).
"""

from __future__ import annotations

import torch

from hrmkit.config import ArchConfig
from hrmkit.models.act import InnerBase
from hrmkit.models.layers import Block, ReasoningModule
from hrmkit.models.puzzle_embedding import puzzle_prefix_len


def _blocks(arch: ArchConfig, n: int) -> list[Block]:
    return [Block(arch.hidden_size, arch.num_heads, arch.expansion, arch.rms_norm_eps) for _ in range(n)]


class HRMInner(InnerBase):
    """HRM network: `H_level`, `L_level` (ReasoningModule), plus the I/O of `InnerBase`.

    Puzzle tokens: ceil(puzzle_emb_ndim / hidden_size). forward(carry, batch) -> (new carry (detached),
    logits [B, seq_len, vocab], (q_halt [B], q_continue [B]) float32). L is updated with injection z_H + x,
    H with injection z_L.
    """

    def __init__(self, arch: ArchConfig, seq_len: int, vocab_size: int, num_puzzle_identifiers: int):
        puzzle_len = puzzle_prefix_len(arch)
        super().__init__(arch, seq_len, vocab_size, num_puzzle_identifiers, puzzle_len)
        self.H_level = ReasoningModule(_blocks(arch, arch.H_layers))
        self.L_level = ReasoningModule(_blocks(arch, arch.L_layers))
        self._init_states()

    def recur(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cs) -> tuple[torch.Tensor, torch.Tensor]:
        """H_cycles x L_cycles L-updates (injection z_H + x) and H_cycles H-updates (injection z_L)."""
        H, L = self.arch.H_cycles, self.arch.L_cycles
        with torch.no_grad():
            for h in range(H):
                for l in range(L):
                    if not (h == H - 1 and l == L - 1):
                        z_L = self.L_level(z_L, z_H + x, cs)
                if h != H - 1:
                    z_H = self.H_level(z_H, z_L, cs)
        # 1-step gradient: only the last L and H updates are differentiated.
        z_L = self.L_level(z_L, z_H + x, cs)
        z_H = self.H_level(z_H, z_L, cs)
        return z_H, z_L
