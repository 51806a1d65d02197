"""Data-parallel training on CPU (gloo on 127.0.0.1): 2 processes on the same global batch produce the same
weights as 1 process (within float tolerance), including the all-gathered puzzle-embedding update; only rank
0 writes files; a 2-process run resumes exactly from its per-rank carry and RNG."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from hrmkit.presets import resolve_config
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train
from test_train import SUBPROCESS_ENV, TINY, _metrics, _one_thread  # noqa: F401 (autouse fixture)

# No exploration: its random draws depend on how rows are split over ranks; everything else must match.
COMMON = ["arch.halt_exploration_prob=0", "checkpoint_every=100", "eval_max_examples=8", "eval_batch_size=8"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world, args, torchrun=False):
    port = _free_port()
    if torchrun:
        cmd = [shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun", "--nproc-per-node",
               str(world), "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "hrmkit.cli", *args]
        return [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=SUBPROCESS_ENV)]
    procs = []
    for rank in range(world):
        env = {**SUBPROCESS_ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "-m", "hrmkit.cli", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=env))
    return procs


def _wait(procs, timeout=240):
    logs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        logs.append(out)
    for p, out in zip(procs, logs):
        assert p.returncode == 0, "\n".join(logs)
    return logs


def _model(run):
    return load_checkpoint(list_checkpoints(run)[-1])["model"]


def _close(a, b, atol=2e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_two_processes_match_one_process(sudoku4, tmp_path):
    args = [*TINY, f"data_path={sudoku4}", "max_steps=6", *COMMON]
    one = train(resolve_config(preset="demo", overrides=[*args, f"out_dir={tmp_path / 'one'}"])).run_dir
    logs = _wait(_launch(2, ["train", *args, f"out_dir={tmp_path / 'two'}"]))
    runs = list((tmp_path / "two").iterdir())
    assert len(runs) == 1, logs  # rank 1 writes nothing
    status = json.loads((runs[0] / "status.json").read_text())
    assert status["state"] == "finished" and status["world_size"] == 2 and status["global_step"] == 6
    assert "step 6/6" in logs[0] and "step 6/6" not in logs[1]  # only rank 0 logs
    ticks = [[m for m in _metrics(r) if m["kind"] == "train"] for r in (one, runs[0])]
    for x, y in zip(*ticks):  # metrics are reduced over ranks: the same numbers as one process
        assert x["global_step"] == y["global_step"] and x["loss"] == pytest.approx(y["loss"], rel=1e-4)
        assert x["accuracy"] == pytest.approx(y["accuracy"], rel=1e-4) and x["steps"] == y["steps"]
    a, b = _model(one), _model(runs[0])
    assert not torch.equal(a["model.inner.puzzle_emb.weights"], torch.zeros_like(a["model.inner.puzzle_emb.weights"]))
    _close(a, b)


@pytest.mark.slow
def test_torchrun_interrupted_run_resumes_exactly(sudoku4, tmp_path):
    """torchrun launch; a 2-process run stopped at step 4 and resumed equals a straight 2-process run."""
    args = [*TINY, f"data_path={sudoku4}", *COMMON, "arch.halt_exploration_prob=0.1", "checkpoint_every=4",
            "lr_schedule=constant"]  # the schedule must not depend on max_steps here
    _wait(_launch(2, ["train", *args, "max_steps=8", f"out_dir={tmp_path / 'straight'}"], torchrun=True))
    _wait(_launch(2, ["train", *args, "max_steps=4", f"out_dir={tmp_path / 'split'}"], torchrun=True))
    run = next((tmp_path / "split").iterdir())
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["world_size"] == 2 and len(state["rank_states"]) == 2
    _wait(_launch(2, ["train", "--resume", str(run), "max_steps=8"], torchrun=True))
    straight = next((tmp_path / "straight").iterdir())
    a, b = _model(straight), _model(run)
    for k in a:
        assert torch.equal(a[k], b[k]), k
