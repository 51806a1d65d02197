"""Sudoku (4x4, 6x6, 9x9): the token layout of `data.sudoku` (0 PAD, 1 blank, digit + 1; docs/design.md §1).

Natural form: a string of n*n cells, row-major, '.' or '0' for a blank, digits 1..n; spaces, newlines and
the box separators '|', '+' and '-' are ignored, so a printed grid reads back. Rules: every row, column and
box holds each digit once and every clue is kept. Augmentations: digit relabelling, transpose (square boxes),
band, stack, row and column shuffles (`data.augment.sudoku_symmetries`, the builder's). Only the blank cells
are scored (the clues are given). Difficulty: the clue count and the builder's solver rating. Own baseline:
naked singles (propagation without search).

Parameters: {"size": n, "box": [rows, columns]} (both optional; read from the token rows when absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrmkit.data import sudoku
from hrmkit.errors import HrmkitError
from hrmkit.tasks.base import Augmentation, CellStyle, Check, Task

BLANK_ID = 1  # the blank token: only blank cells are scored
SUDOKU_IGNORED = " \t\r\n|+-"
_SIZES = {n * n: n for n in sudoku.BOXES}
DIFF_COLOUR = "#e0115f"  # marked digits
MARK_FILL = "#ffd6d6"  # background of a marked cell
FILLED_COLOUR = "#1f4e9c"  # digits that are not clues (when the clues are known)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def parse_sudoku(text: str, where: str = "INPUT") -> np.ndarray:
    """Digits uint8 [n, n] (0 = blank) of a Sudoku string (module docstring). HrmkitError for a length that
    is no Sudoku size, a character that is not '.', '0' or a digit 1..n, or a digit repeated in a row,
    column or box."""
    if not isinstance(text, str):
        raise HrmkitError(f"{where}: a Sudoku is a string of digits and '.', got {type(text).__name__}")
    cells = text.translate(str.maketrans("", "", SUDOKU_IGNORED))
    n = _SIZES.get(len(cells))
    if n is None:
        raise HrmkitError(f"{where}: a Sudoku has 16 (4x4), 36 (6x6) or 81 (9x9) cells, got {len(cells)} in "
                          f"{_short(text)}")
    allowed = set(".0") | {str(d) for d in range(1, n + 1)}
    for i, ch in enumerate(cells):
        if ch not in allowed:
            raise HrmkitError(f"{where}: character {ch!r} at row {i // n + 1}, column {i % n + 1} is not a digit "
                              f"1..{n}, '.' or '0' (a {n}x{n} Sudoku)")
    grid = np.array([0 if ch in ".0" else int(ch) for ch in cells], np.uint8).reshape(n, n)
    clash = sudoku_clash(grid)
    if clash:
        raise HrmkitError(f"{where}: {clash}")
    return grid


def sudoku_clash(grid: np.ndarray) -> str | None:
    """The first repeated digit of a digit grid [n, n] as a sentence naming the digit, unit and cells
    ("digit 3 repeats in row 1 (columns 2 and 4)"); None when no row, column or box repeats a digit."""
    n = grid.shape[0]
    geo = sudoku.geometry(sudoku.BOXES[n])
    flat = grid.reshape(-1)
    for u, unit in enumerate(geo.units):
        seen: dict[int, int] = {}
        for cell in unit:
            d = int(flat[cell])
            if d and d in seen:
                kind, k = ("row", "column", "box")[u // n], u % n + 1
                if kind == "row":
                    at = f"columns {seen[d] % n + 1} and {cell % n + 1}"
                elif kind == "column":
                    at = f"rows {seen[d] // n + 1} and {cell // n + 1}"
                else:
                    at = f"cells (row {seen[d] // n + 1}, column {seen[d] % n + 1}) and (row {cell // n + 1}, column {cell % n + 1})"
                return f"digit {d} repeats in {kind} {k} ({at})"
            seen[d] = cell
    return None


def _digits_text(value: Any, where: str) -> Any:
    """A Sudoku given as a grid of digits (list of lists, 0 = blank) as the string `parse_sudoku` reads."""
    if not isinstance(value, list):
        return value
    cells = []
    for r, row in enumerate(value):
        for c, d in enumerate(row if isinstance(row, list) else [row]):
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 9:
                raise HrmkitError(f"{where}[{r}][{c}]: {d!r} is not a digit 0..9 (0 = blank)")
            cells.append("." if d == 0 else str(d))
    return "".join(cells)


def sudoku_tokens(grid: np.ndarray) -> np.ndarray:
    """Model tokens uint8 [n*n] of a digit grid (the dataset layout: 1 = blank, digit + 1)."""
    return (np.asarray(grid, np.uint8).reshape(-1) + 1).astype(np.uint8)


def sudoku_string(grid: Any) -> str:
    """The row-major string of a digit grid, '.' for blanks (what `parse_sudoku` reads)."""
    return sudoku.grid_string(np.asarray(grid).reshape(-1))


@dataclass
class SudokuCheck:
    """Is `answer` a Sudoku solution of `puzzle`? valid: every row, column and box holds each digit once;
    keeps_clues: every clue unchanged; solutions: how many solutions the puzzle has, counted up to 2 by the
    solver (1 = unique); matches_solver: the answer equals the solver's solution (when unique)."""

    valid: bool
    keeps_clues: bool
    solutions: int
    matches_solver: bool | None

    @property
    def solved(self) -> bool:
        """A valid solution that keeps every clue."""
        return self.valid and self.keeps_clues


def check_sudoku(puzzle: np.ndarray, answer: np.ndarray) -> SudokuCheck:
    """Check an answer grid (digits [n, n], 0 = blank) against its puzzle with `data.sudoku`'s solver."""
    n = puzzle.shape[0]
    box = sudoku.BOXES[n]
    p, a = np.asarray(puzzle).reshape(-1), np.asarray(answer).reshape(-1)
    valid = sudoku.is_valid_solution(a.tolist(), box)
    keeps = bool(np.all((p == 0) | (p == a)))
    found, _ = sudoku.solve(p.tolist(), box, limit=2)
    match = bool(np.array_equal(np.asarray(found[0]), a)) if len(found) == 1 else None
    return SudokuCheck(valid, keeps, len(found), match)


def sudoku_solved(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """bool [B]: preds (tokens [B, n*n]) is a valid Sudoku solution (each digit once per row, column and box)
    that keeps every clue of inputs. ValueError for rows that are no 4x4, 6x6 or 9x9 Sudoku."""
    x, y = np.asarray(inputs, np.int64), np.asarray(preds, np.int64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"verifiers take token rows [B, S] of one shape, got {x.shape} and {y.shape}")
    n = math.isqrt(x.shape[1])
    if n * n != x.shape[1] or n not in sudoku.BOXES:
        raise ValueError(f"no Sudoku has {x.shape[1]} cells")
    digits = y - 1
    in_range = ((digits >= 1) & (digits <= n)).all(axis=1)
    units = np.asarray(sudoku.geometry(sudoku.BOXES[n]).units, np.int64)  # [3n, n] cell indices
    d = np.clip(digits, 0, n)[:, units]  # [B, 3n, n]
    onehot = np.zeros(d.shape[:2] + (n + 1,), np.int64)
    np.put_along_axis(onehot, d, 1, axis=2)  # a unit holds all n digits iff n distinct values 1..n appear
    complete = onehot[:, :, 1:].sum(axis=2).min(axis=1) == n
    clues = x > 1
    keeps = ((y == x) | ~clues).all(axis=1)
    return in_range & complete & keeps


def naked_singles(inputs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The naked-singles baseline: tokens int [B, n*n] (digit + 1, 1 blank) -> the same rows with every blank
    filled that simple propagation fills. A blank whose row, column and box leave one candidate digit gets it,
    repeated until nothing changes; blanks it cannot fill stay blank (1). ValueError for rows that are no 4x4,
    6x6 or 9x9 Sudoku. Bit masks, `chunk` rows at a time (8,000 generated 9x9 rows: 0.4 s on one core)."""
    x = np.asarray(inputs)
    n = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    if x.ndim != 2 or n * n != x.shape[1] or n not in sudoku.BOXES:
        raise ValueError(f"no Sudoku has {x.shape[-1] if x.ndim else 0} cells")
    geo = sudoku.geometry(sudoku.BOXES[n])
    units = np.asarray(geo.units, np.int64)  # [3n, n]
    rcb = np.asarray(geo.rcb, np.int64) + np.array([0, n, 2 * n])  # [n*n, 3] unit of each cell's row/column/box
    lookup = np.zeros(1 << n, np.int64)  # candidate mask -> its digit when it has one bit, else 0
    lookup[1 << np.arange(n)] = np.arange(1, n + 1)
    out = x.astype(np.int64, copy=True)
    for lo in range(0, len(out), chunk):
        d = np.clip(out[lo:lo + chunk] - 1, 0, n)  # digits, 0 blank
        while True:
            bits = np.where(d > 0, 1 << np.maximum(d - 1, 0), 0)  # [b, n*n]
            used = np.bitwise_or.reduce(bits[:, units], axis=2)  # [b, 3n] digits present in each unit
            taken = used[:, rcb[:, 0]] | used[:, rcb[:, 1]] | used[:, rcb[:, 2]]
            fill = lookup[geo.full & ~taken] * (d == 0)  # digit where one candidate is left, else 0
            if not fill.any():
                break
            d = d + fill
        out[lo:lo + chunk] = np.where(d > 0, d + 1, out[lo:lo + chunk])
    return out.astype(x.dtype, copy=False)


class SudokuTask(Task):
    """n x n Sudoku, n in 4, 6, 9 (module docstring)."""

    name = "sudoku"
    title = "Sudoku"
    clues_given = True
    description = "Sudoku 4x4, 6x6 or 9x9: digits, '.' for blanks"
    has_verifier = True

    @classmethod
    def from_params(cls, params, where="task"):
        task = super().from_params(params, where)
        size = task.params.get("size")
        if size is not None and size not in sudoku.BOXES:
            raise HrmkitError(f"{where}: params.size: a Sudoku is 4, 6 or 9 cells wide, got {size!r}")
        return task

    def _side(self, seq_len: int, what: str = "--tta") -> int:
        n = math.isqrt(seq_len)
        if n * n != seq_len or n not in sudoku.BOXES:
            raise HrmkitError(f"{what}: no Sudoku has {seq_len} cells")
        return n

    def token_layout(self, seq_len, extra=None):
        side = math.isqrt(seq_len)
        return dict(cells="token = digit + 1 (digits 1..n); 1 = blank cell", blank_token=BLANK_ID, grid=[side, side],
                    box=(extra or {}).get("box"))

    def token_names(self, vocab_size: int) -> list[str]:
        base = ["PAD", "blank"] + [str(d) for d in range(1, vocab_size - 1)]
        return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]

    def input_tokens(self, vocab_size: int):
        return tuple(range(1, 11)), (0,)  # blank + digits; PAD kept

    def answer_tokens(self, vocab_size: int):
        return tuple(range(2, 11))  # digits

    def scored_mask(self, inputs, answer):
        return answer & (inputs == BLANK_ID)

    # natural forms
    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        """A Sudoku string (module docstring) or a grid of digits as a list of lists (0 = blank)."""
        side = math.isqrt(seq_len)
        grid = parse_sudoku(_digits_text(puzzle, where), where)
        if grid.shape[0] != side:
            raise HrmkitError(f"{where}: a {grid.shape[0]}x{grid.shape[0]} Sudoku, but this model was trained on "
                              f"{side}x{side} Sudoku (seq_len {seq_len})")
        return sudoku_tokens(grid)

    def decode(self, tokens: Any) -> str:
        return sudoku_string(self.grid(tokens))

    def grid(self, tokens: Any) -> np.ndarray:
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        side = math.isqrt(t.size)
        if side * side != t.size:
            raise ValueError(f"sudoku token row of length {t.size} is not square")
        return np.clip(t - 1, 0, 9).reshape(side, side)

    def dataset_lines(self, tokens, extra=None):
        return self.text_lines(self.grid(tokens), box=(extra or {}).get("box"))

    def given(self, input_grid: Any) -> np.ndarray:
        return np.asarray(input_grid) != 0

    def puzzle_text(self, input_grid: Any) -> str:
        return sudoku_string(input_grid)

    # rules
    def verify(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return sudoku_solved(inputs, preds)

    def baselines(self, inputs):
        return {"naked_singles": ("fill every blank with one candidate left, repeated until none changes; the "
                                  "rest stay blank (no search)", naked_singles(inputs))}

    def check(self, input_tokens: np.ndarray, answer_tokens: np.ndarray) -> Check:
        puzzle, answer = self.grid(input_tokens), self.grid(answer_tokens)
        c = check_sudoku(puzzle, answer)
        unique = {0: "the puzzle has no solution", 1: "the puzzle has exactly one solution",
                  2: "the puzzle has more than one solution"}[c.solutions]
        if c.solved:
            verdict = "a valid solution that keeps every clue"
        else:
            why = [w for w in (sudoku_clash(answer), f"{int((answer == 0).sum())} cells blank"
                               if (answer == 0).any() else None,
                               None if c.keeps_clues else "a clue was changed") if w]
            verdict = "NOT a valid solution" + (f": {'; '.join(why)}" if why else "")
        verdict += f"; {unique}" + ("" if c.matches_solver is None else
                                    f", and the answer {'is' if c.matches_solver else 'is not'} it")
        return Check(c.solved, verdict, dict(valid=c.valid, keeps_clues=c.keeps_clues, solved=c.solved,
                                             puzzle_solutions=c.solutions))

    # augmentations
    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        from hrmkit.data.augment import apply_sudoku_symmetry, invert_sudoku_symmetry, sudoku_symmetries

        n = self._side(seq_len)
        sym = sudoku_symmetries(sudoku.BOXES[n], versions, np.random.default_rng(seed), identity_first=True)
        # offset 1: the dataset tokens are digit + 1 (1 = blank, 0 = PAD stays PAD)
        return Augmentation(self.name, versions,
                            lambda x: apply_sudoku_symmetry(np.broadcast_to(x, (versions,) + x.shape), sym, offset=1),
                            lambda y: invert_sudoku_symmetry(y, sym, offset=1))

    # reports
    def difficulty(self, inputs, labels, split_dir=None):
        out = {}
        if split_dir is not None:
            ratings = sudoku.load_ratings(Path(split_dir))
            if ratings is not None and len(ratings) >= len(inputs):
                out["rating (solver dead ends)"] = ("pow2", np.asarray(ratings[:len(inputs)], np.int64))
        out["clues"] = ("linear", (np.asarray(inputs) >= 2).sum(axis=1))
        return out

    # drawing
    def cell_px(self, side: int) -> int:
        return 22

    def cell_style(self, value, marked, given, cell_px):
        v = int(value)
        colour = DIFF_COLOUR if marked else "#000" if given is None or given else FILLED_COLOUR
        return CellStyle(MARK_FILL if marked else "#ffffff", str(v) if v else None, colour, 0.7)

    def box(self, height: int, width: int):
        return sudoku.BOXES.get(width) if height == width else None

    def text_lines(self, grid: Any, marked: Any = None, box: Sequence[int] | None = None) -> list[str]:
        """'.' for blanks, boxes separated by '|' and '-+-' (box shape `box` = (rows, columns), default from
        the size: 2x2, 2x3, 3x3); marked cells as `[d]`."""
        g = np.asarray(grid)
        h, w = g.shape
        mark = np.zeros((h, w), bool) if marked is None else np.asarray(marked, bool)
        br, bc = box or sudoku.BOXES.get(w, (h, w))
        cells = [["." if v == 0 else str(int(v)) for v in row] for row in g]
        if marked is not None:
            cells = [[f"[{c}]" if mark[r, k] else f" {c} " for k, c in enumerate(row)] for r, row in enumerate(cells)]
        sep, width = (" | ", 2 * bc - 1) if marked is None else ("|", 3 * bc)
        joiner = " " if marked is None else ""
        lines = []
        for r in range(h):
            if r and r % br == 0:
                lines.append(("-+-" if marked is None else "+").join("-" * width for _ in range(w // bc)))
            lines.append(sep.join(joiner.join(cells[r][c:c + bc]) for c in range(0, w, bc)))
        return lines
