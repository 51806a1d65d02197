"""Where training metrics go: the console (a line per tick, and a tqdm bar on a terminal), metrics.jsonl
(always), TensorBoard and Weights & Biases (each behind one option, optional dependencies).

Every sink receives the same records: ticks (`kind: train`), evaluations (`kind: eval`, with the baselines'
scores beside the model's) and events (`kind: event`: bad steps, rollbacks, early stop). Lines are written
unbuffered (flush after each). TensorBoard gets the run's config as text and hparams when a run starts, and
drops the events past the resumed step when it resumes (`purge_step`); W&B is told that every evaluation
metric is better higher (`EVAL_GOALS`), so its summaries keep the best value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from hrmkit.config import LogConfig
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_bytes, named_oserror


def use_bar(mode: str, stream: TextIO) -> bool:
    """Whether to draw a progress bar: `bar` always, `lines` never, `auto` on a terminal."""
    if mode == "lines":
        return False
    return mode == "bar" or (hasattr(stream, "isatty") and stream.isatty())


class Console:
    """Tick lines, and a tqdm bar of the optimizer steps (lines printed above it) when `use_bar` says so.

    `advance(step)` after every step; `evaluating(text)` shows an evaluation's progress on the bar (None
    clears it)."""

    def __init__(self, mode: str, total: int, initial: int, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.bar = None
        if use_bar(mode, self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=self.stream, unit="step", dynamic_ncols=True)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, to_step: int, postfix: str | None = None) -> None:
        if self.bar is not None:
            self.bar.update(to_step - self.bar.n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)

    def evaluating(self, text: str | None) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text or "", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonlSink:
    """Appends one JSON object per line to metrics.jsonl, flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.file.write(json.dumps(record, default=str) + "\n")
            self.file.flush()
        except OSError as e:  # a full disk: name the file
            raise named_oserror(e, self.path) from None

    def close(self) -> None:
        self.file.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records past `step` (written after the checkpoint a run resumes from) and a partial last
    line left by a kill, so a resumed run's curves have no duplicated steps."""
    if not path.is_file():
        return
    from hrmkit.fsutil import read_jsonl

    keep = [rec for rec in read_jsonl(path) if isinstance(rec, dict) and isinstance(rec.get("global_step", 0), int)
            and rec.get("global_step", 0) <= step]  # also drops lines that are not UTF-8 JSON (named on stderr)
    atomic_write_bytes(path, "".join(json.dumps(rec) + "\n" for rec in keep).encode())


def _numeric(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("global_step",)}


# Evaluation metrics and their direction: all of them are better higher (W&B keeps each one's maximum).
EVAL_GOALS = {"exact_accuracy": "maximize", "token_accuracy": "maximize", "q_halt_accuracy": "maximize",
              "pass@1": "maximize", "pass@2": "maximize", "pass@10": "maximize"}


def _flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"arch.hidden_size": 512, ...}: scalars only (hparams and W&B take flat values)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat_config(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[prefix + k] = "None" if v is None else v
    return out


class TensorBoardSink:
    """Scalars to RUN/tensorboard (`train/<key>`, `eval/<key>`). Needs the `tensorboard` package.

    `start_step` 0 (a new run) writes the config as text and hparams; a resumed run (`start_step` > 0) purges
    the events logged after its checkpoint, so a step never appears twice."""

    def __init__(self, run_dir: Path, config: dict[str, Any], start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise HrmkitError("log.tensorboard=true needs the optional dependency `tensorboard` "
                              f"(pip install tensorboard): {e}") from None
        log_dir = str(Path(run_dir) / "tensorboard")
        if start_step:
            self.writer = SummaryWriter(log_dir=log_dir, purge_step=start_step + 1)
            return
        self.writer = SummaryWriter(log_dir=log_dir)
        import yaml
        from torch.utils.tensorboard.summary import hparams

        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)
        for summary in hparams(_flat_config(config), {f"eval/{k}": 0.0 for k in EVAL_GOALS}):
            self.writer.file_writer.add_summary(summary)

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("global_step", 0))
        prefix = "" if record.get("kind") == "eval" else "train/"
        for k, v in _numeric(record).items():
            self.writer.add_scalar(k if "/" in k else prefix + k, v, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbSink:
    """Weights & Biases run named after the run id (offline by default). Needs the `wandb` package."""

    def __init__(self, run_dir: Path, run_id: str, cfg: LogConfig, config: dict[str, Any]):
        try:
            import wandb
        except ImportError as e:
            raise HrmkitError(f"log.wandb=true needs the optional dependency `wandb` (pip install wandb): {e}") from None
        self.wandb = wandb
        self.run = wandb.init(project=cfg.wandb_project, name=run_id, id=run_id, dir=str(run_dir),
                              mode=cfg.wandb_mode, config=config, resume="allow")
        for prefix in ("eval", "eval_fast"):
            for key, goal in EVAL_GOALS.items():
                self.run.define_metric(f"{prefix}/{key}", summary="max", goal=goal)

    def write(self, record: dict[str, Any]) -> None:
        prefix = "" if record.get("kind") == "eval" else "train/"
        data = {(k if "/" in k else prefix + k): v for k, v in _numeric(record).items()}
        self.run.log(data, step=int(record.get("global_step", 0)))

    def close(self) -> None:
        self.run.finish()


def check_dependencies(cfg: LogConfig) -> None:
    """Raise HrmkitError now (before a run folder exists) when an enabled sink lacks its optional dependency."""
    checks = [(cfg.tensorboard, "torch.utils.tensorboard", "log.tensorboard=true", "tensorboard"),
              (cfg.wandb, "wandb", "log.wandb=true", "wandb")]
    for enabled, module, option, package in checks:
        if enabled:
            try:
                __import__(module)
            except ImportError as e:
                raise HrmkitError(f"{option} needs the optional dependency `{package}` (pip install {package}): "
                                  f"{e}") from None


class Sinks:
    """Fan-out to metrics.jsonl and the optional sinks of `LogConfig`; `start_step` is the step a run starts or
    resumes from. Raises HrmkitError when an enabled optional sink lacks its dependency."""

    def __init__(self, run_dir: Path, run_id: str, cfg: LogConfig, config: dict[str, Any], start_step: int = 0):
        self.sinks: list[Any] = [JsonlSink(Path(run_dir) / "metrics.jsonl")]
        try:
            if cfg.tensorboard:
                self.sinks.append(TensorBoardSink(run_dir, config, start_step))
            if cfg.wandb:
                self.sinks.append(WandbSink(run_dir, run_id, cfg, config))
        except BaseException:
            self.close()
            raise

    def write(self, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.write(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
