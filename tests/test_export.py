"""`hrm export`: safetensors round trip, ONNX parity with halting (HRM, TRM attention and mlp_t), --validate,
the model card, and bad input refused with exit 2 and no folder left behind."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hrmkit.cli import main as hrm
from hrmkit.config import ArchConfig, TrainConfig
from hrmkit.data.format import load_split
from hrmkit.data.sampler import test_batches as split_batches
from hrmkit.deploy.export import export_model, write_onnx
from hrmkit.errors import HrmkitError
from hrmkit.eval.rollout import rollout
from hrmkit.loading import TrainedModel, load_model
from hrmkit.models import build_model, puzzle_embedding_params
from hrmkit.presets import resolve_config
from hrmkit.train.loop import train
from conftest import TINY_ARCH as TINY

pytest.importorskip("onnxruntime")
from hrmkit.deploy.onnx_runner import ACTRunner, halting_decisions  # noqa: E402


@pytest.fixture(scope="module")
def ema_run(sudoku4, tmp_path_factory):
    """A 10-step HRM run with EMA weights (so raw and exported weights differ)."""
    cfg = resolve_config(preset="demo-4x4", overrides=TINY + [f"data_path={sudoku4}", "max_steps=10", "checkpoint_every=10",
                                                          "ema=true", "ema_rate=0.5",
                                                          f"out_dir={tmp_path_factory.mktemp('runs')}"])
    return train(cfg).run_dir


def _batch(data, n=64):
    return next(split_batches(load_split(data, "test"), n))[0]


def _cli(capsys, *args):
    capsys.readouterr()
    rc = hrm(["export", *map(str, args)])
    return rc, capsys.readouterr()


def test_safetensors_round_trip_is_identical_and_needs_no_pickle(ema_run, sudoku4, tmp_path, capsys, monkeypatch):
    out = tmp_path / "exported"
    rc, _ = _cli(capsys, ema_run, "--out", out)
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "ema" and config["step"] == 10 and config["architecture"] == "hrm"
    assert config["model_shape"] == {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 1}
    assert config["token_layout"]["grid"] == [4, 4] and config["dataset"]["task"] == "sudoku"

    def no_pickle(*a, **k):
        raise AssertionError("torch.load called")

    original = load_model(ema_run)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(out)
    monkeypatch.undo()
    batch = _batch(sudoku4)
    a, b = rollout(original.head, batch), rollout(loaded.head, batch)
    assert torch.equal(a.outputs["logits"], b.outputs["logits"]) and torch.equal(a.q_halt, b.q_halt)
    assert loaded.step == 10 and loaded.weights == "ema" and loaded.model_shape == original.model_shape
    raw = load_model(ema_run, use_ema=False)
    assert not torch.equal(rollout(raw.head, batch).outputs["logits"], b.outputs["logits"])  # EMA, not raw, exported
    # the exported folder re-exports (here to ONNX), keeping what it says about its weights
    assert export_model(out, tmp_path / "again", "onnx").config["weights"] == "ema"


def test_onnx_validate_and_model_card(ema_run, tmp_path, capsys):
    out = tmp_path / "onnx"
    rc, res = _cli(capsys, ema_run, "--out", out, "--format", "onnx", "--validate", "--json")
    assert rc == 0, res.err
    r = json.loads(res.out)
    v = r["validation"]
    assert v["ok"] and v["examples"] == 64 and v["segments"] == 3 and v["backend"].startswith("onnxruntime")
    assert v["max_abs_logit_diff"] < 1e-4 and v["halting_identical"] and v["differing_answers"] == 0
    noise = v["float32_noise"]  # PyTorch's own float32-vs-float64 difference, measured
    assert 0 < noise["logits"] < 1e-3 and v["bound"]["logits"] == max(1e-4, 10 * noise["logits"])
    assert v["exact_accuracy"]["difference"] == 0 and v["baselines"]["copy_input"]["exact_accuracy"] == 0.0
    card = (out / "README.md").read_text()
    for name in ("model.onnx", "config.json"):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert r["files"][name]["sha256"] == digest and digest in card
    for text in ("## Training data", "train 300 groups", "## Results", "copy_input baseline", "## Input sensitivity",
                 "## Validation of this export", "**PASS**", f"hrm export {ema_run} --out {out} --format onnx --validate",
                 "parameters"):
        assert text in card, text
    # the recorded evaluation of the run is what the card reports for the model
    last = json.loads((ema_run / "status.json").read_text())["last_eval"]["metrics"]
    assert f"| model | {100 * last['exact_accuracy']:.1f}% | {100 * last['token_accuracy']:.1f}% |" in card


def test_validation_fails_when_the_export_is_off(ema_run, sudoku4, tmp_path, capsys, monkeypatch):
    from hrmkit.deploy.validate import validate_export

    export_model(ema_run, tmp_path / "ema", "onnx")
    v = validate_export(tmp_path / "ema", "onnx", load_model(ema_run, use_ema=False), load_split(sudoku4, "test"))
    assert not v["ok"] and v["max_abs_logit_diff"] > v["bound"]["logits"]  # raw weights vs the exported EMA ones
    run = ACTRunner.run

    def shifted(self, *args, **kwargs):  # every logit off by 1e-3: far above this tiny model's rounding noise
        out = run(self, *args, **kwargs)
        out.logits = out.logits + 1e-3
        return out

    monkeypatch.setattr(ACTRunner, "run", shifted)
    rc, res = _cli(capsys, ema_run, "--out", tmp_path / "off", "--format", "onnx", "--validate")
    assert rc == 1 and "-> FAIL" in res.out and "**FAIL**" in (tmp_path / "off" / "README.md").read_text()


def _random_model(arch: ArchConfig, seed: int) -> TrainedModel:
    """A randomly initialised model whose Q head and puzzle table are random too (so halting varies by row)."""
    torch.manual_seed(seed)
    shape = {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 5}
    head = build_model(arch, **shape).eval()
    with torch.no_grad():
        torch.nn.init.normal_(head.model.inner.q_head.weight, std=0.5)
        head.model.inner.q_head.bias.zero_()
        for table in puzzle_embedding_params(head):
            table.weights.normal_()
    return TrainedModel(head, TrainConfig(arch=arch), 0, None, shape)


ARCHS = {
    "hrm": dict(name="hrm", H_cycles=2, L_cycles=2, H_layers=1, L_layers=1, pos_encodings="rope"),
    "trm-attn": dict(name="trm", H_cycles=2, L_cycles=2, L_layers=2, puzzle_emb_len=2, pos_encodings="rope",
                     no_ACT_continue=True),
    "trm-mlp_t": dict(name="trm", H_cycles=2, L_cycles=2, L_layers=2, puzzle_emb_len=2, pos_encodings="none",
                      mlp_t=True, no_ACT_continue=False),
    # the CPU demo's shape: no puzzle embedding, so the graph has no puzzle-identifier input
    "trm-mlp_t-no-puzzle-emb": dict(name="trm", H_cycles=2, L_cycles=2, L_layers=2, puzzle_emb_len=0, puzzle_emb_ndim=0,
                                    pos_encodings="none", mlp_t=True, no_ACT_continue=True),
}


def _check_onnx_parity(name: str, path, exporter: str = "torchscript"):
    # Two segments: a random recurrent network amplifies float32 rounding from segment to segment (PyTorch's own
    # float32-vs-float64 error passes 1e-4 by the third), a trained one does not (see the validation test).
    arch = ArchConfig(**{"hidden_size": 32, "num_heads": 2, "expansion": 2, "halt_max_steps": 2, "puzzle_emb_ndim": 32,
                         **ARCHS[name]})
    model = _random_model(arch, seed=1)
    config = {"model_shape": model.model_shape, "halt_max_steps": 2, "halting_uses_q_continue": model.head.model.q_continue,
              "onnx": {"carry_tokens": model.head.model.inner.puzzle_len + 16, "hidden_size": 32}}
    write_onnx(model, path, config, exporter=exporter)
    runner = ACTRunner(path)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, (24, 16)).astype(np.int32)
    ids = rng.integers(0, 5, 24).astype(np.int32)
    out = runner.run(x, ids, keep_segments=True)
    batch = {"inputs": torch.from_numpy(x), "labels": torch.from_numpy(x), "puzzle_identifiers": torch.from_numpy(ids)}
    ref = rollout(model.head, batch, keep_segments=True)
    assert out.segments == ref.segments == 2
    assert np.abs(out.logits - ref.outputs["logits"].numpy()).max() < 1e-4
    assert np.abs(out.q_halt - ref.q_halt.numpy()).max() < 1e-4
    expected = halting_decisions(ref.q_halt.numpy(), ref.q_continue.numpy() if model.head.model.q_continue else None)
    assert np.array_equal(out.halt_decisions, expected)
    assert 0 < expected.sum() < expected.size  # the comparison is not between two constant tables
    if model.head.model.q_continue:
        assert np.array_equal(out.halt_step, ref.halt_step.numpy())
    # answers after every segment: a random network has near-ties in its logits, where rounding may flip the argmax
    assert (out.segment_preds != ref.segment_preds.numpy()).mean() < 0.01
    assert np.array_equal(out.segment_preds[:, -1], out.preds)
    one = runner.run(x[:1], ids[:1])  # the batch size is free
    assert np.abs(one.logits[0] - out.logits[0]).max() < 1e-4


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_onnx_segment_matches_pytorch_with_identical_halting(name, tmp_path):
    _check_onnx_parity(name, tmp_path / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_dynamo_exporter_matches_pytorch_too(name, tmp_path):
    pytest.importorskip("onnxscript")
    _check_onnx_parity(name, tmp_path / "model.onnx", exporter="dynamo")


def test_large_models_keep_weights_in_an_external_file(tmp_path):
    arch = ArchConfig(hidden_size=32, num_heads=2, expansion=2, halt_max_steps=2, puzzle_emb_ndim=32, **ARCHS["hrm"])
    model = _random_model(arch, seed=2)
    config = {"model_shape": model.model_shape, "halt_max_steps": 2, "halting_uses_q_continue": True,
              "onnx": {"carry_tokens": model.head.model.inner.puzzle_len + 16, "hidden_size": 32}}
    outs = []
    for folder, limit in (("inline", 2**31 - 1), ("external", 0)):  # 0: as if the model were over 2 GiB
        (tmp_path / folder).mkdir()
        files = write_onnx(model, tmp_path / folder / "model.onnx", config, external_above=limit)
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(files)  # no scratch files left
        outs.append(ACTRunner(tmp_path / folder).run(np.ones((3, 16), np.int32)).logits)
    assert files == ["model.onnx", "model.onnx.data"]
    weight_bytes = sum(4 * v.numel() for k, v in model.head.state_dict().items() if "rotary" not in k)
    assert (tmp_path / "external" / "model.onnx.data").stat().st_size >= 0.9 * weight_bytes
    assert np.array_equal(*outs)


def test_runner_refuses_bad_input(ema_run, tmp_path):
    export_model(ema_run, tmp_path / "onnx", "onnx")
    runner = ACTRunner(tmp_path / "onnx")
    for bad, field in ((np.zeros((2, 15), np.int32), "inputs"), (np.full((2, 16), 6, np.int32), "inputs"),
                       (np.zeros((2, 16), np.float32), "inputs")):
        with pytest.raises(HrmkitError, match=field):
            runner.run(bad)
    with pytest.raises(HrmkitError, match="puzzle_identifiers"):
        runner.run(np.zeros((2, 16), np.int32), np.array([0, 1]))
    with pytest.raises(HrmkitError, match="ACTRunner"):
        load_model(tmp_path / "onnx")  # an ONNX export holds no PyTorch weights
    # an edge device may have onnxruntime and no PyTorch: the runner must not need it
    code = ("import sys; sys.modules['torch'] = None; import numpy as np; "
            "from hrmkit.deploy.onnx_runner import ACTRunner; "
            f"out = ACTRunner({str(tmp_path / 'onnx')!r}).run(np.ones((2, 16), np.int32)); "
            "print(out.preds.shape, out.halt_step.shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "(2, 16) (2,)", done.stderr


def _refused(capsys, out, *args, match):
    rc, res = _cli(capsys, *args, "--out", out)
    assert rc == 2 and "hrm: error:" in res.err and match in res.err and "Traceback" not in res.err, res.err
    return res


def test_bad_input_is_refused_and_leaves_no_folder(ema_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _refused(capsys, out, tmp_path / "missing_run", match="no such run folder")
    (tmp_path / "empty").mkdir()
    _refused(capsys, out, tmp_path / "empty", match="no checkpoints")
    _refused(capsys, out, ema_run, "--validate", "--data", tmp_path / "nodata", match="dataset folder not found")
    assert not out.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    _refused(capsys, full, ema_run, match="not empty")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    with pytest.raises(SystemExit) as e:
        hrm(["export", str(ema_run), "--out", str(out), "--format", "tflite"])
    assert e.value.code == 2
    with pytest.raises(HrmkitError, match="unknown"):
        export_model(ema_run, out, "tflite")

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    _refused(capsys, out, ema_run, "--format", "onnx", match="pip install 'hrmkit[export]'")
    monkeypatch.undo()

    def broken(*a, **k):
        raise HrmkitError("exporter broke")

    monkeypatch.setattr("hrmkit.deploy.export.write_onnx", broken)
    _refused(capsys, out, ema_run, "--format", "onnx", match="exporter broke")
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    empty_out = tmp_path / "empty_out"
    empty_out.mkdir()  # an existing empty folder is fine
    assert _cli(capsys, ema_run, "--out", empty_out)[0] == 0 and (empty_out / "model.safetensors").is_file()
