"""Learning-rate schedules (units: optimizer steps)."""

from __future__ import annotations

import math


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
