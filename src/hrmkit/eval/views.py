"""What `hrm eval --report` shows beyond the scores (`report_views`), and the thinking view: how chosen
evaluated rows' answers form over the ACT segments.

`segment_strips(head, predictions, rows, kind, device)` re-runs those rows (a handful) with
`rollout.rollout(keep_segments=True)` and returns one dict per row for `report.write_report(thinking=...)`:

    {"kind", "name", "correct", "input": grid, "expected": grid, "frames": [(grid, changed mask) per segment],
     "q_halt": [float per segment], "q_continue": [float per segment] | None, "halt_step": int,
     "wrong_cells": int}

Grids are `data.render` display grids; a frame's mask marks the cells changed since the previous segment
(the first segment: since the input).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from hrmkit.data import render
from hrmkit.eval import breakdown
from hrmkit.eval.evaluate import EvalResult
from hrmkit.eval.rollout import rollout
from hrmkit.eval.metrics import exact_correct
from hrmkit.tasks import Task


@torch.no_grad()
def segment_strips(head: torch.nn.Module, p: Any, rows: Sequence[int], kind: Task | str,
                   device: torch.device | str = "cpu") -> list[dict]:
    """Thinking-view dicts (module docstring) for rows `rows` of `p` (an `evaluate.Predictions`) of task
    `kind`; [] when no rows are given."""
    rows = np.asarray(rows, np.int64)
    if not rows.size:
        return []
    head.eval()
    batch = {"inputs": torch.from_numpy(p.inputs[rows]).to(device, torch.int32),
             "labels": torch.from_numpy(p.labels[rows]).to(device, torch.int32),
             "puzzle_identifiers": torch.from_numpy(p.puzzle_identifiers[rows]).to(device, torch.int32)}
    r = rollout(head, batch, keep_segments=True)
    seg = r.segment_preds.cpu().numpy()
    labels = np.where(p.labels[rows] < 0, 0, p.labels[rows])
    exact = exact_correct(p.labels[rows], p.preds[rows])
    wrong = breakdown.wrong_cells(p.labels[rows], p.preds[rows])
    q_cont = None if r.q_continue is None else r.q_continue.cpu().numpy()
    out = []
    for j, i in enumerate(rows.tolist()):
        out.append({"kind": kind, "name": f"#{i}", "correct": bool(exact[j]),
                    "input": render.tokens_to_grid(kind, p.inputs[i]), "expected": render.tokens_to_grid(kind, labels[j]),
                    "frames": render.segment_frames(kind, p.inputs[i], seg[j]),
                    "q_halt": r.q_halt[j].cpu().tolist(), "q_continue": None if q_cont is None else q_cont[j].tolist(),
                    "halt_step": int(r.halt_step[j]), "wrong_cells": int(wrong[j])})
    return out


STRIPS = 3  # failures and successes each shown segment by segment


def report_views(head: torch.nn.Module, cfg: Any, result: EvalResult, split: Any, max_examples: int,
                 device: torch.device | str = "cpu") -> dict:
    """The report's extra views of one `evaluate_split` result (with its "predictions") over `split`, as
    `report.write_report` keyword arguments: "thinking" (strips of up to 3 closest failures and 3 successes),
    "breakdown" (accuracy by difficulty), "confusion" (token confusion table), "halting" (halting-step
    histogram) and "model_info" (parameter count and the run's config `cfg`)."""
    from hrmkit.eval.evaluate import train_label_sample
    from hrmkit.models import count_parameters

    p, task, s = result.predictions, result.task, result.summary
    fails, wins = breakdown.pick_examples(p.labels, p.preds, min(STRIPS, max_examples))
    views = {"model_info": {"num_parameters": count_parameters(head), "config": cfg.model_dump(mode="json")},
             "halting": {"histogram": s.halt_step_histogram, "segments": int(p.steps.max()) if len(p.steps) else 0,
                         "mean": s.mean_halt_step},
             "thinking": segment_strips(head, p, np.concatenate([fails, wins]), task, device)}
    if len(p.preds):
        views["breakdown"] = breakdown.breakdown_tables(task, p.inputs, p.labels, p.preds, split_dir=split.path,
                                                        train_labels=train_label_sample(split))
        views["confusion"] = breakdown.confusion_table(task, p.inputs, p.labels, p.preds, split.metadata.vocab_size)
    return views
