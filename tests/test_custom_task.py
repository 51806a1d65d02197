"""Your own puzzle type: a task written in this file alone (registered with `hrmkit.tasks.register`) and a grid
puzzle imported from JSON Lines both go through data, training, `hrm eval` (beside its baselines), `hrm solve`
and `hrm export`, with no hrmkit file knowing them."""

import json

import numpy as np
import pytest

from hrmkit import tasks
from hrmkit.cli import main as hrm
from hrmkit.data.build import write_task_dataset
from hrmkit.errors import HrmkitError
from hrmkit.tasks import Check, Task

from conftest import TINY_ARCH


class ParityTask(Task):
    """Rows of 8 bits; the answer row holds the running parity of the input (bit i = xor of bits 0..i).
    Tokens: 0 PAD, 1 bit 0, 2 bit 1. Natural form: a string of '0'/'1'. Rules: the answer is the running parity."""

    name = "test-parity"
    title = "parity"
    has_verifier = True

    def encode(self, puzzle, seq_len, where="puzzle"):
        if not isinstance(puzzle, str) or len(puzzle.strip()) != seq_len or set(puzzle.strip()) - set("01"):
            raise HrmkitError(f"{where}: expected {seq_len} characters '0' or '1', got {puzzle!r}")
        return np.array([int(c) + 1 for c in puzzle.strip()], np.uint8)

    def decode(self, tokens):
        return "".join("?" if t not in (1, 2) else str(int(t) - 1) for t in np.asarray(tokens).reshape(-1))

    def grid(self, tokens):
        return np.clip(np.asarray(tokens).astype(np.int64).reshape(1, -1) - 1, 0, 1)

    def verify(self, inputs, preds):
        x, y = np.asarray(inputs, np.int64) - 1, np.asarray(preds, np.int64) - 1
        return (y == np.cumsum(x, axis=1) % 2).all(axis=1)

    def check(self, input_tokens, answer_tokens):
        ok = bool(self.verify(np.asarray(input_tokens)[None], np.asarray(answer_tokens)[None])[0])
        return Check(ok, "the running parity" if ok else "NOT the running parity", {"parity_ok": ok})

    def baselines(self, inputs):
        return {"all_zero": ("every answer bit 0", np.ones_like(inputs))}

    def augmentation(self, seq_len, versions, seed=0):
        if versions > 1:
            raise HrmkitError(f"--tta {versions}: parity rows have no symmetries")
        return super().augmentation(seq_len, versions, seed)


@pytest.fixture(scope="module")
def parity_task():
    tasks.register(ParityTask)
    yield ParityTask()


def _parity_examples(n, rng):
    x = rng.integers(0, 2, size=(n, 8))
    return [((a + 1).astype(np.uint8), (np.cumsum(a) % 2 + 1).astype(np.uint8), None) for a in x]


def test_a_task_from_a_test_file_runs_data_training_eval_solve_and_export(parity_task, tmp_path, capsys):
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    rng = np.random.default_rng(0)
    data = tmp_path / "parity"
    write_task_dataset(data, parity_task, _parity_examples(256, rng), _parity_examples(32, rng), vocab_size=3)
    meta = json.loads((data / "train" / "dataset.json").read_text())
    assert meta["task"] == "test-parity" and meta["seq_len"] == 8

    run = train(resolve_config(preset="demo-4x4", overrides=TINY_ARCH + [
        f"data_path={data}", f"out_dir={tmp_path / 'runs'}", "max_steps=6", "checkpoint_every=6",
        "arch.puzzle_emb_ndim=0"])).run_dir
    capsys.readouterr()

    assert hrm(["eval", str(run), "--json", "--tta", "1", "--verify", "--report", str(tmp_path / "report")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "parity" in (tmp_path / "report" / "report.html").read_text()
    assert out["task"] == "test-parity"
    assert {"copy_input", "most_common_token", "all_zero"} <= set(out["baselines"])  # the task's own beside
    assert out["baselines"]["all_zero"]["source"] == "task"
    test_labels = np.load(next((data / "test").glob("*labels.npy")))
    assert out["baselines"]["all_zero"]["exact_accuracy"] == pytest.approx((test_labels == 1).all(1).mean())
    assert out["tta"]["verified"]["passed_share"] is not None  # the task's own verifier judged the answers

    assert hrm(["solve", "--checkpoint", str(run), "--json", "01101001"]) == 0
    solved = json.loads(capsys.readouterr().out)
    assert solved["kind"] == "test-parity" and len(solved["answer"]) == 8 and "parity_ok" in solved

    assert hrm(["solve", "--checkpoint", str(run), "0110"]) == 2
    assert "expected 8 characters" in capsys.readouterr().err

    export = tmp_path / "export"
    assert hrm(["export", str(run), "--out", str(export)]) == 0
    config = json.loads((export / "config.json").read_text())
    assert config["task"] == {"name": "test-parity", "params": {}}
    capsys.readouterr()
    assert hrm(["solve", "--checkpoint", str(export), "--json", "01101001"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == solved["answer"]


def test_a_checkpoint_of_an_unregistered_task_is_a_clear_error(tmp_path):
    with pytest.raises(HrmkitError, match="unknown task 'no-such-task'.*--task-file"):
        tasks.from_record({"name": "no-such-task", "params": {}})


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _flip_examples(n, rng):
    """A puzzle nobody in the project wrote: the output is the input grid mirrored left-right with every value
    v != 0 replaced by 4 - v (3x4 grids, values 0..3)."""
    rows = []
    for _ in range(n):
        g = rng.integers(0, 4, size=(3, 4))
        out = np.where(g[:, ::-1] == 0, 0, 4 - g[:, ::-1])
        rows.append({"input": g.tolist(), "output": out.tolist()})
    return rows


def test_a_jsonl_grid_puzzle_trains_is_evaluated_beside_baselines_and_solved_from_a_json_grid(tmp_path, capsys):
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    rng = np.random.default_rng(1)
    _write_jsonl(tmp_path / "train.jsonl", _flip_examples(200, rng))
    _write_jsonl(tmp_path / "test.jsonl", _flip_examples(24, rng))
    data = tmp_path / "flip"
    assert hrm(["data", "grid", "--from-jsonl", str(tmp_path / "train.jsonl"), "--test-jsonl",
                str(tmp_path / "test.jsonl"), "--out", str(data), "--aug", "none"]) == 0
    run = train(resolve_config(preset="demo-4x4", overrides=TINY_ARCH + [
        f"data_path={data}", f"out_dir={tmp_path / 'runs'}", "max_steps=6", "checkpoint_every=6",
        "arch.puzzle_emb_ndim=0"])).run_dir
    capsys.readouterr()

    assert hrm(["eval", str(run), "--json", "--report", str(tmp_path / "report")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "grid" and out["n_examples"] == 24
    assert "<svg" in (tmp_path / "report" / "report.html").read_text()
    assert out["baselines"]["copy_input"]["exact_accuracy"] is not None

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"input": [[1, 2, 3, 0], [0, 0, 1, 1], [3, 3, 2, 2]]}))
    assert hrm(["solve", "--checkpoint", str(run), "--json", str(grid)]) == 0
    answer = json.loads(capsys.readouterr().out)["answer"]
    assert np.asarray(answer).shape == (3, 4)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([[1, 2, 3, 0], [0, 0, 1, 1], [3, 3, 2, 2]]))
    assert hrm(["solve", "--checkpoint", str(run), "--json", str(bare)]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == answer

    assert hrm(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    assert json.loads((tmp_path / "export" / "config.json").read_text())["task"]["name"] == "grid"

    import hrmkit
    from fastapi.testclient import TestClient

    from hrmkit.deploy import serve

    with TestClient(serve.create_app(hrmkit.load(run))) as c:  # hrm serve: the same answer over HTTP
        info = c.get("/v1/model").json()
        assert info["task"] == "grid" and info["task_title"] == "grid"
        r = c.post("/v1/solve", json={"input": [[1, 2, 3, 0], [0, 0, 1, 1], [3, 3, 2, 2]]}).json()
        assert r["answer"] == answer and r["valid"] is None  # no rules: no verdict


def test_training_on_an_unregistered_task_stops_before_any_run_folder(parity_task, tmp_path, capsys):
    rng = np.random.default_rng(2)
    data = tmp_path / "parity"
    write_task_dataset(data, parity_task, _parity_examples(16, rng), _parity_examples(4, rng), vocab_size=3)
    for split in ("train", "test"):
        meta = data / split / "dataset.json"
        meta.write_text(meta.read_text().replace('"test-parity"', '"nobody-registered-this"'))
    runs = tmp_path / "runs"
    assert hrm(["train", f"data_path={data}", f"out_dir={runs}", "max_steps=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nobody-registered-this'" in err and "--task-file" in err and "dataset.json" in err
    assert not runs.exists() or not any(runs.iterdir())


def test_task_files_and_entry_points_register_tasks(tmp_path, monkeypatch, capsys):
    """`hrm --task-file FILE.py` runs the file before the command; an installed package's `hrmkit.tasks` entry
    point names its class; a broken or missing file is exit 2 naming it."""
    f = tmp_path / "my_task.py"
    f.write_text("from hrmkit.tasks import Task, register\n\n"
                 "class FileTask(Task):\n    name = 'file-task'\n\nregister(FileTask)\n")
    rng = np.random.default_rng(3)
    data = tmp_path / "d"
    tasks.load_task_files([f])
    write_task_dataset(data, tasks.get("file-task")(), _parity_examples(8, rng), _parity_examples(2, rng),
                       vocab_size=3)
    assert hrm(["--task-file", str(f), "data", "inspect", str(data)]) == 0
    assert "task file-task" in capsys.readouterr().out
    assert hrm(["--task-file", str(tmp_path / "missing.py"), "data", "inspect", str(data)]) == 2
    assert "missing.py: no such Python file" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert hrm(["--task-file", str(broken), "data", "inspect", str(data)]) == 2
    assert "broken.py: the task file failed to run (RuntimeError: boom)" in capsys.readouterr().err

    class EntryTask(Task):
        name = "entry-point-task"

    class FakeEntryPoint:
        name, value = "entry-point-task", "pkg.mod:EntryTask"

        def load(self):
            return EntryTask

    monkeypatch.setattr(tasks, "_entry_points_loaded", False)
    monkeypatch.setattr(tasks.metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == "hrmkit.tasks" else [])
    assert tasks.get("entry-point-task") is EntryTask
