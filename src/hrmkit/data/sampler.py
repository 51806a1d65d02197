"""Batching with the references' semantics (sapientinc/HRM and TinyRecursiveModels `puzzle_dataset.py`
`_iter_train`), fully seeded and exactly resumable.

Training (`TrainSampler`). An *epoch* is one pass over the groups of a set; an *iteration* is
`epochs_per_iter` consecutive epochs (the reference's `eval_interval`; the reference evaluates after each
one). For every set (sets in metadata order), one iteration is:
  1. for each of its epochs, shuffle the set's groups and draw one puzzle (augmented version) of each group
     uniformly at random; the epochs' group orders are concatenated into one stream;
  2. the stream's puzzles are packed into batches in order: a puzzle's examples go into the current batch; if
     they do not all fit, a random subset of the remaining size (drawn without replacement) is taken and the
     rest of that puzzle is dropped;
  3. a batch is emitted when it holds exactly `global_batch_size` examples; only the last partial batch of the
     iteration is dropped (a batch never mixes sets, but it may span two epochs).
So every group is drawn once per epoch and, apart from the one partial batch per iteration, trained on: the
reference's step count (`train.lr_schedule.reference_step_plan`), not one dropped remainder per epoch.
The reference draws the examples inside a puzzle from numpy's unseeded global RNG; here every draw of epoch
`e` of set `s` comes from `np.random.default_rng([seed, e, s])`, so an iteration is a pure function of
(data, seed, iteration) and a sampler resumes exactly from `state_dict()` = {iteration, step} without saving
any RNG state.

With `world_size > 1` every rank computes the same global batch and keeps its slice
`[rank * B/world, (rank + 1) * B/world)` (reference behaviour; global_batch_size must divide evenly).

Evaluation (`test_batches`): walk every example of every set in order, `batch_size` at a time (global; each
rank keeps its slice), pad the last batch with PAD inputs, ignored labels and the blank puzzle identifier.

Batches are dicts of torch.int32 tensors: `inputs` [B, seq_len], `labels` [B, seq_len] (labels equal to
metadata.ignore_label_id, and padding rows, become IGNORE_LABEL_ID = -100), `puzzle_identifiers` [B].

Public API
----------
- `IGNORE_LABEL_ID = -100` (defined in data/format.py)
- `TrainSampler(split, global_batch_size, seed, rank=0, world_size=1, epochs_per_iter=1)`; `iter(sampler)`
  yields `(epoch, step_in_epoch, batch)` forever (`epoch`: the epoch of the batch's last example;
  `step_in_epoch`: batches since that epoch's first); `state_dict() -> {"iteration", "step", "epoch", "seed",
  "global_batch_size", "world_size", "num_groups", "epochs_per_iter"}` gives the position of the NEXT batch
  (`step` counts batches inside the iteration); `load_state_dict(state)`; `batches_in_iteration(i)`;
  `total_batches(iterations, cap=None)` (with a cap: exact below it, >= cap otherwise); `batches_per_epoch`
  (of the current iteration, rounded, for display: extrapolated from the epochs planned so far); `epoch`, `iteration`, `step` properties.
  HrmkitError if an iteration cannot fill a single batch, or on a state from another configuration.
- `test_batches(split, batch_size, rank=0, world_size=1)` yields `(batch, num_valid_rows)` where
  num_valid_rows counts the non-padding rows of this rank's batch.
- `collate(metadata, inputs, labels, puzzle_identifiers, batch_size)` -> batch dict (pads to batch_size).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from hrmkit.data.format import IGNORE_LABEL_ID, DatasetMetadata, SplitData
from hrmkit.errors import HrmkitError

Batch = dict[str, torch.Tensor]


def collate(
    metadata: DatasetMetadata,
    inputs: np.ndarray,
    labels: np.ndarray,
    puzzle_identifiers: np.ndarray,
    batch_size: int,
) -> Batch:
    """Convert rows to an int32 tensor batch; map ignore labels to -100; pad to `batch_size` rows."""
    x = np.asarray(inputs).astype(np.int32)
    y = np.asarray(labels).astype(np.int32)
    pid = np.asarray(puzzle_identifiers).astype(np.int32)
    if metadata.ignore_label_id is not None:
        y[y == metadata.ignore_label_id] = IGNORE_LABEL_ID
    pad = batch_size - pid.shape[0]
    if pad < 0:
        raise ValueError(f"{pid.shape[0]} rows do not fit a batch of {batch_size}")
    if pad:
        x = np.concatenate([x, np.full((pad, metadata.seq_len), metadata.pad_id, np.int32)])
        y = np.concatenate([y, np.full((pad, metadata.seq_len), IGNORE_LABEL_ID, np.int32)])
        pid = np.concatenate([pid, np.full(pad, metadata.blank_identifier_id, np.int32)])
    return {
        "inputs": torch.from_numpy(np.ascontiguousarray(x)),
        "labels": torch.from_numpy(np.ascontiguousarray(y)),
        "puzzle_identifiers": torch.from_numpy(np.ascontiguousarray(pid)),
    }


def _local_size(batch_size: int, rank: int, world_size: int) -> int:
    if batch_size < 1:
        raise HrmkitError(f"batch size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise HrmkitError(f"rank {rank} / world_size {world_size} is not valid")
    if batch_size % world_size:
        raise HrmkitError(f"global batch size {batch_size} is not a multiple of world_size {world_size}")
    return batch_size // world_size


def _draw(rng: np.random.Generator, gi: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's group order and version choice: (puzzle indices [G], their example counts [G])."""
    order = rng.permutation(gi.shape[0] - 1)
    puzzles = rng.integers(gi[order], gi[order + 1])
    return puzzles, pi[puzzles + 1] - pi[puzzles]


def _takes(sizes: np.ndarray, batch_size: int, fill: int) -> tuple[np.ndarray, int]:
    """How many examples each puzzle of the stream contributes when packing starts with `fill` examples in
    the current batch: all of them, or what is left of the batch (the rest of that puzzle is dropped).
    Returns (takes [len(sizes)], fill after the last puzzle). One searchsorted per batch closed."""
    if sizes.size == 0:
        return sizes.copy(), fill
    if int(sizes.max()) == 1:
        return sizes.copy(), (fill + sizes.size) % batch_size
    takes = sizes.copy()
    csum = np.cumsum(sizes)
    base = 0  # stream position (full sizes) where the current batch began, minus its `fill`
    while True:
        need = batch_size - fill
        j = int(np.searchsorted(csum, base + need, side="left"))
        if j >= sizes.size:
            return takes, fill + int(csum[-1]) - base
        takes[j] = base + need - (int(csum[j]) - int(sizes[j]))
        base, fill = int(csum[j]), 0


class _SetIteration:
    """One iteration of one set: per epoch the number of examples it puts in the stream (`starts`,
    cumulative, int64 [planned + 1]) and the fill it starts with (`fills`).

    Epochs are planned lazily, in order, only as far as a caller needs (a batch's rows, whether batch b exists,
    a count up to a cap): an ARC iteration of 10^4-10^5 epochs took 10-60 s to plan at start-up when every epoch
    was planned at once. Planning draws exactly what the eager planner drew, so the batches are the same."""

    def __init__(self, arrs, set_index: int, seed: int, first_epoch: int, num_epochs: int, batch_size: int):
        self.arrs, self.set_index, self.seed = arrs, set_index, seed
        self.first_epoch, self.batch_size, self.num_epochs = first_epoch, batch_size, num_epochs
        self.gi = np.asarray(arrs.group_indices).astype(np.int64)
        self.pi = np.asarray(arrs.puzzle_indices).astype(np.int64)
        self.single = bool((np.diff(self.pi) == 1).all())
        G = self.gi.shape[0] - 1
        if self.single:  # closed form: every epoch puts all G groups in the stream
            self.fills = (np.arange(num_epochs, dtype=np.int64) * G) % batch_size
            self.starts = np.arange(num_epochs + 1, dtype=np.int64) * G
            self.planned = num_epochs
        else:
            self.fills = np.zeros(min(num_epochs, 64), dtype=np.int64)
            self.starts = np.zeros(min(num_epochs, 64) + 1, dtype=np.int64)
            self.planned, self._fill = 0, 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _plan_to(self, epochs: int, examples: int | None = None) -> None:
        """Plan epochs until `epochs` are planned or the stream holds at least `examples` examples."""
        epochs = min(epochs, self.num_epochs)
        while self.planned < epochs and (examples is None or self.starts[self.planned] < examples):
            e = self.planned
            if e + 1 >= self.starts.shape[0]:
                grow = min(self.num_epochs, 2 * self.starts.shape[0]) + 1 - self.starts.shape[0]
                self.starts = np.concatenate([self.starts, np.zeros(grow, np.int64)])
                self.fills = np.concatenate([self.fills, np.zeros(grow, np.int64)])
            _, sizes = _draw(self._rng(e), self.gi, self.pi)
            self.fills[e] = self._fill
            takes, self._fill = _takes(sizes, self.batch_size, self._fill)
            self.starts[e + 1] = self.starts[e] + int(takes.sum())
            self.planned = e + 1

    def batches_upto(self, limit: int) -> int:
        """Batches of this iteration, counted only as far as `limit`: exact when below it, else >= limit
        (without planning when `lower_bound` already reaches it)."""
        if self.planned < self.num_epochs and self.lower_bound() >= limit:
            return self.lower_bound()
        self._plan_to(self.num_epochs, limit * self.batch_size)
        return int(self.starts[self.planned]) // self.batch_size

    def lower_bound(self) -> int:
        """A lower bound of the iteration's batches, from the group sizes alone: every epoch streams at least
        each group's smallest puzzle, and each batch closed inside a puzzle drops at most (largest puzzle - 1)
        examples."""
        if not hasattr(self, "_lower"):
            sizes = np.diff(self.pi)
            starts = self.gi[:-1]
            smallest = int(np.minimum.reduceat(sizes, starts).sum()) if sizes.size else 0
            largest = int(np.maximum.reduceat(sizes, starts).sum()) if sizes.size else 0
            closings = self.num_epochs * largest // self.batch_size + 1
            drop = closings * (int(sizes.max(initial=1)) - 1)
            self._lower = max(0, (self.num_epochs * smallest - drop) // self.batch_size)
        return self._lower

    def has_batch(self, b: int) -> bool:
        """Whether batch `b` (0-based) of this set exists in the iteration."""
        return self.batches_upto(b + 1) > b

    @property
    def num_batches(self) -> int:
        """Batches of the whole iteration (plans every epoch)."""
        self._plan_to(self.num_epochs)
        return int(self.starts[self.planned]) // self.batch_size

    def estimated_batches(self) -> float:
        """Batches of the iteration extrapolated from the epochs planned so far (exact once all are)."""
        if self.planned == self.num_epochs:
            return float(self.num_batches)
        if self.planned == 0:
            self._plan_to(1)
        return float(self.starts[self.planned]) / self.batch_size * self.num_epochs / max(1, self.planned)

    def _rng(self, e: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.first_epoch + e, self.set_index])

    def epoch_plan(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(example indices, puzzle indices) that epoch `e` (0-based in the iteration) puts in the stream."""
        self._plan_to(e + 1)
        if e not in self._cache:
            rng = self._rng(e)
            puzzles, sizes = _draw(rng, self.gi, self.pi)
            starts = self.pi[puzzles]
            if self.single:
                self._cache = {e: (starts, puzzles)}
                return self._cache[e]
            take, _ = _takes(sizes, self.batch_size, int(self.fills[e]))
            # random subset of `take` examples inside each puzzle: sort random keys within each puzzle's segment
            seg = np.repeat(np.arange(sizes.shape[0]), sizes)
            keys = rng.random(seg.shape[0])
            offset = np.repeat(np.cumsum(sizes) - sizes, sizes)
            within = np.arange(seg.shape[0]) - offset
            ranked = np.lexsort((keys, seg))  # per segment, its positions ordered by key
            rank_in_seg = np.empty_like(ranked)
            rank_in_seg[ranked] = np.arange(ranked.shape[0]) - offset
            keep = ranked[rank_in_seg[ranked] < take[seg[ranked]]]
            self._cache = {k: v for k, v in self._cache.items() if k == e - 1}  # a batch spans <= 2 epochs mostly
            self._cache[e] = (starts[seg[keep]] + within[keep], puzzles[seg[keep]])
        return self._cache[e]

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Stream positions [lo, hi): (example indices, puzzle indices)."""
        self._plan_to(self.num_epochs, hi)
        e0 = int(np.searchsorted(self.starts[:self.planned + 1], lo, side="right")) - 1
        ex, pz = [], []
        e = e0
        while lo < hi:
            first = int(self.starts[e])
            plan_ex, plan_pz = self.epoch_plan(e)
            a, b = lo - first, min(hi, int(self.starts[e + 1])) - first
            ex.append(plan_ex[a:b])
            pz.append(plan_pz[a:b])
            lo = first + b
            e += 1
        return np.concatenate(ex), np.concatenate(pz)

    def epoch_of(self, pos: int) -> int:
        """Epoch (0-based in the iteration) of stream position `pos`."""
        self._plan_to(self.num_epochs, pos + 1)
        return int(np.searchsorted(self.starts[:self.planned + 1], pos, side="right")) - 1


class TrainSampler:
    """Seeded, exactly resumable training batches with the reference semantics (module docstring)."""

    def __init__(self, split: SplitData, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 epochs_per_iter: int = 1):
        self.split = split
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = _local_size(self.global_batch_size, rank, world_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        if int(epochs_per_iter) < 1:
            raise HrmkitError(f"epochs per iteration must be >= 1, got {epochs_per_iter}")
        self.epochs_per_iter = int(epochs_per_iter)
        self._iteration = 0
        self._step = 0
        self._plans: dict[int, list[_SetIteration]] = {}
        if not any(p.has_batch(0) for p in self._plan(0)):
            raise HrmkitError(
                f"{split.path}: an iteration of {self.epochs_per_iter} epoch(s) over {split.num_groups} groups "
                f"cannot fill one batch of {self.global_batch_size} examples; lower the global batch size"
            )

    # --- plan -------------------------------------------------------------------------------------------
    def _plan(self, iteration: int) -> list[_SetIteration]:
        if iteration not in self._plans:
            E = self.epochs_per_iter
            self._plans = {k: v for k, v in self._plans.items() if k == iteration - 1}
            self._plans[iteration] = [_SetIteration(arrs, i, self.seed, iteration * E, E, self.global_batch_size)
                                      for i, arrs in enumerate(self.split.sets.values())]
        return self._plans[iteration]

    def batches_in_iteration(self, iteration: int) -> int:
        """Batches iteration `iteration` (0-based) yields, over every set."""
        return sum(p.num_batches for p in self._plan(iteration))

    def total_batches(self, iterations: int, cap: int | None = None) -> int:
        """Batches yielded by the first `iterations` iterations; with `cap`, counting stops once `cap` is
        reached (the result is exact below `cap`, and >= `cap` otherwise), so only the epochs needed are planned."""
        total = 0
        for i in range(iterations):
            if cap is not None and total >= cap:
                break
            plans = self._plans.get(i) or [
                _SetIteration(arrs, k, self.seed, i * self.epochs_per_iter, self.epochs_per_iter, self.global_batch_size)
                for k, arrs in enumerate(self.split.sets.values())]
            for p in plans:
                total += p.num_batches if cap is None else p.batches_upto(cap - total)
                if cap is not None and total >= cap:
                    break
        return total

    @property
    def batches_per_epoch(self) -> int:
        """Batches per epoch in the current iteration (rounded, at least 1): for display. Extrapolated from the
        epochs planned so far (exact once the iteration is planned: see `_SetIteration`)."""
        return max(1, round(sum(p.estimated_batches() for p in self._plan(self._iteration)) / self.epochs_per_iter))

    @property
    def iteration(self) -> int:
        return self._iteration

    @property
    def step(self) -> int:
        return self._step

    @property
    def epoch(self) -> int:
        """Epoch of the next batch's last example."""
        return self._locate(self._iteration, self._step)[1]

    def _locate(self, iteration: int, step: int) -> tuple[_SetIteration, int, int, int]:
        """(set plan, global epoch, step in epoch, batch index inside the set) of batch `step` of `iteration`.
        IndexError when the iteration has no such batch."""
        B = self.global_batch_size
        for plan in self._plan(iteration):
            if plan.has_batch(step):
                e = plan.epoch_of((step + 1) * B - 1)
                return plan, iteration * self.epochs_per_iter + e, step - int(plan.starts[e]) // B, step
            step -= plan.num_batches
        raise IndexError(step)

    def _batch(self, plan: _SetIteration, b: int) -> Batch:
        lo = b * self.global_batch_size + self.rank * self.local_batch_size
        ex, puz = plan.rows(lo, lo + self.local_batch_size)
        a = plan.arrs
        return collate(self.split.metadata, a.inputs[ex], a.labels[ex], a.puzzle_identifiers[puz], self.local_batch_size)

    def __iter__(self) -> Iterator[tuple[int, int, Batch]]:
        while True:
            it, step = self._iteration, self._step
            try:
                plan, epoch, epoch_step, b = self._locate(it, step)
            except IndexError:  # past the iteration's last batch (also a restored state at its very end)
                if step == 0:
                    raise HrmkitError(f"{self.split.path}: iteration {it} cannot fill one batch of "
                                      f"{self.global_batch_size}") from None
                self._iteration, self._step = it + 1, 0
                continue
            batch = self._batch(plan, b)
            self._iteration, self._step = (it, step + 1) if self._exists(it, step + 1) else (it + 1, 0)
            yield epoch, epoch_step, batch

    def _exists(self, iteration: int, step: int) -> bool:
        try:
            self._locate(iteration, step)
        except IndexError:
            return False
        return True

    # --- resume -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position of the next batch plus the settings it is only meaningful with."""
        return {
            "iteration": self._iteration,
            "step": self._step,
            "epoch": self._iteration * self.epochs_per_iter,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "world_size": self.world_size,
            "num_groups": self.split.num_groups,
            "epochs_per_iter": self.epochs_per_iter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; HrmkitError when it was saved with another seed, batch size, iteration length
        or dataset."""
        mine = {"seed": self.seed, "global_batch_size": self.global_batch_size, "num_groups": self.split.num_groups,
                "epochs_per_iter": self.epochs_per_iter}
        for key, value in mine.items():
            if key in state and int(state[key]) != value:
                raise HrmkitError(f"sampler state field {key!r} is {state[key]!r}, this sampler has {value!r}")
        if "iteration" not in state or "step" not in state:
            raise HrmkitError(f"sampler state lacks 'iteration' or 'step' (written by an older hrmkit?): {sorted(state)}")
        iteration, step = int(state["iteration"]), int(state["step"])
        if iteration < 0 or step < 0:
            raise HrmkitError(f"sampler state has a negative position: iteration {iteration}, step {step}")
        self._iteration, self._step = iteration, step


def test_batches(
    split: SplitData, batch_size: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[Batch, int]]:
    """All examples in order, `batch_size` (global) per batch, last one padded; yields (batch, valid rows)."""
    local = _local_size(int(batch_size), rank, world_size)
    for arrs in split.sets.values():
        total = arrs.num_examples
        for start in range(0, total, batch_size):
            lo = min(total, start + rank * local)
            hi = min(total, start + (rank + 1) * local)
            idx = np.arange(lo, hi)
            puz = np.searchsorted(arrs.puzzle_indices, idx, side="right") - 1
            batch = collate(split.metadata, arrs.inputs[lo:hi], arrs.labels[lo:hi], arrs.puzzle_identifiers[puz], local)
            yield batch, hi - lo


test_batches.__test__ = False  # not a pytest test, despite the name
