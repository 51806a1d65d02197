"""The reference presets against the hyperparameters extracted from the references' own config files
and README run commands (fixtures/reference/presets.json; how: fixtures/reference/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrmkit.cli import main as hrm_main
from hrmkit.presets import PRESET_NOTES, REFERENCE_PRESETS, resolve_config

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "reference" / "presets.json").read_text())


def test_every_published_run_has_a_preset():
    assert set(RECORDED) == set(REFERENCE_PRESETS) == set(PRESET_NOTES)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_preset_matches_the_reference_config(name):
    ref = RECORDED[name]
    cfg = resolve_config(preset=name)
    for key in ("global_batch_size", "epochs", "eval_interval", "lr", "lr_min_ratio", "lr_warmup_steps", "weight_decay",
                "beta1", "beta2", "puzzle_emb_lr", "puzzle_emb_weight_decay", "ema", "ema_rate"):
        assert getattr(cfg, key) == pytest.approx(ref[key]), key
    for key, value in ref["arch"].items():
        assert getattr(cfg.arch, key) == value, f"arch.{key}"
    assert cfg.eval.arc_aggregate == ref["arc_aggregated_voting"]
    assert cfg.max_steps is None and cfg.lr_schedule == "cosine" and cfg.preset == name


def test_presets_are_listed_with_score_compute_and_data_command(capsys):
    assert hrm_main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name, notes in PRESET_NOTES.items():
        assert name in out and notes["published"] in out and notes["data"] in out
    assert "44.6% pass@2" in out and "hrm data arc --version 1 --tasks-dir ConceptARC/corpus" in out
