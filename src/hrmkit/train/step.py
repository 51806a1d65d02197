"""One optimizer step (reference semantics, sapientinc/HRM pretrain.py `train_batch`): `train_step(state, rules)`.

A step runs `grad_accum_steps` ACT segments, each on the next batch of the sampler: halted rows of the carry
take new data, the others keep theirs (docs/design.md §3); each segment backpropagates
loss / (global_batch_size * grad_accum_steps). Then: gradient all-reduce over ranks, one device-to-host copy
of the step's statistics (finiteness of loss, gradients and, from the previous step, the weights), and unless
the step is bad: clip, learning rate of the schedule, optimizer steps, EMA update. The guards decide what a bad
step does (train/guards.py); the loop acts on the verdict.

The loss of a segment comes from `rules.segment_loss(model, carry, batch) -> (carry, loss, metrics)`;
`act_loss` is the references' ACT loss. Another objective (for example distillation from a teacher's logits
per segment) plugs in there without another loop; an object with `state_dict`/`load_state_dict` is saved in
checkpoints beside the rest of the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from hrmkit.models import puzzle_embedding_params
from hrmkit.train.accumulate import PuzzleGradStash
from hrmkit.train.distributed import Dist
from hrmkit.train.guards import clip_, sanitize_carry, total_norm, weights_norm
from hrmkit.train.schedule import lr_for_update
from hrmkit.train.state import TrainState
from hrmkit.train.ticks import STATS

Batch = dict[str, torch.Tensor]
# (model, carry, batch) -> (new carry, loss summed over rows, metrics summed over rows)
SegmentLoss = Callable[[torch.nn.Module, Any, Batch], tuple[Any, torch.Tensor, Batch]]


def act_loss(model: torch.nn.Module, carry: Any, batch: dict[str, torch.Tensor]):
    """One ACT segment of an `ACTLossHead` (or its torch.compile wrapper): (new carry, loss summed over rows,
    metrics summed over halted rows), docs/design.md §3."""
    carry, loss, metrics, _, _ = model(carry, batch)
    return carry, loss, metrics


@dataclass
class StepRules:
    """What every step of a run needs besides the state; fixed for the run.

    model: what a segment calls (state.model, or its torch.compile wrapper); params: state.model's trainable
    parameters; schedule_steps: the learning-rate schedule's length; segment_loss: see the module docstring;
    stash: collects the puzzle-embedding gradients of the segments of a step when grad_accum_steps > 1
    (train/accumulate.py).
    """

    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    schedule_steps: int
    dist: Dist
    device: torch.device
    segment_loss: SegmentLoss = act_loss
    stash: PuzzleGradStash | None = None


@dataclass
class StepReport:
    """What a step measured: STATS sums over its segments (summed over ranks; float64 [len(STATS)]), the
    gradient norm, whether it was bad (non-finite loss/gradients, or non-finite weights after the previous
    step), whether the weights were non-finite, and the guards' verdict ("ok", "skip", "rollback")."""

    sums: np.ndarray
    grad_norm: float
    bad: bool
    weights_bad: bool
    verdict: str


def train_step(state: TrainState, rules: StepRules) -> StepReport:
    """Run one optimizer step on `state` (module docstring); advances state.step, the carry, the sampler and
    the log window. Collective when distributed (every rank calls it)."""
    cfg, k = state.config, state.config.grad_accum_steps
    scale = int(cfg.global_batch_size) * k
    acc = None  # STATS sums of this step, on the device (one transfer per step)
    for _ in range(k):
        batch = {name: v.to(rules.device, non_blocking=True) for name, v in state.next_batch().items()}
        if state.carry is None:
            state.carry = state.model.initial_carry(batch)
        state.carry, loss, metrics = rules.segment_loss(rules.model, state.carry, batch)
        (loss / scale).backward()
        if rules.stash is not None:
            rules.stash.stash()
        zero = loss.new_zeros((), dtype=torch.float64)
        vals = torch.stack([loss.detach().double()] + [metrics[n].detach().double() if n in metrics else zero
                                                       for n in STATS[1:-1]] + [zero])
        acc = vals if acc is None else acc + vals
    if rules.stash is not None:
        rules.stash.merge()
    rules.dist.all_reduce_grads(rules.params)
    local_bad = ~torch.isfinite(acc[0])
    for m in puzzle_embedding_params(state.model):
        if m.local_weights is not None and m.local_weights.grad is not None:
            local_bad = local_bad | ~torch.isfinite(m.local_weights.grad).all()
    acc[-1] = local_bad.double()
    acc = rules.dist.all_reduce_sum(acc)
    grads = [p.grad for p in rules.params if p.grad is not None]
    norm = total_norm(grads).to(acc.device)
    previous = state.weights_norm if state.weights_norm is not None else norm.new_zeros(())
    host = torch.cat([acc, norm.double().view(1), previous.double().view(1).to(acc.device)]).cpu().numpy()
    sums, grad_norm, weights_bad = host[:-2], float(host[-2]), not np.isfinite(host[-1])  # the step's one sync
    bad = bool(sums[-1] > 0 or not np.isfinite(grad_norm)) or weights_bad
    verdict = state.guard.record(bad, weights_bad) if cfg.guards.skip_nonfinite else "ok"
    if verdict == "ok" and not weights_bad:
        if cfg.grad_clip_norm is not None:
            clip_(grads, cfg.grad_clip_norm, norm)
        base_lrs = [cfg.lr] + [cfg.puzzle_emb_lr] * (len(state.optimizers) - 1)
        for opt, base in zip(state.optimizers, base_lrs):
            rate = lr_for_update(cfg.lr_schedule, state.step, base, warmup_steps=cfg.lr_warmup_steps,  # step + 1's
                                 total_steps=rules.schedule_steps, min_ratio=cfg.lr_min_ratio,
                                 restart_period=cfg.lr_restart_period, restart_mult=cfg.lr_restart_mult)
            lr = state.guard.lr_scale * rate
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
        if state.ema is not None:
            state.ema.update()
        state.weights_norm = weights_norm(rules.params)
    else:
        sanitize_carry(state.carry)
    for opt in state.optimizers:
        opt.zero_grad(set_to_none=True)
    state.step += 1
    state.grad_norm = grad_norm
    state.log.add(sums, k)
    return StepReport(sums, grad_norm, bad, weights_bad, verdict)
