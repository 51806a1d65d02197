#!/usr/bin/env bash
# Record what hrmkit produces, to compare before and after a restructuring (benchmarks/compare_outputs.py).
#
#   benchmarks/record_outputs.sh SRC OUT RUN DATA PUZZLE [SHOW_SEGMENTS_FLAG]
#
# SRC: the src/ folder of the code to run (a worktree of the old commit, or this one); OUT: where the outputs
# go; RUN: a trained Sudoku run folder; DATA: its dataset folder; PUZZLE: one Sudoku string of that size;
# SHOW_SEGMENTS_FLAG: `hrm solve`'s per-segment flag of that code (--show-segments; older code: --steps).
# Records: hrm eval --json (plain and --tta 4 --verify), the text summary and HTML report, hrm eval of the
# reference checkpoints in tests/fixtures/reference, hrm solve (text, JSON with segments, --tta, --gif, from an
# export), hrm data inspect, and 30 training steps of the demo recipe (metrics.jsonl).
set -u
SRC=$(realpath "$1"); OUT=$(realpath -m "$2"); RUN=$(realpath "$3"); DATA=$(realpath "$4"); P=$5; SEG=${6:---show-segments}
HERE=$(cd "$(dirname "$0")/.." && pwd)
HRM="$HERE/.venv/bin/python -m hrmkit.cli"
export PYTHONPATH=$SRC
F=$HERE/tests/fixtures/reference
mkdir -p "$OUT"
$HRM eval "$RUN" --data "$DATA" --json --device cpu > "$OUT/eval_demo.json"
$HRM eval "$RUN" --data "$DATA" --json --device cpu --tta 4 --verify > "$OUT/eval_demo_tta.json"
$HRM eval "$RUN" --data "$DATA" --device cpu --report "$OUT/report" > "$OUT/eval_demo.txt"
$HRM eval "$F/hrm-sudoku/step_600" --data "$F/sudoku-hrm" --json --device cpu > "$OUT/eval_ref_sudoku.json"
$HRM eval "$F/hrm-arc/step_250" --data "$F/arc-hrm" --json --device cpu > "$OUT/eval_ref_arc.json"
$HRM solve --checkpoint "$RUN" --device cpu "$P" > "$OUT/solve.txt"
$HRM solve --checkpoint "$RUN" --device cpu --json "$SEG" "$P" > "$OUT/solve.json"
$HRM solve --checkpoint "$RUN" --device cpu --tta 4 "$SEG" "$P" > "$OUT/solve_tta.txt"
$HRM solve --checkpoint "$RUN" --device cpu --gif "$OUT/solve.gif" "$P" > "$OUT/solve_gif.txt"
$HRM export "$RUN" --out "$OUT/export" > "$OUT/export.txt"
$HRM solve --checkpoint "$OUT/export" --device cpu "$P" > "$OUT/solve_export.txt"
$HRM data inspect "$DATA" --show 2 > "$OUT/inspect.txt"
$HRM data inspect "$F/arc-hrm" --show 1 > "$OUT/inspect_arc.txt"
rm -rf "$OUT/train"
$HRM train --preset demo max_steps=30 out_dir="$OUT/train" data_path="$DATA" > "$OUT/train.txt" 2>&1
echo "recorded in $OUT"
