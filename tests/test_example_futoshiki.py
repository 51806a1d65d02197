"""The Futoshiki example task (examples/futoshiki.py): generator, solver, verifier, augmentations, codecs.

Pure numpy, no model: a few seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import hrmkit.tasks
from hrmkit.errors import HrmkitError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "futoshiki.py"


def _load():
    if "futoshiki" in sys.modules and getattr(sys.modules["futoshiki"], "__file__", None) == str(EXAMPLE):
        return sys.modules["futoshiki"]
    spec = importlib.util.spec_from_file_location("futoshiki", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["futoshiki"] = mod
    spec.loader.exec_module(mod)
    return mod


F = _load()
TASK = F.FutoshikiTask({"size": 5})


@pytest.fixture(scope="module")
def puzzles():
    """20 generated 5x5 puzzles with their solutions (seeded)."""
    rng = np.random.default_rng(1)
    return [F.generate_puzzle(5, rng) for _ in range(20)]


def _rows(puzzles):
    x = np.stack([p.tokens() for p, _ in puzzles])
    y = np.stack([F.Puzzle(s, p.h, p.v).tokens() for p, s in puzzles])
    return x, y


EXAMPLE_TEXT = ". 2>.\n    ^\n. . .\n^ v\n. . ."  # one solution: 321/132/213


# --------------------------------------------------------------------------------------------- registration

def test_registered_and_recorded():
    assert hrmkit.tasks.get("futoshiki").__name__ == "FutoshikiTask"
    task = hrmkit.tasks.from_record(TASK.record())
    assert task == TASK and task.params == {"size": 5}
    with pytest.raises(HrmkitError, match="params.size"):
        F.FutoshikiTask.from_params({"size": 12})


# --------------------------------------------------------------------------------------------- generator, solver

def test_generated_puzzles_have_one_solution_and_no_spare_given(puzzles):
    for p, s in puzzles:
        assert F.latin_clash(s) is None and sorted(s[0].tolist()) == [1, 2, 3, 4, 5]
        found = F.Solver(p).solve(2)
        assert len(found) == 1 and found[0] == s.reshape(-1).tolist()
        assert np.all((p.digits == 0) | (p.digits == s))
        for r, c in zip(*np.nonzero(p.digits)):  # minimal: every given is needed
            fewer = p.digits.copy()
            fewer[r, c] = 0
            assert F.count_solutions(F.Puzzle(fewer, p.h, p.v)) == 2


def test_generator_is_seeded():
    a = F.generate_puzzle(4, np.random.default_rng(7))[0].tokens()
    b = F.generate_puzzle(4, np.random.default_rng(7))[0].tokens()
    assert np.array_equal(a, b)


def test_solver_counts_contradictions_and_open_grids():
    n = 3
    empty = F.Puzzle(np.zeros((n, n), np.int64), np.zeros((n, n - 1), np.int64), np.zeros((n - 1, n), np.int64))
    assert F.count_solutions(empty, limit=100) == 12  # the 12 Latin squares of order 3
    cyc = empty.h.copy()
    cyc[0] = [1, 1]  # 1st row increasing: 1 2 3
    digits = empty.digits.copy()
    digits[0, 0] = 3  # ... but starting with 3
    assert F.count_solutions(F.Puzzle(digits, cyc, empty.v)) == 0


def test_solution_key_is_shared_by_the_versions(puzzles):
    _, s = puzzles[0]
    keys = {F.solution_key(s), F.solution_key(s.T), F.solution_key(6 - s), F.solution_key(np.rot90(s))}
    assert len(keys) == 1
    assert F.solution_key(puzzles[1][1]) != F.solution_key(s) or np.array_equal(puzzles[1][1], s)


# --------------------------------------------------------------------------------------------- verifier

def test_verifier_accepts_solutions_and_rejects_broken_ones(puzzles):
    x, y = _rows(puzzles)
    assert TASK.has_verifier and TASK.verify(x, y).all()
    assert not TASK.verify(x, x).any()  # blanks left
    n, m = 5, 9
    g = y.reshape(-1, m, m)
    # slots of the prediction are not judged
    junk = g.copy()
    junk[:, 1::2, 1::2] = 3
    assert TASK.verify(x, junk.reshape(len(x), -1)).all()
    # swapping two digits of a row keeps the Latin property only of rows: columns break
    bad = g.copy()
    bad[:, 0, 0], bad[:, 0, 2] = g[:, 0, 2], g[:, 0, 0]
    assert not TASK.verify(x, bad.reshape(len(x), -1)).any()
    # a relabelled solution (digits 1<->2 swapped everywhere) is a Latin square but breaks a clue or a sign
    swap = g.copy()
    cells = swap[:, ::2, ::2]
    cells[:] = np.where(cells == 2, 3, np.where(cells == 3, 2, cells))
    solved, latin, signs, keeps = F.futoshiki_solved(x, swap.reshape(len(x), -1), parts=True)
    assert latin.all() and not solved.any() and (~signs | ~keeps).all()
    # out-of-range tokens in a cell
    odd = g.copy()
    odd[:, 0, 0] = F.sign_token(n, F.LT)
    assert not TASK.verify(x, odd.reshape(len(x), -1)).any()
    with pytest.raises(ValueError):
        TASK.verify(x[:, :80], y[:, :80])


def test_check_is_a_one_line_verdict(puzzles):
    p, s = puzzles[0]
    good = TASK.check(p.tokens(), F.Puzzle(s, p.h, p.v).tokens())
    assert good.solved and good.fields["puzzle_solutions"] == 1 and good.fields["matches_solver"]
    assert good.verdict.startswith("solved") and "\n" not in good.verdict
    bad = TASK.check(p.tokens(), p.tokens())
    assert not bad.solved and bad.verdict.startswith("not solved") and "cells blank" in bad.verdict
    assert bad.fields["keeps_clues"] and not bad.fields["latin_square"]


# --------------------------------------------------------------------------------------------- augmentations

def test_signs_are_rewritten():
    assert F.sign_map(0, False) == {F.LT: F.LT, F.GT: F.GT, F.UP: F.UP, F.DOWN: F.DOWN}
    assert F.sign_map(6, False)[F.LT] == F.UP  # transpose: a row sign becomes a column sign
    assert F.sign_map(4, False)[F.LT] == F.GT  # mirror left-right
    assert F.sign_map(4, False)[F.UP] == F.UP
    assert F.sign_map(0, True) == {F.LT: F.GT, F.GT: F.LT, F.UP: F.DOWN, F.DOWN: F.UP}  # digit reversal


def test_augmentation_inverse_and_validity(puzzles):
    x, y = _rows(puzzles)
    aug = TASK.augmentation(x.shape[1], 16, seed=3)
    assert aug.versions == 16
    fx, fy = aug.forward(x), aug.forward(y)
    assert fx.shape == (16,) + x.shape and fx.dtype == x.dtype
    assert np.array_equal(fx[0], x) and np.array_equal(fy[0], y)  # version 0: the identity
    assert np.array_equal(aug.inverse(fx), np.broadcast_to(x, fx.shape))
    assert np.array_equal(aug.inverse(fy), np.broadcast_to(y, fy.shape))
    for k in range(16):
        assert TASK.verify(fx[k], fy[k]).all()  # augmented puzzles stay puzzles, solutions stay solutions
        if k:
            assert not np.array_equal(fy[k], y)
    assert len({fy[k, 0].tobytes() for k in range(16)}) == 16
    # fewer versions: the identity first, a seed picks the same ones
    a4, b4 = TASK.augmentation(x.shape[1], 4, seed=3), TASK.augmentation(x.shape[1], 4, seed=3)
    assert np.array_equal(a4.forward(x), b4.forward(x)) and np.array_equal(a4.forward(x)[0], x)
    with pytest.raises(HrmkitError, match="16 versions"):
        TASK.augmentation(x.shape[1], 17)
    with pytest.raises(HrmkitError, match="no Futoshiki grid"):
        TASK.augmentation(80, 2)


def test_augmented_solutions_keep_their_uniqueness(puzzles):
    x, y = _rows(puzzles[:3])
    aug = TASK.augmentation(x.shape[1], 16)
    fx, fy = aug.forward(x), aug.forward(y)
    for k in (1, 6, 9, 15):
        for i in range(len(x)):
            p = F.Puzzle.of_display(F.to_display(fx[k, i]))
            found = F.Solver(p).solve(2)
            assert len(found) == 1
            assert found[0] == F.Puzzle.of_display(F.to_display(fy[k, i])).digits.reshape(-1).tolist()


# --------------------------------------------------------------------------------------------- codecs, layout

def test_text_round_trip(puzzles):
    for p, _ in puzzles[:5]:
        t = p.tokens()
        text = TASK.decode(t)
        assert len(text.split("\n")) == 9
        assert np.array_equal(TASK.encode(text, t.size), t)
        assert np.array_equal(TASK.encode(text.split("\n"), t.size), t)  # a list of lines reads the same
        assert np.array_equal(TASK.encode("\n" + text + "\n\n", t.size), t)
        assert TASK.puzzle_text(TASK.grid(t)) == text


def test_example_text():
    g = F.parse_futoshiki(EXAMPLE_TEXT)
    p = F.Puzzle.of_display(g)
    assert p.digits.tolist() == [[0, 2, 0], [0, 0, 0], [0, 0, 0]]
    assert p.h.tolist() == [[0, -1], [0, 0], [0, 0]]
    assert p.v.tolist() == [[0, 0, 1], [1, -1, 0]]
    assert F.futoshiki_text(g) == EXAMPLE_TEXT
    assert F.Solver(p).solve(2) == [[3, 2, 1, 1, 3, 2, 2, 1, 3]]


@pytest.mark.parametrize("text, match", [
    (". 2>.\n    ^\n. . 4\n^ v\n. . .", r"line 3, column 5: '4' is no cell of a 3x3"),
    (". 2>\n    ^\n. . .\n^ v\n. . .", r"line 1, column 5: ' ' is no cell"),
    (".^2>.\n    ^\n. . .\n^ v\n. . .", r"line 1, column 2: '\^' between two cells of a row"),
    (". 2>.\n    ^\n. . .\n< v\n. . .", r"line 4, column 1: '<' between two cells of a column"),
    (". 2>.\n   ^^\n. . .\n^ v\n. . .", r"line 2, column 4: '\^' sits between four cells"),
    (". 2>.\n    ^\n. . .\n^ v\n. . . .", r"line 5 has 7 characters"),
    (". 2>.\n    ^\n. . .\n^ v", r"got 4 line"),
    (". 2>2\n    ^\n. . .\n^ v\n. . .", r"digit 2 repeats in row 1"),
    (12, r"is text"),
])
def test_parse_errors_name_line_column_and_value(text, match):
    with pytest.raises(HrmkitError, match=match):
        F.parse_futoshiki(text, "GRID")


def test_encode_checks_the_size():
    with pytest.raises(HrmkitError, match="trained on 5x5"):
        TASK.encode(EXAMPLE_TEXT, 81)


def test_layout_helpers(puzzles):
    x, y = _rows(puzzles[:4])
    assert TASK.token_names(12) == ["PAD", "blank", "1", "2", "3", "4", "5", "none", "<", ">", "^", "v"]
    mask = TASK.scored_mask(x, np.ones_like(x, bool))
    cells = x.reshape(-1, 9, 9)[:, ::2, ::2]
    assert mask.sum() == (cells == F.BLANK_ID).sum() and not mask.reshape(-1, 9, 9)[:, 1::2, :].any()
    assert set(np.unique(y)) <= set(TASK.answer_tokens(12))
    drawn, kept = TASK.input_tokens(12)
    assert set(drawn) == {1, 2, 3, 4, 5, 6} and 0 in kept and F.sign_token(5, F.LT) in kept
    d = TASK.difficulty(x, y)
    assert np.array_equal(d["given digits"][1], [(p.digits != 0).sum() for p, _ in puzzles[:4]])
    assert np.array_equal(d["inequality signs"][1], [(p.h != 0).sum() + (p.v != 0).sum() for p, _ in puzzles[:4]])
    g = TASK.grid(x[0])
    assert g.shape == (9, 9) and np.array_equal(F.to_tokens(g), x[0])
    given = TASK.given(g)
    assert given[::2, ::2].sum() == (puzzles[0][0].digits != 0).sum() and not given[1::2, 1::2].any()


def test_drawing():
    style = TASK.cell_style(F.LT, False, True, 22)
    assert style.text == "<" and style.fill == F.SIGN_FILL
    assert TASK.cell_style(F.NONE, False, None, 22).text is None
    assert TASK.cell_style(3, False, False, 22).text == "3"
    assert TASK.cell_style(0, True, False, 22).fill == F.MARK_FILL
    assert TASK.box(9, 9) is None and TASK.cell_px(9) == 22
    g = F.parse_futoshiki(EXAMPLE_TEXT)
    assert [line.rstrip() for line in TASK.text_lines(g)] == EXAMPLE_TEXT.split("\n")
    marked = np.zeros(g.shape, bool)
    marked[0, 0] = True
    assert TASK.text_lines(g, marked)[0].startswith(".*  2 > ")


def test_max_blanks_gives_easier_unique_puzzles():
    rng = np.random.default_rng(5)
    for _ in range(5):
        p, s = F.generate_puzzle(5, rng, max_blanks=12)
        assert (p.digits == 0).sum() <= 12 and F.Solver(p).solve(2) == [s.reshape(-1).tolist()]


def test_write_task_dataset_builds_valid_versions(tmp_path):
    from hrmkit.data.build import write_task_dataset
    from hrmkit.data.format import load_split

    rng = np.random.default_rng(2)
    ex = []
    for _ in range(6):
        p, s = F.generate_puzzle(4, rng)
        ex.append((p.tokens(), F.Puzzle(s, p.h, p.v).tokens(), None))
    write_task_dataset(tmp_path / "d", F.FutoshikiTask({"size": 4}), ex[:4], ex[4:], vocab_size=F.vocab_size(4),
                       num_aug=15, seed=0)
    meta = load_split(tmp_path / "d", "train").metadata
    assert hrmkit.tasks.of_metadata(meta) == F.FutoshikiTask({"size": 4})
    x, y = (np.load(tmp_path / "d" / "train" / f"all__{k}.npy") for k in ("inputs", "labels"))
    assert x.shape == (64, 49) and F.futoshiki_solved(x, y).all() and len({r.tobytes() for r in y}) == 64
