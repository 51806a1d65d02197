"""Sudoku's own baseline, naked singles (tasks/sudoku.py), against a plain-Python propagation and the solutions."""

import numpy as np

from hrmkit.data import sudoku
from hrmkit.eval.baselines import compute_baselines
from hrmkit.tasks.sudoku import naked_singles, sudoku_solved


def _singles_by_hand(digits, box):
    """Plain-Python propagation: digits list (0 blank) -> filled list."""
    geo = sudoku.geometry(box)
    d = list(digits)
    changed = True
    while changed:
        changed = False
        for cell in range(len(d)):
            if d[cell] == 0:
                left = set(range(1, geo.n + 1)) - {d[p] for p in geo.peers[cell]}
                if len(left) == 1:
                    d[cell] = left.pop()
                    changed = True
    return d


def _generated(size, count, seed):
    spec = sudoku.GenSpec(sudoku.box_for_size(size), seed)
    got = sudoku.generate_split(spec, 0, count, 1, "test")
    return got.puzzles.astype(np.int64) + 1, got.solutions.astype(np.int64) + 1  # tokens: digit + 1, blank 1


def test_naked_singles_matches_plain_propagation_and_writes_only_right_digits():
    for size in (4, 6, 9):
        tokens, solutions = _generated(size, 40, seed=size)
        filled = naked_singles(tokens)
        box = sudoku.box_for_size(size)
        for row, out in zip(tokens, filled):
            assert list(out - 1) == _singles_by_hand(list(row - 1), box)
        assert ((filled == solutions) | (filled == 1)).all()  # a filled digit is the solution's digit
        assert (filled[tokens > 1] == tokens[tokens > 1]).all()  # clues kept
        complete = (filled > 1).all(axis=1)
        assert (sudoku_solved(tokens, filled) == complete).all()


def test_naked_singles_fills_a_lone_blank_and_leaves_an_empty_grid():
    solution = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]) + 1
    one_blank = solution.copy()
    one_blank[5] = 1
    empty = np.ones(16, np.int64)
    out = naked_singles(np.stack([one_blank, empty]))
    assert (out[0] == solution).all() and (out[1] == 1).all()


def test_sudoku_evaluations_score_naked_singles_beside_the_generic_baselines():
    tokens, solutions = _generated(6, 50, seed=1)
    base = compute_baselines(tokens, solutions, task="sudoku")
    assert list(base) == ["copy_input", "most_common_token", "naked_singles"]
    expected = float(sudoku_solved(tokens, naked_singles(tokens)).mean())
    assert base["naked_singles"]["overall"]["exact_accuracy"] == expected
    assert base["naked_singles"]["baseline"]["source"] == "task"
