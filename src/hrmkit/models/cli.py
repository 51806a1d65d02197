"""`hrm verify-reference FIXTURE.npz [--json]`, `hrm model list`, `hrm model info PRESET`."""

from __future__ import annotations

import json


def _verify(args) -> int:
    from hrmkit.models.reference import NOISE_FACTOR, verify_reference

    print("     kind       error    bound    noise  quantity (bound = max(tolerance, "
          f"{NOISE_FACTOR:g} x noise); noise = float32 vs float64 of hrmkit's own computation)")

    rc = 0
    for path in args.fixtures:
        rep = verify_reference(path, tolerance=args.tolerance)
        rc |= 0 if rep.ok else 1
        if args.json:
            print(json.dumps(rep.to_dict(), indent=1), flush=True)
            continue
        for c in rep.checks:
            err = f"{c.error:.3e}" if c.kind == "rel" else f"{c.error:g}"
            bound = f"{c.tolerance:.1e}" if c.tolerance is not None else ""
            noise = f"{c.noise:.1e}" if c.noise is not None else ""
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.kind:5s} {err:>10s} {bound:>8s} {noise:>8s}  "
                  f"{c.key}{'  (' + c.note + ')' if c.note else ''}")
        n_fail = len(rep.failures)
        widened = sum(1 for c in rep.checks if c.tolerance is not None and c.tolerance > rep.tolerance)
        print(f"{path}: {len(rep.checks)} quantities, max relative error {rep.max_error():.3e} "
              f"(tolerance {rep.tolerance:g}; {widened} widened to {NOISE_FACTOR:g}x their float32 rounding noise), "
              f"{n_fail} failed -> {'PASS' if rep.ok else 'FAIL'}", flush=True)
    return rc


def _list(args) -> int:
    from hrmkit.presets import MODEL_PRESETS

    for name, a in MODEL_PRESETS.items():
        print(f"{name:22s} {a.name:12s} D={a.hidden_size} H/L layers={a.H_layers}/{a.L_layers} "
              f"H/L cycles={a.H_cycles}/{a.L_cycles} heads={a.num_heads} halt_max={a.halt_max_steps} "
              f"pos={a.pos_encodings}{' mlp_t' if a.mlp_t and a.name == 'trm' else ''}")
    from hrmkit.presets import preset_table

    print("\ntraining presets of the published runs (hrm train --preset NAME):")
    print(preset_table())
    return 0


def _info(args) -> int:
    from hrmkit.models.build import build_model, count_parameters, flops_per_token
    from hrmkit.presets import get_preset

    arch = get_preset(args.preset)
    head = build_model(arch, seq_len=args.seq_len, vocab_size=args.vocab_size, num_puzzle_identifiers=1)
    n = count_parameters(head)
    f = flops_per_token(arch, args.seq_len, args.vocab_size)
    info = {"preset": args.preset, "arch": arch.model_dump(), "seq_len": args.seq_len, "vocab_size": args.vocab_size,
            "parameters": n, "puzzle_emb_per_id": arch.puzzle_emb_ndim,
            "forward_flops_per_segment_per_token": f["forward"], "train_flops_per_segment_per_token": f["train"]}
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"preset      {args.preset} ({arch.name})")
    print(f"shape       seq_len {args.seq_len}, vocab {args.vocab_size}")
    print(f"parameters  {n:,} (puzzle table excluded: {arch.puzzle_emb_ndim} per puzzle identifier)")
    print(f"FLOPs/token forward {f['forward'] / 1e6:.1f} M per segment, training ~{f['train'] / 1e6:.1f} M per segment")
    return 0


def register(subparsers) -> None:
    """Add `verify-reference` and `model {list,info}` to the `hrm` command."""
    p = subparsers.add_parser("verify-reference", help="check hrmkit against reference parity fixtures",
                              description="Rebuild the model of each FIXTURE.npz (config in FIXTURE.json), load the "
                              "reference weights, replay eval and training segments and print each quantity's "
                              "relative error. A quantity passes within max(tolerance, 10 x its float32 rounding "
                              "noise), the noise measured by replaying in float64 (recurrent models amplify rounding "
                              "from segment to segment). Exit status 1 if any quantity is outside its bound.")
    p.add_argument("fixtures", nargs="+", metavar="FIXTURE.npz")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--tolerance", type=float, default=1e-5, help="relative error tolerance (default 1e-5)")
    p.set_defaults(func=_verify)

    m = subparsers.add_parser("model", help="model presets: list, info")
    msub = m.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="list architecture presets")
    ls.set_defaults(func=_list)
    info = msub.add_parser("info", help="parameter count and FLOPs of a preset")
    info.add_argument("preset")
    info.add_argument("--seq-len", type=int, default=81, help="input tokens per example (default 81, Sudoku 9x9)")
    info.add_argument("--vocab-size", type=int, default=11, help="token vocabulary size (default 11, Sudoku)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)
