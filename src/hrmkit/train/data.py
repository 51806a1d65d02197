"""What a run reads: the dataset (the demo one built on first use), both splits validated before the first step,
the training sampler and the step budget.

Everything a bad dataset can break is checked here, before a run folder exists: each split loads with every
token checked against its vocabulary (data/format.py), neither is empty, and the test split fits the model
built from the train split (seq_len, vocab_size, puzzle identifiers). A split that fails only at the final
evaluation would cost the whole training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hrmkit.config import TrainConfig
from hrmkit.data.format import SplitData, load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.errors import HrmkitError


@dataclass
class RunData:
    """The two splits of a run: `train` (sampled) and `test` (evaluated), both validated."""

    train: SplitData
    test: SplitData

    @property
    def model_shape(self) -> dict[str, int]:
        """seq_len, vocab_size, num_puzzle_identifiers of the train split: the shape the model is built for."""
        meta = self.train.metadata
        return {"seq_len": meta.seq_len, "vocab_size": meta.vocab_size,
                "num_puzzle_identifiers": meta.num_puzzle_identifiers}


def ensure_demo_data(cfg: TrainConfig) -> None:
    """Build `data_path` with the `demo_data` recipe when it holds no dataset yet. Raises HrmkitError when
    there is no dataset and no recipe, or the folder holds something else."""
    path = Path(cfg.data_path)
    if (path / "train").is_dir():
        return
    if cfg.demo_data is None:
        raise HrmkitError(f"data_path={cfg.data_path!r}: no dataset there (expected {path}/train); "
                          "build one with `hrm data ...`")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise HrmkitError(f"data_path={cfg.data_path!r}: exists but holds no dataset (no {path}/train); "
                          "remove it or point data_path elsewhere")
    from hrmkit.data.sudoku import build_generated

    d = cfg.demo_data
    print(f"building the demo dataset in {path} ({d.size}x{d.size} Sudoku, {d.train} train / {d.test} test)",
          flush=True)
    build_generated(path, d.size, d.train, d.test, d.seed, d.num_aug, force=path.exists())


def load_run_data(cfg: TrainConfig) -> RunData:
    """Load and validate both splits of `cfg.data_path` (module docstring). Raises HrmkitError."""
    root = Path(cfg.data_path)
    train = load_split(root, "train").require_examples()
    test = load_split(root, "test").require_examples()
    data = RunData(train, test)
    test.check_fits(**data.model_shape, model=f"the model built for the train split {train.path}")
    return data


def make_sampler(split: SplitData, cfg: TrainConfig, rank: int = 0, world_size: int = 1) -> TrainSampler:
    """The training sampler of a run (the one place it is built)."""
    return TrainSampler(split, int(cfg.global_batch_size), seed=cfg.seed, rank=rank, world_size=world_size)


@dataclass(frozen=True)
class StepBudget:
    """steps_per_epoch: optimizer steps per epoch; total_steps: optimizer steps of the run; full_eval_every:
    the reference `eval_interval` (epochs) in optimizer steps, None without it."""

    steps_per_epoch: int
    total_steps: int
    full_eval_every: int | None


def step_budget(sampler: TrainSampler, cfg: TrainConfig) -> StepBudget:
    """Optimizer steps per epoch and in all: `epochs` epochs of `grad_accum_steps` batches per step, capped by
    `max_steps`. Raises HrmkitError when that is no step at all."""
    batches, k = sampler.batches_per_epoch, cfg.grad_accum_steps
    per_epoch = max(1, batches // k)
    total = cfg.epochs * batches // k
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if total < 1:
        raise HrmkitError(f"epochs={cfg.epochs} with grad_accum_steps={k} gives no optimizer step "
                          f"({batches} batches per epoch)")
    return StepBudget(per_epoch, total, cfg.eval_interval * per_epoch if cfg.eval_interval else None)
