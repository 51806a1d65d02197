"""CPU recipe: generate 5x5 Futoshiki puzzles, build a dataset, train a small TRM, score it on held-out puzzles.

    python examples/futoshiki_recipe.py --out runs/futoshiki --threads 1

About 12 minutes on a shared 2-core CPU: 1 to generate and build, 10 of training (at most max_time_s 600),
1 to evaluate. The defaults: 3000 training puzzles x 16 versions, 1000 test puzzles, 5x5 with 14 blank cells
(11 given digits) and about 12 signs each; 600 steps of batch 64. Measured (2026-12-03, a shared 2-core Xeon,
--threads 1): held-out exact accuracy 83.4%, token accuracy 94.5% over the blank cells; both trivial
baselines 0%.

Steps (each prints what it did; everything goes under --out):
1. Generate --test puzzles, then --train puzzles whose solutions share no orbit with a test solution (no test
   solution occurs in training, not even as one of the 16 augmented versions: `futoshiki.solution_key`; a
   --test-share of the orbits is held out). Givens are removed while the solution stays unique, down to
   --max-blanks blank cells (0: minimal puzzles, harder: not learned in this budget).
2. Build OUT/data with `hrmkit.data.build.write_task_dataset` (the task recorded; every training puzzle in
   --num-aug + 1 versions from `FutoshikiTask.augmentation`).
3. Train with `hrmkit.train.loop.train` the `demo` preset's model (TRM, hidden 64, mlp_t; the CPU Sudoku demo)
   on that dataset: run folder OUT/runs/<run_id>/.
4. Evaluate the run's last checkpoint on the test split with `hrmkit.eval.evaluate.evaluate_split` beside the
   trivial baselines (copy the input, most common token), as `hrm eval RUN` does; print the table and write
   OUT/result.json.

The same from the command line, once the dataset exists:
    hrm --task-file examples/futoshiki.py train data_path=OUT/data out_dir=OUT/runs
    hrm --task-file examples/futoshiki.py eval OUT/runs/<run_id>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import futoshiki  # noqa: E402  (registers the task "futoshiki")
from futoshiki import FutoshikiTask, Puzzle, generate_puzzle, solution_key, vocab_size  # noqa: E402


def held_out(key: bytes, seed: int, share: float) -> bool:
    """Whether the solutions of orbit `key` (`futoshiki.solution_key`) belong to the test split: a fixed
    `share` of the orbits, picked by a hash of the key and the seed."""
    h = hashlib.sha256(seed.to_bytes(8, "little") + key).digest()
    return int.from_bytes(h[:8], "little") < share * 2 ** 64


def generate(n: int, count: int, rng: np.random.Generator, sign_density: float, max_blanks: int | None, test: bool,
             seed: int, share: float, seen_inputs: set[bytes]) -> list[tuple[np.ndarray, np.ndarray, None]]:
    """`count` examples (inputs uint8 [S], labels uint8 [S], None) of distinct puzzles whose solutions lie in
    the held-out orbits (`test`) or outside them."""
    examples = []
    while len(examples) < count:
        puzzle, solution = generate_puzzle(n, rng, sign_density, max_blanks=max_blanks)
        x = puzzle.tokens()
        if held_out(solution_key(solution), seed, share) != test or x.tobytes() in seen_inputs:
            continue
        seen_inputs.add(x.tobytes())
        examples.append((x, Puzzle(solution, puzzle.h, puzzle.v).tokens(), None))
    return examples


def build(out: Path, n: int, train: int, test: int, num_aug: int, seed: int, sign_density: float,
          max_blanks: int | None, share: float) -> dict:
    """Generate the puzzles and write the dataset `out` (step 1 and 2); returns the data's statistics."""
    from hrmkit.data.build import write_task_dataset

    t0 = time.time()
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    test_ex = generate(n, test, rng, sign_density, max_blanks, True, seed, share, seen)
    train_ex = generate(n, train, rng, sign_density, max_blanks, False, seed, share, seen)
    gen_s = time.time() - t0
    clues = [int(((x[None].reshape(2 * n - 1, -1)[::2, ::2] >= 2)).sum()) for x, _, _ in test_ex]
    stats = {"size": n, "train_puzzles": train, "test_puzzles": test, "num_aug": num_aug, "seed": seed,
             "sign_density": sign_density, "max_blanks": max_blanks, "held_out_orbit_share": share,
             "test_mean_givens": float(np.mean(clues)),
             "test_blank_share": float(1 - np.mean(clues) / (n * n)), "generate_s": round(gen_s, 1)}
    print(f"generated {test} test and {train} train puzzles ({n}x{n}, held-out solutions) in {gen_s:.0f}s; "
          f"test puzzles give {stats['test_mean_givens']:.1f} digits on average", flush=True)
    write_task_dataset(out, FutoshikiTask({"size": n}), train_ex, test_ex, vocab_size=vocab_size(n),
                       num_aug=num_aug, seed=seed, extra={"generator": "examples/futoshiki_recipe.py", **stats})
    print(f"dataset written to {out}", flush=True)
    return stats


def train_run(data: Path, runs: Path, max_steps: int, max_time_s: float, seed: int, extra: list[str]) -> Path:
    """Train the demo preset's model on `data` (step 3); returns the run folder."""
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    overrides = [f"data_path={data}", "demo_data=null", f"out_dir={runs}", f"max_steps={max_steps}",
                 f"max_time_s={max_time_s}", f"seed={seed}", "log.progress=lines", *extra]
    cfg = resolve_config(preset="demo", overrides=overrides)
    result = train(cfg)
    if result.state != "finished":
        raise SystemExit(f"training stopped: {result.state}")
    return Path(result.run_dir)


def evaluate(run_dir: Path, data: Path) -> dict:
    """Score the run's last checkpoint on the test split beside the trivial baselines (step 4)."""
    from hrmkit.data.format import load_split
    from hrmkit.eval.evaluate import evaluate_split
    from hrmkit.loading import load_trained, resolve_checkpoints

    checkpoint = resolve_checkpoints(run_dir)[-1]
    model = load_trained(checkpoint, "cpu")
    split = load_split(data, "test").require_examples()
    r = evaluate_split(model.head, split, batch_size=500, device="cpu")
    base = {name: b.to_dict() for name, b in r.baselines.items()}
    verified = None
    if r.predictions is not None:  # the share of answers the rules accept (a check on exact accuracy)
        verified = float(futoshiki.futoshiki_solved(r.predictions.inputs, r.predictions.preds).mean())
    return {"checkpoint": str(checkpoint), "step": model.step, "summary": r.summary.to_dict(), "baselines": base,
            "verified_share": verified}


def machine() -> str:
    """The CPU model and core count, e.g. "Intel(R) Xeon(R) Processor, 2 cores (x86_64)"."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores ({platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the dataset (OUT/data), runs (OUT/runs), result.json")
    p.add_argument("--size", type=int, default=5, help="n of the n x n puzzles (default 5)")
    p.add_argument("--train", type=int, default=3000, help="training puzzles (default 3000)")
    p.add_argument("--test", type=int, default=1000, help="held-out test puzzles (default 1000)")
    p.add_argument("--num-aug", type=int, default=15, help="augmented versions per training puzzle (<= 15)")
    p.add_argument("--sign-density", type=float, default=0.3, help="share of adjacent pairs given a sign")
    p.add_argument("--max-steps", type=int, default=600, help="optimizer steps (batch 64; default 600)")
    p.add_argument("--max-time-s", type=float, default=600, help="stop training after this many seconds (default 600)")
    p.add_argument("--max-blanks", type=int, default=14, help="stop removing givens at this many blank cells "
                   "(default 14, of 25 for 5x5; 0: minimal puzzles)")
    p.add_argument("--test-share", type=float, default=0.2, help="share of the solution orbits held out for test")
    p.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads (default: PyTorch's; 1 is "
                   "faster on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="more training config overrides")
    args = p.parse_args(argv)

    out = Path(args.out)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data = out / "data"
    started = datetime.now(timezone.utc)
    if (data / "train").is_dir():
        print(f"reusing the dataset in {data}", flush=True)
        stats = json.loads((data / "test" / "dataset.json").read_text()).get("extra", {})
    else:
        stats = build(data, args.size, args.train, args.test, args.num_aug, args.seed, args.sign_density,
                      args.max_blanks or None, args.test_share)
    t0 = time.time()
    run_dir = train_run(data, out / "runs", args.max_steps, args.max_time_s, args.seed, args.overrides)
    train_s = time.time() - t0
    result = evaluate(run_dir, data)
    result.update({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                   "date": started.isoformat(timespec="seconds"),
                   "machine": machine(),
                   "run_dir": str(run_dir), "train_wall_s": round(train_s, 1), "data": stats})
    s, b = result["summary"], result["baselines"]
    print(f"\nheld-out test ({s['n_examples']} puzzles), checkpoint at step {result['step']}, trained {train_s:.0f}s:")
    print(f"  {'':20s} {'exact':>8s} {'token':>8s}")
    print(f"  {'model':20s} {s['exact_accuracy']:8.1%} {s['token_accuracy']:8.1%}")
    for name, row in b.items():
        print(f"  {name:20s} {row['exact_accuracy']:8.1%} {row['token_accuracy']:8.1%}")
    if result["verified_share"] is not None:
        print(f"  answers the verifier accepts: {result['verified_share']:.1%}")
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"result written to {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
