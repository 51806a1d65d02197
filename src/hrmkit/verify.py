"""Answer verifiers: does a predicted token row solve its puzzle, judged from the puzzle alone (no label).

A verifier is knowledge the model does not have, so what it selects is reported apart from the plain score
(`hrm eval --verify`). Rows use the dataset token layouts (docs/design.md §1): Sudoku 0 PAD, 1 blank,
digit + 1; mazes CHARSET index + 1 (`data.maze.to_tokens`).

- `sudoku_solved(inputs [B, n*n], preds [B, n*n]) -> bool [B]`: every row, column and box holds each digit
  1..n once and every clue is kept.
- `maze_solved(inputs [B, h*w], preds [B, h*w]) -> bool [B]`: the answer marks a shortest S->G path and
  changes nothing else (`data.maze.is_shortest_path_label`; square mazes).
- `VERIFIERS`: task name -> verifier; `verifier_for(task)` returns None for tasks without one (ARC).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Verifier = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _rows(inputs: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    x, y = np.asarray(inputs, np.int64), np.asarray(preds, np.int64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"verifiers take token rows [B, S] of one shape, got {x.shape} and {y.shape}")
    side = int(round(x.shape[1] ** 0.5))
    if side * side != x.shape[1]:
        raise ValueError(f"verifiers take square grids, got rows of {x.shape[1]} tokens")
    return x, y, side


def sudoku_solved(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """bool [B]: preds is a valid Sudoku solution (each digit once per row, column and box) that keeps every
    clue of inputs. ValueError for rows that are no 4x4, 6x6 or 9x9 Sudoku."""
    from hrmkit.data import sudoku

    x, y, n = _rows(inputs, preds)
    if n not in sudoku.BOXES:
        raise ValueError(f"no Sudoku has {n * n} cells")
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


def maze_solved(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """bool [B]: preds equals inputs with open cells marked as a shortest S->G path."""
    from hrmkit.data import maze

    x, y, side = _rows(inputs, preds)
    out = np.zeros(len(x), bool)
    for i in range(len(x)):
        if ((y[i] < 1) | (y[i] > len(maze.CHARSET))).any():
            continue
        grid = maze.from_tokens(x[i].astype(np.uint8)).reshape(side, side)
        answer = maze.from_tokens(y[i].astype(np.uint8)).reshape(side, side)
        out[i] = maze.is_shortest_path_label(grid, answer)
    return out


VERIFIERS: dict[str, Verifier] = {"sudoku": sudoku_solved, "maze": maze_solved}


def verifier_for(task: str | None) -> Verifier | None:
    """The verifier of `task` ("sudoku", "maze"), None when the task has none."""
    return VERIFIERS.get(task or "")
