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
from hrmkit.presets import resolve_config
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train

TINY = [
    "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
    "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "global_batch_size=32",
    "lr=3e-3", "lr_warmup_steps=5", "log_every=5", "eval_batch_size=64", "max_time_s=null",
]


# Tiny models run far faster on one thread when the 2 CI cores are shared; subprocesses get the same.
SUBPROCESS_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hrm_process(*args, log=None):
    """Start `python -m hrmkit.cli ARGS` (stdout+stderr to `log` or a pipe)."""
    return subprocess.Popen([sys.executable, "-m", "hrmkit.cli", *map(str, args)], stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=SUBPROCESS_ENV)


def _cfg(data, out, *extra):
    return resolve_config(preset="demo", overrides=TINY + [f"data_path={data}", f"out_dir={out}", *extra])


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_short_training_lowers_loss_and_writes_run_files(sudoku4, tmp_path):
    run = train(_cfg(sudoku4, tmp_path, "max_steps=60", "checkpoint_every=30")).run_dir
    ticks = [m for m in _metrics(run) if m.get("kind") != "eval"]
    assert ticks[-1]["loss"] < 0.8 * ticks[0]["loss"]
    for key in ("run_id", "global_step", "epoch", "epoch_step", "wall_time", "samples_per_s", "lr", "loss", "eta_s",
                "grad_norm", "bad_steps"):
        assert key in ticks[0]
    assert [t["global_step"] for t in ticks] == list(range(5, 61, 5)) and all(t["kind"] == "train" for t in ticks)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 60 and status["run_id"] == run.name
    assert status["last_eval"]["step"] == 60 and status["last_checkpoint"].endswith("step_00000060.pt")
    for key in ("pid", "host", "epoch", "samples_per_s", "eta_s", "best", "updated_at", "total_steps", "memory"):
        assert key in status
    assert status["memory"]["peak_cpu_rss_mb"] > 0 and status["best"]["metric"] == "exact_accuracy"
    assert not (run / "run.lock").exists()  # released at the end
    assert (run / "best" / "checkpoint.pt").is_file() and (run / "best" / "metrics.json").is_file()
    assert (run / "config.yaml").is_file()
    ckpt = load_checkpoint(list_checkpoints(run)[-1])
    assert {"model", "optimizers", "rng", "sampler", "carry", "step"} <= set(ckpt)


def _final_weights(run):
    return load_checkpoint(list_checkpoints(run)[-1])["model"]


def _ticks(run):
    """Logged training ticks without the timing fields."""
    timing = ("run_id", "wall_time", "samples_per_s", "eta_s")
    return [{k: v for k, v in m.items() if k not in timing} for m in _metrics(run) if m["kind"] == "train"]


def test_sigterm_checkpoints_and_resume_is_exact(sudoku4, tmp_path):
    """SIGTERM mid-run writes a checkpoint and exits 143 (a scheduler requeues it); resuming reaches the same
    weights bitwise, and logs the same ticks (the open log window is part of the checkpoint)."""
    straight = train(_cfg(sudoku4, tmp_path / "a", "max_steps=40", "checkpoint_every=1000")).run_dir

    out = tmp_path / "b"
    args = [sys.executable, "-m", "hrmkit.cli", "train", *TINY, f"data_path={sudoku4}", f"out_dir={out}",
            "max_steps=40", "checkpoint_every=1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=SUBPROCESS_ENV)
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list(out.glob("*/metrics.jsonl")) if out.exists() else []
        if runs and runs[0].read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, log
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
    assert _ticks(run) == _ticks(straight), stopped_at


def test_eval_json_reports_model_and_copy_baseline(sudoku4, tmp_path, capsys):
    run = train(_cfg(sudoku4, tmp_path, "max_steps=10")).run_dir
    capsys.readouterr()
    assert hrm(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["n_examples"] == 64
    for key in ("exact_accuracy", "token_accuracy", "n_examples"):
        assert key in result["summary"]
    assert result["baselines"]["copy_input"]["exact_accuracy"] == 0.0  # every puzzle has blanks to fill


@pytest.mark.parametrize("cmd", [[], ["data", "sudoku"], ["train"], ["eval"], ["status"], ["runs"]])
def test_help_describes_every_option(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        hrm([*cmd, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "usage: hrm" in text


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert hrm(["train", "--resume", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_train_help_lists_nested_keys(capsys):
    with pytest.raises(SystemExit):
        hrm(["train", "--help"])
    text = capsys.readouterr().out
    for key in ("eval.fast_every", "eval.gate_delta", "guards.max_bad_steps", "log.tensorboard", "lr_schedule",
                "grad_accum_steps", "status_interval_s", "--resume RUN_DIR|auto"):
        assert key in text, key


def test_config_errors_come_before_a_run_folder_exists(sudoku4, tmp_path, monkeypatch):
    from hrmkit.errors import HrmkitError

    with pytest.raises(HrmkitError, match="global_batch_size=auto needs a CUDA device"):
        train(_cfg(sudoku4, tmp_path, "global_batch_size=auto", "device=cpu"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert hrm(["train", *TINY, f"data_path={sudoku4}", f"out_dir={tmp_path}", "log.tensorboard=true"]) == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_compile_matches_eager(sudoku4, tmp_path):
    """torch.compile on request (CPU inductor: needs a C compiler; slow to compile)."""
    args = ("max_steps=6", "arch.halt_exploration_prob=0", "eval_max_examples=8")
    a = _final_weights(train(_cfg(sudoku4, tmp_path / "a", *args)).run_dir)
    b = _final_weights(train(_cfg(sudoku4, tmp_path / "b", *args, "compile=true")).run_dir)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_every_option_of_every_command_has_help():
    import argparse

    from hrmkit.cli import build_parser

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.option_strings and not action.help:
                missing.append((" ".join(path), action.option_strings))

    walk(build_parser(), ["hrm"])
    assert not missing
