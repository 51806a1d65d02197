"""Batching with the references' semantics (sapientinc/HRM `puzzle_dataset.py`), fully seeded and resumable.

Training (`TrainSampler`), one epoch = one pass over the groups of every set (sets in metadata order):
  1. shuffle the groups of the set;
  2. for each group in that order draw one of its puzzles (augmented versions) uniformly at random;
  3. put the puzzle's examples into the current batch - if they do not all fit, a random subset of the
     remaining size (drawn without replacement) is taken and the rest of that puzzle is dropped;
  4. a batch is emitted when it holds exactly `global_batch_size` examples; the last partial batch of a set
     is dropped (a batch never mixes sets).
The reference draws step 3's subset from numpy's unseeded global RNG; here every draw comes from the epoch's
generator `np.random.default_rng([seed, epoch])`, so an epoch is a pure function of (data, seed, epoch) and a
sampler resumes exactly from `state_dict()` = {epoch, step} without saving any RNG state.

With `world_size > 1` every rank computes the same global batch and keeps its slice
`[rank * B/world, (rank + 1) * B/world)` (reference behaviour; global_batch_size must divide evenly).

Evaluation (`test_batches`): walk every example of every set in order, `batch_size` at a time (global; each
rank keeps its slice), pad the last batch with PAD inputs, ignored labels and the blank puzzle identifier.

Batches are dicts of torch.int32 tensors: `inputs` [B, seq_len], `labels` [B, seq_len] (labels equal to
metadata.ignore_label_id, and padding rows, become IGNORE_LABEL_ID = -100), `puzzle_identifiers` [B].

Public API
----------
- `IGNORE_LABEL_ID = -100` (defined in data/format.py)
- `TrainSampler(split, global_batch_size, seed, rank=0, world_size=1)`; `iter(sampler)` yields
  `(epoch, step_in_epoch, batch)` forever; `state_dict() -> {"epoch", "step", "seed", "global_batch_size",
  "world_size", "num_groups"}` gives the position of the NEXT batch; `load_state_dict(state)`;
  `batches_per_epoch` (of the epoch the next batch belongs to; constant across epochs when every puzzle
  has a single example, as for Sudoku and mazes); `epoch`, `step` properties.
  HrmkitError if an epoch cannot fill a single batch, or on a state from another configuration.
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


def _plan_set(
    rng: np.random.Generator, puzzle_indices: np.ndarray, group_indices: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of one set: (example indices, puzzle indices), both int64 [num_batches * batch_size]."""
    num_groups = group_indices.shape[0] - 1
    gi = group_indices.astype(np.int64)
    pi = puzzle_indices.astype(np.int64)
    order = rng.permutation(num_groups)
    puzzles = rng.integers(gi[order], gi[order + 1])  # one version per group, uniform
    starts = pi[puzzles]
    sizes = pi[puzzles + 1] - starts
    # How many examples each chosen puzzle contributes: all, or what is left of the current batch.
    if int(sizes.max()) == 1:
        take = sizes
    else:
        take = np.empty_like(sizes)
        fill = 0
        for i, s in enumerate(sizes.tolist()):
            t = min(s, batch_size - fill)
            take[i] = t
            fill = (fill + t) % batch_size
    # Random subset of `take` examples inside each puzzle: sort random keys within each puzzle's segment.
    seg = np.repeat(np.arange(sizes.shape[0]), sizes)
    keys = rng.random(seg.shape[0])
    within = np.arange(seg.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ranked = np.lexsort((keys, seg))  # per segment, its offsets ordered by key
    rank_in_seg = np.empty_like(ranked)
    rank_in_seg[ranked] = np.arange(ranked.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    keep_pos = ranked[rank_in_seg[ranked] < take[seg[ranked]]]  # positions kept, grouped by segment in key order
    examples = starts[seg[keep_pos]] + within[keep_pos]
    puzzle_of = puzzles[seg[keep_pos]]
    usable = (examples.shape[0] // batch_size) * batch_size  # drop the last partial batch
    return examples[:usable], puzzle_of[:usable]


class TrainSampler:
    """Seeded, exactly resumable training batches with the reference semantics (module docstring)."""

    def __init__(self, split: SplitData, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.split = split
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = _local_size(self.global_batch_size, rank, world_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self._epoch = 0
        self._step = 0
        self._plan_epoch: int | None = None
        self._plan: list[tuple[str, np.ndarray, np.ndarray]] = []
        if self.batches_per_epoch == 0:
            raise HrmkitError(
                f"{split.path}: an epoch of {split.num_groups} groups cannot fill one batch of "
                f"{self.global_batch_size} examples; lower the global batch size"
            )

    # --- plan -------------------------------------------------------------------------------------------
    def _epoch_plan(self, epoch: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Per set: (set name, example indices, puzzle indices) of the whole epoch, cut into batches later."""
        if self._plan_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._plan = [
                (name, *_plan_set(rng, arrs.puzzle_indices, arrs.group_indices, self.global_batch_size))
                for name, arrs in self.split.sets.items()
            ]
            self._plan_epoch = epoch
        return self._plan

    def _num_batches(self, epoch: int) -> int:
        return sum(ex.shape[0] for _, ex, _ in self._epoch_plan(epoch)) // self.global_batch_size

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches of the epoch the next batch comes from."""
        return self._num_batches(self._epoch)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def step(self) -> int:
        return self._step

    def _batch(self, epoch: int, step: int) -> Batch:
        B = self.global_batch_size
        for name, ex, puz in self._epoch_plan(epoch):
            n = ex.shape[0] // B
            if step < n:
                lo = step * B + self.rank * self.local_batch_size
                hi = lo + self.local_batch_size
                arrs = self.split.sets[name]
                e = ex[lo:hi]
                return collate(
                    self.split.metadata, arrs.inputs[e], arrs.labels[e],
                    arrs.puzzle_identifiers[puz[lo:hi]], self.local_batch_size,
                )
            step -= n
        raise IndexError(step)

    def __iter__(self) -> Iterator[tuple[int, int, Batch]]:
        while True:
            epoch, step = self._epoch, self._step
            n = self._num_batches(epoch)
            if n == 0:
                raise HrmkitError(f"{self.split.path}: epoch {epoch} cannot fill one batch of {self.global_batch_size}")
            if step >= n:  # a restored state at the very end of an epoch
                self._epoch, self._step = epoch + 1, 0
                continue
            batch = self._batch(epoch, step)
            self._epoch, self._step = (epoch, step + 1) if step + 1 < n else (epoch + 1, 0)
            yield epoch, step, batch

    # --- resume -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position of the next batch plus the settings it is only meaningful with."""
        return {
            "epoch": self._epoch,
            "step": self._step,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "world_size": self.world_size,
            "num_groups": self.split.num_groups,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; HrmkitError when it was saved with another seed, batch size or dataset."""
        mine = {"seed": self.seed, "global_batch_size": self.global_batch_size, "num_groups": self.split.num_groups}
        for key, value in mine.items():
            if key in state and int(state[key]) != value:
                raise HrmkitError(f"sampler state field {key!r} is {state[key]!r}, this sampler has {value!r}")
        if "epoch" not in state or "step" not in state:
            raise HrmkitError(f"sampler state lacks 'epoch' or 'step': {sorted(state)}")
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or step < 0:
            raise HrmkitError(f"sampler state has a negative position: epoch {epoch}, step {step}")
        self._epoch, self._step = epoch, step


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
