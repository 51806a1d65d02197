"""Dataset format (writer/loader, reference interop), dihedral transforms and the batch sampler."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hrmkit.data import sampler as smp
from hrmkit.data.augment import DIHEDRAL_INVERSE, dihedral_transform, inverse_dihedral, inverse_dihedral_transform
from hrmkit.data.format import (
    FIELDS, DatasetMetadata, SplitWriter, load_identifiers, load_split, write_identifiers,
)
from hrmkit.errors import HrmkitError

REFERENCE_FIELDS = ["pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                    "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "sets"]


def _write(root: Path, groups, seq_len=4, vocab=10, split="train", num_ids=None, **kw):
    """groups: list of list of (n_examples, identifier); token values encode (group, puzzle, example)."""
    w = SplitWriter(root / split, seq_len=seq_len)
    ex = 0
    for g, puzzles in enumerate(groups):
        batch = []
        for p, (n, pid) in enumerate(puzzles):
            x = np.zeros((n, seq_len), np.uint8)
            x[:, 0] = g % vocab
            x[:, 1] = p % vocab
            x[:, 2] = np.arange(n) % vocab
            x[:, 3] = 1 + (ex + np.arange(n)) % (vocab - 1)
            ex += n
            batch.append((x, x.copy(), pid))
        w.add_group(batch)
    ids = num_ids or 1 + max(pid for ps in groups for _, pid in ps)
    return w.finalize(vocab_size=vocab, num_puzzle_identifiers=ids, **kw)


# --- format -------------------------------------------------------------------------------------------------
def test_writer_roundtrip_and_metadata(tmp_path):
    groups = [[(1, 1), (2, 2)], [(3, 3)], [(1, 4), (1, 5), (2, 6)]]
    meta = _write(tmp_path, groups, task="arc", extra={"k": 1})
    write_identifiers(tmp_path, ["<blank>", "a", "b", "c", "d", "e", "f"])
    split = load_split(tmp_path, "train")
    a = split.sets["all"]
    assert split.metadata == meta
    assert (a.num_groups, a.num_puzzles, a.num_examples) == (3, 6, 10)
    assert a.group_indices.tolist() == [0, 2, 3, 6]
    assert a.puzzle_indices.tolist() == [0, 1, 3, 6, 7, 8, 10]
    assert a.puzzle_identifiers.tolist() == [1, 2, 3, 4, 5, 6]
    assert meta.total_groups == 3 and meta.mean_puzzle_examples == pytest.approx(10 / 6)
    assert isinstance(a.inputs, np.memmap)
    for k, (dt, nd) in FIELDS.items():
        arr = np.load(tmp_path / "train" / f"all__{k}.npy")
        assert arr.dtype == dt and arr.ndim == nd
    assert load_identifiers(tmp_path)[0] == "<blank>"
    assert not list((tmp_path / "train").glob(".*spool"))


def test_reference_loader_reads_our_dataset(tmp_path):
    """A small re-implementation of the reference loader's expectations (puzzle_dataset.py + common.py)."""
    _write(tmp_path, [[(1, 0)], [(2, 0), (1, 0)]], task="sudoku", extra={"box": [2, 2]})
    meta = json.loads((tmp_path / "train" / "dataset.json").read_text())
    ref = {k: meta[k] for k in REFERENCE_FIELDS}  # pydantic extra=ignore: other keys are dropped
    assert isinstance(ref["ignore_label_id"], (int, type(None))) and isinstance(ref["sets"], list)
    assert isinstance(ref["mean_puzzle_examples"], float)
    for set_name in ref["sets"]:
        data = {f: np.load(tmp_path / "train" / f"{set_name}__{f}.npy", mmap_mode="r" if f in ("inputs", "labels") else None)
                for f in ["inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"]}
        assert data["inputs"].shape[1] == ref["seq_len"]
        assert data["group_indices"].size - 1 == ref["total_groups"]
        assert data["puzzle_indices"][-1] == len(data["inputs"])
        assert data["puzzle_identifiers"].dtype == np.int32


def test_load_reference_layout(tmp_path):
    """A dataset laid out exactly as the reference builder writes it (json.dump of model_dump, np.save)."""
    d = tmp_path / "ref" / "test"
    d.mkdir(parents=True)
    inputs = np.random.default_rng(0).integers(1, 11, size=(3, 81)).astype(np.uint8)
    results = {
        "inputs": inputs, "labels": inputs.copy(),
        "group_indices": np.array([0, 1, 2, 3], np.int32),
        "puzzle_indices": np.array([0, 1, 2, 3], np.int32),
        "puzzle_identifiers": np.array([0, 0, 0], np.int32),
    }
    for k, v in results.items():
        np.save(d / f"all__{k}.npy", v)
    meta = dict(seq_len=81, vocab_size=11, pad_id=0, ignore_label_id=0, blank_identifier_id=0,
                num_puzzle_identifiers=1, total_groups=3, mean_puzzle_examples=1, sets=["all"])
    (d / "dataset.json").write_text(json.dumps(meta))
    (tmp_path / "ref" / "identifiers.json").write_text(json.dumps(["<blank>"]))
    split = load_split(tmp_path / "ref", "test")
    assert split.metadata.task == "sudoku" and split.metadata.seq_len == 81  # inferred from the token layout
    assert split.sets["all"].num_examples == 3
    batches = list(smp.test_batches(split, 2))
    assert [n for _, n in batches] == [2, 1]


@pytest.mark.parametrize("case,needle", [
    ("missing_file", "all__labels.npy"),
    ("dtype", "dtype int64"),
    ("offsets", "puzzle_indices"),
    ("groups", "group_indices"),
    ("json_field", "vocab_size"),
    ("token", "vocab_size"),
    ("total_groups", "total_groups"),
    ("identifier", "identifier"),
])
def test_load_split_errors(tmp_path, case, needle):
    _write(tmp_path, [[(1, 0)], [(2, 0)], [(1, 0)]])
    d = tmp_path / "train"
    if case == "missing_file":
        (d / "all__labels.npy").unlink()
    elif case == "dtype":
        np.save(d / "all__puzzle_indices.npy", np.array([0, 1, 3, 4], np.int64))
    elif case == "offsets":
        np.save(d / "all__puzzle_indices.npy", np.array([0, 2, 1, 4], np.int32))
    elif case == "groups":
        np.save(d / "all__group_indices.npy", np.array([0, 1, 2, 5], np.int32))
    elif case == "json_field":
        meta = json.loads((d / "dataset.json").read_text())
        del meta["vocab_size"]
        (d / "dataset.json").write_text(json.dumps(meta))
    elif case == "token":
        x = np.load(d / "all__inputs.npy")
        x[2, 1] = 200
        np.save(d / "all__inputs.npy", x)
    elif case == "total_groups":
        meta = json.loads((d / "dataset.json").read_text())
        meta["total_groups"] = 7
        (d / "dataset.json").write_text(json.dumps(meta))
    elif case == "identifier":
        np.save(d / "all__puzzle_identifiers.npy", np.array([0, 5, 0], np.int32))
    with pytest.raises(HrmkitError) as e:
        load_split(tmp_path, "train")
    assert needle in str(e.value)


def test_metadata_ignores_unknown_keys():
    obj = dict(pad_id=0, ignore_label_id=None, blank_identifier_id=0, vocab_size=5, seq_len=4,
               num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1.0, sets=["all"], future="x")
    m = DatasetMetadata.from_json(obj)
    assert m.ignore_label_id is None and m.task is None and m.extra == {}


# --- dihedral -----------------------------------------------------------------------------------------------
def test_dihedral_reference_numbering_and_inverse():
    g = np.arange(12).reshape(3, 4)
    expected = [g, np.rot90(g), np.rot90(g, 2), np.rot90(g, 3), np.fliplr(g), np.flipud(g), g.T,
                np.fliplr(np.rot90(g))]
    for t in range(8):
        out = dihedral_transform(g, t)
        assert np.array_equal(out, expected[t])
        assert np.array_equal(inverse_dihedral_transform(out, t), g)
        assert np.array_equal(dihedral_transform(out, inverse_dihedral(t)), g)
    assert list(DIHEDRAL_INVERSE) == [0, 3, 2, 1, 4, 5, 6, 7]
    sq = np.arange(9).reshape(3, 3)
    assert np.array_equal(dihedral_transform(sq, 7), sq[::-1, ::-1].T)  # anti-transpose
    assert len({dihedral_transform(sq, t).tobytes() for t in range(8)}) == 8
    with pytest.raises(ValueError):
        dihedral_transform(g, 8)
    batch = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # any leading axes: every grid transformed alike
    for t in range(8):
        out = dihedral_transform(batch, t)
        assert np.array_equal(out.reshape(-1, *out.shape[-2:]), np.stack([dihedral_transform(x, t) for x in batch.reshape(-1, 4, 5)]))
        assert np.array_equal(inverse_dihedral_transform(out, t), batch)


# --- sampler ------------------------------------------------------------------------------------------------
@pytest.fixture()
def multi(tmp_path):
    """11 groups, 1-3 puzzles each, puzzles of 1-3 examples (like ARC); ignore label 0 in token column 0."""
    rng = np.random.default_rng(0)
    groups = [[(int(rng.integers(1, 4)), 1 + g) for _ in range(int(rng.integers(1, 4)))] for g in range(11)]
    _write(tmp_path, groups, vocab=20, num_ids=12)
    return load_split(tmp_path, "train")


@pytest.fixture()
def single(tmp_path):
    """37 groups of 5 one-example versions (Sudoku-like)."""
    _write(tmp_path, [[(1, 0)] * 5 for _ in range(37)], vocab=40)
    return load_split(tmp_path, "train")


def _rows(batch):
    return [tuple(r) for r in batch["inputs"].tolist()]


def test_train_sampler_reference_semantics_single(single):
    s = smp.TrainSampler(single, global_batch_size=8, seed=3)
    assert s.batches_per_epoch == 37 // 8
    it = iter(s)
    for epoch in range(3):
        seen_groups = []
        for step in range(s.batches_per_epoch if epoch == 0 else 4):
            e, st, b = next(it)
            assert (e, st) == (epoch, step)
            assert b["inputs"].dtype == torch.int32 and b["inputs"].shape == (8, 4)
            assert b["labels"].dtype == torch.int32 and b["puzzle_identifiers"].shape == (8,)
            seen_groups += b["inputs"][:, 0].tolist()
        assert len(seen_groups) == len(set(seen_groups)) == 32  # each group at most once, last partial dropped
    # labels equal to ignore_label_id (0) become -100
    e, st, b = next(iter(smp.TrainSampler(single, 8, 3)))
    assert ((b["labels"] == -100) == (b["inputs"] == 0)).all()


def test_train_sampler_multi_example_puzzles(multi):
    a = multi.sets["all"]
    s = smp.TrainSampler(multi, global_batch_size=4, seed=1)
    epochs = {}
    it = iter(s)
    while True:
        e, st, b = next(it)
        if e == 3:
            break
        epochs.setdefault(e, []).append(b)
    for e, batches in epochs.items():
        groups_puzzles = {}
        for b in batches:
            pid = b["puzzle_identifiers"].tolist()
            for row, ident in zip(b["inputs"].tolist(), pid):
                g, p, x = row[0], row[1], row[2]
                assert ident == 1 + g  # identifier matches the group's puzzles
                groups_puzzles.setdefault(g, set()).add(p)
                assert x < 3 and p < a.group_indices[g + 1] - a.group_indices[g]
        assert all(len(v) == 1 for v in groups_puzzles.values())  # one version per group per epoch
        rows = [r for b in batches for r in _rows(b)]
        assert len(rows) == len(set(rows))  # no example twice in an epoch


def test_train_sampler_deterministic_and_resumable(multi):
    a = smp.TrainSampler(multi, 4, seed=7)
    b = smp.TrainSampler(multi, 4, seed=7)
    first = [next(it) for it in [iter(a)] for _ in range(10)]
    second = [next(it) for it in [iter(b)] for _ in range(10)]
    assert all(x[:2] == y[:2] and _rows(x[2]) == _rows(y[2]) for x, y in zip(first, second))
    c = smp.TrainSampler(multi, 4, seed=8)
    third = [next(it) for it in [iter(c)] for _ in range(10)]
    assert any(_rows(x[2]) != _rows(y[2]) for x, y in zip(first, third))

    # interrupt mid-epoch, restore into a fresh sampler, compare with an uninterrupted run
    ref = smp.TrainSampler(multi, 4, seed=7)
    ref_it = iter(ref)
    expected = [next(ref_it) for _ in range(25)]
    run = smp.TrainSampler(multi, 4, seed=7)
    run_it = iter(run)
    got = [next(run_it) for _ in range(6)]
    state = json.loads(json.dumps(run.state_dict()))  # must survive JSON
    assert set(state) >= {"epoch", "step"}
    resumed = smp.TrainSampler(multi, 4, seed=7)
    resumed.load_state_dict(state)
    res_it = iter(resumed)
    got += [next(res_it) for _ in range(19)]
    for (e1, s1, b1), (e2, s2, b2) in zip(expected, got):
        assert (e1, s1) == (e2, s2)
        for k in b1:
            assert torch.equal(b1[k], b2[k])
    with pytest.raises(HrmkitError):
        smp.TrainSampler(multi, 4, seed=99).load_state_dict(state)


def test_train_sampler_world_size_slices(single):
    full = next(iter(smp.TrainSampler(single, 8, seed=0)))[2]
    parts = [next(iter(smp.TrainSampler(single, 8, seed=0, rank=r, world_size=2)))[2] for r in range(2)]
    assert torch.equal(torch.cat([p["inputs"] for p in parts]), full["inputs"])
    with pytest.raises(HrmkitError):
        smp.TrainSampler(single, 8, seed=0, rank=0, world_size=3)
    with pytest.raises(HrmkitError):
        smp.TrainSampler(single, 1000, seed=0)  # cannot fill a single batch


def test_test_batches_order_and_padding(multi):
    a = multi.sets["all"]
    batches = list(smp.test_batches(multi, 4))
    valid = [n for _, n in batches]
    assert sum(valid) == a.num_examples and all(v == 4 for v in valid[:-1])
    rows = torch.cat([b["inputs"][:n] for b, n in batches])
    assert torch.equal(rows, torch.from_numpy(np.array(a.inputs)).int())
    last, n = batches[-1]
    assert (last["inputs"][n:] == 0).all() and (last["labels"][n:] == -100).all()
    assert (last["puzzle_identifiers"][n:] == multi.metadata.blank_identifier_id).all()
    ids = torch.cat([b["puzzle_identifiers"][:n] for b, n in batches])
    expected = np.repeat(a.puzzle_identifiers, np.diff(a.puzzle_indices))
    assert ids.tolist() == expected.tolist()
