"""ARC scoring by voting over augmented predictions, pass@k per task (ARC Prize rule) and Kaggle submission.

Procedure (docs/design.md §5): each prediction of an augmented version of a test input is decoded to a grid
(an empty crop is counted and votes for the empty answer, never right), mapped back through the inverse augmentation (inverse dihedral,
then inverse colour permutation), and identical answers are grouped per (task, test input). Answers are
ranked by vote count, ties broken by the mean sigmoid(q_halt) of their votes, then by first appearance (so
the ranking is deterministic). A test input is solved at k if the right grid is among the top k answers; a
task scores the fraction of its test inputs solved; the score is the mean over tasks. The headline is pass@2.

Decoding and inversion belong to `hrmkit.data.arc` (`decode_grid(tokens[900]) -> grid | None`,
`invert_augmentation(grid, dihedral_id, colour_perm) -> grid`); they are imported lazily, or passed in as
`decode_fn` / `invert_fn`. A prediction with dihedral_id 0 and no colour permutation is never inverted.

Public API
----------
- `ArcPrediction` dataclass (task_id, test_index, tokens | grid, dihedral_id, colour_perm, q_halt);
  plain dicts with the same keys are accepted everywhere.
- `Candidate` dataclass (grid, votes, q_sum, first_seen; `mean_q`).
- `rank_candidates(predictions, *, decode_fn=None, invert_fn=None) -> RankedAnswers`
- `VoteTally`: votes added over several prediction passes (`add`, `ranked`), for aggregated voting.
- `score_ranked(ranked, solutions, *, ks=DEFAULT_KS) -> dict`
- `build_submission(ranked, test_counts) -> dict`; `write_submission(path, submission) -> Path`
- `score_arc(predictions, solutions, *, ks=DEFAULT_KS, decode_fn=None, invert_fn=None,
  submission_path=None) -> dict`
- `arc_task_table(score) -> list[dict]`: one row per task for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from hrmkit.fsutil import atomic_write_json

DEFAULT_KS = (1, 2, 5, 10, 100, 1000)  # TinyRecursiveModels evaluators/arc.py pass_Ks
MAX_GRID_SIDE = 30

DecodeFn = Callable[[np.ndarray], "np.ndarray | None"]
InvertFn = Callable[[np.ndarray, int, Any], np.ndarray]
Key = tuple[str, int]


@dataclass
class ArcPrediction:
    """One model prediction for one augmented version of one ARC test input.

    task_id: the original task name; test_index: which test input of the task (0-based).
    tokens: int [900] predicted canvas tokens in the augmented frame (decoded with `decode_fn`), or
    grid: int [h, w] colours 0..9 already decoded but still in the augmented frame (give one of the two).
    dihedral_id: 0..7, the transform applied to this version (0 = identity);
    colour_perm: the colour permutation of this version as stored by `hrmkit.data.arc` (None = identity).
    q_halt: the model's halting logit (higher = more confident); used to break vote ties.
    """

    task_id: str
    test_index: int
    tokens: Any = None
    grid: Any = None
    dihedral_id: int = 0
    colour_perm: Any = None
    q_halt: float = 0.0


@dataclass
class Candidate:
    """One distinct answer (in the original frame) for one test input, with its votes."""

    grid: np.ndarray
    votes: int = 0
    q_sum: float = 0.0  # sum of sigmoid(q_halt) over the votes
    first_seen: int = 0

    @property
    def mean_q(self) -> float:
        """Mean sigmoid(q_halt) of the votes, in [0, 1]."""
        return self.q_sum / self.votes if self.votes else 0.0


@dataclass
class RankedAnswers:
    """Candidates per (task_id, test_index), best first, with counts of what was read."""

    candidates: dict[Key, list[Candidate]] = field(default_factory=dict)
    n_predictions: dict[Key, int] = field(default_factory=dict)
    n_invalid: dict[Key, int] = field(default_factory=dict)


def _sigmoid(x: float) -> float:
    x = float(x)
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _is_identity_perm(perm: Any) -> bool:
    if perm is None:
        return True
    p = np.asarray(perm).reshape(-1)
    return bool(np.array_equal(p, np.arange(p.size)))


def _valid_grid(grid: Any) -> np.ndarray | None:
    """int64 [h, w] if `grid` is a 2-D grid of colours 0..9 with sides 1..30, else None."""
    if grid is None:
        return None
    try:
        arr = np.asarray(grid)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or not (1 <= arr.shape[0] <= MAX_GRID_SIDE and 1 <= arr.shape[1] <= MAX_GRID_SIDE):
        return None
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 9:
        return None
    return arr.astype(np.int64)


def _default_decode() -> DecodeFn:
    try:
        from hrmkit.data.arc import decode_grid
    except ImportError as e:  # pragma: no cover - depends on the data module being installed
        raise RuntimeError("hrmkit.data.arc.decode_grid is unavailable; pass decode_fn=") from e
    return decode_grid


def _default_invert() -> InvertFn:
    try:
        from hrmkit.data.arc import invert_augmentation
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("hrmkit.data.arc.invert_augmentation is unavailable; pass invert_fn=") from e
    return invert_augmentation


def _as_prediction(p: Any) -> ArcPrediction:
    if isinstance(p, ArcPrediction):
        return p
    if isinstance(p, Mapping):
        return ArcPrediction(**dict(p))
    raise TypeError(f"expected ArcPrediction or dict, got {type(p).__name__}")


EMPTY = np.zeros((0, 0), dtype=np.int64)  # the answer of an empty crop: a candidate that is never right


class VoteTally:
    """Votes per (task, test input), kept as distinct answers with their vote counts and summed
    sigmoid(q_halt), so that votes can be added over several prediction passes (TinyRecursiveModels'
    aggregated voting pools every evaluation of a run) without keeping every prediction.

    `add(predictions, decode_fn=None, invert_fn=None)` decodes, un-augments and counts predictions;
    `ranked()` returns the `RankedAnswers`; `passes` counts the `add` calls.
    """

    def __init__(self) -> None:
        self.groups: dict[Key, dict[tuple, Candidate]] = {}
        self.n_predictions: dict[Key, int] = {}
        self.n_invalid: dict[Key, int] = {}
        self.order = 0
        self.passes = 0

    def add(self, predictions: Iterable[ArcPrediction | Mapping], decode_fn: DecodeFn | None = None,
            invert_fn: InvertFn | None = None) -> "VoteTally":
        """Count `predictions` (see `rank_candidates`). Returns self."""
        self.passes += 1
        for raw in predictions:
            p = _as_prediction(raw)
            key = (str(p.task_id), int(p.test_index))
            self.n_predictions[key] = self.n_predictions.get(key, 0) + 1
            self.n_invalid.setdefault(key, 0)
            group = self.groups.setdefault(key, {})
            if p.grid is not None:
                grid = _valid_grid(p.grid)
            else:
                decode_fn = decode_fn or _default_decode()
                grid = _valid_grid(decode_fn(np.asarray(p.tokens)))
            if grid is not None and not (int(p.dihedral_id) == 0 and _is_identity_perm(p.colour_perm)):
                invert_fn = invert_fn or _default_invert()
                perm = p.colour_perm if p.colour_perm is not None else tuple(range(10))
                grid = _valid_grid(invert_fn(grid, int(p.dihedral_id), perm))
            if grid is None:  # empty crop: votes as the empty answer, as in the references
                self.n_invalid[key] += 1
                grid = EMPTY
            gkey = (grid.shape, grid.tobytes())
            cand = group.get(gkey)
            if cand is None:
                cand = group[gkey] = Candidate(grid=grid, first_seen=self.order)
                self.order += 1
            cand.votes += 1
            cand.q_sum += _sigmoid(p.q_halt)
        return self

    def ranked(self) -> RankedAnswers:
        """Candidates per (task, test input), best first: votes, then mean sigmoid(q_halt), then first appearance."""
        ranked = RankedAnswers(n_predictions=dict(self.n_predictions), n_invalid=dict(self.n_invalid))
        for key, cands in self.groups.items():
            ranked.candidates[key] = sorted(cands.values(), key=lambda c: (-c.votes, -c.mean_q, c.first_seen))
        return ranked


def rank_candidates(predictions: Iterable[ArcPrediction | Mapping], *, decode_fn: DecodeFn | None = None,
                    invert_fn: InvertFn | None = None) -> RankedAnswers:
    """Decode, un-augment and group predictions; rank each (task, test input)'s answers.

    Ranking: votes (descending), then mean sigmoid(q_halt) (descending), then first appearance (the
    references' stable sort by (votes, mean q)). A prediction whose crop is empty or not a grid (None, not
    2-D, sides outside 1..30, colours outside 0..9) is counted in `n_invalid` and votes for the empty answer
    (a 0x0 grid, never right), as in the references, so it can take a top-k slot. Raises RuntimeError if
    decoding/inversion is needed and neither a function is passed nor `hrmkit.data.arc` provides one.
    """
    return VoteTally().add(predictions, decode_fn, invert_fn).ranked()


def _grids_equal(a: np.ndarray, b: Any) -> bool:
    b = np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def score_ranked(ranked: RankedAnswers, solutions: Mapping[str, Sequence[Any]], *,
                 ks: Sequence[int] = DEFAULT_KS) -> dict:
    """pass@k per test input, per task (fraction of its test inputs) and overall (mean over tasks).

    solutions: {task_id: [expected output grid (int [h, w], colours 0..9) per test_index]}; every task
    listed is scored (a test input without any valid prediction scores 0). Predictions for tasks or test
    indices not in `solutions` are counted in `n_unscored_predictions` and otherwise ignored.

    Returns a JSON-serialisable dict: {"ks", "n_tasks", "n_test_inputs", "n_predictions", "n_invalid",
    "n_unscored_predictions", "pass@k" (float per k: the ARC score, TinyRecursiveModels' evaluator),
    "test_inputs_pass@k" (fraction of test inputs, not task-weighted), "tasks_solved_pass@k" (fraction of
    tasks with every test input right: sapientinc/HRM's arc_eval.ipynb), "tasks": [{"task_id", "n_test", "pass@k"..., "tests": [{"test_index",
    "n_predictions", "n_invalid", "n_candidates", "correct_rank" (1-based or None), "top": [{"votes",
    "mean_q", "shape", "correct"} for the top max(ks)]}]}]}.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    tasks = []
    scored_keys = set()
    for task_id in sorted(solutions):
        tests = []
        for ti, expected in enumerate(solutions[task_id]):
            key = (str(task_id), ti)
            scored_keys.add(key)
            cands = ranked.candidates.get(key, [])
            rank = next((i + 1 for i, c in enumerate(cands) if _grids_equal(c.grid, expected)), None)
            tests.append({
                "test_index": ti,
                "n_predictions": ranked.n_predictions.get(key, 0),
                "n_invalid": ranked.n_invalid.get(key, 0),
                "n_candidates": len(cands),
                "correct_rank": rank,
                "top": [{"votes": c.votes, "mean_q": round(c.mean_q, 6), "shape": list(c.grid.shape),
                         "correct": rank == i + 1} for i, c in enumerate(cands[:ks[-1]])],
            })
        row: dict[str, Any] = {"task_id": str(task_id), "n_test": len(tests)}
        for k in ks:
            hits = [t["correct_rank"] is not None and t["correct_rank"] <= k for t in tests]
            row[f"pass@{k}"] = float(np.mean(hits)) if hits else 0.0
        row["tests"] = tests
        tasks.append(row)
    all_tests = [t for row in tasks for t in row["tests"]]
    out: dict[str, Any] = {
        "ks": ks,
        "n_tasks": len(tasks),
        "n_test_inputs": len(all_tests),
        "n_predictions": int(sum(ranked.n_predictions.values())),
        "n_invalid": int(sum(ranked.n_invalid.values())),
        "n_unscored_predictions": int(sum(n for key, n in ranked.n_predictions.items() if key not in scored_keys)),
    }
    for k in ks:
        out[f"pass@{k}"] = float(np.mean([row[f"pass@{k}"] for row in tasks])) if tasks else None
    for k in ks:
        hits = [t["correct_rank"] is not None and t["correct_rank"] <= k for t in all_tests]
        out[f"test_inputs_pass@{k}"] = float(np.mean(hits)) if hits else None
    for k in ks:  # sapientinc/HRM arc_eval.ipynb: a task counts only when all its test inputs are right
        out[f"tasks_solved_pass@{k}"] = float(np.mean([row[f"pass@{k}"] == 1.0 for row in tasks])) if tasks else None
    out["tasks"] = tasks
    return out


def build_submission(ranked: RankedAnswers, test_counts: Mapping[str, int]) -> dict:
    """Kaggle ARC Prize submission: {task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}.

    test_counts: {task_id: number of test inputs}. Grids are lists of lists of int. The empty answer is
    skipped (the references would submit it as []; an attempt spent on a grid is never worse). With one
    candidate, attempt_2 repeats attempt_1; with none, both are [[0]] (the format requires every test input).
    """
    sub: dict[str, list[dict[str, list]]] = {}
    for task_id in sorted(test_counts):
        entries = []
        for ti in range(int(test_counts[task_id])):
            cands = [c for c in ranked.candidates.get((str(task_id), ti), []) if c.grid.size]
            grids = [c.grid.tolist() for c in cands[:2]] or [[[0]]]
            if len(grids) == 1:
                grids.append(grids[0])
            entries.append({"attempt_1": grids[0], "attempt_2": grids[1]})
        sub[str(task_id)] = entries
    return sub


def write_submission(path: str | Path, submission: Mapping) -> Path:
    """Write `submission` as JSON to `path` atomically; returns the path."""
    path = Path(path)
    atomic_write_json(path, submission)
    return path


def score_arc(predictions: Iterable[ArcPrediction | Mapping], solutions: Mapping[str, Sequence[Any]], *,
              ks: Sequence[int] = DEFAULT_KS, decode_fn: DecodeFn | None = None,
              invert_fn: InvertFn | None = None, submission_path: str | Path | None = None) -> dict:
    """Rank, score and (optionally) write `submission.json` for one prediction set.

    See `rank_candidates` and `score_ranked` for the arguments and the returned dict; the submission
    covers every task in `solutions`. `submission_path`, when given, is added to the result.
    """
    ranked = rank_candidates(predictions, decode_fn=decode_fn, invert_fn=invert_fn)
    score = score_ranked(ranked, solutions, ks=ks)
    if submission_path is not None:
        counts = {t: len(v) for t, v in solutions.items()}
        score["submission_path"] = str(write_submission(submission_path, build_submission(ranked, counts)))
    return score


def arc_task_table(score: Mapping) -> list[dict]:
    """One row per task from a `score_ranked` result: task_id, n_test, pass@k..., and for the best answer
    of each test input its votes, mean q and whether it is right (lists, one entry per test input)."""
    rows = []
    for task in score.get("tasks", []):
        row = {k: v for k, v in task.items() if k != "tests"}
        row["top_votes"] = [t["top"][0]["votes"] if t["top"] else 0 for t in task["tests"]]
        row["top_mean_q"] = [t["top"][0]["mean_q"] if t["top"] else None for t in task["tests"]]
        row["correct_rank"] = [t["correct_rank"] for t in task["tests"]]
        row["n_invalid"] = sum(t["n_invalid"] for t in task["tests"])
        row["n_predictions"] = sum(t["n_predictions"] for t in task["tests"])
        rows.append(row)
    return rows
