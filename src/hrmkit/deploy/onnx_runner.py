"""Run an exported ONNX ACT segment with onnxruntime: the ACT loop around the graph, without PyTorch.

`hrm export --format onnx` writes `model.onnx`: one ACT segment of the model in evaluation mode (docs/design.md §3,
hrmkit.models.act.ACTModel) as a graph of plain tensors, batch size free:

    inputs               int32 [B, seq_len]           tokens
    puzzle_identifiers   int32 [B]                    puzzle embedding rows (0, the blank identifier, for new puzzles)
    z_H, z_L             float32 [B, P + seq_len, D]   the carry (P = puzzle prefix tokens)
    steps                int32 [B]                    segments run so far
    halted               bool [B]                     rows to restart: their carry is reset to H_init/L_init
  ->
    logits               float32 [B, seq_len, vocab]
    q_halt_logits, q_continue_logits   float32 [B]
    z_H_out, z_L_out, steps_out, halted_out           the new carry (halted_out: steps_out >= halt_max_steps)

`ACTRunner` starts every row halted (so the first segment loads it) and calls the graph until every row has
halted, which in evaluation mode is after exactly halt_max_steps segments, as `hrmkit.eval.rollout.rollout`
does. The halting rule (`hrmkit.halting`: q_halt > q_continue, or q_halt > 0 for models trained without
Q-continue) is not applied to the loop; the runner reports per segment whether it said stop, and the first segment where it did.
This module imports numpy and onnxruntime only, so it runs where PyTorch is not installed (an edge device).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrmkit.errors import HrmkitError
from hrmkit.halting import first_halt_step, halting_decisions

GRAPH_INPUTS = ("inputs", "puzzle_identifiers", "z_H", "z_L", "steps", "halted")
GRAPH_OUTPUTS = ("logits", "q_halt_logits", "q_continue_logits", "z_H_out", "z_L_out", "steps_out", "halted_out")
METADATA_KEY = "hrmkit_config"  # the export's config.json, also stored in the ONNX model's metadata


@dataclass
class RunnerOutput:
    """One batch run through every ACT segment (B rows, K segments, S = seq_len, V = vocab).

    logits: float32 [B, S, V] of the last segment; preds: int64 [B, S] their argmax (the answer tokens);
    q_halt, q_continue: float32 [B, K] per segment; halt_decisions: bool [B, K] (`halting_decisions` with the
    model's rule); halt_step: int64 [B] (`first_halt_step`); segments: K; segment_preds: int64 [B, K, S] (the
    answer after every segment) when asked for, else None; seconds: wall time of the graph calls.
    """

    logits: np.ndarray
    preds: np.ndarray
    q_halt: np.ndarray
    q_continue: np.ndarray
    halt_decisions: np.ndarray
    halt_step: np.ndarray
    segments: int
    segment_preds: np.ndarray | None
    seconds: float


def _session(path: Path, providers: list[str] | None, threads: int | None):
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        raise HrmkitError("running an ONNX export needs onnxruntime: pip install 'hrmkit[export]'") from e
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # corrupt or foreign file
        raise HrmkitError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from e


class ACTRunner:
    """The ACT loop around an exported segment graph (module docstring), on onnxruntime.

    `path`: an ONNX export folder (its model.onnx) or the .onnx file itself; the model's settings are read from
    the graph's metadata (`config`: the export's config.json). `providers`: onnxruntime execution providers
    (default CPU; e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"] on a Jetson); `threads`: intra-op
    threads (default: onnxruntime's choice). Raises HrmkitError when onnxruntime is missing or the file is not
    an hrmkit ONNX export.
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        from hrmkit.limits import MAX_SEGMENTS, check_int
        from hrmkit.loading import check_card_hashes, model_shape

        path = Path(path)
        if path.is_dir():
            check_card_hashes(path)  # an edited model.onnx or config.json is refused naming the file
            path = path / "model.onnx"
        if not path.is_file():
            raise HrmkitError(f"{path}: no such ONNX file")
        self.path = path
        self.session = _session(path, providers, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise HrmkitError(f"{path}: not an hrmkit ONNX export (no {METADATA_KEY!r} metadata)")
        self.config: dict[str, Any] = json.loads(meta[METADATA_KEY])
        where = f"{path}: metadata {METADATA_KEY!r}"
        shape, graph = model_shape(self.config.get("model_shape"), f"{where} field 'model_shape'"), self.config["onnx"]
        self.seq_len, self.vocab_size = shape["seq_len"], shape["vocab_size"]
        self.num_puzzle_identifiers = shape["num_puzzle_identifiers"]
        self.halt_max_steps = check_int(self.config.get("halt_max_steps"), f"{where} field 'halt_max_steps'", 1,
                                        MAX_SEGMENTS)
        self.uses_q_continue = bool(self.config["halting_uses_q_continue"])
        self.carry_shape = (int(graph["carry_tokens"]), int(graph["hidden_size"]))
        # the exporter drops inputs the graph never reads (puzzle ids of a model without a puzzle embedding)
        self.graph_inputs = {i.name for i in self.session.get_inputs()}

    def _check(self, inputs: Any, puzzle_identifiers: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.seq_len or not np.issubdtype(x.dtype, np.integer):
            raise HrmkitError(f"inputs: expected integer tokens [batch, {self.seq_len}], got {x.dtype} {list(x.shape)}")
        if x.size and (x.min() < 0 or x.max() >= self.vocab_size):
            raise HrmkitError(f"inputs: tokens must lie in [0, {self.vocab_size}), found {int(x.min())}..{int(x.max())}")
        ids = np.zeros(x.shape[0], np.int32) if puzzle_identifiers is None else np.asarray(puzzle_identifiers)
        if ids.shape != (x.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise HrmkitError(f"puzzle_identifiers: expected integers [{x.shape[0]}], got {ids.dtype} {list(ids.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_puzzle_identifiers):
            raise HrmkitError(f"puzzle_identifiers: must lie in [0, {self.num_puzzle_identifiers}), "
                              f"found {int(ids.min())}..{int(ids.max())}")
        return x.astype(np.int32), ids.astype(np.int32)

    def run(self, inputs: Any, puzzle_identifiers: Any = None, keep_segments: bool = False) -> RunnerOutput:
        """Run rows `inputs` (int [B, seq_len]) with `puzzle_identifiers` (int [B]; default 0, the blank
        identifier) through every ACT segment. Returns a `RunnerOutput`; with `keep_segments` it holds the answer
        after every segment. Raises HrmkitError for a wrong shape or a token / identifier out of range."""
        x, ids = self._check(inputs, puzzle_identifiers)
        B = x.shape[0]
        feed = {"inputs": x, "puzzle_identifiers": ids,
                "z_H": np.zeros((B, *self.carry_shape), np.float32), "z_L": np.zeros((B, *self.carry_shape), np.float32),
                "steps": np.zeros(B, np.int32), "halted": np.ones(B, bool)}
        feed = {k: v for k, v in feed.items() if k in self.graph_inputs}
        halts, conts, preds = [], [], []
        start = time.perf_counter()
        for _ in range(self.halt_max_steps):
            logits, q_halt, q_cont, z_H, z_L, steps, halted = self.session.run(GRAPH_OUTPUTS, feed)
            feed.update(z_H=z_H, z_L=z_L, steps=steps, halted=halted)
            halts.append(q_halt)
            conts.append(q_cont)
            if keep_segments:
                preds.append(logits.argmax(-1))
            if halted.all():
                break
        else:
            raise HrmkitError(f"{self.path}: rows still running after halt_max_steps={self.halt_max_steps} segments")
        seconds = time.perf_counter() - start
        q_halt, q_cont = np.stack(halts, axis=1), np.stack(conts, axis=1)
        decisions = halting_decisions(q_halt, q_cont if self.uses_q_continue else None)
        return RunnerOutput(logits, logits.argmax(-1).astype(np.int64), q_halt, q_cont, decisions,
                            first_halt_step(decisions), q_halt.shape[1],
                            np.stack(preds, axis=1).astype(np.int64) if keep_segments else None, seconds)
