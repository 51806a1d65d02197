"""Sudoku solver, generator, augmentation and dataset builder."""

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data import sudoku
from hrmkit.data.augment import sudoku_augment_many
from hrmkit.data.format import load_split

EASY9 = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


def _digits(s):
    return [0 if ch in ".0" else int(ch) for ch in s]


def _solutions(tokens_row, n):
    grid = [0 if t == 1 else int(t) - 1 for t in tokens_row]
    return sudoku.solve(grid, sudoku.BOXES[n], limit=2)[0]


def test_solver_counts_and_rating():
    box = (3, 3)
    sols, dead = sudoku.solve(_digits(EASY9), box)
    assert len(sols) == 1 and sudoku.is_valid_solution(sols[0], box) and dead == 0
    assert sudoku.rate(_digits(EASY9), box) == 0
    assert sudoku.count_solutions([0] * 81, box) == 2  # stops at the limit
    bad = _digits(EASY9)
    bad[1] = 5  # two 5s in row 1
    assert sudoku.count_solutions(bad, box) == 0


@pytest.mark.parametrize("size,count", [(4, 60), (6, 30), (9, 4)])
def test_generated_puzzles_unique_and_minimal(size, count):
    box = sudoku.BOXES[size]
    geo = sudoku.geometry(box)
    for i in range(count):
        p, s = sudoku.generate_puzzle(box, np.random.default_rng([5, i]))
        sols = sudoku.solve(p, box)[0]
        assert sols == [s] and sudoku.is_valid_solution(s, box)
        assert all(d in (0, s[c]) for c, d in enumerate(p))
        if size < 9:  # minimal: removing any clue breaks uniqueness
            for c in (c for c, d in enumerate(p) if d):
                q = list(p)
                q[c] = 0
                assert sudoku.count_solutions(q, box) == 2
    assert geo.n == size


def test_clue_limits_and_rating_filter():
    box = (2, 3)
    for i in range(10):
        p, _ = sudoku.generate_puzzle(box, np.random.default_rng(i), min_clues=20)
        assert sum(1 for d in p if d) == 20
    got = sudoku._generate_one((sudoku.GenSpec((3, 3), 1, min_rating=1, max_tries=500), 0, 0))
    assert got is not None and got[2] >= 1 and got[3] >= 1 and sudoku.rate(got[0], (3, 3)) == got[2]


@pytest.mark.parametrize("size", [4, 6, 9])
def test_augmentation_maps_solution_to_solution(size):
    box = sudoku.BOXES[size]
    n = size
    p, s = sudoku.generate_puzzle(box, np.random.default_rng(size))
    P, S = np.array(p).reshape(n, n), np.array(s).reshape(n, n)
    aps, ass = sudoku_augment_many(P, S, box, 40, np.random.default_rng(0))
    for ap, as_ in zip(aps, ass):
        assert sudoku.is_valid_solution(as_.reshape(-1).tolist(), box)
        assert sudoku.solve(ap.reshape(-1).tolist(), box)[0] == [as_.reshape(-1).tolist()]
        assert (ap == 0).sum() == (P == 0).sum()
    assert len({a.tobytes() for a in aps}) > 30


def test_non_square_box_never_transposes():
    # With 2x3 boxes every augmented grid keeps 2x3 boxes: checked by validity above; here also check that a
    # transposed version (which has 3x2 boxes) is never produced for a grid whose transpose is invalid.
    box = (2, 3)
    s = np.array(sudoku.random_solution(box, np.random.default_rng(0))).reshape(6, 6)
    assert not sudoku.is_valid_solution(s.T.reshape(-1).tolist(), box)  # transposing would break it
    _, outs = sudoku_augment_many(s, s, box, 200, np.random.default_rng(1))
    assert all(sudoku.is_valid_solution(o.reshape(-1).tolist(), box) for o in outs)


@pytest.mark.parametrize("size", [4, 6])
def test_dataset_build(tmp_path, size, capsys):
    out = tmp_path / "ds"
    assert hrm(["data", "sudoku", "--out", str(out), "--size", str(size), "--train", "40", "--test", "20",
                "--num-aug", "3", "--seed", "1", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test solutions that also occur in train" in printed
    train, test = load_split(out, "train"), load_split(out, "test")
    for split in (train, test):
        m = split.metadata
        assert (m.vocab_size, m.seq_len, m.task, m.ignore_label_id) == (size + 2, size * size, "sudoku", 0)
        assert m.extra["box"] == list(sudoku.BOXES[size])
    a, b = train.sets["all"], test.sets["all"]
    assert (a.num_groups, a.num_puzzles, b.num_groups, b.num_puzzles) == (40, 160, 20, 20)
    for arrs in (a, b):
        for x, y in zip(np.asarray(arrs.inputs), np.asarray(arrs.labels)):
            assert x.max() <= size + 1 and x.min() >= 1
            sols = _solutions(x, size)
            assert len(sols) == 1 and (np.asarray(sols[0]) + 1 == y).all()
    train_rows = {bytes(r) for r in np.asarray(a.inputs)}
    assert not train_rows & {bytes(r) for r in np.asarray(b.inputs)}  # incl. augmented versions
    if size == 4:
        blanks = (np.asarray(a.inputs)[a.puzzle_indices[a.group_indices[:-1]]] == 1).mean()
        assert blanks >= 0.5


def test_dataset_build_deterministic_across_workers(tmp_path):
    args = ["data", "sudoku", "--size", "4", "--train", "30", "--test", "10", "--seed", "3"]
    assert hrm(args + ["--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert hrm(args + ["--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    for split in ("train", "test"):
        for f in ("inputs", "labels", "group_indices"):
            x = np.load(tmp_path / "a" / split / f"all__{f}.npy")
            y = np.load(tmp_path / "b" / split / f"all__{f}.npy")
            assert np.array_equal(x, y)


def test_nine_by_nine_small_build(tmp_path):
    out = tmp_path / "s9"
    assert hrm(["data", "sudoku", "--out", str(out), "--size", "9", "--train", "3", "--test", "3",
                "--num-aug", "2", "--workers", "1"]) == 0
    a = load_split(out, "train").sets["all"]
    for x, y in zip(np.asarray(a.inputs), np.asarray(a.labels)):
        sols = _solutions(x, 9)
        assert len(sols) == 1 and (np.asarray(sols[0]) + 1 == y).all()


def test_csv_import(tmp_path):
    box = (3, 3)
    rows = []
    for i in range(12):
        p, s = sudoku.generate_puzzle(box, np.random.default_rng([9, i]), min_clues=30)
        q = sudoku.grid_string(p)
        rows.append(f"gen,{q if i % 2 else q.replace('.', '0')},{''.join(map(str, s))},{i}")
    csv = tmp_path / "p.csv"
    csv.write_text("source,q,a,rating\n" + "\n".join(rows) + "\n")
    out = tmp_path / "ds"
    assert hrm(["data", "sudoku", "--out", str(out), "--from-csv", str(csv), "--test-fraction", "0.25",
                "--num-aug", "2", "--min-rating", "2", "--workers", "1"]) == 0
    tr, te = load_split(out, "train").sets["all"], load_split(out, "test").sets["all"]
    assert te.num_groups == 2 and tr.num_groups == 8 and tr.num_puzzles == 24
    for x, y in zip(np.asarray(te.inputs), np.asarray(te.labels)):
        assert (np.asarray(_solutions(x, 9)[0]) + 1 == y).all()
    out2 = tmp_path / "ds2"
    assert hrm(["data", "sudoku", "--out", str(out2), "--from-csv", str(csv), "--test-csv", str(csv),
                "--train", "5", "--workers", "1"]) == 0
    assert load_split(out2, "test").sets["all"].num_groups == 7  # the 5 train puzzles are dropped from test


def _solution_rows(path, split):
    return {bytes(r) for r in np.asarray(load_split(path, split).sets["all"].labels)}


def test_disjoint_solutions_keeps_test_solutions_out_of_train(tmp_path, capsys):
    # 4x4 has 288 solution grids: 150 train puzzles x 4 versions cover most of them, so without the option
    # test solutions recur in train; with it none does (checked on the written arrays, not the builder's count).
    args = ["data", "sudoku", "--size", "4", "--train", "150", "--test", "40", "--num-aug", "3", "--seed", "2",
            "--workers", "1"]
    assert hrm(args + ["--out", str(tmp_path / "plain")]) == 0
    assert _solution_rows(tmp_path / "plain", "test") & _solution_rows(tmp_path / "plain", "train")
    assert hrm(args + ["--out", str(tmp_path / "disjoint"), "--disjoint-solutions"]) == 0
    assert "test solutions that also occur in train (incl. augmented versions): 0 of 40" in capsys.readouterr().out
    assert not _solution_rows(tmp_path / "disjoint", "test") & _solution_rows(tmp_path / "disjoint", "train")
    assert load_split(tmp_path / "disjoint", "test").metadata.extra["test_solutions_in_train"] == 0


def test_disjoint_solutions_impossible_is_a_clear_error(tmp_path, capsys):
    # 60 puzzles x 51 versions cover all 288 4x4 grids: no test puzzle can have an unseen solution.
    out = tmp_path / "ds"
    assert hrm(["data", "sudoku", "--out", str(out), "--size", "4", "--train", "60", "--test", "5", "--num-aug",
                "50", "--disjoint-solutions", "--workers", "1"]) == 2
    assert "with a solution not in train" in capsys.readouterr().err
    assert not out.exists()
    assert hrm(["data", "sudoku", "--out", str(out), "--from-csv", "x.csv", "--disjoint-solutions"]) == 2
    assert "--disjoint-solutions applies to generated puzzles" in capsys.readouterr().err


def test_demo_recipe_has_no_test_solution_in_train(tmp_path):
    """The `demo` preset's data recipe, at a reduced size, writes no test solution grid that occurs in train."""
    from hrmkit.presets import resolve_config

    from hrmkit.train.data import build_demo_data

    out = tmp_path / "demo"
    cfg = resolve_config(preset="demo", overrides=["demo_data.train=100", "demo_data.test=30"])
    build_demo_data(out, cfg.demo_data)
    train, test = _solution_rows(out, "train"), _solution_rows(out, "test")
    assert len(test) == 30 and len(train) > 100  # augmented versions are checked too
    assert not test & train


_POOL_UNDER_A_NOTING_HANDLER = """
import signal, time
from hrmkit.data.workers import worker_pool

def slow(i):
    time.sleep(0.01)
    return i

signal.signal(signal.SIGTERM, lambda *a: None)  # as a training run's stop flag: note the signal, carry on
for trial in range(10):
    try:
        with worker_pool(2) as pool:  # an interrupt terminates the workers while tasks are still queued
            for k, _ in enumerate(pool.imap(slow, range(1000), chunksize=4)):
                if k == 10 + trial:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
print("left every pool")
"""


def test_an_interrupted_build_pool_never_hangs_whatever_sigterm_handler_the_parent_has():
    """Forked workers inherited the parent's SIGTERM handler, so `Pool.terminate` could not stop them and the
    build hung for ever (seen in the test suite after a training test left its handler); with a plain fork Pool
    this test times out."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _POOL_UNDER_A_NOTING_HANDLER], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("a worker pool did not terminate within 60 s") from None
    assert "left every pool" in out
