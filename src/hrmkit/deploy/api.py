"""The public Python API: `hrmkit.load(path)` -> `Model`, whose `predict` runs the ACT loop on token rows.

    import hrmkit
    model = hrmkit.load("runs/RUN_ID")                 # run folder, RUN/best/, a checkpoint file, ...
    x = model.encode("1...3....1..2...")                # natural form -> tokens (here a 4x4 Sudoku)
    out = model.predict(x[None], keep_segments=True)    # no labels needed
    print(model.decode(out.tokens[0]), out.halt_step[0], out.segment_tokens.shape)

`load` reads whatever `hrmkit.loading.load_model` reads and does not care which kind it got. Prediction
uses the evaluation semantics (`eval.rollout.rollout`: every row runs `halt_max_steps` segments from a fresh
carry and the answer is the argmax after the last one), so `predict(...).tokens` equals what `hrm eval`
scores on the same rows. `predict(..., segments=N)` thinks longer (or shorter); `predict_tta(x, K)` votes over K
augmented versions of every row (`eval.tta`, what `hrm eval --tta` scores).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hrmkit import tasks
from hrmkit.data.format import IGNORE_LABEL_ID
from hrmkit.errors import HrmkitError
from hrmkit.limits import check_int
from hrmkit.loading import TrainedModel, dataset_metadata, find_dataset, is_dataset, load_model


@dataclass
class Prediction:
    """What `Model.predict` returns for B rows after K segments (S = seq_len); CPU tensors.

    tokens: int64 [B, S], the answer (argmax after the last segment);
    halt_step: int64 [B], the first segment after which the halting rule said stop (q_halt > q_continue, or
    q_halt > 0 for models without Q-continue learning: TRM `no_ACT_continue`), K when it never did;
    q_halt, q_continue: float32 [B, K] logits per segment (q_continue None when halting ignores it);
    segments: K; segment_tokens: int64 [B, K, S], the argmax after every segment (None unless asked for).
    """

    tokens: torch.Tensor
    halt_step: torch.Tensor
    q_halt: torch.Tensor
    q_continue: torch.Tensor | None
    segments: int
    segment_tokens: torch.Tensor | None = None


@dataclass
class VotedPrediction:
    """What `Model.predict_tta` returns for B rows (S = seq_len): tokens int64 [B, S], the top-voted answer;
    versions: K; segments: ACT segments each version ran; ranked: per row [(answer int64 [S], votes, mean
    sigmoid(q_halt))], best first; version_tokens: int64 [K, B, S], every version's answer in the row's frame."""

    tokens: torch.Tensor
    versions: int
    segments: int
    ranked: list
    version_tokens: torch.Tensor


def _rows(x: Any, name: str, ndim: int, hi: int) -> np.ndarray:
    """`x` (numpy, torch or nested lists) as int64 [B, seq_len] (ndim 2) or [B] (ndim 1; one row without its
    batch axis is taken as B = 1), every value in 0..hi-1. Raises HrmkitError naming `name`, the row of a
    ragged list, and a value out of range as it was given (a uint64 is not wrapped to a negative number)."""
    if isinstance(x, (list, tuple)) and ndim == 2 and x and all(isinstance(r, (list, tuple)) for r in x):
        lengths = [len(r) for r in x]
        for i, n in enumerate(lengths):
            if n != lengths[0]:  # numpy would refuse the ragged list with "inhomogeneous shape"
                raise HrmkitError(f"{name}: row {i} has {n} tokens but row 0 has {lengths[0]}; every row needs "
                                  "the same length")
    try:
        arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    except (ValueError, TypeError) as e:
        raise HrmkitError(f"{name}: not an array of integer tokens ({e})") from None
    if arr.ndim == ndim - 1:
        arr = arr[None]
    if arr.ndim != ndim or arr.dtype.kind not in "iu":
        raise HrmkitError(f"{name}: expected integer tokens of shape {'[B, seq_len]' if ndim == 2 else '[B]'}, got "
                          f"{arr.dtype} of shape {list(arr.shape)}")
    bad = np.argwhere(arr >= hi) if arr.dtype.kind == "u" else np.argwhere((arr < 0) | (arr >= hi))
    if bad.size:  # checked in the given dtype: int64 would show a large uint64 as a negative number
        at = tuple(int(i) for i in bad[0])
        if len(at) == 2:
            raise HrmkitError(f"{name}[{at[0]}][{at[1]}]: token {arr[at].item()} outside the vocabulary 0..{hi - 1}")
        raise HrmkitError(f"{name}: {arr[at].item()} outside 0..{hi - 1} (row {at[0]})")
    return arr.astype(np.int64)


class Model:
    """A trained HRM/TRM ready for inference (from `hrmkit.load`).

    Attributes: `head` (the torch module, eval mode), `config` (TrainConfig), `step` (optimizer steps it was
    trained for), `path` (the file it came from), `device`, `seq_len`, `vocab_size`, `num_puzzle_identifiers`,
    `halt_max_steps`, `task` (the `hrmkit.tasks.Task` it was trained on: its natural form is what
    `encode`/`decode` use; the generic task, which has none, when the checkpoint records no task and its dataset is
    not found), `kind` (the task's name), `dataset_dir` (the dataset it was trained on, when found: ARC needs its
    identifiers.json).
    """

    def __init__(self, trained: TrainedModel, device: torch.device, dataset_dir: Path | None = None):
        self.trained = trained
        self.head, self.config, self.step, self.path = trained.head, trained.config, trained.step, trained.path
        self.device = device
        shape = trained.model_shape or {}
        self.seq_len = int(shape["seq_len"])
        self.vocab_size = int(shape["vocab_size"])
        self.num_puzzle_identifiers = int(shape.get("num_puzzle_identifiers", 1))
        self._dataset_dir = dataset_dir
        self.task = _task_of(trained, lambda: self.dataset_dir)

    def __repr__(self) -> str:
        return (f"Model({self.config.arch.name}, {self.num_parameters:,} parameters, task {self.kind}, "
                f"seq_len {self.seq_len}, vocab {self.vocab_size}, step {self.step}, from {self.path})")

    @functools.cached_property
    def dataset_dir(self) -> Path | None:
        """The dataset the model was trained on (given to `load`, else looked up from `config.data_path` on first
        use: only ARC's identifiers, a playground example and checkpoints older than task records need it)."""
        return self._dataset_dir if self._dataset_dir is not None else find_dataset(self.trained)

    @property
    def kind(self) -> str:
        """The name of the model's task ("sudoku", "maze", "arc", "grid", a registered one, or "generic")."""
        return self.task.name

    @property
    def halt_max_steps(self) -> int:
        """ACT segments an evaluation runs per row."""
        return int(self.config.arch.halt_max_steps)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters (the puzzle embedding table excluded, as in the references' count)."""
        from hrmkit.models import count_parameters

        return count_parameters(self.head)

    # -------------------------------------------------------------------------------------- prediction

    @torch.no_grad()
    def predict(self, inputs: Any, puzzle_identifiers: Any = None, *, segments: int | None = None,
                keep_segments: bool = False, batch_size: int = 256) -> Prediction:
        """Run the model on token rows; no labels needed.

        inputs: int [B, seq_len] tokens (numpy, torch or lists; one row [seq_len] is taken as B = 1).
        puzzle_identifiers: int [B] (default: 0, the blank identifier, as Sudoku and maze datasets use).
        segments: ACT segments to run, an int or numpy integer in
        1..`limits.MAX_SEGMENTS` (default `halt_max_steps`, the evaluation setting; more lets the model think
        longer, the carry simply goes on).
        keep_segments: also return the prediction after every segment. batch_size: rows per forward pass.
        Returns a `Prediction`. Raises HrmkitError for a wrong shape, a token or identifier out of range, or a
        segment count out of range.
        """
        from hrmkit.eval.rollout import check_segments, rollout

        segments = check_segments(segments, "segments")
        x = _rows(inputs, "inputs", 2, self.vocab_size)
        if x.shape[1] != self.seq_len:
            raise HrmkitError(f"inputs: rows of {x.shape[1]} tokens, but the model reads seq_len {self.seq_len}")
        ids = (np.zeros(len(x), np.int64) if puzzle_identifiers is None
               else _rows(puzzle_identifiers, "puzzle_identifiers", 1, self.num_puzzle_identifiers))
        if ids.shape != (len(x),):
            raise HrmkitError(f"puzzle_identifiers: expected {len(x)} values (one per row), got {ids.shape[0]}")
        batch_size = check_int(batch_size, "batch_size", 1, 2**31 - 1)
        if not len(x):
            raise HrmkitError("inputs: predict needs at least one row")
        parts: dict[str, list[torch.Tensor]] = {"tokens": [], "halt_step": [], "q_halt": [], "q_continue": [],
                                                "segment_tokens": []}
        self.head.eval()
        for lo in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[lo:lo + batch_size]).to(self.device, torch.int32)
            batch = {"inputs": xb, "labels": torch.full_like(xb, IGNORE_LABEL_ID),
                     "puzzle_identifiers": torch.from_numpy(ids[lo:lo + batch_size]).to(self.device, torch.int32)}
            r = rollout(self.head, batch, keep_segments=keep_segments, segments=segments)
            segments = r.segments
            parts["tokens"].append(r.outputs["preds"].long().cpu())
            parts["halt_step"].append(r.halt_step.cpu())
            parts["q_halt"].append(r.q_halt.cpu())
            if r.q_continue is not None:
                parts["q_continue"].append(r.q_continue.cpu())
            if keep_segments:
                parts["segment_tokens"].append(r.segment_preds.long().cpu())
        cat = lambda k: torch.cat(parts[k]) if parts[k] else None
        return Prediction(cat("tokens"), cat("halt_step"), cat("q_halt"), cat("q_continue"), segments,
                          cat("segment_tokens"))

    def predict_tta(self, inputs: Any, versions: int, puzzle_identifiers: Any = None, *,
                    segments: int | None = None, seed: int = 0, batch_size: int = 256) -> "VotedPrediction":
        """Vote over `versions` augmented versions of every row (Sudoku: digit relabelling, transpose, band and
        stack shuffles; mazes: dihedral, at most 8), each answer mapped back to the row's frame; answers
        ranked by votes, then mean sigmoid(q_halt) (`eval.tta`, what `hrm eval --tta` scores). Version 0 is the
        row itself. inputs, puzzle_identifiers, segments, batch_size: as `predict`. Returns a `VotedPrediction`.
        HrmkitError for a task without augmentations (only versions=1 then), ARC (use `deploy.solve.solve_arc`)
        or versions out of range."""
        from hrmkit.eval.tta import rank_answers, task_augmentation

        aug = task_augmentation(self.task, self.seq_len, versions, seed)
        x = _rows(inputs, "inputs", 2, self.vocab_size)
        if x.shape[1] != self.seq_len:
            raise HrmkitError(f"inputs: rows of {x.shape[1]} tokens, but the model reads seq_len {self.seq_len}")
        B, K = len(x), aug.versions
        ids = None if puzzle_identifiers is None else np.tile(_rows(puzzle_identifiers, "puzzle_identifiers", 1,
                                                                  self.num_puzzle_identifiers), K)
        pred = self.predict(aug.forward(x).reshape(K * B, -1), ids, segments=segments, batch_size=batch_size)
        answers = aug.inverse(pred.tokens.numpy().reshape(K, B, -1))
        q = torch.sigmoid(pred.q_halt[:, -1]).numpy().reshape(K, B)
        ranked = [rank_answers(answers[:, i], q[:, i]) for i in range(B)]
        return VotedPrediction(torch.from_numpy(np.stack([r[0][0] for r in ranked])), K, pred.segments, ranked,
                               torch.from_numpy(answers))

    # -------------------------------------------------------------------------------------- natural forms

    def encode(self, puzzle: Any, where: str = "puzzle") -> np.ndarray:
        """Tokens uint8 [seq_len] of one puzzle in its task's natural form (`Task.encode`: a Sudoku string, maze
        text, an ARC or plain grid as a list of lists, ...). Raises HrmkitError (naming `where`) for malformed
        input, a size the model was not trained on, or a task without a natural form."""
        return self.task.encode(puzzle, self.seq_len, where)

    def decode(self, tokens: Any) -> Any:
        """The natural form of one token row [seq_len] (`Task.decode`: a Sudoku string ('.' for blank or PAD
        cells), maze text, a grid as a list of lists or None when the row holds no grid). Raises HrmkitError for
        a row of another length or a token outside the vocabulary."""
        row = _rows(tokens, "tokens", 2, self.vocab_size)
        if row.shape != (1, self.seq_len):
            raise HrmkitError(f"tokens: decode takes one row of seq_len {self.seq_len} tokens, got {row.size} "
                              f"tokens of shape {list(row.shape)}")
        return self.task.decode(row[0])

    def identifiers(self) -> list[str]:
        """Puzzle identifier names of the training dataset (`DATASET/identifiers.json`). HrmkitError when the
        dataset is not found or does not match the model's puzzle embedding table."""
        from hrmkit.data.format import load_identifiers

        if self.dataset_dir is None:
            raise HrmkitError(f"{self.path}: the dataset it was trained on (data_path={self.config.data_path!r}) "
                              "was not found; give its folder (hrmkit.load(..., data=DIR), hrm solve --data DIR)")
        names = load_identifiers(self.dataset_dir)
        if len(names) != self.num_puzzle_identifiers:
            raise HrmkitError(f"{self.dataset_dir}/identifiers.json: {len(names)} identifiers, but the model has "
                              f"{self.num_puzzle_identifiers} puzzle embeddings: not the dataset it was trained on")
        return names


def _task_of(trained: TrainedModel, find_dataset: Callable[[], Path | None]) -> tasks.Task:
    """The task the checkpoint (or export) recorded; for checkpoints written before hrmkit recorded it, the task
    of the dataset found beside it (`find_dataset()`; dataset.json names it); else the generic task."""
    if trained.task is not None:
        return tasks.from_record(trained.task, f"{trained.path}: entry 'task'")
    dataset_dir = find_dataset()
    meta = dataset_metadata(dataset_dir) if dataset_dir is not None else None
    return tasks.of_metadata(meta, str(dataset_dir)) if meta is not None else tasks.Task()


def load(path: str | Path, device: str | torch.device = "cpu", *, use_ema: bool = True,
         data: str | Path | None = None) -> Model:
    """Load a trained model for inference: a run folder (its newest checkpoint), `RUN/best/`, a checkpoint
    file, or any other kind `hrmkit.loading.load_model` reads. EMA weights are used when the run kept them
    (`use_ema=False`: the raw weights). device: "cpu", "cuda", "auto" or a torch.device. data: the dataset
    folder it was trained on, when `config.data_path` does not lead there (only ARC's `encode`/solving needs
    it). Raises HrmkitError naming the path when it holds no readable model."""
    from hrmkit.device import pick_device

    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    trained = load_model(path, dev, use_ema=use_ema, data=data)
    dataset = None
    if data is not None:
        dataset = Path(data)
        if not is_dataset(dataset):
            raise HrmkitError(f"--data {dataset}: not a dataset folder (no train/ or test/ dataset.json)")
    return Model(trained, dev, dataset)
