"""ARC-AGI: colour grids on the 30x30 canvas of `data.arc` (0 PAD, 1 EOS, colour + 2; docs/design.md §1).

Natural form: a grid as a list of lists of colours 0..9 (at most 30x30); a task file is one task's JSON
(`{"train": [{"input", "output"}...], "test": [{"input"[, "output"]}...]}`). No rules can check an answer
(has_verifier False). ARC is scored by voting over the augmented versions (dihedral, colour permutation) the
dataset holds, one puzzle embedding each (`votes_over_dataset_versions`; `eval.arc_eval`), not by test-time
augmentation of single rows. Difficulty: the larger side of the expected output grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.data import arc
from hrmkit.errors import HrmkitError
from hrmkit.tasks.base import ARC_COLOURS, Augmentation, CellStyle, Task


def crop_colours(tokens: Any) -> np.ndarray | None:
    """Colours (int [h, w]) inside the bounding box of the colour tokens of an ARC canvas (int [900]), for
    rows placed anywhere on the canvas (the train split translates them); None when it holds no colour."""
    t = np.asarray(tokens).astype(np.int64).reshape(arc.GRID_MAX, arc.GRID_MAX)
    colour = (t >= arc.COLOR_OFFSET) & (t < arc.COLOR_OFFSET + arc.NUM_COLORS)
    if not colour.any():
        return None
    (r0, c0), (r1, c1) = np.argwhere(colour).min(0), np.argwhere(colour).max(0)
    return np.clip(t[r0:r1 + 1, c0:c1 + 1] - arc.COLOR_OFFSET, 0, arc.NUM_COLORS - 1)


class ArcTask(Task):
    """ARC-AGI tasks on the 30x30 canvas (module docstring)."""

    name = "arc"
    title = "ARC"
    description = "ARC-AGI: colour grids 0..9 up to 30x30, voted over the dataset's augmented versions"
    votes_over_dataset_versions = True

    def token_layout(self, seq_len, extra=None):
        return dict(cells=f"token = colour + {arc.COLOR_OFFSET} (colours 0..9); {arc.EOS} = end-of-grid marker",
                    eos_token=arc.EOS, grid=[arc.GRID_MAX, arc.GRID_MAX])

    def token_names(self, vocab_size: int) -> list[str]:
        base = ["PAD", "EOS"] + [f"colour {c}" for c in range(10)]
        return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]

    def input_tokens(self, vocab_size: int):
        return tuple(range(2, 12)), (0, 1)  # colours; PAD and EOS (the grid frame) kept

    def answer_tokens(self, vocab_size: int):
        return tuple(range(1, 12))  # EOS (the answer's frame) and colours

    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        return arc.encode_grid(parse_arc_grid(puzzle, where))

    def decode(self, tokens: Any) -> list | None:
        grid = self.grid(tokens)
        return None if grid is None else np.asarray(grid).tolist()

    def grid(self, tokens: Any) -> np.ndarray | None:
        grid = arc.decode_grid(np.asarray(tokens).astype(np.int64).reshape(-1))
        return None if grid is None else np.asarray(grid)

    def dataset_grid(self, tokens: Any) -> np.ndarray | None:
        return crop_colours(tokens)

    def dataset_lines(self, tokens, extra=None):
        """The canvas cropped to its non-PAD part: colours as digits, EOS as '|', PAD as ' '."""
        grid = np.asarray(tokens).astype(np.int64).reshape(arc.GRID_MAX, arc.GRID_MAX)
        used = np.argwhere(grid != 0)
        if used.size == 0:
            return ["(empty canvas)"]
        (r0, c0), (r1, c1) = used.min(0), used.max(0)
        sym = {0: " ", 1: "|"}
        return ["".join(sym.get(int(v), str(int(v) - 2) if 2 <= v <= 11 else "?") for v in row)
                for row in grid[r0:r1 + 1, c0:c1 + 1]]

    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        raise HrmkitError("--tta/--ensemble: ARC is already voted over the augmented versions its dataset holds "
                          "(pass@k in the summary; `hrm data arc --num-aug K` sets how many) and ARC checkpoints pool "
                          "their votes with --aggregate-checkpoints; --tta and --ensemble are for tasks that "
                          "augment single rows (Sudoku, mazes, grids)")

    def difficulty(self, inputs, labels, split_dir=None):
        grids = arc.decode_grids(np.asarray(labels))  # ignored cells (-100) are no colour, as PAD
        sides = np.array([-1 if g is None else max(g.shape) for g in grids], np.int64)
        return {"output grid side (cells)": ("linear", sides)}

    def cell_style(self, value, marked, given, cell_px):
        v = int(value)
        return CellStyle(ARC_COLOURS[v] if 0 <= v <= 9 else "#ffffff", cross=marked)


@dataclass
class ArcTaskInput:
    """One ARC task read for solving: demonstration pairs, test inputs and (when the file has them) the
    test outputs; grids uint8 [h, w]."""

    task_id: str
    train: list[tuple[np.ndarray, np.ndarray]]
    test_inputs: list[np.ndarray]
    test_outputs: list[np.ndarray] | None


def parse_arc_grid(value: Any, where: str = "INPUT", task_id: str | None = None, field: str = "grid") -> np.ndarray:
    """uint8 [h, w] colours of a grid given as a list of lists (`data.arc.parse_grid`'s checks: rectangular,
    colours 0..9, at most 30x30)."""
    return arc.parse_grid(value.tolist() if isinstance(value, np.ndarray) else value, where, task_id, field)


def read_arc_task(path: str | Path, task_id: str | None = None) -> ArcTaskInput:
    """Read one task file (module docstring); its task id is `task_id` or the file stem. HrmkitError naming
    the file, task and field for anything malformed; test outputs are optional (all or none)."""
    path = Path(path)
    return parse_arc_task(arc.read_json(path), task_id or path.stem, str(path))


def parse_arc_task(obj: Any, task_id: str, src: str = "INPUT") -> ArcTaskInput:
    """One ARC task already read from JSON (`read_arc_task`'s checks; `src` names it in errors)."""
    if not isinstance(obj, dict) or "test" not in obj:
        raise HrmkitError(f"{src}: expected one ARC task, an object with 'train' and 'test' lists")
    tests = obj["test"]
    if not isinstance(tests, list) or not tests:
        raise HrmkitError(f"{src}: task {task_id}: field test: expected a non-empty list of {{input}} objects")
    inputs, outputs = [], []
    for i, ex in enumerate(tests):
        if not isinstance(ex, dict) or "input" not in ex:
            raise HrmkitError(f"{src}: task {task_id}: field test[{i}]: expected an object with 'input'")
        inputs.append(arc.parse_grid(ex["input"], src, task_id, f"test[{i}].input"))
        if "output" in ex:
            outputs.append(arc.parse_grid(ex["output"], src, task_id, f"test[{i}].output"))
    if outputs and len(outputs) != len(inputs):
        raise HrmkitError(f"{src}: task {task_id}: field test: {len(outputs)} of {len(inputs)} test pairs have an "
                          "output (give all or none)")
    filled = {**obj, "test": [{"input": ex["input"], "output": ex["input"]} for ex in tests]}
    train = list(arc.parse_task(filled, task_id, "evaluation", src).train)
    return ArcTaskInput(task_id, train, inputs, outputs or None)
