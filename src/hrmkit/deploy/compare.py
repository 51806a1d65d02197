"""Student vs teacher after `hrm distill`: parameters, scores on the test split (the evaluation `hrm eval` runs,
next to the trivial baselines) and CPU latency per puzzle; printed as a table and written to RUN/distill.json
and RUN/report/report.html."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hrmkit.fsutil import atomic_write_json

if TYPE_CHECKING:
    from hrmkit.data.format import SplitData
    from hrmkit.eval.evaluate import EvalResult
    from hrmkit.loading import TrainedModel

LATENCY_BATCH = 64  # puzzles per timed batch
LATENCY_REPEATS = 5  # timed batches per model (median), after one warm-up batch


@dataclass
class Contender:
    """One side of the comparison: its name ("teacher" | "student"), the model and its evaluation."""

    name: str
    model: TrainedModel
    result: EvalResult
    latency_ms: float | None = None  # median CPU milliseconds per puzzle

    def row(self) -> dict[str, Any]:
        """The JSON row: checkpoint, step, parameters, architecture, summary scores, latency."""
        from hrmkit.models import count_parameters

        s = self.result.summary
        arch = self.model.config.arch
        return {"checkpoint": str(self.model.path), "step": self.model.step,
                "parameters": count_parameters(self.model.head),
                "arch": {k: getattr(arch, k) for k in ("name", "hidden_size", "num_heads", "H_layers", "L_layers",
                                                       "H_cycles", "L_cycles", "halt_max_steps", "puzzle_emb_ndim")},
                "exact_accuracy": s.exact_accuracy, "token_accuracy": s.token_accuracy, **s.pass_at_k,
                "n_examples": s.n_examples, "mean_halt_step": s.mean_halt_step,
                "input_sensitivity": s.input_sensitivity, "cpu_ms_per_puzzle": self.latency_ms}


def cpu_latency(heads: list[torch.nn.Module], split: SplitData, batch_size: int = LATENCY_BATCH,
                repeats: int = LATENCY_REPEATS) -> list[float]:
    """Median CPU milliseconds per puzzle of each model in `heads` (eval mode, `eval.rollout.rollout`: all
    halt_max_steps segments) on the first `batch_size` examples of `split` (fewer when it is smaller), timed
    with the current torch thread count. One warm-up batch each, then `repeats` timed batches taken in turns
    (A, B, A, B, ...) so that a load change on the machine hits every model alike. The models are moved to the
    CPU and left there."""
    from hrmkit.data.sampler import test_batches
    from hrmkit.eval.rollout import rollout

    batch, n = next(test_batches(split, min(batch_size, split.num_examples)))
    batch = {k: v[:n] for k, v in batch.items()}
    for head in heads:
        head.to("cpu").eval()
        rollout(head, batch)
    times: list[list[float]] = [[] for _ in heads]
    for _ in range(repeats):
        for head, t in zip(heads, times):
            start = time.perf_counter()
            rollout(head, batch)
            t.append(time.perf_counter() - start)
    return [1000.0 * statistics.median(t) / n for t in times]


def score_tables(result: EvalResult) -> tuple[dict, dict]:
    """(model metrics, baselines) of an evaluation as `hrm eval` shows them: `compute_metrics` results, with
    ARC's pass@k and ARC baselines added."""
    model = {**result.metrics, "overall": {**result.metrics["overall"], **result.summary.pass_at_k}}
    return model, {**result.baseline_metrics, **(result.arc_baselines or {})}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def comparison_table(rows: dict[str, dict], baselines: dict[str, dict], batch: int, threads: int) -> str:
    """The printed table: teacher, student, their ratio, then the baselines' scores (no size or latency)."""
    t, s = rows["teacher"], rows["student"]
    ratio = lambda k: f"{s[k] / t[k]:.2f}x" if s.get(k) and t.get(k) else "—"
    cols = ["model", "parameters", "exact accuracy", "token accuracy", f"CPU ms/puzzle (batch {batch}, "
            f"{threads} thread{'s' * (threads != 1)})"]
    table = [cols] + [[name, f"{r['parameters']:,}", _pct(r["exact_accuracy"]), _pct(r["token_accuracy"]),
                       f"{r['cpu_ms_per_puzzle']:.3f}"] for name, r in rows.items()]
    table.append(["student / teacher", ratio("parameters"), "", "", ratio("cpu_ms_per_puzzle")])
    table += [[f"baseline {name}", "—", _pct(b.get("exact_accuracy")), _pct(b.get("token_accuracy")), "—"]
              for name, b in baselines.items()]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(cols), "  ".join("-" * w for w in widths), *[fmt(r) for r in table[1:]]])


def compare(run_dir: Path, teacher: TrainedModel, student: TrainedModel, split: SplitData, data: Path,
            batch_size: int, device: torch.device, temperature: float, alpha: float, halting: bool) -> dict:
    """Evaluate both models on `split` (of dataset `data`, `batch_size` rows per batch on `device`), time
    them on the CPU, print the student's summary beside the baselines and the comparison table, and write
    RUN/distill.json (returned) and RUN/report/report.html (the student's scores, the teacher beside it, the
    learning curves). Raises HrmkitError when a model does not fit the split."""
    from hrmkit.eval.baselines import format_summary
    from hrmkit.eval.evaluate import evaluate_split
    from hrmkit.eval.report import write_report
    from hrmkit.loading import check_dataset

    sides = []
    for name, model in (("teacher", teacher), ("student", student)):
        check_dataset(model, split.metadata, data)
        sides.append(Contender(name, model, evaluate_split(model.head, split, batch_size=batch_size, device=device)))
    batch, threads = min(LATENCY_BATCH, split.num_examples), torch.get_num_threads()
    for side, ms in zip(sides, cpu_latency([c.model.head for c in sides], split)):
        side.latency_ms = ms
    student_result = sides[1].result
    baselines = {name: b.to_dict() for name, b in student_result.baselines.items()}
    rows = {c.name: c.row() for c in sides}
    title = f"student {student.path} (step {student.step}) on {data} [{split.path.name}]"
    model_table, baseline_table = score_tables(student_result)
    print(format_summary(model_table, baseline_table, title=title))
    print()
    print(f"student vs teacher on {student_result.summary.n_examples} examples of {data} [{split.path.name}]")
    table = comparison_table(rows, baselines, batch, threads)
    print(table)
    out = {"run_dir": str(run_dir), "data": str(data), "split": split.path.name, "task": student_result.task.name,
           **rows, "baselines": baselines,
           "distill": {"temperature": temperature, "alpha": alpha, "halting_targets": halting},
           "latency": {"device": "cpu", "batch": batch, "torch_threads": threads, "repeats": LATENCY_REPEATS,
                       "statistic": "median over timed batches, divided by the batch", "unit": "ms/puzzle"},
           "table": table}
    atomic_write_json(run_dir / "distill.json", out)
    comparison = [{"name": f"{c.name} {Path(c.model.path).name}", "step": c.model.step,
                   "metrics": score_tables(c.result)[0]["overall"], "baselines": score_tables(c.result)[1],
                   "diagnosis": c.result.diagnosis} for c in sides]
    metrics_log = run_dir / "metrics.jsonl"
    report = write_report(run_dir / "report", model_table, baseline_table, student_result.diagnosis,
                          metrics_log if metrics_log.exists() else None,
                          comparison=comparison, title=f"distilled {title}",
                          notes=[f"Distilled from the teacher {teacher.path} (step {teacher.step}): "
                                 f"{rows['teacher']['parameters']:,} -> {rows['student']['parameters']:,} parameters, "
                                 f"CPU {rows['teacher']['cpu_ms_per_puzzle']:.3f} -> "
                                 f"{rows['student']['cpu_ms_per_puzzle']:.3f} ms/puzzle (batch {batch}, {threads} "
                                 f"torch threads)."])
    print(f"comparison written to {run_dir / 'distill.json'}; report written to {report}")
    return out
