"""Issue #21's second adversarial round (items 1-4 and 7), each failure reproduced through the `hrm` command or
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
    from hrmkit.config import resolve_config
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

@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
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
