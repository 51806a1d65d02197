import pytest
import torch

from hrmkit.cli import main as hrm


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    # The test models are tiny: one intra-op thread is faster than two, and far faster on a busy machine.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sudoku4(tmp_path_factory):
    """A small 4x4 Sudoku dataset built by `hrm data sudoku` (shared by the training and eval tests)."""
    out = tmp_path_factory.mktemp("data") / "sudoku4"
    assert hrm(["data", "sudoku", "--out", str(out), "--size", "4", "--train", "300", "--test", "64", "--seed", "0"]) == 0
    return out
