"""Named upper bounds on values read from files and arguments, each with why it is where it is.

A value past one of these is refused with HrmkitError naming where it came from, before any work or allocation:
past them a model cannot be built in memory, a run cannot finish, or the stored dtype overflows. They sit well
above every published HRM/TRM setting (hrm-paper: hidden 512, 4+4 layers, 2/2 cycles, 16 segments; ARC: seq_len
900, about a million puzzle identifiers with 1000 augmentations).
"""

from __future__ import annotations

import operator
from typing import Any

from hrmkit.errors import HrmkitError

# ACT segments one evaluation, `hrm solve --segments` or `predict(segments=)` runs: the papers use 16; each segment
# is a full forward pass, so thousands would run for minutes on one puzzle without changing the answer.
MAX_SEGMENTS = 512
# H_cycles / L_cycles: each cycle is a full pass of the blocks inside one segment (papers: 2-6).
MAX_CYCLES = 1024
# H_layers / L_layers (papers: 2-4).
MAX_LAYERS = 256
# Model width: 65536 already makes one SwiGLU block about 50 GB in float32.
MAX_HIDDEN_SIZE = 65536
MAX_NUM_HEADS = 4096
MAX_EXPANSION = 64.0
# Tokens per example: ARC's 30x30 canvas is 900; attention is quadratic in it.
MAX_SEQ_LEN = 65536
MAX_VOCAB_SIZE = 65536
# Rows of the puzzle embedding table (ARC with 1000 augmentations: about 1.2 million).
MAX_PUZZLE_IDENTIFIERS = 2**24
# Puzzle embedding width and prefix length (papers: 512 and 16).
MAX_PUZZLE_EMB_NDIM = 65536
MAX_PUZZLE_EMB_LEN = 4096
# `hrm data arc --num-aug`: the reference uses 1000 versions a task; 10000 already means a ~10 GB dataset for
# ARC-AGI-1 and the random draws find few new distinct versions past that (8 dihedral x 9! colour permutations).
MAX_NUM_AUG = 10000
# Difficulty ratings are stored as int32 (`all__ratings.npy`).
MAX_RATING = 2**31 - 1
# Optimizer steps recorded in checkpoints and exports (int64 counters).
MAX_STEP = 2**63 - 1


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """`value` as a Python int when it is an integer (int or numpy integer; not bool, float or str) in lo..hi.

    `name` says where it came from (a file and field, or an argument) and starts the HrmkitError raised
    otherwise."""
    if isinstance(value, bool):
        raise HrmkitError(f"{name}: expected an integer, got {value!r}")
    try:
        v = operator.index(value)  # int and numpy integers; refuses 1.5, "16"
    except TypeError:
        raise HrmkitError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if not lo <= v <= hi:
        raise HrmkitError(f"{name}: {v} is outside {lo}..{hi}")
    return v
