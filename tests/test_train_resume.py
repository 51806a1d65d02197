"""In-process training runs: exact resume with every stateful feature on, corrupt checkpoints, `--resume auto`,
divergence guards with rollback, evaluation cadence with the gate, best checkpoint archive and retention,
early stopping, loud diagnosis warnings."""

import json

import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.train import loop
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.loop import train
from test_train import TINY, _cfg, _metrics, _one_thread  # noqa: F401 (autouse fixture)


def _weights(path):
    state = load_checkpoint(path)
    return {**state["model"], **{f"ema.{k}": v for k, v in (state["ema"] or {"shadow": {}})["shadow"].items()}}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


FEATURES = ["max_steps=8", "checkpoint_every=3", "ema=true", "grad_accum_steps=2", "arch.loss.label_smoothing=0.1",
            "lr_schedule=cosine_restarts", "lr_restart_period=3", "eval.fast_every=4", "eval.fast_examples=8",
            "eval_max_examples=8", "eval_batch_size=8", "grad_clip_norm=1.0", "log_every=2"]


def test_interrupt_then_resume_auto_is_exact_with_every_feature(sudoku4, tmp_path, capsys):
    """EMA, accumulation, smoothing, restarts, fast evals and the best tracker all resume bitwise; a truncated
    newest checkpoint and a leftover temporary file are skipped; `--resume auto` finds the interrupted run."""
    straight = train(_cfg(sudoku4, tmp_path / "a", *FEATURES)).run_dir
    result = train(_cfg(sudoku4, tmp_path / "b", *FEATURES), on_step=lambda state: state.step == 5)
    run = result.run_dir
    assert result.state == "interrupted" and result.exit_code == 143
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["global_step"] == 5
    assert [int(p.name[5:13]) for p in list_checkpoints(run)] == [3, 4, 5]  # 4: new best on the fast eval
    newest = list_checkpoints(run)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated by a crash (cannot happen with atomic writes)
    (run / "checkpoints" / ".step_00000006.pt.x1.tmp").write_bytes(b"partial")
    capsys.readouterr()

    with pytest.warns(UserWarning, match="skipping corrupt checkpoint"):
        assert hrm(["train", "--resume", "auto", f"out_dir={tmp_path / 'b'}"]) == 0
    out = capsys.readouterr().out
    assert "skipping corrupt checkpoint" in out and f"resuming {run.name}" in out and "global step 4" in out
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 8
    assert not list((run / "checkpoints").glob(".*.tmp"))
    _assert_same(_weights(list_checkpoints(straight)[-1]), _weights(list_checkpoints(run)[-1]))
    assert json.loads((straight / "status.json").read_text())["best"]["value"] == status["best"]["value"]
    steps = [m["global_step"] for m in _metrics(run) if m["kind"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no duplicated ticks after the resume

    assert hrm(["train", "--resume", "auto", *TINY, f"data_path={sudoku4}", f"out_dir={tmp_path / 'b'}",
                "max_steps=1", "eval_max_examples=8"]) == 0  # nothing left to resume
    assert "starting a new run" in capsys.readouterr().out


def _nan_on_calls(monkeypatch, bad_calls):
    """Make the model's loss NaN on the given (1-based) forward calls."""
    original = loop.build_model

    def build(*args, **kwargs):
        head = original(*args, **kwargs)
        forward, calls = head.forward, {"n": 0}

        def nan_forward(carry, batch, **kw):
            calls["n"] += 1
            carry, loss, metrics, outputs, finished = forward(carry, batch, **kw)
            if calls["n"] in bad_calls:
                loss = loss * float("nan")
            return carry, loss, metrics, outputs, finished

        head.forward = nan_forward
        return head

    monkeypatch.setattr(loop, "build_model", build)


def test_nonfinite_steps_are_skipped_then_rolled_back(sudoku4, tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, {3, 6, 7})
    snapshots = {}

    def snap(state):
        snapshots.setdefault(state.step, {k: v.clone() for k, v in state.model.state_dict().items()})

    run = train(_cfg(sudoku4, tmp_path, "max_steps=10", "checkpoint_every=4", "guards.max_bad_steps=2",
                     "guards.rollback_lr_factor=0.5", "eval_max_examples=8"), on_step=snap).run_dir
    _assert_same(snapshots[2], snapshots[3])  # the bad step 3 did not touch the weights
    assert not torch.equal(snapshots[4]["model.inner.lm_head.weight"], snapshots[3]["model.inner.lm_head.weight"])
    events = [m for m in _metrics(run) if m["kind"] == "event"]
    assert [e["event"] for e in events] == ["bad_step", "bad_step", "bad_step", "rollback"]
    assert [e["global_step"] for e in events] == [3, 6, 7, 4]  # rolled back from 7 to the step-4 checkpoint
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["global_step"] == 10
    assert status["guards"] == {"total_bad": 3, "consecutive": 0, "rollbacks": 1, "lr_scale": 0.5}
    assert load_checkpoint(list_checkpoints(run)[-1])["guards"]["lr_scale"] == 0.5


def _scripted_eval(monkeypatch, scores, flag_from=None):
    """Replace evaluate_split: exact_accuracy from `scores[(kind, step)]` (kind from the subset size)."""
    from hrmkit.eval import evaluate

    seen = []

    def fake(head, split, batch_size, device="cpu", max_examples=None, **kw):
        kind = "fast" if split.num_examples < 64 else "full"
        step = current["state"].step
        seen.append((kind, step))
        value = scores.get((kind, step), 0.0)
        diag = None
        if flag_from is not None and step >= flag_from:
            diag = {"input_invariant": True, "collapsed": False, "warning": "INPUT-INVARIANT: scripted"}
        summary = evaluate.EvalSummary(value, 0.5, split.num_examples, 10, None, None, None)
        baselines = {"copy_input": evaluate.BaselineScore(0.0, 0.0, split.num_examples)}
        return evaluate.EvalResult("sudoku", summary, baselines, {}, {}, None, diag)

    current = {}

    def hook(state):
        current["state"] = state

    monkeypatch.setattr(evaluate, "evaluate_split", fake)
    return seen, hook


def test_gated_full_evaluation(sudoku4, tmp_path, monkeypatch):
    scores = {("fast", 2): 0.1, ("fast", 4): 0.2, ("fast", 6): 0.22, ("fast", 8): 0.25, ("fast", 10): 0.5,
              ("full", 4): 0.3, ("full", 10): 0.6, ("full", 12): 0.55}
    seen, hook = _scripted_eval(monkeypatch, scores)
    run = train(_cfg(sudoku4, tmp_path, "max_steps=12", "checkpoint_every=100", "eval.fast_every=2",
                     "eval.fast_examples=8", "eval.full_every=2", "eval.gate_delta=0.1"), on_step=hook).run_dir
    full = [s for k, s in seen if k == "full"]
    assert full == [2, 4, 10, 12]  # 6 and 8 gated off: fast 0.22, 0.25 < 0.2 + 0.1; 10: 0.5 >= 0.3
    records = [m for m in _metrics(run) if m["kind"] == "eval"]
    assert [m["eval_kind"] for m in records].count("fast") == 5 and "eval_fast/exact_accuracy" in records[0]
    best = json.loads((run / "status.json").read_text())["best"]
    assert best["step"] == 10 and best["value"] == 0.6  # chosen on full evaluations only


def test_best_archive_retention_early_stop_and_loud_diagnosis(sudoku4, tmp_path, monkeypatch, capfd):
    scores = {("fast", 2): 0.1, ("fast", 4): 0.3, ("fast", 6): 0.2, ("fast", 8): 0.2, ("full", 8): 0.25}
    seen, hook = _scripted_eval(monkeypatch, scores, flag_from=6)
    run = train(_cfg(sudoku4, tmp_path, "max_steps=20", "checkpoint_every=1", "keep_checkpoints=1",
                     "eval.fast_every=2", "eval.fast_examples=8", "early_stop_patience=2"), on_step=hook).run_dir
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["stop_reason"] == "early_stop" and status["global_step"] == 8
    assert seen == [("fast", 2), ("fast", 4), ("fast", 6), ("fast", 8), ("full", 8)]
    assert status["best"]["step"] == 4 and status["best"]["value"] == 0.3
    # retention keeps the newest checkpoint and the best one
    assert [p.name for p in list_checkpoints(run)] == ["step_00000004.pt", "step_00000008.pt"]
    best = json.loads((run / "best" / "metrics.json").read_text())
    assert best["step"] == 4 and best["change"]["exact_accuracy"] == pytest.approx(0.2) and best["previous"]["step"] == 2
    assert load_checkpoint(run / "best" / "checkpoint.pt")["step"] == 4
    out, err = capfd.readouterr()
    assert out.count("!!!!! WARNING") == 3 and "INPUT-INVARIANT: scripted" in err  # evals at 6, 8 and the final one
    assert status["last_eval"]["diagnosis"]["input_invariant"] is True
    assert hrm(["status", str(run)]) == 0
    assert "WARNING" in capfd.readouterr().out


def test_a_stateful_segment_loss_plugs_in_and_resumes(sudoku4, tmp_path):
    """The hook a distillation objective uses: `train(segment_loss=...)` computes every segment's loss, and an
    objective with state_dict/load_state_dict is saved in checkpoints and restored on resume."""
    from hrmkit.train.step import act_loss

    class Counting:
        def __init__(self):
            self.segments = 0

        def __call__(self, model, carry, batch):
            self.segments += 1
            return act_loss(model, carry, batch)

        def state_dict(self):
            return {"segments": self.segments}

        def load_state_dict(self, state):
            self.segments = state["segments"]

    first = Counting()
    run = train(_cfg(sudoku4, tmp_path, "max_steps=4", "grad_accum_steps=2", "eval_max_examples=8",
                     "lr_schedule=constant"), segment_loss=first, on_step=lambda s: s.step == 3).run_dir
    assert first.segments == 6 and load_checkpoint(list_checkpoints(run)[-1])["objective"] == {"segments": 6}
    resumed = Counting()
    cfg = _cfg(sudoku4, tmp_path, "max_steps=4", "grad_accum_steps=2", "eval_max_examples=8", "lr_schedule=constant")
    assert train(cfg, resume_dir=str(run), segment_loss=resumed).state == "finished"
    assert resumed.segments == 8  # 6 restored + the 2 segments of step 4


def test_prefetched_batches_train_and_resume_like_drawn_ones(sudoku4, tmp_path):
    """Batches drawn ahead by a thread (`prefetch_batches`, on by default on CUDA) give the same weights, and a
    run interrupted with the sampler ahead resumes at the batch it would have used next."""
    args = ["max_steps=6", "checkpoint_every=2", "grad_accum_steps=2", "log_every=2"]
    plain = train(_cfg(sudoku4, tmp_path / "a", *args, "prefetch_batches=0")).run_dir
    ahead = train(_cfg(sudoku4, tmp_path / "b", *args, "prefetch_batches=3")).run_dir
    _assert_same(_weights(list_checkpoints(plain)[-1]), _weights(list_checkpoints(ahead)[-1]))
    result = train(_cfg(sudoku4, tmp_path / "c", *args, "prefetch_batches=3"), on_step=lambda state: state.step == 3)
    assert result.state == "interrupted"
    assert load_checkpoint(list_checkpoints(result.run_dir)[-1])["sampler"]["step"] == 6  # 3 steps x 2 segments
    assert hrm(["train", "--resume", str(result.run_dir)]) == 0
    _assert_same(_weights(list_checkpoints(plain)[-1]), _weights(list_checkpoints(result.run_dir)[-1]))
