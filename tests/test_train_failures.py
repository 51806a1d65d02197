"""An adversarial pass over training, each failure reproduced through the `hrm` command: a failed or pointless resume
changes nothing, both splits are validated before the first step, the final checkpoint comes before the final
evaluation, divergence never archives broken weights, bad values and files give exit 2 with a message naming
the key or path (no traceback, nothing changed in the run folder), and interrupts give 130/143."""

import hashlib
import json
import os
import shutil
import signal

import numpy as np
import pytest

from hrmkit.cli import main as hrm
from hrmkit.data.format import load_split
from test_train import _one_thread  # noqa: F401 (autouse fixture)

# The tiny configuration of these reproductions.
TINY = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
        "arch.L_cycles=1", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=0", "global_batch_size=16", "device=cpu",
        "eval_max_examples=16", "log_every=2"]


def _train(data, out, *extra):
    return hrm(["train", *TINY, f"data_path={data}", f"out_dir={out}", *extra])


def _only_run(out):
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _records(run, kind):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == kind]


@pytest.fixture(scope="module")
def finished_run(sudoku4, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert _train(sudoku4, out, "max_steps=4", "checkpoint_every=2") == 0
    return _only_run(out)


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run (tests may damage it)."""
    return shutil.copytree(finished_run, tmp_path / finished_run.name)


def _copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


# --- 1, 2: a resume that fails, or has nothing to do, changes nothing -------------------------------------------

def test_failed_resume_leaves_config_and_checkpoints_as_they_were(run_copy, capsys):
    before = _snapshot(run_copy)
    capsys.readouterr()
    assert hrm(["train", "--resume", str(run_copy), "arch.hidden_size=64", "max_steps=6"]) == 2
    err = capsys.readouterr().err
    assert "arch.hidden_size=64" in err and "Traceback" not in err
    assert _snapshot(run_copy) == before
    assert hrm(["train", "--resume", str(run_copy), "max_steps=6"]) == 0  # the run is still resumable
    assert json.loads((run_copy / "status.json").read_text())["global_step"] == 6


def test_empty_config_yaml_is_an_error_not_the_demo(run_copy, tmp_path, monkeypatch, capsys):
    (run_copy / "config.yaml").write_text("")
    before = _snapshot(run_copy)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert hrm(["train", "--resume", str(run_copy)]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert _snapshot(run_copy) == before and not (tmp_path / "data").exists()


def test_resuming_a_finished_run_does_nothing(run_copy, capsys):
    before = _snapshot(run_copy)
    for _ in range(2):
        capsys.readouterr()
        assert hrm(["train", "--resume", str(run_copy)]) == 0
        assert "already finished at step 4" in capsys.readouterr().out
    assert _snapshot(run_copy) == before  # no second final evaluation, no duplicate record


# --- 3, 5: both splits validated before the first step; final checkpoint before the final evaluation ----------

def _rewrite(split_dir, key, fn):
    path = split_dir / f"all__{key}.npy"
    np.save(path, fn(np.load(path)))


def _empty(split_dir):
    """Make a split hold no examples (valid offsets, zero rows)."""
    meta = json.loads((split_dir / "dataset.json").read_text())
    for key in ("inputs", "labels"):
        np.save(split_dir / f"all__{key}.npy", np.zeros((0, meta["seq_len"]), np.uint8))
    np.save(split_dir / "all__puzzle_identifiers.npy", np.zeros(0, np.int32))
    for key in ("puzzle_indices", "group_indices"):
        np.save(split_dir / f"all__{key}.npy", np.zeros(1, np.int32))
    (split_dir / "dataset.json").write_text(json.dumps({**meta, "total_groups": 0}))


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: (d / "test" / "all__inputs.npy").write_bytes((d / "test" / "all__inputs.npy").read_bytes()[:300]),
     "all__inputs.npy"),
    (lambda d: _rewrite(d / "test", "inputs", lambda a: np.where(a == 1, 9, a).astype(np.uint8)), "token 9"),
    (lambda d: json.dump({**json.loads((d / "test" / "dataset.json").read_text()), "seq_len": 17, "vocab_size": 6},
                         open(d / "test" / "dataset.json", "w")), "seq_len"),
    (lambda d: _empty(d / "test"), "holds no examples"),
    (lambda d: _empty(d / "train"), "holds no examples"),
], ids=["truncated", "token", "shape", "empty-test", "empty-train"])
def test_bad_test_split_fails_before_training(sudoku4, tmp_path, capsys, damage, fragment):
    data = _copy_dataset(sudoku4, tmp_path / "data")
    damage(data)
    out = tmp_path / "runs"
    out.mkdir()
    capsys.readouterr()
    assert _train(data, out, "max_steps=4") == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not any(out.iterdir())  # refused before a run folder existed


def test_final_checkpoint_is_written_before_the_final_evaluation(sudoku4, tmp_path, monkeypatch, capsys):
    import hrmkit.eval.evaluate as evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(evaluate, "predict_split", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        _train(sudoku4, tmp_path, "max_steps=4", "checkpoint_every=100")
    run = _only_run(tmp_path)
    assert (run / "checkpoints" / "step_00000004.pt").is_file()  # the training is not lost
    assert json.loads((run / "status.json").read_text())["state"] == "crashed"
    monkeypatch.undo()
    assert hrm(["train", "--resume", str(run)]) == 0  # evaluates, without training again
    assert [r["global_step"] for r in _records(run, "eval")] == [4]
    assert [r["global_step"] for r in _records(run, "train")] == [2, 4]


def test_out_of_vocabulary_token_in_the_middle_of_a_large_split(sudoku4, tmp_path, capsys):
    data = _copy_dataset(sudoku4, tmp_path / "data")
    meta = load_split(sudoku4, "train").metadata
    n = 20_000
    rows = np.random.default_rng(0).integers(1, meta.vocab_size, (n, meta.seq_len), dtype=np.uint8)
    rows[10_001, 3] = meta.vocab_size + 2  # far from the first and last 4096 rows
    split = data / "train"
    for key, array in (("inputs", rows), ("labels", rows), ("puzzle_identifiers", np.zeros(n, np.int32)),
                       ("puzzle_indices", np.arange(n + 1, dtype=np.int32)),
                       ("group_indices", np.arange(n + 1, dtype=np.int32))):
        np.save(split / f"all__{key}.npy", array)  # one puzzle and one group per row
    (split / "dataset.json").write_text(json.dumps({**meta.to_json(), "total_groups": n}))
    out = tmp_path / "runs"
    capsys.readouterr()
    assert _train(data, out, "max_steps=2") == 2
    err = capsys.readouterr().err
    assert "row 10001 column 3" in err and "train" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


# --- 4: divergence --------------------------------------------------------------------------------------------

def _nan_loss_on_calls(monkeypatch, bad_calls):
    """The ACT loss head returns a NaN loss on the given (1-based) training calls."""
    from hrmkit.models.losses import ACTLossHead

    original, calls = ACTLossHead.forward, {"n": 0}

    def forward(self, carry, batch, **kw):
        carry, loss, metrics, outputs, finished = original(self, carry, batch, **kw)
        if self.training:
            calls["n"] += 1
            if calls["n"] in bad_calls:
                loss = loss * float("nan")
        return carry, loss, metrics, outputs, finished

    monkeypatch.setattr(ACTLossHead, "forward", forward)


def test_rollback_goes_to_a_checkpoint_written_before_the_bad_streak(sudoku4, tmp_path, monkeypatch):
    _nan_loss_on_calls(monkeypatch, {5, 6, 7})
    assert _train(sudoku4, tmp_path, "max_steps=9", "checkpoint_every=1", "keep_checkpoints=1",
                  "guards.max_bad_steps=3") == 0
    run = _only_run(tmp_path)
    rollback = [e for e in _records(run, "event") if e["event"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["global_step"] == 4, rollback  # step 4: the last healthy one
    assert "step_00000004.pt" in rollback[0]["message"]


def test_weights_that_turn_non_finite_crash_the_run_without_touching_best(sudoku4, tmp_path, monkeypatch, capsys):
    _nan_loss_on_calls(monkeypatch, {3})
    capsys.readouterr()
    assert _train(sudoku4, tmp_path, "max_steps=6", "guards.skip_nonfinite=false") == 3
    assert "non-finite weights" in capsys.readouterr().err
    run = _only_run(tmp_path)
    assert json.loads((run / "status.json").read_text())["state"] == "crashed"
    assert not (run / "best").exists()


def test_huge_learning_rate_ends_crashed_not_finished(sudoku4, tmp_path, capsys):
    capsys.readouterr()
    assert _train(sudoku4, tmp_path, "max_steps=12", "lr=1e38", "lr_warmup_steps=0", "checkpoint_every=2",
                  "guards.max_bad_steps=2", "guards.max_rollbacks=1") == 3
    assert "crashed" in capsys.readouterr().err
    run = _only_run(tmp_path)
    assert json.loads((run / "status.json").read_text())["state"] == "crashed"
    assert not (run / "best").exists()


# --- 7: bad values and bad files: exit 2, the key or path named, no traceback, the run folder unchanged ------------

BAD_VALUES = [
    ("arch.num_heads=3", "arch.num_heads=3"), ("arch.hidden_size=0", "arch.hidden_size=0"),
    ("checkpoint_every=0", "checkpoint_every=0"), ("log_every=0", "log_every=0"), ("lr=-1", "lr=-1"),
    ("lr=.nan", "lr=nan"), ("lr=.inf", "lr=inf"), ("checkpoint_every=-1", "checkpoint_every=-1"),
    ("keep_checkpoints=0", "keep_checkpoints=0"), ("arch.H_cycles=0", "arch.H_cycles=0"),
    ("arch.halt_max_steps=0", "arch.halt_max_steps=0"), ("seed=!!python/object/apply:os.getpid []", "seed="),
    ("eval.fast_every=0", "eval.fast_every=0"), ("guards.max_bad_steps=0", "guards.max_bad_steps=0"),
    ("arch.halt_exploration_prob=2", "arch.halt_exploration_prob=2"), ("beta2=1", "beta2=1"),
    ("global_batch_size=4096", "global_batch_size=4096"), ("eval.best_metric=nope", "eval.best_metric='nope'"),
]


@pytest.mark.parametrize("override,fragment", BAD_VALUES)
def test_bad_values_on_resume_exit_2_and_change_nothing(finished_run, override, fragment, capsys):
    before = _snapshot(finished_run)
    capsys.readouterr()
    assert hrm(["train", "--resume", str(finished_run), "max_steps=8", override]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
    assert _snapshot(finished_run) == before


def _bad_config_yaml(run):
    (run / "config.yaml").write_text("seed: !!python/object/apply:os.getpid []\n")
    return ["train", "--resume", str(run)], "config.yaml"


def _status_types(run, cmd):
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "interrupted", "pid": "not a pid",
                                                 "status_interval_s": "often"}))
    return {"status": ["status", str(run)], "runs": ["runs", str(run.parent)],
            "resume": ["train", "--resume", "auto", f"out_dir={run.parent}"]}[cmd], "status.json"


def _foreign_checkpoint(run):
    import torch

    path = run / "checkpoints" / "step_00000004.pt"
    state = torch.load(path, weights_only=True)
    state["config"] = json.dumps({**json.loads(state["config"]), "arch": {"hidden_size": 64, "num_heads": 4}})
    torch.save(state, path)
    return ["eval", str(path)], "step_00000004.pt"


def _other_shape_data(run, tmp_path):
    data = tmp_path / "maze"
    assert hrm(["data", "maze", "--out", str(data), "--size", "5", "--train", "20", "--test", "8"]) == 0
    return ["eval", str(run), "--data", str(data)], "seq_len"


def _pickled_npz(run, tmp_path):
    path = tmp_path / "fixture.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    spec = {"config": {"seq_len": 4, "vocab_size": 4, "num_puzzle_identifiers": 1, "hidden_size": 8, "num_heads": 2,
                       "H_cycles": 1, "L_cycles": 1, "H_layers": 1, "L_layers": 1, "expansion": 2, "halt_max_steps": 2,
                       "halt_exploration_prob": 0.0, "puzzle_emb_ndim": 0, "pos_encodings": "rope"}}
    (tmp_path / "fixture.json").write_text(json.dumps(spec))
    return ["verify-reference", str(path)], "fixture.npz"


def _latin1_csv(run, tmp_path):
    path = tmp_path / "puzzles.csv"
    path.write_bytes("source,q,a,rating\n".encode() + "caf\xe9,".encode("latin-1") + b"1.2.,1234,0\n")
    return ["data", "sudoku", "--out", str(tmp_path / "csvdata"), "--size", "4", "--from-csv", str(path)], "puzzles.csv"


@pytest.mark.parametrize("make", [
    _bad_config_yaml, lambda run: _status_types(run, "status"),  # --resume auto skips such a run (test_adversarial)
    _foreign_checkpoint, _other_shape_data, _pickled_npz, _latin1_csv,
    lambda run, tmp_path: (["eval", str(run), "--max-examples", "-1"], "--max-examples"),
], ids=["config-yaml-tag", "status-types", "checkpoint-config", "eval-data-shape",
        "pickled-npz", "csv-not-utf8", "max-examples"])
def test_bad_files_exit_2_name_the_path_and_change_nothing(run_copy, tmp_path, capsys, make):
    args, fragment = make(run_copy, tmp_path) if "tmp_path" in make.__code__.co_varnames else make(run_copy)
    before = _snapshot(run_copy)
    capsys.readouterr()
    try:
        code = hrm(args)
    except SystemExit as e:  # argparse: its usage message names the option
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert _snapshot(run_copy) == before


def test_runs_lists_a_run_with_a_broken_status(run_copy, capsys):
    _status_types(run_copy, "runs")
    capsys.readouterr()
    assert hrm(["runs", str(run_copy.parent)]) == 0
    out, err = capsys.readouterr()
    assert " invalid" in out and "status.json" in err and "'pid'" in err


def test_read_only_out_dir_and_full_disk_name_the_path(sudoku4, tmp_path, monkeypatch, capsys):
    import errno

    import hrmkit.fsutil as fsutil

    ro, mkdir = tmp_path / "ro", os.mkdir

    def read_only(path, *args, **kwargs):  # what a read-only mount answers (root ignores a chmod 555)
        if str(path).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return mkdir(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "mkdir", read_only)
        capsys.readouterr()
        assert _train(sudoku4, ro / "runs", "max_steps=2") == 2
        err = capsys.readouterr().err
        assert str(ro / "runs") in err and "Read-only file system" in err and "Traceback" not in err

    real = fsutil.atomic_write_bytes

    def full_disk(path, data):
        if "checkpoints" in str(path):
            raise OSError(28, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(fsutil, "atomic_write_bytes", full_disk)
    monkeypatch.setattr("hrmkit.train.checkpoint.atomic_write_bytes", full_disk)
    capsys.readouterr()
    assert _train(sudoku4, tmp_path / "full", "max_steps=4", "checkpoint_every=2") == 2
    err = capsys.readouterr().err
    assert "step_00000002.pt" in err and "No space left on device" in err and "Traceback" not in err
    assert json.loads((_only_run(tmp_path / "full") / "status.json").read_text())["state"] == "crashed"


def test_run_id_collision_draws_another_id(sudoku4, tmp_path, monkeypatch):
    import hrmkit.train.status as status

    ids = iter(["20260101-000000-aaaa", "20260101-000000-aaaa", "20260101-000000-bbbb"])
    monkeypatch.setattr(status, "new_run_id", lambda: next(ids))
    monkeypatch.setattr("hrmkit.train.run_context.new_run_id", status.new_run_id, raising=False)
    (tmp_path / "20260101-000000-aaaa").mkdir()
    assert _train(sudoku4, tmp_path, "max_steps=2") == 0
    assert (tmp_path / "20260101-000000-bbbb" / "status.json").is_file()
    assert not any((tmp_path / "20260101-000000-aaaa").iterdir())


# --- 8: interrupts and sinks on resume ------------------------------------------------------------------------

def test_sigint_exits_130(sudoku4, tmp_path, monkeypatch):
    """SIGINT (here sent to this process after step 3) checkpoints and exits 130, not 0 (SIGTERM: test_train)."""
    import hrmkit.train.loop as loop

    real = loop.train_step

    def step_then_interrupt(state, rules):
        report = real(state, rules)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return report

    monkeypatch.setattr(loop, "train_step", step_then_interrupt)
    assert _train(sudoku4, tmp_path, "max_steps=50") == 130
    status = json.loads((_only_run(tmp_path) / "status.json").read_text())
    assert status["state"] == "interrupted" and status["global_step"] == 3


def test_tensorboard_gets_config_and_purges_on_resume(sudoku4, tmp_path, monkeypatch):
    import sys
    import types

    made = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            made.append({"purge_step": purge_step, "text": [], "summaries": 0})
            self.file_writer = types.SimpleNamespace(add_summary=lambda s: made[-1].__setitem__(
                "summaries", made[-1]["summaries"] + 1))

        def add_text(self, tag, text, step):
            made[-1]["text"].append((tag, text))

        def add_scalar(self, *a):
            pass

        def flush(self):
            pass

        def close(self):
            pass

    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = Writer
    summary = types.ModuleType("torch.utils.tensorboard.summary")
    summary.hparams = lambda hparams, metrics: ("experiment", "session start", "session end")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard.summary", summary)
    assert _train(sudoku4, tmp_path, "max_steps=4", "log.tensorboard=true", "lr_schedule=constant") == 0
    run = _only_run(tmp_path)
    assert hrm(["train", "--resume", str(run), "max_steps=6"]) == 0
    assert made[0]["purge_step"] is None and made[0]["text"][0][0] == "config" and made[0]["summaries"] == 3
    assert "hidden_size: 32" in made[0]["text"][0][1]
    assert made[1]["purge_step"] == 5  # events past the resumed step 4 are dropped
