"""Building blocks shared by HRM, TRM and the transformer baseline (docs/design.md §3).

Same math as the references' `models/layers.py` and `models/common.py` (sapientinc/HRM, TinyRecursiveModels):
weights are stored in float32 and cast to the activations' dtype at use; RMSNorm has no weight and runs in
float32 (or float64 for float64 activations); RoPE uses the "rotate half" layout (cos/sin tables of shape [positions, head_dim], float32);
attention is non-causal `scaled_dot_product_attention`; SwiGLU has a fused `gate_up_proj`; blocks are post-norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """Computation dtype for `forward_dtype`: "auto" is bfloat16 on CUDA and float32 elsewhere. float64 exists to
    measure float32 rounding noise (`hrm verify-reference`), not for training."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}[name]


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 when its dtype is narrower (bf16, fp16), else unchanged (float32, float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)


def ceil_to(a: int, b: int) -> int:
    """Smallest multiple of b that is >= a."""
    return -(a // -b) * b


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0) -> torch.Tensor:
    """In-place truncated normal in [lower*std', upper*std'] whose *actual* std is `std` (JAX/flax style).

    `torch.nn.init.trunc_normal_` keeps the std of the untruncated normal; the references correct it so the
    truncated distribution has standard deviation `std`. std == 0 gives zeros.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        z = (b - a) / 2
        c = (2 * math.pi) ** -0.5
        pdf_lo, pdf_hi = c * math.exp(-0.5 * lower**2), c * math.exp(-0.5 * upper**2)
        var_ratio = 1 - (upper * pdf_hi - lower * pdf_lo) / z - ((pdf_hi - pdf_lo) / z) ** 2
        std_c = std / math.sqrt(var_ratio)
        tensor.uniform_(a, b).erfinv_().mul_(sqrt2 * std_c).clip_(lower * std_c, upper * std_c)
    return tensor


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without weight over the last axis, computed in float32 (float64 for float64 x), returned in x's
    dtype."""
    h = at_least_float32(x)
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
    return h.to(x.dtype)


class CastedLinear(nn.Module):
    """Linear layer, float32 weight [out, in] with truncated LeCun-normal init (std 1/sqrt(in)), cast to the
    input's dtype at use. Optional zero-init bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), b)


class CastedEmbedding(nn.Module):
    """Embedding table `embedding_weight` [num, dim] (float32, truncated normal with `init_std`), looked up and
    cast to `dtype` (the computation dtype) at use."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float):
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(dtype))


class RotaryEmbedding(nn.Module):
    """RoPE tables: non-persistent float32 buffers `cos`, `sin` of shape [max_positions, head_dim], with the
    frequencies repeated across the two halves (the "rotate half" layout of the references)."""

    def __init__(self, head_dim: int, max_positions: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos, self.sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, S, heads, head_dim] by position; computed in the tables' dtype (float32; float64 for float64
    x), returned in x's. cos, sin: [S, head_dim] in the "rotate half" layout.

    The references compute x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1]; since both halves of
    the tables hold the same frequencies this is [x1 c - x2 s, x2 c + x1 s] on half-width tables, the same
    numbers bit for bit with fewer passes over x (no negated copy, one concatenation).
    """
    h = x.to(torch.promote_types(x.dtype, cos.dtype))
    half = h.shape[-1] // 2
    x1, x2 = h[..., :half], h[..., half:]
    c, s = cos[:, :half].unsqueeze(-2), sin[:, :half].unsqueeze(-2)
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention: fused `qkv_proj` [3*D, D], `o_proj` [D, D], no biases."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * num_heads * self.head_dim)
        self.o_proj = CastedLinear(num_heads * self.head_dim, hidden_size)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, S, _ = x.shape
        H = self.num_heads
        qkv = self.qkv_proj(x).view(B, S, 3 * H, self.head_dim)
        qk, v = qkv[:, :, : 2 * H], qkv[:, :, 2 * H :]
        if cos_sin is not None:  # q and k rotated in one pass
            cos, sin = cos_sin
            qk = apply_rope(qk, cos[:S], sin[:S])
        q, k = qk.split(H, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, S, head_dim]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(y.transpose(1, 2).reshape(B, S, self.num_heads * self.head_dim))


def swiglu_width(hidden_size: int, expansion: float) -> int:
    """Inner width of the references' SwiGLU: round(expansion * hidden * 2/3) rounded up to a multiple of 256."""
    return ceil_to(round(expansion * hidden_size * 2 / 3), 256)


class SwiGLU(nn.Module):
    """SwiGLU MLP: `gate_up_proj` [2*W, D] (gate first, then up), `down_proj` [D, W], no biases."""

    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inter = swiglu_width(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * inter)
        self.down_proj = CastedLinear(inter, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            w_gu, w_d = self.gate_up_proj.weight.to(x.dtype), self.down_proj.weight.to(x.dtype)
            out = _SwiGLUFunction.apply(x.reshape(-1, x.shape[-1]), w_gu, w_d)
            return out.view(*x.shape[:-1], out.shape[-1])
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(_silu_mul(gate, up))


class _SwiGLUFunction(torch.autograd.Function):
    """down(silu(gate) * up) with [gate, up] = x @ w_gu.T, for x [N, D_in]: the operations autograd records for
    `SwiGLU.forward`, and the same gradients bit for bit, but the backward writes the gate's and the up
    projection's gradients into one [N, 2W] buffer instead of concatenating them (chunk's backward): one
    full-size copy fewer per MLP (about 4% of a CPU demo training step, measured with torch.profiler). The weight
    gradients are computed as (x.T @ g).T, faster on the CPU for the thin `mlp_t` shapes, same numbers."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w_gu: torch.Tensor, w_d: torch.Tensor) -> torch.Tensor:
        gu = x.mm(w_gu.t())
        W = gu.shape[1] // 2
        gate, up = gu[:, :W], gu[:, W:]
        act = F.silu(gate)
        hidden = act * up
        ctx.save_for_backward(x, w_gu, w_d, gate, up, act, hidden)
        return hidden.mm(w_d.t())

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w_gu, w_d, gate, up, act, hidden = ctx.saved_tensors
        W = gate.shape[1]
        grad_hidden = grad_out.mm(w_d)
        grad_gu = torch.empty(gate.shape[0], 2 * W, dtype=gate.dtype, device=gate.device)
        torch.mul(grad_hidden, act, out=grad_gu[:, W:])
        torch.ops.aten.silu_backward.grad_input(grad_hidden * up, gate, grad_input=grad_gu[:, :W])
        return grad_gu.mm(w_gu), x.t().mm(grad_gu).t(), hidden.t().mm(grad_out).t()


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up; without autograd the product is written into silu's fresh output (one buffer fewer)."""
    if torch.is_grad_enabled():
        return F.silu(gate) * up
    return F.silu(gate).mul_(up)


def add_rms_norm(h: torch.Tensor, out: torch.Tensor, eps: float) -> torch.Tensor:
    """rms_norm(h + out, eps) for a residual `h` and a sublayer's fresh output `out`. Without autograd and in
    float32/float64 it works in `out`'s buffer (the same operations in the same order, so the same numbers,
    without three temporary tensors): the no-gradient cycles are most of a segment's work."""
    if torch.is_grad_enabled() or out.dtype not in (torch.float32, torch.float64):
        return rms_norm(h + out, eps)
    # h + out takes h's memory layout, and the mean's summation order follows the layout: keep it where they differ
    x = out.add_(h) if out.stride() == h.stride() else h + out
    return x.mul_(x.square().mean(-1, keepdim=True).add_(eps).rsqrt_())


class Block(nn.Module):
    """Post-norm transformer block: h = rms(h + mix(h)); h = rms(h + mlp(h)).

    The token mixer is attention (`self_attn`) or, for TRM's `mlp_t`, a SwiGLU across the sequence axis
    (`mlp_t`, width seq_tokens), applied as the TRM reference does: to h transposed to [B, D, S], normed over the
    sequence axis there. That layout is what makes hrmkit's losses the reference's bit for bit (a matrix product
    over the untransposed h sums the weight gradient in another order) and is the faster one on the CPU.
    """

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float, seq_tokens: int | None = None):
        super().__init__()
        self.eps = eps
        if seq_tokens is None:
            self.self_attn = Attention(hidden_size, num_heads)
        else:
            self.mlp_t = SwiGLU(seq_tokens, expansion)
        self.mlp = SwiGLU(hidden_size, expansion)

    def forward(self, h: torch.Tensor, cos_sin=None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            ht = h.transpose(1, 2)
            h = add_rms_norm(ht, self.mlp_t(ht), self.eps).transpose(1, 2)
        else:
            h = add_rms_norm(h, self.self_attn(h, cos_sin), self.eps)
        return add_rms_norm(h, self.mlp(h), self.eps)


class ReasoningModule(nn.Module):
    """A stack of blocks (`layers`) that first adds its input injection: f(h, inj) = blocks(h + inj)."""

    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.layers = nn.ModuleList(blocks)

    def forward(self, h: torch.Tensor, injection: torch.Tensor, cos_sin=None) -> torch.Tensor:
        h = h + injection
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h
