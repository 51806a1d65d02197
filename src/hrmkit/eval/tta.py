"""Test-time voting: run K augmented versions of every puzzle (and optionally several checkpoints), map each
answer back to the puzzle's frame and vote.

Each task votes through its own augmentations and their inverses (`Task.augmentation`, the ones its data
is built with): Sudoku through digit relabelling, transpose (square boxes) and band, stack, row and column
shuffles; mazes through the 8 dihedral transforms; grids through dihedral transforms and colour permutations.
Version 0 is always the puzzle itself, so K = 1 is the plain evaluation. ARC is voted over the augmented
versions its dataset holds, as `hrm eval` always did (`arc_eval`), not here.

Candidates are ranked by votes, then by the mean sigmoid(q_halt) of their votes, then by first appearance,
as ARC's (`arc_scoring`). The model never sees a label: every version runs with ignored labels, and the labels
are read only to score the voted answer (a test shuffles the split's labels and checks the votes are the
same). A verifier (`Task.verify`) may pick the best-ranked candidate that passes it; that is reported as a
separate figure, because the verifier knows the rules the model was supposed to learn.

Public API
----------
- `check_versions(k, where="--tta")`: 1..MAX_TTA_VERSIONS or HrmkitError.
- `task_augmentation(task, seq_len, versions, seed=0) -> tasks.Augmentation`.
- `predict_versions(head, split, aug, batch_size, device, ...) -> Votes` (answers of every version, in the
  puzzle's frame).
- `vote(votes_list, verifier=None) -> Tally` (votes pooled over checkpoints; top answer per puzzle).
- `tta_block(votes_list, task, verify=False) -> dict`: the `tta` block of `hrm eval --json`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from hrmkit.data.format import IGNORE_LABEL_ID, SplitData
from hrmkit.errors import HrmkitError
from hrmkit.tasks import Augmentation, Task, resolve

MAX_TTA_VERSIONS = 1024  # versions per puzzle; each is one more full evaluation


def check_versions(versions: int, where: str = "--tta") -> int:
    """`versions` when it is a whole number in 1..MAX_TTA_VERSIONS; HrmkitError naming `where` otherwise."""
    if isinstance(versions, bool) or not isinstance(versions, (int, np.integer)) or not 1 <= versions <= MAX_TTA_VERSIONS:
        raise HrmkitError(f"{where}: expected a number of versions in 1..{MAX_TTA_VERSIONS}, got {versions!r}")
    return int(versions)


def task_augmentation(task: Task | str | None, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
    """The `versions` test-time versions of `task`'s puzzles (its `Task.augmentation`); the same seed gives the
    same versions, so checkpoints of an ensemble vote on the same puzzles. HrmkitError for versions outside
    1..MAX_TTA_VERSIONS or more than the task has (ARC: voted over its dataset's versions instead)."""
    return resolve(task).augmentation(seq_len, check_versions(versions), seed)


@dataclass
class Votes:
    """Every version's answer to every puzzle of one checkpoint, mapped back to the puzzle's frame.

    inputs, labels: int64 [N, S] (labels -100 where ignored; read only for scoring); answers: int64 [K, N, S];
    q: float32 [K, N], sigmoid of the last segment's q_halt logit; seconds: wall time of the predictions;
    name: the checkpoint."""

    inputs: np.ndarray
    labels: np.ndarray
    answers: np.ndarray
    q: np.ndarray
    seconds: float
    name: str = ""


@torch.inference_mode()
def predict_versions(head: torch.nn.Module, split: SplitData, aug: Augmentation, batch_size: int,
                     device: torch.device | str = "cpu", max_examples: int | None = None, *,
                     segments: int | None = None, name: str = "",
                     progress: Callable[[int, int], None] | None = None) -> Votes:
    """Run all `aug.versions` versions of the first `max_examples` puzzles of `split` (all by default),
    about `batch_size` rows per forward pass, `segments` ACT segments each (default halt_max_steps), with
    ignored labels; answers are inverted into the puzzle's frame. Returns `Votes`."""
    from hrmkit.data.sampler import test_batches
    from hrmkit.eval.rollout import rollout

    head.eval()
    device = torch.device(device)
    K = aug.versions
    per_batch = max(1, batch_size // K)
    total = split.num_examples if max_examples is None else min(split.num_examples, max_examples)
    xs, ys, answers, qs = [], [], [], []
    seen = 0
    start = time.perf_counter()
    for batch, n_valid in test_batches(split, per_batch):
        if seen >= total:
            break
        n = min(n_valid, total - seen)
        x = batch["inputs"][:n].numpy()
        versions = aug.forward(x)  # [K, n, S]
        rows = torch.from_numpy(np.ascontiguousarray(versions.reshape(K * n, -1))).to(device, torch.int32)
        ids = batch["puzzle_identifiers"][:n].repeat(K).to(device)
        r = rollout(head, {"inputs": rows, "labels": torch.full_like(rows, IGNORE_LABEL_ID), "puzzle_identifiers": ids},
                    segments=segments)
        preds = r.outputs["preds"].long().cpu().numpy().reshape(K, n, -1)
        answers.append(aug.inverse(preds))
        qs.append(torch.sigmoid(r.q_halt[:, -1]).cpu().numpy().reshape(K, n))
        xs.append(x.astype(np.int64))
        ys.append(batch["labels"][:n].long().numpy())
        seen += n
        if progress is not None:
            progress(seen, total)
    seconds = time.perf_counter() - start
    if not xs:
        raise HrmkitError(f"{split.path}: no examples to vote on")
    return Votes(np.concatenate(xs), np.concatenate(ys), np.concatenate(answers, axis=1),
                 np.concatenate(qs, axis=1).astype(np.float32), seconds, name)


@dataclass
class Tally:
    """Voting result per puzzle (N puzzles, S = seq_len): top: int64 [N, S], the best-ranked answer;
    top_votes: int [N]; candidates: int [N], distinct answers; verified: int64 [N, S] the best-ranked answer
    passing the verifier (the top one when none passes), None without a verifier; passed: bool [N], some
    candidate passed the verifier (None without one); ranked: per puzzle [(answer [S], votes, mean q)] best first."""

    top: np.ndarray
    top_votes: np.ndarray
    candidates: np.ndarray
    verified: np.ndarray | None
    passed: np.ndarray | None
    ranked: list[list[tuple[np.ndarray, int, float]]]


def rank_answers(answers: np.ndarray, q: np.ndarray) -> list[tuple[np.ndarray, int, float]]:
    """Distinct answers among `answers` int [V, S] with their votes and mean q (q: float [V]), ranked by votes,
    then mean q, then first appearance."""
    uniq, first, inv = np.unique(answers, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    votes = np.bincount(inv, minlength=len(uniq))
    mean_q = np.bincount(inv, weights=q, minlength=len(uniq)) / votes
    order = sorted(range(len(uniq)), key=lambda i: (-votes[i], -mean_q[i], first[i]))
    return [(uniq[i], int(votes[i]), float(mean_q[i])) for i in order]


def vote(votes: Sequence[Votes], verifier: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Tally:
    """Pool the answers of every `Votes` (checkpoints of one task, on the same puzzles) and rank them per
    puzzle. With a `verifier(inputs [M, S], answers [M, S]) -> bool [M]`, also pick per puzzle the best-ranked
    candidate that passes it. HrmkitError when the Votes cover different puzzles."""
    first = votes[0]
    for v in votes[1:]:
        if v.inputs.shape != first.inputs.shape or not np.array_equal(v.inputs, first.inputs):
            raise HrmkitError(f"--ensemble: {v.name} and {first.name} voted on different puzzles")
    answers = np.concatenate([v.answers for v in votes])  # [V, N, S]
    q = np.concatenate([v.q for v in votes])
    ranked = [rank_answers(answers[:, i], q[:, i]) for i in range(answers.shape[1])]
    top = np.stack([r[0][0] for r in ranked])
    out = Tally(top, np.array([r[0][1] for r in ranked]), np.array([len(r) for r in ranked]), None, None, ranked)
    if verifier is not None:
        owner = np.concatenate([np.full(len(r), i) for i, r in enumerate(ranked)])
        cands = np.concatenate([np.stack([a for a, _, _ in r]) for r in ranked])
        ok = verifier(first.inputs[owner], cands)
        verified, passed, at = top.copy(), np.zeros(len(ranked), bool), 0
        for i, r in enumerate(ranked):
            hit = np.flatnonzero(ok[at:at + len(r)])
            if hit.size:
                verified[i], passed[i] = r[hit[0]][0], True
            at += len(r)
        out.verified, out.passed = verified, passed
    return out


def _points(k: int) -> list[int]:
    """1, 2, 4, ... up to k, and k."""
    pts, p = [], 1
    while p < k:
        pts.append(p)
        p *= 2
    return pts + [k]


def tta_block(votes: Sequence[Votes], task: Task | str | None, verify: bool = False) -> dict:
    """The `tta` block of `hrm eval --json`: versions (per checkpoint), checkpoints, votes (per puzzle),
    exact_accuracy and token_accuracy of the top-voted answer, unanimous_share (puzzles whose votes all
    agree), mean_candidates, seconds (all the versions' predictions), and `curve`: [{"versions": k, "votes",
    "exact_accuracy", "token_accuracy", "est_seconds"}] voting over the first k versions of each checkpoint
    (est_seconds: k/K of the measured time). With `verify` and a task verifier: `verified`
    {"exact_accuracy", "token_accuracy", "passed_share"}, the best-ranked candidate passing the verifier."""
    from hrmkit.eval.metrics import accuracy_pair

    task = resolve(task)
    inputs, labels = votes[0].inputs, votes[0].labels
    K = votes[0].answers.shape[0]
    checker = task.verify if verify and task.has_verifier else None
    tally = vote(votes, checker)
    exact, token = accuracy_pair(inputs, labels, tally.top, task=task)
    seconds = float(sum(v.seconds for v in votes))
    curve = []
    for k in _points(K):
        sub = tally if k == K else vote([Votes(v.inputs, v.labels, v.answers[:k], v.q[:k], v.seconds, v.name)
                                         for v in votes])
        e, t = accuracy_pair(inputs, labels, sub.top, task=task)
        curve.append({"versions": k, "votes": k * len(votes), "exact_accuracy": e, "token_accuracy": t,
                      "est_seconds": seconds * k / K})
    out = {"versions": K, "checkpoints": len(votes), "votes": K * len(votes), "exact_accuracy": exact,
           "token_accuracy": token, "unanimous_share": float((tally.candidates == 1).mean()),
           "mean_candidates": float(tally.candidates.mean()), "n_examples": int(len(inputs)), "seconds": seconds,
           "curve": curve}
    if verify:  # None for a task without a verifier
        out["verified"] = None
        if checker is not None:
            e, t = accuracy_pair(inputs, labels, tally.verified, task=task)
            out["verified"] = {"exact_accuracy": e, "token_accuracy": t, "passed_share": float(tally.passed.mean())}
    return out
