"""Test-time scaling: `--segments N` (the curve from one rollout, accuracy at halting), `--tta K` voting through
each task's augmentations and inverses, `--ensemble`, `--verify`, `Model.predict(segments=)` /
`predict_tta`, `hrm solve --tta`, and the label-shuffle honesty check."""

import json
import shutil

import numpy as np
import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.data import maze, sudoku
from hrmkit.data.augment import apply_sudoku_symmetry, invert_sudoku_symmetry, sudoku_symmetries
from hrmkit.errors import HrmkitError
from hrmkit.eval.tta import Votes, predict_versions, task_augmentation, tta_block, vote
from hrmkit.tasks.maze import maze_solved
from hrmkit.tasks.sudoku import sudoku_solved

# A tiny TRM (`no_ACT_continue`: halting on q_halt > 0) with 2 ACT segments in evaluation, checkpoints at steps
# 5 and 10: enough to check what the scaling options compute, not how well the model solves.
TINY_TRM = [
    "arch.hidden_size=32", "arch.num_heads=2", "arch.L_layers=1", "arch.H_cycles=1", "arch.L_cycles=2",
    "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "global_batch_size=32", "lr=3e-3", "lr_warmup_steps=5",
    "log_every=5", "eval_batch_size=64", "max_time_s=null", "max_steps=10", "checkpoint_every=5",
]


@pytest.fixture(scope="module")
def run(sudoku4, tmp_path_factory):
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    return train(resolve_config(preset="demo", overrides=TINY_TRM + [
        f"data_path={sudoku4}", f"out_dir={tmp_path_factory.mktemp('runs')}"])).run_dir


@pytest.fixture(scope="module")
def model(run):
    import hrmkit

    return hrmkit.load(run)


def _eval_json(capsys, *args):
    capsys.readouterr()
    assert hrm(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _solutions(box, k, seed=0):
    rng = np.random.default_rng(seed)
    n = box[0] * box[1]
    return np.array([sudoku.random_solution(box, rng) for _ in range(k)]).reshape(k, n, n)


# ------------------------------------------------------------------------------------------ augmentations

@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3)])
def test_sudoku_symmetries_keep_solutions_and_invert(box):
    n = box[0] * box[1]
    grids = _solutions(box, 6)
    sym = sudoku_symmetries(box, 6, np.random.default_rng(1), identity_first=True)
    moved = apply_sudoku_symmetry(grids, sym)
    assert np.array_equal(moved[0], grids[0])  # version 0 is the puzzle itself
    assert all(sudoku.is_valid_solution(g.reshape(-1).tolist(), box) for g in moved)
    assert not np.array_equal(moved[1:], grids[1:])
    assert np.array_equal(invert_sudoku_symmetry(moved, sym), grids)
    tokens = grids.reshape(6, 1, n * n) + 1  # dataset tokens, PAD (0) must stay PAD
    tokens[:, :, 0] = 0
    back = invert_sudoku_symmetry(apply_sudoku_symmetry(tokens, sym, offset=1), sym, offset=1)
    assert np.array_equal(back, tokens)


def test_task_augmentations_round_trip_and_refuse_what_they_cannot():
    x = np.random.default_rng(0).integers(0, 6, (5, 36))
    sud = task_augmentation("sudoku", 36, 7, seed=3)
    assert np.array_equal(sud.inverse(sud.forward(x)), np.broadcast_to(x, (7, 5, 36)))
    mz = task_augmentation("maze", 36, 8)
    versions = mz.forward(x)
    assert len({v.tobytes() for v in versions}) == 8 and np.array_equal(mz.inverse(versions), np.broadcast_to(x, (8, 5, 36)))
    for task, k, needle in (("maze", 9, "8 dihedral"), ("arc", 2, "aggregate-checkpoints"), ("generic", 2, "no augmentations"),
                            ("sudoku", 0, "1..")):
        with pytest.raises(HrmkitError, match=needle):
            task_augmentation(task, 36, k)


def test_verifiers():
    box = (2, 3)
    sol = _solutions(box, 4).reshape(4, 36) + 1
    puzzle = np.where(np.random.default_rng(2).random(sol.shape) < 0.5, 1, sol)
    assert sudoku_solved(puzzle, sol).all()
    swapped = sol[0].copy()
    swapped[[0, 1]] = sol[0][[1, 0]]  # the row still holds every digit, two columns no longer do
    other = sol[3]  # a valid solution, but of another puzzle: it changes clues
    assert (other[puzzle[2] > 1] != puzzle[2][puzzle[2] > 1]).any()
    assert sudoku_solved(puzzle[:3], np.stack([swapped, sol[1], other])).tolist() == [False, True, False]
    inp, label, _ = maze.generate_maze(11, np.random.default_rng(0), min_path_length=5)
    x, y = maze.to_tokens(inp).reshape(1, -1), maze.to_tokens(label).reshape(1, -1)
    extra = label.copy()
    extra[tuple(np.argwhere((inp == maze.OPEN) & (label == maze.OPEN))[0])] = maze.PATH
    assert maze_solved(x, y).tolist() == [True]
    assert maze_solved(x, maze.to_tokens(extra).reshape(1, -1)).tolist() == [False]
    assert maze_solved(x, x).tolist() == [False]


class SolverHead(torch.nn.Module):
    """A stand-in model that solves every puzzle it is shown with `solve_row(tokens) -> tokens` (one segment)."""

    def __init__(self, solve_row):
        super().__init__()
        self.solve_row = solve_row
        self.model = torch.nn.Module()
        self.model.halt_max_steps, self.model.q_continue = 1, False

    def initial_carry(self, batch):
        return None

    def forward(self, carry, batch):
        rows = np.stack([self.solve_row(x) for x in batch["inputs"].long().numpy()])
        return carry, None, {}, {"preds": torch.as_tensor(rows), "q_halt_logits": torch.ones(len(rows))}, True


def _solve_sudoku4(x):
    found, _ = sudoku.solve((x - 1).clip(0).tolist(), (2, 2), limit=1)
    return np.asarray(found[0]) + 1 if found and (x > 0).all() else x


def _solve_maze(x):
    side = int(len(x) ** 0.5)
    grid = maze.from_tokens(x.astype(np.uint8)).reshape(side, side)
    solved = maze.solve(grid) if (x > 0).all() else None
    return x if solved is None else maze.to_tokens(solved[0]).reshape(-1).astype(np.int64)


@pytest.fixture(scope="module")
def mazes(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "maze9"
    assert hrm(["data", "maze", "--out", str(out), "--size", "9", "--train", "8", "--test", "12"]) == 0
    return out


@pytest.mark.parametrize("task", ["sudoku", "maze"])
def test_votes_of_a_perfect_solver_agree_and_are_right_in_the_puzzles_frame(task, sudoku4, mazes):
    """Each version is solved in its own frame; only correct inverses bring all the answers back together."""
    from hrmkit.data.format import load_split

    data, solve_row, k = (sudoku4, _solve_sudoku4, 6) if task == "sudoku" else (mazes, _solve_maze, 8)
    split = load_split(data, "test")
    aug = task_augmentation(task, split.metadata.seq_len, k, seed=1)
    votes = predict_versions(SolverHead(solve_row), split, aug, 64)
    assert not np.array_equal(aug.forward(votes.inputs)[1], votes.inputs)  # the versions differ ...
    assert (votes.answers == votes.answers[0]).all()  # ... their answers, mapped back, do not
    block = tta_block([votes], task, verify=True)
    assert block["exact_accuracy"] == 1.0 and block["unanimous_share"] == 1.0
    assert block["verified"]["passed_share"] == 1.0


def test_vote_ranks_by_votes_then_mean_q_and_verifier_picks_a_passing_one():
    a, b, c = np.array([1, 1]), np.array([2, 2]), np.array([3, 3])
    answers = np.stack([a, b, b, c, a])[:, None, :]  # 5 versions of one puzzle: a and b 2 votes each, c 1
    q = np.array([[0.9], [0.2], [0.3], [0.99], [0.8]], np.float32)
    v = Votes(np.zeros((1, 2), int), np.zeros((1, 2), int), answers, q, 1.0)
    t = vote([v])
    assert t.top[0].tolist() == [1, 1] and t.ranked[0][0][1] == 2 and t.ranked[0][1][0].tolist() == [2, 2]
    assert t.candidates.tolist() == [3]
    t = vote([v], verifier=lambda x, ans: ans[:, 0] == 3)
    assert t.top[0].tolist() == [1, 1] and t.verified[0].tolist() == [3, 3] and t.passed.tolist() == [True]
    t = vote([v, v])  # an ensemble pools votes
    assert t.ranked[0][0][1] == 4


# ------------------------------------------------------------------------------------------------ hrm eval

def test_segments_curve_and_at_halt(run, model, sudoku4, capsys):
    r = _eval_json(capsys, run, "--segments", 6)
    curve = r["segments_curve"]
    assert [p["segments"] for p in curve] == [1, 2, 3, 4, 5, 6] and r["mean_steps"] == 6  # past halt_max_steps 2
    assert curve[-1]["exact_accuracy"] == r["exact_accuracy"] and curve[-1]["token_accuracy"] == r["token_accuracy"]
    # The curve is what running n segments gives, and at_halt takes each row where q_halt > 0 first said stop.
    from hrmkit.data.format import load_split
    from hrmkit.eval.metrics import accuracy_pair

    split = load_split(sudoku4, "test")
    x, y = np.asarray(split.sets["all"].inputs), np.asarray(split.sets["all"].labels).astype(np.int64)
    out = model.predict(x, segments=6, keep_segments=True, batch_size=64)
    for n in (1, 3, 6):
        exact, token = accuracy_pair(x, y, out.segment_tokens[:, n - 1].numpy(), task="sudoku")
        assert curve[n - 1]["exact_accuracy"] == exact and curve[n - 1]["token_accuracy"] == pytest.approx(token)
    assert out.q_continue is None  # no_ACT_continue: q_continue plays no part in halting
    halt = out.halt_step.numpy()
    assert np.array_equal(halt, np.where((out.q_halt > 0).any(1), (out.q_halt > 0).float().argmax(1) + 1, 6))
    at = out.segment_tokens[np.arange(len(x)), halt - 1].numpy()
    exact, token = accuracy_pair(x, y, at, task="sudoku")
    assert r["at_halt"]["exact_accuracy"] == exact and r["at_halt"]["token_accuracy"] == pytest.approx(token)
    assert r["at_halt"]["mean_segments"] == pytest.approx(halt.mean()) and r["at_halt"]["max_segments"] == 6


@pytest.mark.parametrize("value", ["0", "-1", "513"])
def test_bad_segments_exit_2_before_anything_is_written(run, tmp_path, capsys, value):
    assert hrm(["eval", str(run), "--segments", value, "--report", str(tmp_path / "rep")]) == 2
    assert "--segments" in capsys.readouterr().err and not (tmp_path / "rep").exists()


def test_tta_block_with_verified_figure(run, capsys):
    r = _eval_json(capsys, run, "--tta", 4, "--verify")
    t = r["tta"]
    assert t["versions"] == 4 and t["checkpoints"] == 1 and t["votes"] == 4 and t["n_examples"] == 64
    assert [p["versions"] for p in t["curve"]] == [1, 2, 4]
    assert t["curve"][-1]["exact_accuracy"] == t["exact_accuracy"] and 0 <= t["unanimous_share"] <= 1
    assert 1 <= t["mean_candidates"] <= 4 and t["seconds"] > 0
    # one version is the plain evaluation (other batch sizes: allow a cell's rounding)
    assert abs(t["curve"][0]["token_accuracy"] - r["token_accuracy"]) < 0.01
    assert set(t["verified"]) == {"exact_accuracy", "token_accuracy", "passed_share"}
    assert r["exact_accuracy"] == r["summary"]["exact_accuracy"]  # the plain figure is left alone


def test_label_shuffle_does_not_change_the_votes(model, sudoku4, tmp_path, capsys, run):
    from hrmkit.data.format import load_split

    shuffled = tmp_path / "shuffled"
    shutil.copytree(sudoku4, shuffled)
    labels = np.load(shuffled / "test" / "all__labels.npy")
    np.save(shuffled / "test" / "all__labels.npy", labels[np.random.default_rng(0).permutation(len(labels))])
    aug = task_augmentation("sudoku", 16, 4, seed=0)
    a = predict_versions(model.head, load_split(sudoku4, "test"), aug, 64)
    b = predict_versions(model.head, load_split(shuffled, "test"), aug, 64)
    assert not np.array_equal(a.labels, b.labels)  # the labels did change ...
    assert np.array_equal(a.answers, b.answers) and np.array_equal(vote([a]).top, vote([b]).top)  # ... the votes not
    plain, mixed = _eval_json(capsys, run, "--tta", 4), _eval_json(capsys, run, "--tta", 4, "--data", shuffled)
    assert plain["tta"]["unanimous_share"] == mixed["tta"]["unanimous_share"]
    assert plain["tta"]["mean_candidates"] == mixed["tta"]["mean_candidates"]


def test_ensemble_pools_two_checkpoints(run, capsys, tmp_path):
    from hrmkit.train.checkpoint import list_checkpoints

    cks = list_checkpoints(run)
    assert len(cks) == 2
    r = _eval_json(capsys, *cks, "--ensemble", "--tta", 2)
    assert r["ensemble"] == [str(c) for c in cks] and r["tta"]["checkpoints"] == 2 and r["tta"]["votes"] == 4
    assert len(r["comparison"]) == 2
    assert hrm(["eval", str(cks[0]), "--ensemble"]) == 2
    assert "--ensemble" in capsys.readouterr().err


def test_report_charts_segments_and_votes(run, tmp_path, capsys):
    assert hrm(["eval", str(run), "--segments", "3", "--tta", "2", "--report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "Accuracy after N ACT segments" in html and "Accuracy of the top-voted answer" in html
    assert 'id="segments-table"' in html and 'id="votes-table"' in html


# ----------------------------------------------------------------------------------------- API and solve

def test_predict_segments_and_predict_tta(model, sudoku4):
    from hrmkit.data.format import load_split

    x = np.asarray(load_split(sudoku4, "test").sets["all"].inputs[:8])
    assert model.predict(x, segments=5).segments == 5 and model.halt_max_steps == 2
    with pytest.raises(HrmkitError, match="segments"):
        model.predict(x, segments=0)
    out = model.predict_tta(x, 4)
    assert out.tokens.shape == (8, 16) and out.version_tokens.shape == (4, 8, 16) and out.versions == 4
    assert all(sum(v for _, v, _ in r) == 4 for r in out.ranked)
    assert all(np.array_equal(r[0][0], t) for r, t in zip(out.ranked, out.tokens.numpy()))
    same = (out.version_tokens[0] == model.predict(x).tokens).float().mean()
    assert same > 0.95  # version 0 is the puzzle itself


def test_solve_tta_prints_the_vote_table(run, capsys):
    capsys.readouterr()
    assert hrm(["solve", "--checkpoint", str(run), "1...3....1..2...", "--tta", "4", "--segments", "3"]) == 0
    out = capsys.readouterr().out
    assert "ran 3 segments" in out and "rank  votes  mean q  verifier  answer" in out
    assert hrm(["solve", "--checkpoint", str(run), "1...3....1..2...", "--tta", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert sum(v["votes"] for v in r["votes"]) == 4 and r["answer"] == r["votes"][0]["answer"]
    assert hrm(["solve", "--checkpoint", str(run), "1...3....1..2...", "--tta", "0"]) == 2
