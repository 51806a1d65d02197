"""Gradient accumulation over ACT segments (`grad_accum_steps = k`).

One optimizer step runs k segments. Each segment is one ordinary training call: the ACT carry advances one
segment, halted rows take their data from the next batch of the sampler (k batches per optimizer step), and
`loss / (global_batch_size * k)` is backpropagated, so the step sees the mean over k segments of the reference
gradient. The carry is never reset at optimizer-step boundaries: with k = 1 this is the reference loop, with
k > 1 each row simply advances k segments per optimizer step.

The ordinary parameters accumulate `.grad` by themselves. The puzzle embedding does not: each forward replaces
its leaf `local_weights`, so `PuzzleGradStash` keeps (ids, grad) of every segment and, before the optimizer
step, concatenates them into the leaf the sparse sign-SGD reads; it then sums duplicate ids (and all-gathers
across ranks), i.e. it applies sign(sum of the k segments' gradients), the same rule as without accumulation.
"""

from __future__ import annotations

import torch

from hrmkit.models.puzzle_embedding import PuzzleEmbedding


class PuzzleGradStash:
    """Collects the puzzle-embedding gradients of several segments (module docstring)."""

    def __init__(self, tables: list[PuzzleEmbedding]):
        self.tables = tables
        self._parts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {id(m): [] for m in tables}

    def stash(self) -> None:
        """After a segment's backward: remember its ids and gradient rows."""
        for m in self.tables:
            if m.local_weights is not None and m.local_weights.grad is not None:
                self._parts[id(m)].append((m.local_ids, m.local_weights.grad))
                m.local_weights.grad = None

    def merge(self) -> None:
        """Before the optimizer step: put the concatenated ids and gradients where SignSGDSparse reads them."""
        for m in self.tables:
            parts = self._parts[id(m)]
            if not parts:
                continue
            ids = torch.cat([p[0] for p in parts])
            grad = torch.cat([p[1] for p in parts])
            leaf = torch.zeros_like(grad).requires_grad_(True)
            leaf.grad = grad
            m.local_ids, m.local_weights = ids, leaf
            parts.clear()
