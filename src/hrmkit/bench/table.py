"""BENCHMARKS.md rows for `hrm bench --append`: one dated row per run in the section `SECTION`, with the
machine, torch version and the command that produced it."""

from __future__ import annotations

import time
from pathlib import Path

from hrmkit.bench.measure import BenchResult
from hrmkit.fsutil import atomic_write_bytes

SECTION = "## `hrm bench` results"
COLUMNS = ("date", "machine", "torch", "device", "command", "model", "dtype", "batch", "train samples/s",
           "segments/s", "eval puzzles/s", "peak memory MiB", "train GFLOP/step", "GFLOP/s", "ceiling GFLOP/s", "MFU")
INTRO = ("Rows appended by `hrm bench ... --append`. Training: forward + backward + optimizers on random batches "
         "of the dataset's shape, ACT carry kept (samples/s = rows x segments); evaluation: eval-mode rollouts "
         "of all halt_max_steps segments (puzzles/s). GFLOP/s counts model matmul FLOPs (`flops_per_token`); "
         "the ceiling is a square matmul in the model's dtype measured in the same run; MFU = GFLOP/s / ceiling.")


def format_row(r: BenchResult, command: str, date: str | None = None) -> str:
    """One markdown table row (the columns of `COLUMNS`); `|` in the command is escaped."""
    cells = [date or time.strftime("%Y-%m-%d"), r.machine, r.torch_version, f"{r.device} ({r.threads} threads)"
             if r.device == "cpu" else r.device, f"`{command}`".replace("|", "\\|"),
             r.model + (" compile" if r.compile else ""), r.dtype, str(r.batch_size), f"{r.train_samples_per_s:.1f}",
             f"{r.train_segments_per_s:.2f}", f"{r.eval_puzzles_per_s:.1f}", f"{r.peak_memory_mb:.0f}",
             f"{r.train_flops_per_step / 1e9:.2f}", f"{r.train_flops_per_s / 1e9:.1f}",
             f"{r.ceiling_flops_per_s / 1e9:.1f}", f"{100 * r.mfu:.1f}%"]
    return "| " + " | ".join(cells) + " |"


def append_row(path: str | Path, row: str) -> None:
    """Add `row` at the end of the table under `SECTION` in the markdown file `path` (atomically), creating the
    section (at the end of the file) and the file when missing."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    header = "| " + " | ".join(COLUMNS) + " |"
    if SECTION not in lines:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", SECTION, "", INTRO, "", header, "|" + "---|" * len(COLUMNS), row]
    else:
        i = lines.index(SECTION) + 1
        while i < len(lines) and not lines[i].startswith("|"):  # to the table
            if lines[i].startswith("## "):
                break
            i += 1
        if i == len(lines) or not lines[i].startswith("|"):  # section without a table: start one
            lines[i:i] = [header, "|" + "---|" * len(COLUMNS), row, ""]
        else:
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            lines.insert(i, row)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
