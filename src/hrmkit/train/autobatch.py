"""`global_batch_size: auto`: the largest batch whose training step fits in GPU memory with headroom.

`find_batch_size` is the search (pure, testable with a fake step): double from `start` until a step runs out
of memory or its peak memory exceeds (1 - headroom) of the device, then bisect between the last batch that
fitted and the first that did not; an OOM at the start backs off by halving. `cuda_probe` builds the real
probe: two `train.step.bare_step`s (forward, backward, optimizers) on a copy of the model, returning the peak of
reserved memory in bytes. CUDA only: on CPU `auto` is an error (set a number).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch

from hrmkit.errors import HrmkitError


def is_oom(e: BaseException) -> bool:
    """Whether an exception is an out-of-memory error of the accelerator."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def find_batch_size(step: Callable[[int], float], total_bytes: float, *, headroom: float = 0.1, start: int = 32,
                    max_batch: int = 8192, multiple: int = 1, cleanup: Callable[[], None] = lambda: None,
                    log: Callable[[str], None] = print) -> int:
    """Largest batch b (a multiple of `multiple`, <= max_batch) for which `step(b)` returns a peak memory
    (bytes) <= (1 - headroom) * total_bytes without raising an OOM. `cleanup()` runs after every OOM.

    Raises HrmkitError when not even `multiple` fits.
    """
    limit = (1.0 - headroom) * total_bytes
    max_batch = max(multiple, max_batch // multiple * multiple)

    def fits(b: int) -> bool:
        try:
            peak = step(b)
        except Exception as e:  # noqa: BLE001 - only OOMs are expected here
            if not is_oom(e):
                raise
            cleanup()
            log(f"batch size auto: {b} runs out of memory")
            return False
        ok = peak <= limit
        log(f"batch size auto: {b} peaks at {peak / 2**20:.0f} MiB of {total_bytes / 2**20:.0f} MiB "
            f"({'fits' if ok else 'leaves too little headroom'})")
        return ok

    b = min(max(multiple, start // multiple * multiple), max_batch)
    good, bad = None, None
    while good is None:  # back off until something fits
        if fits(b):
            good = b
        else:
            bad = b
            if b <= multiple:
                raise HrmkitError(f"global_batch_size=auto: even a batch of {multiple} does not fit with "
                                  f"memory_headroom={headroom}")
            b = max(multiple, b // 2 // multiple * multiple)
    while bad is None:  # grow
        if good >= max_batch:
            return good
        b = min(max_batch, good * 2)
        if fits(b):
            good = b
        else:
            bad = b
    while bad - good > multiple:  # bisect
        b = (good + bad) // 2 // multiple * multiple
        if b <= good:
            break
        if fits(b):
            good = b
        else:
            bad = b
    return good


def cuda_probe(head: torch.nn.Module, make_optimizers: Callable[[torch.nn.Module], list], example_batch: Callable[[int], dict],
               device: torch.device) -> Callable[[int], float]:
    """A `step(b)` for `find_batch_size`: two `train.step.bare_step`s (one segment each, so the carry's memory
    is counted) of a fresh copy of `head` on `example_batch(b)`, returning torch.cuda.max_memory_reserved in
    bytes."""
    from hrmkit.train.step import bare_step

    def step(b: int) -> float:
        model = copy.deepcopy(head).to(device).train()
        opts = make_optimizers(model)
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            batch = {k: v.to(device) for k, v in example_batch(b).items()}
            carry = None
            for _ in range(2):
                carry = bare_step(model, carry, [batch], opts)
            torch.cuda.synchronize(device)
            return float(torch.cuda.max_memory_reserved(device))
        finally:
            del model, opts
            torch.cuda.empty_cache()

    return step


def example_batch(split, b: int) -> dict[str, torch.Tensor]:
    """The first b training examples of `split` (cycled), collated as a training batch for the probe."""
    from hrmkit.data.sampler import collate

    arrs = next(iter(split.sets.values()))
    idx = np.arange(b) % arrs.num_examples
    puzzle = np.searchsorted(arrs.puzzle_indices, idx, side="right") - 1
    return collate(split.metadata, arrs.inputs[idx], arrs.labels[idx], arrs.puzzle_identifiers[puzzle], b)


def auto_batch_size(cfg, head: torch.nn.Module, split, device: torch.device, world_size: int = 1) -> int:
    """`global_batch_size: auto` for TrainConfig `cfg`: the per-rank batch found by `find_batch_size` on `device`
    (multiples of 8, at most auto_batch_max / world_size, memory_headroom kept free) times `world_size`, halved
    until an epoch of `split` fills at least one batch. Raises HrmkitError off CUDA."""
    from hrmkit.data.sampler import TrainSampler
    from hrmkit.models import build_optimizers

    if device.type != "cuda":
        raise HrmkitError(f"global_batch_size=auto needs a CUDA device (it measures GPU memory); on {device.type} "
                          "set a number, e.g. global_batch_size=128")

    def make_opts(model):
        return build_optimizers(model, lr=cfg.lr, puzzle_emb_lr=cfg.puzzle_emb_lr, weight_decay=cfg.weight_decay,
                                puzzle_emb_weight_decay=cfg.puzzle_emb_weight_decay, betas=(cfg.beta1, cfg.beta2))

    step = cuda_probe(head, make_opts, lambda b: example_batch(split, b), device)
    total = torch.cuda.mem_get_info(device)[1]
    local = find_batch_size(step, total, headroom=cfg.memory_headroom, multiple=8, cleanup=torch.cuda.empty_cache,
                            max_batch=max(1, cfg.auto_batch_max // world_size))
    b = local * world_size
    while b > world_size:
        try:
            TrainSampler(split, b, seed=cfg.seed, world_size=world_size)
            break
        except HrmkitError:
            b = max(world_size, b // 2 // world_size * world_size)
    torch.cuda.reset_peak_memory_stats(device)
    return b
