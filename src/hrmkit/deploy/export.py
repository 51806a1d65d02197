"""`hrm export`: a trained model as a Hugging Face-style folder (safetensors) or as an ONNX ACT segment.

    safetensors:  DIR/config.json  DIR/model.safetensors  DIR/README.md
    onnx:         DIR/config.json  DIR/model.onnx         DIR/README.md

`config.json` (format "hrmkit-export", version 1): architecture and its `arch` settings, `model_shape`
(seq_len, vocab_size, num_puzzle_identifiers), the ACT settings (halt_max_steps, the halting rule), the token
layout and dataset (name, task, path), the step and which weights (EMA or raw), the parameter count, the whole
`train_config`, and for ONNX the graph's inputs and outputs. `model.safetensors` holds the inference weights
only (the state dict of the model, EMA weights when the run had EMA, puzzle table included; no optimizer
state); `hrmkit.loading.load_model(DIR)` reads it back without pickle. `model.onnx` is one ACT segment in
evaluation mode (see hrmkit.deploy.onnx_runner for its inputs and outputs and the ACT loop around it), in
float32, with the same config in its metadata. `README.md` is the model card (hrmkit.deploy.card).

The folder is written atomically (a temporary folder renamed at the end): a failure leaves no partial folder.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrmkit import tasks
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import sha256
from hrmkit.loading import (EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_FORMAT_VERSION, EXPORT_ONNX, EXPORT_WEIGHTS,
                            TrainedModel)

FORMATS = ("safetensors", "onnx")
EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17
INSTALL_HINT = "pip install 'hrmkit[export]'"


def require(*modules: str, purpose: str) -> None:
    """Raise HrmkitError naming the install command when one of `modules` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise HrmkitError(f"{purpose} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL_HINT}")


def token_layout(meta: Any | None) -> dict[str, Any] | None:
    """What the tokens mean, from a dataset's `DatasetMetadata` (None when the dataset is not at hand): pad,
    ignore and blank-identifier ids, and the task's own description of its cells (`Task.token_layout`)."""
    if meta is None:
        return None
    layout = {"pad_id": meta.pad_id, "ignore_label_id": meta.ignore_label_id,
              "blank_identifier_id": meta.blank_identifier_id, "vocab_size": meta.vocab_size, "seq_len": meta.seq_len}
    layout.update(tasks.of_metadata(meta).token_layout(meta.seq_len, meta.extra))
    return layout


def task_record(model: TrainedModel, meta: Any | None) -> dict | None:
    """The task an export records: the checkpoint's, else its dataset's; None when neither says."""
    if model.task is not None:
        return model.task
    return tasks.of_metadata(meta).record() if meta is not None and meta.task else None


def export_config(model: TrainedModel, meta: Any | None, source: str) -> dict[str, Any]:
    """The `config.json` of an export (module docstring). `meta`: the dataset's metadata or None; `source`:
    what was exported (checkpoint or folder)."""
    from hrmkit.models import count_parameters, puzzle_embedding_params

    arch, cfg = model.config.arch, model.config
    act = model.head.model
    tables = puzzle_embedding_params(model.head)
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "library": "hrmkit",
        "architecture": arch.name, "arch": arch.model_dump(mode="json"), "model_shape": model.model_shape,
        "halt_max_steps": act.halt_max_steps, "halting_uses_q_continue": bool(act.q_continue),
        "halting_rule": "q_halt > q_continue" if act.q_continue else "q_halt > 0",
        "parameters": count_parameters(model.head),
        "puzzle_table": list(tables[0].weights.shape) if tables else None,
        "dataset": {"name": Path(cfg.data_path).name, "path": cfg.data_path, "task": meta.task if meta else None},
        "task": task_record(model, meta),
        "token_layout": token_layout(meta), "step": model.step, "weights": model.weights, "source": source,
        "train_config": cfg.model_dump(mode="json"),
    }


def write_safetensors(head, path: Path) -> None:
    """The model's state dict (float32 tensors, contiguous copies) as a safetensors file."""
    from safetensors.torch import save

    # save() and a plain write rather than save_file(), which creates the file readable by its owner only
    path.write_bytes(save({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()},
                          metadata={"format": "pt", "library": "hrmkit"}))


def _segment_module(act):
    """A module computing one evaluation-mode ACT segment from plain tensors (onnx_runner.GRAPH_INPUTS ->
    GRAPH_OUTPUTS) by calling the model's own ACTModel.forward, so the exported math is the PyTorch math."""
    import torch

    from hrmkit.models.act import Carry, InnerCarry

    class Segment(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = act

        def forward(self, inputs, puzzle_identifiers, z_H, z_L, steps, halted):
            # int64 ids: the dynamo exporter emits an int32 GatherND that onnxruntime refuses; same rows either way
            batch = {"inputs": inputs, "puzzle_identifiers": puzzle_identifiers.long()}
            carry, out = self.act(Carry(InnerCarry(z_H, z_L), steps, halted, batch), batch)
            return (out["logits"], out["q_halt_logits"], out["q_continue_logits"], carry.inner_carry.z_H,
                    carry.inner_carry.z_L, carry.steps, carry.halted)

    return Segment().eval()


PROTOBUF_LIMIT = 2**31 - 1  # bytes: larger ONNX models keep their weights in an external data file


def write_onnx(model: TrainedModel, path: Path, config: dict[str, Any], opset: int = DEFAULT_OPSET,
               exporter: str = "torchscript", external_above: int = PROTOBUF_LIMIT) -> list[str]:
    """Export one ACT segment of `model` (float32, CPU, evaluation mode) to `path`, batch size dynamic, with
    `config` (JSON) in the model's metadata under onnx_runner.METADATA_KEY. `exporter`: "torchscript" (torch's
    TorchScript-based exporter, dynamo=False: about a second) or "dynamo" (torch.export-based, needs onnxscript:
    tens of seconds). A model over `external_above` bytes (protobuf's 2 GiB limit; e.g. an ARC puzzle table)
    keeps its weights in `path` + ".data" beside it. Returns the names of the files written; raises
    HrmkitError when the export fails."""
    import shutil
    import tempfile

    import onnx
    import torch

    from hrmkit.deploy.onnx_runner import GRAPH_INPUTS, GRAPH_OUTPUTS, METADATA_KEY

    act = model.head.model
    B, S = 2, model.model_shape["seq_len"]
    carry = act.inner.empty_carry(B, "cpu")
    example = (torch.zeros(B, S, dtype=torch.int32), torch.zeros(B, dtype=torch.int32), carry.z_H, carry.z_L,
               torch.zeros(B, dtype=torch.int32), torch.ones(B, dtype=torch.bool))
    segment = _segment_module(act)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=".onnx-export."))  # whatever files torch writes
    try:
        raw = scratch / path.name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter of torch.onnx
            if exporter == "torchscript":
                torch.onnx.export(segment, example, str(raw), input_names=list(GRAPH_INPUTS),
                                  output_names=list(GRAPH_OUTPUTS), opset_version=opset, dynamo=False,
                                  dynamic_axes={n: {0: "batch"} for n in GRAPH_INPUTS + GRAPH_OUTPUTS})
            else:
                batch = torch.export.Dim("batch", min=1)
                torch.onnx.export(segment, example, str(raw), input_names=list(GRAPH_INPUTS),
                                  output_names=list(GRAPH_OUTPUTS), opset_version=opset, dynamo=True,
                                  dynamic_shapes=tuple({0: batch} for _ in GRAPH_INPUTS), verbose=False)
        proto = onnx.load(str(raw))
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(config)})
        external = proto.ByteSize() > external_above
        onnx.save_model(proto, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise HrmkitError(f"ONNX export ({exporter} exporter, opset {opset}) failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [path.name, path.name + ".data"] if external else [path.name]


@dataclass
class ExportResult:
    """What `export_model` wrote: the folder, its format, `files` ({name: {bytes, sha256}} of the model and
    config files), the `config` written, and the `validation` report (hrmkit.deploy.validate) or None."""

    folder: Path
    format: str
    files: dict[str, dict[str, Any]]
    config: dict[str, Any]
    validation: dict[str, Any] | None


def check_out_dir(out: Path) -> bool:
    """Raise HrmkitError when `out` is a file or a folder that is not empty; returns whether it exists (empty)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HrmkitError(f"--out {out}: already exists and is not empty; choose another folder or remove it")
    return out.exists()


def export_model(target: str | Path, out: str | Path, fmt: str = "safetensors", *, use_ema: bool = True,
                 validate: bool = False, data: str | Path | None = None, split: str = "test",
                 batch_size: int | None = None, max_examples: int | None = None, opset: int = DEFAULT_OPSET,
                 exporter: str = "torchscript", threads: int | None = None, command: str | None = None) -> ExportResult:
    """Export the model at `target` (run folder, RUN/best/, checkpoint file or exported folder; see
    hrmkit.loading.load_model) to the folder `out` in format `fmt` ("safetensors" or "onnx").

    With `validate`, the exported files are run (onnxruntime for ONNX, a reload of the safetensors folder
    otherwise) on `split` of the dataset (`data`, default the run's data_path) next to the PyTorch model, and the
    report (hrmkit.deploy.validate.validate_export; `threads`: the intra-op threads both run with) goes into the
    model card and the result. `command`: the command line recorded in the card. Every argument is checked
    before anything is written; raises HrmkitError for a bad format or exporter, an `out` that exists and is not
    empty, a missing onnx/onnxruntime, a target with no model, or a dataset that cannot be read. The folder
    appears whole or not at all.
    """
    from hrmkit.deploy.card import model_card, run_facts
    from hrmkit.deploy.onnx_runner import GRAPH_INPUTS, GRAPH_OUTPUTS
    from hrmkit.fsutil import atomic_directory, atomic_write_json
    from hrmkit.loading import load_model

    if fmt not in FORMATS:
        raise HrmkitError(f"--format {fmt!r}: unknown; choose one of {', '.join(FORMATS)}")
    if exporter not in EXPORTERS:
        raise HrmkitError(f"exporter {exporter!r}: unknown; choose one of {', '.join(EXPORTERS)}")
    out = Path(out)
    existed = check_out_dir(out)
    if fmt == "onnx":
        require("onnx", *(("onnxscript",) if exporter == "dynamo" else ()), purpose="ONNX export")
        if validate:
            require("onnxruntime", purpose="--validate of an ONNX export")
    model = load_model(target, "cpu", use_ema)
    facts = run_facts(model, data, split if validate else None)  # reads the dataset now: bad --data fails here
    config = export_config(model, facts.metadata, str(model.path))
    with atomic_directory(out, overwrite=existed) as tmp:
        if fmt == "onnx":
            # the graph is float32 whatever forward_dtype the run used (the validation compares in float32)
            inner = model.head.model.inner
            inner.arch = inner.arch.model_copy(update={"forward_dtype": "float32"})
            config["onnx"] = {"file": EXPORT_ONNX, "opset": opset, "exporter": exporter, "dtype": "float32",
                              "carry_tokens": inner.puzzle_len + model.model_shape["seq_len"],
                              "hidden_size": inner.arch.hidden_size, "inputs": list(GRAPH_INPUTS),
                              "outputs": list(GRAPH_OUTPUTS)}
            written = write_onnx(model, tmp / EXPORT_ONNX, config, opset, exporter)
        else:
            write_safetensors(model.head, tmp / EXPORT_WEIGHTS)
            written = [EXPORT_WEIGHTS]
        atomic_write_json(tmp / EXPORT_CONFIG, config)
        validation = None
        if validate:
            from hrmkit.deploy.validate import validate_export

            validation = validate_export(tmp, fmt, model, facts.split, batch_size=batch_size,
                                         max_examples=max_examples, threads=threads)
            validation["data"] = str(facts.data_path)
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256(tmp / name)}
                 for name in (*written, EXPORT_CONFIG)}
        (tmp / "README.md").write_text(model_card(config, facts, files, validation, command), encoding="utf-8")
    return ExportResult(out, fmt, files, config, validation)
