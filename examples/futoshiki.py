"""Futoshiki as an hrmkit task, in one file (docs/tasks.md walks through it).

A Futoshiki puzzle is an n x n Latin square (every row and column holds each digit 1..n once) with some given
digits and inequality signs between some orthogonally adjacent cells; a puzzle has exactly one solution.

Token layout (one puzzle = one row of (2n-1)^2 tokens, the (2n-1) x (2n-1) grid row-major): position (i, j)
with i and j even is the cell (i/2, j/2); (even i, odd j) is the slot between two horizontally adjacent cells,
(odd i, even j) the slot between two vertically adjacent cells; (odd, odd) positions are always "none".

    0 PAD   1 blank   2..n+1 digits 1..n   n+2 none   n+3 '<'   n+4 '>'   n+5 '^'   n+6 'v'
    vocab_size = n + 7 (12 for 5x5)

'<' / '>' sit in horizontal slots (left < right / left > right), '^' / 'v' in vertical slots (upper < lower /
upper > lower: the point of the sign is at the smaller cell). Labels are the solved grid with the signs copied;
only the blank cells are scored (`scored_mask`).

Natural form (`encode` reads it, `decode` writes it): 2n-1 text lines, one character per grid position: cells
'.' (or '0') for a blank or a digit, horizontal slots '<', '>' or ' ', vertical slots '^', 'v' or ' ', the
other positions ' '. Trailing spaces may be left out. A 3x3 example (its one solution: 321 / 132 / 213):

    . 2>.
        ^
    . . .
    ^ v
    . . .

Display grids (what `grid` returns and the renderer draws) are int [2n-1, 2n-1]: cells 0 (blank) or 1..n,
slots NONE (10), LT (11), GT (12), UP (13), DOWN (14), independent of n.

Rules (`verify`, `check`): the answer is a Latin square, every inequality holds, every given digit is kept.
Augmentations: the 8 dihedral transforms of the grid (references' numbering, `hrmkit.data.augment`) with the
signs rewritten, each with or without the digit reversal d -> n+1-d (which flips every sign): 16 versions,
version 0 the identity. Difficulty: number of given digits and of inequality signs.

Generator: `generate_puzzle(n, rng, sign_density, max_blanks=None)` (random Latin square, random inequalities,
then givens removed while the solution stays unique, by a backtracking solver counting up to 2 solutions, down
to a minimal puzzle or to `max_blanks` blank cells). The CPU recipe that builds a
dataset and trains a model is examples/futoshiki_recipe.py.

Use it from the `hrm` command with `hrm --task-file examples/futoshiki.py ...` or
`HRMKIT_TASK_FILES=examples/futoshiki.py`, or from Python by importing this file (it registers the task `futoshiki`).

Parameters: {"size": n} (optional; read from the row length when absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

import hrmkit.tasks
from hrmkit.data.augment import DIHEDRAL_INVERSE, dihedral_transform
from hrmkit.errors import HrmkitError
from hrmkit.tasks import Augmentation, CellStyle, Check, Task

PAD_ID = 0
BLANK_ID = 1
MIN_SIZE, MAX_SIZE = 2, 9

# display-grid codes of the slots (cells are 0 = blank, 1..n)
NONE, LT, GT, UP, DOWN = 10, 11, 12, 13, 14
SIGN_CHARS = {NONE: " ", LT: "<", GT: ">", UP: "^", DOWN: "v"}
# the direction (row, column) in which the value grows across each sign: '<' left < right, '^' upper < lower
SIGN_DIRECTION = {LT: (0, 1), GT: (0, -1), UP: (1, 0), DOWN: (-1, 0)}
DIRECTION_SIGN = {d: s for s, d in SIGN_DIRECTION.items()}

NUM_VERSIONS = 16
SIGN_FILL = "#eef2f7"  # background of the slots between cells
SIGN_COLOUR = "#44546a"
MARK_FILL = "#ffd6d6"
MARK_COLOUR = "#e0115f"
FILLED_COLOUR = "#1f4e9c"  # digits that are not clues (when the clues are known)


# ------------------------------------------------------------------------------------------------ token layout

def vocab_size(n: int) -> int:
    """Tokens of an n x n Futoshiki layout: PAD, blank, n digits, none and 4 signs."""
    return n + 7


def sign_token(n: int, code: int) -> int:
    """The token of display code NONE/LT/GT/UP/DOWN in the n x n layout (n+2 .. n+6)."""
    return n + 2 + (code - NONE)


def size_of_seq_len(seq_len: int, what: str = "futoshiki") -> int:
    """n from a row of (2n-1)^2 tokens; HrmkitError naming `what` for any other length."""
    side = math.isqrt(int(seq_len))
    if side * side != seq_len or side % 2 == 0 or not MIN_SIZE <= (side + 1) // 2 <= MAX_SIZE:
        raise HrmkitError(f"{what}: rows of {seq_len} tokens are no Futoshiki grid (a {MIN_SIZE}x{MIN_SIZE} to "
                          f"{MAX_SIZE}x{MAX_SIZE} Futoshiki has (2n-1)^2 tokens: 9, 25, 49, 81, ...)")
    return (side + 1) // 2


def size_of_vocab(vocab: int) -> int | None:
    """n from a vocabulary size (n + 7), None when it is none of a Futoshiki layout."""
    n = int(vocab) - 7
    return n if MIN_SIZE <= n <= MAX_SIZE else None


def to_display(tokens: Any) -> np.ndarray:
    """Display grid int [2n-1, 2n-1] of one token row int [(2n-1)^2] (module docstring). Tokens that do not fit
    their position (a digit in a slot, a sign in a cell) show as blank / none."""
    t = np.asarray(tokens).astype(np.int64).reshape(-1)
    n = size_of_seq_len(t.size)
    m = 2 * n - 1
    g = t.reshape(m, m)
    out = np.full((m, m), NONE, np.int64)
    cells = g[::2, ::2]
    out[::2, ::2] = np.where((cells >= 2) & (cells <= n + 1), cells - 1, 0)
    for code in (LT, GT):
        out[::2, 1::2][g[::2, 1::2] == sign_token(n, code)] = code
    for code in (UP, DOWN):
        out[1::2, ::2][g[1::2, ::2] == sign_token(n, code)] = code
    return out


def to_tokens(display: Any) -> np.ndarray:
    """Token row uint8 [(2n-1)^2] of a display grid int [2n-1, 2n-1] (the inverse of `to_display`)."""
    g = np.asarray(display).astype(np.int64)
    m = g.shape[0]
    n = (m + 1) // 2
    out = np.where(g >= NONE, g - NONE + n + 2, g + 1)
    out[1::2, 1::2] = sign_token(n, NONE)
    return out.reshape(-1).astype(np.uint8)


@dataclass
class Puzzle:
    """One Futoshiki in arrays: digits int [n, n] (0 = blank); h int [n, n-1]: +1 where left < right ('<'),
    -1 where left > right ('>'), 0 no sign; v int [n-1, n]: +1 where upper < lower ('^'), -1 ('v'), 0."""

    digits: np.ndarray
    h: np.ndarray
    v: np.ndarray

    @property
    def n(self) -> int:
        return int(self.digits.shape[0])

    def display(self) -> np.ndarray:
        """The display grid int [2n-1, 2n-1]."""
        n = self.n
        g = np.full((2 * n - 1, 2 * n - 1), NONE, np.int64)
        g[::2, ::2] = self.digits
        g[::2, 1::2] = np.select([self.h > 0, self.h < 0], [LT, GT], NONE)
        g[1::2, ::2] = np.select([self.v > 0, self.v < 0], [UP, DOWN], NONE)
        return g

    def tokens(self) -> np.ndarray:
        """The token row uint8 [(2n-1)^2]."""
        return to_tokens(self.display())

    @classmethod
    def of_display(cls, grid: Any) -> "Puzzle":
        g = np.asarray(grid).astype(np.int64)
        h = g[::2, 1::2]
        v = g[1::2, ::2]
        return cls(g[::2, ::2].copy(), np.select([h == LT, h == GT], [1, -1], 0),
                   np.select([v == UP, v == DOWN], [1, -1], 0))


# ------------------------------------------------------------------------------------------------ natural form

def parse_futoshiki(text: Any, where: str = "puzzle") -> np.ndarray:
    """Display grid int [2n-1, 2n-1] of a puzzle in text (module docstring; a string, or a list of its lines).
    HrmkitError naming the line, column and character for anything malformed, and for a digit repeated in a
    row or column."""
    if isinstance(text, (list, tuple)) and all(isinstance(x, str) for x in text):
        lines = list(text)
    elif isinstance(text, str):
        lines = text.replace("\r\n", "\n").split("\n")
    else:
        raise HrmkitError(f"{where}: a Futoshiki is text (lines of cells and signs), got {type(text).__name__}")
    lines = [line.rstrip() for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    m = len(lines)
    n = (m + 1) // 2
    if m % 2 == 0 or not MIN_SIZE <= n <= MAX_SIZE:
        raise HrmkitError(f"{where}: a Futoshiki of n x n cells has 2n-1 lines (n = {MIN_SIZE}..{MAX_SIZE}; 9 lines "
                          f"for 5x5), got {m} line(s)")
    g = np.full((m, m), NONE, np.int64)
    for i, line in enumerate(lines):
        if len(line) > m:
            raise HrmkitError(f"{where}: line {i + 1} has {len(line)} characters; a {n}x{n} Futoshiki has {m} per "
                              f"line (cells and the signs between them): {line!r}")
        for j, ch in enumerate(line.ljust(m)):
            at = f"{where}: line {i + 1}, column {j + 1}"
            if i % 2 == 0 and j % 2 == 0:
                if ch in ".0":
                    g[i, j] = 0
                elif ch.isdigit() and 1 <= int(ch) <= n:
                    g[i, j] = int(ch)
                else:
                    raise HrmkitError(f"{at}: {ch!r} is no cell of a {n}x{n} Futoshiki (a digit 1..{n}, or '.' "
                                      "for a blank)")
            elif i % 2 == 0:
                if ch not in " <>":
                    raise HrmkitError(f"{at}: {ch!r} between two cells of a row must be '<', '>' or a space")
                g[i, j] = {" ": NONE, "<": LT, ">": GT}[ch]
            elif j % 2 == 0:
                if ch not in " ^v":
                    raise HrmkitError(f"{at}: {ch!r} between two cells of a column must be '^' (upper < lower), "
                                      "'v' (upper > lower) or a space")
                g[i, j] = {" ": NONE, "^": UP, "v": DOWN}[ch]
            elif ch != " ":
                raise HrmkitError(f"{at}: {ch!r} sits between four cells; only a space can")
    clash = latin_clash(g[::2, ::2])
    if clash:
        raise HrmkitError(f"{where}: {clash}")
    return g


def latin_clash(digits: np.ndarray) -> str | None:
    """The first digit repeated in a row or column of digits int [n, n] (0 ignored) as a sentence, else None."""
    d = np.asarray(digits)
    for kind, grid in (("row", d), ("column", d.T)):
        for k, unit in enumerate(grid):
            seen: dict[int, int] = {}
            for p, x in enumerate(unit.tolist()):
                if x and x in seen:
                    other = "columns" if kind == "row" else "rows"
                    return f"digit {x} repeats in {kind} {k + 1} ({other} {seen[x] + 1} and {p + 1})"
                seen[x] = p
    return None


def futoshiki_text(display: Any) -> str:
    """The text form of a display grid (what `parse_futoshiki` reads), trailing spaces dropped."""
    return "\n".join("".join(cell_char(v) for v in row).rstrip() for row in np.asarray(display))


def cell_char(value: Any) -> str:
    """One display-grid position as a character: '.' blank, a digit, a sign, ' ' none."""
    v = int(value)
    if v in SIGN_CHARS:
        return SIGN_CHARS[v]
    return "." if v == 0 else str(v) if 1 <= v <= 9 else "?"


# ------------------------------------------------------------------------------------------------ solver

class Solver:
    """Backtracking solver of one n x n Futoshiki (digits, h, v as `Puzzle`): most-constrained cell first,
    candidates from row/column masks, the neighbours' values and the bounds the inequality chains imply."""

    def __init__(self, puzzle: Puzzle):
        n = self.n = puzzle.n
        self.full = (1 << (n + 1)) - 2  # bits 1..n
        rel: list[list[tuple[int, int]]] = [[] for _ in range(n * n)]  # (other cell, +1: self < other, -1: >)
        for r in range(n):
            for c in range(n - 1):
                s = int(puzzle.h[r, c])
                if s:
                    a, b = r * n + c, r * n + c + 1
                    rel[a].append((b, s))
                    rel[b].append((a, -s))
        for r in range(n - 1):
            for c in range(n):
                s = int(puzzle.v[r, c])
                if s:
                    a, b = r * n + c, (r + 1) * n + c
                    rel[a].append((b, s))
                    rel[b].append((a, -s))
        self.rel = rel
        # bounds from the longest chains of strict inequalities below / above each cell
        below = [self._chain(k, -1, set()) for k in range(n * n)]
        above = [self._chain(k, +1, set()) for k in range(n * n)]
        self.static = []
        for k in range(n * n):
            lo, hi = 1 + below[k], n - above[k]
            self.static.append(sum(1 << d for d in range(max(lo, 1), min(hi, n) + 1)))
        self.givens = puzzle.digits.reshape(-1).astype(int).tolist()

    def _chain(self, k: int, sign: int, seen: set[int]) -> int:
        if k in seen:  # a cycle: the signs contradict; no bound (the search finds no solution)
            return 0
        seen = seen | {k}
        return max((1 + self._chain(o, sign, seen) for o, s in self.rel[k] if s == sign), default=0)

    def solve(self, limit: int = 2) -> list[list[int]]:
        """Up to `limit` solutions, each the n*n digits row-major."""
        n, full = self.n, self.full
        vals = [0] * (n * n)
        rows, cols = [0] * n, [0] * n
        for k, d in enumerate(self.givens):
            if d:
                bit = 1 << d
                if rows[k // n] & bit or cols[k % n] & bit or not self.static[k] & bit:
                    return []
                vals[k] = d
                rows[k // n] |= bit
                cols[k % n] |= bit
        for k, d in enumerate(vals):  # givens must satisfy the signs between them
            for o, s in self.rel[k]:
                if d and vals[o] and (d < vals[o]) != (s > 0):
                    return []
        found: list[list[int]] = []

        def candidates(k: int) -> int:
            mask = self.static[k] & ~rows[k // n] & ~cols[k % n] & full
            for o, s in self.rel[k]:
                w = vals[o]
                if w:
                    mask &= ((1 << w) - 2) if s > 0 else (full & ~((1 << (w + 1)) - 1))
            return mask

        def search() -> None:
            best, best_mask, best_count = -1, 0, n + 1
            for k in range(n * n):
                if not vals[k]:
                    mask = candidates(k)
                    c = bin(mask).count("1")
                    if c < best_count:
                        best, best_mask, best_count = k, mask, c
                        if c <= 1:
                            break
            if best < 0:
                found.append(list(vals))
                return
            r, c = divmod(best, n)
            mask = best_mask
            while mask and len(found) < limit:
                bit = mask & -mask
                mask ^= bit
                vals[best] = bit.bit_length() - 1
                rows[r] |= bit
                cols[c] |= bit
                search()
                rows[r] &= ~bit
                cols[c] &= ~bit
            vals[best] = 0

        search()
        return found


def count_solutions(puzzle: Puzzle, limit: int = 2) -> int:
    """Solutions of a puzzle, counted up to `limit`."""
    return len(Solver(puzzle).solve(limit))


# ------------------------------------------------------------------------------------------------ generator

def random_latin_square(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random Latin square int [n, n] of digits 1..n (cell-by-cell backtracking, random digit order)."""
    grid = np.zeros((n, n), np.int64)

    def fill(k: int) -> bool:
        if k == n * n:
            return True
        r, c = divmod(k, n)
        used = set(grid[r, :c].tolist()) | set(grid[:r, c].tolist())
        for d in rng.permutation(np.arange(1, n + 1)).tolist():
            if d not in used:
                grid[r, c] = d
                if fill(k + 1):
                    return True
        grid[r, c] = 0
        return False

    fill(0)
    return grid


def generate_puzzle(n: int, rng: np.random.Generator, sign_density: float = 0.3,
                    solution: np.ndarray | None = None, max_blanks: int | None = None) -> tuple[Puzzle, np.ndarray]:
    """(puzzle, solution int [n, n]): a random Latin square (or `solution`), each of the 2n(n-1) adjacent
    pairs signed with probability `sign_density`, then every digit given and the givens removed one by one
    in random order whenever the solution stays unique: a puzzle with exactly one solution, from which no
    further given can be removed (minimal), or, with `max_blanks`, whose removals stop at that many blanks
    (easier puzzles; still exactly one solution)."""
    sol = random_latin_square(n, rng) if solution is None else np.asarray(solution, np.int64)
    h = np.where(rng.random((n, n - 1)) < sign_density, np.where(sol[:, :-1] < sol[:, 1:], 1, -1), 0)
    v = np.where(rng.random((n - 1, n)) < sign_density, np.where(sol[:-1, :] < sol[1:, :], 1, -1), 0)
    digits = sol.copy()
    for k in rng.permutation(n * n).tolist():
        if max_blanks is not None and int((digits == 0).sum()) >= max_blanks:
            break
        r, c = divmod(k, n)
        keep = digits[r, c]
        digits[r, c] = 0
        if count_solutions(Puzzle(digits, h, v), 2) != 1:
            digits[r, c] = keep
    return Puzzle(digits, h, v), sol


def solution_key(solution: np.ndarray) -> bytes:
    """The same bytes for a solution and its 16 versions (the smallest of their digit grids): puzzles with
    different keys share no solution, augmented versions included (for held-out splits)."""
    s = np.asarray(solution, np.uint8)
    n = s.shape[0]
    out = []
    for rev in (False, True):
        g = (n + 1 - s) if rev else s
        out.extend(dihedral_transform(g, t).tobytes() for t in range(8))
    return min(out)


# ------------------------------------------------------------------------------------------------ augmentations

def sign_map(t: int, reverse: bool) -> dict[int, int]:
    """{sign code: its code after dihedral transform t (and the digit reversal when `reverse`)}: the direction
    in which the value grows moves with the grid; the reversal turns it round."""
    idx = np.arange(9).reshape(1, 3, 3)
    moved = dihedral_transform(idx, t)[0]
    out = {}
    for code, (dr, dc) in SIGN_DIRECTION.items():
        pr, pc = (int(x[0]) for x in np.nonzero(moved == (1 + dr) * 3 + (1 + dc)))
        new = (pr - 1, pc - 1)
        if reverse:
            new = (-new[0], -new[1])
        out[code] = DIRECTION_SIGN[new]
    return out


def version_list(versions: int, seed: int) -> list[tuple[int, bool]]:
    """(dihedral id, digit reversal) of each version: the identity first, then the other 15 in an order
    shuffled by `seed` (all 16 for versions=16)."""
    if not 1 <= versions <= NUM_VERSIONS:
        raise HrmkitError(f"--tta {versions}: a Futoshiki has {NUM_VERSIONS} versions (8 dihedral transforms, each "
                          f"with or without reversing the digits); use --tta {NUM_VERSIONS} or fewer")
    rest = (np.random.default_rng(seed).permutation(NUM_VERSIONS - 1) + 1).tolist()
    return [(v % 8, v >= 8) for v in [0] + rest[:versions - 1]]


def relabel(tokens: np.ndarray, n: int, t: int, reverse: bool, inverse: bool = False) -> np.ndarray:
    """Tokens with the signs rewritten for version (t, reverse) (`inverse`: undone) and, with `reverse`, digit
    d -> n+1-d. Other tokens (PAD, blank, none, anything out of the layout) are kept."""
    x = np.asarray(tokens)
    out = x.copy()
    mapping = sign_map(t, reverse)
    if inverse:
        mapping = {b: a for a, b in mapping.items()}
    for a, b in mapping.items():
        out[x == sign_token(n, a)] = sign_token(n, b)
    if reverse:
        digit = (x >= 2) & (x <= n + 1)
        out[digit] = (n + 3 - x[digit].astype(np.int64)).astype(x.dtype)
    return out


def futoshiki_augmentation(name: str, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
    """`versions` of rows of seq_len tokens: forward [B, S] -> [K, B, S], inverse [K, B, S] -> [K, B, S]."""
    n = size_of_seq_len(seq_len, "--tta")
    m = 2 * n - 1
    plan = version_list(versions, seed)

    def forward(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        grids = x.reshape(-1, m, m)
        return np.stack([relabel(dihedral_transform(grids, t), n, t, rev).reshape(x.shape) for t, rev in plan])

    def inverse(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        return np.stack([dihedral_transform(relabel(y[k].reshape(-1, m, m), n, t, rev, inverse=True), DIHEDRAL_INVERSE[t]
                                  ).reshape(y.shape[1:]) for k, (t, rev) in enumerate(plan)])

    return Augmentation(name, versions, forward, inverse)


# ------------------------------------------------------------------------------------------------ rules

def futoshiki_solved(inputs: Any, preds: Any, parts: bool = False):
    """bool [B]: each predicted row (tokens int [B, S]) solves its input row: its cells hold digits forming a
    Latin square, every sign of the input holds, every given digit is kept (the slots of the prediction are
    not judged). With `parts`: (solved, latin, signs_hold, keeps_clues), each bool [B]. ValueError for rows
    that are no Futoshiki grid or differ in shape."""
    x, y = np.asarray(inputs, np.int64), np.asarray(preds, np.int64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"verifiers take token rows [B, S] of one shape, got {x.shape} and {y.shape}")
    try:
        n = size_of_seq_len(x.shape[1])
    except HrmkitError as e:
        raise ValueError(str(e)) from None
    m = 2 * n - 1
    x, y = x.reshape(-1, m, m), y.reshape(-1, m, m)
    d = y[:, ::2, ::2] - 1  # [B, n, n] digits
    in_range = ((d >= 1) & (d <= n)).all(axis=(1, 2))
    want = np.arange(1, n + 1)
    rows_ok = (np.sort(d, axis=2) == want).all(axis=(1, 2))
    cols_ok = (np.sort(d, axis=1) == want[:, None]).all(axis=(1, 2))
    latin = in_range & rows_ok & cols_ok
    hs, vs = x[:, ::2, 1::2], x[:, 1::2, ::2]
    left, right, up, down = d[:, :, :-1], d[:, :, 1:], d[:, :-1, :], d[:, 1:, :]
    ok_h = ((hs != sign_token(n, LT)) | (left < right)) & ((hs != sign_token(n, GT)) | (left > right))
    ok_v = ((vs != sign_token(n, UP)) | (up < down)) & ((vs != sign_token(n, DOWN)) | (up > down))
    signs = ok_h.all(axis=(1, 2)) & ok_v.all(axis=(1, 2))
    xc = x[:, ::2, ::2]
    clue = (xc >= 2) & (xc <= n + 1)
    keeps = ((y[:, ::2, ::2] == xc) | ~clue).all(axis=(1, 2))
    solved = latin & signs & keeps
    return (solved, latin, signs, keeps) if parts else solved


# ------------------------------------------------------------------------------------------------ the task

class FutoshikiTask(Task):
    """n x n Futoshiki, n = 2..9 (module docstring)."""

    name = "futoshiki"
    title = "Futoshiki"
    description = "Futoshiki: a Latin square with inequality signs between cells"
    has_verifier = True
    clues_given = True  # the input's digits and signs reappear in the answer; `scored_mask` leaves them out

    @classmethod
    def from_params(cls, params, where="task"):
        task = super().from_params(params, where)
        size = task.params.get("size")
        if size is not None and not (isinstance(size, int) and MIN_SIZE <= size <= MAX_SIZE):
            raise HrmkitError(f"{where}: params.size: a Futoshiki is {MIN_SIZE}..{MAX_SIZE} cells wide, got {size!r}")
        return task

    # token layout ---------------------------------------------------------------------------------------------
    def token_layout(self, seq_len, extra=None):
        n = size_of_seq_len(seq_len, "export")
        return dict(grid=[2 * n - 1, 2 * n - 1], size=n, blank_token=BLANK_ID,
                    cells="even (row, column): the cell (row/2, column/2); token = digit + 1, 1 = blank",
                    signs={"none": n + 2, "<": n + 3, ">": n + 4, "^": n + 5, "v": n + 6},
                    slots="'<' '>' between horizontal neighbours (left < right / left > right), '^' 'v' between "
                          "vertical neighbours (upper < lower / upper > lower), none elsewhere")

    def token_names(self, vocab_size: int) -> list[str]:
        n = size_of_vocab(vocab_size) or max(vocab_size - 7, 0)
        base = ["PAD", "blank"] + [str(d) for d in range(1, n + 1)] + ["none", "<", ">", "^", "v"]
        return [base[i] if i < len(base) else str(i) for i in range(vocab_size)]

    def input_tokens(self, vocab_size: int):
        n = size_of_vocab(vocab_size)
        if n is None:
            return None
        # random inputs redraw the cells (blank or a digit); PAD and the slots stay, so the layout stays a grid
        return tuple(range(1, n + 2)), (PAD_ID,) + tuple(range(n + 2, n + 7))

    def answer_tokens(self, vocab_size: int):
        n = size_of_vocab(vocab_size)
        return None if n is None else tuple(range(2, n + 7))  # digits, and the copied slots

    def scored_mask(self, inputs, answer):
        return answer & (inputs == BLANK_ID)

    # natural forms --------------------------------------------------------------------------------------------
    inline_input = False  # several lines: `hrm solve` reads it from a file

    def encode(self, puzzle: Any, seq_len: int, where: str = "puzzle") -> np.ndarray:
        n = size_of_seq_len(seq_len, where)
        g = parse_futoshiki(puzzle, where)
        got = (g.shape[0] + 1) // 2
        if got != n:
            raise HrmkitError(f"{where}: a {got}x{got} Futoshiki, but this model was trained on {n}x{n} (seq_len "
                              f"{seq_len})")
        return to_tokens(g)

    def decode(self, tokens: Any) -> str:
        return futoshiki_text(self.grid(tokens))

    def grid(self, tokens: Any) -> np.ndarray:
        return to_display(tokens)

    def dataset_lines(self, tokens, extra=None):
        return self.text_lines(self.grid(tokens))

    def given(self, input_grid: Any) -> np.ndarray:
        g = np.asarray(input_grid)
        out = np.zeros(g.shape, bool)
        out[::2, ::2] = g[::2, ::2] != 0
        out |= np.isin(g, (LT, GT, UP, DOWN))
        return out

    def size_text(self, input_grid: Any) -> str:
        n = (np.shape(input_grid)[0] + 1) // 2  # the display grid holds the sign slots between the cells
        return f"{n}x{n}"

    def puzzle_text(self, input_grid: Any) -> str:
        return futoshiki_text(input_grid)

    # rules ----------------------------------------------------------------------------------------------------
    def verify(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return futoshiki_solved(inputs, preds)

    def check(self, input_tokens: np.ndarray, answer_tokens: np.ndarray) -> Check:
        x, y = np.asarray(input_tokens).reshape(1, -1), np.asarray(answer_tokens).reshape(1, -1)
        solved, latin, signs, keeps = (bool(a[0]) for a in futoshiki_solved(x, y, parts=True))
        puzzle, answer = Puzzle.of_display(to_display(x[0])), Puzzle.of_display(to_display(y[0])).digits
        found = Solver(puzzle).solve(2)
        matches = bool(np.array_equal(np.asarray(found[0]).reshape(answer.shape), answer)) if len(found) == 1 else None
        signs_n = int((puzzle.h != 0).sum() + (puzzle.v != 0).sum())
        clues_n = int((puzzle.digits != 0).sum())
        if solved:
            verdict = f"solved: a Latin square, all {signs_n} signs hold, all {clues_n} given digits kept"
        else:
            why = [w for w, bad in ((latin_clash(answer) or f"{int((answer == 0).sum())} cells blank", not latin),
                                    ("a sign is broken", not signs), ("a given digit was changed", not keeps)) if bad]
            verdict = "not solved: " + "; ".join(why)
        if len(found) != 1:
            verdict += f" (the puzzle has {'no' if not found else 'more than one'} solution)"
        elif matches is False:
            verdict += " (differs from the solver's solution)"
        return Check(solved, verdict, dict(solved=solved, latin_square=latin, signs_hold=signs, keeps_clues=keeps,
                                           puzzle_solutions=len(found), matches_solver=matches))

    # augmentations --------------------------------------------------------------------------------------------
    def augmentation(self, seq_len: int, versions: int, seed: int = 0) -> Augmentation:
        return futoshiki_augmentation(self.name, seq_len, versions, seed)

    # reports --------------------------------------------------------------------------------------------------
    def difficulty(self, inputs, labels, split_dir=None):
        x = np.asarray(inputs, np.int64)
        n = size_of_seq_len(x.shape[1])
        m = 2 * n - 1
        g = x.reshape(-1, m, m)
        cells = g[:, ::2, ::2]
        clues = ((cells >= 2) & (cells <= n + 1)).sum(axis=(1, 2))
        signs = (np.isin(g[:, ::2, 1::2], (sign_token(n, LT), sign_token(n, GT))).sum(axis=(1, 2))
                 + np.isin(g[:, 1::2, ::2], (sign_token(n, UP), sign_token(n, DOWN))).sum(axis=(1, 2)))
        return {"given digits": ("linear", clues), "inequality signs": ("linear", signs)}

    # drawing --------------------------------------------------------------------------------------------------
    def cell_px(self, side: int) -> int:
        return 22

    def cell_style(self, value, marked, given, cell_px):
        v = int(value)
        if v >= NONE:
            text = SIGN_CHARS.get(v, "?").strip() or None
            return CellStyle(MARK_FILL if marked else SIGN_FILL, text, MARK_COLOUR if marked else SIGN_COLOUR, 0.7)
        colour = MARK_COLOUR if marked else "#000" if given is None or given else FILLED_COLOUR
        return CellStyle(MARK_FILL if marked else "#ffffff", str(v) if v else None, colour, 0.7)

    def box(self, height: int, width: int):
        return None

    def cell_char(self, value: Any) -> str:
        return cell_char(value)

    def text_lines(self, grid: Any, marked: Any = None, box: Sequence[int] | None = None) -> list[str]:
        """One character per grid position ('.' blank, digits, signs, ' ' none); with `marked` (bool [h, w])
        each followed by '*' (marked) or ' '."""
        return super().text_lines(grid, marked, box)


hrmkit.tasks.register(FutoshikiTask)
