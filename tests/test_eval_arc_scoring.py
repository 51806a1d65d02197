"""ARC voting and pass@k on hand-built prediction sets whose scores are known."""

import json

import numpy as np
import pytest

from hrmkit.eval.arc_scoring import (ArcPrediction, VoteTally, arc_task_table, build_submission, rank_candidates,
                                     score_arc, score_ranked)


arc = pytest.importorskip("hrmkit.data.arc")

A = np.array([[1, 2, 3], [4, 5, 6]])
B = np.array([[7, 7], [0, 8]])
C = np.array([[9]])
PERM = (0, 3, 1, 2, 9, 8, 7, 6, 5, 4)


def pred(task, ti, grid, q=0.0, tid=0, perm=None):
    """A prediction of `grid` (original frame) made on the augmented version (tid, perm), as 900 tokens."""
    aug = grid if tid == 0 and perm is None else arc.augment_grid(grid, tid, perm or tuple(range(10)))
    return ArcPrediction(task, ti, tokens=arc.encode_grid(aug), dihedral_id=tid, colour_perm=perm, q_halt=q)


def test_votes_across_augmentations_are_pooled_after_inversion():
    preds = [pred("t", 0, A, tid=3, perm=PERM), pred("t", 0, A, tid=5), pred("t", 0, A, perm=PERM),
             pred("t", 0, B), pred("t", 0, B)]
    ranked = rank_candidates(preds)
    cands = ranked.candidates[("t", 0)]
    assert [c.votes for c in cands] == [3, 2]
    assert np.array_equal(cands[0].grid, A)
    s = score_arc(preds, {"t": [A]})
    assert s["pass@1"] == 1.0 and s["tasks"][0]["tests"][0]["correct_rank"] == 1


def test_tie_broken_by_mean_sigmoid_q():
    wrong_first = [pred("t", 0, A, q=-2.0), pred("t", 0, A, q=-1.0), pred("t", 0, B, q=3.0), pred("t", 0, B, q=0.0)]
    s = score_arc(wrong_first, {"t": [A]})
    assert s["pass@1"] == 0.0 and s["pass@2"] == 1.0
    top = s["tasks"][0]["tests"][0]["top"]
    assert top[0]["votes"] == top[1]["votes"] == 2 and top[0]["mean_q"] > top[1]["mean_q"]
    right_first = [pred("t", 0, A, q=3.0), pred("t", 0, A, q=0.0), pred("t", 0, B, q=-2.0), pred("t", 0, B, q=-1.0)]
    assert score_arc(right_first, {"t": [A]})["pass@1"] == 1.0
    # votes beat confidence: one very confident vote loses to two unsure ones
    more_votes = [pred("t", 0, A, q=-5.0), pred("t", 0, A, q=-5.0), pred("t", 0, B, q=10.0)]
    assert score_arc(more_votes, {"t": [A]})["pass@1"] == 1.0


def test_several_test_inputs_give_fractional_task_scores():
    solutions = {"one": [A], "two": [B, C]}
    preds = [pred("one", 0, A), pred("two", 0, B), pred("two", 1, A), pred("two", 1, A), pred("two", 1, C)]
    s = score_arc(preds, solutions, ks=(1, 2))
    by_task = {t["task_id"]: t for t in s["tasks"]}
    assert by_task["one"]["pass@1"] == 1.0
    assert by_task["two"]["pass@1"] == 0.5 and by_task["two"]["pass@2"] == 1.0
    assert s["pass@1"] == pytest.approx(0.75)  # mean over tasks, not over test inputs
    assert s["test_inputs_pass@1"] == pytest.approx(2 / 3)
    assert s["pass@2"] == 1.0 and s["n_tasks"] == 2 and s["n_test_inputs"] == 3
    json.dumps(s)


def test_empty_crops_vote_for_the_empty_answer_as_in_the_references(tmp_path):
    """An empty crop (or an answer that is no grid) is a candidate that is never right: with 5 of them, the
    empty answer outvotes the right one (rank 2), so pass@1 fails and pass@2 holds; the submission skips it."""
    pad_only = np.zeros(900, dtype=np.uint8)
    eos_first = arc.encode_grid(A).copy()
    eos_first[0] = 1
    preds = [ArcPrediction("t", 0, tokens=pad_only, q_halt=9.0), ArcPrediction("t", 0, tokens=pad_only),
             ArcPrediction("t", 0, tokens=eos_first), pred("t", 0, A, q=-9.0),
             ArcPrediction("t", 0, grid=[[1, 2], [3]]), ArcPrediction("t", 0, grid=np.full((2, 2), 12))]
    s = score_arc(preds, {"t": [A]}, submission_path=tmp_path / "sub.json")
    test = s["tasks"][0]["tests"][0]
    assert test["n_invalid"] == 5 and test["n_predictions"] == 6 and test["n_candidates"] == 2
    assert test["top"][0]["shape"] == [0, 0] and test["top"][0]["votes"] == 5 and test["correct_rank"] == 2
    assert s["pass@1"] == 0.0 and s["pass@2"] == 1.0 and s["n_invalid"] == 5
    assert json.loads((tmp_path / "sub.json").read_text())["t"] == [{"attempt_1": A.tolist(), "attempt_2": A.tolist()}]


def test_votes_add_up_over_passes():
    tally = VoteTally().add([pred("t", 0, A), pred("t", 0, B)]).add([pred("t", 0, B, q=1.0)])
    ranked = tally.ranked()
    assert tally.passes == 2 and [c.votes for c in ranked.candidates[("t", 0)]] == [2, 1]
    assert score_ranked(ranked, {"t": [B]}, ks=(1,))["pass@1"] == 1.0


def test_task_rules_fraction_and_all_solved():
    """pass@k gives a task the share of its test inputs solved (TRM evaluator, ARC Prize); tasks_solved_pass@k
    counts a task only when all are (sapientinc/HRM arc_eval.ipynb)."""
    s = score_arc([pred("two", 0, A), pred("two", 1, A), pred("one", 0, C)], {"two": [A, B], "one": [C]}, ks=(1, 2))
    assert s["pass@1"] == pytest.approx(0.75) and s["tasks_solved_pass@1"] == pytest.approx(0.5)


def test_fewer_than_two_candidates_and_missing_predictions(tmp_path):
    solutions = {"single": [A], "none": [B], "wrong": [C]}
    preds = [pred("single", 0, A), pred("wrong", 0, B), pred("ghost", 0, A)]
    path = tmp_path / "out" / "submission.json"
    s = score_arc(preds, solutions, submission_path=path)
    by_task = {t["task_id"]: t for t in s["tasks"]}
    assert by_task["single"]["pass@1"] == by_task["single"]["pass@2"] == 1.0
    assert by_task["none"]["pass@10"] == 0.0 and by_task["wrong"]["pass@2"] == 0.0
    assert s["pass@2"] == pytest.approx(1 / 3) and s["n_unscored_predictions"] == 1
    sub = json.loads(path.read_text())
    assert sorted(sub) == ["none", "single", "wrong"]
    assert sub["single"] == [{"attempt_1": A.tolist(), "attempt_2": A.tolist()}]
    assert sub["none"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]  # atomic: no temporary left
    assert s["submission_path"] == str(path)


def test_submission_two_attempts_and_grid_records():
    # already-decoded grids in the augmented frame, as plain dicts
    aug = arc.augment_grid(B, 2, PERM)
    preds = [{"task_id": "t", "test_index": 0, "grid": aug, "dihedral_id": 2, "colour_perm": PERM},
             {"task_id": "t", "test_index": 0, "grid": A}, {"task_id": "t", "test_index": 0, "grid": A}]
    ranked = rank_candidates(preds)
    sub = build_submission(ranked, {"t": 1})
    assert sub["t"][0]["attempt_1"] == A.tolist() and sub["t"][0]["attempt_2"] == B.tolist()
    assert all(isinstance(v, int) for row in sub["t"][0]["attempt_1"] for v in row)


def test_votes_pooled_over_checkpoints_are_one_prediction_set():
    ckpt1 = [pred("t", 0, B), pred("t", 0, A, q=-1.0)]  # alone: B first (tie on votes, higher q)
    ckpt2 = [pred("t", 0, A)]
    assert score_arc(ckpt1, {"t": [A]})["pass@1"] == 0.0
    assert score_arc(ckpt1 + ckpt2, {"t": [A]})["pass@1"] == 1.0


def test_custom_decode_and_invert_and_table():
    calls = []
    decode = lambda tokens: None if tokens[0] == 0 else np.array([[int(tokens[0])]])
    invert = lambda grid, tid, perm: calls.append(tid) or grid
    preds = [ArcPrediction("t", 0, tokens=np.array([3] + [0] * 899), dihedral_id=1),
             ArcPrediction("t", 0, tokens=np.zeros(900, int))]
    s = score_arc(preds, {"t": [[[3]]]}, decode_fn=decode, invert_fn=invert)
    assert s["pass@1"] == 1.0 and calls == [1]
    row = arc_task_table(s)[0]
    assert row["task_id"] == "t" and row["top_votes"] == [1] and row["correct_rank"] == [1]
    assert row["n_invalid"] == 1 and row["n_predictions"] == 2


def test_aggregated_votes_pool_the_evaluations_of_a_run():
    """eval.arc_aggregate: the second evaluation alone ranks B first (pass@1 0), pooled with the first one A
    leads again; keys are labelled arc_aggregated/."""
    from hrmkit.eval.arc_eval import AggregatedVotes

    tasks = {"t": [(A, A)]}
    agg = AggregatedVotes(ks=(1, 2))
    first = agg.add([pred("t", 0, A), pred("t", 0, A)], tasks)
    second = agg.add([pred("t", 0, B)], tasks)
    alone = score_arc([pred("t", 0, B)], {"t": [A]}, ks=(1,))
    assert first["arc_aggregated/pass@1"] == 1.0 and alone["pass@1"] == 0.0
    assert second == {"arc_aggregated/pass@1": 1.0, "arc_aggregated/pass@2": 1.0, "arc_aggregated/evaluations": 2}
    assert agg.add(None, None) == {}
