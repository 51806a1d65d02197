"""Where training metrics go: the console (a line per tick, or a tqdm bar on a terminal), metrics.jsonl
(always), TensorBoard and Weights & Biases (each behind one option, optional dependencies).

Every sink receives the same records: ticks (`kind: train`), evaluations (`kind: eval`) and events
(`kind: event`: bad steps, rollbacks, early stop). Lines are written unbuffered (flush after each).
"""

from __future__ import annotations

import collections
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from hrmkit.config import LogConfig
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_bytes


def fmt_time(seconds: float | None) -> str:
    """Seconds as HH:MM:SS (`--:--:--` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--:--"
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class RateWindow:
    """Steps per second over the last `window_s` seconds of training time (a sliding window by time).

    `add(t, step)` after each step with the cumulative training time `t` (seconds, evaluation excluded);
    `rate()` is steps/s between the oldest kept point and the newest, None until two points exist.
    """

    def __init__(self, window_s: float = 300.0):
        self.window_s = window_s
        self.points: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, t: float, step: int) -> None:
        self.points.append((t, step))
        while len(self.points) > 2 and t - self.points[1][0] >= self.window_s:
            self.points.popleft()

    def reset(self) -> None:
        self.points.clear()

    def rate(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def eta_s(self, remaining_steps: int) -> float | None:
        r = self.rate()
        return remaining_steps / r if r else None


def use_bar(mode: str, stream: TextIO) -> bool:
    """Whether to draw a progress bar: `bar` (requires tqdm), `lines` never, `auto` on a terminal with tqdm."""
    if mode == "lines":
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        if mode == "bar":
            raise HrmkitError("log.progress=bar needs the optional dependency `tqdm` (pip install tqdm)") from None
        return False
    return mode == "bar" or (hasattr(stream, "isatty") and stream.isatty())


class Console:
    """Tick lines, or a tqdm bar with the lines printed above it."""

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

    def advance(self, to_step: int, postfix: str = "") -> None:
        if self.bar is not None:
            self.bar.update(to_step - self.bar.n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonlSink:
    """Appends one JSON object per line to metrics.jsonl, flushed at once."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, default=str) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records past `step` (written after the checkpoint a run resumes from) and a partial last
    line left by a kill, so a resumed run's curves have no duplicated steps."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and int(rec.get("global_step", 0)) <= step:
            keep.append(line)
    atomic_write_bytes(path, "".join(line + "\n" for line in keep).encode())


def _numeric(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("global_step",)}


class TensorBoardSink:
    """Scalars to RUN/tensorboard (`train/<key>`, `eval/<key>`). Needs the `tensorboard` package."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise HrmkitError("log.tensorboard=true needs the optional dependency `tensorboard` "
                              f"(pip install tensorboard): {e}") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

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

    def write(self, record: dict[str, Any]) -> None:
        prefix = "" if record.get("kind") == "eval" else "train/"
        data = {(k if "/" in k else prefix + k): v for k, v in _numeric(record).items()}
        self.run.log(data, step=int(record.get("global_step", 0)))

    def close(self) -> None:
        self.run.finish()


def check_dependencies(cfg: LogConfig, stream: TextIO | None = None) -> None:
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
    use_bar(cfg.progress, stream or sys.stdout)


class Sinks:
    """Fan-out to metrics.jsonl and the optional sinks of `LogConfig`. Raises HrmkitError when an enabled
    optional sink lacks its dependency."""

    def __init__(self, run_dir: Path, run_id: str, cfg: LogConfig, config: dict[str, Any]):
        self.sinks: list[Any] = [JsonlSink(Path(run_dir) / "metrics.jsonl")]
        try:
            if cfg.tensorboard:
                self.sinks.append(TensorBoardSink(run_dir))
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
