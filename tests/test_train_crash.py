"""Scripted crashes: SIGKILL a CPU training at random moments (with checkpoint_every=1 most kills land during or
near a checkpoint write), resume with `hrm train --resume RUN_DIR` after each. The run must reach its planned
final step with no corrupt checkpoint, each kill must lose at most the step in flight, and the final weights
must equal those of an uninterrupted run."""

import json
import random
import time

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train
from test_train import TINY, _cfg, _metrics, _one_thread, hrm_process  # noqa: F401 (autouse fixture)

COMMON = ["checkpoint_every=1", "keep_checkpoints=2", "eval.fast_every=5",
          "eval.fast_examples=8", "eval_max_examples=8", "eval_batch_size=8", "log_every=1", "status_interval_s=0.2",
          "ema=true"]


def _newest_step(run):
    found = list_checkpoints(run) if run is not None else []
    return int(found[-1].name[5:13]) if found else -1


def _crash_loop(sudoku4, tmp_path, kills, seed, steps):
    common = [f"max_steps={steps}", *COMMON]
    reference = train(_cfg(sudoku4, tmp_path / "reference", *common)).run_dir
    out, run, rng, log = tmp_path / "crash", None, random.Random(seed), []
    for i in range(kills):
        before = _newest_step(run)
        proc = (hrm_process("train", *TINY, f"data_path={sudoku4}", f"out_dir={out}", *common) if run is None
                else hrm_process("train", "--resume", run))
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # let it make progress before the kill
            if run is None and out.exists():
                run = next(out.iterdir(), None)
            if _newest_step(run) > before:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        output = proc.stdout.read()
        assert proc.returncode in (-9, 0), output
        leftovers = output.count("left by an interrupted write")  # a kill landed inside an atomic write
        for path in list_checkpoints(run):  # nothing corrupt, ever
            load_checkpoint(path)
        ticks = [m["global_step"] for m in _metrics(run) if m.get("kind") == "train"] if (run / "metrics.jsonl").exists() else []
        newest = _newest_step(run)
        log.append((i, newest, max(ticks, default=0), leftovers))
        assert newest >= max(ticks, default=0) - 1, log  # a SIGKILL loses at most the step in flight
        state = json.loads((run / "status.json").read_text())["state"]
        if proc.returncode == 0 or state == "finished":
            break
    assert hrm(["train", "--resume", str(run)]) == 0
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == steps, log
    for path in list_checkpoints(run):
        load_checkpoint(path)
    a, b = load_checkpoint(list_checkpoints(reference)[-1]), load_checkpoint(list_checkpoints(run)[-1])
    for key in ("model",):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (name, log)
    for name in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][name], b["ema"]["shadow"][name]), (name, log)
    return log


def test_ten_random_kills_then_exact_completion(sudoku4, tmp_path):
    log = _crash_loop(sudoku4, tmp_path, kills=10, seed=2, steps=80)
    assert len(log) == 10
    print("kills (index, newest checkpoint, last logged step, leftovers found by this resume):", log)


@pytest.mark.slow
def test_thirty_random_kills_then_exact_completion(sudoku4, tmp_path):
    log = _crash_loop(sudoku4, tmp_path, kills=30, seed=3, steps=200)
    assert len(log) == 30
