"""Run a model over a dataset split and collect its per-example predictions (reference evaluation semantics).

Evaluation mode runs every row for exactly `halt_max_steps` ACT segments (sapientinc/HRM `evaluate`), or
`segments` of them when asked (more than training ran: the carry simply goes on); the predictions are the
argmax of the last segment's logits. The same rollout scores every segment on the way (`SegmentScores`:
`segments_curve`) and the answer each row has where its halting rule first says stop (`at_halt`: the compute
the halting rule would save). Halting rule: q_halt > q_continue (HRM, TRM with Q-continue learning), q_halt > 0
(TRM `no_ACT_continue`, the baseline), as `models.act.ACTModel` halts in training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hrmkit import tasks
from hrmkit.data.format import IGNORE_LABEL_ID, SplitData
from hrmkit.data.sampler import test_batches
from hrmkit.errors import HrmkitError
from hrmkit.eval.rollout import check_segments, rollout
from hrmkit.tasks import Task

# Rows per forward pass of CPU evaluation. A segment's widest activations (the SwiGLU's [rows x tokens, 2W]) stay
# within a core's L2 cache at a few dozen rows; at the demo's eval_batch_size of 500 they do not, and the demo
# model evaluated 1.4-1.7x slower per puzzle (BENCHMARKS.md, section "Speed on the demo recipe against the
# reference, evaluation speed, fresh-clone demo"). Bigger models are matmul-bound at 32 rows already (32 x 81
# tokens).
CPU_EVAL_ROWS = 32


@dataclass
class Predictions:
    """Per-example results of one pass over a split (N = examples evaluated, S = seq_len).

    inputs, labels, preds: int64 [N, S] (labels use -100 for ignored cells); puzzle_identifiers: int64 [N];
    q_halt: float32 [N] (last segment's q_halt logit); steps: int64 [N] (segments run);
    halt_step: int64 [N] (first segment whose halting rule said stop: q_halt > q_continue, or q_halt > 0
    for models without Q-continue learning; the segments run when it never did) — the adaptive compute the
    model asks for.
    """

    inputs: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    puzzle_identifiers: np.ndarray
    q_halt: np.ndarray
    steps: np.ndarray
    halt_step: np.ndarray


@dataclass
class BaselineScore:
    """A trivial baseline scored on the evaluated examples like the model: exact and token accuracy (fractions,
    None when there is nothing to count) over `n_examples`; most_common_token also gives its `token` and the
    split it was counted over (`source`: "train" or "eval"); a task's own baseline (`Task.baselines`) has
    `source` "task"."""

    exact_accuracy: float | None
    token_accuracy: float | None
    n_examples: int
    token: int | None = None
    source: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("token", "source")}


@dataclass
class EvalSummary:
    """The headline numbers of one evaluation (JSON-ready through `to_dict`).

    exact_accuracy (whole answer right) and token_accuracy (over the cells to fill): fractions, None when there
    is nothing to count; n_examples, n_cells: what they were counted over; reference_token_accuracy: token
    accuracy as the references count it (each example's share of right answer cells, averaged; docs/parity.md);
    q_halt_accuracy: share of examples where (q_halt >= 0) equals exactly right; mean_steps, steps_histogram
    {"steps": count}: ACT segments run;
    mean_halt_step, halt_step_histogram: the segment at which the halting rule said stop; input_sensitivity:
    share of the diagnosis examples whose output changed under perturbed inputs (None when not measured);
    pass_at_k: ARC only, {"pass@k": share} (ARC Prize rule); arc_aggregated: ARC during training with
    `eval.arc_aggregate`, {"arc_aggregated/pass@k": share, "arc_aggregated/evaluations": count} with the votes of
    every full evaluation of the run so far (arc_eval.AggregatedVotes).
    """

    exact_accuracy: float | None
    token_accuracy: float | None
    n_examples: int
    n_cells: int
    q_halt_accuracy: float | None
    mean_steps: float | None
    steps_histogram: dict[str, int] | None
    reference_token_accuracy: float | None = None
    mean_halt_step: float | None = None
    halt_step_histogram: dict[str, int] = field(default_factory=dict)
    input_sensitivity: float | None = None
    pass_at_k: dict[str, float] = field(default_factory=dict)
    arc_aggregated: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, overall: dict) -> "EvalSummary":
        """From the "overall" part of a `metrics.compute_metrics` result."""
        return cls(**{k: overall[k] for k in ("exact_accuracy", "token_accuracy", "n_examples", "n_cells",
                                              "q_halt_accuracy", "mean_steps", "steps_histogram",
                                              "reference_token_accuracy")})

    @classmethod
    def numeric_fields(cls) -> list[str]:
        """Names of the fields that hold one number (what `eval.best_metric` may name, besides pass@k)."""
        return [f.name for f in fields(cls) if "dict" not in str(f.type)]

    def to_dict(self) -> dict:
        """Flat JSON form: every field, with the pass@k and arc_aggregated entries as top-level keys."""
        out = {k: v for k, v in asdict(self).items() if k not in ("pass_at_k", "arc_aggregated")}
        out.update(self.pass_at_k)
        out.update(self.arc_aggregated)
        return out

    def scalars(self) -> dict[str, float]:
        """The numeric entries of `to_dict` (what metrics sinks log)."""
        return {k: v for k, v in self.to_dict().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def metric(self, name: str) -> float:
        """The numeric entry `name` (e.g. "exact_accuracy", "pass@2"). Raises HrmkitError naming the numeric
        entries when it is missing or not measured."""
        value = self.scalars().get(name)
        if value is None:
            raise HrmkitError(f"eval.best_metric={name!r} is not a numeric field of this evaluation; choose one "
                              f"of {', '.join(sorted(self.scalars()))}")
        return float(value)


@dataclass
class EvalResult:
    """Everything `evaluate_split` measured.

    task; summary (EvalSummary); baselines: {"copy_input", "most_common_token", the task's own: BaselineScore};
    metrics and baseline_metrics: the full `compute_metrics` / `compute_baselines` results (per set, with
    descriptions), keyed like `baselines`; predictions (Predictions, None once dropped); diagnosis: the
    input-sensitivity and collapse check (`diagnose_head`), None when not run. ARC datasets with
    test_tasks.json add (see `arc_eval.score_arc_split`): arc (the score, per-task rows included),
    arc_baselines, arc_predictions (for pooling votes over checkpoints), arc_ranked, arc_tasks.
    segments_curve: [{"segments": n, "exact_accuracy", "token_accuracy"}] for n = 1..N segments (one rollout);
    at_halt: accuracy and mean segments when each row stops where its halting rule says (`SegmentScores`);
    seconds: wall time of the predictions; tta: the `tta.tta_block` with --tta / --ensemble; votes: the
    `tta.Votes` (pooled over checkpoints by --ensemble).
    """

    task: Task
    summary: EvalSummary
    baselines: dict[str, BaselineScore]
    metrics: dict
    baseline_metrics: dict
    predictions: Predictions | None
    diagnosis: dict | None
    arc: dict | None = None
    arc_baselines: dict | None = None
    arc_predictions: list | None = None
    arc_ranked: Any = None
    arc_tasks: dict | None = None
    segments_curve: list | None = None
    at_halt: dict | None = None
    seconds: float | None = None
    tta: dict | None = None
    votes: Any = None


class SegmentScores:
    """Exact and token accuracy after every ACT segment, and of the answer each row has where its halting rule
    first says stop, counted on the device batch by batch during a rollout (`on_segment`): one rollout of N
    segments gives the whole curve, and nothing per segment is kept (an ARC split has ~10^5 rows).

    Counting follows `metrics.accuracy_pair` (the headline numbers): exact over the rows with answer cells,
    token over the `scored_mask` cells (Sudoku: the blank ones). Per batch: `start(batch, n_valid, task)`, the
    rollout calls the object after each segment, `finish()`; then `curve()` and `at_halt()`.
    """

    def __init__(self) -> None:
        self.exact: list[torch.Tensor] = []  # per segment, summed over batches (device tensors: no sync)
        self.right: list[torch.Tensor] = []
        self.rows = self.cells = None
        self.halt_exact = self.halt_right = self.halt_segments = None

    @staticmethod
    def _add(total, value):
        return value if total is None else total + value

    def start(self, batch: dict[str, torch.Tensor], n_valid: int, task: Task) -> None:
        from hrmkit.eval.metrics import answer_cells

        labels = batch["labels"][:n_valid].long()
        self._labels = labels
        self._answer = answer_cells(labels)
        self._has = self._answer.any(dim=1)
        self._scored = task.scored_mask(batch["inputs"][:n_valid], self._answer)
        self._n, self._stop, self._stop_preds, self._last = n_valid, None, None, None
        self.rows = self._add(self.rows, self._has.sum())
        self.cells = self._add(self.cells, self._scored.sum())

    def _counts(self, preds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same = preds == self._labels
        exact = ((same | ~self._answer).all(dim=1) & self._has).sum()
        return exact, (same & self._scored).sum()

    def __call__(self, k: int, outputs: dict[str, torch.Tensor], wants_halt: torch.Tensor) -> None:
        preds = outputs["preds"][:self._n].long()
        exact, right = self._counts(preds)
        if len(self.exact) < k:
            self.exact.append(exact)
            self.right.append(right)
        else:
            self.exact[k - 1] = self.exact[k - 1] + exact
            self.right[k - 1] = self.right[k - 1] + right
        halt = wants_halt[:self._n]
        if self._stop is None:
            self._stop, self._stop_preds = torch.where(halt, k, 0).long(), preds.clone()
        else:
            now = (self._stop == 0) & halt
            self._stop = torch.where(now, k, self._stop)
            self._stop_preds = torch.where(now[:, None], preds, self._stop_preds)
        self._last = (k, preds)

    def finish(self) -> None:
        """End the batch: rows whose halting rule never said stop stop at the last segment."""
        k, preds = self._last
        never = self._stop == 0
        exact, right = self._counts(torch.where(never[:, None], preds, self._stop_preds))
        self.halt_exact, self.halt_right = self._add(self.halt_exact, exact), self._add(self.halt_right, right)
        self.halt_segments = self._add(self.halt_segments, torch.where(never, k, self._stop)[self._has].sum())

    @staticmethod
    def _ratio(num, den) -> float | None:
        den = 0 if den is None else int(den)
        return int(num) / den if den else None

    def curve(self) -> list[dict]:
        """[{"segments": n, "exact_accuracy", "token_accuracy"}] for n = 1..N."""
        return [{"segments": k + 1, "exact_accuracy": self._ratio(e, self.rows), "token_accuracy": self._ratio(r, self.cells)}
                for k, (e, r) in enumerate(zip(self.exact, self.right))]

    def at_halt(self) -> dict:
        """Accuracy when each row stops where its halting rule says, and the segments that costs:
        exact_accuracy, token_accuracy, mean_segments (over the rows with answer cells), max_segments (N)."""
        if self.halt_exact is None:
            return {"exact_accuracy": None, "token_accuracy": None, "mean_segments": None, "max_segments": 0}
        return {"exact_accuracy": self._ratio(self.halt_exact, self.rows),
                "token_accuracy": self._ratio(self.halt_right, self.cells),
                "mean_segments": self._ratio(self.halt_segments, self.rows), "max_segments": len(self.exact)}


@torch.inference_mode()
def predict_split(head: torch.nn.Module, split: SplitData, batch_size: int, device: torch.device | str = "cpu",
                  max_examples: int | None = None, progress: Callable[[int, int], None] | None = None, *,
                  segments: int | None = None, scores: SegmentScores | None = None) -> Predictions:
    """Predict every example of `split` (the first `max_examples` when given) in evaluation mode, `batch_size`
    examples per forward pass (on the CPU at most `CPU_EVAL_ROWS`) under `torch.inference_mode`, in the model's
    computation dtype (see `models.forward_dtype` to evaluate a float32 model in bfloat16).

    The model is put in eval mode and left there; the caller switches back to training. `progress(done, total)`
    is called after each batch (examples predicted so far, examples to predict). `segments`: ACT segments per
    row (default halt_max_steps). `scores`: a `SegmentScores` that collects the prediction after every segment.
    """
    head.eval()
    device = torch.device(device)
    if device.type == "cpu":
        batch_size = min(batch_size, CPU_EVAL_ROWS)
    out: dict[str, list[np.ndarray]] = {k: [] for k in Predictions.__dataclass_fields__}
    seen = 0
    total = split.num_examples if max_examples is None else min(split.num_examples, max_examples)
    task = tasks.of_metadata(split.metadata)
    for batch, n_valid in test_batches(split, batch_size):
        if max_examples is not None and seen >= max_examples:
            break
        n = n_valid if max_examples is None else min(n_valid, max_examples - seen)
        batch = {k: v.to(device) for k, v in batch.items()}
        if scores is not None:
            scores.start(batch, n, task)
        r = rollout(head, batch, segments=segments, on_segment=scores)
        if scores is not None:
            scores.finish()
        outputs, segments, halt_step = r.outputs, r.segments, r.halt_step
        q_halt = outputs["q_halt_logits"].float()
        out["inputs"].append(batch["inputs"][:n].long().cpu().numpy())
        out["labels"].append(batch["labels"][:n].long().cpu().numpy())
        out["preds"].append(outputs["preds"][:n].long().cpu().numpy())
        out["puzzle_identifiers"].append(batch["puzzle_identifiers"][:n].long().cpu().numpy())
        out["q_halt"].append(q_halt[:n].cpu().numpy())
        out["steps"].append(np.full(n, segments, dtype=np.int64))
        out["halt_step"].append(halt_step[:n].cpu().numpy())
        seen += n
        if progress is not None:
            progress(seen, total)
    return Predictions(**{k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()})


def _histogram(values: np.ndarray) -> dict[str, int]:
    """{str(value): count} of an int array, ascending values."""
    uniq, counts = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(uniq, counts)}


DIAGNOSIS_ROWS = 64
TRAIN_LABEL_ROWS = 20_000  # rows of the train split read (evenly spaced) to find its most common label token
_train_labels_cache: dict[tuple, np.ndarray | None] = {}


def train_label_sample(split: SplitData, max_rows: int = TRAIN_LABEL_ROWS) -> np.ndarray | None:
    """Labels of the train split beside `split` (`split.path.parent / "train"`), int64 [M, S] with ignored
    cells as -100; at most `max_rows` evenly spaced rows per set. None when `split` is the train split itself,
    or there is no readable train split (the baseline then counts the evaluated labels). Cached per folder."""
    from hrmkit.data.format import load_split
    from hrmkit.errors import HrmkitError

    train_dir = split.path.parent / "train"
    if split.path.name == "train" or not (train_dir / "dataset.json").is_file():
        return None
    stamp = tuple((f.name, f.stat().st_mtime_ns) for f in sorted(train_dir.glob("*__labels.npy")))
    key = (str(train_dir.resolve()), stamp, max_rows)
    if key not in _train_labels_cache:
        try:
            train = load_split(split.path.parent, "train")
        except HrmkitError:
            _train_labels_cache[key] = None
        else:
            parts = []
            for arrs in train.sets.values():
                n = arrs.num_examples
                idx = np.unique(np.linspace(0, n - 1, min(n, max_rows)).astype(np.int64)) if n else np.zeros(0, int)
                rows = np.asarray(arrs.labels[idx]).astype(np.int64)
                if train.metadata.ignore_label_id is not None:
                    rows[rows == train.metadata.ignore_label_id] = IGNORE_LABEL_ID
                parts.append(rows)
            _train_labels_cache[key] = np.concatenate(parts) if parts else None
    return _train_labels_cache[key]


def diagnosis_batch(split: SplitData, max_rows: int = DIAGNOSIS_ROWS) -> dict[str, torch.Tensor] | None:
    """The fixed batch the input-sensitivity check runs on: up to `max_rows` labelled rows of `split`, spread
    evenly over it (4 * max_rows evenly spaced candidate rows per set, all rows of a smaller set; of its
    labelled candidates max_rows evenly spaced ones; sets in order, the batch cut at max_rows), so that an
    ARC split with many augmented versions per test input is not checked on one task alone. Returns a `collate` batch (int32 tensors: inputs and labels [B, S],
    puzzle_identifiers [B]), or None when no candidate row has a label."""
    from hrmkit.data.sampler import collate

    meta = split.metadata
    xs, ys, ids = [], [], []
    for arrs in split.sets.values():
        n = arrs.num_examples
        cand = np.unique(np.linspace(0, n - 1, min(n, 4 * max_rows)).astype(np.int64)) if n else np.zeros(0, np.int64)
        labels = np.asarray(arrs.labels[cand])
        keep = labels != meta.pad_id
        if meta.ignore_label_id is not None:
            keep &= labels != meta.ignore_label_id
        pick = np.flatnonzero(keep.any(axis=1))
        if pick.size > max_rows:  # spread the kept rows over the candidates
            pick = pick[np.unique(np.linspace(0, pick.size - 1, max_rows).astype(np.int64))]
        rows = cand[pick]
        if rows.size:
            puz = np.searchsorted(arrs.puzzle_indices, rows, side="right") - 1
            xs.append(np.asarray(arrs.inputs[rows]))
            ys.append(labels[pick])
            ids.append(np.asarray(arrs.puzzle_identifiers[puz]))
    if not xs:
        return None
    x, y, i = (np.concatenate(v)[:max_rows] for v in (xs, ys, ids))
    return collate(meta, x, y, i, len(i))


def diagnose_head(head: torch.nn.Module, split: SplitData, device: torch.device | str = "cpu",
                  max_rows: int = DIAGNOSIS_ROWS, seed: int = 0) -> dict | None:
    """`sensitivity.diagnose` of `head` on `diagnosis_batch(split)`: are its outputs input-invariant or
    collapsed, does it predict tokens no answer holds? Random inputs use the task's `input_tokens` below the
    vocabulary size; answers its `answer_tokens`.
    Returns the `make_diagnosis` dict (input_invariant, collapsed, low_sensitivity, invalid_outputs, ok,
    warning, sensitivity, collapse), or None when the split has no labelled row."""
    from hrmkit.eval.sensitivity import act_predict_fn, diagnose

    batch = diagnosis_batch(split, max_rows)
    if batch is None:
        return None
    task, vocab = tasks.of_metadata(split.metadata), split.metadata.vocab_size
    valid, keep = task.input_tokens(vocab) or (None, None)
    if valid is not None:
        valid = [t for t in valid if t < vocab]
    return diagnose(act_predict_fn(head, torch.device(device)), batch, task=task, valid_tokens=valid,
                    keep_tokens=keep, seed=seed, answer_tokens=task.answer_tokens(vocab))


def evaluate_split(head: torch.nn.Module, split: SplitData, batch_size: int, device: torch.device | str = "cpu",
                   max_examples: int | None = None, *, diagnose: bool = True,
                   submission_path: str | Path | None = None,
                   progress: Callable[[int, int], None] | None = None, segments: int | None = None,
                   tta: int | None = None, verify: bool = False, tta_seed: int = 0,
                   checkpoint_name: str = "") -> EvalResult:
    """Predict `split` and score it next to the trivial baselines on the same examples; check that the
    model's output depends on its input; for ARC datasets, vote over augmentations and score pass@k.

    Returns an `EvalResult`. The most-common-token baseline counts its token over the train split beside
    `split` (`split.path.parent / "train"`, read lazily) when there is one, else over the evaluated labels.
    `diagnose`: run the input-sensitivity check (`diagnose_head` on <= 64 labelled rows spread over the split).
    `submission_path`: where ARC writes the Kaggle `submission.json` (not written when None).
    `progress(done, total)`: called after each predicted batch (examples).
    `segments`: ACT segments per row (default halt_max_steps; more lets the model think longer); the result
    holds the accuracy after every segment up to it (`segments_curve`) and where the halting rule stops
    (`at_halt`). `tta`: also vote over that many augmented versions of every puzzle (`eval.tta`, seeded by
    `tta_seed`); `verify`: add the verified figure to that block. HrmkitError for segments or tta out of range.
    """
    from hrmkit.eval.baselines import compute_baselines
    from hrmkit.eval.metrics import compute_metrics

    task = tasks.of_metadata(split.metadata)
    segments = check_segments(segments)
    aug = None
    if tta is not None:
        from hrmkit.eval.tta import task_augmentation

        aug = task_augmentation(task, split.metadata.seq_len, tta, tta_seed)
    if verify and not task.has_verifier:
        raise HrmkitError(f"--verify: task {task.name!r} of {split.path} has no verifier (no rules to check an "
                          "answer against; Sudoku and mazes have one)")
    scores = SegmentScores()
    start = time.perf_counter()
    p = predict_split(head, split, batch_size, device, max_examples, progress, segments=segments, scores=scores)
    seconds = time.perf_counter() - start
    metrics = compute_metrics(p.inputs, p.labels, p.preds, q_halt=p.q_halt, steps=p.steps, task=task)
    summary = EvalSummary.from_metrics(metrics["overall"])
    summary.mean_halt_step = float(p.halt_step.mean()) if len(p.halt_step) else None
    summary.halt_step_histogram = _histogram(p.halt_step)
    baseline_metrics = compute_baselines(p.inputs, p.labels, train_labels=train_label_sample(split), task=task)
    baselines = {}
    for name, m in baseline_metrics.items():
        o, about = m["overall"], m["baseline"]
        baselines[name] = BaselineScore(o["exact_accuracy"], o["token_accuracy"], o["n_examples"],
                                        about.get("token"), about.get("source"))
    diagnosis = diagnose_head(head, split, device) if diagnose else None
    if diagnosis:
        summary.input_sensitivity = (diagnosis.get("sensitivity") or {}).get("changed_examples_share")
    result = EvalResult(task, summary, baselines, metrics, baseline_metrics, p, diagnosis,
                        segments_curve=scores.curve(), at_halt=scores.at_halt(),
                        seconds=seconds)
    if aug is not None:
        from hrmkit.eval.tta import predict_versions, tta_block

        result.votes = predict_versions(head, split, aug, batch_size, device, max_examples, segments=segments,
                                        name=checkpoint_name)
        result.tta = tta_block([result.votes], task, verify)
    if task.votes_over_dataset_versions:
        from hrmkit.eval.arc_eval import score_arc_split

        arc = score_arc_split(p, split, submission_path=submission_path)
        if arc is not None:
            for key, value in arc.items():
                setattr(result, key, value)
            summary.pass_at_k = {k: v for k, v in arc["arc"].items() if k.startswith("pass@")}
    return result
