"""The run context: a run's folder, its writer lock, the status.json heartbeat, the metrics sinks, the console
and the stop flag, as one context manager, so that nothing leaks when a run fails at any point.

    with RunContext(cfg, dist, device, resume_dir) as run:   # claims the folder: lock (new runs: a new folder)
        ...restore the state from a checkpoint...             # nothing in the folder has changed so far
        run.open(state, total_steps)                          # config.yaml, status.json, sinks, console
        ...train...

Leaving the block always releases the lock and closes the sinks; an exception marks the run `crashed` (or
`interrupted` for a second SIGINT/SIGTERM) in status.json, and a new run folder that was never opened is
removed again. Only rank 0 touches files; every method is safe to call on every rank.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from hrmkit.config import TrainConfig
from hrmkit.errors import HrmkitError
from hrmkit.fsutil import atomic_write_bytes
from hrmkit.train import checkpoint as ckpt
from hrmkit.train.distributed import Dist
from hrmkit.train.run_folders import RunLock, read_status
from hrmkit.train.sinks import Console, Sinks, truncate_metrics
from hrmkit.train.status import StatusFile, new_run_id


class SecondSignal(KeyboardInterrupt):
    """A second SIGINT/SIGTERM while the loop finishes its step: stop now, without a checkpoint. `signum`: the
    signal (the exit status is 128 + signum, as for the first one)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """Set by SIGINT/SIGTERM (or `request`); the loop finishes its step, checkpoints and stops. A second signal
    raises SecondSignal (stop now, no checkpoint)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise SecondSignal(signum)
        self.signum = signum
        print(f"received {signal.Signals(signum).name}: finishing this step, then checkpointing", flush=True)

    def request(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()


class RunContext:
    """Module docstring. After `__enter__`: `run_dir`, `run_id`; after `open`: `status`, `sinks`, `console`."""

    def __init__(self, cfg: TrainConfig, dist: Dist, device: torch.device, resume_dir: str | None = None):
        self.cfg, self.dist, self.device, self.resume_dir = cfg, dist, device, resume_dir
        self.main = dist.is_main
        self.run_dir: Path = Path(resume_dir) if resume_dir is not None else Path(cfg.out_dir)
        self.run_id = ""
        self.lock: RunLock | None = None
        self.created = False
        self.status: StatusFile | None = None
        self.sinks: Sinks | None = None
        self.console: Console | None = None
        self.stop = StopFlag()
        self._eval_kind = ""

    # --- claim and release ------------------------------------------------------------------------------------
    def __enter__(self) -> "RunContext":
        try:
            self.run_dir, self.run_id = self.dist.on_main(self._claim)
        except BaseException:
            self._release()
            raise
        return self

    def _claim(self) -> tuple[Path, str]:
        if self.resume_dir is not None:
            run_dir = Path(self.resume_dir)
            run_id = (read_status(run_dir / "status.json", strict=False) or {}).get("run_id") or run_dir.name
        else:
            run_dir, run_id = self._new_folder()
        self.lock = RunLock(run_dir).acquire()
        if self.lock.took_over:
            old = self.lock.took_over
            print(f"[{run_id}] taking over the stale lock of pid {old.get('pid')} (started {old.get('started_at')}), "
                  "which is no longer running", flush=True)
        return run_dir, run_id

    def _new_folder(self) -> tuple[Path, str]:
        out = Path(self.cfg.out_dir)
        for _ in range(100):  # run ids carry a random suffix: a collision just draws another one
            run_id = new_run_id()
            try:
                (out / run_id).mkdir(parents=True)
            except FileExistsError:
                continue
            except OSError as e:
                raise HrmkitError(f"out_dir={self.cfg.out_dir!r}: cannot create the run folder {out / run_id} "
                                  f"({e.strerror})") from None
            self.created = True
            return out / run_id, run_id
        raise HrmkitError(f"out_dir={self.cfg.out_dir!r}: no free run id after 100 tries")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self.status is not None:
            if isinstance(exc, KeyboardInterrupt):
                fields = {"state": "interrupted", "stop_reason": "second signal (no checkpoint)"}
            else:
                fields = {"state": "crashed", "error": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):  # a full disk must not hide the original error
                self.status.update(phase=None, **fields)
        self._release()

    def _release(self) -> None:
        self.stop.restore()
        for closing in (self.console, self.sinks):
            if closing is not None:
                with contextlib.suppress(OSError):
                    closing.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.created and self.status is None:  # a new run that never started leaves nothing behind
            with contextlib.suppress(OSError):
                os.rmdir(self.run_dir)

    # --- open -------------------------------------------------------------------------------------------------
    def open(self, state: Any, total_steps: int, task: str | None) -> None:
        """Start writing the run folder: config.yaml (atomically), leftovers of interrupted writes removed,
        metrics.jsonl cut back to the state's step, status.json `running`, sinks, console; signal handlers."""
        cfg = self.cfg

        def start() -> None:
            atomic_write_bytes(self.run_dir / "config.yaml", self.config_yaml())
            for leftover in ckpt.remove_temporary_files(self.run_dir):
                print(f"[{self.run_id}] removed {leftover.name}, left by an interrupted write", flush=True)
            truncate_metrics(self.run_dir / "metrics.jsonl", state.step)

        self.dist.on_main(start)
        self.status = StatusFile(self.run_dir, self.run_id, total_steps, cfg.status_interval_s, self.device,
                                 enabled=self.main, task=task, preset=cfg.preset, folder=str(self.run_dir),
                                 world_size=self.dist.world_size, global_batch_size=int(cfg.global_batch_size),
                                 grad_accum_steps=cfg.grad_accum_steps)
        self.status.update(state="running", phase="training", global_step=state.step, epoch=state.sampler.epoch,
                           best=state.evals.public_best(), last_eval=state.evals.last_eval,
                           guards=state.guard.state_dict())
        if self.main:
            self.sinks = Sinks(self.run_dir, self.run_id, cfg.log, cfg.model_dump(), start_step=state.step)
            self.console = Console(cfg.log.progress, total_steps, state.step)
        self.stop.install()

    def config_yaml(self) -> bytes:
        return yaml.safe_dump(self.cfg.model_dump(), sort_keys=False).encode()

    # --- output -----------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A console line (rank 0)."""
        if self.main:
            self.console.line(text) if self.console is not None else print(text, flush=True)

    def write(self, record: dict[str, Any]) -> None:
        """A record to every sink (rank 0)."""
        if self.sinks is not None:
            self.sinks.write(record)

    def event(self, step: int, name: str, text: str, guards: dict[str, Any]) -> None:
        """A `kind: event` record (bad step, rollback, early stop) and its console line."""
        self.write({"run_id": self.run_id, "global_step": step, "kind": "event", "event": name, "message": text,
                    **{f"guards/{k}": v for k, v in guards.items()}})
        self.say(f"[{self.run_id}] step {step}: {text}")

    @contextlib.contextmanager
    def evaluating(self, kind: str) -> Iterator[None]:
        """Within the block the progress bar says which evaluation runs (`eval_progress` adds how far)."""
        self._eval_kind = kind
        if self.console is not None:
            self.console.evaluating(f"evaluating ({kind})")
        try:
            yield
        finally:
            if self.console is not None:
                self.console.evaluating(None)

    def eval_progress(self, done: int, total: int) -> None:
        if self.console is not None:
            self.console.evaluating(f"evaluating ({self._eval_kind}) {done}/{total}")
