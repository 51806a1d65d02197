"""Mazes: square grids of "# SGo" (wall, open, start, goal, path), tokens CHARSET index + 1 (`data.maze`,
docs/design.md §1).

Natural form: text, one line per row, '#' wall, ' ' open, one 'S' (start) and one 'G' (goal); the answer
marks a shortest S->G path with 'o'. Rules: the answer marks a shortest S->G path and changes nothing else.
Augmentations: the 8 dihedral transforms (the builder's `--aug`). Difficulty: the shortest path's length.

Parameters: {"height": h, "width": w} (optional; square rows are read from seq_len when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hrmkit.data import maze
from hrmkit.errors import HrmkitError
from hrmkit.tasks.base import Augmentation, CellStyle, Check, Task, dihedral_augmentation, square_side

PATH_TOKEN = 5  # 'o': the answer's path cells
COLOURS = {"#": "#333333", " ": "#ffffff", "S": "#2ECC40", "G": "#FF4136", "o": "#0074D9"}
_TABLE = np.array(list("?" + maze.CHARSET + "?"))  # token -> character ("?" for other tokens)


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


def maze_solved(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """bool [B]: preds (tokens [B, h*w], square) equals inputs with open cells marked as a shortest S->G path."""
    x, y = np.asarray(inputs, np.int64), np.asarray(preds, np.int64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"verifiers take token rows [B, S] of one shape, got {x.shape} and {y.shape}")
    side = int(round(x.shape[1] ** 0.5))
    if side * side != x.shape[1]:
        raise ValueError(f"verifiers take square grids, got rows of {x.shape[1]} tokens")
    out = np.zeros(len(x), bool)
    for i in range(len(x)):
        if ((y[i] < 1) | (y[i] > len(maze.CHARSET))).any():
            continue
        grid = maze.from_tokens(x[i].astype(np.uint8)).reshape(side, side)
        answer = maze.from_tokens(y[i].astype(np.uint8)).reshape(side, side)
        out[i] = maze.is_shortest_path_label(grid, answer)
    return out


class MazeTask(Task):
    """Square mazes with shortest-path answers (module docstring)."""

    name = "maze"
    title = "maze"
    description = "mazes: '#' walls, ' ' open, S and G; the answer marks a shortest path with 'o'"
    has_verifier = True
    inline_input = False

    def _shape(self, seq_len: int, what: str) -> tuple[int, int]:
        h, w = self.params.get("height"), self.params.get("width")
        if h and w and h * w == seq_len:
            return int(h), int(w)
        side = square_side(seq_len, f"{what}: maze")
        return side, side

    def token_layout(self, seq_len, extra=None):
        return dict(cells=f"token = index in {maze.CHARSET!r} + 1 (wall, open, start, goal, path)",
                    charset=maze.CHARSET, grid=list(self._shape(seq_len, "export")))

    def token_names(self, vocab_size: int) -> list[str]:
        base = ["PAD", "wall #", "open", "S", "G", "path o"]
        return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]

    def input_tokens(self, vocab_size: int):
        return tuple(range(1, 6)), (0,)  # "# SGo"; PAD kept

    def answer_tokens(self, vocab_size: int):
        return tuple(range(1, 6))

    # natural forms
    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        """Maze text (module docstring), or its lines as a list of strings."""
        h, w = self._shape(seq_len, where)
        if isinstance(puzzle, list) and all(isinstance(v, str) for v in puzzle):
            puzzle = "\n".join(puzzle)
        grid = parse_maze(puzzle, where)
        if grid.shape != (h, w):
            raise HrmkitError(f"{where}: a {grid.shape[0]}x{grid.shape[1]} maze, but this model was trained on "
                              f"{h}x{w} mazes (seq_len {seq_len})")
        return maze.to_tokens(grid).reshape(-1)

    def decode(self, tokens: Any) -> str:
        return "\n".join("".join(row) for row in self.grid(tokens))

    def grid(self, tokens: Any) -> np.ndarray:
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        h, w = self._shape(t.size, "maze row")
        return _TABLE[np.clip(t, 0, 6)].reshape(h, w)

    def dataset_lines(self, tokens, extra=None):
        return self.text_lines(self.grid(tokens))

    def display(self, grid: Any) -> np.ndarray:
        g = np.asarray(grid)
        return _TABLE[np.clip(g, 0, 6)] if g.dtype.kind in "iu" else g.astype(str)

    def puzzle_text(self, input_grid: Any) -> str:
        return "\n".join("".join(row) for row in self.display(input_grid))

    # rules
    def verify(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return maze_solved(inputs, preds)

    def check(self, input_tokens: np.ndarray, answer_tokens: np.ndarray) -> Check:
        h, w = self._shape(np.asarray(input_tokens).size, "maze row")
        puzzle = maze.from_tokens(np.asarray(input_tokens, np.uint8)).reshape(h, w)
        c = check_maze(puzzle, maze.from_tokens(np.asarray(answer_tokens, np.uint8)).reshape(h, w))
        if c.connected:
            verdict = f"a path of {c.path_cells} cells connected from S to G"
            verdict += (", a shortest one" if c.shortest else
                        f", not a shortest one (shortest: {c.shortest_cells} cells)" if c.shortest_cells is not None else "")
        else:
            verdict = ("NOT a path from S to G: " + (f"its {c.path_cells} path cells do not connect them" if c.path_cells
                                                      else "no path cells"))
        if not c.only_path_added:
            verdict += "; the answer also changed walls, S or G"
        return Check(c.connected and c.shortest and c.only_path_added, verdict,
                     dict(connected=c.connected, shortest=c.shortest, only_path_added=c.only_path_added,
                          path_cells=c.path_cells, shortest_cells=c.shortest_cells))

    # augmentations
    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        h, w = self._shape(seq_len, "--tta")
        return dihedral_augmentation(self.name, h, w, versions)

    # reports
    def difficulty(self, inputs, labels, split_dir=None):
        return {"shortest path (moves)": ("linear", (np.asarray(labels) == PATH_TOKEN).sum(axis=1) + 1)}

    # drawing
    def cell_px(self, side: int) -> int:
        return max(6, min(16, 300 // max(side, 1)))

    def cell_style(self, value, marked, given, cell_px):
        v = str(value)
        text = v if cell_px >= 12 and v not in "# " else None
        return CellStyle(COLOURS.get(v, "#ffff99"), text, "#fff", 0.8, 0.8, cross=marked)

    def cell_char(self, value: Any) -> str:
        return str(value)
