"""The "grid" task (tasks.grid), the generic dataset writer (data.build) and `hrm data grid --from-jsonl`."""

import json

import numpy as np
import pytest

from hrmkit import tasks
from hrmkit.cli import main as hrm
from hrmkit.data.augment import dihedral_transform
from hrmkit.data.build import augmentation_seed, write_task_dataset
from hrmkit.data.format import load_identifiers, load_split
from hrmkit.errors import HrmkitError
from hrmkit.tasks.base import Task
from hrmkit.tasks.grid import GridTask, crop_canvas, encode_canvas

PLAIN = {"height": 3, "width": 3, "num_values": 5, "layout": "plain", "augmentations": ["dihedral", "colors"]}
CANVAS = {"height": 4, "width": 6, "num_values": 4, "layout": "canvas", "canvas": 7,
          "augmentations": ["dihedral", "colors"]}


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _grid(rng, h, w, v):
    return rng.integers(0, v, (h, w)).tolist()


def _build(tmp_path, train, test, *extra):
    tr, te = _write_jsonl(tmp_path / "train.jsonl", train), _write_jsonl(tmp_path / "test.jsonl", test)
    out = tmp_path / "out"
    rc = hrm(["data", "grid", "--from-jsonl", str(tr), "--test-jsonl", str(te), "--out", str(out), *extra])
    return rc, out


def _task(out):
    return tasks.of_metadata(load_split(out, "train").metadata)


# ------------------------------------------------------------------------------------------- building


def test_plain_layout(tmp_path, capsys):
    rng = np.random.default_rng(0)
    train = [{"input": _grid(rng, 2, 3, 4), "output": _grid(rng, 2, 3, 4)} for _ in range(5)]
    train[0]["output"][1][2] = 6  # the largest value: V = 7
    test = [{"input": _grid(rng, 2, 3, 4), "output": _grid(rng, 2, 3, 4)} for _ in range(2)]
    rc, out = _build(tmp_path, train, test)
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "layout plain 2x3" in printed and "seq_len 6" in printed and "vocab 8" in printed

    meta = json.loads((out / "train" / "dataset.json").read_text())
    assert meta["task"] == "grid" and meta["seq_len"] == 6 and meta["vocab_size"] == 8
    assert meta["task_params"] == {"height": 2, "width": 3, "num_values": 7, "layout": "plain",
                                   "augmentations": ["dihedral", "colors"]}
    assert load_identifiers(out) == ["<blank>"]
    task = _task(out)
    assert isinstance(task, GridTask) and task.seq_len == 6 and task.vocab_size == 8
    for split, rows in (("train", train), ("test", test)):
        s = load_split(out, split).sets["all"]
        assert s.num_groups == s.num_puzzles == s.num_examples == len(rows)
        assert not s.puzzle_identifiers.any()
        for i, row in enumerate(rows):
            assert task.decode(s.inputs[i]) == row["input"] and task.decode(s.labels[i]) == row["output"]
            np.testing.assert_array_equal(s.inputs[i], np.asarray(row["input"]).reshape(-1) + 1)


def test_canvas_layout(tmp_path, capsys):
    rng = np.random.default_rng(1)
    shapes = [(1, 1), (2, 5), (4, 3), (3, 3)]
    train = [{"input": _grid(rng, h, w, 3), "output": _grid(rng, w, h, 3)} for h, w in shapes]
    test = [{"input": _grid(rng, 2, 2, 3), "output": _grid(rng, 5, 1, 3)}]
    rc, out = _build(tmp_path, train, test, "--aug", "none")
    assert rc == 0, capsys.readouterr().err
    assert "canvas 6x6" in capsys.readouterr().out
    meta = load_split(out, "test").metadata
    assert meta.task_params == {"height": 5, "width": 5, "num_values": 3, "layout": "canvas", "canvas": 6,
                                "augmentations": []}
    assert (meta.seq_len, meta.vocab_size) == (36, 5)
    task = _task(out)
    s = load_split(out, "train").sets["all"]
    for i, row in enumerate(train):
        assert task.decode(s.inputs[i]) == row["input"] and task.decode(s.labels[i]) == row["output"]
        assert task.grid(s.labels[i]).tolist() == row["output"]
    canvas = s.inputs[1].reshape(6, 6)  # a 2x5 grid: EOS below it and right of it, PAD elsewhere
    assert (canvas[2, :5] == 1).all() and (canvas[:2, 5] == 1).all() and (canvas[3:] == 0).all()


def test_named_puzzles_with_augmentation(tmp_path, capsys):
    rng = np.random.default_rng(2)
    train = [{"input": _grid(rng, 3, 3, 5), "output": _grid(rng, 3, 3, 5), "puzzle": name}
             for name in ("a", "b", "a", None, "b", "a")]
    test = [{"input": _grid(rng, 3, 3, 5), "output": _grid(rng, 3, 3, 5), "puzzle": "b"},
            {"input": _grid(rng, 3, 3, 5), "output": _grid(rng, 3, 3, 5)}]
    rc, out = _build(tmp_path, train, test, "--num-aug", "3", "--seed", "7")
    assert rc == 0, capsys.readouterr().err
    ids = load_identifiers(out)
    assert ids == ["<blank>"] + [f"{n}|v{k}" for n in ("a", "b") for k in range(4)]
    task = _task(out)
    s = load_split(out, "train").sets["all"]
    # groups in order of first appearance: a (3 examples), b (2), the unnamed one (1); 4 versions each
    assert s.group_indices.tolist() == [0, 4, 8, 12]
    assert np.diff(s.puzzle_indices).tolist() == [3] * 4 + [2] * 4 + [1] * 4
    assert s.puzzle_identifiers.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]
    originals = {"a": [0, 2, 5], "b": [1, 4], None: [3]}
    for g, name in enumerate(("a", "b", None)):
        aug = task.augmentation(9, 4, seed=augmentation_seed(7, g))
        p0, p1 = s.group_indices[g], s.group_indices[g + 1]
        for field, key in (("inputs", "input"), ("labels", "output")):
            rows = np.stack([getattr(s, field)[s.puzzle_indices[p]:s.puzzle_indices[p + 1]] for p in range(p0, p1)])
            want = np.stack([np.asarray(train[i][key]).reshape(-1) + 1 for i in originals[name]])
            np.testing.assert_array_equal(rows[0], want)  # version 0 is the original
            np.testing.assert_array_equal(aug.inverse(rows), np.broadcast_to(want, rows.shape))
            assert len({r.tobytes() for r in rows}) > 1
    t = load_split(out, "test").sets["all"]
    assert t.puzzle_identifiers.tolist() == [ids.index("b|v0"), 0]
    assert load_split(out, "test").metadata.extra["num_aug"] == 0


def test_non_square_plain_keeps_four_transforms(tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows = [{"input": _grid(rng, 2, 4, 3), "output": _grid(rng, 2, 4, 3)} for _ in range(2)]
    rc, out = _build(tmp_path, rows, rows[:1], "--aug", "dihedral", "--num-aug", "3")
    assert rc == 0, capsys.readouterr().err
    assert load_split(out, "train").sets["all"].num_puzzles == 8
    (tmp_path / "again").mkdir()
    rc, out2 = _build(tmp_path / "again", rows, rows[:1], "--aug", "dihedral", "--num-aug", "4")
    assert rc == 2 and "--num-aug 4" in capsys.readouterr().err and not out2.exists()


# ------------------------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize("line,needle", [
    ('{"input": [[1, 2, 3], [4, 5]], "output": [[1]]}', "field input row 2 has 2 values, row 1 has 3"),
    ('{"input": [[1, 2], [-3, 4]], "output": [[1]]}', "field input[1][0]: -3 is negative"),
    ('{"input": [[1, 2], [3, 4]]}', "missing field 'output'"),
    ('{"input": [[1, 2] [3, 4]], "output": [[1]]}', "not JSON (Expecting ',' delimiter: column 19)"),
], ids=["ragged", "negative", "missing_output", "not_json"])
def test_malformed_line(tmp_path, capsys, line, needle):
    good = {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}
    tr = _write_jsonl(tmp_path / "train.jsonl", [good, "", good, line, good])
    te = _write_jsonl(tmp_path / "test.jsonl", [good])
    out = tmp_path / "out"
    assert hrm(["data", "grid", "--from-jsonl", str(tr), "--test-jsonl", str(te), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrm: error: ") and "Traceback" not in err
    assert f"{tr} line 4: " in err and needle in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("rows,needle", [
    ([{"input": [[True]], "output": [[1]]}], "field input[0][0]: True is not an integer"),
    ([{"input": [[1]] * 31, "output": [[1]]}], "a 31x1 grid"),
    ([{"input": [[1]], "output": [[1]], "puzzle": 3}], "field puzzle"),
    (["[1, 2]"], "expected a JSON object"),
], ids=["bool", "too_tall", "puzzle_name", "not_object"])
def test_other_bad_lines(tmp_path, capsys, rows, needle):
    rc, out = _build(tmp_path, rows, [{"input": [[1]], "output": [[1]]}])
    err = capsys.readouterr().err
    assert rc == 2 and "line 1: " in err and needle in err, err
    assert not out.exists()


def test_test_name_not_in_train(tmp_path, capsys):
    ex = {"input": [[1]], "output": [[2]]}
    rc, out = _build(tmp_path, [dict(ex, puzzle="a")], [ex, dict(ex, puzzle="zz")])
    err = capsys.readouterr().err
    assert rc == 2 and "test.jsonl line 2: field puzzle: 'zz'" in err and not out.exists()


def test_bad_aug_option(tmp_path, capsys):
    ex = {"input": [[1]], "output": [[2]]}
    rc, out = _build(tmp_path, [ex], [ex], "--aug", "dihedral,spin")
    assert rc == 2 and "'spin'" in capsys.readouterr().err and not out.exists()


# ------------------------------------------------------------------------------------------- the task


def test_params_and_registry():
    task = GridTask.from_params(PLAIN)
    assert tasks.from_record(task.record()) == task and tasks.get("grid") is GridTask
    assert not task.has_verifier
    assert GridTask.from_params(None).params["layout"] == "canvas"  # the ARC-like default
    for bad, needle in [(dict(PLAIN, layout="tiles"), "params.layout"), (dict(PLAIN, height=0), "params.height"),
                        (dict(PLAIN, num_values=True), "params.num_values"),
                        (dict(PLAIN, augmentations=["spin"]), "params.augmentations"),
                        (dict(PLAIN, canvas=5), "params.canvas"), (dict(CANVAS, canvas=5), "params.canvas"),
                        ({k: v for k, v in PLAIN.items() if k != "width"}, "params.width")]:
        with pytest.raises(HrmkitError, match=needle):
            GridTask.from_params(bad, "dataset.json")


def test_encode_decode():
    plain, canvas = GridTask.from_params(PLAIN), GridTask.from_params(CANVAS)
    g = [[0, 1, 2], [3, 4, 0], [1, 1, 1]]
    for form in (g, {"input": g}, json.dumps(g), "012\n340\n111"):
        np.testing.assert_array_equal(plain.encode(form, 9), np.asarray(g).reshape(-1) + 1)
    assert plain.decode(plain.encode(g, 9)) == g and plain.encode(plain.puzzle_text(g), 9).tolist() == \
        plain.encode(g, 9).tolist()
    assert plain.decode(np.zeros(9, np.uint8)) is None  # PAD is no value
    assert plain.token_names(6) == ["PAD", "0", "1", "2", "3", "4"]
    for small in ([[2]], [[1, 2, 3, 0, 1, 2]], [[0], [1], [2], [3]]):
        t = canvas.encode(small, 49)
        assert t.dtype == np.uint8 and t.shape == (49,) and canvas.decode(t) == small
        assert canvas.grid(t).tolist() == small  # no EOS or PAD in the display grid
    assert canvas.decode(np.zeros(49, np.uint8)) is None and canvas.grid(np.zeros(49)) is None
    assert canvas.token_names(6) == ["PAD", "EOS", "0", "1", "2", "3"]
    assert set(canvas.answer_tokens(6)) == {1, 2, 3, 4, 5}
    full = np.arange(49).reshape(7, 7) % 4  # a grid filling the canvas has no EOS
    assert crop_canvas(encode_canvas(full, 7), 7, 4).tolist() == full.tolist()
    for puzzle, seq_len, needle in [([[0, 1], [2, 3]], 9, "a 2x2 grid"), ([[5, 0, 0]] * 3, 9, "larger than 4"),
                                    ([[0] * 8], 49, "does not fit"), (g, 16, "rows of 16 tokens"),
                                    ("[[1, 2]", 9, "not JSON"), ("01#", 9, "'#'")]:
        with pytest.raises(HrmkitError, match=needle):
            (plain if seq_len in (9, 16) else canvas).encode(puzzle, seq_len, "INPUT")


@pytest.mark.parametrize("params,versions", [
    (PLAIN, 8 * 24), (dict(PLAIN, width=4), 4 * 24), (dict(PLAIN, augmentations=["colors"]), 24),
    (dict(PLAIN, augmentations=["dihedral"]), 8), (CANVAS, 8 * 6),
], ids=["square", "non_square", "colors", "dihedral", "canvas"])
def test_augmentation_inverse(params, versions):
    task = GridTask.from_params(params)
    assert task.num_versions() == versions
    rng = np.random.default_rng(4)
    if task.layout == "plain":
        h, w = params["height"], params["width"]
        grids = [rng.integers(0, 5, (h, w)) for _ in range(6)]
    else:
        grids = [rng.integers(0, 4, tuple(rng.integers(1, 8, 2))) for _ in range(6)]
    x = np.stack([task.encode_grid(g) for g in grids])
    aug = task.augmentation(task.seq_len, versions, seed=5)
    y = aug.forward(x)
    assert y.shape == (versions,) + x.shape and y.dtype == np.uint8
    np.testing.assert_array_equal(y[0], x)
    np.testing.assert_array_equal(aug.inverse(y), np.broadcast_to(x, y.shape))
    np.testing.assert_array_equal(task.augmentation(task.seq_len, versions, seed=5).forward(x), y)
    specs = task.version_specs(versions, seed=5)
    assert len({(t, p.tobytes()) for t, p in specs}) == versions  # no version twice
    for k in (1, versions - 1):  # version k = value permutation of dihedral transform k
        tid, perm = specs[k]
        assert np.asarray(task.decode(y[k, 0])).tolist() == perm[dihedral_transform(grids[0], tid)].tolist()
    with pytest.raises(HrmkitError, match=f"{versions + 1} versions"):
        task.augmentation(task.seq_len, versions + 1)


def test_canvas_inverse_of_a_prediction_without_grid():
    task = GridTask.from_params(CANVAS)
    aug = task.augmentation(49, 5, seed=0)
    junk = np.zeros((5, 1, 49), np.int64)
    junk[:, 0, 3] = 3  # no value at the top-left: no grid; only the value map applies
    back = aug.inverse(junk)
    assert back.shape == junk.shape and (back[:, 0, :3] == 0).all() and (back[:, 0, 4:] == 0).all()


# ------------------------------------------------------------------------------------------- write_task_dataset


def _rows(n, s=4, name=None):
    return [(np.full(s, 1 + i % 3, np.uint8), np.full(s, 2, np.uint8), name) for i in range(n)]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(test=_rows(1, name="nope")), "test puzzle 'nope' does not occur in train"),
    (dict(task=Task(), num_aug=1), "declares no augmentations"),
    (dict(train=_rows(2) + _rows(1, s=5)), r"train\[2\]: inputs has 5 tokens"),
    (dict(train=_rows(2), vocab_size=2), "token 2 at position 0"),
    (dict(test=[]), "test: no examples"),
    (dict(train=_rows(1, name="<blank>")), "puzzle_name"),
    (dict(identifiers=["<blank>", "a"], train=_rows(1, name="b"), test=_rows(1, name="b")), "not listed"),
])
def test_write_task_dataset_errors(tmp_path, kwargs, needle):
    args = dict(task=GridTask.from_params(dict(PLAIN, height=2, width=2)), train=_rows(3), test=_rows(1),
                vocab_size=6)
    args.update(kwargs)
    out = tmp_path / "ds"
    with pytest.raises(HrmkitError, match=needle):
        write_task_dataset(out, args.pop("task"), args.pop("train"), args.pop("test"), **args)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_write_task_dataset_fixed_identifiers_and_overwrite(tmp_path):
    task = GridTask.from_params(dict(PLAIN, height=2, width=2))
    out = tmp_path / "ds"
    write_task_dataset(out, task, _rows(2, name="b"), _rows(1, name="b"), vocab_size=6,
                       identifiers=["<blank>", "a", "b"], extra={"note": 1})
    assert load_identifiers(out) == ["<blank>", "a", "b"]
    s = load_split(out, "train")
    assert s.sets["all"].puzzle_identifiers.tolist() == [2] and s.metadata.num_puzzle_identifiers == 3
    assert s.metadata.extra == {"note": 1, "num_aug": 0, "seed": 0}
    with pytest.raises(HrmkitError, match="already exists"):
        write_task_dataset(out, task, _rows(1), _rows(1), vocab_size=6)
    write_task_dataset(out, task, _rows(1), _rows(1), vocab_size=6, overwrite=True)
    assert load_identifiers(out) == ["<blank>"]
