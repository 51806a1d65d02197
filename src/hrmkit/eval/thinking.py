"""The thinking view for the report: how chosen evaluated rows' answers form over the ACT segments.

`segment_strips(head, predictions, rows, kind, device)` re-runs those rows (a handful) with
`evaluate.rollout(keep_segments=True)` and returns one dict per row for `report.write_report(thinking=...)`:

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
from hrmkit.eval.breakdown import wrong_cells
from hrmkit.eval.evaluate import rollout
from hrmkit.eval.metrics import exact_correct


@torch.no_grad()
def segment_strips(head: torch.nn.Module, p: Any, rows: Sequence[int], kind: str,
                   device: torch.device | str = "cpu") -> list[dict]:
    """Thinking-view dicts (module docstring) for rows `rows` of `p` (an `evaluate.Predictions`); [] when no
    rows are given or `kind` is not one of `render.KINDS`."""
    rows = np.asarray(rows, np.int64)
    if not rows.size or kind not in render.KINDS:
        return []
    head.eval()
    batch = {"inputs": torch.from_numpy(p.inputs[rows]).to(device, torch.int32),
             "labels": torch.from_numpy(p.labels[rows]).to(device, torch.int32),
             "puzzle_identifiers": torch.from_numpy(p.puzzle_identifiers[rows]).to(device, torch.int32)}
    r = rollout(head, batch, keep_segments=True)
    seg = r.segment_preds.cpu().numpy()
    labels = np.where(p.labels[rows] < 0, 0, p.labels[rows])
    exact = exact_correct(p.labels[rows], p.preds[rows])
    wrong = wrong_cells(p.labels[rows], p.preds[rows])
    q_cont = None if r.q_continue is None else r.q_continue.cpu().numpy()
    out = []
    for j, i in enumerate(rows.tolist()):
        out.append({"kind": kind, "name": f"#{i}", "correct": bool(exact[j]),
                    "input": render.tokens_to_grid(kind, p.inputs[i]), "expected": render.tokens_to_grid(kind, labels[j]),
                    "frames": render.segment_frames(kind, p.inputs[i], seg[j]),
                    "q_halt": r.q_halt[j].cpu().tolist(), "q_continue": None if q_cont is None else q_cont[j].tolist(),
                    "halt_step": int(r.halt_step[j]), "wrong_cells": int(wrong[j])})
    return out
