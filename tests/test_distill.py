"""`hrm distill`: the student's loss falls, the default student is half the teacher's width, the comparison
(distill.json, report) is written, SIGTERM exits 143 and the resumed run equals an uninterrupted one, bad
distill.* values are refused; the teacher's carry follows the student's halting (DistillLoss unit tests)."""

import json
import os
import signal

import pytest
import torch
import yaml

from hrmkit.cli import main as hrm
from hrmkit.config import ArchConfig, DistillConfig
from hrmkit.data.format import load_split
from hrmkit.data.sampler import test_batches
from hrmkit.models import build_model
from hrmkit.presets import resolve_config
from hrmkit.train.checkpoint import list_checkpoints, load_checkpoint
from hrmkit.train.distill_loss import DistillLoss, half_width
from hrmkit.train.loop import train
from test_train import _metrics, _one_thread  # noqa: F401 (autouse fixture)

TINY_CPU = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
            "arch.L_cycles=1", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=0", "global_batch_size=16",
            "device=cpu"]
SHORT = ["lr=3e-3", "lr_warmup_steps=5", "log_every=5", "max_time_s=null", "eval_batch_size=64"]


@pytest.fixture(scope="module")
def teacher(sudoku4, tmp_path_factory):
    """A tiny HRM teacher trained for 60 steps on the 4x4 Sudoku data (its run folder)."""
    torch.set_num_threads(1)
    cfg = resolve_config(preset="demo-4x4", overrides=TINY_CPU + SHORT + [
        f"data_path={sudoku4}", f"out_dir={tmp_path_factory.mktemp('teacher')}", "max_steps=60"])
    return train(cfg).run_dir


def _only_run(folder):
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def _ticks(run):
    return [{k: v for k, v in m.items() if k not in ("run_id", "wall_time", "samples_per_s", "eta_s")}
            for m in _metrics(run) if m["kind"] == "train"]


def test_distill_trains_a_half_width_student_and_writes_the_comparison(teacher, tmp_path, capsys):
    assert hrm(["distill", "--teacher", str(teacher), f"out_dir={tmp_path}", "max_steps=30", "log_every=5"]) == 0
    out = capsys.readouterr().out
    run = _only_run(tmp_path)
    ticks = [m for m in _metrics(run) if m["kind"] == "train"]
    assert ticks[-1]["loss"] < 0.8 * ticks[0]["loss"]
    assert all(m["distill_kl"] > 0 for m in ticks)  # DistillLoss's own metric reaches metrics.jsonl
    cfg = resolve_config(base=yaml.safe_load((run / "config.yaml").read_text()))
    t = load_checkpoint(list_checkpoints(teacher)[-1])
    assert (cfg.arch.hidden_size, cfg.arch.num_heads) == (16, 1)  # teacher 32 / 2: head size 16 kept
    assert cfg.arch.H_layers == 1 and cfg.arch.halt_max_steps == 2
    assert cfg.data_path == json.loads(t["config"])["data_path"]
    assert cfg.distill.teacher == str(list_checkpoints(teacher)[-1])
    assert json.loads((run / "status.json").read_text())["state"] == "finished"

    result = json.loads((run / "distill.json").read_text())
    assert result["teacher"]["arch"]["hidden_size"] == 32 and result["student"]["arch"]["hidden_size"] == 16
    assert 0 < result["student"]["parameters"] < 0.5 * result["teacher"]["parameters"]
    for side in ("teacher", "student"):
        r = result[side]
        assert r["n_examples"] == 64 and 0 <= r["exact_accuracy"] <= 1 and r["cpu_ms_per_puzzle"] > 0
    assert result["baselines"]["copy_input"]["exact_accuracy"] == 0.0
    assert result["latency"]["torch_threads"] == 1 and result["latency"]["batch"] == 64
    assert result["distill"] == {"temperature": 2.0, "alpha": 0.5, "halting_targets": True}
    assert "student vs teacher" in out and "copy_input" in out and "CPU ms/puzzle (batch 64, 1 thread)" in out
    assert result["table"] in out
    report = (run / "report" / "report.html").read_text()
    assert "Distilled from the teacher" in report and "teacher step_00000060.pt" in report


def test_sigterm_then_resume_equals_an_uninterrupted_run(teacher, tmp_path, monkeypatch):
    """The teacher's carry is checkpointed: a run stopped by SIGTERM (exit 143) and resumed logs the same losses
    and ends with the same weights as one that ran through."""
    args = ["distill", "--teacher", str(teacher), "max_steps=12", "log_every=1", "checkpoint_every=1000",
            "eval_max_examples=16", "lr_schedule=constant"]
    assert hrm([*args, f"out_dir={tmp_path / 'a'}"]) == 0
    straight = _only_run(tmp_path / "a")

    real, calls = DistillLoss.__call__, {"n": 0}

    def segment_then_sigterm(self, *a):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *a)

    monkeypatch.setattr(DistillLoss, "__call__", segment_then_sigterm)
    assert hrm([*args, f"out_dir={tmp_path / 'b'}"]) == 143
    run = _only_run(tmp_path / "b")
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    saved = load_checkpoint(list_checkpoints(run)[-1])
    assert saved["step"] == 5 and saved["objective"]["carry"]["steps"].shape == (16,)
    assert not (run / "distill.json").exists()
    monkeypatch.setattr(DistillLoss, "__call__", real)

    assert hrm(["distill", "--resume", str(run)]) == 0
    assert _ticks(run) == _ticks(straight)
    a, b = (load_checkpoint(list_checkpoints(r)[-1])["model"] for r in (straight, run))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (run / "distill.json").is_file()


@pytest.mark.parametrize("bad, named", [
    (["distill.temperature=0"], "distill.temperature=0"), (["distill.temperature=-2"], "distill.temperature=-2"),
    (["distill.alpha=1.5"], "distill.alpha=1.5"), (["distill.alpha=-0.1"], "distill.alpha=-0.1"),
])
def test_bad_distill_values_exit_2_and_write_nothing(teacher, tmp_path, capsys, bad, named):
    assert hrm(["distill", "--teacher", str(teacher), f"out_dir={tmp_path}", *bad]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_bad_teachers_and_data_exit_2(teacher, tmp_path, capsys):
    assert hrm(["distill", f"out_dir={tmp_path}"]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert hrm(["distill", "--teacher", str(tmp_path / "nothing"), f"out_dir={tmp_path}"]) == 2
    assert "no such run folder" in capsys.readouterr().err
    other = tmp_path / "sudoku6"
    assert hrm(["data", "sudoku", "--out", str(other), "--size", "6", "--train", "8", "--test", "4"]) == 0
    assert hrm(["distill", "--teacher", str(teacher), f"data_path={other}", f"out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert "does not fit data_path" in err and "seq_len 16 (model) vs 36 (dataset)" in err
    assert not (tmp_path / "runs").exists()
    assert hrm(["train", f"distill.teacher={teacher}", f"out_dir={tmp_path / 'runs'}"]) == 2
    assert "hrm distill" in capsys.readouterr().err
    assert hrm(["distill", "--resume", str(teacher)]) == 2
    assert "not a distillation run" in capsys.readouterr().err


def test_an_architecture_preset_replaces_the_half_width_student(teacher):
    import argparse

    from hrmkit.deploy.distill_cli import student_config

    cfg, _ = student_config(argparse.Namespace(resume=None, teacher=str(teacher), config=None,
                                               overrides=["model=trm-mlp", "arch.L_cycles=3"]))
    assert (cfg.arch.name, cfg.arch.mlp_t, cfg.arch.hidden_size, cfg.arch.L_cycles) == ("trm", True, 512, 3)
    assert cfg.global_batch_size == 16 and cfg.distill.teacher == str(list_checkpoints(teacher)[-1])


# --- the objective -------------------------------------------------------------------------------------------

def _model(sudoku4, **arch):
    meta = load_split(sudoku4, "test").metadata
    return build_model(ArchConfig(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=1, L_cycles=1,
                                  puzzle_emb_ndim=0, **arch), **meta.model_shape)


def test_teacher_carry_follows_the_students_halting(sudoku4):
    """Rows the student resets are reset in the teacher's carry: whatever segment a row of the student is at,
    the teacher's logits there equal a fresh teacher run on that row's puzzle for as many segments."""
    torch.manual_seed(0)
    teacher = _model(sudoku4, halt_max_steps=4).eval()
    student = _model(sudoku4, halt_max_steps=4, halt_exploration_prob=0.5).train()
    with torch.no_grad():  # halting decisions that vary between rows
        student.model.inner.q_head.weight.normal_(0, 1.0)
        student.model.inner.q_head.bias.zero_()
    loss_fn = DistillLoss(teacher, DistillConfig(), student_halt_max_steps=4)
    seen = []
    real = loss_fn.teacher_segment
    loss_fn.teacher_segment = lambda reset, batch: seen.append(real(reset, batch)) or seen[-1]
    batches = [b for b, _ in test_batches(load_split(sudoku4, "test"), 8)]
    carry, steps_seen = student.initial_carry(batches[0]), set()
    for i in range(10):
        reset = carry.halted.clone()
        carry, loss, metrics = loss_fn(student, carry, batches[i % len(batches)])
        loss.backward()
        assert torch.equal(loss_fn.carry.steps, carry.steps) and not reset[carry.steps > 1].any()
        for k in ("inputs", "puzzle_identifiers"):
            assert torch.equal(loss_fn.carry.current_data[k], carry.current_data[k])
        for row in range(8):
            single = {k: v[row:row + 1] for k, v in carry.current_data.items()}
            fresh = teacher.initial_carry(single)
            with torch.no_grad():
                for _ in range(int(carry.steps[row])):
                    fresh, out = teacher.model(fresh, single)
            torch.testing.assert_close(out["logits"][0], seen[-1]["logits"][row], rtol=1e-5, atol=1e-5)
            steps_seen.add(int(carry.steps[row]))
    assert steps_seen >= {1, 2, 3}  # rows were caught at several segment indices
    state = loss_fn.state_dict()
    resumed = DistillLoss(teacher, DistillConfig(), 4)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.carry.inner_carry.z_H, loss_fn.carry.inner_carry.z_H)


def test_the_loss_mixes_hard_and_teacher_targets(sudoku4):
    """loss = (1 - a) CE + a T^2 KL + 0.5 ((1 - a) BCE(q_halt, right) + a BCE(q_halt, sigmoid(teacher q_halt)) +
    Q-continue), recomputed here from the two models' outputs; alpha = 0 is the plain ACT loss; a student that
    is its teacher has zero KL; halting targets only with the same halt_max_steps."""
    import torch.nn.functional as F

    from hrmkit.models.losses import log_stablemax

    torch.manual_seed(0)
    model, teacher = _model(sudoku4, halt_max_steps=2).train(), _model(sudoku4, halt_max_steps=2).eval()
    batch = next(test_batches(load_split(sudoku4, "test"), 8))[0]

    def run(cfg, teacher):
        torch.manual_seed(1)
        return DistillLoss(teacher, cfg, 2)(model, model.initial_carry(batch), batch)

    torch.manual_seed(1)
    _, plain, hard, out, _ = model(model.initial_carry(batch), batch)
    torch.testing.assert_close(run(DistillConfig(alpha=0.0), teacher)[1], plain)

    T, a = 3.0, 0.7
    with torch.no_grad():
        _, t_out = teacher.model(teacher.initial_carry(batch), batch)
    log_t, log_s = (log_stablemax(x.double() / T) for x in (t_out["logits"], out["logits"]))
    kl = T * T * ((log_t.exp() * (log_t - log_s)).sum(-1).mean(-1)).sum()  # every 4x4 cell is labelled
    soft_halt = F.binary_cross_entropy_with_logits(out["q_halt_logits"], torch.sigmoid(t_out["q_halt_logits"]),
                                                   reduction="sum")
    expected = ((1 - a) * hard["lm_loss"] + a * kl
                + 0.5 * ((1 - a) * hard["q_halt_loss"] + a * soft_halt + hard["q_continue_loss"]))
    _, loss, m = run(DistillConfig(temperature=T, alpha=a), teacher)
    torch.testing.assert_close(m["distill_kl"], kl)
    torch.testing.assert_close(loss, expected.to(loss.dtype))
    _, no_halt, _ = run(DistillConfig(temperature=T, alpha=a, halting=False), teacher)
    torch.testing.assert_close(no_halt, (expected - 0.5 * a * (soft_halt - hard["q_halt_loss"])).to(loss.dtype))

    twin = _model(sudoku4, halt_max_steps=2)
    twin.load_state_dict(model.state_dict())
    assert abs(float(run(DistillConfig(temperature=T), twin)[2]["distill_kl"])) < 1e-9
    assert DistillLoss(teacher, DistillConfig(), 2).halting and not DistillLoss(teacher, DistillConfig(), 3).halting
    assert not DistillLoss(teacher, DistillConfig(halting=False), 2).halting


@pytest.mark.parametrize("teacher, student", [
    ((64, 4, 64), (32, 2, 32)), ((32, 2, 0), (16, 1, 0)), ((96, 3, 16), (48, 3, 16)), ((512, 8, 512), (256, 4, 256)),
])  # (hidden_size, num_heads, puzzle_emb_ndim)
def test_half_width_keeps_a_valid_head_size(teacher, student):
    keys = ("hidden_size", "num_heads", "puzzle_emb_ndim")
    arch = half_width(ArchConfig(**dict(zip(keys, teacher)), H_layers=3))
    assert tuple(arch[k] for k in keys) == student and arch["H_layers"] == 3
    ArchConfig.model_validate(arch)


def test_half_width_without_a_valid_head_count_is_a_clear_error():
    from hrmkit.errors import HrmkitError

    with pytest.raises(HrmkitError, match="arch.hidden_size=2"):
        half_width(ArchConfig(hidden_size=2, num_heads=1))
