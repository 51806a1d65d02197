#!/usr/bin/env bash
# GPU check: on a CUDA machine, in one go and in under 10 minutes on an H100/H200:
#   1. install hrmkit over the machine's own CUDA torch (a venv with --system-site-packages; no torch download
#      when one is installed),
#   2. run the CUDA-marked tests (tests/test_cuda.py: CPU vs CUDA step and rollout, bf16, compile, hrm train),
#   3. `hrm bench` the hrm-paper and trm-mlp presets at batch 768 in bfloat16 with compile=true, 200 timed steps:
#      samples/s, MFU against the in-run matmul ceiling, peak GPU memory,
#   4. train trm-mlp on a generated 9x9 Sudoku set for 300 steps at batch 768, bfloat16 and float32 from the same
#      seed, and print their learning curves side by side (bf16-vs-float32 loss agreement).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default gpu-check/; everything it measures is written there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 )) s: $*"; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || { echo "gpu_check: no CUDA device visible to the system python's torch; install a CUDA torch first" >&2; exit 2; }

stamp "install"
VENV=${VENV:-.venv-gpu}
test -x "$VENV/bin/python" || python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q -e '.[dev]'
PY="$VENV/bin/python"; HRM="$VENV/bin/hrm"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee "$OUT/torch.txt"

stamp "CUDA-marked tests"
"$PY" -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"

stamp "throughput, MFU, peak memory (bfloat16, compile, batch 768)"
for preset in hrm-paper trm-mlp; do
  "$HRM" bench --preset "$preset" --device cuda --steps 200 --eval-batches 20 global_batch_size=768 \
    eval_batch_size=768 arch.forward_dtype=bfloat16 compile=true --json > "$OUT/bench-$preset.json"
  "$PY" - "$OUT/bench-$preset.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['model']}: {r['train_samples_per_s']:.0f} samples/s train, {r['eval_puzzles_per_s']:.0f} puzzles/s eval, "
      f"MFU {100 * r['mfu']:.1f}% (ceiling {r['ceiling_flops_per_s'] / 1e12:.0f} TFLOP/s, {r['ceiling']}), "
      f"peak {r['peak_memory_mb']:.0f} MiB ({r['peak_memory_kind']}), warm-up incl. compile {r['warmup_s']:.0f} s")
PYEOF
done

stamp "bf16 vs float32 learning curves (trm-mlp, 300 steps, batch 768)"
DATA="$OUT/data/sudoku-9x9"
test -f "$DATA/dataset.json" || test -d "$DATA/train" \
  || "$HRM" data sudoku --size 9 --train 2000 --test 500 --num-aug 20 --max-clues 30 --out "$DATA"
for dtype in bfloat16 float32; do
  "$HRM" train --preset trm-mlp-sudoku-extreme "data_path=$DATA" "out_dir=$OUT/runs-$dtype" device=cuda \
    max_steps=300 global_batch_size=768 eval_batch_size=768 log_every=25 lr_warmup_steps=50 compile=true \
    "arch.forward_dtype=$dtype" max_time_s=null checkpoint_every=300 eval_interval=null eval.full_every=300
done
"$PY" benchmarks/compare_curves.py "$OUT"/runs-bfloat16/*/ "$OUT"/runs-float32/*/ --every 50 --names bfloat16,float32 \
  | tee "$OUT/bf16_vs_fp32.md"
stamp "done; results in $OUT/"
