"""`device=mps`: availability check, operator probe and CPU fallback, testable without a Mac."""

import pytest
import torch

from hrmkit import device as dev
from hrmkit.errors import HrmkitError


def test_mps_without_the_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(dev, "mps_available", lambda: False)
    with pytest.raises(HrmkitError, match="device=mps: .*no usable MPS backend"):
        dev.pick_device("mps")


def test_mps_with_every_operation_is_used(monkeypatch):
    monkeypatch.setattr(dev, "mps_available", lambda: True)
    seen = []
    assert dev.pick_device("mps", probe=seen.append) == torch.device("mps") and seen == [torch.device("mps")]


def test_mps_missing_an_operation_falls_back_to_cpu_with_a_message(monkeypatch, capsys):
    monkeypatch.setattr(dev, "mps_available", lambda: True)

    def probe(device):
        raise NotImplementedError("The operator 'aten::index_add_' is not currently implemented for the MPS device.")

    assert dev.pick_device("mps", probe=probe) == torch.device("cpu")
    err = capsys.readouterr().err
    assert "aten::index_add_" in err and "falling back to the CPU" in err


def test_probe_runs_on_cpu_and_auto_never_picks_mps():
    dev.probe_ops(torch.device("cpu"))  # every operation it names exists
    assert dev.pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(HrmkitError, match="expected one of auto, cpu, cuda, mps"):
        dev.pick_device("tpu")
