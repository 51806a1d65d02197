"""Typed configuration: one place for every knob, YAML files and `key=value` overrides (`arch.L_cycles=6`).

Keys use the reference implementations' names where they exist (sapientinc/HRM `cfg_pretrain.yaml`,
`config/arch/hrm_v1.yaml`). Validation errors name the key and the bad value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LossConfig(_Strict):
    """ACT loss head options (reference `arch.loss`)."""

    name: str = "ACTLossHead"
    loss_type: Literal["stablemax_cross_entropy", "softmax_cross_entropy"] = "stablemax_cross_entropy"


class ArchConfig(_Strict):
    """Model architecture (reference `arch`).

    name: "hrm" (HRM ACT v1, DESIGN.md §3), "trm" (TRM, §4) or "transformer" (the same blocks stacked
    without recursion, for the ARC Prize ablation).
    """

    name: Literal["hrm", "trm", "transformer"] = "hrm"
    H_cycles: int = 2
    L_cycles: int = 2
    H_layers: int = 4
    L_layers: int = 4
    hidden_size: int = 512
    expansion: float = 4.0
    num_heads: int = 8
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    puzzle_emb_ndim: int = 512
    puzzle_emb_len: int = 16  # TRM only: prefix tokens reserved for the puzzle embedding
    mlp_t: bool = False  # TRM only: SwiGLU across the sequence instead of attention
    no_ACT_continue: bool = True  # TRM only: halt on q_halt > 0, no q_continue head loss
    forward_dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on CUDA, float32 on CPU
    loss: LossConfig = LossConfig()
