"""A second adversarial round, each failure reproduced through the `hrm` command or
the function it names: no requeue loop, no demo data at a mistyped data_path, no overwritten results, no
validation that passes a broken model, no leftovers and no message without the file."""

import json
import os
import shutil
import signal

import pytest

from hrmkit.cli import main as hrm
from test_train import _one_thread  # noqa: F401 (autouse fixture)
from test_train_failures import TINY, _only_run, _records, _snapshot, _train


def _interrupt_at(monkeypatch, at_step, signum=signal.SIGTERM):
    """Send `signum` to this process right after global step `at_step` (as a scheduler's preemption would)."""
    import hrmkit.train.loop as loop

    real = loop.train_step

    def step_then_signal(state, rules):
        report = real(state, rules)
        if state.step == at_step:
            os.kill(os.getpid(), signum)
        return report

    monkeypatch.setattr(loop, "train_step", step_then_signal)


# --- 1: a resume at max_steps finishes, it does not exit 143 again ---------------------------------------------

@pytest.mark.parametrize("max_steps", [4, 3])
def test_resume_at_or_past_max_steps_evaluates_and_exits_0(sudoku4, tmp_path, monkeypatch, capsys, max_steps):
    _interrupt_at(monkeypatch, 4)
    assert _train(sudoku4, tmp_path, "max_steps=20") == 143
    run = _only_run(tmp_path)
    monkeypatch.undo()
    for _ in range(2):  # a scheduler that requeues on 143 stops requeueing: the second call has nothing to do
        assert hrm(["train", "--resume", str(run), f"max_steps={max_steps}"]) == 0
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 4 and status["stop_reason"] == "completed"
    assert [r["global_step"] for r in _records(run, "eval")] == [4]  # the final evaluation ran, once
    assert "Traceback" not in capsys.readouterr().err


# --- 2: demo data only at the demo preset's own path ------------------------------------------------------------

def test_mistyped_data_path_exits_2_and_writes_nothing(tmp_path, capsys):
    typo = tmp_path / "typo"
    out = tmp_path / "runs"
    # small recipe keys so that the old behaviour (build the demo data there and train) fails quickly
    code = hrm(["train", *TINY, f"data_path={typo}", f"out_dir={out}", "max_steps=2", "demo_data.train=20",
                "demo_data.test=8", "demo_data.num_aug=0"])
    err = capsys.readouterr().err
    assert code == 2 and f"data_path={str(typo)!r}" in err and "Traceback" not in err
    assert not typo.exists() and not (out.exists() and any(out.iterdir()))


def test_mistyped_data_path_on_resume_and_distill_writes_nothing(sudoku4_run, tmp_path, capsys):
    run = shutil.copytree(sudoku4_run, tmp_path / "run")
    before = _snapshot(run)
    typo = tmp_path / "typo"
    small = ["demo_data.train=20", "demo_data.test=8", "demo_data.num_aug=0", "max_steps=14"]
    assert hrm(["train", "--resume", str(run), f"data_path={typo}", *small]) == 2
    assert not typo.exists() and _snapshot(run) == before
    out = tmp_path / "students"
    assert hrm(["distill", "--teacher", str(run), f"data_path={typo}", f"out_dir={out}", *small]) == 2
    assert not typo.exists() and not (out.exists() and any(out.iterdir()))
    assert "Traceback" not in capsys.readouterr().err


def test_demo_preset_still_builds_its_own_path(tmp_path, monkeypatch):
    """The rule's other side: the demo preset's own data_path (relative to the working folder) is built."""
    from hrmkit.presets import resolve_config
    from hrmkit.train.data import demo_data_path, ensure_demo_data

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(preset="demo-4x4", overrides=["demo_data.train=20", "demo_data.test=8"])
    assert demo_data_path(cfg) is not None
    ensure_demo_data(cfg)
    assert (tmp_path / cfg.data_path / "train").is_dir()
    assert demo_data_path(resolve_config(preset="demo-4x4", overrides=["data_path=elsewhere"])) is None


# --- 3: a partial evaluation never replaces a full one; an existing report is kept ----------------------------

from test_eval_arc_end_to_end import arc_data, fake_checkpoints  # noqa: E402,F401 (fixtures: a tiny ARC dataset)


def _eval(capsys, *args):
    capsys.readouterr()
    code = hrm(["eval", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_partial_evaluation_never_replaces_a_full_submission(fake_checkpoints, tmp_path, capsys):
    oracle, _ = fake_checkpoints
    rep = tmp_path / "rep"
    code, full, _ = _eval(capsys, oracle, "--report", rep)
    assert code == 0 and full["submission"] == str(rep / "submission.json")
    before = (rep / "submission.json").read_bytes()
    code, part, _ = _eval(capsys, oracle, "--report", rep, "--overwrite", "--max-examples", "4")
    assert code == 0 and part["n_examples"] == 4
    assert part["submission"] == str(rep / "submission.partial.json")
    assert (rep / "submission.json").read_bytes() == before
    assert set(json.loads((rep / "submission.partial.json").read_text())) < set(json.loads(before))


def test_existing_report_is_kept_unless_overwrite(fake_checkpoints, tmp_path, capsys):
    oracle, identity_only = fake_checkpoints
    rep = tmp_path / "rep"
    assert _eval(capsys, oracle, "--report", rep)[0] == 0
    before = _snapshot(rep)
    code, _, err = _eval(capsys, identity_only, "--report", rep)
    assert code == 2 and str(rep / "report.html") in err and "--overwrite" in err and "Traceback" not in err
    assert _snapshot(rep) == before
    code, r, _ = _eval(capsys, identity_only, "--report", rep, "--overwrite")
    assert code == 0 and r["pass@1"] < 1.0 and _snapshot(rep) != before


# --- 4: validation fails a model whose outputs are not finite ---------------------------------------------------

@pytest.mark.parametrize("fmt", ["safetensors", pytest.param("onnx", marks=pytest.mark.slow)])
def test_export_validate_fails_on_nan_weights(sudoku4_run, tmp_path, capsys, fmt):
    import torch

    from hrmkit.train.checkpoint import list_checkpoints

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    saved = torch.load(list_checkpoints(sudoku4_run)[-1], map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        for tensor in (saved.get(key) or {}).values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    broken = tmp_path / "nan.pt"
    torch.save(saved, broken)
    capsys.readouterr()
    code = hrm(["export", str(broken), "--out", str(tmp_path / "out"), "--format", fmt, "--validate", "--json",
                "--max-examples", "16"])
    out, err = capsys.readouterr()
    v = json.loads(out)["validation"]
    assert code != 0 and not v["ok"] and "Traceback" not in err
    assert v["non_finite"]["pytorch"] > 0 and v["non_finite"]["export"] > 0
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "**FAIL**" in card and "non-finite" in card


# --- 7: leftovers and messages --------------------------------------------------------------------------------

SUDOKU4 = ["data", "sudoku", "--size", "4", "--train", "20", "--test", "8", "--seed", "0", "--workers", "1"]


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_leftover_of_a_killed_build_is_swept_on_the_next_run(tmp_path, capsys):
    """kill -9 in the middle of a build leaves its temporary folder; the next build beside it removes it (its
    writer is dead), and keeps temporaries of live writers."""
    import socket
    import subprocess
    import sys

    from hrmkit.fsutil import temporary_prefix

    out = tmp_path / "ds"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, hrmkit.fsutil as f\n"
        f"cm = f.atomic_directory({str(out)!r})\ntmp = cm.__enter__()\n"
        "(tmp / 'train').mkdir(); (tmp / 'train' / 'x.npy').write_bytes(b'partial')\n"
        "os.kill(os.getpid(), 9)\n")], env={**os.environ})
    assert killed.returncode == -9
    left = _hidden(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".ds.{socket.gethostname().replace('.', '_')}-")
    live = tmp_path / f"{temporary_prefix('other')}abc123.tmp"  # this process is alive: not swept
    live.mkdir()
    foreign = tmp_path / ".ds.otherhost-1.abc123.tmp"  # another host: cannot be checked, not swept
    foreign.mkdir()
    capsys.readouterr()
    assert hrm([*SUDOKU4, "--out", str(out)]) == 0
    assert left[0] in capsys.readouterr().err  # said what it removed
    assert _hidden(tmp_path) == sorted([live.name, foreign.name]) and (out / "train").is_dir()


def test_sigterm_during_a_data_build_cleans_up_and_exits_143(tmp_path, monkeypatch, capsys):
    import hrmkit.data.sudoku as sudoku

    real = sudoku.write_identifiers

    def terminated_midway(*args, **kwargs):
        # without a handler SIGTERM would kill the test process itself
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM is not handled: the build dies mid-write"
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(sudoku, "write_identifiers", terminated_midway)
    out = tmp_path / "ds"
    assert hrm([*SUDOKU4, "--out", str(out)]) == 143
    assert "Traceback" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary folder
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive the command



def test_sigterm_during_an_export_cleans_up_and_exits_143(sudoku4_run, tmp_path, monkeypatch, capsys):
    import hrmkit.deploy.export as export

    real = export.write_safetensors

    def terminated_midway(*args, **kwargs):  # the weights are written, config.json is next
        real(*args, **kwargs)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM is not handled: the export dies mid-write"
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(export, "write_safetensors", terminated_midway)
    assert hrm(["export", str(sudoku4_run), "--out", str(tmp_path / "exported")]) == 143
    assert "Traceback" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

def test_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    import errno

    from hrmkit.fsutil import atomic_write_bytes

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write/fsync raise it: no file name

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "status.json", b"{}")
    assert info.value.filename == str(tmp_path / "status.json") and _hidden(tmp_path) == []
    out = tmp_path / "ds"
    capsys.readouterr()
    assert hrm([*SUDOKU4, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err and "?:" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_metrics_sink_names_its_file_on_a_full_disk(tmp_path):
    from hrmkit.train.sinks import JsonlSink

    sink = JsonlSink(tmp_path / "metrics.jsonl")

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    sink.file.close()
    sink.file = Full()
    with pytest.raises(OSError) as info:
        sink.write({"a": 1})
    assert info.value.filename == str(tmp_path / "metrics.jsonl")


def test_failed_gif_keeps_the_answer(sudoku4_run, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    capsys.readouterr()
    code = hrm(["solve", "--checkpoint", str(sudoku4_run), "1...3....1..2...", "--gif", str(blocker / "think.gif")])
    out, err = capsys.readouterr()
    assert code == 2 and "Answer:" in out and "ran 3 segments" in out  # the computed answer is printed
    assert "--gif" in err and str(blocker) in err and "Traceback" not in err
    code = hrm(["solve", "--checkpoint", str(sudoku4_run), "1...3....1..2...", "--json", "--gif",
                str(blocker / "think.gif")])
    r = json.loads(capsys.readouterr().out)
    assert code == 2 and r["answer"] and r["gif"] is None and str(blocker) in r["gif_error"]


def test_resume_auto_skips_an_unreadable_sibling(sudoku4, tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 2)
    assert _train(sudoku4, tmp_path, "max_steps=4") == 143
    run = _only_run(tmp_path)
    monkeypatch.undo()
    broken = tmp_path / "99991231-235959-zzzz"  # newer by name: looked at first
    shutil.copytree(run, broken)
    (broken / "status.json").write_text("{not json")
    capsys.readouterr()
    assert hrm(["train", "--resume", "auto", *TINY, f"data_path={sudoku4}", f"out_dir={tmp_path}",
                "max_steps=4"]) == 0
    out, err = capsys.readouterr()
    assert f"skipping {broken}" in err and "status.json" in err and f"resuming {run}" in out
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert (broken / "status.json").read_text() == "{not json"


def test_heartbeat_in_the_future_is_not_running(tmp_path, capsys):
    import datetime as dt
    import socket

    from hrmkit.fsutil import atomic_write_json
    from hrmkit.train.run_folders import observe_state

    run = tmp_path / "run"
    run.mkdir()
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    atomic_write_json(run / "status.json", {"run_id": "run", "pid": os.getpid(), "host": socket.gethostname(),
                                            "state": "running", "status_interval_s": 60, "updated_at": future})
    assert observe_state(run) == "stale"
    capsys.readouterr()
    assert hrm(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "stale" in out and "in the future" in out


def test_csv_header_with_a_utf8_bom_is_accepted(tmp_path):
    from hrmkit.data import sudoku

    import numpy as np

    rows = []
    for i in range(8):
        p, s = sudoku.generate_puzzle((2, 2), np.random.default_rng([5, i]))
        rows.append(f"gen,{sudoku.grid_string(p)},{''.join(map(str, s))},{i}")
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + ("source,q,a,rating\n" + "\n".join(rows) + "\n").encode())
    assert hrm(["data", "sudoku", "--out", str(tmp_path / "ds"), "--from-csv", str(csv), "--test-fraction", "0.25",
                "--workers", "1"]) == 0


def test_default_student_of_a_small_trm_is_valid():
    from hrmkit.config import ArchConfig
    from hrmkit.train.distill_loss import half_width

    teacher = ArchConfig(name="trm", hidden_size=32, num_heads=2, H_layers=0, L_layers=1, puzzle_emb_ndim=64,
                         puzzle_emb_len=2, pos_encodings="none")
    student = ArchConfig.model_validate(half_width(teacher))
    assert student.hidden_size == 16 and student.puzzle_emb_ndim == 32 and student.puzzle_emb_len == 2
    tied = ArchConfig(name="trm", hidden_size=32, num_heads=2, H_layers=0, L_layers=1, puzzle_emb_ndim=32,
                      puzzle_emb_len=1, pos_encodings="none")
    assert ArchConfig.model_validate(half_width(tied)).puzzle_emb_ndim == 16
