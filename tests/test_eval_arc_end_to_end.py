"""ARC through `hrm eval`: a tiny dataset built by `hrm data arc`, fake predictors, votes, pass@k, baselines,
submission.json, the report's task table, and votes pooled over checkpoints."""

import json

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.config import TrainConfig
from hrmkit.data import arc_cli
from hrmkit.data.format import load_identifiers
from hrmkit.eval import cli as eval_cli
from hrmkit.loading import TrainedModel

TASKS = {
    # fill the 2x2 grid with the colour of its top-left cell
    "aa01": {"train": [{"input": [[1, 0], [0, 0]], "output": [[1, 1], [1, 1]]},
                       {"input": [[2, 0], [0, 0]], "output": [[2, 2], [2, 2]]}],
             "test": [{"input": [[3, 0], [0, 0]], "output": [[3, 3], [3, 3]]}]},
    # reverse the row; the second test input is a palindrome, so "answer the test input" solves it
    "bb02": {"train": [{"input": [[1, 2, 3]], "output": [[3, 2, 1]]}, {"input": [[4, 5, 6]], "output": [[6, 5, 4]]}],
             "test": [{"input": [[7, 8, 9]], "output": [[9, 8, 7]]}, {"input": [[1, 2, 1]], "output": [[1, 2, 1]]}]},
    # always 5 5 5, the most common demonstration output
    "cc03": {"train": [{"input": [[5]], "output": [[5, 5, 5]]}, {"input": [[6]], "output": [[5, 5, 5]]},
                       {"input": [[7]], "output": [[6, 6, 6]]}],
             "test": [{"input": [[4]], "output": [[5, 5, 5]]}]},
}
SOLUTIONS = {t: [p["output"] for p in task["test"]] for t, task in TASKS.items()}


@pytest.fixture(scope="module")
def arc_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("arc")
    (root / "tasks" / "evaluation").mkdir(parents=True)
    for task_id, task in TASKS.items():
        (root / "tasks" / "evaluation" / f"{task_id}.json").write_text(json.dumps(task))
    args = ["--out", str(root / "data"), "--tasks-dir", str(root / "tasks"), "--num-aug", "2", "--workers", "1"]
    try:
        rc = hrm(["data", "arc", *args])
    except SystemExit:  # `hrm data arc` not wired into `hrm data` yet: the builder's own entry point
        rc = arc_cli.main(args)
    assert rc == 0
    return root / "data"


class FakeHead(torch.nn.Module):
    """An ACT-head stand-in: answers the expected canvas ("oracle") on the puzzle identifiers in `right`
    (all when None), the input canvas elsewhere; one segment; q_halt = `q`."""

    def __init__(self, right=None, q=0.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.right, self.q = right, q

    def initial_carry(self, batch):
        return None

    def forward(self, carry, batch):
        labels, inputs = batch["labels"].long(), batch["inputs"].long()
        oracle = torch.where(labels < 0, 0, labels)
        use = torch.ones(len(labels), dtype=torch.bool) if self.right is None else \
            torch.isin(batch["puzzle_identifiers"].long(), torch.tensor(sorted(self.right)))
        preds = torch.where(use[:, None], oracle, inputs)
        out = {"preds": preds, "q_halt_logits": torch.full((len(labels),), float(self.q))}
        return carry, torch.zeros(()), {}, out, torch.tensor(True)


@pytest.fixture
def fake_checkpoints(arc_data, tmp_path, monkeypatch):
    """Two checkpoint files: "oracle.pt" (right everywhere, confident) and "identity_only.pt" (right on the
    identity versions only, the input elsewhere)."""
    names = load_identifiers(arc_data)
    identity = {i for i, n in enumerate(names) if "|t0|p0123456789" in n}
    heads = {"oracle.pt": (FakeHead(q=2.0), 200), "identity_only.pt": (FakeHead(identity, q=0.0), 100)}
    for name in heads:
        (tmp_path / name).write_bytes(b"fake")
    cfg = TrainConfig(data_path=str(arc_data), eval_batch_size=8)
    monkeypatch.setattr(eval_cli, "load_trained", lambda path, device, use_ema=True, data=None: TrainedModel(
        heads[path.name][0], cfg, heads[path.name][1], path))
    return tmp_path / "oracle.pt", tmp_path / "identity_only.pt"


def _eval_json(capsys, *args):
    capsys.readouterr()
    assert hrm(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_oracle_scores_pass_at_k_writes_submission_and_report(fake_checkpoints, tmp_path, capsys):
    oracle, _ = fake_checkpoints
    r = _eval_json(capsys, oracle, "--report", tmp_path / "rep")
    assert r["task"] == "arc" and r["n_examples"] == 4 * 3  # 4 test inputs x 3 versions (identity + 2)
    assert r["pass@1"] == r["pass@2"] == r["summary"]["pass@2"] == 1.0 and r["exact_accuracy"] == 1.0
    assert r["arc"]["n_tasks"] == 3 and r["arc"]["n_test_inputs"] == 4 and r["arc"]["n_invalid"] == 0
    base = r["arc_baselines"]
    assert base["arc_test_input"]["pass@1"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert base["arc_most_common_demo_output"]["pass@1"] == pytest.approx(1 / 3)
    sub = json.loads((tmp_path / "rep" / "submission.json").read_text())
    assert r["submission"] == str(tmp_path / "rep" / "submission.json")
    assert {t: [e["attempt_1"] for e in v] for t, v in sub.items()} == SOLUTIONS
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert 'id="arc-table"' in html and "aa01" in html and "arc_test_input" in html and "pass@2" in html


def test_votes_rank_answers_and_pool_over_checkpoints(fake_checkpoints, tmp_path, capsys):
    oracle, identity_only = fake_checkpoints
    # Right on 1 of 3 versions, the (un-augmented) input on the other 2: the input wins the vote, the right
    # answer comes second, except where the input is the answer (bb02 test 1).
    r = _eval_json(capsys, identity_only)
    assert r["pass@1"] == pytest.approx(1 / 6) and r["pass@2"] == 1.0
    assert r["submission"] is None  # not in a run folder and no --report: nowhere to write it

    # Pooled with the oracle: 1 + 3 votes for the right answer against 2 for the input.
    r = _eval_json(capsys, identity_only, oracle, "--aggregate-checkpoints", "--report", tmp_path)
    assert r["pass@1"] == 1.0 and r["arc"]["n_prediction_sets"] == 2
    assert r["aggregated_checkpoints"] == [str(identity_only), str(oracle)]
    assert [(c["step"], c["pass@1"]) for c in r["comparison"]] == [(100, pytest.approx(1 / 6)), (200, 1.0)]
    assert json.loads((tmp_path / "submission.json").read_text())["aa01"][0]["attempt_1"] == SOLUTIONS["aa01"][0]
    capsys.readouterr()
    assert hrm(["eval", str(identity_only), str(oracle), "--aggregate-checkpoints"]) == 0
    out = capsys.readouterr().out
    assert "votes pooled over 2 checkpoints" in out and "pass@2 100.0%" in out and "arc_test_input" in out


def test_repacked_subset_keeps_test_indices(arc_data):
    """Each example its own puzzle (as the training loop's fast-eval subset does): test pairs are matched by
    their input, so bb02's two test inputs are still told apart."""
    import numpy as np

    from hrmkit.data.format import SetArrays, SplitData, load_split
    from hrmkit.eval.evaluate import evaluate_split

    split = load_split(arc_data, "test")
    a = split.sets["all"]
    puzzle = np.searchsorted(a.puzzle_indices, np.arange(a.num_examples), side="right") - 1
    order = np.arange(a.num_examples)[::-1]
    k = np.arange(a.num_examples + 1, dtype=np.int32)
    repacked = SplitData(split.path, split.metadata, {"all": SetArrays(
        np.asarray(a.inputs[order]), np.asarray(a.labels[order]), a.puzzle_identifiers[puzzle[order]], k, k.copy())})
    r = evaluate_split(FakeHead(q=1.0), repacked, batch_size=8)
    assert r.arc["n_test_inputs"] == 4 and r.summary.pass_at_k["pass@1"] == 1.0
    assert r.summary.n_examples == 12 and r.diagnosis["input_invariant"]  # the oracle reads labels


def test_kaggle_test_challenges_are_predicted_into_the_submission_unscored(tmp_path, monkeypatch, capsys):
    """A Kaggle folder with training challenges + solutions and the competition's test
    challenges (no solutions file): `hrm data arc` builds the test tasks into the test split, `hrm eval` writes
    their predictions to submission.json and scores nothing it cannot."""
    kag = tmp_path / "kaggle"
    kag.mkdir()
    train = {"aa01": TASKS["aa01"]}
    (kag / "arc-agi_training_challenges.json").write_text(json.dumps(
        {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in train.items()}))
    (kag / "arc-agi_training_solutions.json").write_text(json.dumps({k: [p["output"] for p in t["test"]] for k, t in train.items()}))
    hidden = {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in TASKS.items() if k != "aa01"}
    (kag / "arc-agi_test_challenges.json").write_text(json.dumps(hidden))
    out = tmp_path / "data"
    assert hrm(["data", "arc", "--out", str(out), "--tasks-dir", str(kag), "--num-aug", "1", "--workers", "1"]) == 0
    test_tasks = json.loads((out / "test_tasks.json").read_text())
    assert sorted(test_tasks) == ["bb02", "cc03"] and all(p["output"] is None for v in test_tasks.values() for p in v)
    cfg = TrainConfig(data_path=str(out), eval_batch_size=8)
    (tmp_path / "m.pt").write_bytes(b"fake")
    monkeypatch.setattr(eval_cli, "load_trained", lambda path, device, use_ema=True, data=None: TrainedModel(
        FakeHead(right=set(), q=1.0), cfg, 1, path))
    assert hrm(["eval", str(tmp_path / "m.pt"), "--json", "--report", str(tmp_path / "rep")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["arc"]["n_unsolved_tasks"] == 2 and r["arc"]["n_tasks"] == 0 and r["exact_accuracy"] is None
    sub = json.loads((tmp_path / "rep" / "submission.json").read_text())
    assert sorted(sub) == ["bb02", "cc03"] and len(sub["bb02"]) == 2
    # the fake model answers the test input where no label exists: attempt 1 is the input itself
    assert sub["bb02"][0]["attempt_1"] == TASKS["bb02"]["test"][0]["input"]
