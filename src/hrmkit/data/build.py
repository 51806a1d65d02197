"""Write a dataset of any task from examples already encoded as tokens (docs/tasks.md shows it in use).

    from hrmkit.data.build import write_task_dataset
    write_task_dataset("data/my-task", task, train, test, vocab_size=task.vocab_size, num_aug=8, seed=0)

An example is `(inputs uint8 [S], labels uint8 [S], puzzle_name: str | None)` (a pair means no name):

- no name: the example is a puzzle of its own, in a group of its own, with identifier 0 ("<blank>"), as
  Sudoku and maze datasets are;
- a name: every example of that name (in order) forms one puzzle with an identifier of its own, as an ARC
  task's demonstrations do; identifiers.json lists "<blank>" then the names in order of first appearance in
  train. A name used in test must occur in train (the model learns one embedding per identifier).

With `num_aug` K > 0 every training group holds K + 1 puzzles: `task.augmentation(S, K + 1, seed)` applied
to inputs and labels alike (version 0, the identity, first), the seed drawn from `seed` and the group's
index. Each version of a named puzzle gets its own identifier "name|v{k}"; test examples use "name|v0".
The test split is never augmented. Everything is checked before the first file is written, and the dataset
is written inside `fsutil.atomic_directory`: an error leaves nothing on disk.

Public API: `write_task_dataset(...)`, `augmentation_seed(seed, group)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrmkit.data.format import BLANK_IDENTIFIER, SplitWriter, write_identifiers
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory
from hrmkit.limits import MAX_NUM_AUG, MAX_PUZZLE_IDENTIFIERS, check_int

MAX_TOKEN_VOCAB = 256  # tokens are stored as uint8


@dataclass
class _Group:
    """One group of a split: the rows of its original puzzle and the puzzle's name (None: blank)."""

    name: str | None
    inputs: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)


def augmentation_seed(seed: int, group: int) -> int:
    """The augmentation seed of training group `group` (0-based) of a build with `seed`: independent draws
    per group, the same for the same pair."""
    return int(np.random.SeedSequence([int(seed), int(group)]).generate_state(1, np.uint32)[0])


def _tokens(value: Any, what: str, vocab_size: int) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 1 or a.size == 0:
        raise HrmkitError(f"{what}: expected one token row [S], got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise HrmkitError(f"{what}: expected integer tokens, got dtype {a.dtype}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        col = int(np.argmax(a == bad))
        raise HrmkitError(f"{what}: token {bad} at position {col} is outside 0..{vocab_size - 1} (vocab_size {vocab_size})")
    return a.astype(np.uint8)


def _groups(examples: Any, split: str, vocab_size: int, seq_len: list[int]) -> list[_Group]:
    """The groups of one split in order of first appearance (module docstring); checks every example.
    `seq_len`: [S] once the first row was seen, shared across splits."""
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise HrmkitError(f"write_task_dataset: {split}: expected a sequence of (inputs, labels, puzzle_name), "
                          f"got {type(examples).__name__}")
    if len(examples) == 0:
        raise HrmkitError(f"write_task_dataset: {split}: no examples")
    groups: list[_Group] = []
    named: dict[str, _Group] = {}
    for i, ex in enumerate(examples):
        what = f"write_task_dataset: {split}[{i}]"
        if not isinstance(ex, (tuple, list)) or len(ex) not in (2, 3):
            raise HrmkitError(f"{what}: expected (inputs, labels, puzzle_name), got {type(ex).__name__}")
        x = _tokens(ex[0], f"{what}: inputs", vocab_size)
        y = _tokens(ex[1], f"{what}: labels", vocab_size)
        name = ex[2] if len(ex) == 3 else None
        if not seq_len:
            seq_len.append(x.size)
        for row, part in ((x, "inputs"), (y, "labels")):
            if row.size != seq_len[0]:
                raise HrmkitError(f"{what}: {part} has {row.size} tokens, the first example has {seq_len[0]}")
        if name is None:
            groups.append(_Group(None, [x], [y]))
            continue
        if not isinstance(name, str) or not name or name == BLANK_IDENTIFIER:
            raise HrmkitError(f"{what}: puzzle_name must be None or a non-empty string other than "
                              f"{BLANK_IDENTIFIER!r}, got {name!r}")
        if name not in named:
            named[name] = _Group(name)
            groups.append(named[name])
        named[name].inputs.append(x)
        named[name].labels.append(y)
    return groups


def _identifier_table(names: list[str], num_aug: int, given: Sequence[str] | None) -> dict[str, int]:
    """{identifier name: id} with "<blank>" = 0: the names in order, or `given` (which must hold them all)."""
    needed = [n if num_aug == 0 else f"{n}|v{k}" for n in names for k in range(num_aug + 1 if num_aug else 1)]
    if given is None:
        table = [BLANK_IDENTIFIER] + needed
    else:
        if isinstance(given, (str, bytes)) or not all(isinstance(n, str) for n in given):
            raise HrmkitError(f"write_task_dataset: identifiers: expected a list of names, got {given!r}")
        table = list(given)
        if not table or table[0] != BLANK_IDENTIFIER:
            table = [BLANK_IDENTIFIER] + table
        missing = [n for n in needed if n not in set(table)]
        if missing:
            raise HrmkitError(f"write_task_dataset: identifiers: {len(missing)} identifiers the examples need are "
                              f"not listed, first {missing[0]!r}")
    ids: dict[str, int] = {}
    for i, n in enumerate(table):
        if n in ids:
            raise HrmkitError(f"write_task_dataset: identifier {n!r} occurs twice (a puzzle name that looks like "
                              "another puzzle's augmented version \"name|v{k}\"?)" if given is None else
                              f"write_task_dataset: identifiers: {n!r} is listed twice")
        ids[n] = i
    if len(ids) > MAX_PUZZLE_IDENTIFIERS:
        raise HrmkitError(f"write_task_dataset: {len(ids)} puzzle identifiers, more than {MAX_PUZZLE_IDENTIFIERS}")
    return ids


def _augment(aug: Any, rows: np.ndarray, versions: int, task_name: str, vocab_size: int, what: str) -> np.ndarray:
    """uint8 [versions, n, S] of a task's augmentation applied to rows [n, S]; HrmkitError when the task
    returns something else, or a version 0 that is not the rows themselves."""
    out = np.asarray(aug.forward(rows))
    if out.shape != (versions,) + rows.shape:
        raise HrmkitError(f"task {task_name!r}: augmentation.forward of {what} returned shape {out.shape}, "
                          f"expected {(versions,) + rows.shape}")
    if out.dtype.kind not in "iu" or int(out.min()) < 0 or int(out.max()) >= vocab_size:
        raise HrmkitError(f"task {task_name!r}: augmentation.forward of {what} returned tokens outside "
                          f"0..{vocab_size - 1}")
    if not np.array_equal(out[0], rows):
        raise HrmkitError(f"task {task_name!r}: augmentation version 0 of {what} is not the identity")
    return out.astype(np.uint8)


def write_task_dataset(out_dir: str | os.PathLike, task: Any, train: Sequence[Any], test: Sequence[Any], *,
                       vocab_size: int, num_aug: int = 0, seed: int = 0, extra: dict[str, Any] | None = None,
                       identifiers: Sequence[str] | None = None, overwrite: bool = False) -> None:
    """Write the dataset folder `out_dir` (data.format layout: identifiers.json, train/, test/) of `task`
    (a `hrmkit.tasks.Task`; dataset.json records `task.name` and `task.params`) from encoded examples.

    train, test: sequences of (inputs uint8 [S], labels uint8 [S], puzzle_name str | None) (module
    docstring), tokens 0..vocab_size-1 (vocab_size <= 256), one S throughout. num_aug: augmented versions per
    training group (0..limits.MAX_NUM_AUG), drawn with `seed` (a non-negative int). extra: JSON values written
    into dataset.json's `extra` beside the builder's own "num_aug" (K in train, 0 in test) and "seed", which
    take precedence. identifiers: a fixed
    identifier table (index 0 "<blank>", prepended when absent) holding every identifier the examples need,
    e.g. the table of a dataset a model was trained on; default "<blank>" then the names. overwrite: replace
    an existing `out_dir` once the new dataset is complete.

    HrmkitError, before anything is written, for: an existing `out_dir` without `overwrite`, a malformed
    example (not a pair or triple, a token row that is not 1-D integers, rows of different lengths, a token
    outside the vocabulary, an empty or reserved name), an empty split, a test name not in train, a task
    with fewer than K + 1 augmented versions, identifiers that clash or are missing, task parameters or
    `extra` that are not JSON. An augmentation that returns malformed rows raises HrmkitError while writing;
    nothing is left on disk either way.
    """
    from hrmkit.tasks import Task

    out = Path(out_dir)
    if not isinstance(task, Task):
        raise HrmkitError(f"write_task_dataset: task must be a hrmkit.tasks.Task, got {type(task).__name__}")
    vocab_size = check_int(vocab_size, "write_task_dataset: vocab_size", 1, MAX_TOKEN_VOCAB)
    num_aug = check_int(num_aug, "write_task_dataset: num_aug", 0, MAX_NUM_AUG)
    seed = check_int(seed, "write_task_dataset: seed", 0, 2**63 - 1)
    if out.exists() and not overwrite:
        raise HrmkitError(f"{out}: already exists (pass overwrite=True to replace it)")
    meta_extra = {**dict(extra or {}), "num_aug": num_aug, "seed": seed}
    try:
        json.dumps({"task_params": task.params, "extra": meta_extra}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise HrmkitError(f"write_task_dataset: task parameters and extra must be JSON values ({e})") from None

    seq_len: list[int] = []
    train_groups = _groups(train, "train", vocab_size, seq_len)
    test_groups = _groups(test, "test", vocab_size, seq_len)
    S = seq_len[0]
    names = [g.name for g in train_groups if g.name is not None]
    unknown = [g.name for g in test_groups if g.name is not None and g.name not in set(names)]
    if unknown:
        raise HrmkitError(f"write_task_dataset: test puzzle {unknown[0]!r} does not occur in train (a named puzzle's "
                          "identifier is learned from its training examples)")
    ids = _identifier_table(names, num_aug, identifiers)
    versions = num_aug + 1
    if num_aug:
        task.augmentation(S, versions, seed=augmentation_seed(seed, 0))  # fewer versions: HrmkitError now

    def identifier(name: str | None, k: int) -> int:
        return 0 if name is None else ids[name if num_aug == 0 else f"{name}|v{k}"]

    with atomic_directory(out, overwrite=overwrite) as tmp:
        for split, groups, do_aug in (("train", train_groups, num_aug > 0), ("test", test_groups, False)):
            writer = SplitWriter(tmp / split, seq_len=S)
            try:
                for gi, g in enumerate(groups):
                    x, y = np.stack(g.inputs), np.stack(g.labels)
                    if do_aug:
                        aug = task.augmentation(S, versions, seed=augmentation_seed(seed, gi))
                        what = f"train group {gi}" + (f" ({g.name})" if g.name else "")
                        xs = _augment(aug, x, versions, task.name, vocab_size, what + " inputs")
                        ys = _augment(aug, y, versions, task.name, vocab_size, what + " labels")
                        writer.add_group_uniform(xs, ys, [identifier(g.name, k) for k in range(versions)])
                    else:
                        writer.add_group_uniform(x[None], y[None], [identifier(g.name, 0)])
                writer.finalize(vocab_size=vocab_size, num_puzzle_identifiers=len(ids), pad_id=0,
                                ignore_label_id=0, blank_identifier_id=0, task=task.name,
                                task_params=dict(task.params), extra=dict(meta_extra, num_aug=num_aug if do_aug else 0))
            except BaseException:
                writer.abort()
                raise
        write_identifiers(tmp, list(ids))
