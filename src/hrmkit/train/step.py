"""One optimizer step (reference semantics, sapientinc/HRM pretrain.py `train_batch`): `train_step(state, rules)`.

A step runs `grad_accum_steps` ACT segments, each on the next batch of the sampler: halted rows of the carry
take new data, the others keep theirs (docs/design.md §3); each segment backpropagates
loss / (global_batch_size * grad_accum_steps). Then: gradient all-reduce over ranks, one device-to-host copy
of the step's statistics (finiteness of loss, gradients and, from the previous step, the weights), and unless
the step is bad: clip, learning rate of the schedule, optimizer steps, EMA update. The guards decide what a bad
step does (train/guards.py); the loop acts on the verdict.

The loss of a segment comes from `rules.segment_loss(model, carry, batch) -> (carry, loss, metrics)`;
`act_loss` is the references' ACT loss. Another objective (for example distillation from a teacher's logits
per segment) plugs in there without another loop; the metrics it adds are logged by name beside the others,
and an object with `state_dict`/`load_state_dict` is saved in checkpoints beside the rest of the state.

`segment_backward` is a segment's forward and backward, the one place every training loop runs it;
`bare_step` is the step with nothing around it (what `hrm bench` times and `global_batch_size: auto` sizes).
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
from hrmkit.train.lr_schedule import lr_for_update
from hrmkit.train.state import TrainState
from hrmkit.train.ticks import STATS, stat_names

Batch = dict[str, torch.Tensor]
# (model, carry, batch) -> (new carry, loss summed over rows, metrics): ACTLossHead's (ticks.STATS) and any of
# the objective's own (sums over rows); every one is summed per step and reaches metrics.jsonl (ticks.tick_record).
SegmentLoss = Callable[[torch.nn.Module, Any, Batch], tuple[Any, torch.Tensor, Batch]]


def act_loss(model: torch.nn.Module, carry: Any, batch: dict[str, torch.Tensor]):
    """One ACT segment of an `ACTLossHead` (or its torch.compile wrapper): (new carry, loss summed over rows,
    metrics summed over halted rows), docs/design.md §3."""
    carry, loss, metrics, _, _ = model(carry, batch)
    return carry, loss, metrics


def segment_backward(model: torch.nn.Module, carry: Any, batch: Batch, scale: float,
                     segment_loss: SegmentLoss = act_loss, fresh: torch.nn.Module | None = None):
    """One ACT segment of a training step: `segment_loss` from `carry` (a fresh carry from `fresh`, default
    `model`, when None), then backpropagate loss / scale (scale: rows per optimizer step, so gradients are
    per-example means). Returns (new carry, loss summed over rows, metrics)."""
    if carry is None:
        carry = (fresh if fresh is not None else model).initial_carry(batch)
    carry, loss, metrics = segment_loss(model, carry, batch)
    (loss / scale).backward()
    return carry, loss, metrics


def bare_step(model: torch.nn.Module, carry: Any, batches: list[Batch], optimizers: list[torch.optim.Optimizer],
              segment_loss: SegmentLoss = act_loss):
    """The core of `train_step` with nothing around it: one `segment_backward` per batch (the carry kept across
    them; scale = the batches' rows together), then every optimizer steps and its gradients are cleared. No
    all-reduce, guards, clipping, learning-rate schedule or statistics: what `hrm bench` times and what
    `global_batch_size: auto` measures the memory of. Returns the new carry."""
    scale = sum(int(b["inputs"].shape[0]) for b in batches)
    for batch in batches:
        carry, _, _ = segment_backward(model, carry, batch, scale, segment_loss)
    for opt in optimizers:
        opt.step()
        opt.zero_grad(set_to_none=True)
    return carry


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
    """What a step measured: sums over its segments of the statistics `names` (`ticks.stat_names`: loss first,
    bad last; summed over ranks; float64 [len(names)]), the gradient norm, whether it was bad (non-finite
    loss/gradients, or non-finite weights after the previous step), whether the weights were non-finite, and
    the guards' verdict ("ok", "skip", "rollback")."""

    sums: np.ndarray
    grad_norm: float
    bad: bool
    weights_bad: bool
    verdict: str
    names: tuple[str, ...] = STATS


def train_step(state: TrainState, rules: StepRules) -> StepReport:
    """Run one optimizer step on `state` (module docstring); advances state.step, the carry, the sampler and
    the log window. Collective when distributed (every rank calls it)."""
    cfg, k = state.config, state.config.grad_accum_steps
    scale = int(cfg.global_batch_size) * k
    acc, names = None, None  # sums of `names` (ticks.stat_names) of this step, on the device (one transfer per step)
    for _ in range(k):
        batch = {name: v.to(rules.device, non_blocking=True) for name, v in state.next_batch().items()}
        state.carry, loss, metrics = segment_backward(rules.model, state.carry, batch, scale, rules.segment_loss,
                                                      fresh=state.model)
        if rules.stash is not None:
            rules.stash.stash()
        names = names or stat_names(metrics)
        zero = loss.new_zeros((), dtype=torch.float64)
        vals = torch.stack([loss.detach().double()] + [metrics[n].detach().double() if n in metrics else zero
                                                       for n in names[1:-1]] + [zero])
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
    state.log.add(sums, k, names)
    return StepReport(sums, grad_norm, bad, weights_bad, verdict, names)
