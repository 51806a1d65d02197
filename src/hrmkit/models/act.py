"""Adaptive computation time (ACT) shared by HRM, TRM and the baseline (docs/design.md §3, §4).

An ACT *segment* is one call of the inner network on a carry (z_H, z_L). The wrapper `ACTModel` keeps, per
batch row, the number of segments run (`steps`), whether the row has halted, and the row's data
(`current_data`). Halted rows are reset (state := H_init/L_init, steps := 0, data := the new batch row) at the
start of the next call. Same behaviour as the references' `HierarchicalReasoningModel_ACTV1` /
`TinyRecursiveReasoningModel_ACTV1` wrappers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrmkit.config import ArchConfig
from hrmkit.halting import halting_decisions
from hrmkit.models.layers import (CastedEmbedding, CastedLinear, RotaryEmbedding, at_least_float32, resolve_dtype,
                                  trunc_normal_init_)
from hrmkit.models.puzzle_embedding import PuzzleEmbedding


@dataclass
class InnerCarry:
    """Recurrent state: z_H, z_L [B, puzzle_tokens + seq_len, D] in the computation dtype (TRM: z_H = y, z_L = z)."""

    z_H: torch.Tensor
    z_L: torch.Tensor


@dataclass
class Carry:
    """ACT carry: inner state, `steps` int32 [B], `halted` bool [B], `current_data` (the batch rows in use)."""

    inner_carry: InnerCarry
    steps: torch.Tensor
    halted: torch.Tensor
    current_data: dict[str, torch.Tensor]


def carry_to_state(carry: Carry) -> dict[str, torch.Tensor]:
    """Flatten a carry into plain tensors (for checkpoints): keys z_H, z_L, steps, halted, data.<name>."""
    d = {"z_H": carry.inner_carry.z_H, "z_L": carry.inner_carry.z_L, "steps": carry.steps, "halted": carry.halted}
    d.update({f"data.{k}": v for k, v in carry.current_data.items()})
    return d


def carry_from_state(d: dict[str, torch.Tensor]) -> Carry:
    """Inverse of `carry_to_state`. Raises KeyError if a required key is missing."""
    data = {k[len("data.") :]: v for k, v in d.items() if k.startswith("data.")}
    return Carry(InnerCarry(d["z_H"], d["z_L"]), d["steps"], d["halted"], data)


class InnerBase(nn.Module):
    """Input/output parts common to the inner networks (reference names kept for state-dict compatibility).

    `embed_tokens` (std 1/sqrt(D)), `lm_head`, `q_head` (zero weight, bias -5), `puzzle_emb` (if
    puzzle_emb_ndim > 0), `rotary_emb` (rope) or `embed_pos` (learned positions), `H_init`/`L_init` (float32
    buffers, truncated normal std 1; call `_init_states()` after building the levels, as the reference does).

    `forward(carry, batch) -> (new carry (detached), logits [B, S, V], (q_halt [B], q_continue [B]))` embeds the
    inputs, then runs one segment: the subclass's `recur(z_H, z_L, x, cos_sin) -> (z_H, z_L)` and the heads.
    `compile_segment()` compiles that segment (recursion and heads, no-gradient cycles included) into one graph.
    """

    def __init__(self, arch: ArchConfig, seq_len: int, vocab_size: int, num_puzzle_identifiers: int, puzzle_len: int):
        super().__init__()
        self.arch, self.seq_len, self.puzzle_len = arch, seq_len, puzzle_len
        D = arch.hidden_size
        if D % arch.num_heads:
            raise ValueError(f"hidden_size {D} is not divisible by num_heads {arch.num_heads}")
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = CastedEmbedding(vocab_size, D, init_std=1.0 / self.embed_scale)
        self.lm_head = CastedLinear(D, vocab_size, bias=False)
        self.q_head = CastedLinear(D, 2, bias=True)
        if arch.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(num_puzzle_identifiers, arch.puzzle_emb_ndim)
        if arch.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(D // arch.num_heads, seq_len + puzzle_len, arch.rope_theta)
        elif arch.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(seq_len + puzzle_len, D, init_std=1.0 / self.embed_scale)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def _init_states(self) -> None:
        D = self.arch.hidden_size
        self.register_buffer("H_init", trunc_normal_init_(torch.empty(D), std=1.0), persistent=True)
        self.register_buffer("L_init", trunc_normal_init_(torch.empty(D), std=1.0), persistent=True)

    @property
    def compute_dtype(self) -> torch.dtype:
        return resolve_dtype(self.arch.forward_dtype, self.embed_tokens.embedding_weight.device)

    def cos_sin(self):
        return self.rotary_emb() if hasattr(self, "rotary_emb") else None

    def input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x = sqrt(D) * [puzzle tokens (zero-padded to puzzle_len*D), token embeddings] ([B, P+S, D]); with
        learned positions x = sqrt(D) * 0.707106781 * (emb + pos)."""
        D = self.arch.hidden_size
        emb = self.embed_tokens(inputs.to(torch.int32), dtype)
        if self.puzzle_len > 0:
            if hasattr(self, "puzzle_emb"):
                pe = self.puzzle_emb(puzzle_identifiers, dtype)
            else:
                pe = emb.new_zeros(emb.shape[0], 0)
            pad = self.puzzle_len * D - pe.shape[-1]
            if pad > 0:
                pe = F.pad(pe, (0, pad))
            emb = torch.cat((pe.view(-1, self.puzzle_len, D), emb), dim=-2)
        if self.arch.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos.embedding_weight.to(dtype))
        return self.embed_scale * emb

    def empty_carry(self, batch_size: int, device) -> InnerCarry:
        shape = (batch_size, self.seq_len + self.puzzle_len, self.arch.hidden_size)
        dtype = self.compute_dtype
        return InnerCarry(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    def reset_carry(self, reset: torch.Tensor, carry: InnerCarry) -> InnerCarry:
        flag = reset.view(-1, 1, 1)
        return InnerCarry(
            torch.where(flag, self.H_init.to(carry.z_H.dtype), carry.z_H),
            torch.where(flag, self.L_init.to(carry.z_L.dtype), carry.z_L),
        )

    def output_heads(self, z_H: torch.Tensor):
        """logits [B, S, V] (computation dtype, puzzle tokens dropped) and float32 (q_halt, q_continue) [B]
        (float64 for float64 activations)."""
        logits = self.lm_head(z_H[:, self.puzzle_len :])
        q = at_least_float32(self.q_head(z_H[:, 0]))
        return logits, (q[..., 0], q[..., 1])

    def recur(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cos_sin) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment's recursion on the carry (z_H, z_L) with input embeddings x, all [B, P+S, D]."""
        raise NotImplementedError

    def forward(self, carry: InnerCarry, batch: dict[str, torch.Tensor]):
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"], self.compute_dtype)
        segment = self.__dict__.get("_compiled_segment") or self._segment
        z_H, z_L, logits, q_halt, q_continue = segment(carry.z_H, carry.z_L, x)
        return InnerCarry(z_H, z_L), logits, (q_halt, q_continue)

    def _segment(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor):
        z_H, z_L = self.recur(z_H, z_L, x, self.cos_sin())
        logits, (q_halt, q_continue) = self.output_heads(z_H)
        return z_H.detach(), z_L.detach(), logits, q_halt, q_continue

    def compile_segment(self, **options) -> None:
        """Compile the segment (`recur` and the heads; the input embedding and the puzzle table stay eager) with
        `torch.compile(fullgraph=True, dynamic=False, **options)`: one graph per segment, a graph break raises.
        Each grad mode (the training segment, the no-grad Q-target segment, evaluation) and batch shape
        compiles once on first use. Copies of the module (`copy.deepcopy`, pickling) run eagerly.

        Raises torch dynamo's per-function recompile limit (process-wide) to at least 64: every model instance
        shares `_segment`'s code object, and each instance, grad mode and batch shape is one compiled entry."""
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
        self._compiled_segment = torch.compile(self._segment, fullgraph=True, dynamic=False, **options)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_compiled_segment", None)  # a compiled function does not copy; copies run eagerly
        return state


class ACTModel(nn.Module):
    """ACT wrapper around an inner network (attribute `inner`).

    forward(carry, batch) -> (new_carry, outputs) with outputs `logits`, `q_halt_logits`, `q_continue_logits`
    and, in training with Q-continue learning, `target_q_continue`. Halting: `steps >= halt_max_steps`; in
    training (halt_max_steps > 1) also q_halt > q_continue (HRM) or q_halt > 0 (TRM `no_ACT_continue`), and with
    probability halt_exploration_prob a row draws a minimum step count uniform in [2, halt_max_steps]. The Q
    target is sigmoid(is_last ? q_halt' : max(q_halt', q_continue')) from one more no-grad segment on the new
    carry. In eval every row runs exactly halt_max_steps segments.
    """

    def __init__(self, inner: InnerBase, arch: ArchConfig, q_continue: bool):
        super().__init__()
        self.inner = inner
        self.halt_max_steps = arch.halt_max_steps
        self.halt_exploration_prob = arch.halt_exploration_prob
        self.q_continue = q_continue

    def initial_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        B, device = batch["inputs"].shape[0], batch["inputs"].device
        return Carry(
            inner_carry=self.inner.empty_carry(B, device),
            steps=torch.zeros(B, dtype=torch.int32, device=device),
            halted=torch.ones(B, dtype=torch.bool, device=device),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: Carry, batch: dict[str, torch.Tensor]):
        halted = carry.halted
        inner_carry = self.inner.reset_carry(halted, carry.inner_carry)
        steps = torch.where(halted, 0, carry.steps)
        data = {
            k: torch.where(halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
            for k, v in carry.current_data.items()
        }
        inner_carry, logits, (q_halt, q_cont) = self.inner(inner_carry, data)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_cont}

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= self.halt_max_steps
            halted = is_last
            if self.training and self.halt_max_steps > 1:
                halted = halted | halting_decisions(q_halt, q_cont if self.q_continue else None)
                explore = torch.rand_like(q_halt) < self.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=self.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if self.q_continue:
                    _, _, (next_halt, next_cont) = self.inner(inner_carry, data)
                    target = torch.where(is_last, next_halt, torch.maximum(next_halt, next_cont))
                    outputs["target_q_continue"] = torch.sigmoid(target)

        return Carry(inner_carry, steps, halted, data), outputs
