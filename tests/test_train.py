"""Training loop: loss falls, checkpoints resume exactly, SIGTERM checkpoints, status/metrics files."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.config import resolve_config
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train

TINY = [
    "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
    "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "global_batch_size=32",
    "lr=3e-3", "lr_warmup_steps=5", "log_every=5", "eval_batch_size=64", "max_time_s=null",
]


def _cfg(data, out, *extra):
    return resolve_config(preset="demo", overrides=TINY + [f"data_path={data}", f"out_dir={out}", *extra])


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_short_training_lowers_loss_and_writes_run_files(sudoku4, tmp_path):
    run = train(_cfg(sudoku4, tmp_path, "max_steps=60", "checkpoint_every=30"))
    ticks = [m for m in _metrics(run) if m.get("kind") != "eval"]
    assert ticks[-1]["loss"] < 0.8 * ticks[0]["loss"]
    for key in ("run_id", "global_step", "epoch", "epoch_step", "wall_time", "samples_per_s", "lr", "loss", "eta_s"):
        assert key in ticks[0]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 60 and status["run_id"] == run.name
    assert status["last_eval"]["step"] == 60 and status["last_checkpoint"].endswith("step_00000060.pt")
    for key in ("epoch", "samples_per_s", "eta_s", "best", "updated_at"):
        assert key in status
    assert (run / "config.yaml").is_file()
    ckpt = load_checkpoint(list_checkpoints(run)[-1])
    assert {"model", "optimizers", "rng", "sampler", "carry", "step"} <= set(ckpt)


def _final_weights(run):
    return load_checkpoint(list_checkpoints(run)[-1])["model"]


def test_sigterm_checkpoints_and_resume_is_exact(sudoku4, tmp_path):
    """SIGTERM mid-run writes a checkpoint and exits 0; resuming reaches the same weights bitwise."""
    straight = train(_cfg(sudoku4, tmp_path / "a", "max_steps=40", "checkpoint_every=1000"))

    out = tmp_path / "b"
    args = [sys.executable, "-m", "hrmkit.cli", "train", *TINY, f"data_path={sudoku4}", f"out_dir={out}",
            "max_steps=40", "checkpoint_every=1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list(out.glob("*/metrics.jsonl")) if out.exists() else []
        if runs and runs[0].read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    run = next(out.iterdir())
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted", log
    stopped_at = status["global_step"]
    assert 0 < stopped_at < 40, log
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == stopped_at

    assert hrm(["train", "--resume", str(run)]) == 0
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 40
    a, b = _final_weights(straight), _final_weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_eval_json_reports_model_and_copy_baseline(sudoku4, tmp_path, capsys):
    run = train(_cfg(sudoku4, tmp_path, "max_steps=10"))
    capsys.readouterr()
    assert hrm(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["num_examples"] == 64
    for key in ("exact_accuracy", "token_accuracy", "num_examples"):
        assert key in result["summary"]
    assert result["baselines"]["copy_input"]["exact_accuracy"] == 0.0  # every puzzle has blanks to fill


@pytest.mark.parametrize("cmd", [[], ["data", "sudoku"], ["train"], ["eval"], ["status"]])
def test_help_describes_every_option(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        hrm([*cmd, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "usage: hrm" in text


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert hrm(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
