"""`hrm export --validate`: run an export next to the PyTorch model it came from and compare, row by row.

Both run every batch of a split through every ACT segment in evaluation mode: PyTorch through
`hrmkit.eval.rollout.rollout`, the export through `onnx_runner.ACTRunner` (ONNX) or through `rollout` of the
model reloaded from the exported folder (safetensors). Compared: the last segment's logits (largest absolute
difference), the Q logits of every segment, the halting decision of every row at every segment
(`onnx_runner.halting_decisions` on both sides) and the answers; both sets of answers are scored with
`eval.metrics.compute_metrics`, next to the trivial baselines on the same rows.

Acceptance: no logit or Q logit is non-finite on either side (a model whose weights are NaN agrees with its
NaN export "exactly", so differences alone would pass it), a safetensors round trip is identical (difference 0). ONNX (float32) logits and Q logits are
within max(1e-4, NOISE_FACTOR x PyTorch's own float32 rounding noise) of PyTorch, and every halting decision
is identical. The noise (largest |float32 - float64| of PyTorch itself on the first batch) is the policy of
`hrm verify-reference`: a recurrent model amplifies rounding from segment to segment, and a trained one has
large logits (the CPU demo's reach 121, where one float32 step is 7.6e-6 and PyTorch float32 is 9e-4 from
float64), so no float32 implementation can promise 1e-4 absolute there; a wrong graph differs by far more.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hrmkit import tasks
from hrmkit.data.format import SplitData
from hrmkit.halting import halting_decisions
from hrmkit.errors import HrmkitError
from hrmkit.loading import TrainedModel

ONNX_TOLERANCE = 1e-4  # absolute, float32; widened to NOISE_FACTOR x the measured rounding noise (docstring)

# A backend maps a collated batch to numpy (logits [B,S,V] of the last segment, q_halt [B,K], q_continue [B,K]).
Backend = Callable[[dict[str, torch.Tensor]], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _torch_backend(head: torch.nn.Module) -> Backend:
    from hrmkit.eval.rollout import rollout

    def run(batch):
        r = rollout(head, batch)
        q_cont = r.q_continue if r.q_continue is not None else torch.zeros_like(r.q_halt)
        return r.outputs["logits"].float().numpy(), r.q_halt.numpy(), q_cont.numpy()

    return run


def _onnx_backend(folder: Path, threads: int | None) -> tuple[Backend, str]:
    import onnxruntime

    from hrmkit.deploy.onnx_runner import ACTRunner

    runner = ACTRunner(folder, threads=threads)

    def run(batch):
        out = runner.run(batch["inputs"].numpy(), batch["puzzle_identifiers"].numpy())
        return out.logits, out.q_halt, out.q_continue

    providers = ",".join(p.replace("ExecutionProvider", "") for p in runner.session.get_providers())
    return run, f"onnxruntime {onnxruntime.__version__} ({providers})"


def _max_abs(x: np.ndarray) -> float:
    """Largest |x| over the finite entries (0.0 when none): NaN never hides in a comparison (max(0, nan) is 0 in
    Python); non-finite values are counted apart (`_non_finite`)."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else 0.0


def _non_finite(*arrays: np.ndarray) -> int:
    return int(sum(np.size(a) - np.count_nonzero(np.isfinite(a)) for a in arrays))


def float32_noise(model: TrainedModel, batch: dict[str, torch.Tensor],
                  float32: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
    """PyTorch's own float32 rounding noise on `batch`: the largest |float32 - float64| of the last segment's
    logits and of the Q logits of every segment (`float32`: the float32 run's backend output on `batch`).
    Returns {"logits": float, "q": float}."""
    from hrmkit.models import build_model

    arch = model.head.model.inner.arch.model_copy(update={"forward_dtype": "float64"})
    head64 = build_model(arch, **model.model_shape).eval()
    head64.load_state_dict(model.head.state_dict())
    exact = _torch_backend(head64)(batch)
    return {"logits": _max_abs(exact[0] - float32[0]),
            "q": max(_max_abs(exact[1] - float32[1]), _max_abs(exact[2] - float32[2]))}


def validate_export(folder: Path, fmt: str, model: TrainedModel, split: SplitData, batch_size: int | None = None,
                    max_examples: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Compare the export in `folder` (format `fmt`) with `model` (PyTorch, CPU, float32) on `split`; the first
    `max_examples` examples when given; `batch_size` default: the run's eval_batch_size or global_batch_size;
    `threads`: intra-op threads of onnxruntime and, for the duration, of PyTorch (default: each one's own).

    Returns a JSON-ready dict: backend, split, examples, segments, batch_size, max_abs_logit_diff,
    max_abs_logit (PyTorch's largest |logit|, the scale of the difference), max_abs_q_diff, halting_rule, halting_identical, differing_answers, exact_accuracy and token_accuracy
    ({pytorch, export, difference}), baselines ({name: compute_metrics "overall"}), seconds_per_puzzle
    ({pytorch, export}: wall time of all segments / examples, after one untimed warm-up batch), float32_noise
    ({logits, q}: `float32_noise` on the first batch), non_finite ({pytorch, export}: NaN or infinite logits and
    Q logits; differences are taken over the finite ones), bound ({logits, q}: the largest difference accepted, see
    the module docstring) and bound_rule (that rule in words), threads (PyTorch's; onnxruntime's when set), tolerance (the base bound: 1e-4 for
    ONNX, 0 for safetensors) and ok (every logit and Q logit finite on both sides, within their bounds, and
    halting identical)."""
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _compare(folder, fmt, model, split, batch_size, max_examples, threads)
    finally:
        torch.set_num_threads(saved_threads)


def _compare(folder: Path, fmt: str, model: TrainedModel, split: SplitData, batch_size: int | None,
             max_examples: int | None, threads: int | None) -> dict[str, Any]:
    from hrmkit.data.sampler import test_batches
    from hrmkit.deploy.card import baseline_scores
    from hrmkit.eval.metrics import compute_metrics
    from hrmkit.loading import load_exported
    from hrmkit.models.reference import NOISE_FACTOR

    cfg = model.config
    batch_size = int(batch_size or cfg.eval_batch_size or cfg.global_batch_size)
    reference = _torch_backend(model.head)
    if fmt == "onnx":
        candidate, backend = _onnx_backend(folder, threads)
        tolerance = ONNX_TOLERANCE
    else:
        candidate, backend = _torch_backend(load_exported(folder).head), f"safetensors reload (torch {torch.__version__})"
        tolerance = 0.0
    uses_q_continue = bool(model.head.model.q_continue)
    logit_diff = q_diff = logit_scale = 0.0
    halting_same, segments, seen = True, 0, 0
    non_finite = {"pytorch": 0, "export": 0}
    seconds = {"pytorch": 0.0, "export": 0.0}
    inputs, labels, preds = [], [], {"pytorch": [], "export": []}
    for i, (batch, valid) in enumerate(test_batches(split, batch_size)):
        n = valid if max_examples is None else min(valid, max_examples - seen)
        if n <= 0:
            break
        outs = {}
        for name, backend_fn in (("pytorch", reference), ("export", candidate)):
            if i == 0:
                backend_fn(batch)  # warm-up (lazy initialisation, allocations): not timed
            start = time.perf_counter()
            outs[name] = backend_fn(batch)
            seconds[name] += time.perf_counter() - start
        (ref_logits, ref_qh, ref_qc), (got_logits, got_qh, got_qc) = outs["pytorch"], outs["export"]
        if i == 0:
            noise = float32_noise(model, batch, outs["pytorch"])
        segments = ref_qh.shape[1]
        for name, (lg, qh, qc) in outs.items():
            non_finite[name] += _non_finite(lg[:n], qh[:n], qc[:n] if uses_q_continue else qh[:0])
        logit_diff = max(logit_diff, _max_abs(ref_logits[:n] - got_logits[:n]))
        logit_scale = max(logit_scale, _max_abs(ref_logits[:n]))
        if got_qh.shape != ref_qh.shape:
            halting_same = False
            q_diff = float("inf")
        else:
            q_diff = max(q_diff, _max_abs(ref_qh[:n] - got_qh[:n]),
                         _max_abs(ref_qc[:n] - got_qc[:n]) if uses_q_continue else 0.0)
            decide = lambda qh, qc: halting_decisions(qh[:n], qc[:n] if uses_q_continue else None)
            halting_same &= bool(np.array_equal(decide(ref_qh, ref_qc), decide(got_qh, got_qc)))
        inputs.append(batch["inputs"][:n].long().numpy())
        labels.append(batch["labels"][:n].long().numpy())
        preds["pytorch"].append(ref_logits[:n].argmax(-1))
        preds["export"].append(got_logits[:n].argmax(-1))
        seen += n
    if not seen:
        raise HrmkitError(f"{split.path}: no examples to validate on")
    x, y = np.concatenate(inputs), np.concatenate(labels)
    task = tasks.of_metadata(split.metadata)
    scores = {name: compute_metrics(x, y, np.concatenate(p), task=task)["overall"] for name, p in preds.items()}
    bound = {k: max(tolerance, NOISE_FACTOR * v) if tolerance else 0.0 for k, v in noise.items()}
    rule = (f"max({tolerance:g}, {NOISE_FACTOR:g} x that noise), the policy of hrm verify-reference" if tolerance
            else "0: a reload must be identical")

    def compare(key: str) -> dict[str, Any]:
        a, b = scores["pytorch"][key], scores["export"][key]
        return {"pytorch": a, "export": b, "difference": None if a is None or b is None else b - a}

    return {
        "backend": backend, "split": split.path.name, "examples": seen, "segments": segments, "batch_size": batch_size,
        "max_abs_logit_diff": logit_diff, "max_abs_logit": logit_scale, "max_abs_q_diff": q_diff, "float32_noise": noise, "bound": bound,
        "non_finite": non_finite,
        "bound_rule": rule,
        "halting_rule": "q_halt > q_continue" if uses_q_continue else "q_halt > 0", "halting_identical": halting_same,
        "differing_answers": int((np.concatenate(preds["pytorch"]) != np.concatenate(preds["export"])).any(-1).sum()),
        "exact_accuracy": compare("exact_accuracy"), "token_accuracy": compare("token_accuracy"),
        "baselines": baseline_scores(x, y, split),
        "seconds_per_puzzle": {k: v / max(seen, 1) for k, v in seconds.items()},
        "threads": {"pytorch": torch.get_num_threads(),
                    "export": threads or ("default" if fmt == "onnx" else torch.get_num_threads())},
        "tolerance": tolerance,
        "ok": not any(non_finite.values()) and logit_diff <= bound["logits"] and q_diff <= bound["q"] and halting_same,
    }
