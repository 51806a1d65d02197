"""Augmentations of puzzle grids (docs/design.md §2): the 8 dihedral transforms, Sudoku symmetries, maze versions.

Dihedral numbering is the references' (sapientinc/HRM `dataset/common.py`):

    0 identity    1 rot90 (np.rot90, counter-clockwise)    2 rot180    3 rot270
    4 fliplr (mirror left-right)    5 flipud (mirror up-down)    6 transpose    7 anti-transpose (fliplr(rot90))

`DIHEDRAL_INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]`: transform `DIHEDRAL_INVERSE[t]` undoes transform `t`.

Public API
----------
- `dihedral_transform(grid [..., H, W], tid) -> [..., H, W] or [..., W, H]` (a new contiguous array, same
  dtype; batches transform every grid). ValueError for tid not in 0..7 or fewer than 2 dimensions.
- `inverse_dihedral(tid) -> int`, `inverse_dihedral_transform(grid, tid)`.
- `sudoku_augment_many(puzzle, solution, box, k, rng)` -> ([k, n, n], [k, n, n]): k randomly transformed
  (puzzle, solution) pairs, vectorized.
  Grids hold digits 0 (blank) .. n, n = box_rows * box_cols. The transform: permute digits 1..n (0 stays),
  transpose with probability 1/2 (only for square boxes: transposing a 2x3-box grid gives a 3x2-box grid),
  permute the bands (groups of box_rows rows) and the rows inside each band, permute the stacks (groups of
  box_cols columns) and the columns inside each stack. Valid puzzles stay valid, solutions stay solutions.
- `sudoku_symmetries(box, k, rng, identity_first=False) -> SudokuSymmetries` (the same draws, kept),
  `apply_sudoku_symmetry(grids [k, ..., n, n], sym)` and its inverse `invert_sudoku_symmetry`: test-time
  voting maps predictions back to the puzzle's frame with them.
- `maze_dihedral_versions(inputs, labels)` -> list of the 8 (input, label) dihedral versions, tid order
  (reference `build_maze_dataset.py --aug`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIHEDRAL_INVERSE: tuple[int, ...] = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral_transform(grid: np.ndarray, tid: int) -> np.ndarray:
    """Apply dihedral transform `tid` (reference numbering, see module docstring) to a grid [H, W], or to every
    grid of a batch [..., H, W] (the last two axes)."""
    g = np.asarray(grid)
    if g.ndim < 2:
        raise ValueError(f"dihedral_transform expects a grid [..., H, W], got shape {g.shape}")
    if tid == 0:
        out = g
    elif tid in (1, 2, 3):
        out = np.rot90(g, k=tid, axes=(-2, -1))
    elif tid == 4:
        out = g[..., :, ::-1]
    elif tid == 5:
        out = g[..., ::-1, :]
    elif tid == 6:
        out = np.swapaxes(g, -2, -1)
    elif tid == 7:
        out = np.rot90(g, k=1, axes=(-2, -1))[..., :, ::-1]
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


@dataclass
class SudokuSymmetries:
    """k Sudoku symmetries of an n x n grid (n = box rows * box cols), one per version.

    digit_map: int64 [k, n + 1] (0 -> 0, digits 1..n permuted); transpose: bool [k] (square boxes only);
    row_perm, col_perm: int64 [k, n], band/stack shuffles composed with row/column shuffles inside them.
    Version v maps cell (i, j) of the new grid from old cell (row_perm[i], col_perm[j]) (read in the transposed
    grid when transpose[v]) and relabels its digit. Valid puzzles stay valid, solutions stay solutions.
    """

    digit_map: np.ndarray
    transpose: np.ndarray
    row_perm: np.ndarray
    col_perm: np.ndarray

    @property
    def versions(self) -> int:
        return int(self.digit_map.shape[0])

    def cell_sources(self) -> np.ndarray:
        """int64 [k, n*n]: the flat old cell each new cell is read from."""
        k, n = self.row_perm.shape
        src_r = np.broadcast_to(self.row_perm[:, :, None], (k, n, n))
        src_c = np.broadcast_to(self.col_perm[:, None, :], (k, n, n))
        return np.where(self.transpose[:, None, None], src_c * n + src_r, src_r * n + src_c).reshape(k, n * n)

    def value_maps(self, offset: int = 0, size: int | None = None) -> np.ndarray:
        """int64 [k, size]: the digit relabelling on values shifted by `offset` (offset 1: the dataset tokens,
        1 = blank, digit + 1); values outside offset..offset+n (PAD, stray tokens) map to themselves."""
        k, n1 = self.digit_map.shape
        size = max(size or 0, offset + n1)
        maps = np.broadcast_to(np.arange(size, dtype=np.int64), (k, size)).copy()
        maps[:, offset:offset + n1] = self.digit_map + offset
        return maps


def sudoku_symmetries(box: tuple[int, int], k: int, rng: np.random.Generator,
                      identity_first: bool = False) -> SudokuSymmetries:
    """`k` independent uniformly drawn Sudoku symmetries for boxes of box[0] rows by box[1] columns (module
    docstring); with `identity_first` version 0 is the identity (test-time voting keeps the plain puzzle)."""
    br, bc = int(box[0]), int(box[1])
    n = br * bc
    nb, ns = n // br, n // bc  # bands (of br rows), stacks (of bc columns)
    digit_map = np.concatenate([np.zeros((k, 1), np.int64), 1 + _random_perms(rng, (k, n))], axis=1)
    transpose = rng.random(k) < 0.5 if br == bc else np.zeros(k, dtype=bool)
    row_perm = (_random_perms(rng, (k, nb))[:, :, None] * br + _random_perms(rng, (k, nb, br))).reshape(k, n)
    col_perm = (_random_perms(rng, (k, ns))[:, :, None] * bc + _random_perms(rng, (k, ns, bc))).reshape(k, n)
    if identity_first and k:
        digit_map[0], transpose[0], row_perm[0], col_perm[0] = np.arange(n + 1), False, np.arange(n), np.arange(n)
    return SudokuSymmetries(digit_map, transpose, row_perm, col_perm)


def apply_sudoku_symmetry(grids: np.ndarray, sym: SudokuSymmetries, offset: int = 0) -> np.ndarray:
    """Version v of `sym` applied to grids[v]: grids [k, ..., n, n] (or [k, ..., n*n]) of values (digits, or
    tokens with `offset` 1). Returns the same shape and dtype."""
    g = np.asarray(grids)
    k, n2 = sym.versions, sym.row_perm.shape[1] ** 2
    flat = g.reshape(k, -1, n2).astype(np.int64)
    maps = sym.value_maps(offset, int(flat.max(initial=0)) + 1)
    moved = np.take_along_axis(flat, np.broadcast_to(sym.cell_sources()[:, None, :], flat.shape), axis=2)
    return maps[np.arange(k)[:, None, None], moved].reshape(g.shape).astype(g.dtype)


def invert_sudoku_symmetry(grids: np.ndarray, sym: SudokuSymmetries, offset: int = 0) -> np.ndarray:
    """Undo `apply_sudoku_symmetry`: grids [k, ..., n, n] (or [k, ..., n*n]) seen in version v's frame, back
    in the original frame. Same shape and dtype."""
    g = np.asarray(grids)
    k, n2 = sym.versions, sym.row_perm.shape[1] ** 2
    flat = g.reshape(k, -1, n2).astype(np.int64)
    maps = sym.value_maps(offset, int(flat.max(initial=0)) + 1)
    inverse = np.empty_like(maps)
    np.put_along_axis(inverse, maps, np.broadcast_to(np.arange(maps.shape[1]), maps.shape), axis=1)
    out = np.empty_like(flat)
    relabelled = inverse[np.arange(k)[:, None, None], flat]
    np.put_along_axis(out, np.broadcast_to(sym.cell_sources()[:, None, :], flat.shape), relabelled, axis=2)
    return out.reshape(g.shape).astype(g.dtype)


def sudoku_augment_many(
    puzzle: np.ndarray, solution: np.ndarray, box: tuple[int, int], k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`k` independent random Sudoku symmetries applied to one (puzzle, solution) pair.

    puzzle, solution: [n, n] integer digits (0 = blank in the puzzle), n = box[0] * box[1].
    Returns (puzzles [k, n, n], solutions [k, n, n]) with the input dtype. See module docstring.
    """
    n = int(box[0]) * int(box[1])
    p = np.asarray(puzzle)
    s = np.asarray(solution)
    if p.shape != (n, n) or s.shape != (n, n):
        raise ValueError(f"sudoku grids must be [{n}, {n}] for box {box[0]}x{box[1]}, got {p.shape} and {s.shape}")
    sym = sudoku_symmetries(box, k, rng)
    return (apply_sudoku_symmetry(np.broadcast_to(p, (k, n, n)), sym),
            apply_sudoku_symmetry(np.broadcast_to(s, (k, n, n)), sym))


def maze_dihedral_versions(inputs: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8 dihedral versions (tid 0..7) of a maze (input grid, label grid), both [H, W]."""
    return [(dihedral_transform(inputs, t), dihedral_transform(labels, t)) for t in range(8)]
