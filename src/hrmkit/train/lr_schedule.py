"""Learning-rate schedules (units: optimizer steps). Every schedule is a pure function of the step, so a
checkpoint needs no schedule state: resuming at step s gives the same rate as an uninterrupted run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hrmkit.errors import HrmkitError

SCHEDULES = ("cosine", "constant", "cosine_restarts")


def cosine_with_warmup(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup from 0 to `base_lr` over `warmup_steps`, then cosine decay to `base_lr * min_ratio`.

    Reference behaviour (sapientinc/HRM pretrain.py `cosine_schedule_with_warmup_lr_lambda` with
    num_cycles 0.5); min_ratio 1.0 gives a constant rate after warmup.
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def cosine_restarts(step: int, base_lr: float, warmup_steps: int, period: int, mult: float, min_ratio: float) -> float:
    """Warmup, then cosine cycles from `base_lr` down to `base_lr * min_ratio` (SGDR). The first cycle lasts
    `period` steps, each next one `mult` times longer (mult >= 1); at the start of each cycle the rate jumps
    back to `base_lr`."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    t, length = step - warmup_steps, float(max(1, period))
    while t >= length:
        t -= length
        length *= mult
    progress = t / length
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_at(schedule: str, step: int, base_lr: float, *, warmup_steps: int, total_steps: int, min_ratio: float,
          restart_period: int = 1000, restart_mult: float = 1.0) -> float:
    """The learning rate of optimizer step `step` (0-based) for `schedule` (see SCHEDULES).

    Raises HrmkitError for an unknown schedule name.
    """
    if schedule == "cosine":
        return cosine_with_warmup(step, base_lr, warmup_steps, total_steps, min_ratio)
    if schedule == "constant":
        return base_lr * min(1.0, step / max(1, warmup_steps)) if step < warmup_steps else base_lr
    if schedule == "cosine_restarts":
        return cosine_restarts(step, base_lr, warmup_steps, restart_period, restart_mult, min_ratio)
    raise HrmkitError(f"lr_schedule={schedule!r}: expected one of {', '.join(SCHEDULES)}")


def lr_for_update(schedule: str, completed_steps: int, base_lr: float, **kwargs) -> float:
    """The learning rate of the optimizer update that follows `completed_steps` updates: `lr_at` at
    `completed_steps + 1`, because the references increment their step counter before computing the rate
    (pretrain.py `train_batch`), so their first update already has warmup step 1 (rate base_lr / warmup) and
    their last one the rate of step `total_steps`. Keyword arguments as `lr_at`."""
    return lr_at(schedule, completed_steps + 1, base_lr, **kwargs)


def reference_total_steps(epochs: int, total_groups: int, mean_puzzle_examples: float, global_batch_size: int) -> int:
    """`int(epochs * total_groups * mean_puzzle_examples / global_batch_size)`: the optimizer steps the
    references size their schedule with (pretrain.py `init_train_state`); `global_batch_size` counts the
    examples of one optimizer step."""
    return int(epochs * total_groups * mean_puzzle_examples / global_batch_size)


@dataclass(frozen=True)
class StepPlan:
    """How long a run is, in optimizer steps. `schedule_steps`: the schedule's length (the reference formula,
    capped by max_steps); `run_steps`: the steps taken, at most `schedule_steps` and at most the batches the
    run's iterations yield (the reference stops after epochs / eval_interval iterations, and skips any batch
    past total_steps); `eval_every`: steps per iteration (the reference evaluates after each), None without
    eval_interval; `epochs_per_iter`: the iteration length in epochs."""

    schedule_steps: int
    run_steps: int
    eval_every: int | None
    epochs_per_iter: int


def iteration_epochs(epochs: int, eval_interval: int | None) -> int:
    """Epochs per iteration: `eval_interval`, or every epoch of the run without one (reference `launch`)."""
    return int(eval_interval or epochs)


def reference_step_plan(sampler, *, epochs: int, eval_interval: int | None, total_groups: int,
                        mean_puzzle_examples: float, grad_accum_steps: int = 1, max_steps: int | None = None) -> StepPlan:
    """The reference's run length for a `data.sampler.TrainSampler` built with
    `epochs_per_iter=iteration_epochs(epochs, eval_interval)`. One optimizer step takes `grad_accum_steps`
    batches (1 in the references). Iterations: ceil(epochs / epochs_per_iter) (the reference requires
    eval_interval to divide epochs). Raises HrmkitError when the run has no optimizer step."""
    k = int(grad_accum_steps)
    E = iteration_epochs(epochs, eval_interval)
    schedule = reference_total_steps(epochs, total_groups, mean_puzzle_examples, sampler.global_batch_size * k)
    if max_steps is not None:
        schedule = min(schedule, int(max_steps))
    iterations = -(-int(epochs) // E)
    run = min(schedule, sampler.total_batches(iterations, cap=schedule * k) // k)
    if run < 1:
        raise HrmkitError(f"epochs={epochs} with global_batch_size={sampler.global_batch_size} and "
                          f"grad_accum_steps={k} gives no optimizer step")
    every = max(1, sampler.batches_in_iteration(0) // k) if eval_interval else None
    return StepPlan(schedule, run, every, E)
