"""The training state: everything a checkpoint holds, in one object with one `state_dict()`/`load_state_dict()`.

`TrainState` = model (the ACTLossHead being trained), optimizers, EMA, sampler position, ACT carry, RNG
streams, step counter, guard counters, the evaluation scheduler's state (best, last evaluations, gate, early
stopping), the logging window, training wall time, the newest healthy checkpoint and whether the run finished.
A run resumed from `state_dict()` continues bitwise as if it had not stopped (on CPU, same world size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from hrmkit.config import TrainConfig
from hrmkit.data.prefetch import DevicePrefetcher
from hrmkit.data.sampler import Batch, TrainSampler
from hrmkit.errors import HrmkitError
from hrmkit.limits import MAX_STEP, check_int
from hrmkit.models import build_optimizers, carry_from_state, carry_to_state
from hrmkit.models.ema import EMA
from hrmkit.train.checkpoint import rng_state, set_rng_state
from hrmkit.train.eval_schedule import EvalScheduler
from hrmkit.train.guards import StepGuard
from hrmkit.train.ticks import LogWindow

# Architecture keys that shape the weights: a resumed run must keep them (the others may change on resume).
SHAPE_KEYS = ("name", "hidden_size", "num_heads", "expansion", "H_layers", "L_layers", "puzzle_emb_ndim",
              "puzzle_emb_len", "pos_encodings", "mlp_t", "no_ACT_continue")


@dataclass
class TrainState:
    """Module docstring. `epoch`, `epoch_step` (position of the last batch drawn), `grad_norm` (of the last
    step) and `weights_norm` (device tensor after the last optimizer step) are transient: not saved."""

    config: TrainConfig
    model_shape: dict[str, int]
    model: torch.nn.Module
    optimizers: list[torch.optim.Optimizer]
    ema: EMA | None
    sampler: TrainSampler
    guard: StepGuard
    evals: EvalScheduler
    log: LogWindow = field(default_factory=LogWindow)
    carry: Any = None
    step: int = 0
    wall_time: float = 0.0  # seconds of the run before this process started (training and evaluation)
    healthy_checkpoint: str | None = None  # newest checkpoint written with no bad streak open and finite weights
    finished: bool = False
    stop_reason: str | None = None
    objective: Any = None  # a stateful segment loss (train/step.py), e.g. a distillation teacher's carry
    task: dict | None = None  # the train split's task record (`hrmkit.tasks.Task.record`), saved for loading
    epoch: int = 0
    epoch_step: int = 0
    grad_norm: float = float("nan")
    weights_norm: torch.Tensor | None = None
    _batches: Any = field(default=None, repr=False)

    def next_batch(self) -> Batch:
        """The sampler's next training batch (updates `epoch`, `epoch_step`). With `prefetch_batches` > 0
        ("auto": 2 on CUDA, else 0) the batches come from a `data.prefetch.DevicePrefetcher` (drawn in a thread,
        already on the model's device on CUDA); the checkpointed sampler position is still that of the next
        batch this state will use."""
        if self._batches is None:
            device = next(self.model.parameters()).device
            depth = self.config.prefetch_batches
            depth = (2 if device.type == "cuda" else 0) if depth == "auto" else depth
            self._batches = (DevicePrefetcher(self.sampler, device, depth, state=self.sampler.state_dict)
                             if depth else iter(self.sampler))
        self.epoch, self.epoch_step, batch = next(self._batches)
        return batch

    def sampler_state(self) -> dict[str, Any]:
        """The position of the next batch `next_batch` returns (the sampler itself may have run ahead)."""
        if isinstance(self._batches, DevicePrefetcher):
            return self._batches.state_dict()
        return self.sampler.state_dict()

    def close_batches(self) -> None:
        """Stop drawing ahead (the prefetch thread); `next_batch` continues from the sampler's own position,
        so call it only before the sampler is repositioned (`load_state_dict`) or when the run ends."""
        if isinstance(self._batches, DevicePrefetcher):
            self._batches.close()
        self._batches = None

    def local_state(self) -> dict[str, Any]:
        """What differs between ranks: the ACT carry (on CPU), the RNG streams and the objective's state (a
        distillation teacher's carry follows this rank's batches)."""
        carry = {k: v.cpu() for k, v in carry_to_state(self.carry).items()} if self.carry is not None else None
        objective = self.objective.state_dict() if self.objective is not None else None
        return {"carry": carry, "rng": rng_state(), "objective": objective}

    def state_dict(self, rank_states: list[dict] | None = None, world_size: int = 1) -> dict[str, Any]:
        """The checkpoint: this rank's state plus `rank_states` (every rank's `local_state`, when distributed)."""
        mine = self.local_state()
        return {
            "model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
            "ema": self.ema.state_dict() if self.ema is not None else None, "sampler": self.sampler_state(),
            "carry": mine["carry"], "rng": mine["rng"], "world_size": world_size, "rank_states": rank_states,
            "step": self.step, "best": self.evals.public_best(), "eval_state": self.evals.state_dict(),
            "guards": self.guard.state_dict(), "log_window": self.log.state_dict(), "wall_time": self.wall_time,
            "healthy_checkpoint": self.healthy_checkpoint, "finished": self.finished, "stop_reason": self.stop_reason,
            "objective": mine["objective"],
            "config": json.dumps(self.config.model_dump()), "model_shape": self.model_shape, "task": self.task,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device, rank: int = 0, world_size: int = 1,
                        warn=print) -> None:
        """Continue from a checkpoint. With another world size the carry restarts and the RNG streams are
        reseeded (`warn` says so). Raises HrmkitError when it does not fit this run (model shape, sampler)."""
        missing = sorted({"model", "optimizers", "sampler", "rng", "step"} - set(state))
        if missing:
            raise HrmkitError(f"the checkpoint lacks the training state entries {missing}")
        step = check_int(state["step"], "the checkpoint's entry 'step'", 0, MAX_STEP)  # before anything changes
        try:
            self.model.load_state_dict(state["model"])
            for opt, s in zip(self.optimizers, state["optimizers"]):
                opt.load_state_dict(s)
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise HrmkitError(f"the checkpoint does not fit this run's model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0]})") from None
        self.close_batches()  # the prefetch thread draws from the sampler
        self.sampler.load_state_dict(state["sampler"])
        mine = {"carry": state.get("carry"), "rng": state["rng"], "objective": state.get("objective")}
        if world_size > 1:
            ranks = state.get("rank_states")
            if ranks and len(ranks) == world_size:
                mine = ranks[rank]
            else:
                warn(f"warning: checkpoint written with world size {state.get('world_size', 1)}, now {world_size}: "
                     "the ACT carry restarts and RNG streams differ")
                mine = {"carry": None, "rng": None, "objective": None}
        carry = mine.get("carry")
        self.carry = carry_from_state({k: v.to(device) for k, v in carry.items()}) if carry else None
        if mine.get("rng") is not None:
            set_rng_state(mine["rng"])
        else:
            torch.manual_seed(self.config.seed + rank + step)
        self.step = step
        self.guard.load_state_dict(state.get("guards") or {})
        self.evals.load_state_dict(state.get("eval_state") or {"best": state.get("best")})
        if state.get("log_window") is not None:
            self.log.load_state_dict(state["log_window"])
        self.wall_time = float(state.get("wall_time", 0.0))
        self.healthy_checkpoint = state.get("healthy_checkpoint")
        self.finished, self.stop_reason = bool(state.get("finished", False)), state.get("stop_reason")
        if self.objective is not None and mine.get("objective") is not None:
            self.objective.load_state_dict(mine["objective"])
        self.weights_norm = None


def new_state(cfg: TrainConfig, model_shape: dict[str, int], model: torch.nn.Module, sampler: TrainSampler,
              evals: EvalScheduler) -> TrainState:
    """A step-0 state around `model` (already on its device): the references' optimizers (models/build.py),
    EMA when `cfg.ema`, fresh guards."""
    optimizers = build_optimizers(model, lr=cfg.lr, puzzle_emb_lr=cfg.puzzle_emb_lr, weight_decay=cfg.weight_decay,
                                  puzzle_emb_weight_decay=cfg.puzzle_emb_weight_decay, betas=(cfg.beta1, cfg.beta2))
    ema = EMA(model, rate=cfg.ema_rate) if cfg.ema else None
    return TrainState(cfg, model_shape, model, optimizers, ema, sampler, StepGuard(cfg.guards), evals)


def check_resumable(saved: TrainConfig, cfg: TrainConfig, model_shape: dict[str, int],
                    saved_shape: dict[str, int] | None) -> None:
    """HrmkitError naming every key that differs between a run's checkpoint and the config it is resumed with
    and that the checkpoint cannot follow: the architecture's shape keys, the dataset shape, the batch size
    and the seed (the sampler's position means nothing under others)."""
    problems = [f"arch.{k}={getattr(cfg.arch, k)!r} (the run has {getattr(saved.arch, k)!r})"
                for k in SHAPE_KEYS if getattr(cfg.arch, k) != getattr(saved.arch, k)]
    problems += [f"{k}={getattr(cfg, k)!r} (the run has {getattr(saved, k)!r})"
                 for k in ("global_batch_size", "seed") if getattr(cfg, k) != getattr(saved, k)]
    if saved_shape is not None and dict(saved_shape) != model_shape:
        problems.append(f"data_path={cfg.data_path!r} holds data of shape {model_shape}, the run was trained on "
                        f"{dict(saved_shape)}")
    if problems:
        raise HrmkitError("cannot resume with " + "; ".join(problems) + "; start a new run instead (or drop "
                          "these overrides)")
