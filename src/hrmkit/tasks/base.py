"""The `Task` base class: everything that differs between puzzle types, with the defaults of a plain token task.

A task owns its token layout (vocabulary, which cells are scored), the codecs between a puzzle's natural form
(text, a grid) and tokens, the rules an answer must satisfy (`verify`) and its own trivial baselines, the
augmentations and their inverses (the same for building data and for test-time voting), the input-sensitivity
perturbations, the difficulty measures of the report, and how its grids are drawn and printed. Every other
module asks the task; none compares a task name (docs/tasks.md walks through writing one).

Token rows are int [S] (one puzzle) or int [B, S]; token 0 is PAD in every layout (docs/design.md §1). A
*display grid* is what the renderer draws: a 2-D numpy array (ints, or characters for mazes) or None when a
row holds no grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from hrmkit.errors import HrmkitError

PAD_ID = 0

# The ARC palette (colours 0..9); plain grids reuse it for their first ten values.
ARC_COLOURS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B",
               "#7FDBFF", "#870C25")


@dataclass
class Augmentation:
    """K versions of a task's puzzles (version 0: the identity).

    forward(tokens int [B, S]) -> [K, B, S]: the K versions of every row; inverse(tokens [K, B, S]) -> [K, B, S]
    maps answers seen in version v's frame back to the puzzle's frame. Tokens keep their dtype."""

    task: str
    versions: int
    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CellStyle:
    """How one cell is drawn (SVG and PNG): background `fill`; `text` written in it (None: none) in
    `text_colour`, its font `text_scale` of the cell and its SVG baseline at `baseline` of the cell;
    `cross`: a cross over the cell (a marked cell)."""

    fill: str
    text: str | None = None
    text_colour: str = "#000"
    text_scale: float = 0.7
    baseline: float = 0.75
    cross: bool = False


@dataclass
class Check:
    """One answer judged by the puzzle's rules (`Task.check`, what `hrm solve` prints): solved; verdict: the
    sentence printed after "Answer: "; fields: the same facts as JSON values (`hrm solve --json`)."""

    solved: bool
    verdict: str
    fields: dict[str, Any]


def identity_augmentation(name: str, versions: int) -> Augmentation:
    """The one version of a task without augmentations; HrmkitError for more than one."""
    if versions != 1:
        raise HrmkitError(f"--tta {versions}: task {name!r} declares no augmentations")
    return Augmentation(name, 1, lambda x: np.asarray(x)[None], lambda y: y)


def square_side(seq_len: int, what: str) -> int:
    """The side of a square grid of `seq_len` cells; HrmkitError naming `what` otherwise."""
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        raise HrmkitError(f"{what}: rows of {seq_len} tokens are not a square grid")
    return side


def dihedral_augmentation(name: str, height: int, width: int, versions: int,
                          to_grid: Callable[[np.ndarray], np.ndarray] | None = None,
                          from_grid: Callable[[np.ndarray], np.ndarray] | None = None) -> Augmentation:
    """The first `versions` dihedral transforms (docs/design.md §2 numbering) of rows holding one
    height x width grid; non-square grids keep only the transforms that keep their shape (0, 2, 4, 5).
    HrmkitError when more versions are asked than exist."""
    from hrmkit.data.augment import dihedral_transform, inverse_dihedral_transform

    tids = list(range(8)) if height == width else [0, 2, 4, 5]
    if versions > len(tids):
        raise HrmkitError(f"--tta {versions}: a {height}x{width} {name} grid has {len(tids)} dihedral versions; "
                          f"use --tta {len(tids)} or fewer")
    tids = tids[:versions]

    def forward(x: np.ndarray) -> np.ndarray:
        rows = np.asarray(x).reshape(-1, height, width)
        return np.stack([dihedral_transform(rows, t).reshape(np.shape(x)) for t in tids])

    def inverse(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        return np.stack([inverse_dihedral_transform(y[v].reshape(-1, height, width), t).reshape(y.shape[1:])
                         for v, t in enumerate(tids)])

    return Augmentation(name, versions, forward, inverse)


class Task:
    """A puzzle type. Subclasses set `name` and override what differs; instances carry the parameters of one
    dataset (`params`, JSON values: grid size, box shape, ...), recorded in dataset.json, checkpoints and
    exported folders as `record()` and rebuilt with `from_params`.

    The base class is the plain token task ("generic"): tokens are scored wherever the label is not ignored,
    grids are drawn square (or as one row) with their token values, and there are no rules, augmentations or
    difficulty measures."""

    name: ClassVar[str] = "generic"
    title: ClassVar[str] = "generic"  # how reports name the puzzle type
    description: ClassVar[str] = "token rows with no known layout"
    # the input holds clues the answer repeats; `scored_mask` leaves them out (reports explain the copy baseline)
    clues_given: ClassVar[bool] = False
    # ARC: pass@k is scored by voting over the augmented versions the dataset holds (eval.arc_eval), and a task
    # file (demonstrations + test inputs) is what `hrm solve` reads.
    votes_over_dataset_versions: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params: dict[str, Any] = dict(params or {})

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "task") -> "Task":
        """The task with these recorded parameters; HrmkitError naming `where` for invalid ones."""
        if params is not None and not isinstance(params, Mapping):
            raise HrmkitError(f"{where}: task parameters must be a JSON object, got {params!r}")
        return cls(params)

    def record(self) -> dict[str, Any]:
        """{"name": ..., "params": {...}}: what datasets, checkpoints and exports store."""
        return {"name": self.name, "params": dict(self.params)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.record() == other.record()

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})" if self.params else f"{type(self).__name__}()"

    # ----------------------------------------------------------------------------------------- token layout

    def token_layout(self, seq_len: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the tokens mean, for an export's config.json (`extra`: the dataset's builder settings)."""
        return {}

    def token_names(self, vocab_size: int) -> list[str]:
        """A short name per token id 0..vocab_size-1 (confusion tables)."""
        return ["PAD"] + [str(i) for i in range(1, vocab_size)]

    def input_tokens(self, vocab_size: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(tokens a random input draws from, tokens left in place) for the input-sensitivity check; None:
        every non-PAD token below vocab_size, PAD kept."""
        return None

    def answer_tokens(self, vocab_size: int) -> tuple[int, ...] | None:
        """Tokens an answer cell can hold (the collapse check's "invalid output" share); None: any."""
        return None

    def scored_mask(self, inputs: Any, answer: Any) -> Any:
        """Cells counted by token accuracy, from the answer cells (bool [N, S], numpy or torch; inputs int
        [N, S] of the same kind). Default: every answer cell."""
        return answer

    # ----------------------------------------------------------------------------------------- natural forms

    @property
    def has_natural_form(self) -> bool:
        """Whether the task reads and writes puzzles in a natural form (it overrides `encode`)."""
        return type(self).encode is not Task.encode

    def require_natural_form(self, what: str) -> "Task":
        """self; HrmkitError naming `what` when the task has no natural form."""
        if not self.has_natural_form:
            raise HrmkitError(f"{what}: cannot tell which puzzle this model solves (its checkpoint records no task "
                              "and its dataset was not found, or the task has no natural form); give the dataset "
                              "folder (--data DIR) or use token rows with predict()")
        return self

    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        """Tokens uint8 [seq_len] of one puzzle in its natural form. HrmkitError naming `where` and the value
        for malformed input or a size the model was not trained on."""
        raise HrmkitError(f"{where}: task {self.name!r} has no natural form; give token rows")

    # `hrm solve INPUT`: the puzzle may be given on the command line (False: only as a file, e.g. multi-line)
    inline_input: ClassVar[bool] = True

    def parse_text(self, text: str, where: str = "INPUT") -> Any:
        """The natural form of a puzzle given as text (`hrm solve`'s INPUT or file), for `encode`; by default
        the text itself. HrmkitError naming `where` for text that is no puzzle."""
        return text

    def decode(self, tokens: Any) -> Any:
        """The natural form (JSON values) of one token row int [S]."""
        return np.asarray(tokens).reshape(-1).tolist()

    def grid(self, tokens: Any) -> np.ndarray | None:
        """Display grid of one token row int [S] (module docstring): square rows as a square, others as one
        row; None when the row holds no grid."""
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        side = math.isqrt(t.size)
        return t.reshape(side, side) if side * side == t.size else t.reshape(1, -1)

    def dataset_grid(self, tokens: Any) -> np.ndarray | None:
        """Display grid of a dataset row (`hrm data inspect`), which may be augmented or placed anywhere on a
        canvas; default `grid`."""
        return self.grid(tokens)

    def dataset_lines(self, tokens: Any, extra: Mapping[str, Any] | None = None) -> list[str]:
        """Text lines of one dataset row int [S] for `hrm data inspect` (`extra`: the dataset.json builder
        settings): by default the token numbers, a square row as a square."""
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        side = math.isqrt(t.size)
        if side and side * side == t.size:
            return [" ".join(f"{int(v):2d}" for v in t[r * side:(r + 1) * side]) for r in range(side)]
        return [" ".join(str(int(v)) for v in t)]

    def display(self, grid: Any) -> np.ndarray:
        """A display grid in the form the renderer compares and draws (mazes: characters)."""
        return np.asarray(grid)

    def given(self, input_grid: Any) -> np.ndarray | None:
        """bool [h, w]: the clue cells of an input display grid (drawn apart), None when the task has none."""
        return None

    def size_text(self, input_grid: Any) -> str:
        """How `hrm solve` names a puzzle's size, from its input display grid ("6x6")."""
        h, w = np.shape(input_grid)
        return f"{h}x{w}"

    def puzzle_text(self, input_grid: Any) -> str:
        """The input grid in the form `hrm solve` reads back (printed by reports and `hrm solve --json`)."""
        return "\n".join(self.text_lines(input_grid))

    # ----------------------------------------------------------------------------------------- rules

    has_verifier: ClassVar[bool] = False

    def verify(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        """bool [B]: does each predicted row (int [B, S]) solve its input row (int [B, S]) by the puzzle's
        rules, judged from the puzzle alone. Tasks without rules (`has_verifier` False) raise HrmkitError."""
        raise HrmkitError(f"task {self.name!r} has no verifier (no rules an answer can be checked against)")

    def check(self, input_tokens: np.ndarray, answer_tokens: np.ndarray) -> Check | None:
        """One answer row (int [S]) judged against its puzzle row (int [S]) by the rules, with the reasons
        (`Check`); None when the task has no rules."""
        return None

    def baselines(self, inputs: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
        """The task's own trivial predictors, scored beside the generic copy_input and most_common_token
        (`eval.baselines.compute_baselines`): {name: (description, predictions int [B, S])} for inputs int
        [B, S]. A predictor that needs no training and knows the rules tells how much of the model's score
        simple propagation already gets; {} when the task has none."""
        return {}

    # ----------------------------------------------------------------------------------------- augmentations

    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        """`versions` versions of rows of `seq_len` tokens (version 0 the identity) with their inverses, the
        same for a seed. HrmkitError when the task has fewer distinct versions."""
        return identity_augmentation(self.name, versions)

    # ----------------------------------------------------------------------------------------- reports

    def difficulty(self, inputs: np.ndarray, labels: np.ndarray,
                   split_dir: str | Path | None = None) -> dict[str, np.ndarray]:
        """{measure name: (scale, values int [N] per row, -1 where unknown)} for the report's breakdowns; scale
        "linear" buckets equal ranges, "pow2" the buckets 0, 1, 2-3, 4-7, ... (inputs, labels int [N, S];
        `split_dir` the split's folder, for measures the builder saved); {} when there is none."""
        return {}

    # ----------------------------------------------------------------------------------------- drawing

    def cell_px(self, side: int) -> int:
        """SVG pixels per cell of a grid whose longer side is `side` cells."""
        return max(6, min(24, 240 // max(side, 1)))

    def cell_style(self, value: Any, marked: bool, given: bool | None, cell_px: int) -> CellStyle:
        """How one cell of a display grid is drawn (`CellStyle`); `given`: the cell is a clue (None: unknown)."""
        v = int(value)
        fill = ARC_COLOURS[v] if 0 <= v < len(ARC_COLOURS) else "#ffffff"
        text = str(v) if v >= len(ARC_COLOURS) and cell_px >= 12 else None
        return CellStyle(fill, text, "#000", 0.6, cross=marked)

    def box(self, height: int, width: int) -> tuple[int, int] | None:
        """(rows, columns) of the boxes drawn with thick lines; None for none."""
        return None

    def cell_char(self, value: Any) -> str:
        """One cell in text (a character per cell keeps grids aligned; values above 9 as letters a..z)."""
        v = int(value)
        return str(v) if 0 <= v <= 9 else chr(ord("a") + v - 10) if v < 36 else "+"

    def text_lines(self, grid: Any, marked: Any = None, box: Sequence[int] | None = None) -> list[str]:
        """Text lines of a display grid: one character per cell, followed by '*' (marked) or ' ' when
        `marked` (bool [h, w]) is given."""
        g = np.asarray(grid)
        chars = [[self.cell_char(v) for v in row] for row in g]
        if marked is None:
            return ["".join(row) for row in chars]
        mark = np.asarray(marked, bool)
        return ["".join(c + ("*" if m else " ") for c, m in zip(row, mrow)) for row, mrow in zip(chars, mark)]
