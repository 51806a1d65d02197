"""Using a trained model: `hrmkit.load` / `Model.predict` (no labels, per-segment predictions, equal to what
`hrm eval` scores), the natural-form codecs, and `hrm solve` (answers, checks, --show-segments, --gif, ARC voting as
the evaluation does, every malformed input refused with exit code 2)."""

import json

import numpy as np
import pytest
import torch

import hrmkit
from hrmkit.cli import main as hrm
from hrmkit.data import arc, maze, sudoku
from hrmkit.data.format import load_identifiers, load_split
from hrmkit.tasks import maze as maze_task, sudoku as sudoku_task
from hrmkit.errors import HrmkitError
from hrmkit.eval.evaluate import evaluate_split
from hrmkit.loading import load_model
from hrmkit.models import build_model
from hrmkit.presets import resolve_config

from conftest import TINY_ARCH as TINY


@pytest.fixture(scope="module")
def run(sudoku4_run):
    return sudoku4_run


@pytest.fixture(scope="module")
def model(run):
    return hrmkit.load(run)


def _untrained_checkpoint(path, data_dir, **shape):
    """A randomly initialised TINY model saved as an hrmkit checkpoint (enough to exercise input handling)."""
    cfg = resolve_config(preset="demo", overrides=TINY + [f"data_path={data_dir}"])
    torch.manual_seed(0)
    head = build_model(cfg.arch, **shape)
    torch.save({"config": json.dumps(cfg.model_dump()), "model": head.state_dict(), "model_shape": shape, "step": 0},
               path)
    return path


def _solve(capsys, *args):
    capsys.readouterr()
    rc = hrm(["solve", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------------------------- the API

def test_lazy_public_api():
    assert {"load", "Model", "Prediction"} <= set(dir(hrmkit))
    with pytest.raises(AttributeError):
        hrmkit.no_such_name  # noqa: B018


def test_predict_needs_no_labels_and_matches_hrm_eval(model, run, sudoku4):
    split = load_split(sudoku4, "test")
    inputs = np.asarray(split.sets["all"].inputs)
    assert model.kind == "sudoku" and model.seq_len == 16 and model.halt_max_steps == 3
    out = model.predict(inputs, keep_segments=True, batch_size=64)  # the eval batch: 64 rows in one batch
    n = len(inputs)
    assert out.tokens.shape == (n, 16) and out.segment_tokens.shape == (n, 3, 16) and out.segments == 3
    assert out.q_halt.shape == (n, 3) and out.q_continue.shape == (n, 3)
    assert torch.equal(out.segment_tokens[:, -1], out.tokens)
    assert ((out.halt_step >= 1) & (out.halt_step <= 3)).all()
    # `hrm eval`'s predictions on the same rows (it feeds the labels; predict feeds none)
    ev = evaluate_split(load_model(run).head, split, batch_size=64, diagnose=False).predictions
    assert np.array_equal(out.tokens.numpy(), ev.preds) and np.array_equal(out.halt_step.numpy(), ev.halt_step)
    assert np.allclose(out.q_halt[:, -1].numpy(), ev.q_halt)
    # the segments differ from each other (the view shows something) and a 1-row call agrees with the batch
    assert (out.segment_tokens[:, 0] != out.segment_tokens[:, -1]).any()
    one = model.predict(torch.from_numpy(inputs[5].copy()))
    assert one.tokens.shape == (1, 16) and one.segment_tokens is None


def test_predict_steps_runs_fewer_or_more_segments(model, sudoku4):
    x = np.asarray(load_split(sudoku4, "test").sets["all"].inputs[:8])
    full = model.predict(x, keep_segments=True)
    short = model.predict(x, segments=2, keep_segments=True)
    long = model.predict(x, segments=5, keep_segments=True)
    assert short.segments == 2 and long.segments == 5 and model.halt_max_steps == 3  # restored
    assert torch.equal(short.segment_tokens, full.segment_tokens[:, :2])
    assert torch.equal(long.segment_tokens[:, :3], full.segment_tokens)


@pytest.mark.parametrize("call, needle", [
    (lambda m: m.predict(np.ones((2, 15), int)), "seq_len 16"),
    (lambda m: m.predict(np.full((2, 16), 6)), "token 6 outside the vocabulary 0..5"),
    (lambda m: m.predict(np.ones((2, 16), int), puzzle_identifiers=[0, 1]), "puzzle_identifiers: 1 outside 0..0"),
    (lambda m: m.predict(np.ones((2, 16), int), puzzle_identifiers=[0]), "expected 2 values"),
    (lambda m: m.predict(np.ones((2, 16)) * 0.5), "integer tokens"),
    (lambda m: m.predict(np.ones((2, 16), int), segments=0), "segments"),
    (lambda m: m.encode("." * 80), "81 (9x9) cells, got 80"),
])
def test_predict_and_encode_refuse_bad_input(model, call, needle):
    with pytest.raises(HrmkitError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        call(model)


def test_encode_decode_round_trip(model):
    tokens = model.encode("1...|3...\n.1..|2...")
    assert tokens.tolist() == [2, 1, 1, 1, 4, 1, 1, 1, 1, 2, 1, 1, 3, 1, 1, 1]
    assert model.decode(tokens) == "1...3....1..2..."
    solved = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]) + 1
    assert model.decode(solved) == "1234341221434321"


# --------------------------------------------------------------------------------------------- codecs

def test_sudoku_check_and_clash_messages():
    puzzle = sudoku_task.parse_sudoku("1...3....1..2...")
    good = sudoku_task.parse_sudoku("1234341241232341")
    assert sudoku_task.sudoku_clash(good) is None and puzzle.shape == (4, 4)
    c = sudoku_task.check_sudoku(puzzle, good)
    assert c.valid and c.keeps_clues and c.solved and c.solutions == 2 and c.matches_solver is None
    bad = good.copy()
    bad[0, 0] = 2
    c = sudoku_task.check_sudoku(puzzle, bad)
    assert not c.valid and not c.keeps_clues
    assert sudoku_task.sudoku_clash(bad) == "digit 2 repeats in row 1 (columns 1 and 2)"
    unique_p, unique_s = sudoku.generate_puzzle((2, 2), np.random.default_rng(1))
    c = sudoku_task.check_sudoku(np.array(unique_p).reshape(4, 4), np.array(unique_s).reshape(4, 4))
    assert c.solutions == 1 and c.matches_solver and c.solved


def test_maze_parse_and_check():
    text = "#####\n#S  #\n# # #\n#  G#\n#####\n"
    grid = maze_task.parse_maze(text)
    assert grid.shape == (5, 5) and maze.render(grid) + "\n" == text
    answer = grid.copy()
    answer[[1, 1, 2], [2, 3, 3]] = ord("o")  # S o o / # . o / . G: connected, one of the two shortest paths
    c = maze_task.check_maze(grid, answer)
    assert c.connected and c.shortest and c.only_path_added and c.path_cells == 3 and c.shortest_cells == 3
    broken = answer.copy()
    broken[2, 3] = ord(" ")
    c = maze_task.check_maze(grid, broken)
    assert not c.connected and not c.shortest


# --------------------------------------------------------------------------------------------- hrm solve

def test_solve_generated_puzzles_reports_truthfully(model, run, sudoku4, capsys):
    split = load_split(sudoku4, "test")
    rows = np.asarray(split.sets["all"].inputs[:6])
    pred = model.predict(rows)
    for row, answer_tokens in zip(rows, pred.tokens):
        puzzle = sudoku_task.sudoku_string(row.reshape(4, 4) - 1)
        rc, out, err = _solve(capsys, "--checkpoint", run, puzzle, "--json")
        assert rc == 0, err
        r = json.loads(out)
        answer = model.decode(answer_tokens)
        assert r["answer"] == answer and r["segments"] == 3 and 1 <= r["halt_step"] <= 3
        digits = [int(ch) if ch != "." else 0 for ch in answer]
        clues = row - 1
        keeps = all(c == 0 or c == d for c, d in zip(clues, digits))
        assert r["solved"] == (sudoku.is_valid_solution(digits, (2, 2)) and keeps)
        assert r["puzzle_solutions"] == 1  # generated puzzles have exactly one solution
    rc, out, _ = _solve(capsys, "--checkpoint", run, puzzle)
    assert rc == 0 and "4x4 sudoku" in out and "ran 3 segments" in out and "Answer:" in out


def test_solve_steps_and_gif(run, tmp_path, capsys):
    from PIL import Image, ImageSequence

    gif = tmp_path / "think.gif"
    rc, out, err = _solve(capsys, "--checkpoint", run, "1...3....1..2...", "--show-segments", "--gif", gif)
    assert rc == 0, err
    assert "segment 1/3:" in out and "segment 3/3:" in out and "[" in out  # changed cells marked as [d]
    with Image.open(gif) as img:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(img)]
    assert len(frames) == 4 and len({f.size for f in frames}) == 1  # the input, then one frame per segment
    assert any(np.asarray(a).tolist() != np.asarray(b).tolist() for a, b in zip(frames, frames[1:]))


MALFORMED_SUDOKU = [
    ("1...3....1..2..", "got 15"),                                    # wrong length
    ("11..3....1..2...", "digit 1 repeats in row 1 (columns 1 and 2)"),  # a digit repeated in a row
    ("1...1....1..2...", "digit 1 repeats in column 1 (rows 1 and 2)"),
    ("1...3....1..2..x", "character 'x' at row 4, column 4"),         # outside the alphabet
    ("5...3....1..2...", "character '5' at row 1, column 1 is not a digit 1..4"),
    ("." * 81, "a 9x9 Sudoku, but this model was trained on 4x4"),    # a size it was not trained on
    ("." * 36, "a 6x6 Sudoku, but this model was trained on 4x4"),
]


@pytest.mark.parametrize("text, needle", MALFORMED_SUDOKU)
def test_solve_refuses_malformed_sudoku(run, tmp_path, capsys, text, needle):
    gif = tmp_path / "never.gif"
    rc, out, err = _solve(capsys, "--checkpoint", run, text, "--gif", gif)
    assert rc == 2 and err.startswith("hrm: error: ") and needle in err, err
    assert "Traceback" not in err and not gif.exists() and out == ""


@pytest.fixture(scope="module")
def maze_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("maze")
    assert hrm(["data", "maze", "--out", str(root / "data"), "--size", "7", "--train", "4", "--test", "2",
                "--workers", "1"]) == 0
    return _untrained_checkpoint(root / "maze.pt", root / "data", seq_len=49, vocab_size=6, num_puzzle_identifiers=1)


MAZE = "#######\n#S    #\n##### #\n#     #\n# #####\n#    G#\n#######\n"


@pytest.mark.parametrize("text, needle", [
    (MAZE.replace("#S    #", "#S   #"), "line 2 has 6 characters, line 1 has 7"),      # ragged
    (MAZE.replace("#S    #", "#S  x #"), "line 2, column 5: character 'x'"),          # outside the alphabet
    (MAZE.replace("#S    #", "#S  o #"), "path cells belong to the answer"),
    (MAZE.replace("S", " "), "exactly one start 'S' and one goal 'G', got 0 and 1"),
    ("\n".join(["#S" + "#" * 29] + ["#" * 31] * 29 + ["#G" + "#" * 29]), "a 31x31 maze, but this model was "
     "trained on 7x7"),  # wider than 30
    ("\n".join(row[:5] for row in MAZE.split("\n")[:5]).replace("#S   ", "#S  G"), "trained on 7x7"),
])
def test_solve_refuses_malformed_maze(maze_checkpoint, tmp_path, capsys, text, needle):
    path = tmp_path / "maze.txt"
    path.write_text(text)
    rc, out, err = _solve(capsys, "--checkpoint", maze_checkpoint, path)
    assert rc == 2 and err.startswith("hrm: error: ") and needle in err and "Traceback" not in err, err


def test_solve_maze_answers_with_path_check(maze_checkpoint, tmp_path, capsys):
    path = tmp_path / "maze.txt"
    path.write_text(MAZE)
    rc, out, err = _solve(capsys, "--checkpoint", maze_checkpoint, path, "--json")
    assert rc == 0, err
    r = json.loads(out)
    answer = np.frombuffer(r["answer"].replace("\n", "").encode(), np.uint8).reshape(7, 7)
    c = maze_task.check_maze(maze_task.parse_maze(MAZE), answer)
    assert r["connected"] == c.connected and r["shortest"] == c.shortest and r["segments"] == 3
    rc, _, err = _solve(capsys, "--checkpoint", maze_checkpoint, "not-a-file")
    assert rc == 2 and "give a maze text file" in err


TASK = {"train": [{"input": [[1, 0], [0, 0]], "output": [[1, 1], [1, 1]]},
                  {"input": [[2, 0], [0, 0]], "output": [[2, 2], [2, 2]]}],
        "test": [{"input": [[3, 0], [0, 4]], "output": [[3, 3], [3, 3]]}]}


@pytest.fixture(scope="module")
def arc_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("arcsolve")
    (root / "tasks" / "evaluation").mkdir(parents=True)
    (root / "tasks" / "evaluation" / "aa01.json").write_text(json.dumps(TASK))
    assert hrm(["data", "arc", "--out", str(root / "data"), "--tasks-dir", str(root / "tasks"), "--num-aug", "5",
                "--workers", "1"]) == 0
    n_ids = len(load_identifiers(root / "data"))
    ckpt = _untrained_checkpoint(root / "arc.pt", root / "data", seq_len=900, vocab_size=12, num_puzzle_identifiers=n_ids)
    return root, ckpt


def test_solve_arc_votes_as_the_evaluation_does(arc_setup, tmp_path, capsys):
    root, ckpt = arc_setup
    data = root / "data"
    task_file = tmp_path / "aa01.json"
    task_file.write_text(json.dumps(TASK))
    rc, out, err = _solve(capsys, "--checkpoint", ckpt, task_file, "--json")
    assert rc == 0, err
    r = json.loads(out)
    names = load_identifiers(data)
    assert r["versions"] == len(names) - 1 == 6  # the identity and 5 augmented versions
    # The rows solve runs are the test split's rows, and the evaluation ranks the same answers with the same votes.
    test = load_split(data, "test")
    model = hrmkit.load(ckpt)
    from hrmkit.deploy.solve import task_versions

    rows = np.stack([arc.encode_grid(arc.augment_grid(np.array(TASK["test"][0]["input"]), t, p))
                     for _, t, p in task_versions(model, "aa01")])
    assert np.array_equal(rows, np.asarray(test.sets["all"].inputs))
    assert model.kind == "arc" and model.decode(model.encode(TASK["test"][0]["input"])) == TASK["test"][0]["input"]
    with pytest.raises(HrmkitError, match="larger than 30x30"):
        model.encode([[1] * 31])
    ev = evaluate_split(load_model(ckpt).head, test, batch_size=len(rows), diagnose=False)
    cands = ev.arc_ranked.candidates[("aa01", 0)]
    got = r["tests"][0]["answers"]
    assert [a["votes"] for a in got] == [c.votes for c in cands[:2]]
    assert [a["grid"] for a in got] == [c.grid.tolist() for c in cands[:2]]
    # every version votes; an undecodable or empty crop votes for the empty answer (as in the references)
    assert sum(c.votes for c in cands) == 6
    assert r["tests"][0]["n_invalid"] == sum(c.votes for c in cands if c.grid.size == 0)
    assert all(a["correct"] == (a["grid"] == TASK["test"][0]["output"]) for a in got)
    rc, out, _ = _solve(capsys, "--checkpoint", ckpt, task_file, "--show-segments")
    assert rc == 0 and "ARC task aa01: 1 test input, 6 versions" in out and "segment 1/3" in out


@pytest.mark.parametrize("edit, needle", [
    (lambda t: {**t, "test": [{"input": [[1] * 31]}]}, "larger than 30x30"),                 # wider than 30
    (lambda t: {**t, "test": [{"input": [[1, 2], [3]]}]}, "ragged grid"),
    (lambda t: {**t, "test": [{"input": [[1, 12]]}]}, "colour 12 outside 0..9"),
    (lambda t: {**t, "test": []}, "non-empty list"),
    (lambda t: {"train": t["train"]}, "expected one ARC task"),
])
def test_solve_refuses_malformed_arc(arc_setup, tmp_path, capsys, edit, needle):
    _, ckpt = arc_setup
    path = tmp_path / "aa01.json"
    path.write_text(json.dumps(edit(TASK)))
    rc, _, err = _solve(capsys, "--checkpoint", ckpt, path)
    assert rc == 2 and needle in err and "Traceback" not in err, err


def test_solve_arc_unknown_task_and_bad_json(arc_setup, tmp_path, capsys):
    _, ckpt = arc_setup
    path = tmp_path / "zz99.json"
    path.write_text(json.dumps(TASK))
    rc, _, err = _solve(capsys, "--checkpoint", ckpt, path)
    assert rc == 2 and "task zz99: not one of the tasks" in err
    path.write_text("{not json")
    rc, _, err = _solve(capsys, "--checkpoint", ckpt, path)
    assert rc == 2 and str(path) in err and "Traceback" not in err


def test_solve_bad_options(run, tmp_path, capsys):
    for args, needle in ((["--segments", "0"], "--segments"), (["--gif", str(tmp_path / "x.png")], "end in .gif")):
        rc, _, err = _solve(capsys, "--checkpoint", run, "1...3....1..2...", *args)
        assert rc == 2 and needle in err
    rc, _, err = _solve(capsys, "--checkpoint", tmp_path / "missing", "1...3....1..2...")
    assert rc == 2 and "no such run folder" in err
