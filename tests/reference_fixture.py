"""Test helpers for the reference-format fixtures: record one by running hrmkit itself, load a reference
checkpoint file in one call. Used by tests/test_parity.py (nothing in hrmkit needs them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hrmkit.config import ArchConfig
from hrmkit.data.format import IGNORE_LABEL_ID
from hrmkit.models import build_model
from hrmkit.models.losses import ACTLossHead
from hrmkit.models.reference import (_np, arch_from_reference_config, build_reference_model,
                                     read_reference_checkpoint, replay)


def load_reference_checkpoint(path: str | Path, *, seq_len: int | None = None, arch: ArchConfig | None = None) -> ACTLossHead:
    """Build an hrmkit model from a reference checkpoint file and load it (`read_reference_checkpoint`, then
    `build_reference_model`). Raises HrmkitError when something is missing or does not match."""
    return build_reference_model(read_reference_checkpoint(path, seq_len=seq_len, arch=arch))


def record_fixture(path: str | Path, config: dict, *, loss_type: str = "stablemax_cross_entropy",
                   arch_name: str | None = None, seed: int = 0) -> Path:
    """Write a fixture (NAME.npz + NAME.json) in the reference format by running hrmkit itself.

    `config` holds the reference-style arch keys plus batch_size, seq_len, vocab_size, num_puzzle_identifiers.
    The puzzle table and q_head get random non-zero values so that every path is exercised. Used to test
    `verify_reference` on configurations that have no reference recording. Returns the npz path.
    """
    path = Path(path)
    arch = arch_from_reference_config(config, loss_type, arch_name)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = build_model(arch, seq_len=config["seq_len"], vocab_size=config["vocab_size"],
                       num_puzzle_identifiers=config["num_puzzle_identifiers"])
    inner = head.model.inner
    with torch.no_grad():
        if hasattr(inner, "puzzle_emb"):
            inner.puzzle_emb.weights.normal_(0, 0.5, generator=g)
        inner.q_head.weight.normal_(0, 0.5, generator=g)
        inner.q_head.bias.normal_(0, 1.0, generator=g)
    B, S, V = config["batch_size"], config["seq_len"], config["vocab_size"]
    inputs = torch.randint(1, V, (B, S), generator=g, dtype=torch.int32)
    labels = torch.randint(1, V, (B, S), generator=g, dtype=torch.int32)
    labels[torch.rand(B, S, generator=g) < 0.3] = IGNORE_LABEL_ID
    pids = torch.randint(0, config["num_puzzle_identifiers"], (B,), generator=g, dtype=torch.int32)
    batch = {"inputs": inputs, "labels": labels, "puzzle_identifiers": pids}
    arrays = {f"state_dict.{k}": _np(v) for k, v in head.state_dict().items()}
    arrays.update({f"batch.{k}": _np(v) for k, v in batch.items()})
    arrays.update(replay(head, batch, arch.halt_max_steps))
    np.savez(path.with_suffix(".npz"), **arrays)
    spec = {"config": config, "loss_type": loss_type, "seed": seed, "arch_name": arch.name,
            "note": "recorded by tests/reference_fixture.py record_fixture", "keys": sorted(arrays)}
    path.with_suffix(".json").write_text(json.dumps(spec, indent=1))
    return path.with_suffix(".npz")
