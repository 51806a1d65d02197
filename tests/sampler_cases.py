"""Synthetic splits and a batch digest for `tests/test_sampler_lazy.py`: the batches of `TrainSampler` for fixed
seeds, recorded in `fixtures/sampler/batches.json` with the sampler that planned every epoch of an iteration at
start-up, so the lazy planner can be checked to yield the very same batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hrmkit.data.format import SplitWriter, load_split

SEQ = 3
# name: ([groups], puzzles per group (max), examples per puzzle (max), batch, epochs_per_iter, world size)
CASES = {
    "arc_like": ([12], 5, 4, 16, 7, 1),
    "small_groups": ([5], 3, 3, 8, 4, 1),
    "single_examples": ([20], 4, 1, 8, 5, 1),
    "world2_rank1": ([10], 3, 5, 12, 3, 2),
    "big_puzzles": ([6], 2, 9, 4, 6, 1),
}
BATCHES = 60


def build(root: Path, name: str):
    """Write case `name` under `root` and load its train split."""
    groups, max_p, max_e = CASES[name][:3]
    rng = np.random.default_rng(sum(map(ord, name)))
    out = root / name
    pid, row = 1, 0
    writers = []
    for s, g in enumerate(groups):
        w = SplitWriter(out / "train", seq_len=SEQ, set_name=f"s{s}")
        for _ in range(g):
            puzzles = []
            for _ in range(int(rng.integers(1, max_p + 1))):
                n = int(rng.integers(1, max_e + 1)) if max_e > 1 else 1
                x = np.array([[r % 250 + 1, s + 1, r // 250 + 1] for r in range(row, row + n)], dtype=np.uint8)
                puzzles.append((x, x.copy(), pid))
                pid += 1
                row += n
            w.add_group(puzzles)
        writers.append(w)
    for w in writers:
        w.finalize(vocab_size=256, num_puzzle_identifiers=pid, ignore_label_id=None)
    return load_split(out, "train")


def digest(sampler, n: int = BATCHES) -> dict:
    """Per batch: (epoch, step in epoch, sha1 of inputs + labels + identifiers); and the state after n batches."""
    out = []
    it = iter(sampler)
    for _ in range(n):
        e, st, b = next(it)
        h = hashlib.sha1()
        for k in ("inputs", "labels", "puzzle_identifiers"):
            h.update(b[k].numpy().tobytes())
        out.append([int(e), int(st), h.hexdigest()[:16]])
    return {"batches": out, "state": sampler.state_dict(),
            "per_iteration": [sampler.batches_in_iteration(i) for i in range(3)],
            "total": sampler.total_batches(4), "total_capped": sampler.total_batches(4, cap=5),
            "batches_per_epoch": sampler.batches_per_epoch}
