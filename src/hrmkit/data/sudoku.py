"""Sudoku puzzles: bitmask solver, unique-solution generator, difficulty rating, dataset builder, CSV import.

Grids are flat sequences of n*n digits, row-major, 0 = blank, 1..n = digits; n = box_rows * box_cols with
boxes 2x2 (n=4), 2x3 (n=6: 2 rows by 3 columns) and 3x3 (n=9). Dataset tokens (reference layout,
docs/design.md §1): 0 PAD, 1 blank, 2..n+1 digits 1..n, i.e. token = digit + 1; vocab n+2, seq_len n*n.

Solver: candidates as one int bitmask per cell (bit d-1 = digit d), constraint propagation with naked
singles and hidden singles, then depth-first search on a most-constrained cell (fewest candidates, lowest
index first). `count_solutions(grid, box, limit=2)` counts up to `limit`.

Difficulty rating (`rate`): the number of dead ends (wrong guesses undone) met by the deterministic solver
(digits tried in increasing order) before it finds the solution; 0 = solved by singles alone or by lucky
first guesses. It is comparable between puzzles of one size, not to the tdoku ratings of Sudoku-Extreme.

Generation (`generate_puzzle`): a random full grid (random digits in the independent diagonal boxes, then a
randomised search; not exactly uniform over all grids), then
clues removed one at a time in random order, each removal kept only if the solution stays unique (checked
as "no solution with that cell different from the solution"), until the puzzle is minimal or has
`max_clues` clues, never going below `min_clues`; a puzzle left above `max_clues` is rejected (None).

Dataset building (`build_generated`, `build_from_csv`): train and test share no puzzle string (test puzzles
are also checked against the augmented train versions); the count of test solutions that also occur in
train is reported, and `disjoint_solutions` (`--disjoint-solutions`) makes it 0 by skipping those test
candidates. `--num-aug K` puts the original plus K random Sudoku symmetries (augment.sudoku_augment_many)
in each train group; test puzzles are not augmented. All randomness derives from the seed; puzzle i of a
split is generated from `np.random.default_rng([seed, split_tag, i])`, so results do not depend on the
number of worker processes.

CSV layout (Sudoku-Extreme): header `source,q,a,rating`; q and a are n*n characters ('.' or '0' = blank in
q; digits 1..n), rating an integer in -1..2**31-1 (empty or -1: unknown). Each row is validated (length, characters, digit range, clue agrees with
the solution, solution is a valid grid, puzzle has exactly one solution); errors name file, row and value.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from hrmkit.data.augment import sudoku_augment_many
from hrmkit.data.format import SplitWriter, write_identifiers
from hrmkit.data.refcsv import iter_rows
from hrmkit.data.workers import num_workers, worker_pool
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory
from hrmkit.limits import MAX_RATING

BOXES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


# ---------------------------------------------------------------------------------------------------------
# Geometry and solver
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Cells, units (rows, columns, boxes) and peers of an n x n Sudoku with br x bc boxes."""

    br: int
    bc: int
    n: int
    units: tuple[tuple[int, ...], ...]
    peers: tuple[tuple[int, ...], ...]
    full: int
    rcb: tuple[tuple[int, int, int], ...]  # (row, column, box) index of each cell


@lru_cache(maxsize=None)
def geometry(box: tuple[int, int]) -> Geometry:
    br, bc = int(box[0]), int(box[1])
    n = br * bc
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [
        tuple((r0 + r) * n + c0 + c for r in range(br) for c in range(bc))
        for r0 in range(0, n, br) for c0 in range(0, n, bc)
    ]
    units = tuple(rows + cols + boxes)
    peers = tuple(
        tuple(sorted({p for u in units if cell in u for p in u} - {cell})) for cell in range(n * n)
    )
    rcb = tuple((c // n, c % n, (c // n) // br * (n // bc) + (c % n) // bc) for c in range(n * n))
    return Geometry(br, bc, n, units, peers, (1 << n) - 1, rcb)


def box_for_size(size: int) -> tuple[int, int]:
    if size not in BOXES:
        raise HrmkitError(f"--size must be one of 4, 6, 9, got {size}")
    return BOXES[size]


def _propagate(geo: Geometry, cands: list[int], stack: list[int]) -> bool:
    """Naked + hidden singles to a fixpoint. `stack`: cells just fixed to one candidate. False = contradiction."""
    peers, units, full = geo.peers, geo.units, geo.full
    while True:
        while stack:
            c = stack.pop()
            b = cands[c]
            for p in peers[c]:
                m = cands[p]
                if m & b:
                    m &= ~b
                    if not m:
                        return False
                    cands[p] = m
                    if not m & (m - 1):
                        stack.append(p)
        for unit in units:
            once = twice = solved = 0
            for c in unit:
                m = cands[c]
                twice |= once & m
                once |= m
                if not m & (m - 1):
                    solved |= m
            if once != full:
                return False
            hidden = once & ~twice & ~solved
            while hidden:
                h = hidden & -hidden
                hidden ^= h
                for c in unit:
                    if cands[c] & h:
                        cands[c] = h
                        stack.append(c)
                        break
        if not stack:
            return True


def _initial(geo: Geometry, grid: Sequence[int]) -> list[int] | None:
    """Propagated candidates of a grid of digits, or None if the clues contradict each other."""
    cands = [geo.full] * (geo.n * geo.n)
    stack = []
    for c, d in enumerate(grid):
        if d:
            cands[c] = 1 << (d - 1)
            stack.append(c)
    return cands if _propagate(geo, cands, stack) else None


class _Search:
    """Depth-first search over propagated candidate lists; counts solutions up to `limit` and dead ends."""

    def __init__(self, geo: Geometry, limit: int, rng: np.random.Generator | None = None):
        self.geo, self.limit, self.rng = geo, limit, rng
        self.solutions: list[list[int]] = []
        self.dead_ends = 0

    def run(self, cands: list[int]) -> None:
        best, best_k = -1, 99
        for c, m in enumerate(cands):
            if m & (m - 1):
                k = m.bit_count()
                if k < best_k:
                    best, best_k = c, k
                    if k == 2:
                        break
        if best < 0:
            self.solutions.append([m.bit_length() for m in cands])
            return
        m = cands[best]
        bits = []
        while m:
            b = m & -m
            bits.append(b)
            m ^= b
        if self.rng is not None:
            bits = [bits[i] for i in self.rng.permutation(len(bits))]
        for b in bits:
            new = cands.copy()
            new[best] = b
            if _propagate(self.geo, new, [best]):
                found = len(self.solutions)
                self.run(new)
                if len(self.solutions) >= self.limit:
                    return
                if len(self.solutions) == found:
                    self.dead_ends += 1
            else:
                self.dead_ends += 1


def solve(grid: Sequence[int], box: tuple[int, int], limit: int = 2) -> tuple[list[list[int]], int]:
    """Solutions (at most `limit`, as digit lists) and the dead-end count of the deterministic search."""
    geo = geometry(tuple(box))
    cands = _initial(geo, list(grid))
    if cands is None:
        return [], 0
    s = _Search(geo, limit)
    s.run(cands)
    return s.solutions, s.dead_ends


def count_solutions(grid: Sequence[int], box: tuple[int, int], limit: int = 2) -> int:
    """Number of solutions of `grid`, counted up to `limit`."""
    return len(solve(grid, box, limit)[0])


def rate(grid: Sequence[int], box: tuple[int, int]) -> int:
    """Difficulty: dead ends of the deterministic solver before its first solution (module docstring)."""
    return solve(grid, box, limit=1)[1]


def is_valid_solution(grid: Sequence[int], box: tuple[int, int]) -> bool:
    """True when `grid` is complete and every row, column and box holds each digit 1..n once."""
    geo = geometry(tuple(box))
    want = set(range(1, geo.n + 1))
    return all({grid[c] for c in u} == want for u in geo.units)


def random_solution(box: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """A random full grid: random digits in the boxes of the diagonal (independent of each other), then a
    randomised search (random digit order) completes the grid."""
    geo = geometry(tuple(box))
    n = geo.n
    grid = [0] * (n * n)
    for k in range(min(n // geo.br, n // geo.bc)):
        box_cells = geo.units[2 * n + k * (n // geo.bc) + k]
        for c, d in zip(box_cells, rng.permutation(n).tolist()):
            grid[c] = d + 1
    cands = _initial(geo, grid)
    s = _Search(geo, 1, rng)
    if cands is not None:
        s.run(cands)
    if not s.solutions:  # small grids: the diagonal boxes can clash; start from the empty grid instead
        s.run([geo.full] * (n * n))
    return s.solutions[0]


def _unique_without(geo: Geometry, puzzle: list[int], cell: int, digit: int, used: list[list[int]]) -> bool:
    """Given `puzzle` with a unique solution holding `digit` at `cell`: is it still unique without that clue?

    `used` = [row masks, column masks, box masks] of the digits placed in `puzzle`. The check searches for a
    solution with `cell` != `digit`; there is none exactly when the clue is redundant.
    """
    rows, cols, boxes = used
    bit = 1 << (digit - 1)
    r0, c0, b0 = geo.rcb[cell]
    rows[r0] ^= bit
    cols[c0] ^= bit
    boxes[b0] ^= bit
    try:
        full = geo.full
        if not full & ~(rows[r0] | cols[c0] | boxes[b0]) & ~bit:
            return True  # the cell's row, column and box still force the digit (naked single)
        cands = []
        stack = []
        for c, (r, k, b) in enumerate(geo.rcb):
            d = puzzle[c]
            if d and c != cell:
                cands.append(1 << (d - 1))
                continue
            m = full & ~(rows[r] | cols[k] | boxes[b])
            if c == cell:
                m &= ~bit
            if not m:
                return True
            if not m & (m - 1):
                stack.append(c)
            cands.append(m)
        if not _propagate(geo, cands, stack):
            return True
        s = _Search(geo, 1)
        s.run(cands)
        return not s.solutions
    finally:
        rows[r0] ^= bit
        cols[c0] ^= bit
        boxes[b0] ^= bit


def generate_puzzle(
    box: tuple[int, int], rng: np.random.Generator, min_clues: int = 0, max_clues: int | None = None
) -> tuple[list[int], list[int]] | None:
    """(puzzle, solution) with exactly one solution, or None if it ended above `max_clues`. See module doc."""
    geo = geometry(tuple(box))
    solution = random_solution(box, rng)
    puzzle = solution.copy()
    used = [[geo.full] * geo.n for _ in range(3)]
    clues = len(puzzle)
    target = max(min_clues, max_clues if max_clues is not None else 0)
    for cell in rng.permutation(len(puzzle)).tolist():
        if clues <= target:
            break
        if _unique_without(geo, puzzle, cell, solution[cell], used):
            bit = 1 << (solution[cell] - 1)
            r, k, b = geo.rcb[cell]
            used[0][r] ^= bit
            used[1][k] ^= bit
            used[2][b] ^= bit
            puzzle[cell] = 0
            clues -= 1
    if max_clues is not None and clues > max_clues:
        return None
    return puzzle, solution


# ---------------------------------------------------------------------------------------------------------
# Parallel generation
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenSpec:
    box: tuple[int, int]
    seed: int
    min_clues: int = 0
    max_clues: int | None = None
    min_rating: int = 0
    max_rating: int | None = None
    max_tries: int = 200


def _generate_one(args: tuple[GenSpec, int, int]) -> tuple[list[int], list[int], int, int] | None:
    """Puzzle number `index` of stream `tag`: first candidate that passes the filters, from its own RNG.

    Returns (puzzle, solution, rating, candidates tried) or None when `max_tries` candidates all failed.
    """
    spec, tag, index = args
    rng = np.random.default_rng([spec.seed, tag, index])
    for tries in range(1, spec.max_tries + 1):
        got = generate_puzzle(spec.box, rng, spec.min_clues, spec.max_clues)
        if got is None:
            continue
        puzzle, solution = got
        r = rate(puzzle, spec.box)
        if r >= spec.min_rating and (spec.max_rating is None or r <= spec.max_rating):
            return puzzle, solution, r, tries
    return None


def candidate_stream(spec: GenSpec, tag: int, workers: int, block: int = 256) -> Iterator:
    """`_generate_one` results for indices 0, 1, 2, ... of stream `tag`, in index order, forever.

    With workers > 1 a process pool computes them `block` at a time; closing the generator stops the pool.
    """
    index = 0
    if workers <= 1:
        while True:
            yield _generate_one((spec, tag, index))
            index += 1
    with worker_pool(workers) as pool:
        while True:
            yield from pool.imap(_generate_one, [(spec, tag, i) for i in range(index, index + block)], chunksize=4)
            index += block


# ---------------------------------------------------------------------------------------------------------
# Dataset building
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SudokuSet:
    """Puzzles of one split before writing: digits [N, n*n] uint8 (0 = blank) and ratings [N] (-1 unknown)."""

    puzzles: np.ndarray
    solutions: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return int(self.puzzles.shape[0])

    def subset(self, idx: np.ndarray) -> "SudokuSet":
        return SudokuSet(self.puzzles[idx], self.solutions[idx], self.ratings[idx])


def grid_string(grid: Iterable[int]) -> str:
    """Row-major string of a digit grid, '.' for blanks (the CSV layout)."""
    return "".join("." if d == 0 else str(int(d)) for d in grid)


def _log(msg: str) -> None:
    print(msg, flush=True)


_HASH_WEIGHTS = np.random.default_rng(20250707).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """64-bit hashes of uint8 rows [N, L] (L <= 512): the rows as little-endian 64-bit words, multiplied by
    fixed random odd constants and summed (mod 2^64). For set membership of many grids in little memory."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    N, L = rows.shape
    padded = np.zeros((N, -(-L // 8) * 8), np.uint8)
    padded[:, :L] = rows
    words = padded.view("<u8")
    with np.errstate(over="ignore"):
        return (words * _HASH_WEIGHTS[: words.shape[1]]).sum(axis=1, dtype=np.uint64)


def train_versions(
    puzzle: np.ndarray, solution: np.ndarray, box: tuple[int, int], num_aug: int, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """The versions of train group `index`: the original then `num_aug` random symmetries, [1+K, n*n] each.

    Deterministic in (seed, index), so the builder can regenerate a group instead of keeping it in memory.
    """
    p = np.asarray(puzzle, np.uint8).reshape(1, -1)
    s = np.asarray(solution, np.uint8).reshape(1, -1)
    if num_aug <= 0:
        return p, s
    n = box[0] * box[1]
    ap, as_ = sudoku_augment_many(p.reshape(n, n), s.reshape(n, n), box, num_aug, np.random.default_rng([seed, 3, index]))
    return np.concatenate([p, ap.reshape(num_aug, -1)]), np.concatenate([s, as_.reshape(num_aug, -1)])


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def generate_split(
    spec: GenSpec, tag: int, count: int, workers: int, label: str, exclude_hashes: np.ndarray | None = None,
    exclude_solution_hashes: np.ndarray | None = None,
) -> SudokuSet:
    """`count` distinct puzzles from stream `tag`, skipping any whose hash is in `exclude_hashes` (sorted) and
    any whose solution's hash is in `exclude_solution_hashes` (sorted).

    Logs progress every 10 s. HrmkitError when the filters or the puzzle space make `count` unreachable.
    """
    exclude = np.zeros(0, np.uint64) if exclude_hashes is None else exclude_hashes
    exclude_sol = np.zeros(0, np.uint64) if exclude_solution_hashes is None else exclude_solution_hashes
    seen: set[bytes] = set()
    got_p: list[list[int]] = []
    got_s: list[list[int]] = []
    got_r: list[int] = []
    misses = tried = 0
    t0 = last = time.time()
    stream = candidate_stream(spec, tag, workers, block=max(16, min(256, count)))
    try:
        for item in stream:
            if item is None:
                misses += 1
                tried += spec.max_tries
            else:
                p, s, r, k = item
                tried += k
                key = bytes(p)
                if (key in seen or _in_sorted(exclude, row_hashes(np.asarray([p], np.uint8)))[0]
                        or _in_sorted(exclude_sol, row_hashes(np.asarray([s], np.uint8)))[0]):
                    misses += 1
                else:
                    seen.add(key)
                    got_p.append(p)
                    got_s.append(s)
                    got_r.append(r)
            if len(got_p) == count:
                break
            if misses > 20 * count + 200:
                raise HrmkitError(
                    f"could only generate {len(got_p)} distinct {label} puzzles"
                    f"{' with a solution not in train' if exclude_sol.size else ''} of the {count} requested (box "
                    f"{spec.box[0]}x{spec.box[1]}, clues {spec.min_clues}..{spec.max_clues}, rating >= "
                    f"{spec.min_rating}); ask for fewer puzzles or relax the filters"
                )
            if time.time() - last > 10:
                last = time.time()
                _log(f"  {label}: {len(got_p)}/{count} puzzles after {last - t0:.0f}s ({tried} candidates generated)")
    finally:
        stream.close()
    _log(f"  {label}: {count} puzzles in {time.time() - t0:.1f}s ({tried} candidates generated, "
         f"{misses} duplicates or failures)")
    return SudokuSet(
        np.asarray(got_p, np.uint8).reshape(count, -1),
        np.asarray(got_s, np.uint8).reshape(count, -1),
        np.asarray(got_r, np.int64),
    )


def rating_histogram(ratings: np.ndarray) -> dict[str, int]:
    """Histogram with buckets 0, 1, 2-3, 4-7, 8-15, ... (powers of two); "unknown" for -1."""
    counts: Counter[str] = Counter()
    for r in np.asarray(ratings).tolist():
        if r < 0:
            counts["unknown"] += 1
        elif r < 2:
            counts[str(r)] += 1
        else:
            lo = 1 << (int(r).bit_length() - 1)
            counts[f"{lo}-{2 * lo - 1}"] += 1
    order = sorted(counts, key=lambda k: -1 if k == "unknown" else int(k.split("-")[0]))
    return {k: counts[k] for k in order}


def format_histogram(title: str, ratings: np.ndarray) -> str:
    hist = rating_histogram(ratings)
    known = ratings[ratings >= 0]
    mean = f"{float(known.mean()):.2f}" if known.size else "n/a"
    total = max(1, sum(hist.values()))
    lines = [f"{title}: n={int(ratings.shape[0])}, mean rating {mean}"]
    lines += [f"  {k:>9}: {v:7d} {'#' * max(1, round(40 * v / total))}" for k, v in hist.items()]
    return "\n".join(lines)


RATINGS_FILE = "all__ratings.npy"  # per example; the reference loader reads only the five arrays it knows


def load_ratings(split_dir: Path) -> np.ndarray | None:
    """Per-example difficulty ratings (int32 [N_examples], -1 unknown) written beside a split's arrays by
    `write_split`; None for datasets built before they were stored, or by other tools."""
    path = Path(split_dir) / RATINGS_FILE
    return np.load(path) if path.is_file() else None


def write_split(
    split_dir: Path, box: tuple[int, int], data: SudokuSet, num_aug: int, seed: int, extra: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Write one split: group i = `train_versions(i)` (original + `num_aug` symmetries), tokens = digits + 1,
    all puzzle identifiers 0 (reference layout), and each example's rating in `RATINGS_FILE`. Returns the sorted unique hashes of every written puzzle
    and of every written solution (`row_hashes`)."""
    n = box[0] * box[1]
    writer = SplitWriter(split_dir, seq_len=n * n)
    ph, sh = [], []
    try:
        for i in range(len(data)):
            vp, vs = train_versions(data.puzzles[i], data.solutions[i], box, num_aug, seed, i)
            writer.add_group_uniform(vp + 1, vs + 1, np.zeros(vp.shape[0], np.int32))
            ph.append(row_hashes(vp))
            sh.append(row_hashes(vs))
        clues = (data.puzzles > 0).sum(axis=1)
        writer.finalize(
            vocab_size=n + 2, num_puzzle_identifiers=1, pad_id=0, ignore_label_id=0, blank_identifier_id=0,
            task="sudoku", task_params={"size": n, "box": [box[0], box[1]]},
            extra=dict(extra, size=n, box=[box[0], box[1]], num_aug=num_aug, seed=seed,
                       mean_clues=float(clues.mean()), min_clues=int(clues.min()), max_clues=int(clues.max()),
                       rating_histogram=rating_histogram(data.ratings)),
        )
        np.save(split_dir / RATINGS_FILE, np.repeat(data.ratings, 1 + num_aug).astype(np.int32))
    except BaseException:
        writer.abort()
        raise
    return np.unique(np.concatenate(ph)), np.unique(np.concatenate(sh))


def build_dataset(
    out: Path, box: tuple[int, int], train: SudokuSet, make_test, num_aug: int, seed: int, force: bool,
    extra: dict,
) -> tuple[SudokuSet, int]:
    """Write DATASET atomically: the train split first, then `make_test(train_puzzle_hashes,
    train_solution_hashes)` -> test set (which must avoid the puzzle hashes), then the test split. Returns (test
    set, test solutions found in train)."""
    with atomic_directory(out, overwrite=force) as tmp:
        t0 = time.time()
        train_ph, train_sh = write_split(tmp / "train", box, train, num_aug, seed, extra)
        _log(f"  wrote train split ({len(train)} groups x {1 + num_aug} versions) in {time.time() - t0:.1f}s")
        test = make_test(train_ph, train_sh)
        shared = int(_in_sorted(train_sh, row_hashes(test.solutions)).sum())
        write_split(tmp / "test", box, test, 0, seed, dict(extra, test_solutions_in_train=shared))
        write_identifiers(tmp, ["<blank>"])
    return test, shared


def build_generated(
    out: Path, size: int, n_train: int, n_test: int, seed: int, num_aug: int = 0, min_clues: int = 0,
    max_clues: int | None = None, min_rating: int = 0, max_rating: int | None = None, workers: int | None = None,
    force: bool = False, preset: str | None = None, disjoint_solutions: bool = False,
) -> dict:
    """Generate and write a Sudoku dataset; returns a summary dict (printed by the CLI).

    `disjoint_solutions`: test candidates whose solution grid occurs in train (augmented versions included)
    are skipped, so no test solution can be recalled from training; HrmkitError when the grid space is too
    small for that (4x4 has 288 grids)."""
    box = box_for_size(size)
    nw = num_workers(workers)
    spec = GenSpec(box, seed, min_clues, max_clues, min_rating, max_rating)
    _log(f"generating {size}x{size} Sudoku (box {box[0]}x{box[1]}): {n_train} train + {n_test} test, {nw} workers")
    train = generate_split(spec, 0, n_train, nw, "train")
    extra = {"source": "generated", "preset": preset, "min_clues_option": min_clues, "max_clues_option": max_clues,
             "min_rating_option": min_rating, "max_rating_option": max_rating, "disjoint_solutions": disjoint_solutions}

    def make_test(puzzle_hashes: np.ndarray, solution_hashes: np.ndarray) -> SudokuSet:
        return generate_split(spec, 1, n_test, nw, "test", exclude_hashes=puzzle_hashes,
                              exclude_solution_hashes=solution_hashes if disjoint_solutions else None)

    test, shared = build_dataset(out, box, train, make_test, num_aug, seed, force, extra)
    return {"train": train, "test": test, "test_solutions_in_train": shared, "box": box}


# ---------------------------------------------------------------------------------------------------------
# CSV import (Sudoku-Extreme layout)
# ---------------------------------------------------------------------------------------------------------


def _unit_counts(grids: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Per grid, unit and digit: how often the digit occurs in the unit. grids [B, n*n] -> [B, 3n, n]."""
    geo = geometry(tuple(box))
    n = geo.n
    onehot = grids[:, :, None] == np.arange(1, n + 1, dtype=np.uint8)[None, None, :]
    members = np.asarray(geo.units, np.int64)  # [3n, n]
    return onehot[:, members, :].sum(axis=2)


def _first_unit_clash(grid: np.ndarray, box: tuple[int, int]) -> str:
    geo = geometry(tuple(box))
    n = geo.n
    names = [f"row {i + 1}" for i in range(n)] + [f"column {i + 1}" for i in range(n)] + [f"box {i + 1}" for i in range(n)]
    for u, unit in enumerate(geo.units):
        digits = [int(grid[c]) for c in unit if grid[c]]
        dup = [d for d, k in Counter(digits).items() if k > 1]
        if dup:
            return f"digit {dup[0]} repeats in {names[u]}"
        if len(digits) == n and set(digits) != set(range(1, n + 1)):
            return f"{names[u]} does not hold every digit"
    return "invalid grid"


def _check_unique(args: tuple[bytes, tuple[int, int]]) -> int:
    grid, box = args
    return count_solutions(list(grid), box, 2)


def read_csv(
    path: Path, size: int | None = None, verify_unique: bool = True, workers: int | None = None,
    min_rating: int | None = None,
) -> tuple[SudokuSet, int]:
    """Read and validate a Sudoku CSV (module docstring). Returns (puzzles, grid size n).

    Every problem raises HrmkitError naming the file, the row (1 = header line) and the value.
    `min_rating` keeps rows whose rating column is >= it (reference `min_difficulty`).
    """
    path = Path(path)
    qs, as_, ratings, rownos = bytearray(), bytearray(), [], []
    n = size
    blank_q = q_table = a_table = None
    for rowno, (_, q, a, rating) in iter_rows(path):
        if n is None:
            n = {16: 4, 36: 6, 81: 9}.get(len(q))
            if n is None:
                raise HrmkitError(f"{path}: row {rowno}: column q has length {len(q)}, expected 16, 36 or 81")
        if q_table is None:
            digits = "".join(str(d) for d in range(1, n + 1))
            q_table = str.maketrans("", "", ".0" + digits)
            a_table = str.maketrans("", "", digits)
            blank_q = str.maketrans({".": "0"})
        for col, val in (("q", q), ("a", a)):
            if len(val) != n * n:
                raise HrmkitError(f"{path}: row {rowno}: column {col} has length {len(val)}, expected {n * n} ({val!r})")
        bad = q.translate(q_table)
        if bad:
            raise HrmkitError(f"{path}: row {rowno}: column q has character {bad[0]!r} (allowed: '.', '0', 1..{n})")
        bad = a.translate(a_table)
        if bad:
            raise HrmkitError(f"{path}: row {rowno}: column a has character {bad[0]!r} (allowed digits 1..{n})")
        try:
            r = int(rating) if rating.strip() else -1
        except ValueError:
            raise HrmkitError(f"{path}: row {rowno}: column rating is not an integer: {rating!r}") from None
        if not -1 <= r <= MAX_RATING:  # stored as int32 (RATINGS_FILE)
            raise HrmkitError(f"{path}: row {rowno}: column rating {rating.strip()[:40]!r} is outside "
                              f"-1..{MAX_RATING} (-1 or empty: unknown)")
        if min_rating is not None and r < min_rating:
            continue
        qs += q.translate(blank_q).encode()
        as_ += a.encode()
        ratings.append(r)
        rownos.append(rowno)
    if n is None or not ratings:
        raise HrmkitError(f"{path}: no puzzle rows" + (f" with rating >= {min_rating}" if min_rating is not None else ""))
    if n not in BOXES:
        raise HrmkitError(f"--size must be one of 4, 6, 9, got {n}")
    box = BOXES[n]
    P = np.frombuffer(bytes(qs), np.uint8).reshape(-1, n * n) - ord("0")
    A = np.frombuffer(bytes(as_), np.uint8).reshape(-1, n * n) - ord("0")
    for lo in range(0, P.shape[0], 20000):
        p, a = P[lo:lo + 20000], A[lo:lo + 20000]
        clue_bad = (_unit_counts(p, box) > 1).any(axis=(1, 2))
        sol_bad = (_unit_counts(a, box) != 1).any(axis=(1, 2))
        agree_bad = ((p != 0) & (p != a)).any(axis=1)
        for i in np.flatnonzero(clue_bad | sol_bad | agree_bad)[:1].tolist():
            where = f"{path}: row {rownos[lo + i]}"
            if clue_bad[i]:
                raise HrmkitError(f"{where}: contradictory clues in q ({_first_unit_clash(p[i], box)}): {grid_string(p[i])}")
            if sol_bad[i]:
                raise HrmkitError(f"{where}: solution a is not a valid grid ({_first_unit_clash(a[i], box)}): {grid_string(a[i])}")
            c = int(np.flatnonzero((p[i] != 0) & (p[i] != a[i]))[0])
            raise HrmkitError(
                f"{where}: clue {int(p[i][c])} at row {c // n + 1} column {c % n + 1} disagrees with the solution "
                f"digit {int(a[i][c])}"
            )
    if verify_unique:
        jobs = [(bytes(p), box) for p in P]
        nw = num_workers(workers)
        if nw > 1 and len(jobs) >= 256:
            with worker_pool(nw) as pool:
                counts = pool.map(_check_unique, jobs, chunksize=256)
        else:
            counts = [_check_unique(j) for j in jobs]
        for i, k in enumerate(counts):
            if k != 1:
                what = "no solution" if k == 0 else "more than one solution"
                raise HrmkitError(f"{path}: row {rownos[i]}: puzzle q has {what}: {grid_string(P[i])}")
    return SudokuSet(P.copy(), A.copy(), np.asarray(ratings, np.int64)), n


def build_from_csv(
    out: Path, train_csv: Path, test_csv: Path | None, test_fraction: float, size: int | None,
    n_train: int | None, n_test: int | None, seed: int, num_aug: int = 0, min_rating: int | None = None,
    verify_unique: bool = True, workers: int | None = None, force: bool = False,
) -> dict:
    """Import Sudoku CSV(s): a split each (train_csv, test_csv) or train_csv split by `test_fraction`.

    Then: test puzzles that also occur in train are dropped, `n_train` / `n_test` random rows are kept
    (reference `subsample_size`), train groups get `num_aug` augmented versions.
    """
    rng = np.random.default_rng([seed, 4])
    train, n = read_csv(train_csv, size, verify_unique, workers, min_rating)
    if test_csv is not None:
        test, n2 = read_csv(test_csv, size, verify_unique, workers, min_rating)
        if n2 != n:
            raise HrmkitError(f"{test_csv}: grids are {n2}x{n2} but {train_csv} has {n}x{n}")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise HrmkitError(f"--test-fraction must be in (0, 1), got {test_fraction}")
        perm = rng.permutation(len(train))
        k = int(round(len(train) * test_fraction))
        if k == 0 or k == len(train):
            raise HrmkitError(f"{train_csv}: {len(train)} rows cannot be split with --test-fraction {test_fraction}")
        test, train = train.subset(np.sort(perm[:k])), train.subset(np.sort(perm[k:]))
    box = BOXES[n]
    if n_train is not None and n_train < len(train):
        train = train.subset(np.sort(rng.choice(len(train), n_train, replace=False)))
    dropped = 0

    def make_test(train_hashes: np.ndarray, _solution_hashes: np.ndarray) -> SudokuSet:
        nonlocal dropped
        clash = _in_sorted(train_hashes, row_hashes(test.puzzles))
        dropped = int(clash.sum())
        kept = test.subset(np.flatnonzero(~clash))
        if n_test is not None and n_test < len(kept):
            kept = kept.subset(np.sort(rng.choice(len(kept), n_test, replace=False)))
        if len(kept) == 0:
            raise HrmkitError(f"{test_csv or train_csv}: no test puzzle left after removing those that occur in train")
        return kept

    extra = {"source": f"csv:{Path(train_csv).name}" + (f"+{Path(test_csv).name}" if test_csv else ""),
             "min_rating_option": min_rating}
    test, shared = build_dataset(out, box, train, make_test, num_aug, seed, force, extra)
    return {"train": train, "test": test, "test_solutions_in_train": shared, "test_dropped": dropped, "box": box}
