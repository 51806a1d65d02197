"""Parity with the reference implementations: recorded fixtures, self-recorded fixtures in the same format,
reference checkpoint loading and the presets' parameter counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hrmkit.cli import main as hrm_main
from hrmkit.errors import HrmkitError
from hrmkit.models import build_model, count_parameters
from hrmkit.models.reference import arch_from_reference_config, load_reference_state_dict, verify_reference
from hrmkit.presets import MODEL_PRESETS
from reference_fixture import load_reference_checkpoint, record_fixture

FIXTURES = Path(os.environ.get("HRMKIT_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"))
FIXTURE_FILES = sorted(FIXTURES.glob("*.npz")) if FIXTURES.is_dir() else []


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_reference_fixture(path):
    report = verify_reference(path)
    assert report.checks and report.ok, [c for c in report.failures]
    assert any(c.kind == "exact" for c in report.checks)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_reference_fixture_catches_small_weight_errors(path, tmp_path):
    """The rounding-noise allowance stays far below what a real difference makes: the first segment's logits
    fail when the output layer is off by 1e-4 (relative), on every fixture, the chaotic TRM mlp_t included."""
    bad = verify_reference(_perturbed(path, tmp_path / path.name, "state_dict.model.inner.lm_head.weight",
                                      lambda a: a * (1 + 1e-4)))
    failed = {c.key for c in bad.failures}
    assert "eval.step1.logits" in failed and "train.step1.logits" in failed
    step1 = next(c for c in bad.checks if c.key == "eval.step1.logits")
    assert step1.tolerance < 1e-4 and step1.noise < 1e-5


def test_fixtures_present():
    if not FIXTURE_FILES:
        if os.environ.get("CI"):  # CI checks out shared/ beside the clone: parity must not be skipped there
            pytest.fail(f"no reference fixtures in {FIXTURES} (set HRMKIT_FIXTURES)")
        pytest.skip(f"no reference fixtures in {FIXTURES}")
    assert any(p.name.startswith("hrm") for p in FIXTURE_FILES)


OWN_CONFIG = dict(batch_size=4, seq_len=10, puzzle_emb_ndim=24, num_puzzle_identifiers=3, vocab_size=7,
                  H_cycles=3, L_cycles=1, H_layers=1, L_layers=2, hidden_size=16, expansion=2, num_heads=2,
                  pos_encodings="learned", halt_max_steps=3, halt_exploration_prob=0.0, forward_dtype="float32")


@pytest.fixture(scope="module")
def own_fixture(tmp_path_factory):
    return record_fixture(tmp_path_factory.mktemp("fx") / "hrm_learned_softmax", OWN_CONFIG,
                          loss_type="softmax_cross_entropy", seed=5)


def _perturbed(src: Path, dst: Path, key: str, fn) -> Path:
    data = dict(np.load(src))
    data[key] = fn(data[key].copy())
    np.savez(dst, **data)
    dst.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    return dst


def test_own_fixture_passes_and_perturbations_fail(own_fixture, tmp_path):
    rep = verify_reference(own_fixture)
    assert rep.ok and rep.max_error() == 0.0
    keys = {c.key for c in rep.checks}
    assert "train.step2.target_q_continue" in keys and "train.step1.puzzle_emb_local_grad" in keys

    def bump(a):
        a.flat[3] += 1e-3 * (np.abs(a).max() + 1)
        return a

    grad_key = "train.step2.grad.model.inner.H_level.layers.0.mlp.down_proj.weight"
    bad = verify_reference(_perturbed(own_fixture, tmp_path / "g.npz", grad_key, bump))
    assert [c.key for c in bad.failures] == [grad_key]
    halted = verify_reference(_perturbed(own_fixture, tmp_path / "h.npz", "train.step1.halted", lambda a: 1 - a))
    assert [c.key for c in halted.failures] == ["train.step1.halted"]
    # a perturbed weight changes (almost) everything downstream
    w = verify_reference(_perturbed(own_fixture, tmp_path / "w.npz",
                                    "state_dict.model.inner.embed_pos.embedding_weight", bump))
    assert not w.ok
    assert hrm_main(["verify-reference", str(own_fixture)]) == 0
    assert hrm_main(["verify-reference", "--json", str(tmp_path / "g.npz")]) == 1
    assert hrm_main(["verify-reference", str(tmp_path / "missing.npz")]) == 2


def test_own_trm_fixture_with_q_continue(tmp_path):
    cfg = dict(OWN_CONFIG, H_layers=0, pos_encodings="rope", mlp_t=False, puzzle_emb_len=3, no_ACT_continue=False)
    path = record_fixture(tmp_path / "trm_qcont", cfg, seed=1)
    assert json.loads(path.with_suffix(".json").read_text())["arch_name"] == "trm"
    rep = verify_reference(path)
    assert rep.ok and any(c.key.endswith("target_q_continue") for c in rep.checks)


def test_orig_mod_prefix_and_errors(own_fixture):
    data = np.load(own_fixture)
    sd = {"_orig_mod." + k[len("state_dict."):]: data[k] for k in data.files if k.startswith("state_dict.")}
    arch = arch_from_reference_config(OWN_CONFIG, "softmax_cross_entropy")
    head = build_model(arch, seq_len=10, vocab_size=7, num_puzzle_identifiers=3)
    load_reference_state_dict(head, sd)
    w = head.state_dict()["model.inner.lm_head.weight"].numpy()
    assert np.array_equal(w, data["state_dict.model.inner.lm_head.weight"])
    sd.pop("_orig_mod.model.inner.H_init")
    with pytest.raises(HrmkitError, match="H_init"):
        load_reference_state_dict(head, sd)


def test_load_reference_checkpoint_with_all_config(own_fixture, tmp_path):
    import yaml

    data = np.load(own_fixture)
    sd = {"_orig_mod." + k[len("state_dict."):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("state_dict.")}
    ckpt = tmp_path / "step_100"
    torch.save(sd, ckpt)
    arch_cfg = {k: v for k, v in OWN_CONFIG.items() if k not in ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers")}
    arch_cfg.update(name="hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
                    loss={"name": "losses@ACTLossHead", "loss_type": "softmax_cross_entropy"})
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch_cfg, "data_path": str(tmp_path / "nodata")}))
    head = load_reference_checkpoint(ckpt)  # seq_len inferred from the learned-position table
    assert head.model.inner.seq_len == 10 and head.loss_type == "softmax_cross_entropy"
    assert head.model.inner.arch.H_cycles == 3


@pytest.mark.parametrize("name,expected", [("hrm-paper", 27_275_266), ("trm-attn", 6_828_034),
                                           ("transformer-baseline", 27_275_266)])
def test_preset_parameter_counts(name, expected):
    head = build_model(MODEL_PRESETS[name], seq_len=81, vocab_size=11, num_puzzle_identifiers=2)
    assert count_parameters(head) == expected


def test_all_presets_build():
    for name, arch in MODEL_PRESETS.items():
        if name in ("hrm-paper", "trm-attn", "transformer-baseline"):
            continue
        assert count_parameters(build_model(arch, seq_len=81, vocab_size=11, num_puzzle_identifiers=2)) > 0
