"""Puzzles in their natural form <-> model tokens, with the input checks `hrm solve` and `Model.encode` make.

The token layouts are the data layer's (docs/design.md §1), reused, not redefined: Sudoku tokens are digit + 1
(`data.sudoku`), maze tokens come from `data.maze.to_tokens` / `from_tokens`, ARC canvases from
`data.arc.encode_grid` / `decode_grid`.

Natural forms:
- Sudoku: a string of n*n cells (n = 4, 6 or 9), row-major, '.' or '0' for a blank, digits 1..n; spaces,
  newlines and the box separators '|', '+' and '-' are ignored, so a printed grid reads back.
- Maze: text, one line per row, '#' wall, ' ' open, one 'S' (start) and one 'G' (goal).
- ARC: a grid as a list of lists of colours 0..9 (at most 30x30); a task file is one task's JSON
  (`{"train": [{"input", "output"}...], "test": [{"input"[, "output"]}...]}`).

Every check raises `HrmkitError` naming the field (`where`, e.g. "INPUT") and the value at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.data import arc, maze, sudoku
from hrmkit.errors import HrmkitError

SUDOKU_IGNORED = " \t\r\n|+-"
_SIZES = {n * n: n for n in sudoku.BOXES}


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


# ------------------------------------------------------------------------------------------------- Sudoku

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


# --------------------------------------------------------------------------------------------------- maze

def parse_maze(text: str, where: str = "INPUT") -> np.ndarray:
    """ASCII grid uint8 [h, w] (the `data.maze` layout) of maze text (module docstring). Leading and trailing
    empty lines are dropped. HrmkitError for ragged lines, a character outside '#', ' ', 'S', 'G', or not
    exactly one S and one G."""
    if not isinstance(text, str):
        raise HrmkitError(f"{where}: a maze is text ('#' walls, ' ' open, 'S', 'G'), got {type(text).__name__}")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise HrmkitError(f"{where}: the maze is empty")
    width = len(lines[0])
    for r, line in enumerate(lines):
        if len(line) != width:
            raise HrmkitError(f"{where}: line {r + 1} has {len(line)} characters, line 1 has {width} (a maze is a "
                              "rectangle; keep the trailing spaces)")
        for c, ch in enumerate(line):
            if ch not in "# SG":
                why = "path cells belong to the answer" if ch == "o" else "allowed: '#', ' ', 'S', 'G'"
                raise HrmkitError(f"{where}: line {r + 1}, column {c + 1}: character {ch!r} ({why})")
    grid = np.frombuffer("".join(lines).encode("ascii"), np.uint8).reshape(len(lines), width)
    ns, ng = int((grid == maze.START).sum()), int((grid == maze.GOAL).sum())
    if ns != 1 or ng != 1:
        raise HrmkitError(f"{where}: a maze needs exactly one start 'S' and one goal 'G', got {ns} and {ng}")
    return grid.copy()


def maze_text(grid: Any) -> str:
    """Text of an ASCII maze grid (what `parse_maze` reads)."""
    return maze.render(np.asarray(grid, np.uint8))


@dataclass
class MazeCheck:
    """A maze answer: connected: its path cells ('o') with S and G connect S to G (4-neighbour moves);
    only_path_added: it equals the input except open cells marked 'o'; shortest: a shortest S->G path
    (`data.maze.is_shortest_path_label`); path_cells: 'o' cells; shortest_cells: 'o' cells of a shortest
    path (None when G cannot be reached)."""

    connected: bool
    only_path_added: bool
    shortest: bool
    path_cells: int
    shortest_cells: int | None


def check_maze(puzzle: np.ndarray, answer: np.ndarray) -> MazeCheck:
    """Check an answer grid (ASCII [h, w]) against its input maze with `data.maze`'s BFS."""
    start = tuple(int(v) for v in np.argwhere(puzzle == maze.START)[0])
    goal = tuple(int(v) for v in np.argwhere(puzzle == maze.GOAL)[0])
    on_path = (answer == maze.PATH) | (answer == maze.START) | (answer == maze.GOAL)
    walk = np.where(on_path, maze.OPEN, maze.WALL).astype(np.uint8)
    connected = bool(answer[start] == maze.START and answer[goal] == maze.GOAL and maze.bfs(walk, start)[goal] >= 0)
    changed = puzzle != answer
    only_path = bool(np.all(puzzle[changed] == maze.OPEN) and np.all(answer[changed] == maze.PATH))
    length = int(maze.bfs(puzzle, goal)[start])
    return MazeCheck(connected, only_path, maze.is_shortest_path_label(puzzle, answer),
                     int((answer == maze.PATH).sum()), length - 1 if length >= 0 else None)


# ---------------------------------------------------------------------------------------------------- ARC

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
