"""Compare two folders written by benchmarks/record_outputs.sh (before and after a restructuring): JSON outputs
key by key (timings left out), text outputs line by line (times and the output folders' paths normalised), the
GIF byte for byte, and the training losses and accuracies of metrics.jsonl record by record.

    python benchmarks/compare_outputs.py BEFORE AFTER        # exit 1 when anything differs
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

JSON_FILES = ["eval_demo.json", "eval_demo_tta.json", "eval_ref_sudoku.json", "eval_ref_arc.json", "solve.json"]
TEXT_FILES = ["solve.txt", "solve_tta.txt", "solve_gif.txt", "solve_export.txt", "inspect.txt", "inspect_arc.txt",
              "eval_demo.txt"]
TIMING = re.compile(r"seconds|latency|per_s|elapsed|wall")


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if not TIMING.search(k) and k != "report"}
    return [_strip(v) for v in o] if isinstance(o, list) else o


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        return out + [d for k in sorted(set(a) & set(b)) for d in _diff(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:60]} != {str(b)[:60]}"]


def _text(path: Path, root: Path) -> str:
    t = path.read_text().replace(str(root.resolve()), "OUT")
    return re.sub(r"\d+(\.\d+)? ?(s|ms)\b", "T", t)


def _losses(root: Path) -> list:
    rows = [json.loads(line) for f in root.glob("train/*/metrics.jsonl") for line in f.read_text().splitlines()]
    return [(r.get("global_step"), {k: v for k, v in r.items() if "loss" in k or "accuracy" in k})
            for r in rows if r.get("kind") in ("train", "eval")]


def main() -> int:
    before, after = Path(sys.argv[1]), Path(sys.argv[2])
    bad = 0
    for f in JSON_FILES:
        d = _diff(_strip(json.loads((before / f).read_text())), _strip(json.loads((after / f).read_text())))
        print(f"{f}: {'identical' if not d else f'{len(d)} differences'}", *d[:10], sep="\n    ")
        bad += bool(d)
    for f in TEXT_FILES:
        same = _text(before / f, before) == _text(after / f, after)
        print(f"{f}: {'identical' if same else 'DIFFERENT'}")
        bad += not same
    gif = (before / "solve.gif").read_bytes() == (after / "solve.gif").read_bytes()
    losses = _losses(before) == _losses(after) and bool(_losses(before))
    print(f"solve.gif: {'identical' if gif else 'DIFFERENT'}\ntrain metrics.jsonl: {'identical' if losses else 'DIFFERENT'}")
    return 1 if bad or not gif or not losses else 0


if __name__ == "__main__":
    sys.exit(main())
