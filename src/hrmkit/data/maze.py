"""Mazes with shortest-path labels: generator, BFS, dataset builder, CSV import (reference maze-30x30 layout).

Grid characters `CHARSET = "# SGo"`: wall, open, start, goal, path; tokens = index + 1 (0 = PAD), so
vocab 6 and seq_len size*size (docs/design.md §1). The input holds walls, open cells, one S and one G; the label is
the input with the cells of one shortest S->G path (4-neighbour moves, S and G excluded) turned into 'o'.

Generation (`generate_maze`): rooms sit at odd (row, column) coordinates; a randomised depth-first search
(recursive backtracker, long corridors) knocks down walls between neighbouring rooms, giving a perfect maze
(exactly one path between two rooms); the border is wall (for an even size the last row and column are
wall too). `braid` in [0, 1]: each dead end is, with that probability, opened into a neighbouring room,
creating loops. S is a random room, G a random room at BFS distance >= `min_path_length` moves from S
(a new maze is drawn when there is none). With loops several shortest paths may exist: the label takes the
canonical one (from S, always step to the first neighbour in the order up, left, right, down that is one
move closer to G).

Path length = number of moves from S to G (the label has length - 1 'o' cells).

CSV layout (sapientinc/maze-30x30-hard-1k): header `source,q,a,rating`, q and a square strings (900 chars for
30x30) over "# SGo". Validation (HrmkitError naming file, row and value): columns, length (a square, equal in
q and a), characters, exactly one S and one G in q, no 'o' in q, a equal to q except open cells marked 'o',
a path S->G exists, and the 'o' cells of a form a shortest path.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrmkit.data.augment import maze_dihedral_versions
from hrmkit.data.format import SplitWriter, write_identifiers
from hrmkit.data.refcsv import iter_rows
from hrmkit.data.workers import num_workers, worker_pool
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory

CHARSET = "# SGo"
WALL, OPEN, START, GOAL, PATH = (ord(c) for c in CHARSET)
_MOVES = ((-1, 0), (0, -1), (0, 1), (1, 0))  # up, left, right, down: the canonical tie-break order


# ---------------------------------------------------------------------------------------------------------
# Grids and BFS. A grid is a [H, W] uint8 array of ASCII codes of CHARSET characters.
# ---------------------------------------------------------------------------------------------------------
def to_tokens(grid: np.ndarray) -> np.ndarray:
    """ASCII character grid -> tokens (CHARSET index + 1), same shape, uint8."""
    table = np.zeros(256, np.uint8)
    table[[ord(c) for c in CHARSET]] = np.arange(1, len(CHARSET) + 1, dtype=np.uint8)
    return table[grid]


def from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Tokens -> ASCII character grid (PAD and unknown tokens become '?')."""
    table = np.full(256, ord("?"), np.uint8)
    table[1:len(CHARSET) + 1] = [ord(c) for c in CHARSET]
    return table[np.asarray(tokens, np.uint8)]


def render(grid: np.ndarray) -> str:
    """ASCII character grid -> multi-line text."""
    return "\n".join(bytes(row).decode("ascii", "replace") for row in np.asarray(grid, np.uint8))


def bfs(grid: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Moves from `source` to every cell through non-wall cells; -1 where unreachable. int32 [H, W]."""
    H, W = grid.shape
    dist = np.full((H, W), -1, np.int32)
    passable = grid != WALL
    dist[source] = 0
    q = deque([source])
    while q:
        r, c = q.popleft()
        d = dist[r, c] + 1
        for dr, dc in _MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and passable[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = d
                q.append((rr, cc))
    return dist


def _find_one(grid: np.ndarray, code: int) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in rc) for rc in np.argwhere(grid == code)]


def solve(grid: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Label for an input grid: (grid with the canonical shortest path marked 'o', path length in moves).

    None when G cannot be reached. ValueError unless there is exactly one S and one G.
    """
    starts, goals = _find_one(grid, START), _find_one(grid, GOAL)
    if len(starts) != 1 or len(goals) != 1:
        raise ValueError(f"a maze needs exactly one S and one G, got {len(starts)} and {len(goals)}")
    s, g = starts[0], goals[0]
    to_goal = bfs(grid, g)
    length = int(to_goal[s])
    if length < 0:
        return None
    label = grid.copy()
    H, W = grid.shape
    r, c = s
    for _ in range(length - 1):
        for dr, dc in _MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and to_goal[rr, cc] == to_goal[r, c] - 1:
                r, c = rr, cc
                break
        label[r, c] = PATH
    return label, length


def is_shortest_path_label(inp: np.ndarray, label: np.ndarray) -> bool:
    """True when `label` = `inp` with some open cells marked 'o' that form a shortest S->G path."""
    if inp.shape != label.shape:
        return False
    changed = inp != label
    if not np.all(inp[changed] == OPEN) or not np.all(label[changed] == PATH) or np.any(inp == PATH):
        return False
    starts, goals = _find_one(inp, START), _find_one(inp, GOAL)
    if len(starts) != 1 or len(goals) != 1:
        return False
    length = int(bfs(inp, goals[0])[starts[0]])
    if length < 0 or int(changed.sum()) != length - 1:
        return False
    # The marked cells plus S and G must connect S to G in exactly `length` moves.
    only_path = np.where((label == PATH) | (label == START) | (label == GOAL), OPEN, WALL).astype(np.uint8)
    return int(bfs(only_path, starts[0])[goals[0]]) == length


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------
def carve(size: int, rng: np.random.Generator, braid: float = 0.0) -> np.ndarray:
    """A maze of walls and open cells (no S/G), [size, size] ASCII; see module docstring."""
    k = (size - 1) // 2  # rooms per side
    grid = np.full((size, size), WALL, np.uint8)
    seen = np.zeros((k, k), bool)
    start = (int(rng.integers(k)), int(rng.integers(k)))
    seen[start] = True
    grid[2 * start[0] + 1, 2 * start[1] + 1] = OPEN
    stack = [start]
    while stack:
        r, c = stack[-1]
        nbrs = [(r + dr, c + dc) for dr, dc in _MOVES if 0 <= r + dr < k and 0 <= c + dc < k and not seen[r + dr, c + dc]]
        if not nbrs:
            stack.pop()
            continue
        nr, nc = nbrs[int(rng.integers(len(nbrs)))]
        seen[nr, nc] = True
        grid[r + nr + 1, c + nc + 1] = OPEN  # the wall between the two rooms
        grid[2 * nr + 1, 2 * nc + 1] = OPEN
        stack.append((nr, nc))
    if braid > 0:
        for r in range(k):
            for c in range(k):
                R, C = 2 * r + 1, 2 * c + 1
                exits = sum(grid[R + dr, C + dc] == OPEN for dr, dc in _MOVES)
                if exits == 1 and rng.random() < braid:
                    walls = [(dr, dc) for dr, dc in _MOVES
                             if 0 <= r + dr < k and 0 <= c + dc < k and grid[R + dr, C + dc] == WALL]
                    if walls:
                        dr, dc = walls[int(rng.integers(len(walls)))]
                        grid[R + dr, C + dc] = OPEN
    return grid


def generate_maze(
    size: int, rng: np.random.Generator, min_path_length: int = 0, braid: float = 0.0, tries: int = 50
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(input, label, path length) or None when `tries` mazes had no goal far enough from a random start."""
    for _ in range(tries):
        grid = carve(size, rng, braid)
        rooms = np.argwhere(grid == OPEN)
        s = tuple(int(v) for v in rooms[int(rng.integers(len(rooms)))])
        dist = bfs(grid, s)
        far = np.argwhere(dist >= max(1, min_path_length))
        if len(far) == 0:
            continue
        g = tuple(int(v) for v in far[int(rng.integers(len(far)))])
        grid[s], grid[g] = START, GOAL
        label, length = solve(grid)  # type: ignore[misc]
        return grid, label, length
    return None


def _generate_one(args: tuple[int, int, int, int, float, int]):
    size, seed, tag, index, braid, min_len = args
    return generate_maze(size, np.random.default_rng([seed, tag, index]), min_len, braid)


@dataclass
class MazeSet:
    """Mazes of one split: inputs and labels [N, H, W] ASCII uint8, path lengths [N] (moves)."""

    inputs: np.ndarray
    labels: np.ndarray
    path_lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, idx: np.ndarray) -> "MazeSet":
        return MazeSet(self.inputs[idx], self.labels[idx], self.path_lengths[idx])


def generate_split(
    size: int, count: int, seed: int, tag: int, min_len: int, braid: float, workers: int, exclude: set[bytes]
) -> MazeSet:
    """`count` distinct mazes of stream `tag` whose inputs are not in `exclude` (updated in place)."""
    got: list[tuple[np.ndarray, np.ndarray, int]] = []
    start = misses = 0
    while len(got) < count:
        chunk = max(16, int((count - len(got)) * 1.05) + 8)
        jobs = [(size, seed, tag, i, braid, min_len) for i in range(start, start + chunk)]
        start += chunk
        if workers > 1 and chunk >= 64:
            with worker_pool(workers) as pool:
                items = pool.map(_generate_one, jobs, chunksize=16)
        else:
            items = [_generate_one(j) for j in jobs]
        for item in items:
            key = None if item is None else item[0].tobytes()
            if key is None or key in exclude:
                misses += 1
                continue
            exclude.add(key)
            got.append(item)
            if len(got) == count:
                break
        if len(got) < count and misses > 20 * count + 100:
            raise HrmkitError(
                f"could only generate {len(got)} of {count} distinct {size}x{size} mazes with shortest path >= "
                f"{min_len} moves; lower --min-path-length or the counts"
            )
    return MazeSet(
        np.stack([g[0] for g in got]), np.stack([g[1] for g in got]), np.asarray([g[2] for g in got], np.int64)
    )


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------
def write_dataset(out: Path, train: MazeSet, test: MazeSet, aug: bool, force: bool, extra: dict) -> None:
    """Write DATASET atomically; with `aug` every train group holds the 8 dihedral versions (tid order)."""
    H, W = train.inputs.shape[1:]
    if H != W:
        raise HrmkitError(f"mazes must be square, got {H}x{W}")
    S = H * W
    with atomic_directory(out, overwrite=force) as tmp:
        for split, data, do_aug in (("train", train, aug), ("test", test, False)):
            writer = SplitWriter(tmp / split, seq_len=S)
            try:
                for i in range(len(data)):
                    x, y = to_tokens(data.inputs[i]), to_tokens(data.labels[i])
                    versions = maze_dihedral_versions(x, y) if do_aug else [(x, y)]
                    writer.add_group([(a.reshape(1, S), b.reshape(1, S), 0) for a, b in versions])
                L = data.path_lengths
                writer.finalize(
                    vocab_size=len(CHARSET) + 1, num_puzzle_identifiers=1, pad_id=0, ignore_label_id=0,
                    blank_identifier_id=0, task="maze", task_params={"height": int(H), "width": int(W)},
                    extra=dict(extra, size=H, charset=CHARSET, aug=bool(do_aug),
                               path_length_mean=float(L.mean()), path_length_min=int(L.min()),
                               path_length_max=int(L.max())),
                )
            except BaseException:
                writer.abort()
                raise
        write_identifiers(tmp, ["<blank>"])


def build_generated(
    out: Path, size: int, n_train: int, n_test: int, seed: int, min_path_length: int = 0, braid: float = 0.0,
    aug: bool = False, workers: int | None = None, force: bool = False,
) -> dict:
    """Generate and write a maze dataset; train and test share no maze (input grids compared exactly)."""
    nw = num_workers(workers)
    exclude: set[bytes] = set()
    train = generate_split(size, n_train, seed, 0, min_path_length, braid, nw, exclude)
    if aug:  # no test maze may equal any train version
        exclude.update(v.tobytes() for i in range(len(train)) for v, _ in maze_dihedral_versions(train.inputs[i], train.labels[i]))
    test = generate_split(size, n_test, seed, 1, min_path_length, braid, nw, exclude)
    extra = {"source": "generated", "seed": seed, "min_path_length": min_path_length, "braid": braid}
    write_dataset(out, train, test, aug, force, extra)
    return {"train": train, "test": test}


# ---------------------------------------------------------------------------------------------------------
# CSV import
# ---------------------------------------------------------------------------------------------------------
def read_csv(path: Path) -> MazeSet:
    """Read and validate a maze CSV (module docstring); HrmkitError naming file, row and value."""
    path = Path(path)
    bad_chars = str.maketrans("", "", CHARSET)
    inputs, labels, lengths = [], [], []
    side = None
    for rowno, (_, q, a, _rating) in iter_rows(path):
        where = f"{path}: row {rowno}"
        if side is None:
            side = math.isqrt(len(q))
            if side * side != len(q) or side < 2:
                raise HrmkitError(f"{where}: column q has length {len(q)}, which is not a square grid")
        for col, val in (("q", q), ("a", a)):
            if len(val) != side * side:
                raise HrmkitError(f"{where}: column {col} has length {len(val)}, expected {side * side}")
            bad = val.translate(bad_chars)
            if bad:
                raise HrmkitError(f"{where}: column {col} has character {bad[0]!r} (allowed: {CHARSET!r})")
        x = np.frombuffer(q.encode(), np.uint8).reshape(side, side)
        y = np.frombuffer(a.encode(), np.uint8).reshape(side, side)
        ns, ng = int((x == START).sum()), int((x == GOAL).sum())
        if ns != 1 or ng != 1:
            raise HrmkitError(f"{where}: column q needs exactly one start 'S' and one goal 'G', got {ns} and {ng}")
        if (x == PATH).any():
            raise HrmkitError(f"{where}: column q contains path cells 'o'")
        dist = bfs(x, _find_one(x, GOAL)[0])[_find_one(x, START)[0]]
        if dist < 0:
            raise HrmkitError(f"{where}: no path from S to G in column q")
        diff = np.argwhere(x != y)
        for r, c in diff.tolist():
            if x[r, c] != OPEN or y[r, c] != PATH:
                raise HrmkitError(
                    f"{where}: column a differs from q at row {r + 1} column {c + 1} "
                    f"({chr(x[r, c])!r} -> {chr(y[r, c])!r}); only open cells may become 'o'"
                )
        if not is_shortest_path_label(x, y):
            raise HrmkitError(
                f"{where}: the 'o' cells of column a ({len(diff)} cells) are not a shortest S->G path "
                f"(shortest has {int(dist) - 1} cells)"
            )
        inputs.append(x)
        labels.append(y)
        lengths.append(int(dist))
    if not inputs:
        raise HrmkitError(f"{path}: no maze rows")
    return MazeSet(np.stack(inputs), np.stack(labels), np.asarray(lengths, np.int64))


def build_from_csv(
    out: Path, train_csv: Path, test_csv: Path | None, test_fraction: float, n_train: int | None,
    n_test: int | None, seed: int, aug: bool = False, force: bool = False,
) -> dict:
    """Import maze CSV(s): a split each, or `train_csv` split by `test_fraction`; test mazes equal to a train
    maze (or, with `aug`, to a train version) are dropped; `n_train`/`n_test` subsample."""
    rng = np.random.default_rng([seed, 4])
    train = read_csv(train_csv)
    if test_csv is not None:
        test = read_csv(test_csv)
        if test.inputs.shape[1:] != train.inputs.shape[1:]:
            raise HrmkitError(f"{test_csv}: mazes are {test.inputs.shape[1]}x{test.inputs.shape[2]} but {train_csv} "
                              f"has {train.inputs.shape[1]}x{train.inputs.shape[2]}")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise HrmkitError(f"--test-fraction must be in (0, 1), got {test_fraction}")
        perm = rng.permutation(len(train))
        k = int(round(len(train) * test_fraction))
        if k == 0 or k == len(train):
            raise HrmkitError(f"{train_csv}: {len(train)} rows cannot be split with --test-fraction {test_fraction}")
        test, train = train.subset(np.sort(perm[:k])), train.subset(np.sort(perm[k:]))
    if n_train is not None and n_train < len(train):
        train = train.subset(np.sort(rng.choice(len(train), n_train, replace=False)))
    keys = {train.inputs[i].tobytes() for i in range(len(train))}
    if aug:
        keys.update(v.tobytes() for i in range(len(train)) for v, _ in maze_dihedral_versions(train.inputs[i], train.labels[i]))
    keep = np.asarray([test.inputs[i].tobytes() not in keys for i in range(len(test))], bool)
    dropped = int((~keep).sum())
    test = test.subset(np.flatnonzero(keep))
    if n_test is not None and n_test < len(test):
        test = test.subset(np.sort(rng.choice(len(test), n_test, replace=False)))
    if len(test) == 0:
        raise HrmkitError(f"{test_csv or train_csv}: no test maze left after removing those that occur in train")
    extra = {"source": f"csv:{Path(train_csv).name}" + (f"+{Path(test_csv).name}" if test_csv else ""),
             "seed": seed, "test_dropped_as_in_train": dropped}
    write_dataset(out, train, test, aug, force, extra)
    return {"train": train, "test": test, "test_dropped": dropped}
