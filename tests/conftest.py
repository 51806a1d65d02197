import pytest
import torch

from hrmkit.cli import main as hrm


def pytest_collection_modifyitems(items):
    # pyproject's 10-minute limit per test is for the default suite; full trainings and benchmarks get 2 hours
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(7200))


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


# A tiny HRM (3 ACT segments in evaluation) trained for 12 steps on `sudoku4`: enough for the API, `hrm solve`
# and the report's views, which check what the model did, not how well.
TINY_ARCH = [
    "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
    "arch.L_cycles=2", "arch.halt_max_steps=3", "arch.puzzle_emb_ndim=32", "global_batch_size=32",
    "lr=3e-3", "lr_warmup_steps=5", "log_every=5", "eval_batch_size=64", "max_time_s=null",
]


@pytest.fixture(scope="session")
def sudoku4_run(sudoku4, tmp_path_factory):
    from hrmkit.presets import resolve_config
    from hrmkit.train.loop import train

    return train(resolve_config(preset="demo-4x4", overrides=TINY_ARCH + [
        f"data_path={sudoku4}", f"out_dir={tmp_path_factory.mktemp('runs')}", "max_steps=12", "checkpoint_every=12"])).run_dir
