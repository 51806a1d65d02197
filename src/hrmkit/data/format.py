"""The on-disk puzzle dataset format, compatible with the reference loader (sapientinc/HRM).

Layout (docs/design.md §1)::

    DATASET/
      identifiers.json            list[str]; index 0 is "<blank>" (the blank puzzle identifier)
      train/ and test/            one folder per split, each with
        dataset.json              DatasetMetadata (reference fields + hrmkit extras `task`, `extra`)
        {set}__inputs.npy         uint8 [N_examples, seq_len]   input tokens (any integer dtype is read)
        {set}__labels.npy         uint8 [N_examples, seq_len]   target tokens
        {set}__puzzle_identifiers.npy  int32 [N_puzzles]        identifier of each puzzle (augmented version)
        {set}__puzzle_indices.npy int32 [N_puzzles + 1]         puzzle p owns examples [pi[p], pi[p+1])
        {set}__group_indices.npy  int32 [N_groups + 1]          group g owns puzzles [gi[g], gi[g+1])

A *group* is one original puzzle (task), a *puzzle* one augmented version of it, an *example* one
(input, label) row. The references use the single set name "all".

Public API
----------
- `DatasetMetadata` dataclass: the reference `PuzzleDatasetMetadata` fields (pad_id, ignore_label_id,
  blank_identifier_id, vocab_size, seq_len, num_puzzle_identifiers, total_groups, mean_puzzle_examples,
  sets, and TinyRecursiveModels' total_puzzles) plus the hrmkit extras `task` ("sudoku" | "maze" | "arc" |
  None; inferred from the token layout by `infer_task` when a reference-built dataset has none), `task_params`
  (the task's parameters; `hrmkit.tasks.of_metadata` builds the task object from both) and `extra`
  (free dict). Both reference loaders (pydantic, extra keys ignored) read the same dataset.json.
  `to_json()` -> dict, `DatasetMetadata.from_json(obj, source)` (validates; unknown keys ignored).
- `SplitWriter(split_dir, set_name="all", *, seq_len)`: streaming writer for one set of one split.
  `add_group([(inputs [n, seq_len] uint8, labels [n, seq_len] uint8, puzzle_identifier int), ...])`
  appends one group (its puzzles in order); `add_group_uniform(inputs [P, E, S], labels [P, E, S],
  identifiers [P])` is the fast path when every puzzle has E examples. Rows are spooled to raw temporary
  files so memory stays bounded. `finalize(*, vocab_size, num_puzzle_identifiers, pad_id=0, ignore_label_id=0,
  blank_identifier_id=0, task=None, extra=None) -> DatasetMetadata` writes the 5 .npy files and
  dataset.json (total_groups and mean_puzzle_examples are computed). Counters: `num_groups`,
  `num_puzzles`, `num_examples`. `abort()` deletes the spool files.
  Build a dataset inside `fsutil.atomic_directory` so a failure never leaves a partial folder.
- `write_identifiers(dataset_dir, names)`: writes identifiers.json; `names[0]` must be "<blank>"
  (if it is not, "<blank>" is prepended).
- `load_identifiers(dataset_dir) -> list[str]`.
- `load_split(dataset_dir, split, *, mmap=True) -> SplitData`: metadata + arrays per set,
  inputs/labels memory-mapped, index arrays in memory. Validated; any problem raises HrmkitError naming
  the file, field and value (missing file, wrong dtype/ndim/shape, offsets not starting at 0, not strictly
  increasing or not ending at the array length, identifiers out of range, any token >= vocab_size (every
  row, read in chunks), total_groups different from the number of groups).
- `DatasetMetadata.model_shape` (seq_len, vocab_size, num_puzzle_identifiers) and `shape_differences(shape)`
  (what a model of another shape would not fit); `SplitData.require_examples()`: HrmkitError for an empty split.
- `IGNORE_LABEL_ID = -100`: the label of ignored cells at batch time (the references' value).
- `SplitData` (path, metadata, sets: dict[str, SetArrays]); `SetArrays` (inputs, labels, puzzle_identifiers,
  puzzle_indices, group_indices; num_examples / num_puzzles / num_groups).
- `FIELDS`: the 5 array names with their dtype and ndim.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_json, read_json

# name -> (dtype, ndim)
FIELDS: dict[str, tuple[np.dtype, int]] = {
    "inputs": (np.dtype(np.uint8), 2),
    "labels": (np.dtype(np.uint8), 2),
    "puzzle_identifiers": (np.dtype(np.int32), 1),
    "puzzle_indices": (np.dtype(np.int32), 1),
    "group_indices": (np.dtype(np.int32), 1),
}

BLANK_IDENTIFIER = "<blank>"
IGNORE_LABEL_ID = -100  # labels equal to metadata.ignore_label_id (and padding rows) become this in batches
_REFERENCE_KEYS = (
    "pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
    "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "sets",
)
_INT32_MAX = np.iinfo(np.int32).max


# (vocab_size, seq_len) -> task, for datasets built by the reference builders (no `task` field): the token
# layouts of docs/design.md section 1 (sapientinc/HRM and TinyRecursiveModels `dataset/build_*_dataset.py`).
REFERENCE_LAYOUTS = {(11, 81): "sudoku", (6, 900): "maze", (12, 900): "arc"}


def infer_task(vocab_size: int, seq_len: int) -> str | None:
    """The task of a dataset without a `task` field, from its token layout (`REFERENCE_LAYOUTS`); None when
    the layout is not a reference one."""
    return REFERENCE_LAYOUTS.get((vocab_size, seq_len))


@dataclass
class DatasetMetadata:
    """Contents of `SPLIT/dataset.json`. Reference fields first; `task` and `extra` are hrmkit extras."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: list[str]
    total_puzzles: int | None = None  # TinyRecursiveModels' loader requires it; absent from sapientinc/HRM datasets
    task: str | None = None
    task_params: dict[str, Any] = field(default_factory=dict)  # the task's parameters (`hrmkit.tasks.Task.record`)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def model_shape(self) -> dict[str, int]:
        """seq_len, vocab_size, num_puzzle_identifiers: the shape of a model built for this data."""
        return {"seq_len": self.seq_len, "vocab_size": self.vocab_size,
                "num_puzzle_identifiers": self.num_puzzle_identifiers}

    def shape_differences(self, shape: dict[str, int]) -> list[str]:
        """"KEY X (model) vs Y (dataset)" for every entry of a model's `shape` this data does not match."""
        have = self.model_shape
        return [f"{k} {v} (model) vs {have[k]} (dataset)" for k, v in shape.items() if k in have and have[k] != v]

    @classmethod
    def from_json(cls, obj: Any, source: str = "dataset.json") -> "DatasetMetadata":
        """Validate a parsed dataset.json; unknown keys are ignored (as the reference loader does)."""
        if not isinstance(obj, dict):
            raise HrmkitError(f"{source}: expected a JSON object, got {type(obj).__name__}")
        for key in _REFERENCE_KEYS:
            if key not in obj:
                raise HrmkitError(f"{source}: missing field {key!r}")
        ints = ["pad_id", "blank_identifier_id", "vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups"]
        for key in ints:
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise HrmkitError(f"{source}: field {key!r} must be a non-negative integer, got {v!r}")
        ign = obj["ignore_label_id"]
        if ign is not None and (isinstance(ign, bool) or not isinstance(ign, int)):
            raise HrmkitError(f"{source}: field 'ignore_label_id' must be an integer or null, got {ign!r}")
        mpe = obj["mean_puzzle_examples"]
        if isinstance(mpe, bool) or not isinstance(mpe, (int, float)):
            raise HrmkitError(f"{source}: field 'mean_puzzle_examples' must be a number, got {mpe!r}")
        sets = obj["sets"]
        if not isinstance(sets, list) or not sets or not all(isinstance(s, str) and s for s in sets):
            raise HrmkitError(f"{source}: field 'sets' must be a non-empty list of names, got {sets!r}")
        if obj["seq_len"] < 1 or obj["vocab_size"] < 1:
            raise HrmkitError(f"{source}: seq_len and vocab_size must be >= 1, got {obj['seq_len']!r}, {obj['vocab_size']!r}")
        task = obj.get("task")
        if task is not None and not isinstance(task, str):
            raise HrmkitError(f"{source}: field 'task' must be a string, got {task!r}")
        task_params = obj.get("task_params") or {}
        if not isinstance(task_params, dict):
            raise HrmkitError(f"{source}: field 'task_params' must be an object, got {task_params!r}")
        extra = obj.get("extra") or {}
        if not isinstance(extra, dict):
            raise HrmkitError(f"{source}: field 'extra' must be an object, got {extra!r}")
        total_puzzles = obj.get("total_puzzles")
        if total_puzzles is not None and (isinstance(total_puzzles, bool) or not isinstance(total_puzzles, int)):
            raise HrmkitError(f"{source}: field 'total_puzzles' must be an integer, got {total_puzzles!r}")
        return cls(
            pad_id=obj["pad_id"], ignore_label_id=ign, blank_identifier_id=obj["blank_identifier_id"],
            vocab_size=obj["vocab_size"], seq_len=obj["seq_len"],
            num_puzzle_identifiers=obj["num_puzzle_identifiers"], total_groups=obj["total_groups"],
            mean_puzzle_examples=float(mpe), sets=list(sets), total_puzzles=total_puzzles,
            task=task or infer_task(obj["vocab_size"], obj["seq_len"]), task_params=dict(task_params),
            extra=dict(extra),
        )


@dataclass
class SetArrays:
    """Arrays of one set of one split (see module docstring for dtypes and shapes)."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_puzzles(self) -> int:
        return int(self.puzzle_identifiers.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0]) - 1


@dataclass
class SplitData:
    """One loaded split: its folder, metadata and arrays per set name (in metadata.sets order)."""

    path: Path
    metadata: DatasetMetadata
    sets: dict[str, SetArrays]

    @property
    def num_groups(self) -> int:
        return sum(s.num_groups for s in self.sets.values())

    @property
    def num_puzzles(self) -> int:
        return sum(s.num_puzzles for s in self.sets.values())

    @property
    def num_examples(self) -> int:
        return sum(s.num_examples for s in self.sets.values())

    def require_examples(self) -> "SplitData":
        """This split; HrmkitError when it holds no example."""
        if self.num_examples == 0:
            raise HrmkitError(f"{self.path}: the split holds no examples")
        return self


class SplitWriter:
    """Streaming writer for one set of one split; see the module docstring.

    Rows are appended to raw spool files `.{set}__inputs.spool` / `.labels.spool` inside `split_dir` and
    streamed into the .npy files by `finalize` (memory stays bounded, whatever the split's size).
    Errors in arguments (wrong shape, empty group, bad identifier) raise ValueError: they are programming
    errors of the builder, not bad user input.
    """

    def __init__(self, split_dir: str | os.PathLike, set_name: str = "all", *, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if not set_name or "/" in set_name or "__" in set_name:
            raise ValueError(f"bad set name {set_name!r}")
        self.split_dir = Path(split_dir)
        self.split_dir.mkdir(parents=True, exist_ok=True)
        self.set_name = set_name
        self.seq_len = int(seq_len)
        self._spool = {k: self.split_dir / f".{set_name}__{k}.spool" for k in ("inputs", "labels")}
        self._files = {k: open(p, "wb") for k, p in self._spool.items()}
        self._puzzle_identifiers = array("i")  # int32, compact for millions of puzzles
        self._puzzle_indices = array("i", [0])
        self._group_indices = array("i", [0])
        self._finalized = False

    @property
    def num_examples(self) -> int:
        return self._puzzle_indices[-1]

    @property
    def num_puzzles(self) -> int:
        return len(self._puzzle_identifiers)

    @property
    def num_groups(self) -> int:
        return len(self._group_indices) - 1

    def _as_rows(self, arr: Any, what: str) -> np.ndarray:
        a = np.asarray(arr)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != self.seq_len or a.shape[0] < 1:
            raise ValueError(f"{what} must have shape [n>=1, {self.seq_len}], got {a.shape}")
        if a.dtype != np.uint8:
            if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 255:
                raise ValueError(f"{what} must be uint8 tokens, got dtype {a.dtype}")
            a = a.astype(np.uint8)
        return np.ascontiguousarray(a)

    def add_group(self, puzzles: Iterable[tuple[np.ndarray, np.ndarray, int]]) -> None:
        """Append one group: its puzzles (augmented versions), each (inputs [n, S], labels [n, S], identifier)."""
        if self._finalized:
            raise ValueError("SplitWriter already finalized")
        rows = []
        for inputs, labels, pid in puzzles:
            x = self._as_rows(inputs, "inputs")
            y = self._as_rows(labels, "labels")
            if x.shape != y.shape:
                raise ValueError(f"inputs {x.shape} and labels {y.shape} differ in shape")
            if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)) or not 0 <= int(pid) <= _INT32_MAX:
                raise ValueError(f"puzzle identifier must be a non-negative int32, got {pid!r}")
            rows.append((x, y, int(pid)))
        if not rows:
            raise ValueError("a group needs at least one puzzle")
        if self.num_examples + sum(x.shape[0] for x, _, _ in rows) > _INT32_MAX:
            raise ValueError("too many examples for int32 offsets")
        self._files["inputs"].write(b"".join(x.tobytes() for x, _, _ in rows))
        self._files["labels"].write(b"".join(y.tobytes() for _, y, _ in rows))
        for x, _, pid in rows:
            self._puzzle_identifiers.append(pid)
            self._puzzle_indices.append(self.num_examples + x.shape[0])
        self._group_indices.append(self.num_puzzles)

    def add_group_uniform(self, inputs: np.ndarray, labels: np.ndarray, puzzle_identifiers: Any) -> None:
        """Fast `add_group` for a group whose P puzzles all have E examples.

        inputs, labels: uint8 [P, E, seq_len] (or [P, seq_len] for E = 1); puzzle_identifiers: [P] ints.
        """
        if self._finalized:
            raise ValueError("SplitWriter already finalized")
        x, y = np.asarray(inputs), np.asarray(labels)
        if x.ndim == 2:
            x, y = x[:, None, :], y[:, None, :]
        if x.ndim != 3 or x.shape != y.shape or x.shape[2] != self.seq_len or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"inputs/labels must be [P>=1, E>=1, {self.seq_len}], got {x.shape} and {y.shape}")
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise ValueError(f"inputs/labels must be uint8, got {x.dtype} and {y.dtype}")
        ids = np.asarray(puzzle_identifiers).reshape(-1)
        P, E = x.shape[:2]
        if ids.shape[0] != P or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() > _INT32_MAX:
            raise ValueError(f"puzzle_identifiers must be {P} non-negative int32 values, got {ids!r}")
        if self.num_examples + P * E > _INT32_MAX:
            raise ValueError("too many examples for int32 offsets")
        self._files["inputs"].write(np.ascontiguousarray(x).tobytes())
        self._files["labels"].write(np.ascontiguousarray(y).tobytes())
        self._puzzle_identifiers.extend(ids.astype(np.int32).tolist())
        self._puzzle_indices.extend((self.num_examples + E * np.arange(1, P + 1)).tolist())
        self._group_indices.append(self.num_puzzles)

    def _spool_to_npy(self, key: str) -> None:
        """Write `{set}__{key}.npy`: a .npy header for [N, seq_len] uint8, then the spool bytes streamed in."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (self.num_examples, self.seq_len)}
        with open(self.split_dir / f"{self.set_name}__{key}.npy", "wb") as out, open(self._spool[key], "rb") as src:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(src, out, length=1 << 22)

    def finalize(
        self,
        *,
        vocab_size: int,
        num_puzzle_identifiers: int,
        pad_id: int = 0,
        ignore_label_id: int | None = 0,
        blank_identifier_id: int = 0,
        task: str | None = None,
        task_params: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> DatasetMetadata:
        """Write the 5 .npy files and dataset.json of this split; returns the metadata written."""
        if self._finalized:
            raise ValueError("SplitWriter already finalized")
        if self.num_groups == 0:
            raise ValueError(f"split {self.split_dir}: no groups were added")
        if max(self._puzzle_identifiers) >= num_puzzle_identifiers:
            raise ValueError(
                f"puzzle identifier {max(self._puzzle_identifiers)} >= num_puzzle_identifiers {num_puzzle_identifiers}"
            )
        for f in self._files.values():
            f.close()
        self._finalized = True
        try:
            for key in ("inputs", "labels"):
                self._spool_to_npy(key)
            for key in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
                values = np.frombuffer(getattr(self, "_" + key), dtype=np.int32)
                np.save(self.split_dir / f"{self.set_name}__{key}.npy", values.astype(np.int32))
        finally:
            self.abort()
        meta = DatasetMetadata(
            pad_id=pad_id, ignore_label_id=ignore_label_id, blank_identifier_id=blank_identifier_id,
            vocab_size=int(vocab_size), seq_len=self.seq_len, num_puzzle_identifiers=int(num_puzzle_identifiers),
            total_groups=self.num_groups, mean_puzzle_examples=self.num_examples / self.num_puzzles,
            sets=[self.set_name], total_puzzles=self.num_puzzles, task=task,
            task_params=dict(task_params or {}), extra=dict(extra or {}),
        )
        _write_shared_json(self.split_dir / "dataset.json", meta.to_json())
        return meta

    def abort(self) -> None:
        """Close and delete the spool files (called by finalize; call it yourself on failure)."""
        for f in self._files.values():
            with contextlib.suppress(Exception):
                f.close()
        for p in self._spool.values():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _write_shared_json(path: Path, obj: Any) -> None:
    """atomic_write_json, then the usual file mode (mkstemp creates 0600; datasets are meant to be shared)."""
    atomic_write_json(path, obj)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_identifiers(dataset_dir: str | os.PathLike, names: list[str]) -> None:
    """Write DATASET/identifiers.json; index 0 is "<blank>" (prepended when `names` lacks it)."""
    names = [str(n) for n in names]
    if not names or names[0] != BLANK_IDENTIFIER:
        names = [BLANK_IDENTIFIER] + names
    _write_shared_json(Path(dataset_dir) / "identifiers.json", names)


def load_identifiers(dataset_dir: str | os.PathLike) -> list[str]:
    """Read DATASET/identifiers.json (a list of strings); HrmkitError when missing or malformed."""
    path = Path(dataset_dir) / "identifiers.json"
    obj = read_json(path)
    if not isinstance(obj, list) or not all(isinstance(n, str) for n in obj):
        raise HrmkitError(f"{path}: expected a JSON list of strings")
    return obj


def _load_array(path: Path, key: str, mmap: bool) -> np.ndarray:
    dtype, ndim = FIELDS[key]
    if not path.exists():
        raise HrmkitError(f"{path}: file not found (field {key!r})")
    try:
        arr = np.load(path, mmap_mode="r" if (mmap and ndim == 2) else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise HrmkitError(f"{path}: cannot read .npy ({e})") from None
    # token arrays of any integer dtype are read (the references' Sudoku builder saves augmented splits as int64)
    if arr.dtype != dtype and not (ndim == 2 and arr.dtype.kind in "iu"):
        raise HrmkitError(f"{path}: field {key!r} has dtype {arr.dtype}, expected {dtype}")
    if arr.ndim != ndim:
        raise HrmkitError(f"{path}: field {key!r} has shape {arr.shape}, expected {ndim} dimensions")
    return arr


def _check_offsets(path: Path, key: str, offs: np.ndarray, end: int) -> None:
    if offs.shape[0] < 1 or int(offs[0]) != 0:
        first = int(offs[0]) if offs.shape[0] else None
        raise HrmkitError(f"{path}: field {key!r} must start at 0, got {first!r}")
    d = np.diff(offs.astype(np.int64))
    if d.size and d.min() <= 0:
        i = int(np.argmin(d))
        raise HrmkitError(
            f"{path}: field {key!r} must be strictly increasing, got {int(offs[i])} then {int(offs[i + 1])} at index {i}"
        )
    if int(offs[-1]) != end:
        raise HrmkitError(f"{path}: field {key!r} ends at {int(offs[-1])}, expected {end}")


TOKEN_CHECK_BYTES = 64 << 20  # rows per chunk of the token check: about this many bytes


def _check_tokens(path: Path, key: str, arr: np.ndarray, vocab: int) -> None:
    """Every token of `arr` (integers [N, S], memory-mapped) in [0, vocab), checked in chunks of about
    TOKEN_CHECK_BYTES so a split of any size is read once, sequentially, with bounded memory."""
    n, s = arr.shape
    step = max(1, TOKEN_CHECK_BYTES // max(1, s * arr.dtype.itemsize))
    signed = arr.dtype.kind == "i"
    for i in range(0, n, step):
        block = np.asarray(arr[i:i + step])
        if block.size and (int(block.max()) >= vocab or (signed and int(block.min()) < 0)):
            r, c = np.argwhere((block < 0) | (block >= vocab))[0]
            v = int(block[r, c])
            what = f"negative token {v}" if v < 0 else f"token {v} >= vocab_size {vocab}"
            raise HrmkitError(f"{path}: field {key!r} row {i + int(r)} column {int(c)} has {what}")


def load_split(dataset_dir: str | os.PathLike, split: str, *, mmap: bool = True) -> SplitData:
    """Load and validate DATASET/SPLIT; see the module docstring. Raises HrmkitError on any problem."""
    split_dir = Path(dataset_dir) / split
    if not split_dir.is_dir():
        raise HrmkitError(f"{split_dir}: split folder not found")
    meta_path = split_dir / "dataset.json"
    meta = DatasetMetadata.from_json(read_json(meta_path), str(meta_path))
    sets: dict[str, SetArrays] = {}
    for name in meta.sets:
        arrs = {k: _load_array(split_dir / f"{name}__{k}.npy", k, mmap) for k in FIELDS}
        p = {k: split_dir / f"{name}__{k}.npy" for k in FIELDS}
        for k in ("inputs", "labels"):
            if arrs[k].shape[1] != meta.seq_len:
                raise HrmkitError(f"{p[k]}: field {k!r} has shape {arrs[k].shape}, expected [*, seq_len={meta.seq_len}]")
        if arrs["labels"].shape != arrs["inputs"].shape:
            raise HrmkitError(f"{p['labels']}: labels shape {arrs['labels'].shape} != inputs shape {arrs['inputs'].shape}")
        n_puz = arrs["puzzle_identifiers"].shape[0]
        if arrs["puzzle_indices"].shape[0] != n_puz + 1:
            raise HrmkitError(
                f"{p['puzzle_indices']}: field 'puzzle_indices' has {arrs['puzzle_indices'].shape[0]} entries, "
                f"expected N_puzzles + 1 = {n_puz + 1}"
            )
        _check_offsets(p["puzzle_indices"], "puzzle_indices", arrs["puzzle_indices"], arrs["inputs"].shape[0])
        _check_offsets(p["group_indices"], "group_indices", arrs["group_indices"], n_puz)
        ids = arrs["puzzle_identifiers"]
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= meta.num_puzzle_identifiers):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise HrmkitError(
                f"{p['puzzle_identifiers']}: identifier {bad} outside [0, num_puzzle_identifiers="
                f"{meta.num_puzzle_identifiers})"
            )
        for k in ("inputs", "labels"):
            _check_tokens(p[k], k, arrs[k], meta.vocab_size)
        sets[name] = SetArrays(**arrs)
    total = sum(s.num_groups for s in sets.values())
    if total != meta.total_groups:
        raise HrmkitError(f"{meta_path}: field 'total_groups' is {meta.total_groups}, but the group_indices hold {total} groups")
    return SplitData(path=split_dir, metadata=meta, sets=sets)
