"""Data-parallel training across processes (`torchrun --nproc-per-node N -m hrmkit.cli train ...`).

Reference semantics (sapientinc/HRM pretrain.py): every rank builds the same global batch and keeps its slice
(`TrainSampler(rank, world_size)`); each rank backpropagates `loss_local / global_batch_size`; the gradients
are summed over ranks (all-reduce), which gives exactly the 1-process gradient of `loss / global_batch_size`;
the puzzle-embedding optimizer all-gathers its sparse gradients and ids itself (`SignSGDSparse`); metrics
are summed over ranks; rank 0 writes every file. Rank r's torch RNG is seeded with seed + r (ACT exploration
differs per rank, as in the reference). Process group from the torchrun environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Callable

import torch
import torch.distributed as dist

from hrmkit.errors import HrmkitError


class Dist:
    """Rank, world size and the collectives the loop uses; with world_size 1 every method is a cheap no-op."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.owns_group = owns_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device_type: str, timeout_s: float = 7200.0) -> "Dist":
        """Join the process group described by the torchrun variables; world size 1 when they are absent.

        Raises HrmkitError for an inconsistent environment.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        try:
            rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        except (KeyError, ValueError) as e:
            raise HrmkitError(f"WORLD_SIZE={world} but RANK is missing or bad ({e}); launch with torchrun") from e
        if dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=False)
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=dt.timedelta(seconds=timeout_s))
        return cls(rank, world, local_rank, owns_group=True)

    def shutdown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    # --- collectives --------------------------------------------------------------------------------------
    def on_main(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on rank 0 only, its result on every rank; an HrmkitError or OSError it raises is raised on
        every rank (so no rank waits forever for the others)."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except (HrmkitError, OSError) as e:
                if not self.enabled:
                    raise
                error = e
        if self.enabled:
            result, error = self.broadcast_object((result, None if error is None else (type(error), str(error))))
            if error is not None:
                kind, text = error
                raise (HrmkitError if issubclass(kind, HrmkitError) else OSError)(text)
        return result

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` as a list on rank 0 (None elsewhere)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the gradients of `params` over ranks (one flat all-reduce; missing grads count as zeros)."""
        if not self.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of a float64 vector over ranks (in place on a copy)."""
        if not self.enabled:
            return values
        out = values.clone()
        dist.all_reduce(out)
        return out
