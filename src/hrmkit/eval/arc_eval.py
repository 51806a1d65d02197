"""ARC evaluation of a prediction pass: augmented predictions -> votes -> pass@k, baselines, submission.json.

Links `evaluate.predict_split` output to `arc_scoring` (docs/design.md §5) using what `hrm data arc` writes
(`hrmkit.data.arc_build`): `identifiers.json` names every puzzle identifier `TASK|tTID|pPERM` (one per
augmented version), `test_tasks.json` holds every evaluation task's test pairs in original form, and test
example j of a test-split puzzle is its task's test pair j. Datasets built by the reference builders
(`build_arc_dataset.py`) are scored too: their names (`TASK_tT_PERM`, `TASK|||tT|||PERM`, the bare task id
for the unaugmented version) are read by `data.arc.parse_any_identifier`, and without test_tasks.json the
test pairs are read from the unaugmented version of each task in the test split (inputs and labels, which sit
at offset 0 there), grouped by task from the identifiers. The task's demonstration pairs (for the "most
common demonstration output" baseline) are read back from the identity version of the task in the train
split (reference eval policy); with the strict policy that baseline is left out.

Public API
----------
- `load_test_tasks(dataset_dir) -> {task_id: [(input grid, output grid), ...]}`
- `tasks_from_split(split, names)`: the same read from the test split's unaugmented versions
- `dataset_tasks(dataset_dir)`: test_tasks.json when present, else `tasks_from_split` on the test split
- `test_indices(split, n) -> int64 [n]`: test pair index of the first n examples (test_batches order)
- `arc_predictions(preds, split, names, tasks=None) -> list[ArcPrediction]`
- `load_demonstrations(dataset_dir, task_ids, names) -> {task_id: [(input, output), ...]}`
- `score_arc_split(preds, split, *, submission_path=None, ks=DEFAULT_KS) -> dict | None`
- `score_prediction_sets(prediction_sets, dataset_dir, *, submission_path=None, ks=DEFAULT_KS) -> dict`
- `arc_examples(ranked, tasks, *, max_examples=8) -> list[dict]` (report example dicts, original frame)
- `decode_placed(tokens) -> grid | None`: decode a canvas whose grid is not at the top-left corner.
- `AggregatedVotes`: votes pooled over the evaluations of a training run (`eval.arc_aggregate`).
Grids are int arrays [h, w] of colours 0..9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hrmkit.data import arc
from hrmkit.data.format import SplitData, load_identifiers, load_split
from hrmkit.errors import HrmkitError
from hrmkit.eval.arc_scoring import (DEFAULT_KS, ArcPrediction, RankedAnswers, VoteTally, arc_task_table, build_submission,
                                     rank_candidates, score_ranked, write_submission)
from hrmkit.eval.baselines import arc_baselines

TEST_TASKS_FILE = "test_tasks.json"


def load_test_tasks(dataset_dir: str | Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Test pairs per evaluation task from DATASET/test_tasks.json (`{task_id: [{"input", "output"}]}`).

    Grids are validated (uint8 [h, w], colours 0..9). Raises HrmkitError when the file is missing or bad.
    """
    path = Path(dataset_dir) / TEST_TASKS_FILE
    if not path.is_file():
        raise HrmkitError(f"{path}: not found (ARC datasets built by `hrm data arc` list their test pairs there)")
    obj = arc.read_json(path)
    if not isinstance(obj, dict):
        raise HrmkitError(f"{path}: expected an object {{task_id: [test pair, ...]}}")
    tasks = {}
    for task_id, pairs in obj.items():
        if not isinstance(pairs, list):
            raise HrmkitError(f"{path}: task {task_id}: expected a list of test pairs, got {type(pairs).__name__}")
        tasks[task_id] = [(arc.parse_grid(p.get("input") if isinstance(p, dict) else None, str(path), task_id,
                                          f"test[{i}].input"),
                           None if isinstance(p, dict) and p.get("output", 0) is None else  # no solution known
                           arc.parse_grid(p.get("output") if isinstance(p, dict) else None, str(path), task_id,
                                          f"test[{i}].output"))
                          for i, p in enumerate(pairs)]
    return tasks


def test_indices(split: SplitData, n: int) -> np.ndarray:
    """Position of each of the first `n` examples (sets in order, rows in order) inside its puzzle: the
    task's test pair index. Returns int64 [n]."""
    out = []
    for arrs in split.sets.values():
        rows = np.arange(min(arrs.num_examples, n - sum(len(o) for o in out)))
        puz = np.searchsorted(arrs.puzzle_indices, rows, side="right") - 1
        out.append(rows - np.asarray(arrs.puzzle_indices)[puz])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


test_indices.__test__ = False  # not a pytest test, despite the name


def _parse_names(names: Sequence[str], ids: np.ndarray) -> dict[int, tuple[str, int, tuple[int, ...]]]:
    out = {}
    for i in np.unique(ids).tolist():
        if not 0 <= i < len(names):
            raise HrmkitError(f"puzzle identifier {i} is not in identifiers.json ({len(names)} names)")
        out[i] = arc.parse_any_identifier(names[i])
    return out


def _identity_versions(names: Sequence[str]) -> dict[int, str]:
    """{puzzle identifier: task id} of every task's unaugmented version (identity transform and colours)."""
    out = {}
    for i, n in enumerate(names):
        if i and not n.startswith("<"):  # "<blank>", and rows reserved by `hrm adapt` ("<pretrained N>")
            task, tid, perm = arc.parse_any_identifier(n)
            if tid == 0 and perm == arc.IDENTITY_PERM:
                out[i] = task
    return out


def tasks_from_split(split: SplitData, names: Sequence[str]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Test pairs per task read from `split` (a test split, examples at offset 0): the inputs and labels of each
    task's unaugmented version, in order, as the references' evaluators read them (sapientinc/HRM
    arc_eval.ipynb keys answers by the unaugmented puzzles' rows). Pairs whose label crops to no grid (a task
    without solutions) are left out. Returns {task_id: [(input, output), ...]}."""
    identity = _identity_versions(names)
    tasks: dict[str, list] = {}
    for arrs in split.sets.values():
        pid = np.asarray(arrs.puzzle_identifiers)
        for puz in np.flatnonzero(np.isin(pid, list(identity))).tolist():
            lo, hi = int(arrs.puzzle_indices[puz]), int(arrs.puzzle_indices[puz + 1])
            pairs = zip(arc.decode_grids(np.asarray(arrs.inputs[lo:hi])), arc.decode_grids(np.asarray(arrs.labels[lo:hi])))
            tasks.setdefault(identity[int(pid[puz])], []).extend((i, o) for i, o in pairs if i is not None and o is not None)
    return {t: pairs for t, pairs in tasks.items() if pairs}


def dataset_tasks(dataset_dir: str | Path) -> dict[str, list] | None:
    """Test pairs per task: DATASET/test_tasks.json when present (hrm data arc), else `tasks_from_split` on
    the dataset's test split (reference builders); None when neither gives any task."""
    dataset_dir = Path(dataset_dir)
    if (dataset_dir / TEST_TASKS_FILE).is_file():
        return load_test_tasks(dataset_dir)
    return tasks_from_split(load_split(dataset_dir, "test"), load_identifiers(dataset_dir)) or None


def _match_test_index(grid: np.ndarray | None, tests: Sequence[tuple[np.ndarray, np.ndarray]], fallback: int) -> int:
    """Index of the test pair whose input is `grid` (original frame); `fallback` when it is one of several
    matches or there is none (an undecodable input)."""
    hits = [] if grid is None else [j for j, (inp, _) in enumerate(tests)
                                    if inp.shape == grid.shape and np.array_equal(inp, grid)]
    return hits[0] if len(hits) == 1 or (hits and fallback not in hits) else fallback


def arc_predictions(preds: Any, split: SplitData, names: Sequence[str],
                    tasks: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]] | None = None) -> list[ArcPrediction]:
    """One ArcPrediction per evaluated example of `preds` (an `evaluate.Predictions` over `split`).

    Predicted canvases (int [N, 900]) are decoded here (top-left crop, still in the augmented frame); an
    undecodable one keeps its tokens and is counted invalid by the scorer. names: identifiers.json.
    The test index of an example is its position inside its puzzle (the builder's order); with `tasks`
    (`load_test_tasks`) it is the test pair whose input equals the example's un-augmented input, which also
    holds for re-packed subsets of the split (e.g. the training loop's fast evaluation subset).
    Raises HrmkitError when an identifier is not an ARC version name.
    """
    n = len(preds.preds)
    parsed = _parse_names(names, preds.puzzle_identifiers)
    index = test_indices(split, n)
    grids = arc.decode_grids(np.asarray(preds.preds)) if n else []
    inputs = arc.decode_grids(np.asarray(preds.inputs)) if n and tasks is not None else [None] * n
    out = []
    for i in range(n):
        task_id, tid, perm = parsed[int(preds.puzzle_identifiers[i])]
        ti = int(index[i])
        if tasks is not None and task_id in tasks:
            inp = inputs[i]
            inp = None if inp is None else arc.invert_augmentation(inp, tid, perm)
            ti = _match_test_index(inp, tasks[task_id], ti)
        grid = grids[i]
        out.append(ArcPrediction(task_id, ti, tokens=None if grid is not None else preds.preds[i],
                                 grid=grid, dihedral_id=tid, colour_perm=perm, q_halt=float(preds.q_halt[i])))
    return out


def decode_placed(tokens: Any) -> np.ndarray | None:
    """Grid of a canvas (int [900]) whose grid sits at any top-left offset (train-split rows are translated):
    the first row and column holding a colour give the offset, then the reference crop. None when no colour."""
    t = np.asarray(tokens).astype(np.int64).reshape(arc.GRID_MAX, arc.GRID_MAX)
    colour = (t >= arc.COLOR_OFFSET) & (t < arc.COLOR_OFFSET + arc.NUM_COLORS)
    if not colour.any():
        return None
    r0, c0 = int(np.argmax(colour.any(axis=1))), int(np.argmax(colour.any(axis=0)))
    shifted = np.full_like(t, arc.PAD)
    shifted[:arc.GRID_MAX - r0, :arc.GRID_MAX - c0] = t[r0:, c0:]
    return arc.decode_grid(shifted)


def load_demonstrations(dataset_dir: str | Path, task_ids: Sequence[str],
                        names: Sequence[str]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Demonstration pairs of `task_ids` read from the identity version of each task in the train split.

    Tasks without train-split rows (strict eval policy) are left out. Returns {task_id: [(input, output)]}.
    """
    wanted = set(task_ids)
    ids = {i: t for i, t in _identity_versions(names).items() if t in wanted}
    if not ids or not (Path(dataset_dir) / "train").is_dir():
        return {}
    train = load_split(dataset_dir, "train")
    demos: dict[str, list] = {}
    for arrs in train.sets.values():
        pid = np.asarray(arrs.puzzle_identifiers)
        for puz in np.flatnonzero(np.isin(pid, list(ids))).tolist():
            lo, hi = int(arrs.puzzle_indices[puz]), int(arrs.puzzle_indices[puz + 1])
            pairs = [(decode_placed(arrs.inputs[r]), decode_placed(arrs.labels[r])) for r in range(lo, hi)]
            demos[ids[int(pid[puz])]] = [(i, o) for i, o in pairs if i is not None and o is not None]
    return demos


def _baselines(dataset_dir: Path, tasks: Mapping[str, list], names: Sequence[str], ks: Sequence[int]) -> dict:
    """arc_baselines on `tasks`: pass@k keys, n_examples and description only."""
    test_inputs = {t: [i for i, _ in pairs] for t, pairs in tasks.items()}
    solutions = {t: [o for _, o in pairs] for t, pairs in tasks.items()}
    demos = load_demonstrations(dataset_dir, list(tasks), names)
    scores = arc_baselines(demos, test_inputs, solutions, ks=ks)
    if not demos:
        scores.pop("arc_most_common_demo_output", None)
    keep = lambda k: k.startswith("pass@") or k.startswith("test_inputs_pass@") or k in ("n_examples", "baseline")
    return {name: {k: v for k, v in s.items() if keep(k)} for name, s in scores.items()}


def _score(predictions: list[ArcPrediction], dataset_dir: Path, all_tasks: Mapping[str, list], names: Sequence[str],
           submission_path: str | Path | None, ks: Sequence[int]) -> dict:
    predicted = {p.task_id for p in predictions}
    seen = {t: pairs for t, pairs in all_tasks.items() if t in predicted}  # a partial pass scores what it saw
    tasks = {t: pairs for t, pairs in seen.items() if all(o is not None for _, o in pairs)}
    ranked = rank_candidates(predictions)
    solutions = {t: [o for _, o in pairs] for t, pairs in tasks.items()}
    score = score_ranked(ranked, solutions, ks=ks)
    score["n_tasks_in_dataset"] = sum(all(o is not None for _, o in pairs) for pairs in all_tasks.values())
    score["n_unsolved_tasks"] = len(seen) - len(tasks)  # predicted into the submission only: no answer to score
    if submission_path is not None:
        sub = build_submission(ranked, {t: len(v) for t, v in seen.items()})
        score["submission_path"] = str(write_submission(submission_path, sub))
    score["task_table"] = arc_task_table(score)
    return {"arc": score, "arc_baselines": _baselines(dataset_dir, tasks, names, ks), "arc_predictions": predictions,
            "arc_ranked": ranked, "arc_tasks": tasks}


def score_arc_split(preds: Any, split: SplitData, *, submission_path: str | Path | None = None,
                    ks: Sequence[int] = DEFAULT_KS) -> dict | None:
    """Vote, score and (optionally) write submission.json for one `evaluate.Predictions` over `split`.

    Only tasks with at least one evaluated example are scored (`max_examples` gives a partial pass;
    `arc["n_tasks"]` vs `arc["n_tasks_in_dataset"]` shows it). Returns None when the dataset has neither
    test_tasks.json nor unaugmented test versions to read the answers from; else {"arc": score (`score_ranked` dict + "task_table" rows + "submission_path"),
    "arc_baselines": {name: {pass@k..., n_examples, baseline}}, "arc_predictions": [ArcPrediction],
    "arc_ranked": RankedAnswers, "arc_tasks": {task_id: [(input, output)]}}.
    Raises HrmkitError on malformed identifiers or test_tasks.json.
    """
    dataset_dir = split.path.parent
    tasks = dataset_tasks(dataset_dir)  # not `split`: it may be a subset (the training loop's fast evaluation)
    if tasks is None:
        return None
    names = load_identifiers(dataset_dir)
    return _score(arc_predictions(preds, split, names, tasks), dataset_dir, tasks, names, submission_path, ks)


def score_prediction_sets(prediction_sets: Sequence[list[ArcPrediction]], dataset_dir: str | Path, *,
                          submission_path: str | Path | None = None, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Votes pooled over several prediction sets (checkpoints): every prediction is one vote. Returns what
    `score_arc_split` returns, with `arc["n_prediction_sets"]`."""
    dataset_dir = Path(dataset_dir)
    names = load_identifiers(dataset_dir)
    pooled = [p for preds in prediction_sets for p in preds]
    out = _score(pooled, dataset_dir, dataset_tasks(dataset_dir) or {}, names, submission_path, ks)
    out["arc"]["n_prediction_sets"] = len(prediction_sets)
    return out


def arc_examples(ranked: RankedAnswers, tasks: Mapping[str, list], *, max_examples: int = 8) -> list[dict]:
    """Report example dicts (kind "arc", original frame): per test input, its input, expected output and the
    two best voted answers with their votes and mean sigmoid(q_halt). Up to `max_examples` failures and
    `max_examples` successes, in task order."""
    fails, wins = [], []
    for task_id in sorted(tasks):
        for ti, (inp, out) in enumerate(tasks[task_id]):
            cands = ranked.candidates.get((task_id, ti), [])[:2]
            correct = any(c.grid.shape == out.shape and np.array_equal(c.grid, out) for c in cands)
            bucket = wins if correct else fails
            if len(bucket) < max_examples:
                bucket.append({"kind": "arc", "name": f"{task_id} test {ti}", "input": inp, "expected": out,
                               "predictions": [c.grid for c in cands] or [None], "correct": correct,
                               "votes": [c.votes for c in cands], "q": [c.mean_q for c in cands]})
    return fails + wins


class AggregatedVotes:
    """Votes pooled over every evaluation of a training run (`eval.arc_aggregate: true`), as
    TinyRecursiveModels' ARC evaluator does by default (`aggregated_voting=True`: its votes are never cleared
    between evaluations, so its reported pass@k at an evaluation counts the votes of all earlier ones).
    hrmkit scores each evaluation on its own by default; these numbers are reported beside, under
    `arc_aggregated/` keys. The tally lives in memory: after a resume it restarts from the resumed evaluation."""

    PREFIX = "arc_aggregated/"

    def __init__(self, ks: Sequence[int] = DEFAULT_KS):
        self.tally = VoteTally()
        self.ks = tuple(ks)
        self.tasks: dict[str, list] = {}

    def add(self, predictions: list[ArcPrediction] | None, tasks: Mapping[str, list] | None) -> dict[str, Any]:
        """Add the votes of one evaluation of an ARC split (`EvalResult.arc_predictions`, `.arc_tasks`); return
        the pooled scores: {"arc_aggregated/pass@k": float per k, "arc_aggregated/evaluations": count}; {}
        without ARC votes."""
        if predictions is None:
            return {}
        self.tally.add(predictions)
        self.tasks.update(tasks or {})
        score = score_ranked(self.tally.ranked(), {t: [o for _, o in p] for t, p in self.tasks.items()}, ks=self.ks)
        out = {f"{self.PREFIX}pass@{k}": score[f"pass@{k}"] for k in self.ks}
        out[f"{self.PREFIX}evaluations"] = self.tally.passes
        return out
