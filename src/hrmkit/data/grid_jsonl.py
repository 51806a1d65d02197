"""`hrm data grid --from-jsonl`: integer-grid puzzles from JSON Lines files into a "grid" task dataset.

One example a line (blank lines skipped)::

    {"input": [[0, 1], [2, 0]], "output": [[1, 0], [0, 2]]}
    {"input": [[3]], "output": [[3, 3]], "puzzle": "grow"}

Grids are rectangular lists of rows of integers from 0 (bool is no integer), 1x1 up to 30x30, values at
most `MAX_VALUE`. "puzzle" (optional) names the puzzle an example belongs to: every example of one name is a
demonstration of one puzzle with an identifier of its own (`data.build`); a name in the test file must occur
in the train file. When every grid of both files (inputs and outputs) has one shape the dataset uses the
"plain" layout, else the "canvas" one (`tasks.grid`); V is the largest value seen + 1.

Every line is checked before anything is written; an error is a HrmkitError naming the file, the line
number, the field and the value ("train.jsonl line 7: field output row 3 has 4 values, row 1 has 5").

Public API: `GridExample`, `read_jsonl(path) -> list[GridExample]`, `parse_augmentations(text) -> list[str]`,
`grid_task_for(train, test, augmentations) -> GridTask`, `build_from_jsonl(out, train_path, test_path, ...)
-> dict`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hrmkit.data.build import write_task_dataset
from hrmkit.data.format import BLANK_IDENTIFIER
from hrmkit.errors import HrmkitError, short_repr
from hrmkit.tasks.grid import AUGMENTATIONS, GRID_MAX_SIDE, MAX_CANVAS_VALUES, GridTask, parse_grid

MAX_VALUE = MAX_CANVAS_VALUES - 1  # the canvas layout's tokens (value + 2) must fit a byte


@dataclass(frozen=True)
class GridExample:
    """One line of a JSONL file: grids int64 [h, w], the puzzle name (None: none) and the line number."""

    input: np.ndarray
    output: np.ndarray
    puzzle: str | None
    line: int


def read_jsonl(path: str | os.PathLike) -> list[GridExample]:
    """The examples of a JSONL file (module docstring), in order. HrmkitError naming the file, line, field and
    value for a missing or unreadable file, a line that is not UTF-8 or not a JSON object, a missing field,
    a malformed grid or puzzle name, or a file with no example."""
    path = Path(path)
    examples = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                where = f"{path} line {n}"
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise HrmkitError(f"{where}: not UTF-8 text (byte {e.start + 1})") from None
                if not text:
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise HrmkitError(f"{where}: not JSON ({e.msg}: column {e.colno})") from None
                if not isinstance(obj, dict):
                    raise HrmkitError(f"{where}: expected a JSON object with fields 'input' and 'output', got "
                                      f"{short_repr(obj)}")
                for key in ("input", "output"):
                    if key not in obj:
                        raise HrmkitError(f"{where}: missing field {key!r}")
                x = parse_grid(obj["input"], "input", where, MAX_VALUE)
                y = parse_grid(obj["output"], "output", where, MAX_VALUE)
                name = obj.get("puzzle")
                if name is not None and (not isinstance(name, str) or not name.strip() or name == BLANK_IDENTIFIER):
                    raise HrmkitError(f"{where}: field puzzle: expected a non-empty name, got {short_repr(name)}")
                examples.append(GridExample(x, y, name, n))
    except FileNotFoundError:
        raise HrmkitError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise HrmkitError(f"{path}: is a folder, expected a JSONL file") from None
    except OSError as e:
        raise HrmkitError(f"{path}: cannot read ({e.strerror or e})") from None
    if not examples:
        raise HrmkitError(f"{path}: no examples (one JSON object a line: {{\"input\": grid, \"output\": grid}})")
    return examples


def parse_augmentations(text: str) -> list[str]:
    """The augmentations of `--aug`: a comma-separated subset of "dihedral", "colors", or "none"; canonical
    order. HrmkitError naming an unknown one."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if parts == ["none"]:
        return []
    for p in parts:
        if p not in AUGMENTATIONS:
            raise HrmkitError(f"--aug: unknown augmentation {p!r}; give a comma-separated list of "
                              f"{', '.join(AUGMENTATIONS)}, or none")
    if not parts:
        raise HrmkitError("--aug: empty; give dihedral, colors, both (dihedral,colors) or none")
    return [a for a in AUGMENTATIONS if a in parts]


def grid_task_for(train: Sequence[GridExample], test: Sequence[GridExample],
                  augmentations: Sequence[str]) -> GridTask:
    """The grid task of these examples: plain when every grid has one shape, else canvas with
    C = min(30, largest side + 1); V = the largest value + 1."""
    grids = [g for ex in list(train) + list(test) for g in (ex.input, ex.output)]
    shapes = {g.shape for g in grids}
    num_values = max(int(g.max()) for g in grids) + 1
    if len(shapes) == 1:
        (h, w), = shapes
        params = {"height": h, "width": w, "num_values": num_values, "layout": "plain"}
    else:
        h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
        params = {"height": h, "width": w, "num_values": num_values, "layout": "canvas",
                  "canvas": min(GRID_MAX_SIDE, max(h, w) + 1)}
    return GridTask.from_params(dict(params, augmentations=list(augmentations)), "grid task")


def build_from_jsonl(out: str | os.PathLike, train_path: str | os.PathLike, test_path: str | os.PathLike, *,
                     num_aug: int = 0, augmentations: Sequence[str] = AUGMENTATIONS, seed: int = 0,
                     force: bool = False) -> dict:
    """Read both files, choose the layout (`grid_task_for`) and write the dataset `out` (`data.build`).

    Returns {"task": GridTask, "train_examples", "test_examples", "train_puzzles", "test_puzzles" (groups
    before augmentation), "named": puzzle names}. HrmkitError (nothing written) for any malformed line, a
    test puzzle name not in train, or `num_aug` + 1 above the versions the augmentations give."""
    train, test = read_jsonl(train_path), read_jsonl(test_path)
    train_names = {ex.puzzle for ex in train if ex.puzzle is not None}
    for ex in test:
        if ex.puzzle is not None and ex.puzzle not in train_names:
            raise HrmkitError(f"{test_path} line {ex.line}: field puzzle: {ex.puzzle!r} does not occur in "
                              f"{train_path} (a named puzzle's identifier is learned from its training examples)")
    task = grid_task_for(train, test, augmentations)
    if num_aug + 1 > task.num_versions():
        augs = ", ".join(task.params["augmentations"]) or "none"
        raise HrmkitError(f"--num-aug {num_aug}: these grids have {task.num_versions()} distinct versions "
                          f"(augmentations: {augs}; {task.params['layout']} layout, {task.num_values} values), "
                          f"so at most --num-aug {task.num_versions() - 1}")

    def encoded(examples: list[GridExample]) -> list:
        return [(task.encode_grid(ex.input), task.encode_grid(ex.output), ex.puzzle) for ex in examples]

    write_task_dataset(out, task, encoded(train), encoded(test), vocab_size=task.vocab_size, num_aug=num_aug,
                       seed=seed, overwrite=force,
                       extra={"source": "jsonl", "train_file": str(train_path), "test_file": str(test_path)})

    def puzzles(examples: list[GridExample]) -> int:
        return sum(ex.puzzle is None for ex in examples) + len({ex.puzzle for ex in examples} - {None})

    return {"task": task, "train_examples": len(train), "test_examples": len(test),
            "train_puzzles": puzzles(train), "test_puzzles": puzzles(test), "named": sorted(train_names)}
