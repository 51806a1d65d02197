"""The training loop (reference semantics, sapientinc/HRM pretrain.py) built to run for days.

`train(cfg)` reads top to bottom: config -> data (both splits validated, train/data.py) -> model -> state
(train/state.py) -> run folder (train/run_context.py) -> steps (train/step.py). Per global step: stop requests (signal,
time limit) -> `train_step` -> bad-step events and rollback -> log tick and heartbeat -> the evaluations the
scheduler finds due (train/eval_schedule.py, run by train/evaluation.py) -> checkpoint (train/checkpoint.py).
SIGINT/SIGTERM finish the current step, checkpoint, mark the run `interrupted` and return exit code 130/143.
At the end the final checkpoint is written before the final evaluation (a failing evaluation loses no
training), then rewritten with the evaluation's result and the run marked `finished`.

Checkpoints: periodic and new-best checkpoints are not written while a bad streak is open; the checkpoint that
ends a run always is, flagged unhealthy when a streak is open or the weights are non-finite, so a rollback
never returns to it. A run whose weights are non-finite at its end is `crashed` (`RunCrashed`, exit code 3)
and leaves best/ as it was.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hrmkit.config import TrainConfig
from hrmkit.device import pick_device
from hrmkit.proc import keep_freed_cpu_memory
from hrmkit.errors import RunCrashed
from hrmkit.loading import checkpoint_path, init_from_checkpoint, saved_config
from hrmkit.models import build_model, compile_model, count_parameters, puzzle_embedding_params
from hrmkit.train import checkpoint as ckpt
from hrmkit.train.accumulate import PuzzleGradStash
from hrmkit.train.autobatch import auto_batch_size, is_oom
from hrmkit.train.data import RunData, StepBudget, ensure_demo_data, load_run_data, make_sampler, step_budget
from hrmkit.train.distributed import Dist
from hrmkit.train.eval_schedule import Decision, EvalScheduler
from hrmkit.train.evaluation import TrainingEvaluator, archive_best, check_best_metric
from hrmkit.train.guards import weights_norm
from hrmkit.train.run_context import RunContext
from hrmkit.train.sinks import check_dependencies
from hrmkit.train.state import TrainState, check_resumable, new_state
from hrmkit.train.status import memory_report
from hrmkit.train.step import SegmentLoss, StepReport, StepRules, act_loss, train_step
from hrmkit.train.ticks import RateWindow, tick_line, tick_record


@dataclass
class RunResult:
    """How a run ended: its folder, `state` ("finished" | "interrupted") and the signal that stopped it."""

    run_dir: Path
    state: str
    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """0 finished; 128 + signal when interrupted (130 SIGINT, 143 SIGTERM), so a scheduler can requeue."""
        return 0 if self.state == "finished" else 128 + int(self.signum or signal.SIGTERM)


def train(cfg: TrainConfig, resume_dir: str | None = None, on_step: Callable[[TrainState], bool | None] | None = None,
          segment_loss: SegmentLoss = act_loss) -> RunResult:
    """Train per `cfg`; with `resume_dir`, continue that run from its newest valid checkpoint (a run folder
    without one restarts from step 0; a finished run is left as it is). `on_step(state)` runs after every
    global step; a true result stops the run as SIGTERM would. `segment_loss`: see train/step.py.

    Under torchrun (WORLD_SIZE > 1) this joins the process group, uses rank 0's config and run folder, and only
    rank 0 writes files. Raises HrmkitError for bad data, config or run folders (nothing is written then; a
    resumed run's folder is untouched), RunCrashed when training diverges beyond the guards or runs out of memory.
    """
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    dist = Dist.from_env(device.type, cfg.dist_timeout_s)
    try:
        if dist.enabled:
            dumped, resume_dir = dist.broadcast_object((cfg.model_dump(), resume_dir))
            cfg = TrainConfig.model_validate(dumped)
            if device.type == "cuda":
                device = torch.device("cuda", dist.local_rank)
        dist.on_main(lambda: check_dependencies(cfg.log))
        check_best_metric(cfg.eval.best_metric)
        dist.on_main(lambda: ensure_demo_data(cfg))
        data = load_run_data(cfg)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        model = initial_model(cfg, data, dist, fine_tune=resume_dir is None)
        cfg = _settle_batch_size(cfg, model, data, device, dist)
        sampler = make_sampler(data.train, cfg, dist.rank, dist.world_size)
        budget = step_budget(sampler, cfg)
        model.to(device)
        dist.broadcast_module(model)
        if dist.enabled:
            torch.manual_seed(cfg.seed + dist.rank)  # per-rank exploration, as the reference
        scheduler = EvalScheduler(cfg.eval, budget.full_eval_every, cfg.early_stop_patience)
        state = new_state(cfg, data.model_shape, model, sampler, scheduler)
        state.task = data.task_record
        if hasattr(segment_loss, "state_dict") and hasattr(segment_loss, "load_state_dict"):
            state.objective = segment_loss  # its state is checkpointed with the rest
        stash = PuzzleGradStash(puzzle_embedding_params(model)) if cfg.grad_accum_steps > 1 else None
        params = [p for p in model.parameters() if p.requires_grad]
        rules = StepRules(model=compile_model(model) if cfg.compile else model, params=params,
                          schedule_steps=budget.schedule_steps, dist=dist, device=device, segment_loss=segment_loss,
                          stash=stash)
        with RunContext(cfg, dist, device, resume_dir) as run:
            if resume_dir is not None and not _resume(state, run, data, budget, device):
                return RunResult(run.run_dir, "finished")
            run.open(state, budget.total_steps, data.train.metadata.task)
            try:
                return _Loop(state, run, rules, budget, TrainingEvaluator(cfg, data.test, device), on_step).run()
            finally:
                state.close_batches()
    finally:
        dist.shutdown()


def initial_model(cfg: TrainConfig, data: RunData, dist: Dist | None = None, fine_tune: bool = True) -> torch.nn.Module:
    """The model a run starts from (on CPU): `build_model` for the train split's shape, then, with `init_from`
    and `fine_tune` (a new run, not a resume), the weights of that checkpoint (loading.init_from_checkpoint;
    read on rank 0, which `train` broadcasts to the others)."""
    model = build_model(cfg.arch, **data.model_shape)
    if cfg.init_from and fine_tune:
        (dist or Dist()).on_main(lambda: init_from_checkpoint(model, cfg.init_from, print, cfg.data_path,
                                                                   cfg.init_from_puzzle_rows))
    return model


def _settle_batch_size(cfg: TrainConfig, model: torch.nn.Module, data: RunData, device: torch.device,
                       dist: Dist) -> TrainConfig:
    """`global_batch_size: auto` replaced by the batch that fits (train/autobatch.py)."""
    if cfg.global_batch_size != "auto":
        return cfg
    b = dist.on_main(lambda: auto_batch_size(cfg, model, data.train, device, dist.world_size))
    if dist.is_main:
        print(f"global_batch_size=auto: {b} ({b // dist.world_size} per rank, memory_headroom={cfg.memory_headroom})",
              flush=True)
    return cfg.model_copy(update={"global_batch_size": b})


def _resume(state: TrainState, run: RunContext, data: RunData, budget: StepBudget, device: torch.device) -> bool:
    """Load the run's newest valid checkpoint into `state` (nothing in the folder changes); False when the run
    already finished and there is nothing left to do. Raises HrmkitError when the checkpoint does not fit."""
    found = ckpt.latest_valid_checkpoint(run.run_dir)
    if found is None:
        run.say(f"[{run.run_id}] no valid checkpoint in {run.run_dir / 'checkpoints'}: restarting this run from step 0")
        return True
    path, saved = found
    check_resumable(saved_config(saved, path), state.config, data.model_shape, saved.get("model_shape"))
    state.load_state_dict(saved, device, run.dist.rank, run.dist.world_size, warn=run.say)
    if state.finished and (state.step >= budget.total_steps or state.stop_reason == "early_stop"):
        run.say(f"[{run.run_id}] already finished at step {state.step} ({state.stop_reason}); nothing to do "
                f"(raise max_steps to train further)")
        return False
    # the stop reason belongs to the session that stopped; kept, a resume at max_steps would "stop" again (exit 143
    # with no signal) and a scheduler that requeues on 143 would loop forever
    state.finished, state.stop_reason = False, None
    run.say(f"resuming {run.run_id} from {path} (global step {state.step})")
    return True


class _Loop:
    """The steps of one run after it opened (module docstring)."""

    def __init__(self, state: TrainState, run: RunContext, rules: StepRules, budget: StepBudget,
                 evaluator: TrainingEvaluator, on_step: Callable[[TrainState], bool | None] | None):
        self.state, self.ctx, self.rules, self.budget, self.on_step = state, run, rules, budget, on_step
        self.evaluate = lambda kind: evaluator(state, run, kind)
        self.cfg = state.config
        self.t_start, self.wall_offset, self.train_time = time.time(), state.wall_time, 0.0
        self.rate = RateWindow(self.cfg.log.eta_window_s)
        self.last_saved: int | None = state.step if state.step else None
        self.memory_reported = False

    def run(self) -> RunResult:
        s, cfg, run, total = self.state, self.cfg, self.ctx, self.budget.total_steps
        run.say(f"run {run.run_id}: {cfg.arch.name} with {count_parameters(s.model):,} parameters on "
                f"{self.rules.device} x{run.dist.world_size}; batch {cfg.global_batch_size} x {cfg.grad_accum_steps} "
                f"segments, {self.budget.steps_per_epoch} steps/epoch, {total} steps; folder {run.run_dir}")
        try:
            while s.step < total:
                s.stop_reason = self._control_flags()
                if s.stop_reason:
                    break
                t0 = time.time()
                report = train_step(s, self.rules)
                self.train_time += time.time() - t0
                self.rate.add(self.train_time, s.step)
                self._after_bad_step(report)
                if self.on_step is not None and self.on_step(s):
                    run.stop.request()
                if run.console is not None:
                    run.console.advance(s.step)
                if s.step % cfg.log_every == 0 or s.step == total:
                    self._tick()
                run.status.heartbeat(global_step=s.step, epoch=s.epoch)
                if s.step < total:
                    decision = s.evals.after_step(s.step, self.evaluate, str(checkpoint_path(run.run_dir, s.step)),
                                                  track=s.guard.consecutive == 0)
                    self._act_on(decision)
                    if decision.early_stop:
                        s.stop_reason = "early_stop"
                        run.event(s.step, "early_stop", f"no improvement of {cfg.eval.best_metric} in "
                                  f"{s.evals.stale_evals} evaluations (early_stop_patience={cfg.early_stop_patience}); "
                                  "stopping", s.guard.state_dict())
                        break
                    if s.step % cfg.checkpoint_every == 0 and self.last_saved != s.step and s.guard.consecutive == 0:
                        self._save("running")
        except Exception as e:
            if is_oom(e):
                raise RunCrashed(f"out of memory at step {s.step} ({e}); lower global_batch_size") from e
            raise
        return self._finish()

    # --- steps --------------------------------------------------------------------------------------------
    def _control_flags(self) -> str | None:
        """Stop requests agreed by every rank: `signal` or `max_time_s`."""
        cfg, dist = self.cfg, self.ctx.dist
        flags = torch.tensor([float(self.ctx.stop.signum is not None),
                              float(cfg.max_time_s is not None and self.train_time >= cfg.max_time_s)],
                             dtype=torch.float64, device=self.rules.device if dist.enabled else "cpu")
        flags = dist.all_reduce_sum(flags)
        if flags[0] > 0:
            return "signal"
        if flags[1] > 0:
            self.ctx.say(f"[{self.ctx.run_id}] max_time_s={cfg.max_time_s} reached at step {self.state.step}")
            return "max_time_s"
        return None

    def _after_bad_step(self, report: StepReport) -> None:
        s, run = self.state, self.ctx
        if report.bad:
            what = "non-finite weights" if report.weights_bad else "non-finite loss or gradient"
            run.event(s.step, "bad_step", f"{what} (loss {report.sums[0]:.4g}, grad norm {report.grad_norm:.4g}): step "
                      f"skipped ({s.guard.consecutive} in a row, {s.guard.total_bad} in all)", s.guard.state_dict())
        if report.weights_bad and report.verdict != "rollback":  # guards.skip_nonfinite=false: nothing can help
            raise RunCrashed(f"non-finite weights at step {s.step} (guards.skip_nonfinite=false); lower lr or set "
                             "grad_clip_norm")
        if report.verdict == "rollback":
            self._rollback()

    def _rollback(self) -> None:
        s, run = self.state, self.ctx
        counters = s.guard.state_dict()
        found = ckpt.latest_valid_checkpoint(run.run_dir, healthy_only=True)
        if found is None:
            raise RunCrashed(f"{s.guard.consecutive} non-finite steps before the first healthy checkpoint "
                             f"(guards.max_bad_steps={self.cfg.guards.max_bad_steps}); lower lr or set grad_clip_norm")
        bad_step = s.step
        s.load_state_dict(found[1], self.rules.device, run.dist.rank, run.dist.world_size, warn=run.say)
        s.guard.load_state_dict({**counters, "consecutive": 0})
        s.guard.rolled_back()
        self.rate.reset()
        run.event(s.step, "rollback", f"rolled back from step {bad_step} to {found[0].name} (step {s.step}); "
                  f"learning rates now x{s.guard.lr_scale:g}", s.guard.state_dict())
        run.status.update(global_step=s.step, guards=s.guard.state_dict())

    def _act_on(self, decision: Decision) -> None:
        """Save and archive a new best; print the scheduler's notes."""
        s, run = self.state, self.ctx
        for note in decision.notes:
            run.say(f"[{run.run_id}] {note}")
        if decision.new_best:
            path = self._save("running")
            if run.main:
                archive_best(run.run_dir, path, run.config_yaml(), s.evals.best.to_json())

    def _tick(self) -> None:
        s, run, cfg = self.state, self.ctx, self.cfg
        rate = self.rate.rate()
        if rate is None:
            rate = s.step / max(self.train_time, 1e-9) if self.train_time else None
        eta = (self.budget.total_steps - s.step) / rate if rate else None
        samples_per_s = rate * int(cfg.global_batch_size) * cfg.grad_accum_steps if rate else None
        rec = tick_record(s.log, int(cfg.global_batch_size), run_id=run.run_id, global_step=s.step, epoch=s.epoch,
                          epoch_step=s.epoch_step, wall_time=self._wall(), samples_per_s=samples_per_s,
                          lr=s.optimizers[0].param_groups[0]["lr"], grad_norm=s.grad_norm,
                          bad_steps=s.guard.total_bad, eta_s=eta)
        if not run.main:
            return
        run.write(rec)
        run.say(tick_line(rec, self.budget.total_steps, s.sampler.batches_per_epoch))
        run.console.advance(s.step, f"loss {rec['loss']:.4f}")
        if self.rules.device.type == "cuda" and not self.memory_reported:
            self.memory_reported = True
            gpu = memory_report(self.rules.device)["gpu"]
            low = gpu["headroom_frac"] < cfg.memory_headroom
            run.say(f"[{run.run_id}] GPU memory: peak {gpu['peak_reserved_mb']:.0f} of {gpu['total_mb']:.0f} MiB, "
                    f"headroom {gpu['headroom_frac']:.0%}" + (f" -- WARNING: below memory_headroom="
                                                              f"{cfg.memory_headroom}; driver stalls are likely with "
                                                              "full VRAM, lower global_batch_size" if low else ""))
        run.status.heartbeat(global_step=s.step, epoch=s.epoch, samples_per_s=rec["samples_per_s"], eta_s=eta)

    # --- checkpoints and the end ----------------------------------------------------------------------------
    def _wall(self) -> float:
        return self.wall_offset + time.time() - self.t_start

    def _weights_finite(self) -> bool:
        return bool(torch.isfinite(weights_norm(self.rules.params)))

    def _save(self, status_state: str) -> Path:
        """Write the checkpoint of the current step (collective; rank 0 writes); returns its path."""
        s, run = self.state, self.ctx
        healthy = s.guard.consecutive == 0 and self._weights_finite()
        path = checkpoint_path(run.run_dir, s.step)
        if healthy:
            s.healthy_checkpoint = str(path)
        s.wall_time = self._wall()
        ranks = run.dist.gather_objects(s.local_state())
        if run.main:
            state = s.state_dict(ranks if run.dist.enabled else None, run.dist.world_size)
            state["healthy"] = healthy
            protect = {p for p in (s.evals.best.checkpoint if s.evals.best else None, s.healthy_checkpoint) if p}
            ckpt.save_checkpoint(run.run_dir, s.step, state, keep=self.cfg.keep_checkpoints, protect=protect)
            run.status.update(state=status_state, global_step=s.step, last_checkpoint=str(path),
                              best=s.evals.public_best(), guards=s.guard.state_dict())
        self.last_saved = s.step
        return path

    def _finish(self) -> RunResult:
        s, run = self.state, self.ctx
        if s.stop_reason == "signal":
            path = self._save("interrupted")
            command = "hrm distill" if self.cfg.distill.teacher else "hrm train"
            run.say(f"[{run.run_id}] interrupted at step {s.step}; checkpoint {path}; resume with: "
                    f"{command} --resume {run.run_dir}")
            return RunResult(run.run_dir, "interrupted", run.stop.signum)
        if not self._weights_finite():
            raise RunCrashed(f"the weights are non-finite at the end of training (step {s.step}); best/ is left as "
                             "it was; lower lr or set grad_clip_norm")
        path = self._save("running")  # before the final evaluation: a failing evaluation loses no training
        decision = s.evals.at_end(s.step, self.evaluate, str(path), track=s.guard.consecutive == 0)
        s.finished, s.stop_reason = True, s.stop_reason or "completed"
        self._save("finished")
        self._act_on(Decision(notes=decision.notes))
        if decision.new_best and run.main:
            archive_best(run.run_dir, path, run.config_yaml(), s.evals.best.to_json())
        run.status.update(state="finished", phase=None, stop_reason=s.stop_reason)
        run.say(f"[{run.run_id}] finished at step {s.step} ({s.stop_reason}); run folder {run.run_dir}")
        return RunResult(run.run_dir, "finished")
