"""One batch through ACT segments in evaluation semantics: `rollout` and what it returns (`Rollout`), the
segment count it may be asked for (`check_segments`, `segment_count`) and which halting rule a head uses.

Evaluation (eval/evaluate.py), the input-sensitivity check, test-time augmentation and deployment all run
batches through here; this module imports nothing else of `eval`, so those can import it without a circle.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from hrmkit.halting import first_halt_step, halting_decisions


@dataclass
class Rollout:
    """One batch run through ACT segments from a fresh carry (B rows, K segments run, S = seq_len).

    outputs: the last segment's outputs (`logits` [B, S, V], `preds` int64 [B, S], `q_halt_logits` [B], ...);
    segments: K; halt_step: int64 [B], the first segment whose halting rule said stop (q_halt > q_continue,
    or q_halt > 0 for models without Q-continue learning: TRM `no_ACT_continue`, the baseline), K when it never
    did; q_halt, q_continue: float32 [B, K] logits per segment (q_continue None when halting ignores it);
    segment_preds: int64 [B, K, S], the argmax after every segment, or None unless asked for (`keep_segments`).
    """

    outputs: dict[str, torch.Tensor]
    segments: int
    halt_step: torch.Tensor
    q_halt: torch.Tensor
    q_continue: torch.Tensor | None
    segment_preds: torch.Tensor | None = None


def check_segments(segments: int | None, where: str = "--segments") -> int | None:
    """`segments` unchanged when None or 1..MAX_SEGMENTS; HrmkitError naming `where` and the value otherwise."""
    from hrmkit.limits import MAX_SEGMENTS, check_int

    return None if segments is None else check_int(segments, f"{where} (ACT segments)", 1, MAX_SEGMENTS)


@contextlib.contextmanager
def segment_count(head: torch.nn.Module, segments: int | None) -> Iterator[None]:
    """Let an evaluation run `segments` ACT segments (None: the model's halt_max_steps). In eval mode a row
    halts (and would be reset to a fresh carry on the next call) after halt_max_steps segments, so the limit is
    raised for the duration: the carry then simply goes on, past what training ran."""
    act = getattr(head, "model", None)
    if segments is None or act is None or not hasattr(act, "halt_max_steps"):
        yield
        return
    saved = act.halt_max_steps
    act.halt_max_steps = int(segments)
    try:
        yield
    finally:
        act.halt_max_steps = saved


def uses_q_continue(head: torch.nn.Module) -> bool:
    """Whether the model's halting rule compares q_halt with q_continue (HRM, TRM without `no_ACT_continue`)
    rather than with 0 (TRM `no_ACT_continue`, the baseline)."""
    return bool(getattr(getattr(head, "model", None), "q_continue", True))


@torch.inference_mode()
def rollout(head: torch.nn.Module, batch: dict[str, torch.Tensor], keep_segments: bool = False,
            segments: int | None = None,
            on_segment: Callable[[int, dict[str, torch.Tensor], torch.Tensor], None] | None = None) -> Rollout:
    """Run ACT segments from a fresh carry until every row has halted (in eval mode: halt_max_steps of them,
    or `segments` when given, which may exceed halt_max_steps).

    Runs in whatever train/eval mode the head is in, under `torch.inference_mode` (no gradients; the returned
    tensors are inference tensors). `batch` holds inputs, labels and puzzle_identifiers (int32 [B, S], [B, S],
    [B]). Returns a `Rollout`; with `keep_segments` it holds the prediction after every segment (the thinking
    view). `on_segment(k, outputs, wants_halt)` is called after segment k (1-based) with its outputs and the
    halting rule's verdict bool [B] (q_halt > q_continue, or q_halt > 0 for models without Q-continue
    learning), so that a caller can score every segment without keeping them. In eval mode the number of
    segments is known, so the host never waits on the device between segments; in training mode it reads the
    halting flags after every segment.
    """
    with_cont = uses_q_continue(head)
    with segment_count(head, segments):
        carry = head.initial_carry(batch)
        halts, conts, preds = [], [], []
        # In eval mode an ACTLossHead runs exactly halt_max_steps segments; other heads report all_finished.
        fixed = None if head.training else getattr(getattr(head, "model", None), "halt_max_steps", None)
        while True:
            carry, _, _, outputs, all_finished = head(carry, batch)
            q_halt = outputs["q_halt_logits"].float()
            q_cont = outputs.get("q_continue_logits") if with_cont else None
            halts.append(q_halt)
            if q_cont is not None:
                conts.append(q_cont.float())
            if keep_segments:
                preds.append(outputs["preds"])
            if on_segment is not None:
                on_segment(len(halts), outputs, halting_decisions(q_halt, conts[-1] if q_cont is not None else None))
            if (len(halts) >= fixed) if fixed is not None else bool(all_finished):
                break
    q_halt = torch.stack(halts, dim=1)
    q_cont = torch.stack(conts, dim=1) if conts else None
    n = q_halt.shape[1]
    first = first_halt_step(halting_decisions(q_halt, q_cont))  # [B]
    return Rollout(outputs, n, first, q_halt, q_cont, torch.stack(preds, dim=1) if keep_segments else None)
