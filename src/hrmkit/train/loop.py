"""The training loop (reference semantics, sapientinc/HRM pretrain.py) built to run for days.

One optimizer step is one ACT segment (or `grad_accum_steps` segments, see train/accumulate.py): the carry is
kept across steps and only halted rows take new data from the next batch (DESIGN.md §3). The optimizer sees
loss / global_batch_size. Around it: a locked run folder (train/runs.py), a status.json heartbeat
(train/status.py), metrics sinks (train/sinks.py), fast/full evaluation with the best checkpoint archived
(train/evaluation.py), atomic checkpoints with exact resume (train/checkpoint.py), divergence guards
(train/guards.py), data parallelism (train/distributed.py) and `global_batch_size: auto` (train/autobatch.py).

Per global step: control flags (signal, time limit) -> k segments forward/backward -> gradient all-reduce ->
finiteness check -> clip, schedule, optimizer step, EMA (or skip) -> log tick / heartbeat -> evaluations ->
checkpoint. SIGINT/SIGTERM finish the current step, checkpoint, mark the run `interrupted` and return.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from hrmkit.config import TrainConfig
from hrmkit.data.format import load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.device import pick_device
from hrmkit.errors import HrmkitError
from hrmkit.eval.evaluate import evaluate_split
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.models import (build_model, build_optimizers, carry_from_state, carry_to_state, compile_model,
                           count_parameters, puzzle_embedding_params)
from hrmkit.models.ema import EMA
from hrmkit.train import checkpoint as ckpt
from hrmkit.train.accumulate import PuzzleGradStash
from hrmkit.train.autobatch import auto_batch_size
from hrmkit.train.distributed import Dist
from hrmkit.train.evaluation import EvalPlan, EvalTracker, archive_best, diagnosis_of, fast_subset, public_best
from hrmkit.train.guards import StepGuard, clip_, sanitize_carry, total_norm
from hrmkit.train.runs import RunLock, read_json
from hrmkit.train.schedule import lr_at
from hrmkit.train.sinks import Console, RateWindow, Sinks, check_dependencies, fmt_time, truncate_metrics
from hrmkit.train.status import StatusFile, memory_report, new_run_id

STATS = ("loss", "count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss",
         "q_continue_loss", "bad")


class _StopFlag:
    """Set by SIGINT/SIGTERM (or `request`); the loop finishes its step, checkpoints and exits cleanly."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: give up waiting
            raise KeyboardInterrupt
        self.signum = signum
        print(f"received {signal.Signals(signum).name}: finishing this step, then checkpointing", flush=True)

    def request(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()


def _ensure_data(cfg: TrainConfig) -> None:
    """Build the demo dataset when `data_path` is missing and the config says how."""
    path = Path(cfg.data_path)
    if (path / "train").is_dir():
        return
    if cfg.demo_data is None:
        raise HrmkitError(f"data_path={cfg.data_path!r}: no dataset there (expected {path}/train); build one with `hrm data ...`")
    from hrmkit.cli import main as cli_main

    d = cfg.demo_data
    print(f"building the demo dataset in {path} ({d.size}x{d.size} Sudoku, {d.train} train / {d.test} test)", flush=True)
    rc = cli_main(["data", "sudoku", "--out", str(path), "--size", str(d.size), "--train", str(d.train),
                   "--test", str(d.test), "--seed", str(d.seed), "--num-aug", str(d.num_aug)])
    if rc != 0:
        raise HrmkitError(f"building the demo dataset in {path} failed (exit {rc})")


def train(cfg: TrainConfig, resume_dir: str | None = None, on_step: Callable[["Trainer"], None] | None = None) -> Path:
    """Train per `cfg`; with `resume_dir`, continue that run from its newest valid checkpoint (a run folder
    without a valid checkpoint restarts from step 0). `on_step(trainer)` runs after every global step.

    Under torchrun (WORLD_SIZE > 1) this joins the process group, uses rank 0's config and run folder, and
    only rank 0 writes files. Returns the run folder. Raises HrmkitError for bad data, config or run folders
    (a run locked by a live process included).
    """
    device = pick_device(cfg.device)
    dist = Dist.from_env(device.type, cfg.dist_timeout_s)
    try:
        if dist.enabled:
            dumped, resume_dir = dist.broadcast_object((cfg.model_dump(), resume_dir))
            cfg = TrainConfig.model_validate(dumped)
            if device.type == "cuda":
                device = torch.device("cuda", dist.local_rank)
        return Trainer(cfg, resume_dir, dist, device, on_step).run()
    finally:
        dist.shutdown()


class Trainer:
    """One training run (see `train`). Public: `cfg`, `run_dir`, `run_id`, `step`, `total_steps`, `head`,
    `request_stop()`."""

    def __init__(self, cfg: TrainConfig, resume_dir: str | None, dist: Dist, device: torch.device,
                 on_step: Callable[["Trainer"], None] | None = None):
        self.dist, self.device, self.on_step = dist, device, on_step
        self.main = dist.is_main
        self._on_main(lambda: check_dependencies(cfg.log))
        self._on_main(lambda: _ensure_data(cfg))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.train_split = load_split(Path(cfg.data_path), "train")
        meta = self.train_split.metadata
        self.model_shape = {"seq_len": meta.seq_len, "vocab_size": meta.vocab_size,
                            "num_puzzle_identifiers": meta.num_puzzle_identifiers}
        self.head = build_model(cfg.arch, **self.model_shape)
        if cfg.global_batch_size == "auto":
            b = self._on_main(lambda: auto_batch_size(cfg, self.head, self.train_split, device, dist.world_size))
            self._say(f"global_batch_size=auto: {b} ({b // dist.world_size} per rank, "
                      f"memory_headroom={cfg.memory_headroom})")
            cfg = cfg.model_copy(update={"global_batch_size": b})
        self.cfg = cfg
        self.B, self.k = int(cfg.global_batch_size), cfg.grad_accum_steps
        self.sampler = TrainSampler(self.train_split, self.B, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size)
        batches = self.sampler.batches_per_epoch
        self.steps_per_epoch = max(1, batches // self.k)
        self.total_steps = cfg.epochs * batches // self.k
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        if self.total_steps < 1:
            raise HrmkitError(f"epochs={cfg.epochs} with grad_accum_steps={self.k} gives no optimizer step")
        eval_every = cfg.eval_interval * self.steps_per_epoch if cfg.eval_interval else None

        self.head.to(device)
        dist.broadcast_module(self.head)
        if dist.enabled:
            torch.manual_seed(cfg.seed + dist.rank)  # per-rank exploration, as the reference
        self.forward = compile_model(self.head) if cfg.compile else self.head
        self.optimizers = build_optimizers(self.head, lr=cfg.lr, puzzle_emb_lr=cfg.puzzle_emb_lr,
                                           weight_decay=cfg.weight_decay, puzzle_emb_weight_decay=cfg.puzzle_emb_weight_decay,
                                           betas=(cfg.beta1, cfg.beta2))
        self.base_lrs = [cfg.lr] + [cfg.puzzle_emb_lr] * (len(self.optimizers) - 1)
        self.params = [p for p in self.head.parameters() if p.requires_grad]
        self.ema = EMA(self.head, rate=cfg.ema_rate) if cfg.ema else None
        self.stash = PuzzleGradStash(puzzle_embedding_params(self.head)) if self.k > 1 else None
        self.guard = StepGuard(cfg.guards)
        self.plan = EvalPlan(cfg.eval, eval_every)
        self.evals = EvalTracker(cfg.eval, cfg.early_stop_patience)
        self.step, self.carry, self.wall_offset, self.train_time = 0, None, 0.0, 0.0
        self.epoch = self.epoch_step = 0
        self.last_saved: int | None = None
        self.last_full_eval: int | None = None
        self.stop, self.stop_reason = _StopFlag(), None
        self._test_split = self._fast_split = None
        self.lock = None
        self._setup_run_dir(resume_dir)

    # --- run folder and state -----------------------------------------------------------------------------
    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 only; its HrmkitError is raised on every rank (no rank waits forever)."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except HrmkitError as e:
                error = str(e)
        if self.dist.enabled:
            result, error = self.dist.broadcast_object((result, error))
        if error is not None:
            raise HrmkitError(error)
        return result

    def _setup_run_dir(self, resume_dir: str | None) -> None:
        cfg = self.cfg
        self.config_yaml = yaml.safe_dump(cfg.model_dump(), sort_keys=False).encode()
        if resume_dir is not None:
            self.run_dir = Path(resume_dir)
            self.run_id = (read_json(self.run_dir / "status.json") or {}).get("run_id") or self.run_dir.name
        else:
            self.run_id = self.dist.broadcast_object(new_run_id())
            self.run_dir = Path(cfg.out_dir) / self.run_id

        def claim() -> None:
            self.run_dir.mkdir(parents=True, exist_ok=resume_dir is not None)
            self.lock = RunLock(self.run_dir).acquire()
            if self.lock.took_over:
                old = self.lock.took_over
                print(f"[{self.run_id}] taking over the stale lock of pid {old.get('pid')} (started "
                      f"{old.get('started_at')}), which is no longer running", flush=True)
            atomic_write_bytes(self.run_dir / "config.yaml", self.config_yaml)
            for leftover in ckpt.remove_temporary_files(self.run_dir):
                print(f"[{self.run_id}] removed {leftover.name}, left by an interrupted write", flush=True)

        self._on_main(claim)
        try:
            if resume_dir is not None:
                found = ckpt.latest_valid_checkpoint(self.run_dir)
                if found is None:
                    self._say(f"[{self.run_id}] no valid checkpoint in {self.run_dir / 'checkpoints'}: restarting "
                              f"this run from step 0")
                else:
                    self._restore(found[1])
                    self._say(f"resuming {self.run_id} from {found[0]} (global step {self.step})")
                if self.main:
                    truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            self.data_iter = iter(self.sampler)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _state(self) -> dict[str, Any] | None:
        """The full training state (on rank 0; None on other ranks). Collective when distributed."""
        mine = {"carry": {k: v.cpu() for k, v in carry_to_state(self.carry).items()} if self.carry is not None else None,
                "rng": ckpt.rng_state()}
        ranks = self.dist.gather_objects(mine)
        if not self.main:
            return None
        return {
            "model": self.head.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
            "ema": self.ema.state_dict() if self.ema is not None else None, "sampler": self.sampler.state_dict(),
            "carry": mine["carry"], "rng": mine["rng"], "world_size": self.dist.world_size,
            "rank_states": ranks if self.dist.enabled else None,
            "step": self.step, "best": public_best(self.evals.best), "eval_state": self.evals.state_dict(),
            "guards": self.guard.state_dict(), "wall_time": self._wall(),
            "config": json.dumps(self.cfg.model_dump()), "model_shape": self.model_shape,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.sampler.load_state_dict(state["sampler"])
        mine = {"carry": state.get("carry"), "rng": state["rng"]}
        if self.dist.enabled:
            ranks = state.get("rank_states")
            if ranks and len(ranks) == self.dist.world_size:
                mine = ranks[self.dist.rank]
            else:
                self._say(f"warning: checkpoint written with world size {state.get('world_size', 1)}, now "
                          f"{self.dist.world_size}: the ACT carry restarts and RNG streams differ")
                mine = {"carry": None, "rng": None}
        self.carry = carry_from_state({k: v.to(self.device) for k, v in mine["carry"].items()}) if mine.get("carry") else None
        if mine.get("rng") is not None:
            ckpt.set_rng_state(mine["rng"])
        else:
            torch.manual_seed(self.cfg.seed + self.dist.rank + int(state["step"]))
        self.step = int(state["step"])
        self.guard.load_state_dict(state.get("guards") or {})
        self.evals.load_state_dict(state.get("eval_state") or {"best": state.get("best")})
        self.wall_offset = float(state.get("wall_time", 0.0))
        self.last_saved = self.step
        self.data_iter = iter(self.sampler)

    def save(self, state_name: str = "running") -> Path | None:
        """Write a checkpoint of the current step (collective; rank 0 writes). Returns its path on rank 0."""
        state = self._state()
        self.last_saved = self.step
        if not self.main:
            return None
        best = self.evals.best or {}
        protect = {best["checkpoint"]} if best.get("checkpoint") else set()
        path = ckpt.save_checkpoint(self.run_dir, self.step, state, keep=self.cfg.keep_checkpoints, protect=protect)
        self.status.update(state=state_name, global_step=self.step, last_checkpoint=str(path),
                           best=public_best(self.evals.best), guards=self.guard.state_dict())
        return path

    def _wall(self) -> float:
        return self.wall_offset + time.time() - self.t_start

    def request_stop(self) -> None:
        """Stop after the current step as SIGTERM would (checkpoint, state interrupted)."""
        self.stop.request()

    # --- the loop -----------------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train to the end (or a stop request); always releases the run lock. Returns the run folder."""
        self.sinks = self.console = self.status = None
        try:
            self._open()
        except BaseException as e:
            if self.status is not None:
                self.status.update(state="crashed", phase=None, error=f"{type(e).__name__}: {e}")
            if self.sinks is not None:
                self.sinks.close()
            if self.lock is not None:
                self.lock.release()
            raise
        return self._loop()

    def _open(self) -> None:
        cfg, meta = self.cfg, self.train_split.metadata
        self.t_start = time.time()
        self.status = StatusFile(self.run_dir, self.run_id, self.total_steps, cfg.status_interval_s, self.device,
                                 enabled=self.main, task=meta.task, preset=cfg.preset, folder=str(self.run_dir),
                                 world_size=self.dist.world_size, global_batch_size=self.B, grad_accum_steps=self.k)
        self.status.update(state="running", phase="training", global_step=self.step, epoch=self.sampler.epoch,
                           best=public_best(self.evals.best), last_eval=self.evals.last_eval,
                           guards=self.guard.state_dict())
        self.sinks = Sinks(self.run_dir, self.run_id, cfg.log, cfg.model_dump()) if self.main else None
        self.console = Console(cfg.log.progress, self.total_steps, self.step) if self.main else None
        self.rate = RateWindow(cfg.log.eta_window_s)
        self._tick_sums, self._memory_reported = np.zeros(len(STATS)), False
        self._tick_segments = 0
        self._say(f"run {self.run_id}: {cfg.arch.name} with {count_parameters(self.head):,} parameters on "
                  f"{self.device} x{self.dist.world_size}; batch {self.B} x {self.k} segments, {self.steps_per_epoch} "
                  f"steps/epoch, {self.total_steps} steps; folder {self.run_dir}")

    def _loop(self) -> Path:
        cfg = self.cfg
        try:
            self.stop.install()
            while self.step < self.total_steps:
                reason = self._control_flags()
                if reason:
                    self.stop_reason = reason
                    break
                t0 = time.time()
                self._train_step()
                self.train_time += time.time() - t0
                self.rate.add(self.train_time, self.step)
                if self.on_step is not None:
                    self.on_step(self)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._tick()
                self.status.heartbeat(global_step=self.step, epoch=self.epoch)
                if self.step < self.total_steps:
                    self._maybe_eval()
                    if self.stop_reason == "early_stop":
                        break
                    if self.step % cfg.checkpoint_every == 0 and self.last_saved != self.step:
                        self.save("running")
            self._finish()
        except KeyboardInterrupt:
            self.status.update(state="interrupted", phase=None, stop_reason="second signal (no checkpoint)")
            raise
        except BaseException as e:
            self.status.update(state="crashed", phase=None, error=f"{type(e).__name__}: {e}")
            raise
        finally:
            self.stop.restore()
            if self.console is not None:
                self.console.close()
            if self.sinks is not None:
                self.sinks.close()
            if self.lock is not None:
                self.lock.release()
        return self.run_dir

    def _finish(self) -> None:
        if self.stop_reason == "signal":
            path = self.save("interrupted")
            self._say(f"[{self.run_id}] interrupted at step {self.step}; checkpoint {path}; resume with: "
                      f"hrm train --resume {self.run_dir}")
            return
        if self.plan.best_on_fast and (self.evals.last_fast or {}).get("step") != self.step:
            self._track(self._evaluate("fast"))  # the best is chosen on fast evaluations: score the final weights too
        if self.last_full_eval != self.step:
            full = self._evaluate("full")
            if not self.plan.best_on_fast:
                self._track(full)
        self.save("finished")
        self.status.update(state="finished", phase=None, stop_reason=self.stop_reason or "completed")
        self._say(f"[{self.run_id}] finished at step {self.step} ({self.stop_reason or 'completed'}); "
                  f"run folder {self.run_dir}")

    def _control_flags(self) -> str | None:
        """Stop requests agreed by every rank: `signal` or `max_time_s`."""
        flags = torch.tensor([float(self.stop.signum is not None),
                              float(self.cfg.max_time_s is not None and self.train_time >= self.cfg.max_time_s)],
                             dtype=torch.float64, device=self.device if self.dist.enabled else "cpu")
        flags = self.dist.all_reduce_sum(flags)
        if flags[0] > 0:
            return "signal"
        if flags[1] > 0:
            self._say(f"[{self.run_id}] max_time_s={self.cfg.max_time_s} reached at step {self.step}")
            return "max_time_s"
        return None

    def _train_step(self) -> None:
        cfg, B, k = self.cfg, self.B, self.k
        acc = None  # STATS sums of this step, on the device (one transfer per step)
        for _ in range(k):
            self.epoch, self.epoch_step, batch = next(self.data_iter)
            batch = {name: v.to(self.device, non_blocking=True) for name, v in batch.items()}
            if self.carry is None:
                self.carry = self.head.initial_carry(batch)
            self.carry, loss, metrics, _, _ = self.forward(self.carry, batch)
            (loss / (B * k)).backward()
            if self.stash is not None:
                self.stash.stash()
            zero = loss.new_zeros((), dtype=torch.float64)
            vals = torch.stack([loss.detach().double()] + [metrics[n].detach().double() if n in metrics else zero
                                                           for n in STATS[1:-1]] + [zero])
            acc = vals if acc is None else acc + vals
        if self.stash is not None:
            self.stash.merge()
        self.dist.all_reduce_grads(self.params)
        puzzle_grads = [m.local_weights.grad for m in puzzle_embedding_params(self.head)
                        if m.local_weights is not None and m.local_weights.grad is not None]
        local_bad = ~torch.isfinite(acc[0])
        for g in puzzle_grads:
            local_bad = local_bad | ~torch.isfinite(g).all()
        acc[-1] = local_bad.double()
        acc = self.dist.all_reduce_sum(acc)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = total_norm(grads).to(acc.device)
        host = torch.cat([acc, norm.double().view(1)]).cpu().numpy()  # the step's one device sync
        sums, self.grad_norm = host[:-1], float(host[-1])
        bad = bool(sums[-1] > 0 or not np.isfinite(self.grad_norm))
        verdict = self.guard.record(bad) if cfg.guards.skip_nonfinite else "ok"
        if verdict == "ok":
            if cfg.grad_clip_norm is not None:
                clip_(grads, cfg.grad_clip_norm, norm)
            for opt, base in zip(self.optimizers, self.base_lrs):
                lr = self.guard.lr_scale * lr_at(cfg.lr_schedule, self.step, base, warmup_steps=cfg.lr_warmup_steps,
                                                 total_steps=self.total_steps, min_ratio=cfg.lr_min_ratio,
                                                 restart_period=cfg.lr_restart_period, restart_mult=cfg.lr_restart_mult)
                for g in opt.param_groups:
                    g["lr"] = lr
                opt.step()
            if self.ema is not None:
                self.ema.update()
        else:
            sanitize_carry(self.carry)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.step += 1
        self._tick_sums += np.where(np.isfinite(sums), sums, 0.0)
        self._tick_segments += k
        if bad:
            self._event("bad_step", f"non-finite loss or gradient (loss {sums[0]:.4g}, grad norm {self.grad_norm:.4g}): "
                        f"step skipped ({self.guard.consecutive} in a row, {self.guard.total_bad} in all)")
        if verdict == "rollback":
            self._rollback()

    def _rollback(self) -> None:
        counters = self.guard.state_dict()
        found = ckpt.latest_valid_checkpoint(self.run_dir)
        if found is None:
            raise HrmkitError(f"{self.guard.consecutive} consecutive non-finite steps before the first checkpoint "
                              f"(guards.max_bad_steps={self.cfg.guards.max_bad_steps}); lower lr or set grad_clip_norm")
        bad_step = self.step
        self._restore(found[1])
        self.guard.load_state_dict({**counters, "consecutive": 0})
        self.guard.rolled_back()
        self.rate.reset()
        self._event("rollback", f"rolled back from step {bad_step} to {found[0].name} (step {self.step}); "
                    f"learning rates now x{self.guard.lr_scale:g}")
        if self.main:
            self.status.update(global_step=self.step, guards=self.guard.state_dict())

    # --- logging ------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.main:
            self.console.line(text) if getattr(self, "console", None) else print(text, flush=True)

    def _event(self, name: str, text: str) -> None:
        if self.main:
            self.sinks.write({"run_id": self.run_id, "global_step": self.step, "kind": "event", "event": name,
                              "message": text, **{f"guards/{k}": v for k, v in self.guard.state_dict().items()}})
        self._say(f"[{self.run_id}] step {self.step}: {text}")

    def _tick(self) -> None:
        rate = self.rate.rate()
        if rate is None:
            rate = self.step / max(self.train_time, 1e-9) if self.train_time else None
        eta = (self.total_steps - self.step) / rate if rate else None
        sums, segs = self._tick_sums, max(self._tick_segments, 1)
        rows, count = self.B * segs, max(sums[STATS.index("count")], 1.0)
        stat = dict(zip(STATS, sums))
        rec = {
            "run_id": self.run_id, "kind": "train", "global_step": self.step, "epoch": self.epoch,
            "epoch_step": self.epoch_step, "wall_time": self._wall(),
            "samples_per_s": rate * self.B * self.k if rate else None,
            "lr": self.optimizers[0].param_groups[0]["lr"], "loss": stat["loss"] / rows,
            "lm_loss": stat["lm_loss"] / rows, "q_halt_loss": stat["q_halt_loss"] / rows,
            "q_continue_loss": stat["q_continue_loss"] / rows, "accuracy": stat["accuracy"] / count,
            "exact_accuracy": stat["exact_accuracy"] / count, "q_halt_accuracy": stat["q_halt_accuracy"] / count,
            "steps": stat["steps"] / count, "grad_norm": self.grad_norm, "bad_steps": self.guard.total_bad,
            "eta_s": eta,
        }
        self._tick_sums[:] = 0
        self._tick_segments = 0
        if not self.main:
            return
        self.sinks.write(rec)
        sps = f"{rec['samples_per_s']:.0f}" if rec["samples_per_s"] is not None else "?"
        self.console.line(
            f"[{self.run_id}] step {self.step}/{self.total_steps} epoch {self.epoch} ({self.epoch_step}/"
            f"{self.sampler.batches_per_epoch}) wall {fmt_time(rec['wall_time'])} {sps} samples/s lr {rec['lr']:.3g} "
            f"loss {rec['loss']:.4f} acc {rec['accuracy']:.3f} exact {rec['exact_accuracy']:.3f} ETA {fmt_time(eta)}")
        self.console.advance(self.step, f"loss {rec['loss']:.4f}")
        if self.device.type == "cuda" and not self._memory_reported:
            self._memory_reported = True
            gpu = memory_report(self.device)["gpu"]
            low = gpu["headroom_frac"] < self.cfg.memory_headroom
            self._say(f"[{self.run_id}] GPU memory: peak {gpu['peak_reserved_mb']:.0f} of {gpu['total_mb']:.0f} MiB, "
                      f"headroom {gpu['headroom_frac']:.0%}" + (f" -- WARNING: below memory_headroom="
                                                                f"{self.cfg.memory_headroom}; driver stalls are likely "
                                                                "with full VRAM, lower global_batch_size" if low else ""))
        self.status.heartbeat(global_step=self.step, epoch=self.epoch, samples_per_s=rec["samples_per_s"], eta_s=eta)

    # --- evaluation ---------------------------------------------------------------------------------------
    def _split(self, kind: str):
        if self._test_split is None:
            self._test_split = load_split(Path(self.cfg.data_path), "test")
        if kind == "full":
            return self._test_split
        if self._fast_split is None:
            self._fast_split = fast_subset(self._test_split, self.cfg.eval.fast_examples, self.cfg.eval.fast_seed)
        return self._fast_split

    def _evaluate(self, kind: str) -> dict[str, Any]:
        """Run a `fast` or `full` evaluation on rank 0; every rank gets its summary."""
        summary = last_eval = None
        if self.main:
            cfg = self.cfg
            with self.status.background(f"evaluating ({kind})"), \
                    (self.ema.swapped() if self.ema is not None else contextlib.nullcontext()):
                result = evaluate_split(self.head, self._split(kind), batch_size=cfg.eval_batch_size or self.B,
                                        device=self.device, max_examples=cfg.eval_max_examples if kind == "full" else None)
            summary = result["summary"]
            diag, warning, loud = diagnosis_of(result)
            prefix = "eval" if kind == "full" else "eval_fast"
            record = {"run_id": self.run_id, "global_step": self.step, "kind": "eval", "eval_kind": kind,
                      **{f"{prefix}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}}
            self.sinks.write(record)
            copy = (result.get("baselines") or {}).get("copy_input") or {}
            base = f" (copy-input baseline exact {copy['exact_accuracy']:.4f})" if "exact_accuracy" in copy else ""
            self._say(f"[{self.run_id}] eval ({kind}) step {self.step}: exact {summary.get('exact_accuracy', float('nan')):.4f} "
                      f"token {summary.get('token_accuracy', float('nan')):.4f} on {summary.get('num_examples')} examples{base}")
            if warning and loud:
                text = (f"!!!!! WARNING [{self.run_id}] eval ({kind}) step {self.step}: {warning} Accuracy numbers "
                        f"of this model are not evidence of learning. !!!!!")
                self._say(text)
                if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a log file: make it visible on stderr too
                    print(text, file=sys.stderr, flush=True)
            elif warning:
                self._say(f"[{self.run_id}] eval ({kind}) step {self.step}: warning: {warning}")
            last_eval = {"step": self.step, "kind": kind, "metrics": summary, "diagnosis": diag}
            self.status.update(last_eval=last_eval, best=public_best(self.evals.best))
        summary, last_eval = self.dist.broadcast_object((summary, last_eval))
        self.evals.last_eval = json.loads(json.dumps(last_eval, default=str))
        self.head.train()
        if kind == "full":
            self.last_full_eval = self.step
        else:
            self.evals.last_fast = {"step": self.step, "value": self.evals.score(summary)}
        return summary

    def _track(self, summary: dict[str, Any]) -> None:
        """Best checkpoint and early stopping on a best-tracking evaluation."""
        target = ckpt.checkpoint_path(self.run_dir, self.step)
        if self.evals.record(self.step, summary, str(target)):
            best = self.evals.best
            self._say(f"[{self.run_id}] new best {best['metric']} {best['value']:.4f} at step {self.step}")
            self.save("running")
            if self.main:
                archive_best(self.run_dir, target, self.config_yaml, best)
        elif self.evals.should_stop and self.stop_reason is None and self.step < self.total_steps:
            self.stop_reason = "early_stop"
            self._event("early_stop", f"no improvement of {self.cfg.eval.best_metric} in {self.evals.stale_evals} "
                        f"evaluations (early_stop_patience={self.cfg.early_stop_patience}); stopping")

    def _maybe_eval(self) -> None:
        fast_due, full_due = self.plan.due(self.step)
        fast_value = None
        if fast_due:
            fast = self._evaluate("fast")
            fast_value = self.evals.last_fast["value"]
            if self.plan.best_on_fast:
                self._track(fast)
        if full_due:
            if self.evals.gate_open(fast_value):
                full = self._evaluate("full")
                self.evals.gate_ref = fast_value
                self._track(full)
            else:
                self._say(f"[{self.run_id}] step {self.step}: full evaluation skipped: fast {self.cfg.eval.best_metric} "
                          f"{fast_value:.4f} did not improve by {self.cfg.eval.gate_delta} on {self.evals.gate_ref:.4f}")
