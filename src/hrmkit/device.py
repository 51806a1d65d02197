"""Choosing the torch device (`device: auto|cpu|cuda|mps` in configs and `--device` on the command line).

Apple's `mps` backend lacks some operators in some PyTorch versions. `pick_device("mps")` sets
PYTORCH_ENABLE_MPS_FALLBACK=1 (PyTorch then runs a missing operator on the CPU, with its own warning) and runs
a probe of the operations hrmkit's models and optimizers use; when the probe fails it says which operation
PyTorch lacks and falls back to the CPU.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import torch

from hrmkit.errors import HrmkitError

DEVICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when this PyTorch build has the MPS backend and the machine can use it (Apple silicon, macOS 12.3+)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def probe_ops(device: torch.device) -> None:
    """Run, on `device`, one small instance of every kind of operation a training step uses (embedding
    gather, matmul, scaled-dot-product attention, RMS norm, SwiGLU, stablemax in float32, argmax, index_add for
    the sparse puzzle table, sign, atan2 of Adam-atan2) with a backward pass. Raises what PyTorch raises for a
    missing operator."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 8, generator=g).to(device).requires_grad_()
    w = torch.randn(8, 16, generator=g).to(device).requires_grad_()
    ids = torch.tensor([[1, 2, 3, 4]], device=device)
    x = emb[ids]  # [1, 4, 8]
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5)
    q = k = v = x.view(1, 4, 2, 4).transpose(1, 2)
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 4, 8)
    gate, up = (a @ w).chunk(2, dim=-1)
    h = torch.nn.functional.silu(gate) * up  # [1, 4, 8]
    s = torch.where(h < 0, 1 / (1 - h + 1e-30), h + 1)
    logp = torch.log(s / s.sum(-1, keepdim=True))
    loss = -logp.gather(-1, ids.unsqueeze(-1) % 8).sum()
    loss.backward()
    table = torch.zeros(5, 8, device=device)
    table.index_add_(0, torch.tensor([1, 1], device=device), torch.sign(emb.grad[:2]))
    torch.atan2(w.grad, w.grad.abs() + 1).argmax(-1).cpu()


def pick_device(name: str, probe: Callable[[torch.device], None] = probe_ops) -> torch.device:
    """`auto` is CUDA when available, else CPU (MPS only when asked for: some operators may be missing there).
    `mps` runs `probe` on the MPS device and falls back to the CPU, with a message on stderr naming the failing
    operation, when it raises. Raises HrmkitError for `cuda`/`mps` on a machine without one, or another name."""
    if name not in DEVICES:
        raise HrmkitError(f"device={name!r}: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HrmkitError("device=cuda: no CUDA device is available (use device=cpu or device=auto)")
    if name == "mps":
        if not mps_available():
            raise HrmkitError(f"device=mps: this PyTorch ({torch.__version__}) has no usable MPS backend (Apple silicon "
                              f"with macOS 12.3+ and an arm64 build of PyTorch are needed; use device=cpu)")
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
        device = torch.device("mps")
        try:
            probe(device)
        except (RuntimeError, NotImplementedError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"device=mps: PyTorch {torch.__version__} cannot run an operation hrmkit needs on MPS ({first}); "
                  f"falling back to the CPU. A newer PyTorch may have it.", file=sys.stderr, flush=True)
            return torch.device("cpu")
        return device
    return torch.device(name)
