"""What a run reads: the dataset (the demo one built on first use), both splits validated before the first step,
the training sampler and the step budget.

Everything a bad dataset can break is checked here, before a run folder exists: each split loads with every
token checked against its vocabulary (data/format.py), neither is empty, and the test split fits the model
built from the train split (seq_len, vocab_size, puzzle identifiers). A split that fails only at the final
evaluation would cost the whole training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hrmkit import tasks
from hrmkit.config import DemoDataConfig, TrainConfig
from hrmkit.data.format import SplitData, load_split
from hrmkit.data.sampler import TrainSampler
from hrmkit.errors import HrmkitError
from hrmkit.presets import TRAIN_PRESETS
from hrmkit.train.lr_schedule import iteration_epochs, reference_step_plan


@dataclass
class RunData:
    """The two splits of a run: `train` (sampled) and `test` (evaluated), both validated."""

    train: SplitData
    test: SplitData

    @property
    def model_shape(self) -> dict[str, int]:
        """seq_len, vocab_size, num_puzzle_identifiers of the train split: the shape the model is built for."""
        return self.train.metadata.model_shape

    @property
    def task_record(self) -> dict | None:
        """The train split's task {"name", "params"} (None when it records none): checkpoints keep it."""
        meta = self.train.metadata
        return {"name": meta.task, "params": dict(meta.task_params)} if meta.task else None


def demo_data_path(cfg: TrainConfig) -> Path | None:
    """The one folder `ensure_demo_data` may build: the `data_path` of the config's own preset, when that preset
    carries a `demo_data` recipe and the config still points there; None otherwise. A mistyped or moved
    `data_path` (`data_path=/some/typo`, or an override on `--resume` or `hrm distill`) must fail, not quietly
    train on demo Sudoku."""
    own = TRAIN_PRESETS.get(cfg.preset or "") or {}
    if cfg.demo_data is None or "demo_data" not in own or os.path.normpath(own["data_path"]) != os.path.normpath(
            cfg.data_path):
        return None
    return Path(cfg.data_path)


def ensure_demo_data(cfg: TrainConfig) -> None:
    """Build the demo dataset (`build_demo_data`) when `data_path` holds no dataset yet and is the demo preset's
    own path (`demo_data_path`). Raises HrmkitError (nothing written) when there is no dataset at any other
    path, or the folder holds something else."""
    path = Path(cfg.data_path)
    if (path / "train").is_dir():
        return
    if demo_data_path(cfg) is None:
        raise HrmkitError(f"data_path={cfg.data_path!r}: no dataset there (expected {path}/train); "
                          "build one with `hrm data ...`")
    build_demo_data(path, cfg.demo_data)


def build_demo_data(path: Path, d: DemoDataConfig) -> None:
    """Write the generated Sudoku dataset of recipe `d` to `path` (an absent or empty folder). Raises
    HrmkitError when `path` holds something else."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise HrmkitError(f"data_path={str(path)!r}: exists but holds no dataset (no {path}/train); "
                          "remove it or point data_path elsewhere")
    from hrmkit.data.sudoku import build_generated

    print(f"building the demo dataset in {path} ({d.size}x{d.size} Sudoku, {d.train} train / {d.test} test)",
          flush=True)
    built = build_generated(path, d.size, d.train, d.test, d.seed, d.num_aug, max_clues=d.max_clues,
                            force=path.exists(), disjoint_solutions=d.disjoint_solutions)
    print(f"test solutions that also occur in train (augmented versions included): "
          f"{built['test_solutions_in_train']} of {d.test}", flush=True)


def load_run_data(cfg: TrainConfig) -> RunData:
    """Load and validate both splits of `cfg.data_path` (module docstring). Raises HrmkitError."""
    root = Path(cfg.data_path)
    train = load_split(root, "train").require_examples()
    test = load_split(root, "test").require_examples()
    bad = test.metadata.shape_differences(train.metadata.model_shape)
    if bad:
        raise HrmkitError(f"{test.path}: does not fit the model built for the train split {train.path}: "
                          f"{'; '.join(bad)}")
    # the task must be known now, not at the first evaluation hours later (an unregistered one names itself)
    for split in (train, test):
        tasks.of_metadata(split.metadata, str(split.path / "dataset.json"))
    return RunData(train, test)


def make_sampler(split: SplitData, cfg: TrainConfig, rank: int = 0, world_size: int = 1) -> TrainSampler:
    """The training sampler of a run (the one place it is built): the references' iterations of
    `eval_interval` epochs (train/lr_schedule.py `iteration_epochs`)."""
    return TrainSampler(split, int(cfg.global_batch_size), seed=cfg.seed, rank=rank, world_size=world_size,
                        epochs_per_iter=iteration_epochs(cfg.epochs, cfg.eval_interval))


@dataclass(frozen=True)
class StepBudget:
    """steps_per_epoch: optimizer steps per epoch (for display); total_steps: the optimizer steps the run takes;
    schedule_steps: the learning-rate schedule's length; full_eval_every: steps per reference iteration (a full
    evaluation after each), None without `eval_interval`."""

    steps_per_epoch: int
    total_steps: int
    schedule_steps: int
    full_eval_every: int | None


def step_budget(sampler: TrainSampler, cfg: TrainConfig) -> StepBudget:
    """The run's length by the references' rules (train/lr_schedule.py `reference_step_plan`: their total_steps
    formula, capped by `max_steps` and by the batches the run's iterations yield). Raises HrmkitError when that
    is no step at all."""
    meta, k = sampler.split.metadata, cfg.grad_accum_steps
    plan = reference_step_plan(sampler, epochs=cfg.epochs, eval_interval=cfg.eval_interval,
                               total_groups=meta.total_groups, mean_puzzle_examples=meta.mean_puzzle_examples,
                               grad_accum_steps=k, max_steps=cfg.max_steps)
    return StepBudget(max(1, sampler.batches_per_epoch // k), plan.run_steps, plan.schedule_steps, plan.eval_every)
