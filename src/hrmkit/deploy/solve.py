"""Solving one puzzle with a trained model: what `hrm solve` prints, as data.

- `solve_grid(model, puzzle, segments, tta=None)`: one puzzle in its task's natural form (a Sudoku string, maze
  text, a grid) -> `GridSolution` (answer, ACT segments, the halting step, the per-segment thinking view, the
  task's check of the answer (`Task.check`, None without rules) and, with `tta` K, the vote table over K
  augmented versions).
- `solve_arc(model, task, segments)`: an ARC task -> `ArcSolution`: every augmented version of each test input
  that the model has a puzzle embedding for (`TASK|tTID|pPERM` in the training dataset's identifiers.json) is
  run, and the answers are un-augmented and voted by `eval.arc_scoring.rank_candidates`, exactly as
  `hrm eval` scores ARC (docs/design.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hrmkit.data import arc, render
from hrmkit.deploy.api import Model, Prediction
from hrmkit.errors import HrmkitError
from hrmkit.tasks import Check, Task
from hrmkit.tasks.arc import ArcTaskInput


@dataclass
class Thinking:
    """The answer forming over the ACT segments of one row: `frames` [(display grid, changed-cell mask)] one
    per segment (`render.segment_frames`), q_halt and q_continue logits per segment (q_continue None without
    that head), halt_step: the first segment after which the halting rule said stop (1-based)."""

    frames: list[tuple[Any, Any]]
    q_halt: list[float]
    q_continue: list[float] | None
    halt_step: int

    @property
    def segments(self) -> int:
        return len(self.frames)


def thinking(kind: Task | str, input_tokens: Any, pred: Prediction, row: int = 0) -> Thinking:
    """The `Thinking` of row `row` of a prediction made with keep_segments=True."""
    frames = render.segment_frames(kind, input_tokens, pred.segment_tokens[row])
    q_cont = None if pred.q_continue is None else pred.q_continue[row].tolist()
    return Thinking(frames, pred.q_halt[row].tolist(), q_cont, int(pred.halt_step[row]))


@dataclass
class GridSolution:
    """One puzzle solved: its task, the puzzle's tokens (int [S]), its display grid, the answer's display grid
    and natural form, the thinking view and `check` (`Task.check`, None for a task without rules)."""

    task: Task
    tokens: np.ndarray
    input_grid: np.ndarray
    answer_grid: np.ndarray
    answer: Any
    thinking: Thinking
    check: Check | None
    votes: list["GridVote"] | None = None


@dataclass
class GridVote:
    """One distinct answer of a vote over augmented versions (`solve_grid(..., tta=K)`): its natural form,
    votes, mean sigmoid(q_halt) of its votes, and whether it passes the task's verifier (`Task.verify`; None
    for a task without one)."""

    answer: Any
    votes: int
    mean_q: float
    verified: bool | None


def solve_grid(model: Model, puzzle: Any, segments: int | None = None, where: str = "INPUT",
               tta: int | None = None) -> GridSolution:
    """Solve one puzzle given in its task's natural form, running `segments` ACT segments (default
    halt_max_steps). With `tta` K the answer is the top vote over K augmented versions (`Model.predict_tta`)
    and `votes` holds every distinct answer, best first; the thinking view shows the puzzle itself (version 0).
    HrmkitError for malformed input, a size the model was not trained on (`Model.encode`), or an ARC model
    (`solve_arc`: its puzzles are tasks voted over the dataset's versions)."""
    task = model.task.require_natural_form(str(model.path))
    if task.votes_over_dataset_versions:
        raise HrmkitError(f"{model.path}: solve_grid solves one grid puzzle; this model solves {task.title} tasks "
                          "(solve_arc)")
    tokens = model.encode(puzzle, where)
    pred = model.predict(tokens[None], segments=segments, keep_segments=True)
    answer_tokens = pred.tokens[0].numpy()
    votes = None
    if tta is not None:
        voted = model.predict_tta(tokens[None], tta, segments=segments)
        answer_tokens = voted.tokens[0].numpy()
        cands = np.stack([a for a, _, _ in voted.ranked[0]])
        ok = (task.verify(np.broadcast_to(tokens, cands.shape), cands) if task.has_verifier
              else [None] * len(cands))
        votes = [GridVote(model.decode(a), n, q, None if v is None else bool(v))
                 for (a, n, q), v in zip(voted.ranked[0], ok)]
    return GridSolution(task, tokens, render.tokens_to_grid(task, tokens), render.tokens_to_grid(task, answer_tokens),
                        model.decode(answer_tokens), thinking(task, tokens, pred), task.check(tokens, answer_tokens),
                        votes)


@dataclass
class ArcAnswer:
    """One voted answer (original frame): grid uint8 [h, w], votes, mean sigmoid(q_halt) of its votes, and
    whether it equals the known test output (None when the task file has none)."""

    grid: np.ndarray
    votes: int
    mean_q: float
    correct: bool | None = None


@dataclass
class ArcTestResult:
    """One test input: its grid, the ranked answers (best first), how many versions voted and how many
    predictions could not be decoded, and the thinking view of the identity version."""

    input_grid: np.ndarray
    answers: list[ArcAnswer]
    n_predictions: int
    n_invalid: int
    thinking: Thinking
    expected: np.ndarray | None = None


@dataclass
class ArcSolution:
    task_id: str
    versions: int
    tests: list[ArcTestResult] = field(default_factory=list)


def task_versions(model: Model, task_id: str) -> list[tuple[int, int, tuple[int, ...]]]:
    """(puzzle identifier, dihedral id, colour permutation) of every version of `task_id` the model has a
    puzzle embedding for, identity first. HrmkitError when the task is not among them."""
    versions = []
    prefix = f"{task_id}|"
    for i, name in enumerate(model.identifiers()):
        if name.startswith(prefix):
            _, tid, perm = arc.parse_identifier(name)
            versions.append((i, tid, perm))
    if not versions:
        raise HrmkitError(f"task {task_id}: not one of the tasks in {model.dataset_dir}/identifiers.json. An HRM/TRM "
                          "ARC model learns one puzzle embedding per task version, so it answers only tasks whose "
                          "demonstrations were in its training data (name the task file after its task id, or "
                          "pass --task-id)")
    return sorted(versions, key=lambda v: (v[1] != 0 or v[2] != arc.IDENTITY_PERM, v[0]))


def solve_arc(model: Model, task: ArcTaskInput, segments: int | None = None,
              batch_size: int = 256) -> ArcSolution:
    """Run every version of every test input, un-augment and vote (module docstring)."""
    from hrmkit.eval.arc_scoring import ArcPrediction, rank_candidates

    versions = task_versions(model, task.task_id)
    ids = np.array([v[0] for v in versions], np.int64)
    out = ArcSolution(task.task_id, len(versions))
    for ti, grid in enumerate(task.test_inputs):
        rows = np.stack([arc.encode_grid(arc.augment_grid(grid, tid, perm)) for _, tid, perm in versions])
        pred = model.predict(rows, ids, segments=segments, batch_size=batch_size)
        votes = [ArcPrediction(task.task_id, ti, tokens=pred.tokens[k].numpy(), dihedral_id=tid, colour_perm=perm,
                               q_halt=float(pred.q_halt[k, -1])) for k, (_, tid, perm) in enumerate(versions)]
        ranked = rank_candidates(votes)
        key = (task.task_id, ti)
        expected = task.test_outputs[ti] if task.test_outputs else None
        answers = [ArcAnswer(c.grid.astype(np.uint8), c.votes, c.mean_q,
                             None if expected is None else bool(c.grid.shape == expected.shape
                                                                and np.array_equal(c.grid, expected)))
                   for c in ranked.candidates.get(key, [])]
        first = model.predict(rows[:1], ids[:1], segments=segments, keep_segments=True)
        out.tests.append(ArcTestResult(grid, answers, ranked.n_predictions.get(key, 0), ranked.n_invalid.get(key, 0),
                                       thinking(model.task, rows[0], first), expected))
    return out
