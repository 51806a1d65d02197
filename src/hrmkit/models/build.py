"""Model construction, optimizers, compilation, computation dtype and size/FLOP accounting."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from hrmkit.config import ArchConfig
from hrmkit.models.act import ACTModel
from hrmkit.models.losses import ACTLossHead
from hrmkit.models.puzzle_embedding import PuzzleEmbedding, SignSGDSparse, puzzle_prefix_len


def build_model(arch: ArchConfig, *, seq_len: int, vocab_size: int, num_puzzle_identifiers: int) -> ACTLossHead:
    """Build `ACTLossHead(ACTModel(inner))` for arch.name "hrm", "trm" or "transformer" (on CPU, float32
    weights; move it with `.to(device)`). State-dict names equal the references'
    (`model.inner.H_level.layers.0.self_attn.qkv_proj.weight`, ...). HRM always learns Q-continue; TRM does
    unless `no_ACT_continue`; the transformer never does. Raises ValueError for an impossible shape and
    HrmkitError when the weights alone would not fit in this machine's memory (`check_fits_memory`).
    """
    from hrmkit.models.baseline import TransformerInner
    from hrmkit.models.hrm import HRMInner
    from hrmkit.models.trm import TRMInner

    check_fits_memory(arch, seq_len=seq_len, vocab_size=vocab_size, num_puzzle_identifiers=num_puzzle_identifiers)
    cls = {"hrm": HRMInner, "trm": TRMInner, "transformer": TransformerInner}[arch.name]
    inner = cls(arch, seq_len, vocab_size, num_puzzle_identifiers)
    q_continue = {"hrm": True, "trm": not arch.no_ACT_continue, "transformer": False}[arch.name]
    return ACTLossHead(ACTModel(inner, arch, q_continue=q_continue), arch.loss.loss_type,
                       label_smoothing=arch.loss.label_smoothing)


def physical_memory_bytes() -> int | None:
    """Installed RAM in bytes (POSIX sysconf), None where the platform does not say."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(arch: ArchConfig, *, seq_len: int, vocab_size: int, num_puzzle_identifiers: int) -> int:
    """A lower bound on the bytes of float32 weights `build_model` would allocate (puzzle table, token
    embedding and LM head, the attention projections of every block; the MLPs are left out), computed from the
    shapes without building anything. Raises HrmkitError naming the sizes when even that exceeds this
    machine's RAM, so that an absurd but in-range shape is refused before PyTorch tries to allocate it."""
    from hrmkit.errors import HrmkitError

    d = arch.hidden_size
    blocks = arch.L_layers + (arch.H_layers if arch.name != "trm" else 0)
    need = 4 * (num_puzzle_identifiers * arch.puzzle_emb_ndim + 2 * vocab_size * d + blocks * 4 * d * d)
    ram = physical_memory_bytes()
    if ram is not None and need > ram:
        raise HrmkitError(f"a {arch.name} model of hidden_size={arch.hidden_size}, H/L layers {arch.H_layers}/"
                          f"{arch.L_layers}, seq_len={seq_len}, vocab_size={vocab_size}, num_puzzle_identifiers="
                          f"{num_puzzle_identifiers}, puzzle_emb_ndim={arch.puzzle_emb_ndim} needs over "
                          f"{need / 2**30:,.1f} GiB for its weights alone; this machine has {ram / 2**30:,.1f} GiB")
    return need


def compile_model(head: ACTLossHead, **options) -> ACTLossHead:
    """Compile `head`'s ACT segments in place (`InnerBase.compile_segment`: the recursion and the heads of one
    segment form one graph, fullgraph, static shapes; `options` go to torch.compile, e.g. mode="max-autotune")
    and return it. Same math, same state-dict names; the first step of each grad mode and batch shape compiles
    (tens of seconds on a CPU). CPU compilation needs a C++ compiler. Pays on CPU for small models, whose
    steps are dominated by elementwise work that compilation fuses (BENCHMARKS.md)."""
    head.model.inner.compile_segment(**options)
    return head


@contextlib.contextmanager
def forward_dtype(head: ACTLossHead, name: str) -> Iterator[ACTLossHead]:
    """Run `head` with computation dtype `name` ("float32", "bfloat16", "float64", "auto") inside the block, e.g.
    a float32-trained model evaluated in bfloat16; weights stay float32. The carry's dtype follows, so start
    fresh carries inside the block."""
    inner = head.model.inner
    saved = inner.arch
    inner.arch = saved.model_copy(update={"forward_dtype": name})
    try:
        yield head
    finally:
        inner.arch = saved


def puzzle_embedding_params(head: nn.Module) -> list[PuzzleEmbedding]:
    """The puzzle embedding modules of a model (empty when puzzle_emb_ndim is 0), for `SignSGDSparse`."""
    return [m for m in head.modules() if isinstance(m, PuzzleEmbedding)]


def count_parameters(head: nn.Module) -> int:
    """Number of ordinary (trainable) parameters; the puzzle table is a buffer and is excluded, as in the
    references' count."""
    return sum(p.numel() for p in head.parameters() if p.requires_grad)


def build_optimizers(head: nn.Module, lr: float, puzzle_emb_lr: float, weight_decay: float,
                     puzzle_emb_weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)) -> list[torch.optim.Optimizer]:
    """The references' optimizers: [AdamAtan2(ordinary params, lr, betas, weight_decay, a=1, b=1)] followed by
    SignSGDSparse(puzzle tables, puzzle_emb_lr, puzzle_emb_weight_decay) when the model has a puzzle table.

    Call `zero_grad()` and `step()` on every optimizer in the list; a schedule sets each group's "lr" (the
    first optimizer's base lr is `lr`, the second's `puzzle_emb_lr`). Build after moving the model to its device.
    """
    from adam_atan2_pytorch import AdamAtan2

    params = [p for p in head.parameters() if p.requires_grad]
    opts: list[torch.optim.Optimizer] = [
        AdamAtan2(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, a=1.0, b=1.0)
    ]
    tables = puzzle_embedding_params(head)
    if tables:
        opts.append(SignSGDSparse(tables, lr=puzzle_emb_lr, weight_decay=puzzle_emb_weight_decay))
    return opts


def flops_per_token(arch: ArchConfig, seq_len: int, vocab_size: int) -> dict[str, float]:
    """FLOPs of one ACT segment per token of the seq_len sequence (multiply-add = 2 FLOPs; the puzzle prefix
    tokens' cost is included), counting matmuls and attention scores/values, the heads once. Keys: `block` (one block), `forward` (one
    segment: every block application), `train` (~ forward + 2x the backpropagated part, plus HRM's extra
    no-grad Q-target segment)."""
    from hrmkit.models.layers import swiglu_width
    D = arch.hidden_size
    P = puzzle_prefix_len(arch)
    T = seq_len + P
    mlp = 2 * 3 * D * swiglu_width(D, arch.expansion)
    if arch.name == "trm" and arch.mlp_t:
        mix = 2 * 3 * swiglu_width(T, arch.expansion) * D  # [D, T] @ [T, 2W], [D, W] @ [W, T], per token position
    else:
        mix = 2 * 4 * D * D + 2 * 2 * T * D
    block = mix + mlp
    head = 2 * D * vocab_size
    if arch.name == "hrm":
        apps = arch.H_cycles * (arch.L_cycles * arch.L_layers + arch.H_layers)
        grad_apps = arch.L_layers + arch.H_layers
    elif arch.name == "trm":
        apps = arch.H_cycles * (arch.L_cycles + 1) * arch.L_layers
        grad_apps = (arch.L_cycles + 1) * arch.L_layers
    else:
        apps = grad_apps = arch.H_layers + arch.L_layers
    fwd = apps * block * T / seq_len + head
    train = fwd + 2 * (grad_apps * block * T / seq_len + head)
    if arch.name == "hrm" or (arch.name == "trm" and not arch.no_ACT_continue):
        train += fwd
    return {"block": block, "forward": fwd, "train": train}
