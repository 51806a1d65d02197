"""Write a grid puzzle none of the references has as JSON Lines, for `hrm data grid --from-jsonl` (no code needed
beyond producing the file): "gravity" — every coloured cell of a 6x6 grid falls to the bottom of its column,
keeping the column's order of colours.

    python examples/gravity_jsonl.py --out data/gravity-jsonl           # train.jsonl (3000), test.jsonl (500)
    hrm data grid --from-jsonl data/gravity-jsonl/train.jsonl --test-jsonl data/gravity-jsonl/test.jsonl \\
        --out data/gravity --num-aug 5 --aug colors
    hrm train data_path=data/gravity max_steps=600
    hrm eval runs/<run_id>
    hrm solve --checkpoint runs/<run_id> data/gravity-jsonl/example.json

Colours are permuted as augmentation (gravity does not care which colour falls); rotations would change the
direction of the fall, so `--aug colors` leaves the dihedral transforms out. Test grids never occur in the
training file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def fall(grid: np.ndarray) -> np.ndarray:
    """Every non-zero cell of grid int [h, w] moved to the bottom of its column, column order kept."""
    out = np.zeros_like(grid)
    for c in range(grid.shape[1]):
        col = grid[:, c][grid[:, c] != 0]
        if col.size:
            out[-col.size:, c] = col
    return out


def examples(n: int, rng: np.random.Generator, exclude: set[bytes], side: int = 6, colours: int = 4,
             density: float = 0.35) -> list[dict]:
    """`n` distinct {"input", "output"} examples whose inputs are not in `exclude` (which they are added to)."""
    rows = []
    while len(rows) < n:
        g = np.where(rng.random((side, side)) < density, rng.integers(1, colours, (side, side)), 0)
        key = g.astype(np.uint8).tobytes()
        if key in exclude or np.array_equal(g, fall(g)):  # an already settled grid teaches nothing
            continue
        exclude.add(key)
        rows.append({"input": g.tolist(), "output": fall(g).tolist()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for train.jsonl, test.jsonl and example.json")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, seen = np.random.default_rng(args.seed), set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = examples(args.train, rng, seen), examples(args.test, rng, seen)
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "example.json").write_text(json.dumps({"input": test[0]["input"]}))
    print(f"wrote {len(train)} training and {len(test)} test examples to {out}")


if __name__ == "__main__":
    main()
