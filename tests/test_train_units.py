"""Pure parts of the training machinery: schedules, guards, ETA window, eval cadence, best tracking, batch-size
search, sinks, label smoothing, gradient accumulation of the puzzle embedding. No training runs here."""

import io
import json
import sys
import types

import numpy as np
import pytest
import torch

from hrmkit.config import EvalConfig, GuardsConfig, LogConfig
from hrmkit.data.format import load_split
from hrmkit.data.sampler import test_batches
from hrmkit.errors import HrmkitError, RunCrashed
from hrmkit.eval.evaluate import EvalResult, EvalSummary
from hrmkit.models import build_model, build_optimizers
from hrmkit.presets import resolve_config
from hrmkit.train.accumulate import PuzzleGradStash
from hrmkit.train.autobatch import find_batch_size
from hrmkit.train.eval_schedule import EvalRecord, EvalScheduler
from hrmkit.train.evaluation import archive_best, diagnosis_of, fast_subset
from hrmkit.train.guards import StepGuard, clip_, sanitize_carry, total_norm, weights_norm
from hrmkit.train.lr_schedule import cosine_restarts, lr_at
from hrmkit.train.sinks import EVAL_GOALS, Console, Sinks, check_dependencies, use_bar
from hrmkit.train.status import StatusFile, memory_report
from hrmkit.train.ticks import STATS, LogWindow, RateWindow, stat_names, tick_record
from test_train import _one_thread  # noqa: F401 (autouse fixture)

# --- schedules ---------------------------------------------------------------------------------------------


def test_constant_and_restart_schedules():
    assert lr_at("constant", 5, 1.0, warmup_steps=10, total_steps=100, min_ratio=0.1) == pytest.approx(0.5)
    assert lr_at("constant", 80, 1.0, warmup_steps=10, total_steps=100, min_ratio=0.1) == 1.0
    assert lr_at("cosine", 100, 1.0, warmup_steps=10, total_steps=100, min_ratio=0.1) == pytest.approx(0.1)
    # restarts: warmup 10, cycles of 20 then 40 steps (mult 2), each from 1.0 down towards 0.0
    f = [cosine_restarts(s, 1.0, 10, 20, 2.0, 0.0) for s in range(0, 80)]
    assert f[10] == 1.0 and f[20] == pytest.approx(0.5) and f[29] < 0.01
    assert f[30] == 1.0 and f[50] == pytest.approx(0.5) and f[70] == 1.0
    assert all(a >= b for a, b in zip(f[10:30], f[11:30]))
    with pytest.raises(HrmkitError, match="lr_schedule"):
        lr_at("linear", 1, 1.0, warmup_steps=0, total_steps=1, min_ratio=1.0)


def test_new_config_keys_validate():
    cfg = resolve_config(overrides=["eval.fast_every=5", "guards.max_bad_steps=2", "log.tensorboard=true",
                                    "global_batch_size=auto", "lr_schedule=cosine_restarts", "grad_accum_steps=4"])
    assert cfg.eval.fast_every == 5 and cfg.guards.max_bad_steps == 2 and cfg.global_batch_size == "auto"
    for bad, key in [("grad_accum_steps=0", "grad_accum_steps"), ("arch.loss.label_smoothing=1.5", "label_smoothing"),
                     ("eval.nope=1", "eval.nope"), ("guards.rollback_lr_factor=0", "rollback_lr_factor"),
                     ("global_batch_size=big", "global_batch_size")]:
        with pytest.raises(HrmkitError, match=key):
            resolve_config(overrides=[bad])


# --- guards ------------------------------------------------------------------------------------------------


def test_step_guard_counts_and_rolls_back():
    g = StepGuard(GuardsConfig(max_bad_steps=2, rollback_lr_factor=0.5, max_rollbacks=1))
    assert [g.record(b) for b in (False, True, False, True, True)] == ["ok", "skip", "ok", "skip", "rollback"]
    assert g.total_bad == 3
    g.rolled_back()
    assert g.lr_scale == 0.5 and g.consecutive == 0 and g.rollbacks == 1
    g2 = StepGuard(GuardsConfig())
    g2.load_state_dict(g.state_dict())
    assert g2.state_dict() == g.state_dict()
    with pytest.raises(RunCrashed, match="max_rollbacks"):
        g.rolled_back()
    assert StepGuard(GuardsConfig(max_bad_steps=5)).record(True, weights_bad=True) == "rollback"  # at once


def test_norm_clip_and_carry_sanitizing():
    grads = [torch.tensor([3.0]), torch.tensor([4.0])]
    n = total_norm(grads)
    assert float(n) == pytest.approx(5.0)
    clip_(grads, 1.0, n)
    assert float(total_norm(grads)) == pytest.approx(1.0, rel=1e-4)
    assert not torch.isfinite(total_norm([torch.tensor([float("nan")])]))
    assert torch.isfinite(weights_norm([torch.ones(3), torch.zeros(2)]))
    assert not torch.isfinite(weights_norm([torch.ones(3), torch.tensor([1.0, float("inf")])]))

    class C:
        pass
    carry, inner = C(), C()
    inner.z_H = torch.zeros(3, 2, 4)
    inner.z_L = torch.zeros(3, 2, 4)
    inner.z_L[1, 0, 0] = float("inf")
    carry.inner_carry, carry.halted = inner, torch.tensor([False, False, True])
    assert sanitize_carry(carry) == 1
    assert carry.halted.tolist() == [False, True, True]


# --- ETA window, status heartbeat ---------------------------------------------------------------------------


def test_rate_window_uses_recent_time_only():
    w = RateWindow(window_s=10.0)
    for t in range(0, 100):  # slow at first: 1 step/s for 100 s
        w.add(float(t), t)
    for i in range(1, 21):  # then 10 steps/s
        w.add(99.0 + i * 0.5, 99 + i * 5)
    assert w.rate() == pytest.approx(10.0, rel=0.05)  # the whole-run average would be ~1.8
    assert RateWindow().rate() is None


def test_log_window_survives_a_checkpoint():
    w = LogWindow()
    w.add(np.arange(10.0), 2)
    w.add(np.full(10, np.nan), 2)  # a skipped step counts its segments, not its non-finite sums
    restored = LogWindow()
    restored.load_state_dict(w.state_dict())
    rec = tick_record(restored, batch_size=4, global_step=7)
    assert rec["global_step"] == 7 and rec["loss"] == 0.0 / 16 and rec["accuracy"] == 2.0 / 1.0
    assert restored.segments == 0 and w.segments == 4


def test_log_window_carries_an_objectives_own_metrics_by_name():
    names = stat_names({"loss": 0, "count": 0, "distill_kl": 0})
    assert names[0] == "loss" and names[-2:] == ("distill_kl", "bad")
    w = LogWindow()
    w.add(np.arange(10.0), 1)  # a step before the objective's name appeared: its sums are kept
    w.add(np.arange(11.0), 1, names)
    restored = LogWindow()
    restored.load_state_dict(w.state_dict())
    rec = tick_record(restored, batch_size=4, global_step=1)
    assert rec["distill_kl"] == 9.0 / 8 and rec["loss"] == 0.0 and rec["lm_loss"] == 12.0 / 8
    old = LogWindow()  # a checkpoint written before the window carried names: STATS in order
    old.load_state_dict({"sums": np.arange(10.0).tolist(), "segments": 1})
    assert old.names == STATS and "distill_kl" not in tick_record(old, batch_size=1)


def test_status_heartbeat_interval_and_memory(tmp_path):
    s = StatusFile(tmp_path, "r1", 100, interval_s=3600)
    s.update(state="running")
    first = json.loads((tmp_path / "status.json").read_text())
    assert first["state"] == "running" and first["memory"]["peak_cpu_rss_mb"] > 10 and first["memory"]["gpu"] is None
    assert first["status_interval_s"] == 3600
    assert not s.heartbeat(global_step=5)  # too soon: not written
    assert json.loads((tmp_path / "status.json").read_text())["global_step"] == 0
    s.interval_s = 0.0
    assert s.heartbeat(global_step=6)
    assert json.loads((tmp_path / "status.json").read_text())["global_step"] == 6
    s.interval_s = 0.05
    with s.background("evaluating"):
        assert json.loads((tmp_path / "status.json").read_text())["phase"] == "evaluating"
    assert memory_report(torch.device("cpu"))["gpu"] is None


# --- evaluation cadence, best tracking ----------------------------------------------------------------------


def _record(step, value, kind="fast"):
    return EvalRecord(step, kind, EvalSummary(value, 0.5, 10, 20, None, None, None))


def test_eval_scheduler_cadences():
    plan = EvalScheduler(EvalConfig(fast_every=5, full_every=20), None, None)
    assert [s for s in range(1, 41) if plan.due(s)[0]] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [s for s in range(1, 41) if plan.due(s)[1]] == [20, 40]
    assert not plan.best_on_fast
    ref = EvalScheduler(EvalConfig(), 30, None)  # reference eval_interval (epochs -> steps)
    assert [s for s in range(1, 91) if ref.due(s)[1]] == [30, 60, 90] and not any(ref.due(s)[0] for s in range(1, 91))
    gated = EvalScheduler(EvalConfig(full_every=20, gate_delta=0.01), None, None)
    assert gated.due(20) == (True, True)  # the gate needs a fast score at the same step
    gate_only = EvalScheduler(EvalConfig(fast_every=5, gate_delta=0.01), None, None)
    assert gate_only.due(5) == (True, True) and gate_only.due(6) == (False, False)
    assert EvalScheduler(EvalConfig(fast_every=5), None, None).best_on_fast


def test_eval_scheduler_best_gate_patience_and_state():
    s = EvalScheduler(EvalConfig(fast_every=10), None, patience=2)
    scores = iter([0.2, 0.2, 0.3, 0.1, 0.1])
    decisions = [s.after_step(step, lambda kind, step=step: _record(step, next(scores)), f"c{step}")
                 for step in (10, 20, 30, 40, 50)]
    assert [d.new_best for d in decisions] == [True, False, True, False, False]  # equal is not better
    assert [d.early_stop for d in decisions] == [False, False, False, False, True]
    assert s.best.step == 30 and s.best.previous["step"] == 10 and s.best.checkpoint == "c30"
    assert not s.after_step(60, lambda kind: _record(60, 0.9), "c60", track=False).new_best  # bad streak open
    gated = EvalScheduler(EvalConfig(gate_delta=0.05), None, None)
    gated.gate_ref = 0.5
    assert not gated.gate_open(0.54) and gated.gate_open(0.55) and gated.gate_open(None)
    low = EvalScheduler(EvalConfig(fast_every=1, best_metric="mean_steps", best_mode="min"), None, None)
    for step, v in ((1, 2.0), (2, 1.0), (3, 1.5)):
        summary = EvalSummary(0, 0, 1, 1, None, v, None)
        low.after_step(step, lambda kind, step=step, summary=summary: EvalRecord(step, kind, summary), "c")
    assert low.best.value == 1.0 and low.best.step == 2
    with pytest.raises(HrmkitError, match="best_metric='mean_steps'.*exact_accuracy"):
        no_steps = EvalScheduler(EvalConfig(fast_every=1, best_metric="mean_steps"), None, None)
        no_steps.after_step(1, lambda kind: _record(1, 0.1), "c")
    end = s.at_end(70, lambda kind: _record(70, 0.95, kind), "c70")
    assert end.new_best and not end.early_stop and s.last_full_step == 70  # a fast one chooses, a full one reports
    restored = EvalScheduler(EvalConfig(fast_every=10), None, patience=2)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict() and restored.best == s.best


def test_archive_best_records_the_change(tmp_path):
    ck = tmp_path / "checkpoints" / "step_00000010.pt"
    ck.parent.mkdir()
    ck.write_bytes(b"weights")
    t = EvalScheduler(EvalConfig(fast_every=5), None, None)
    t.after_step(5, lambda kind: EvalRecord(5, kind, EvalSummary(0.1, 0.5, 10, 20, None, None, None)), "c5")
    t.after_step(10, lambda kind: EvalRecord(10, kind, EvalSummary(0.4, 0.7, 10, 20, None, None, None)), str(ck))
    folder = archive_best(tmp_path, ck, b"lr: 1\n", t.best.to_json())
    meta = json.loads((folder / "metrics.json").read_text())
    assert meta["step"] == 10 and meta["value"] == 0.4
    assert meta["change"]["exact_accuracy"] == pytest.approx(0.3) and meta["change"]["steps"] == 5
    assert (folder / "checkpoint.pt").read_bytes() == b"weights" and (folder / "config.yaml").is_file()


def test_diagnosis_flags():
    def result(diagnosis):
        return EvalResult("sudoku", EvalSummary(0.0, 0.0, 1, 1, None, None, None), {}, {}, {}, None, diagnosis)

    assert diagnosis_of(result(None)) == (None, None, False)
    diag, text, loud = diagnosis_of(result({"input_invariant": True, "collapsed": False, "warning": "INPUT-INVARIANT"}))
    assert loud and "INPUT-INVARIANT" in text and diag["input_invariant"]
    assert diagnosis_of(result({"input_invariant": False, "collapsed": False, "warning": ""}))[1:] == (None, False)
    assert diagnosis_of(result({"collapsed": False, "warning": "INVALID OUTPUTS"}))[1:] == ("INVALID OUTPUTS", False)


def test_fast_subset_is_fixed_and_keeps_puzzle_ids(sudoku4):
    split = load_split(sudoku4, "test")
    a, b = fast_subset(split, 10, seed=3), fast_subset(split, 10, seed=3)
    assert a.num_examples == 10 and np.array_equal(a.sets["all"].inputs, b.sets["all"].inputs)
    assert not np.array_equal(a.sets["all"].inputs, fast_subset(split, 10, seed=4).sets["all"].inputs)
    batch, n = next(test_batches(a, 16))
    assert n == 10 and batch["inputs"].shape == (16, split.metadata.seq_len)
    assert fast_subset(split, 10_000, 0) is split


# --- batch size auto ---------------------------------------------------------------------------------------


class FakeOOM(RuntimeError):
    def __init__(self):
        super().__init__("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_batch_search_finds_largest_fitting_batch_with_headroom():
    tried = []

    def step(b):  # 1 MiB per example + 10 MiB fixed; OOM above 700 examples
        tried.append(b)
        if b > 700:
            raise FakeOOM()
        return (10 + b) * 2**20

    # 1000 MiB device, 10% headroom -> peak <= 900 MiB -> b <= 890, but OOM above 700
    b = find_batch_size(step, 1000 * 2**20, headroom=0.1, start=32, multiple=8, log=lambda s: None)
    assert b == 696 and b % 8 == 0
    b = find_batch_size(lambda b: (10 + b) * 2**20, 1000 * 2**20, headroom=0.5, start=32, multiple=8, log=lambda s: None)
    assert b == 488  # (10 + b) <= 500
    # an OOM at the start backs off by halving
    b = find_batch_size(step, 10_000 * 2**20, headroom=0.1, start=4096, multiple=8, log=lambda s: None)
    assert b == 696
    assert find_batch_size(lambda b: 0.0, 1.0, start=32, max_batch=100, multiple=8, log=lambda s: None) == 96
    with pytest.raises(HrmkitError, match="does not fit"):
        find_batch_size(lambda b: (_ for _ in ()).throw(FakeOOM()), 1.0, start=32, multiple=8, log=lambda s: None)
    with pytest.raises(ValueError):  # other errors are not mistaken for OOM
        find_batch_size(lambda b: (_ for _ in ()).throw(ValueError("bug")), 1.0, log=lambda s: None)


# --- sinks -------------------------------------------------------------------------------------------------


def test_console_plain_lines_off_a_terminal(monkeypatch):
    out = io.StringIO()
    c = Console("auto", total=10, initial=0, stream=out)
    assert c.bar is None
    c.line("hello")
    assert out.getvalue() == "hello\n"
    assert not use_bar("auto", out) and use_bar("bar", out) and not use_bar("lines", out)


def test_progress_bar_on_a_terminal(monkeypatch):
    lines, updates, descriptions = [], [], []

    class Bar:
        def __init__(self, total, initial, file, unit, dynamic_ncols):
            self.n = initial

        def write(self, text, file):
            lines.append(text)

        def update(self, n):
            self.n += n
            updates.append(self.n)

        def set_postfix_str(self, text, refresh):
            pass

        def set_description_str(self, text, refresh):
            descriptions.append(text)

        def close(self):
            pass

    fake = types.ModuleType("tqdm")
    fake.tqdm = Bar
    monkeypatch.setitem(sys.modules, "tqdm", fake)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    c = Console("auto", total=10, initial=2, stream=Terminal())
    c.line("tick")
    c.advance(3)
    c.advance(4)
    c.evaluating("evaluating (fast) 8/16")
    c.evaluating(None)
    assert c.bar is not None and lines == ["tick"] and updates == [3, 4]
    assert descriptions == ["evaluating (fast) 8/16", ""]
    assert Console("lines", total=10, initial=0, stream=Terminal()).bar is None


def test_optional_sinks_need_their_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(HrmkitError, match="log.tensorboard=true needs the optional dependency `tensorboard`"):
        Sinks(tmp_path, "r", LogConfig(tensorboard=True), {})
    with pytest.raises(HrmkitError, match="log.wandb=true needs the optional dependency `wandb`"):
        Sinks(tmp_path, "r", LogConfig(wandb=True), {})
    with pytest.raises(HrmkitError, match="log.tensorboard=true"):
        check_dependencies(LogConfig(tensorboard=True))
    check_dependencies(LogConfig())


def test_optional_sinks_receive_records(tmp_path, monkeypatch):
    scalars, logged, init, texts, summaries, metrics = [], [], {}, [], [], {}

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            init["tb"] = log_dir
            self.file_writer = types.SimpleNamespace(add_summary=summaries.append)

        def add_scalar(self, k, v, step):
            scalars.append((k, v, step))

        def add_text(self, tag, text, step):
            texts.append((tag, text))

        def flush(self):
            pass

        def close(self):
            pass

    class Run:
        def define_metric(self, name, summary, goal):
            metrics[name] = (summary, goal)

        def log(self, data, step):
            logged.append((data, step))

        def finish(self):
            init["finished"] = True

    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = Writer
    tb_summary = types.ModuleType("torch.utils.tensorboard.summary")
    tb_summary.hparams = lambda hparams, metric_dict: [("hparams", hparams, sorted(metric_dict))]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard.summary", tb_summary)
    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kw: init.setdefault("wandb", kw) and Run()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    sinks = Sinks(tmp_path, "run-1", LogConfig(tensorboard=True, wandb=True), {"lr": 1, "arch": {"hidden_size": 8}})
    sinks.write({"kind": "train", "global_step": 3, "loss": 0.5, "run_id": "run-1"})
    sinks.write({"kind": "eval", "global_step": 3, "eval/exact_accuracy": 0.25})
    sinks.close()
    assert ("train/loss", 0.5, 3) in scalars and ("eval/exact_accuracy", 0.25, 3) in scalars
    assert init["wandb"]["mode"] == "offline" and init["wandb"]["id"] == "run-1" and init["finished"]
    assert logged[0] == ({"train/loss": 0.5}, 3)
    assert texts[0][0] == "config" and "hidden_size: 8" in texts[0][1]
    assert summaries == [("hparams", {"lr": 1, "arch.hidden_size": 8}, [f"eval/{k}" for k in sorted(EVAL_GOALS)])]
    assert metrics["eval/exact_accuracy"] == ("max", "maximize") and metrics["eval_fast/pass@2"] == ("max", "maximize")
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 0.5


# --- label smoothing, accumulation ---------------------------------------------------------------------------

TINY_ARCH = {"hidden_size": 32, "num_heads": 2, "H_layers": 1, "L_layers": 1, "H_cycles": 1, "L_cycles": 1,
             "halt_max_steps": 2, "puzzle_emb_ndim": 32}


def _tiny_head(loss_type="stablemax_cross_entropy"):
    cfg = resolve_config(overrides=[f"arch.{k}={v}" for k, v in TINY_ARCH.items()] + [f"arch.loss.loss_type={loss_type}"])
    torch.manual_seed(0)
    return build_model(cfg.arch, seq_len=16, vocab_size=6, num_puzzle_identifiers=10)


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, 6, (n, 16), generator=g, dtype=torch.int32)
    labels[:, :3] = -100
    return {"inputs": torch.randint(0, 6, (n, 16), generator=g, dtype=torch.int32), "labels": labels,
            "puzzle_identifiers": torch.arange(n, dtype=torch.int32)}


@pytest.mark.parametrize("loss_type", ["stablemax_cross_entropy", "softmax_cross_entropy"])
def test_label_smoothing_matches_formula_in_training_only(loss_type):
    head = _tiny_head(loss_type).train()
    # put some signal in the logits (the lm_head starts near zero)
    torch.nn.init.normal_(head.model.inner.lm_head.weight, std=1.0)
    batch = _batch()
    eps = 0.1
    carry, _, plain, out, _ = head(head.initial_carry(batch), batch)
    head.label_smoothing = eps
    carry, _, metrics, out, _ = head(head.initial_carry(batch), batch)
    logits = out["logits"].double()
    if loss_type == "stablemax_cross_entropy":
        s = torch.where(logits < 0, 1 / (1 - logits), logits + 1)
        logp = torch.log(s / s.sum(-1, keepdim=True))
    else:
        logp = torch.log_softmax(logits, -1)
    labels = carry.current_data["labels"].long()
    mask = labels != -100
    nll = -logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    smoothed = (1 - eps) * nll + eps * (-logp.mean(-1))
    want = (torch.where(mask, smoothed, 0).sum(-1) / mask.sum(-1)).sum()
    assert float(metrics["lm_loss"]) == pytest.approx(float(want), rel=1e-4)
    assert float(metrics["lm_loss"]) != pytest.approx(float(plain["lm_loss"]), rel=1e-4)
    head.eval()  # evaluation reports the plain loss
    _, _, evaluated, _, _ = head(head.initial_carry(batch), batch)
    assert float(evaluated["lm_loss"]) == pytest.approx(float(plain["lm_loss"]), rel=1e-5)


def test_puzzle_grad_stash_applies_sign_of_the_summed_gradients():
    head = _tiny_head().train()
    opts = build_optimizers(head, lr=0.1, puzzle_emb_lr=0.5, weight_decay=0.0, puzzle_emb_weight_decay=0.0)
    emb = head.model.inner.puzzle_emb
    stash = PuzzleGradStash([emb])
    grads = []
    carry = None
    for seed in (0, 1):
        batch = _batch(seed=seed)
        carry = carry or head.initial_carry(batch)
        carry, loss, _, _, _ = head(carry, batch)
        loss.backward()
        grads.append((emb.local_ids.clone(), emb.local_weights.grad.clone()))
        stash.stash()
    stash.merge()
    assert emb.local_weights.grad.shape[0] == 8
    before = emb.weights.clone()
    opts[1].step()
    ids = torch.cat([g[0] for g in grads])
    summed = torch.zeros_like(before).index_add_(0, ids.long(), torch.cat([g[1] for g in grads]))
    touched = ids.long().unique()
    assert torch.equal(emb.weights[touched], before[touched] - 0.5 * torch.sign(summed[touched]))
