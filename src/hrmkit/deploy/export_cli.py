"""`hrm export RUN_OR_CHECKPOINT --out DIR [--format safetensors|onnx] [--validate] [--data DIR]`."""

from __future__ import annotations

import argparse
import json
import shlex


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this export, for the model card."""
    from hrmkit.deploy.export import DEFAULT_OPSET

    parts = ["hrm", "export", args.target, "--out", args.out, "--format", args.format]
    if args.validate:
        parts.append("--validate")
    for flag, value in (("--data", args.data), ("--split", args.split if args.split != "test" else None),
                        ("--batch-size", args.batch_size), ("--max-examples", args.max_examples),
                        ("--threads", args.threads),
                        ("--opset", args.opset if args.format == "onnx" and args.opset != DEFAULT_OPSET else None),
                        ("--exporter", args.exporter if args.exporter != "torchscript" else None)):
        if value is not None:
            parts += [flag, str(value)]
    if args.raw_weights:
        parts.append("--raw-weights")
    return shlex.join(parts)


def _print_validation(v: dict) -> None:
    ex = v["exact_accuracy"]
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    base = ", ".join(f"{name} {pct(b['exact_accuracy'])}" for name, b in v["baselines"].items())
    lat = v["seconds_per_puzzle"]
    print(f"validation on {v['data']} [{v['split']}]: {v['examples']} examples, {v['segments']} ACT segments each, "
          f"{v['backend']} vs PyTorch (float32, CPU)")
    noise, bound = v["float32_noise"], v["bound"]
    print(f"  max |logit difference|   {v['max_abs_logit_diff']:.3g} (bound {bound['logits']:.3g}; logits up to "
          f"{v['max_abs_logit']:.3g}); Q logits {v['max_abs_q_diff']:.3g} (bound {bound['q']:.3g})")
    print(f"  PyTorch float32 noise    logits {noise['logits']:.3g}, Q {noise['q']:.3g} (PyTorch float32 vs float64, "
          f"first batch); bound = {v['bound_rule']}")
    bad = v.get("non_finite") or {}
    if any(bad.values()):
        print(f"  NON-FINITE outputs       PyTorch {bad.get('pytorch', 0):,}, export {bad.get('export', 0):,} NaN or "
              "infinite logits and Q logits (differences above are over the finite ones): the model is broken")
    print(f"  halting decisions        {'identical' if v['halting_identical'] else 'DIFFERENT'} at every segment "
          f"({v['halting_rule']})")
    diff = ex["difference"]
    print(f"  exact accuracy           PyTorch {pct(ex['pytorch'])}, export {pct(ex['export'])} (difference "
          f"{'n/a' if diff is None else f'{100 * diff:+.2f} points'}); baselines: {base}")
    print(f"  answers that differ      {v['differing_answers']}")
    th = v["threads"]
    print(f"  latency per puzzle       PyTorch {1e3 * lat['pytorch']:.3f} ms, export {1e3 * lat['export']:.3f} ms "
          f"(batch {v['batch_size']}, every segment; intra-op threads: PyTorch {th['pytorch']}, export {th['export']})")
    print(f"  -> {'PASS' if v['ok'] else 'FAIL'}")


def _export(args: argparse.Namespace) -> int:
    from hrmkit.deploy.export import export_model

    result = export_model(args.target, args.out, args.format, use_ema=not args.raw_weights, validate=args.validate,
                          data=args.data, split=args.split, batch_size=args.batch_size,
                          max_examples=args.max_examples, opset=args.opset, exporter=args.exporter,
                          threads=args.threads, command=_command(args))
    v = result.validation
    if args.json:
        print(json.dumps({"folder": str(result.folder), "format": result.format, "files": result.files,
                          "step": result.config["step"], "weights": result.config["weights"], "validation": v}))
    else:
        c = result.config
        print(f"exported {c['source']} (step {c['step']}, {c['weights']} weights) to {result.folder} ({result.format}):")
        for name, f in result.files.items():
            print(f"  {name:18s} {f['bytes']:>12,} bytes  sha256 {f['sha256']}")
        print(f"  {'README.md':18s} model card")
        if v:
            _print_validation(v)
    return 0 if v is None or v["ok"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export` to the `hrm` command."""
    from hrmkit.deploy.export import DEFAULT_OPSET, EXPORTERS, FORMATS

    p = sub.add_parser(
        "export", help="export a trained model: Hugging Face-style safetensors folder or ONNX, with validation",
        description="Export a trained model to the folder --out (written whole or not at all; it must not exist "
        "or be empty). safetensors (default): config.json (architecture, sequence length, vocabulary, token "
        "layout, dataset), model.safetensors (inference weights, EMA when the run had EMA, puzzle table "
        "included) and a README.md model card (training data, steps, results next to the baselines, input "
        "sensitivity, parameters, file hashes, this command); it loads back without pickle "
        "(hrmkit.loading.load_model). onnx: config.json, model.onnx (one ACT segment, float32: tokens, puzzle "
        "ids and carry in, logits, Q logits and the new carry out) and the model card; "
        "hrmkit.deploy.onnx_runner.ACTRunner runs the ACT loop around it with onnxruntime only. --validate runs "
        "the export on the test split next to the PyTorch model and reports the largest logit difference, the "
        "exact-accuracy difference and whether halting decisions are identical (exit status 1 when a halting "
        "decision differs or ONNX logits differ by more than max(1e-4, 10 x PyTorch's own float32 rounding noise "
        "on the model, measured against float64); a safetensors reload must be identical). ONNX needs "
        "pip install 'hrmkit[export]'.")
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder (its newest checkpoint), RUN/best/, a checkpoint file or an exported folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist or be empty)")
    p.add_argument("--format", default="safetensors", choices=FORMATS, help="default: safetensors")
    p.add_argument("--validate", action="store_true",
                   help="run the export on the dataset's test split next to PyTorch and compare")
    p.add_argument("--data", metavar="DIR", help="dataset folder for --validate and the model card (default: the "
                   "run's data_path)")
    p.add_argument("--split", default="test", help="split to validate on (default: test)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="validation batch size (default: the run's eval_batch_size or global_batch_size)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N", help="validate on the first N examples only")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op threads of PyTorch and "
                   "onnxruntime during --validate, for a like-for-like latency (default: each one's own)")
    p.add_argument("--raw-weights", action="store_true",
                   help="export the raw weights even when the checkpoint holds an EMA copy")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", default="torchscript", choices=EXPORTERS,
                   help="torch ONNX exporter: torchscript (default, about a second) or dynamo (torch.export, "
                        "needs onnxscript, tens of seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object (files, hashes, validation)")
    p.set_defaults(func=_export)
