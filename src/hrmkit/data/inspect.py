"""`hrm data inspect DIR`: what a dataset folder holds, and a few puzzles rendered as text (or a PNG).

`describe(dataset_dir, show=2) -> str`: identifier count; per split: task, vocab, seq_len, sets, groups,
puzzles (augmented versions), examples, mean puzzles per group and examples per puzzle, bytes on disk; then
`show` puzzles per split (first example of the first puzzle of evenly spaced groups) rendered by their task
(`Task.dataset_lines`: Sudoku digits with box separators, maze characters, the ARC canvas cropped to its
non-PAD part with EOS as '|', other tasks' token numbers).
`write_png(dataset_dir, out_png, show)`: the same puzzles drawn by `hrmkit.data.render` (as in the HTML report).
Raises HrmkitError for a folder without readable splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrmkit import tasks
from hrmkit.data import render
from hrmkit.data.format import SplitData, load_identifiers, load_split
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.tasks import Task, resolve

SPLITS = ("train", "test")


def _human(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return str(nbytes)


def render_tokens(tokens: np.ndarray, task: Task | str | None, extra: dict | None = None) -> list[str]:
    """Text lines for one sequence of tokens [seq_len] of a dataset of the given task (`Task.dataset_lines`)."""
    return resolve(task).dataset_lines(tokens, extra)


def _side_by_side(left: list[str], right: list[str], gap: str = "    ") -> list[str]:
    w = max((len(s) for s in left), default=0)
    return [f"{(left[i] if i < len(left) else ''):<{w}}{gap}{right[i] if i < len(right) else ''}"
            for i in range(max(len(left), len(right)))]


def _picks(split: SplitData, show: int) -> list[tuple[str, int, int]]:
    """(set name, group, example row) of `show` evenly spaced groups: first example of their first puzzle."""
    out = []
    for name, arrs in split.sets.items():
        if show <= 0:
            break
        groups = np.unique(np.linspace(0, arrs.num_groups - 1, num=min(show, arrs.num_groups)).round().astype(int))
        for g in groups.tolist():
            out.append((name, g, int(arrs.puzzle_indices[arrs.group_indices[g]])))
        show -= len(groups)
    return out


def _split_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def describe(dataset_dir: Path, show: int = 2) -> str:
    """Summary text of a dataset folder (module docstring)."""
    dataset_dir = Path(dataset_dir)
    present = [s for s in SPLITS if (dataset_dir / s).is_dir()]
    if not present:
        raise HrmkitError(f"{dataset_dir}: no train/ or test/ split folder")
    lines = [f"dataset {dataset_dir}"]
    try:
        ids = load_identifiers(dataset_dir)
        lines.append(f"identifiers.json: {len(ids)} identifiers (first: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})")
    except HrmkitError as e:
        lines.append(f"identifiers.json: unreadable ({e})")
    for s in present:
        split = load_split(dataset_dir, s)
        m = split.metadata
        task = tasks.of_metadata(m)
        lines.append("")
        lines.append(
            f"[{s}] task {m.task or 'unknown'}, vocab {m.vocab_size}, seq_len {m.seq_len}, pad {m.pad_id}, "
            f"ignore label {m.ignore_label_id}, puzzle identifiers {m.num_puzzle_identifiers}, "
            f"{_human(_split_bytes(split.path))} on disk"
        )
        for name, a in split.sets.items():
            lines.append(
                f"  set {name!r}: {a.num_groups} groups, {a.num_puzzles} puzzles ({a.num_puzzles / a.num_groups:.1f} per "
                f"group), {a.num_examples} examples ({a.num_examples / a.num_puzzles:.2f} per puzzle)"
            )
        if m.extra:
            keys = [k for k in ("source", "size", "box", "num_aug", "aug", "mean_clues", "path_length_mean",
                                "test_solutions_in_train") if k in m.extra]
            if keys:
                lines.append("  " + ", ".join(f"{k}={m.extra[k]}" for k in keys))
        for name, g, row in _picks(split, show):
            a = split.sets[name]
            lines.append(f"  -- group {g}, example {row} (identifier {int(a.puzzle_identifiers[np.searchsorted(a.puzzle_indices, row, side='right') - 1])}): input | label")
            left = render_tokens(a.inputs[row], task, m.extra)
            right = render_tokens(a.labels[row], task, m.extra)
            lines += ["  " + ln for ln in _side_by_side(left, right)]
    return "\n".join(lines)


def write_png(dataset_dir: Path, out_png: Path, show: int = 2) -> Path:
    """Draw input and label of `show` puzzles per split to a PNG with `hrmkit.data.render` (the report's
    colours; ARC grids cropped to their cells). HrmkitError for a dataset whose grids it cannot draw."""
    dataset_dir = Path(dataset_dir)
    rows = []
    for s in SPLITS:
        if (dataset_dir / s).is_dir():
            split = load_split(dataset_dir, s)
            m = split.metadata
            kind = tasks.of_metadata(m)
            for name, g, row in _picks(split, show):
                a = split.sets[name]
                x = render.tokens_to_grid(kind, a.inputs[row], dataset_row=True)
                y = render.tokens_to_grid(kind, a.labels[row], dataset_row=True)
                given = None if x is None else kind.given(x)
                side = max(max(v.shape) for v in (x, y) if v is not None) if x is not None or y is not None else None
                rows.append([(render.grid_image(x, kind, side=side), f"{s} group {g}: input"),
                             (render.grid_image(y, kind, given=given, side=side), "label")])
    if not rows:
        raise HrmkitError(f"{dataset_dir}: no train/ or test/ split folder")
    atomic_write_bytes(out_png, render.png_bytes(render.tile(rows)))
    return Path(out_png)
