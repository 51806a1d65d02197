"""Metrics and baselines: exact vs token accuracy, masks, q-halt, steps, sets, and the summary table."""

import json

import numpy as np
import pytest

from hrmkit.errors import HrmkitError
import torch

from hrmkit.eval.baselines import arc_baselines, compute_baselines, format_summary, most_common_token
from hrmkit.eval.metrics import answer_mask, compute_metrics, exact_correct, scored_mask


def fake_sudoku(n=20, seed=0, blanks=40):
    """Valid Sudoku solutions (digit-permuted pattern) in hrmkit tokens: inputs 1 = blank, digits 2..10."""
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(81), 9)
    base = (r * 3 + r // 3 + c) % 9  # a valid solution, digits 0..8
    labels = np.stack([rng.permutation(9)[base] + 2 for _ in range(n)])
    inputs = labels.copy()
    for i in range(n):
        inputs[i, rng.choice(81, size=blanks, replace=False)] = 1
    return inputs, labels


def test_sudoku_perfect_copy_and_clue_rule():
    inputs, labels = fake_sudoku()
    m = compute_metrics(inputs, labels, labels, task="sudoku")["overall"]
    assert m["exact_accuracy"] == 1.0 and m["token_accuracy"] == 1.0
    assert m["n_cells"] == 20 * 40  # only the blanks are scored
    copy = compute_metrics(inputs, labels, inputs, task="sudoku")["overall"]
    assert copy["exact_accuracy"] == 0.0 and copy["token_accuracy"] == 0.0
    # Without the Sudoku rule the clues count and copying looks good: exactly why the rule exists.
    generic = compute_metrics(inputs, labels, inputs, task="generic")["overall"]
    assert generic["token_accuracy"] == pytest.approx(41 / 81)


def test_one_wrong_cell_breaks_exact_only():
    inputs, labels = fake_sudoku(n=4)
    preds = labels.copy()
    blank = np.flatnonzero(inputs[0] == 1)[0]
    preds[0, blank] = 2 if labels[0, blank] != 2 else 3
    m = compute_metrics(inputs, labels, preds, task="sudoku")["overall"]
    assert m["exact_accuracy"] == 0.75 and m["n_exact"] == 3
    assert m["token_accuracy"] == pytest.approx(1 - 1 / 160)
    assert exact_correct(labels, preds).tolist() == [False, True, True, True]


def test_pad_and_ignored_cells_excluded_and_empty_rows_skipped():
    labels = np.array([[3, 4, 0, -100], [5, 0, 0, 0], [-100, -100, -100, -100]])
    inputs = np.array([[2, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
    preds = np.array([[3, 4, 7, 7], [5, 9, 9, 9], [1, 1, 1, 1]])
    m = compute_metrics(inputs, labels, preds, task="arc")["overall"]
    assert m["n_examples"] == 2 and m["n_empty"] == 1
    assert m["exact_accuracy"] == 1.0 and m["token_accuracy"] == 1.0 and m["n_cells"] == 3
    assert answer_mask(labels).sum() == 3
    # pad_id=None: 0 is a real label, so the wrong predictions there count.
    m2 = compute_metrics(inputs, labels, preds, pad_id=None)["overall"]
    assert m2["exact_accuracy"] == 0.0 and m2["n_cells"] == 7


def test_q_halt_steps_sets_and_json():
    inputs, labels = fake_sudoku(n=4)
    preds = labels.copy()
    preds[2:, inputs[2] == 1] = 1  # rows 2, 3 wrong (row 3 only where row 2 is blank; still some wrong)
    preds[3] = inputs[3]
    q = np.array([2.0, -1.0, 0.5, -3.0])  # predicts halt-correct: T, F, T, F ; exact: T, T, F, F
    steps = np.array([1, 16, 16, 3])
    r = compute_metrics(torch.as_tensor(inputs), labels, preds, q_halt=q, steps=steps, task="sudoku",
                        sets=["a", "a", "b", "b"])
    o = r["overall"]
    assert o["q_halt_accuracy"] == 0.5
    assert o["mean_steps"] == 9.0 and o["steps_histogram"] == {"1": 1, "3": 1, "16": 2}
    assert r["sets"]["a"]["exact_accuracy"] == 1.0 and r["sets"]["b"]["exact_accuracy"] == 0.0
    assert r["sets"]["a"]["q_halt_accuracy"] == 0.5 and r["sets"]["b"]["q_halt_accuracy"] == 0.5
    json.dumps(r)  # plain data


def test_no_examples_gives_none_not_a_crash():
    empty = np.zeros((0,))
    m = compute_metrics(empty, empty, empty, q_halt=empty, steps=empty)["overall"]
    assert m["n_examples"] == 0 and m["exact_accuracy"] is None and m["token_accuracy"] is None
    assert m["mean_steps"] is None and m["steps_histogram"] == {}
    assert list(compute_baselines(empty, empty)) == ["copy_input"]


def test_mask_fn_and_errors():
    inputs, labels = fake_sudoku(n=2)
    only_first = lambda i, l: np.arange(81)[None, :].repeat(i.shape[0], 0) == 0
    assert scored_mask(inputs, labels, mask_fn=only_first).sum() == 2
    with pytest.raises(ValueError):
        compute_metrics(inputs, labels, labels[:, :80])
    with pytest.raises(HrmkitError, match="unknown task 'chess'"):
        compute_metrics(inputs, labels, labels, task="chess")
    with pytest.raises(ValueError):
        compute_metrics(inputs, labels, labels, q_halt=np.zeros(3))


def test_copy_and_most_common_baselines_on_sudoku():
    inputs, labels = fake_sudoku()
    train_labels = np.full((5, 81), 7)
    b = compute_baselines(inputs, labels, train_labels=train_labels, task="sudoku")
    assert b["copy_input"]["overall"]["exact_accuracy"] == 0.0
    assert b["copy_input"]["overall"]["token_accuracy"] == 0.0
    mc = b["most_common_token"]
    assert mc["baseline"]["token"] == 7 and mc["baseline"]["source"] == "train"
    assert mc["overall"]["exact_accuracy"] == 0.0
    assert 0.05 < mc["overall"]["token_accuracy"] < 0.2  # about 1/9
    b_eval = compute_baselines(inputs, labels, task="sudoku")
    assert b_eval["most_common_token"]["baseline"]["source"] == "eval"
    assert most_common_token(np.array([[0, 5, 5, -100, 3]])) == 5


def padded_arc_like(n=30, seed=0):
    """ARC-like canvases: a 3x3 output in a 6x6 canvas, background-heavy, rest PAD (ignored at batch time)."""
    rng = np.random.default_rng(seed)
    labels = np.full((n, 6, 6), -100)
    inputs = np.zeros((n, 6, 6), dtype=np.int64)
    grid = np.where(rng.random((n, 3, 3)) < 0.8, 2, rng.integers(3, 12, size=(n, 3, 3)))
    labels[:, :3, :3] = grid
    labels[:, 3, :3] = 1
    labels[:, :3, 3] = 1
    inputs[:, :3, :3] = rng.integers(2, 12, size=(n, 3, 3))
    return inputs.reshape(n, -1), labels.reshape(n, -1)


def test_origin_failure_is_visible_in_summary():
    """A constant 'background' predictor gets a high token accuracy and zero exact accuracy; the table shows
    the most_common_token baseline with the same numbers and warns."""
    inputs, labels = padded_arc_like()
    preds = np.full_like(labels, 2)
    model = compute_metrics(inputs, labels, preds, task="arc")
    assert model["overall"]["token_accuracy"] > 0.4 and model["overall"]["exact_accuracy"] == 0.0
    base = compute_baselines(inputs, labels, task="arc")
    text = format_summary(model, base)
    header = next(line for line in text.splitlines() if "token accuracy" in line)
    assert header.index("exact accuracy") < header.index("token accuracy")
    assert "copy_input" in text and "most_common_token" in text
    assert "WARNING" in text and "does not beat" in text


def test_summary_has_sets_and_no_warning_when_model_wins():
    inputs, labels = fake_sudoku(n=6)
    sets = ["easy"] * 3 + ["hard"] * 3
    model = compute_metrics(inputs, labels, labels, task="sudoku", sets=sets)
    base = compute_baselines(inputs, labels, task="sudoku", sets=sets)
    text = format_summary(model, base)
    assert "set easy" in text and "set hard" in text and "WARNING" not in text
    assert "100.0%" in text and "0.0%" in text


def test_arc_grid_baselines():
    ident = np.array([[1, 2], [3, 4]])
    demos = {"copy": [(np.eye(2, dtype=int), np.eye(2, dtype=int))],
             "const": [(np.zeros((2, 2), int), np.full((1, 1), 5)), (np.ones((2, 2), int), np.full((1, 1), 5)),
                       (np.ones((3, 3), int), np.full((1, 1), 6))]}
    tests = {"copy": [ident], "const": [np.zeros((3, 3), int)]}
    solutions = {"copy": [ident], "const": [np.full((1, 1), 5)]}
    b = arc_baselines(demos, tests, solutions)
    assert b["arc_test_input"]["pass@1"] == 0.5  # solves "copy" only
    assert b["arc_test_input"]["exact_accuracy"] == 0.5
    assert b["arc_most_common_demo_output"]["pass@1"] == 0.5  # solves "const" only
    assert "description" in b["arc_most_common_demo_output"]["baseline"]
    json.dumps(b)
