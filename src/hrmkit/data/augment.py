"""Augmentations of puzzle grids (docs/design.md §2): the 8 dihedral transforms, Sudoku symmetries, maze versions.

Dihedral numbering is the references' (sapientinc/HRM `dataset/common.py`):

    0 identity    1 rot90 (np.rot90, counter-clockwise)    2 rot180    3 rot270
    4 fliplr (mirror left-right)    5 flipud (mirror up-down)    6 transpose    7 anti-transpose (fliplr(rot90))

`DIHEDRAL_INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]`: transform `DIHEDRAL_INVERSE[t]` undoes transform `t`.

Public API
----------
- `dihedral_transform(grid [H, W], tid) -> [H, W] or [W, H]` (a new contiguous array, same dtype; 2-D
  grids only). ValueError for tid not in 0..7 or a grid that is not 2-D.
- `inverse_dihedral(tid) -> int`, `inverse_dihedral_transform(grid, tid)`.
- `sudoku_augment(puzzle, solution, box, rng)` -> one randomly transformed (puzzle, solution) pair;
  `sudoku_augment_many(puzzle, solution, box, k, rng)` -> ([k, n, n], [k, n, n]), vectorized.
  Grids hold digits 0 (blank) .. n, n = box_rows * box_cols. The transform: permute digits 1..n (0 stays),
  transpose with probability 1/2 (only for square boxes: transposing a 2x3-box grid gives a 3x2-box grid),
  permute the bands (groups of box_rows rows) and the rows inside each band, permute the stacks (groups of
  box_cols columns) and the columns inside each stack. Valid puzzles stay valid, solutions stay solutions.
- `maze_dihedral_versions(inputs, labels)` -> list of the 8 (input, label) dihedral versions, tid order
  (reference `build_maze_dataset.py --aug`).
"""

from __future__ import annotations

import numpy as np

DIHEDRAL_INVERSE: tuple[int, ...] = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Apply dihedral transform `tid` (reference numbering, see module docstring) to a 2-D grid."""
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"dihedral_transform expects a 2-D grid, got shape {g.shape}")
    if tid == 0:
        out = g
    elif tid in (1, 2, 3):
        out = np.rot90(g, k=tid)
    elif tid == 4:
        out = np.fliplr(g)
    elif tid == 5:
        out = np.flipud(g)
    elif tid == 6:
        out = g.T
    elif tid == 7:
        out = np.fliplr(np.rot90(g, k=1))
    else:
        raise ValueError(f"dihedral transform id must be in 0..7, got {tid!r}")
    return np.array(out, copy=True, order="C")


def inverse_dihedral(tid: int) -> int:
    """The id of the transform that undoes `tid`."""
    if not 0 <= int(tid) <= 7:
        raise ValueError(f"dihedral transform id must be in 0..7, got {tid!r}")
    return DIHEDRAL_INVERSE[int(tid)]


def inverse_dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Undo `dihedral_transform(., tid)`."""
    return dihedral_transform(grid, inverse_dihedral(tid))


def _random_perms(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent uniform random permutations of range(shape[-1]), batched over the leading axes."""
    return np.argsort(rng.random(shape), axis=-1)


def sudoku_augment_many(
    puzzle: np.ndarray, solution: np.ndarray, box: tuple[int, int], k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`k` independent random Sudoku symmetries applied to one (puzzle, solution) pair.

    puzzle, solution: [n, n] integer digits (0 = blank in the puzzle), n = box[0] * box[1].
    Returns (puzzles [k, n, n], solutions [k, n, n]) with the input dtype. See module docstring.
    """
    br, bc = int(box[0]), int(box[1])
    n = br * bc
    p = np.asarray(puzzle)
    s = np.asarray(solution)
    if p.shape != (n, n) or s.shape != (n, n):
        raise ValueError(f"sudoku grids must be [{n}, {n}] for box {br}x{bc}, got {p.shape} and {s.shape}")
    nb, ns = n // br, n // bc  # bands (of br rows), stacks (of bc columns)
    # Digit maps: 0 -> 0, 1..n -> a permutation of 1..n.
    digit_map = np.concatenate([np.zeros((k, 1), np.int64), 1 + _random_perms(rng, (k, n))], axis=1)
    transpose = rng.random(k) < 0.5 if br == bc else np.zeros(k, dtype=bool)
    row_perm = (_random_perms(rng, (k, nb))[:, :, None] * br + _random_perms(rng, (k, nb, br))).reshape(k, n)
    col_perm = (_random_perms(rng, (k, ns))[:, :, None] * bc + _random_perms(rng, (k, ns, bc))).reshape(k, n)

    # One flat gather index per version: cell (i, j) of the new grid comes from old cell
    # (row_perm[i], col_perm[j]), read from the transposed grid when `transpose`.
    src_r = np.broadcast_to(row_perm[:, :, None], (k, n, n))
    src_c = np.broadcast_to(col_perm[:, None, :], (k, n, n))
    flat = np.where(transpose[:, None, None], src_c * n + src_r, src_r * n + src_c).reshape(k, n * n)
    versions = np.arange(k)[:, None]

    def apply(grid: np.ndarray) -> np.ndarray:
        moved = grid.reshape(-1)[flat]  # [k, n*n]
        return digit_map[versions, moved].reshape(k, n, n).astype(grid.dtype)

    return apply(p), apply(s)


def sudoku_augment(
    puzzle: np.ndarray, solution: np.ndarray, box: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random Sudoku symmetry applied to (puzzle [n, n], solution [n, n]); see `sudoku_augment_many`."""
    ps, ss = sudoku_augment_many(puzzle, solution, box, 1, rng)
    return ps[0], ss[0]


def maze_dihedral_versions(inputs: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8 dihedral versions (tid 0..7) of a maze (input grid, label grid), both [H, W]."""
    return [(dihedral_transform(inputs, t), dihedral_transform(labels, t)) for t in range(8)]
