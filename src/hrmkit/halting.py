"""The ACT halting rule, in one place for every side that applies or reports it: the model in training
(`models.act.ACTModel`), evaluation (`eval.rollout.rollout`) and the exported graph's runner
(`deploy.onnx_runner`, which runs without PyTorch).

The functions use only operators and methods that numpy arrays and torch tensors share (`>`, `cumsum`, `sum`,
`+`), so the same code gives the same answer on both, and a torch tensor stays on its device (no host sync).
This module imports nothing, so it loads where PyTorch is not installed.
"""

from __future__ import annotations

from typing import Any


def halting_decisions(q_halt: Any, q_continue: Any = None) -> Any:
    """Whether the halting rule says stop: q_halt > q_continue, or q_halt > 0 for a model trained without
    Q-continue (TRM `no_ACT_continue`, the baseline; pass `q_continue` None). q_halt, q_continue: float logits
    of any matching shape (numpy arrays, torch tensors or floats); returns bool of that shape."""
    return q_halt > (0.0 if q_continue is None else q_continue)


def first_halt_step(decisions: Any) -> Any:
    """int64 [B]: the first segment (1-based) whose decision was stop, K (the segments run) when none was.
    decisions: bool [B, K] (`halting_decisions` per segment), a numpy array or a torch tensor."""
    undecided = (decisions.cumsum(1) == 0).sum(1)  # leading segments that did not say stop, 0..K
    return undecided + (undecided < decisions.shape[1])
