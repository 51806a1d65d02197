"""Puzzle embeddings: a per-puzzle-identifier table trained by sparse sign-SGD (docs/design.md §3).

Same behaviour as the reference `models/sparse_embedding.py` (sapientinc/HRM): the table is a persistent
buffer (not a Parameter, so the ordinary optimizer never sees it); in training the batch's rows are copied into
a leaf tensor that receives the gradient, and `SignSGDSparse` applies
`w[ids] = w[ids] * (1 - lr*wd) - lr * sign(sum of grads per id)` to the touched rows only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def puzzle_prefix_len(arch) -> int:
    """Tokens of the puzzle-embedding prefix in front of the sequence (the references' `puzzle_emb_len`): TRM's
    `puzzle_emb_len` when set, otherwise (HRM, the baseline, TRM with 0) ceil(puzzle_emb_ndim / hidden_size),
    so 0 without a puzzle embedding. arch: an `ArchConfig`."""
    if arch.name == "trm" and arch.puzzle_emb_len > 0:
        return arch.puzzle_emb_len
    return -(arch.puzzle_emb_ndim // -arch.hidden_size)


class PuzzleEmbedding(nn.Module):
    """Puzzle embedding table `weights` [num_ids, ndim], float32, zero init (persistent buffer).

    forward(ids int [B], dtype) -> [B, ndim] in `dtype`. In training mode with autograd enabled the rows are
    copied into the leaf tensor `local_weights` [B, ndim] (requires_grad) and the ids into `local_ids` [B];
    gradients land in `local_weights.grad` for `SignSGDSparse`. Otherwise (eval, or no_grad as in the ACT
    Q-target segment) it is a plain lookup that leaves `local_weights` untouched.
    """

    def __init__(self, num_ids: int, ndim: int):
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_ids, ndim), persistent=True)
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.weights[ids].to(dtype)
        self.local_ids = ids.detach().clone()
        self.local_weights = self.weights[ids].detach().clone().requires_grad_(True)
        return self.local_weights.to(dtype)


class SignSGDSparse(torch.optim.Optimizer):
    """Sign-SGD with decoupled weight decay on the touched rows of puzzle embedding tables.

    Args: `embeddings` (a PuzzleEmbedding or a list of them), `lr`, `weight_decay` (>= 0; the decay applied per
    step is lr*weight_decay, on touched rows only). Each step: gradients of duplicate ids are summed first;
    when torch.distributed is initialized with world size > 1, local grads and ids are all-gathered (every rank
    must have the same batch size) so every rank applies the same update. The param group's tensors are the
    tables themselves (so `group["lr"]` can be scheduled like any optimizer). Raises ValueError for negative
    lr / weight_decay. Source: reference `CastedSparseEmbeddingSignSGD_Distributed`.
    """

    def __init__(self, embeddings, lr: float = 1e-2, weight_decay: float = 0.0):
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"invalid lr={lr} or weight_decay={weight_decay}")
        mods = [embeddings] if isinstance(embeddings, PuzzleEmbedding) else list(embeddings)
        super().__init__([m.weights for m in mods], dict(lr=lr, weight_decay=weight_decay))
        self._embeddings = mods

    def zero_grad(self, set_to_none: bool = True) -> None:
        for m in self._embeddings:
            if m.local_weights is not None:
                m.local_weights.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        by_table = {id(m.weights): m for m in self._embeddings}
        for group in self.param_groups:
            for w in group["params"]:
                m = by_table[id(w)]
                if m.local_weights is None or m.local_weights.grad is None:
                    continue
                sparse_sign_sgd_(w, m.local_weights.grad, m.local_ids, group["lr"], group["weight_decay"])
        return loss


def sparse_sign_sgd_(weights: torch.Tensor, grad: torch.Tensor, ids: torch.Tensor, lr: float, weight_decay: float) -> None:
    """In place: weights[u] = weights[u]*(1-lr*wd) - lr*sign(sum_{i: ids[i]=u} grad[i]) for the unique ids u.

    weights [N, D], grad [B, D], ids int [B]. All-gathers grad and ids across ranks when distributed. Written
    without `unique` (whose output size the host must read: a device synchronisation in every training step):
    the rows of an id are summed into its first row's slot, in row order (the same sums as a unique-based
    scatter), and duplicate ids write identical rows.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world = dist.get_world_size()
        all_grad = grad.new_empty((world * grad.shape[0], grad.shape[1]))
        all_ids = ids.new_empty((world * ids.shape[0],))
        dist.all_gather_into_tensor(all_grad, grad.contiguous())
        dist.all_gather_into_tensor(all_ids, ids.contiguous())
        grad, ids = all_grad, all_ids
    first = (ids.unsqueeze(1) == ids.unsqueeze(0)).to(torch.uint8).argmax(dim=1)  # [B]: first row with the same id
    summed = torch.zeros_like(grad).index_add_(0, first, grad)[first]
    rows = weights[ids] * (1.0 - lr * weight_decay) - lr * torch.sign(summed).to(weights.dtype)
    weights[ids] = rows
