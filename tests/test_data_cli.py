"""`hrm data ...` command line: malformed input gives exit code 2, a message naming file/row/value, no output."""

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data import maze, sudoku

HEADER = "source,q,a,rating\n"


def _sudoku_rows(k=4):
    rows = []
    for i in range(k):
        p, s = sudoku.generate_puzzle((3, 3), np.random.default_rng([11, i]), min_clues=30)
        rows.append((sudoku.grid_string(p), "".join(map(str, s))))
    return rows


def _maze_row():
    x, y, L = maze.generate_maze(9, np.random.default_rng(0))
    return x.tobytes().decode(), y.tobytes().decode()


def _edit(s, i, ch):
    return s[:i] + ch + s[i + 1:]


def _sudoku_case(name):
    rows = _sudoku_rows()
    q, a = rows[1]
    first_clue = next(i for i, c in enumerate(q) if c != ".")
    first_blank = q.index(".")
    if name == "header":
        return "src,q,a\n" + "\n".join(f"x,{q},{a},0" for q, a in rows), "row 1"
    if name == "columns":
        body = [f"x,{q},{a},0" for q, a in rows]
        body[1] = f"x,{q},{a}"
        return HEADER + "\n".join(body), "row 3"
    if name == "length":
        rows[1] = (q[:-1], a)
        msg = "row 3: column q has length 80"
    elif name == "char":
        rows[1] = (_edit(q, 5, "x"), a)
        msg = "row 3: column q has character 'x'"
    elif name == "solution_digit":
        rows[1] = (q, _edit(a, 7, "0"))
        msg = "row 3: column a has character '0'"
    elif name == "disagree":  # a clue that breaks no rule among the clues but differs from the solution
        geo = sudoku.geometry((3, 3))
        digits = [0 if ch == "." else int(ch) for ch in q]
        c, d = next((c, d) for c in range(81) if digits[c] == 0 for d in range(1, 10)
                    if d != int(a[c]) and all(digits[p] != d for p in geo.peers[c]))
        rows[1] = (_edit(q, c, str(d)), a)
        msg = "disagrees with the solution"
    elif name == "repeat":
        r0 = (first_blank // 9) * 9
        digit = next(c for c in q[r0:r0 + 9] if c != ".") if any(c != "." for c in q[r0:r0 + 9]) else None
        assert digit is not None
        rows[1] = (_edit(q, first_blank, digit), a)
        msg = "contradictory clues"
    elif name == "bad_solution":
        a2 = a[3] + a[1:3] + a[0] + a[4:]  # two cells of row 1 swapped: their columns repeat a digit
        rows[1] = ("." * 81, a2)
        msg = "not a valid grid"
    elif name == "several":
        rows[1] = ("." * 81, a)
        msg = "more than one solution"
    elif name == "rating":
        body = [f"x,{q},{a},0" for q, a in rows]
        body[1] = f"x,{q},{a},hard"
        return HEADER + "\n".join(body), "row 3: column rating"
    return HEADER + "\n".join(f"x,{q},{a},0" for q, a in rows), msg


@pytest.mark.parametrize("case", ["header", "columns", "length", "char", "solution_digit", "disagree", "repeat",
                                  "bad_solution", "several", "rating"])
def test_sudoku_csv_errors(tmp_path, capsys, case):
    text, needle = _sudoku_case(case)
    csv = tmp_path / "bad.csv"
    csv.write_text(text + "\n")
    out = tmp_path / "out"
    assert hrm(["data", "sudoku", "--out", str(out), "--from-csv", str(csv), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(csv) in err and needle in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("case,needle", [
    ("no_start", "exactly one start"),
    ("no_path", "no path"),
    ("char", "character 'x'"),
    ("not_shortest", "not a shortest"),
    ("length", "has length"),
])
def test_maze_csv_errors(tmp_path, capsys, case, needle):
    q, a = _maze_row()
    if case == "no_start":
        q, a = q.replace("S", " "), a.replace("S", " ")
    elif case == "no_path":  # S and G separated by a wall
        q = a = "#####" + "#S#G#" + "# # #" + "# # #" + "#####"
    elif case == "char":
        q = _edit(q, 0, "x")
    elif case == "not_shortest":
        i = a.index("o")
        a = _edit(a, i, " ")
    elif case == "length":
        q = q + " "
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + f"x,{q},{a},1\n")
    out = tmp_path / "out"
    assert hrm(["data", "maze", "--out", str(out), "--from-csv", str(csv), "--test-csv", str(csv)]) == 2
    err = capsys.readouterr().err
    assert str(csv) in err and "row 2" in err and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("args,needle", [
    (["sudoku", "--size", "5"], "--size"),
    (["sudoku", "--size", "4", "--train", "-3"], "--train"),
    (["sudoku", "--size", "4", "--test", "0"], "--test"),
    (["sudoku", "--size", "4", "--num-aug", "-1"], "--num-aug"),
    (["sudoku", "--size", "4", "--min-blanks", "99"], "--min-blanks"),
    (["sudoku", "--preset", "nope"], "--preset"),
    (["sudoku", "--size", "4", "--min-clues", "16", "--train", "300"], "could only generate"),
    (["maze", "--braid", "2"], "--braid"),
    (["maze", "--train", "-1"], "--train"),
    (["maze", "--size", "9", "--min-path-length", "500", "--train", "2", "--test", "2"], "could only generate"),
    (["sudoku", "--from-csv", "/nonexistent/x.csv"], "/nonexistent/x.csv"),
])
def test_bad_values(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert hrm(["data", *args, "--out", str(out), "--workers", "1"]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_out_not_empty_needs_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["data", "sudoku", "--out", str(out), "--size", "4", "--train", "8", "--test", "4", "--workers", "1"]
    assert hrm(args) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert hrm(args + ["--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "train" / "dataset.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert hrm(["data", "maze", "--out", str(empty), "--size", "7", "--train", "3", "--test", "2"]) == 0


def test_inspect(tmp_path, capsys):
    out = tmp_path / "s"
    assert hrm(["data", "sudoku", "--out", str(out), "--size", "6", "--train", "6", "--test", "3", "--num-aug", "1",
                "--workers", "1"]) == 0
    capsys.readouterr()
    assert hrm(["data", "inspect", str(out), "--show", "1"]) == 0
    text = capsys.readouterr().out
    assert "task sudoku" in text and "6 groups, 12 puzzles" in text and "identifiers" in text
    assert "-+-" in text  # box separators
    assert hrm(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert hrm(["data", "inspect", str(out), "--png", str(tmp_path / "x.png")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "x.png") as img:  # two rows (train, test) of input | label tiles
        assert img.format == "PNG" and img.width > 2 * 6 * 20 and img.height > 2 * 6 * 20


def test_inspect_renders_arc_canvas(tmp_path):
    from hrmkit.data.format import SplitWriter, write_identifiers
    from hrmkit.data.inspect import describe

    canvas = np.zeros((30, 30), np.uint8)
    canvas[:2, :3] = [[2, 3, 4], [5, 6, 7]]
    canvas[2, :3] = 1
    canvas[:2, 3] = 1
    w = SplitWriter(tmp_path / "train", seq_len=900)
    w.add_group([(canvas.reshape(1, -1), canvas.reshape(1, -1), 1)])
    w.finalize(vocab_size=12, num_puzzle_identifiers=2, task="arc")
    write_identifiers(tmp_path, ["<blank>", "task0"])
    text = describe(tmp_path, show=1)
    assert "012|" in text and "345|" in text and "2 identifiers" in text
