"""Running evaluations during training (when they run is train/eval_schedule.py): the fixed fast subset, the
evaluation itself with the EMA weights swapped in, its record to the sinks and status.json, loud warnings for
input-invariant or collapsed models, and the `RUN/best/` archive.

`RUN/best/` holds `checkpoint.pt` (a hard link to, or a copy of, the checkpoint of the best step, which
retention also keeps), `config.yaml` and `metrics.json` (metric, value, step, the evaluation summary and its
change against the previous best).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hrmkit.config import TrainConfig
from hrmkit.data.format import SetArrays, SplitData
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_directory, atomic_write_json
from hrmkit.train.eval_schedule import EvalRecord

if TYPE_CHECKING:
    import torch

    from hrmkit.eval.evaluate import EvalResult
    from hrmkit.train.run_context import RunContext
    from hrmkit.train.state import TrainState


def fast_subset(split: SplitData, n: int, seed: int) -> SplitData:
    """A fixed subset of `n` examples of `split`, drawn with `seed` (sorted, so batches keep the split's order).

    Each kept example becomes its own puzzle and group, with its original puzzle identifier. The whole split
    when n >= its size.
    """
    if n >= split.num_examples:
        return split
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(split.num_examples, size=n, replace=False))
    sets, offset = {}, 0
    for name, arrs in split.sets.items():
        local = picked[(picked >= offset) & (picked < offset + arrs.num_examples)] - offset
        offset += arrs.num_examples
        if local.size == 0:
            continue
        puzzle = np.searchsorted(arrs.puzzle_indices, local, side="right") - 1
        k = np.arange(local.size + 1, dtype=np.int32)
        sets[name] = SetArrays(np.asarray(arrs.inputs[local]), np.asarray(arrs.labels[local]),
                               arrs.puzzle_identifiers[puzzle].astype(np.int32), k, k.copy())
    return SplitData(split.path, split.metadata, sets)


def diagnosis_of(result: EvalResult) -> tuple[dict[str, Any] | None, str | None, bool]:
    """(the evaluation's diagnosis made JSON-safe, its warning text or None, loud): loud when the model is
    flagged input-invariant or collapsed (docs/design.md §7), quiet for the other warnings (e.g. invalid
    outputs of an untrained model)."""
    diag = result.diagnosis
    if not isinstance(diag, dict):
        return None, None, False
    diag = json.loads(json.dumps(diag, default=str))
    flags = [name for name in ("input_invariant", "collapsed") if diag.get(name)]
    text = diag.get("warning") or (f"model output flagged: {', '.join(flags)}" if flags else None)
    return diag, text or None, bool(flags)


def check_best_metric(name: str) -> None:
    """HrmkitError unless `eval.best_metric` names a numeric field of the evaluation summary (or pass@k)."""
    from hrmkit.eval.evaluate import EvalSummary

    numeric = EvalSummary.numeric_fields()
    k = name.removeprefix("arc_aggregated/")
    if name not in numeric and not (k.startswith("pass@") and k[5:].isdigit()):
        raise HrmkitError(f"eval.best_metric={name!r} is not a numeric field of the evaluation summary; choose "
                          f"one of {', '.join(numeric)} or pass@k, arc_aggregated/pass@k (ARC)")


class TrainingEvaluator:
    """Runs the fast and full evaluations of a run on rank 0 and hands every rank the `EvalRecord`
    (collective when distributed). Fast evaluations use a fixed subset of `eval.fast_examples` test examples
    drawn with `eval.fast_seed`; full ones the test split (its first `eval_max_examples`)."""

    def __init__(self, cfg: TrainConfig, test: SplitData, device: torch.device):
        from hrmkit.eval.arc_eval import AggregatedVotes

        self.cfg, self.test, self.device = cfg, test, device
        self.fast = fast_subset(test, cfg.eval.fast_examples, cfg.eval.fast_seed)
        # eval.arc_aggregate: votes pooled over the full evaluations of this process (not checkpointed)
        self.arc_votes = AggregatedVotes() if cfg.eval.arc_aggregate else None

    def __call__(self, state: TrainState, run: RunContext, kind: str) -> EvalRecord:
        from hrmkit.eval.evaluate import evaluate_split

        record = None
        if run.main:
            cfg, split = self.cfg, self.fast if kind == "fast" else self.test
            ema = state.ema.swapped() if state.ema is not None else contextlib.nullcontext()
            with run.status.background(f"evaluating ({kind})"), run.evaluating(kind), ema:
                result = evaluate_split(state.model, split, cfg.eval_batch_size or int(cfg.global_batch_size),
                                        self.device, cfg.eval_max_examples if kind == "full" else None,
                                        progress=run.eval_progress)
            if kind == "full" and self.arc_votes is not None:
                result.summary.arc_aggregated = self.arc_votes.add(result.arc_predictions, result.arc_tasks)
            diag, warning, loud = diagnosis_of(result)
            record = EvalRecord(state.step, kind, result.summary, diag)
            self._report(state, run, record, result, warning, loud)
            run.status.update(last_eval=record.to_json(), best=state.evals.public_best())
        record = run.dist.broadcast_object(record)
        state.model.train()
        return record

    def _report(self, state: TrainState, run: RunContext, record: EvalRecord, result: EvalResult,
                warning: str | None, loud: bool) -> None:
        """The eval record (model and baselines) to the sinks, a console line, and the diagnosis warning."""
        prefix, s, kind = "eval" if record.kind == "full" else "eval_fast", result.summary, record.kind
        baselines = {f"{prefix}/baselines/{name}/{k}": v for name, b in result.baselines.items()
                     for k, v in (("exact_accuracy", b.exact_accuracy), ("token_accuracy", b.token_accuracy))
                     if v is not None}
        run.write({"run_id": run.run_id, "global_step": state.step, "kind": "eval", "eval_kind": kind,
                   **{f"{prefix}/{k}": v for k, v in s.scalars().items()}, **baselines})
        copy = result.baselines.get("copy_input")
        base = f" (copy_input baseline exact {_num(copy.exact_accuracy)})" if copy else ""
        run.say(f"[{run.run_id}] eval ({kind}) step {state.step}: exact {_num(s.exact_accuracy)} token "
                f"{_num(s.token_accuracy)} on {s.n_examples} examples{base}")
        if "arc_aggregated/pass@2" in s.arc_aggregated:
            run.say(f"[{run.run_id}] eval ({kind}) step {state.step}: ARC pass@2 {_num(s.pass_at_k.get('pass@2'))} "
                    f"this evaluation, {_num(s.arc_aggregated['arc_aggregated/pass@2'])} with votes aggregated over "
                    f"{s.arc_aggregated['arc_aggregated/evaluations']} evaluations (eval.arc_aggregate)")
        if warning and loud:
            text = (f"!!!!! WARNING [{run.run_id}] eval ({kind}) step {state.step}: {warning} Accuracy numbers "
                    f"of this model are not evidence of learning. !!!!!")
            run.say(text)
            if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a log file: make it visible on stderr too
                print(text, file=sys.stderr, flush=True)
        elif warning:
            run.say(f"[{run.run_id}] eval ({kind}) step {state.step}: warning: {warning}")


def _num(x: float | None) -> str:
    return "nan" if x is None else f"{x:.4f}"


def archive_best(run_dir: Path, checkpoint: Path, config_yaml: bytes, best: dict[str, Any]) -> Path:
    """Write `RUN/best/` atomically (module docstring); returns the folder."""
    final = Path(run_dir) / "best"
    with atomic_directory(final, overwrite=True) as tmp:
        try:
            os.link(checkpoint, tmp / "checkpoint.pt")
        except OSError:
            shutil.copy2(checkpoint, tmp / "checkpoint.pt")
        (tmp / "config.yaml").write_bytes(config_yaml)
        prev = best.get("previous")
        change = None
        if prev:
            old, new = prev.get("summary") or {}, best.get("summary") or {}
            change = {k: new[k] - old[k] for k in new
                      if isinstance(new[k], (int, float)) and not isinstance(new[k], bool)
                      and isinstance(old.get(k), (int, float))}
            change["steps"] = best["step"] - prev["step"]
        atomic_write_json(tmp / "metrics.json", {**best, "change": change})
    return final
