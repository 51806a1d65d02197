"""Run folders: the writer lock (live holder refused, stale one taken over), observed states, `hrm runs` and
`hrm status` on a live, a paused (stale) and a killed (crashed) training process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from hrmkit.cli import main as hrm
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_json
from hrmkit.train.run_folders import RunLock, find_resumable, list_runs, observe_state, pid_alive
from hrmkit.train.status import utc_now
from test_train import TINY, hrm_process


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _status(run, **fields):
    base = {"run_id": run.name, "pid": os.getpid(), "host": socket.gethostname(), "state": "running",
            "global_step": 5, "total_steps": 10, "status_interval_s": 60, "updated_at": utc_now(), "task": "sudoku",
            "best": {"metric": "exact_accuracy", "value": 0.5, "step": 4, "checkpoint": "x"}}
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "status.json", {**base, **fields})


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    with RunLock(run) as lock:
        info = json.loads((run / "run.lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and "started_at" in info
        with pytest.raises(HrmkitError, match=f"being written by pid {os.getpid()}"):
            RunLock(run).acquire()
        assert lock.took_over is None
    assert not (run / "run.lock").exists()
    dead = _dead_pid()
    atomic_write_json(run / "run.lock", {"pid": dead, "host": socket.gethostname(), "started_at": utc_now()})
    lock = RunLock(run).acquire()
    assert lock.took_over["pid"] == dead
    lock.release()
    atomic_write_json(run / "run.lock", {"pid": 1, "host": "elsewhere", "started_at": utc_now()})
    with pytest.raises(HrmkitError, match="on host elsewhere"):
        RunLock(run).acquire()


def test_observed_states_and_listing(tmp_path, capsys):
    assert pid_alive(os.getpid()) and not pid_alive(_dead_pid()) and not pid_alive(None)
    _status(tmp_path / "a-running")
    _status(tmp_path / "b-crashed", pid=_dead_pid())
    _status(tmp_path / "c-stale", status_interval_s=1, updated_at="2020-01-01T00:00:00+00:00")
    _status(tmp_path / "d-finished", state="finished")
    _status(tmp_path / "e-interrupted", state="interrupted")
    (tmp_path / "not-a-run").mkdir()
    states = {r["run_id"]: r["state"] for r in list_runs(tmp_path)}
    assert states == {"a-running": "running", "b-crashed": "crashed", "c-stale": "stale", "d-finished": "finished",
                      "e-interrupted": "interrupted"}
    assert hrm(["runs", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["RUN", "TASK", "PRESET", "STEP", "BEST", "STATE"]
    assert table[2].split()[:4] == ["b-crashed", "sudoku", "-", "5/10"] and "exact_accuracy 0.5000 @4" in table[2]
    assert hrm(["runs", str(tmp_path / "nope")]) == 2
    for run in tmp_path.glob("?-*"):
        (run / "config.yaml").write_text("preset: demo\n")
    assert find_resumable(tmp_path) == tmp_path / "e-interrupted"
    assert find_resumable(tmp_path, preset="hrm-arc") is None
    assert observe_state(tmp_path / "not-a-run") == "unknown"


def _wait_for(predicate, timeout=120.0, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status_json(run, capsys):
    capsys.readouterr()
    assert hrm(["status", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_and_runs_on_a_live_paused_and_killed_run(sudoku4, tmp_path, capsys):
    out = tmp_path / "runs"
    proc = hrm_process("train", *TINY, f"data_path={sudoku4}", f"out_dir={out}", "max_steps=100000",
                       "checkpoint_every=2", "status_interval_s=0.5", "log_every=1")
    try:
        run = _wait_for(lambda: next(out.glob("*/status.json"), None), what="status.json").parent
        _wait_for(lambda: json.loads((run / "status.json").read_text()).get("global_step", 0) >= 2, what="step 2")
        status = _status_json(run, capsys)
        assert status["observed_state"] == "running" and status["pid"] == proc.pid
        assert status["memory"]["peak_cpu_rss_mb"] > 0 and status["task"] == "sudoku"
        assert hrm(["runs", str(out)]) == 0
        assert " running " in capsys.readouterr().out
        assert hrm(["train", "--resume", str(run)]) == 2  # a second writer is refused
        assert f"being written by pid {proc.pid}" in capsys.readouterr().err

        proc.send_signal(signal.SIGSTOP)  # a hung process: alive, no heartbeat
        time.sleep(2.5)
        status = _status_json(run, capsys)
        assert status["observed_state"] == "stale" and status["heartbeat_age_s"] > 1.5
        assert hrm(["status", str(run)]) == 0
        assert "stale (status.json says running)" in capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait()
    assert _status_json(run, capsys)["observed_state"] == "crashed"
    assert hrm(["runs", str(out)]) == 0
    assert " crashed " in capsys.readouterr().out
    assert find_resumable(out) == run
