"""Maze generator, shortest-path labels (checked by BFS), augmentation and CSV import."""

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data import maze
from hrmkit.data.format import load_split


def _bfs_len(grid):
    s = tuple(np.argwhere(grid == maze.START)[0])
    g = tuple(np.argwhere(grid == maze.GOAL)[0])
    return int(maze.bfs(grid, s)[g])


def _check_label(x, y):
    """Independent check: y marks length-1 cells that form a walk S->G of exactly the BFS distance."""
    length = _bfs_len(x)
    assert length > 0
    marked = np.argwhere(y == maze.PATH)
    assert len(marked) == length - 1
    assert ((x != y) == (y == maze.PATH)).all() and (x[y == maze.PATH] == maze.OPEN).all()
    # walk from S through marked cells
    pos = tuple(np.argwhere(x == maze.START)[0])
    left = {tuple(p) for p in marked}
    goal = tuple(np.argwhere(x == maze.GOAL)[0])
    for _ in range(length - 1):
        nxt = [(pos[0] + dr, pos[1] + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
               if (pos[0] + dr, pos[1] + dc) in left]
        assert len(nxt) >= 1
        pos = nxt[0]
        left.remove(pos)
    assert abs(pos[0] - goal[0]) + abs(pos[1] - goal[1]) == 1


@pytest.mark.parametrize("braid", [0.0, 0.6])
def test_generated_labels_are_shortest_paths(braid):
    for i in range(25):
        got = maze.generate_maze(15, np.random.default_rng([int(braid * 10), i]), min_path_length=10, braid=braid)
        assert got is not None
        x, y, length = got
        assert length >= 10 and _bfs_len(x) == length
        assert (x == maze.START).sum() == 1 and (x == maze.GOAL).sum() == 1
        _check_label(x, y)
        assert maze.is_shortest_path_label(x, y)


def test_braid_makes_loops():
    perfect = maze.carve(21, np.random.default_rng(0), 0.0)
    braided = maze.carve(21, np.random.default_rng(0), 1.0)
    # a perfect maze on k*k rooms is a tree: open cells = rooms + (rooms - 1) passages
    k = 10
    assert (perfect == maze.OPEN).sum() == k * k + k * k - 1
    assert (braided == maze.OPEN).sum() > k * k + k * k - 1


def test_dataset_with_aug(tmp_path):
    out = tmp_path / "m"
    assert hrm(["data", "maze", "--out", str(out), "--size", "12", "--train", "10", "--test", "6",
                "--aug", "--min-path-length", "8", "--workers", "1"]) == 0
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train.metadata.vocab_size == 6 and train.metadata.seq_len == 144 and train.metadata.task == "maze"
    a, b = train.sets["all"], test.sets["all"]
    assert (a.num_groups, a.num_puzzles, b.num_groups, b.num_puzzles) == (10, 80, 6, 6)
    for arrs in (a, b):
        for x, y in zip(np.asarray(arrs.inputs), np.asarray(arrs.labels)):
            X, Y = maze.from_tokens(x.reshape(12, 12)), maze.from_tokens(y.reshape(12, 12))
            _check_label(X, Y)
            assert _bfs_len(X) >= 8
    assert not {bytes(r) for r in np.asarray(a.inputs)} & {bytes(r) for r in np.asarray(b.inputs)}
    # the 8 versions of a group are distinct dihedral images
    first = np.asarray(a.inputs[:8])
    assert len({r.tobytes() for r in first}) == 8


def test_csv_roundtrip(tmp_path):
    rows = []
    for i in range(10):
        x, y, L = maze.generate_maze(10, np.random.default_rng(i))
        rows.append(f"gen,{x.tobytes().decode()},{y.tobytes().decode()},{L}")
    csv = tmp_path / "m.csv"
    csv.write_text("source,q,a,rating\n" + "\n".join(rows) + "\n")
    out = tmp_path / "ds"
    assert hrm(["data", "maze", "--out", str(out), "--from-csv", str(csv), "--test-fraction", "0.3"]) == 0
    assert load_split(out, "test").sets["all"].num_groups == 3
    assert load_split(out, "train").metadata.seq_len == 100
