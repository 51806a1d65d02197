"""Learning-rate schedules (units: optimizer steps). Every schedule is a pure function of the step, so a
checkpoint needs no schedule state: resuming at step s gives the same rate as an uninterrupted run."""

from __future__ import annotations

import math

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
