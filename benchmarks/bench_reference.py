"""Training speed of hrmkit against the reference implementations, side by side on one machine.

    .venv/bin/python benchmarks/bench_reference.py --hrm-ref /tmp/HRM --trm-ref /tmp/TinyRecursiveModels \
        [--configs hrm-27m,hrm-1m,trm-7m,trm-mlp,hrm-27m-bf16,demo] [--repeats 5] [--steps 2] [--compile] [--threads N]

One train step = forward + backward + AdamAtan2 + sign-SGD on the puzzle table, on random Sudoku-shaped batches
(seq 81, vocab 11, one puzzle identifier), the ACT carry kept across steps. The reference code
(sapientinc/HRM, SamsungSAILMontreal/TinyRecursiveModels; clone them anywhere outside this repository) is
imported from the given checkouts as a library, with two shims: `flash_attn_func` -> torch
`scaled_dot_product_attention`, and the `adam_atan2` CUDA extension -> `adam_atan2_pytorch.AdamAtan2(a=1, b=1)`
(the optimizer hrmkit uses too). No reference code is copied here. Without a checkout its rows show only hrmkit.

Every side starts from the same weights (the reference's, loaded into hrmkit through the reference-checkpoint
loader) and the first step's loss is compared on the same batch and seed (`loss rel diff`). Then the sides
run interleaved: `repeats` rounds, each timing `steps` steps of every side (the order rotating per round);
a side's figure is the median of its rounds. With `--compile` a third side runs hrmkit with `compile=true`
(`models.compile_model`; compilation happens in the warm-up and is not timed, its wall time is printed).
`demo` is another kind of row: the CPU demo recipe (`hrm train`'s default, on the demo dataset folder `--data`)
trained by each side's whole training loop, hrmkit's `train()` against the reference's `pretrain.py` loop, steps
`--loop-warmup` to `--loop-warmup + --loop-steps` timed in alternating rounds of `--round-steps`, each side in
its own process (reference_loop.py); `--reference-compile` adds the reference with its default torch.compile.

Prints a markdown table in the BENCHMARKS.md format, the machine, torch version, threads and the 1-minute load
average before and after. Wrap timing runs in `flock /tmp/hrmkit-timing.lock ...` on a shared machine.

`--clock cpu` times with the process's CPU time instead of the wall clock: with `--threads 1` that is the work
a step costs, almost insensitive to other processes sharing the cores (use it to compare code on a busy
machine; report wall-clock figures from a quiet one).
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from hrmkit.bench.measure import machine_summary
from hrmkit.models import build_model, build_optimizers, compile_model
from hrmkit.models.reference import load_reference_state_dict
from hrmkit.presets import get_preset

SEQ_LEN, VOCAB, NUM_IDS = 81, 11, 1
# name: (model preset, arch overrides, batch size, title)
CONFIGS = {
    "hrm-27m": ("hrm-paper", {}, 32, "HRM 27.3M (D 512, 4+4 layers, 2/2 cycles), batch 32"),
    "hrm-1m": ("hrm-paper", {"hidden_size": 128, "H_layers": 2, "L_layers": 2, "puzzle_emb_ndim": 128}, 64,
               "HRM 1.05M (D 128, 2+2 layers), batch 64"),
    "trm-7m": ("trm-attn", {}, 32, "TRM 6.8M (D 512, H3/L6, 2 layers), batch 32"),
    "trm-mlp": ("trm-mlp", {}, 32, "TRM `mlp_t` (D 512, H3/L6, 2 layers, MLP across the sequence), batch 32"),
    "hrm-27m-bf16": ("hrm-paper", {"forward_dtype": "bfloat16"}, 32,
                     "HRM 27.3M with `arch.forward_dtype=bfloat16`, batch 32 (reference: float32)"),
}
DEMO_TITLE = "CPU demo recipe (TRM `mlp_t` D 64, 6x6 Sudoku), batch 64, whole training loops"
REFERENCE = {  # family: (module, ACT model class)
    "hrm": ("models.hrm.hrm_act_v1", "HierarchicalReasoningModel_ACTV1"),
    "trm": ("models.recursive_reasoning.trm", "TinyRecursiveReasoningModel_ACTV1"),
}
LR, PUZZLE_LR, WD = 1e-4, 1e-2, 0.1


def _install_shims() -> None:
    """Stand-ins for the references' CUDA-only imports (flash_attn, adam_atan2)."""
    from adam_atan2_pytorch import AdamAtan2

    def flash_attn_func(q, k, v, causal=False, **_):  # [B, S, heads, head_dim], as flash-attn
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
        return out.transpose(1, 2).contiguous()

    def adam_atan2(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-2):
        # pretrain.py builds it with lr=0 and sets the rate every step; adam_atan2_pytorch refuses lr=0
        return AdamAtan2(params, lr=lr or 1e-3, betas=tuple(betas), weight_decay=weight_decay, a=1.0, b=1.0)

    sys.modules["flash_attn"] = types.SimpleNamespace(flash_attn_func=flash_attn_func)
    sys.modules["adam_atan2"] = types.SimpleNamespace(AdamATan2=adam_atan2)


def load_reference(checkout: Path, family: str):
    """(ACT model class, ACTLossHead class, sparse sign-SGD class) imported from a reference checkout. Both
    references name their package `models`, so it is imported in isolation and removed from sys.modules."""
    if not (checkout / "models").is_dir():
        sys.exit(f"{checkout}: not a reference checkout (no models/ folder)")
    _install_shims()
    module, cls = REFERENCE[family]

    def ours():
        return [k for k in sys.modules if k == "models" or k.startswith("models.")]

    saved = {k: sys.modules.pop(k) for k in ours()}
    sys.path.insert(0, str(checkout))
    try:
        model_mod = importlib.import_module(module)
        losses = importlib.import_module("models.losses")
        sparse = importlib.import_module("models.sparse_embedding")
    finally:
        sys.path.remove(str(checkout))
        for k in ours():
            del sys.modules[k]
        sys.modules.update(saved)
    return getattr(model_mod, cls), losses.ACTLossHead, sparse.CastedSparseEmbeddingSignSGD_Distributed


class Side:
    """One implementation under test: its model, optimizers and ACT carry; `step(batch)` trains one step."""

    def __init__(self, label: str, head, optimizers, batch_size: int, call):
        self.label, self.head, self.opts, self.B, self.call = label, head, optimizers, batch_size, call
        self.carry, self.times, self.first_loss = None, [], None

    def step(self, batch) -> float:
        if self.carry is None:
            self.carry = self.head.initial_carry(batch)
        self.carry, loss, _, _, _ = self.call(self.carry, batch)
        (loss / self.B).backward()
        for o in self.opts:
            o.step()
            o.zero_grad()
        return float(loss.detach())


def build_sides(name: str, refs: dict[str, Path], with_compile: bool) -> list[Side]:
    preset, overrides, B, _ = CONFIGS[name]
    arch = get_preset(preset).model_copy(update=overrides)
    return sides_for(arch, B, SEQ_LEN, VOCAB, refs, with_compile)


def sides_for(arch, B: int, seq_len: int, vocab: int, refs: dict[str, Path], with_compile: bool) -> list[Side]:
    """The reference (when its checkout is in `refs`), hrmkit and optionally hrmkit compiled, for `arch` at batch
    B on one puzzle identifier, every side from the reference's weights."""
    arch = arch.model_copy(update={"forward_dtype": arch.forward_dtype if arch.forward_dtype != "auto" else "float32"})
    head = build_model(arch, seq_len=seq_len, vocab_size=vocab, num_puzzle_identifiers=NUM_IDS)
    sides = []
    if arch.name in refs:
        model_cls, loss_cls, sparse_cls = load_reference(refs[arch.name], arch.name)
        cfg = dict(arch.model_dump(exclude={"name", "loss"}), batch_size=B, seq_len=seq_len, vocab_size=vocab,
                   num_puzzle_identifiers=NUM_IDS, forward_dtype="float32", causal=False)
        ref = loss_cls(model_cls(cfg), loss_type=arch.loss.loss_type)
        load_reference_state_dict(head, ref.state_dict())  # every side starts from the reference's weights
        opts = [sys.modules["adam_atan2"].AdamATan2(ref.parameters(), lr=LR, weight_decay=WD, betas=(0.9, 0.95))]
        if arch.puzzle_emb_ndim > 0:
            opts.append(sparse_cls(ref.model.puzzle_emb.buffers(), lr=PUZZLE_LR, weight_decay=WD, world_size=1))
        sides.append(Side("reference", ref, opts, B, lambda c, b, m=ref: m(carry=c, batch=b, return_keys=[])))
    heads = [("hrmkit", head)] + ([("hrmkit compile", compile_model(copy.deepcopy(head)))] if with_compile else [])
    for label, h in heads:
        sides.append(Side(label, h, build_optimizers(h, LR, PUZZLE_LR, WD, WD), B, h))
    return sides


def random_batches(B: int, n: int, seed: int = 0, seq_len: int = SEQ_LEN,
                   vocab: int = VOCAB) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"inputs": torch.randint(1, vocab, (B, seq_len), generator=g, dtype=torch.int32),
             "labels": torch.randint(1, vocab, (B, seq_len), generator=g, dtype=torch.int32),
             "puzzle_identifiers": torch.zeros(B, dtype=torch.int32)} for _ in range(n)]


def run_config(name: str, refs: dict[str, Path], args) -> dict:
    sides = build_sides(name, refs, args.compile)
    B = CONFIGS[name][2]
    batches = random_batches(B, 4)
    warm = {}
    for s in sides:  # same batch, same seed: the first losses must agree
        t = time.perf_counter()
        torch.manual_seed(0)
        s.first_loss = s.step(batches[0])
        for i in range(1, args.warmup):
            s.step(batches[i % len(batches)])
        warm[s.label] = time.perf_counter() - t
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    k = 0
    for r in range(args.repeats):
        for s in sides[r % len(sides):] + sides[: r % len(sides)]:
            t = clock()
            for i in range(args.steps):
                s.step(batches[(k + i) % len(batches)])
            s.times.append((clock() - t) / args.steps)
        k += args.steps
    ref0 = sides[0].first_loss
    out = {s.label: {"step_s": statistics.median(s.times), "samples_per_s": B / statistics.median(s.times),
                     "rounds": [round(B / t, 2) for t in s.times], "warmup_s": warm[s.label],
                     "loss_rel_diff": abs(s.first_loss - ref0) / abs(ref0)} for s in sides}
    del sides
    gc.collect()
    return out


def run_demo(refs: dict[str, Path], args) -> dict:
    """The `demo` row: whole training loops in turns (reference_loop.py), in the result format of `run_config`
    (loss_rel_diff absent: the loops draw their own batches)."""
    from reference_loop import run_demo_loops

    if "hrm" in refs and "trm" not in refs:
        sys.exit("the demo row compares with TinyRecursiveModels: give --trm-ref")
    sides = (["reference"] + ["reference compile"] * args.reference_compile) * ("trm" in refs)
    sides += ["hrmkit"] + ["hrmkit compile"] * args.compile
    res = run_demo_loops(args.data, refs.get("trm"), sides, args.loop_warmup, args.loop_steps, args.round_steps)
    from hrmkit.presets import TRAIN_PRESETS

    B = int(TRAIN_PRESETS["demo"]["global_batch_size"])
    return {label: {"step_s": r["step_s"], "samples_per_s": B / r["step_s"], "rounds": [round(B * x, 2) for x in r["rounds"]],
                    "warmup_s": r["warmup_s"]} for label, r in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hrm-ref", type=Path, help="a checkout of sapientinc/HRM (its HRM rows then run the reference)")
    ap.add_argument("--trm-ref", type=Path, help="a checkout of SamsungSAILMontreal/TinyRecursiveModels")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}, demo")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds per side")
    ap.add_argument("--steps", type=int, default=2, help="train steps per timed round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    ap.add_argument("--compile", action="store_true", help="also time hrmkit with compile=true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock (default) or process CPU time (with --threads 1: insensitive to other load)")
    ap.add_argument("--data", default="data/sudoku-6x6-demo", help="demo row: the demo dataset folder (make demo builds it)")
    ap.add_argument("--loop-warmup", type=int, default=100, help="demo row: untimed steps per side first")
    ap.add_argument("--loop-steps", type=int, default=200, help="demo row: timed steps per side")
    ap.add_argument("--round-steps", type=int, default=20, help="demo row: steps per timed round")
    ap.add_argument("--reference-compile", action="store_true", help="demo row: also the reference with torch.compile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    refs = {k: p for k, p in (("hrm", args.hrm_ref), ("trm", args.trm_ref)) if p is not None}
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS and n != "demo"]
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; known: {', '.join(CONFIGS)}")
    load0 = os.getloadavg()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine_summary()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock",
          flush=True)
    print("# command: python " + " ".join(sys.argv), flush=True)
    cols = ["reference"] * bool(refs) + ["reference compile"] * (args.reference_compile and "demo" in names)
    cols += ["hrmkit"] + ["hrmkit compile"] * args.compile
    head = "| config | " + " | ".join(f"{c} samples/s" for c in cols)
    head += "".join(f" | {c} / reference" for c in cols[1:]) * bool(refs) + " | first-step loss rel. diff |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in names:
        res = run_demo(refs, args) if name == "demo" else run_config(name, refs, args)
        base = res.get("reference", {}).get("samples_per_s")
        title = DEMO_TITLE if name == "demo" else CONFIGS[name][3]
        row = f"| {title} | " + " | ".join(f"{res[c]['samples_per_s']:.2f}" if c in res else "—" for c in cols)
        if refs:
            row += "".join(f" | {res[c]['samples_per_s'] / base:.2f}x" if base and c in res else " | —" for c in cols[1:])
        row += " | " + (", ".join(f"{res[c]['loss_rel_diff']:.1e}" for c in cols[1:] if "loss_rel_diff" in res.get(c, {})) or "—") + " |"
        lines.append(row)
        detail = "; ".join(f"{c}: rounds {res[c]['rounds']}, warm-up {res[c]['warmup_s']:.0f} s" for c in cols if c in res)
        print(f"# {name}: {detail}", flush=True)
    print(f"# 1-minute load average: {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
