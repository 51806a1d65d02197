"""Whole-run step count and batching against the references: iterations of eval_interval epochs with
one partial batch dropped per iteration, total_steps by the reference formula, the learning rate at step + 1.

`fixtures/reference/iteration_batches.json` holds batches per iteration counted by running the references'
own PuzzleDataset (sapientinc/HRM and TinyRecursiveModels gave the same counts) on datasets of uniform puzzle
size, where the count does not depend on their unseeded RNG (see fixtures/reference/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrmkit.data.format import SplitWriter, load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.train.lr_schedule import lr_at, lr_for_update, reference_step_plan, reference_total_steps

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "reference" / "iteration_batches.json").read_text())


def _dataset(root: Path, groups: int, puzzles: int, size: int, vary: bool = False):
    """`groups` groups of `puzzles` versions of `size` examples (with `vary`, sizes 1..size by group); token 0 of
    every row is its group, token 1 its row number."""
    w = SplitWriter(root / "train", seq_len=4)
    row = 0
    for g in range(groups):
        n = 1 + g % size if vary else size
        versions = []
        for _ in range(puzzles):
            x = np.zeros((n, 4), np.uint8)
            x[:, 0], x[:, 1] = g, (row + np.arange(n)) % 250
            row += n
            versions.append((x, x.copy(), 0))
        w.add_group(versions)
    w.finalize(vocab_size=256, num_puzzle_identifiers=1, ignore_label_id=None)
    return load_split(root, "train")


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: "G{groups}xP{puzzles_per_group}xS{examples_per_puzzle}-"
                         "B{global_batch_size}-E{epochs_per_iter}".format(**c))
def test_batches_and_steps_equal_the_reference(case, tmp_path):
    split = _dataset(tmp_path, case["groups"], case["puzzles_per_group"], case["examples_per_puzzle"])
    B, E, epochs = case["global_batch_size"], case["epochs_per_iter"], case["epochs"]
    sampler = TrainSampler(split, B, seed=3, epochs_per_iter=E)
    iters = len(case["batches_per_iteration"])
    assert [sampler.batches_in_iteration(i) for i in range(iters)] == case["batches_per_iteration"]
    meta = split.metadata
    assert reference_total_steps(epochs, meta.total_groups, meta.mean_puzzle_examples, B) == case["total_steps"]
    plan = reference_step_plan(sampler, epochs=epochs, eval_interval=E, total_groups=meta.total_groups,
                               mean_puzzle_examples=meta.mean_puzzle_examples)
    assert plan.schedule_steps == case["total_steps"]
    assert plan.run_steps == min(case["total_steps"], sum(case["batches_per_iteration"]))
    assert plan.eval_every == case["batches_per_iteration"][0]
    # the yielded stream has exactly that many batches per iteration, then the next iteration starts
    it = iter(sampler)
    for _ in range(sum(case["batches_per_iteration"])):
        next(it)
    assert sampler.state_dict()["iteration"] == iters and sampler.state_dict()["step"] == 0


@pytest.mark.parametrize("size,B,E,vary", [(1, 7, 3, False), (3, 8, 4, True), (4, 5, 2, True), (2, 64, 30, False)])
def test_every_group_is_seen_in_every_epoch_but_the_dropped_tail(size, B, E, vary, tmp_path):
    """Within an iteration each epoch draws every group once; only the iteration's last partial batch is lost
    (so at most the groups of one batch go unseen in the last epoch, none in the others)."""
    groups = 11
    split = _dataset(tmp_path, groups, 2, size, vary)
    sampler = TrainSampler(split, B, seed=1, epochs_per_iter=E)
    seen: dict[int, set] = {}
    it = iter(sampler)
    for _ in range(sampler.batches_in_iteration(0)):
        epoch, _, batch = next(it)
        # the epoch reported is that of the batch's last row; rows before it may belong to the previous epoch
        for g in batch["inputs"][:, 0].tolist():
            seen.setdefault(epoch, set()).add(g)
    union = set().union(*seen.values())
    assert union == set(range(groups))  # no group unseen over an iteration
    assert sampler.iteration == 1


def test_iteration_is_seeded_and_resumes_exactly(tmp_path):
    split = _dataset(tmp_path, 9, 3, 3, vary=True)
    run = lambda s, n: [b["inputs"].numpy().copy() for _, _, b in (next(it) for it in [iter(s)] for _ in range(n))]
    a = TrainSampler(split, 5, seed=4, epochs_per_iter=3)
    expected = run(a, 30)
    b = TrainSampler(split, 5, seed=4, epochs_per_iter=3)
    got = run(b, 13)
    state = json.loads(json.dumps(b.state_dict()))
    c = TrainSampler(split, 5, seed=4, epochs_per_iter=3)
    c.load_state_dict(state)
    got += run(c, 17)
    assert all(np.array_equal(x, y) for x, y in zip(expected, got))
    assert any(not np.array_equal(x, y) for x, y in zip(expected, run(TrainSampler(split, 5, seed=5, epochs_per_iter=3), 30)))
    with pytest.raises(Exception, match="epochs_per_iter"):
        TrainSampler(split, 5, seed=4, epochs_per_iter=2).load_state_dict(state)


def test_learning_rate_is_that_of_step_plus_one():
    kw = dict(warmup_steps=10, total_steps=100, min_ratio=0.1)
    assert lr_for_update("cosine", 0, 1.0, **kw) == pytest.approx(0.1)  # the reference's first update: step 1
    assert lr_for_update("cosine", 99, 1.0, **kw) == pytest.approx(lr_at("cosine", 100, 1.0, **kw)) == pytest.approx(0.1)
    assert lr_for_update("cosine", 9, 1.0, **kw) == pytest.approx(1.0)


def test_a_small_run_takes_the_reference_step_count(tmp_path):
    """A real `hrm train` run: its optimizer steps are min(total_steps formula, batches of its iterations), the
    schedule is sized by the formula and the first update uses warmup step 1."""
    from hrmkit.presets import resolve_config
    from hrmkit.train.data import load_run_data, make_sampler, step_budget
    from hrmkit.train.loop import train

    _dataset(tmp_path / "d", 13, 2, 1)
    (tmp_path / "d" / "test").mkdir()
    w = SplitWriter(tmp_path / "d" / "test", seq_len=4)
    w.add_group([(np.ones((3, 4), np.uint8), np.ones((3, 4), np.uint8), 0)])
    w.finalize(vocab_size=256, num_puzzle_identifiers=1, ignore_label_id=None)
    steps = []
    cfg = resolve_config(preset="demo", overrides=[
        f"data_path={tmp_path / 'd'}", f"out_dir={tmp_path / 'runs'}", "arch.hidden_size=16", "arch.num_heads=2",
        "arch.H_layers=1", "arch.L_layers=1", "arch.halt_max_steps=1", "arch.puzzle_emb_ndim=0",
        "global_batch_size=4", "epochs=9", "eval_interval=3", "max_steps=null", "max_time_s=null",
        "lr_warmup_steps=4", "lr=1.0", "log_every=1", "checkpoint_every=100"])
    # 13 groups x 3 epochs = 39 rows per iteration -> 9 batches; 3 iterations -> 27; formula int(9*13/4) = 29
    run = train(cfg, on_step=lambda s: steps.append((s.step, s.optimizers[0].param_groups[0]["lr"]))).run_dir
    assert [s for s, _ in steps] == list(range(1, 28))
    assert steps[0][1] == pytest.approx(0.25)
    assert step_budget(make_sampler(load_run_data(cfg).train, cfg), cfg).schedule_steps == 29
    assert json.loads((run / "status.json").read_text())["global_step"] == 27
