"""The lazily planned `TrainSampler` yields the very batches the eager planner did (fixture recorded with it
before the change: tests/sampler_cases.py), and plans only the epochs it needs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hrmkit.data.sampler import TrainSampler, _SetIteration
from sampler_cases import CASES, build, digest

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "sampler" / "batches.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_batches_equal_the_eager_planners(tmp_path, name):
    split = build(tmp_path, name)
    B, E, W = CASES[name][3:]
    for seed in (0, 5):
        got = digest(TrainSampler(split, B, seed=seed, rank=W - 1, world_size=W, epochs_per_iter=E))
        want = RECORDED[f"{name}/seed{seed}"]
        cap = 5
        assert min(got.pop("total_capped"), cap) == min(want.pop("total_capped"), cap)
        # batches_per_epoch is for display: extrapolated from the epochs planned so far, it may round otherwise
        assert abs(got.pop("batches_per_epoch") - want.pop("batches_per_epoch")) <= 1
        assert json.loads(json.dumps(got)) == want


def test_resume_mid_iteration_gives_the_same_batches(tmp_path):
    split = build(tmp_path, "arc_like")
    ref = TrainSampler(split, 16, seed=3, epochs_per_iter=7)
    it = iter(ref)
    first = [next(it)[2]["inputs"] for _ in range(30)]
    s = TrainSampler(split, 16, seed=3, epochs_per_iter=7)
    it2 = iter(s)
    for _ in range(17):
        next(it2)
    resumed = TrainSampler(split, 16, seed=3, epochs_per_iter=7)
    resumed.load_state_dict(s.state_dict())
    it3 = iter(resumed)
    assert all(np.array_equal(next(it3)[2]["inputs"], first[i]) for i in range(17, 30))


def test_start_up_plans_only_what_it_needs():
    """A long ARC-like iteration (120 groups x 1001 versions, 100000 epochs): counting the batches up to a cap
    and drawing the first batches plan a few epochs, where the eager planner took about a minute."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 6, 120 * 1001)
    arrs = SimpleNamespace(group_indices=np.arange(121) * 1001, puzzle_indices=np.concatenate([[0], np.cumsum(sizes)]))
    t0 = time.perf_counter()
    plan = _SetIteration(arrs, 0, 0, 0, 100000, 768)
    assert plan.batches_upto(20) >= 20 and plan.has_batch(3)
    assert plan.planned < 200
    assert 0.5 < plan.estimated_batches() / (100000 * 120 * 4 / 768) < 1.5
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_lower_bound_never_exceeds_the_count(tmp_path, name):
    split = build(tmp_path, name)
    arrs = next(iter(split.sets.values()))
    B, E = CASES[name][3:5]
    for seed in range(4):
        plan = _SetIteration(arrs, 0, seed, 0, E * 5, B)
        assert 0 <= plan.lower_bound() <= plan.num_batches
