"""Run folders: the writer lock, liveness of the process behind a run, the observed state, and `hrm runs`.

The lock `RUN/run.lock` holds {pid, host, started_at} of the process that writes the run and that process
keeps an exclusive `flock` on it while it runs. The kernel drops a flock when its process dies (SIGKILL
included), so on one host a free flock means the previous writer is gone: its lock is stale and is taken over.
A lock held by another host cannot be checked from here and is never taken over (remove the file by hand).

Observed states (`observe_state`): running, finished, interrupted, crashed, stale (and starting).
`crashed`: the status says running but the writer process is dead on this host (or the loop recorded a
crash); `stale`: the status says running but its heartbeat (`updated_at`) is older than 3 status intervals, or
dated more than 3 intervals in the future.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hrmkit.errors import HrmkitError
from hrmkit.fsutil import read_json_object_or_none
from hrmkit.proc import pid_alive  # noqa: F401 (re-exported: observe_state and the lock use it)

LOCK_NAME = "run.lock"
STALE_INTERVALS = 3
LIVE_STATES = ("starting", "running")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


_NUMBER = (int, float)
# status.json fields that are read back (hrm status, hrm runs, --resume auto) and their types; None is allowed
# for every field except `state`.
STATUS_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "pid": (int,), "host": (str,), "state": (str,), "phase": (str,), "global_step": (int,),
    "total_steps": (int,), "epoch": (int,), "samples_per_s": _NUMBER, "eta_s": _NUMBER, "best": (dict,),
    "last_eval": (dict,), "last_checkpoint": (str,), "memory": (dict,), "status_interval_s": _NUMBER,
    "updated_at": (str,), "task": (str,), "preset": (str,), "stop_reason": (str,), "error": (str,),
    "guards": (dict,), "world_size": (int,),
}
BEST_FIELDS: dict[str, tuple[type, ...]] = {"metric": (str,), "value": _NUMBER, "step": (int,), "checkpoint": (str,)}


def _check_types(obj: dict[str, Any], spec: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in spec.items():
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
            names = " or ".join(t.__name__ for t in types)
            raise HrmkitError(f"{where}: field {key!r} must be {names}, got {v!r}")


def read_status(path: Path, strict: bool = True) -> dict[str, Any] | None:
    """A run's status.json with its field types checked (STATUS_FIELDS; `best` too); None when missing.
    Raises HrmkitError naming the file, field and value when it is unreadable or a field has the wrong type;
    with `strict=False` returns None instead."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HrmkitError(f"{path}: not readable JSON ({e})") from None
        if not isinstance(status, dict):
            raise HrmkitError(f"{path}: expected a JSON object, got {type(status).__name__}")
        _check_types(status, STATUS_FIELDS, str(path))
        if status.get("best") is not None:
            _check_types(status["best"], BEST_FIELDS, f"{path}: field 'best'")
        if "state" in status and status["state"] is None:
            raise HrmkitError(f"{path}: field 'state' must be str, got None")
    except HrmkitError:
        if strict:
            raise
        return None
    return status


class RunLock:
    """Exclusive writer lock of one run folder (module docstring). `acquire()` raises HrmkitError when another
    live process holds it; `release()` removes it. Use as a context manager or call both."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None  # the stale holder's info when we replaced it

    def acquire(self) -> "RunLock":
        host = socket.gethostname()
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                info = read_json_object_or_none(self.path) or {}
                raise HrmkitError(
                    f"{self.path.parent}: run is being written by pid {info.get('pid')} on {info.get('host')} "
                    f"since {info.get('started_at')}; stop that process first (or wait for it to finish)")
            try:  # the file we locked may have been removed and recreated by its previous owner meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = read_json_object_or_none(self.path)
            if old and old.get("host") not in (None, host):
                os.close(fd)
                raise HrmkitError(f"{self.path}: held by pid {old.get('pid')} on host {old.get('host')}, which "
                                  f"cannot be checked from {host}; delete {self.path} if that run is gone")
            if old and old.get("pid") != os.getpid():
                self.took_over = old
            info = {"pid": os.getpid(), "host": host, "started_at": utc_now(), "started_at_s": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise HrmkitError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def heartbeat_age_s(status: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds since the status was last written (its `updated_at`), None when unknown."""
    t = _parse_time(status.get("updated_at"))
    return None if t is None else (now or time.time()) - t


def observe_state(run_dir: Path, status: dict[str, Any] | None = None, now: float | None = None) -> str:
    """The state of a run as seen from outside (module docstring); `unknown` without a status.json. Raises
    HrmkitError when status.json has fields of the wrong type (`read_status`)."""
    run_dir = Path(run_dir)
    status = status if status is not None else read_status(run_dir / "status.json")
    if status is None:
        return "unknown"
    state = status.get("state", "unknown")
    if state not in LIVE_STATES:
        return state
    holder = read_json_object_or_none(run_dir / LOCK_NAME)
    if not holder or not isinstance(holder.get("pid"), int) or not isinstance(holder.get("started_at_s", 0), _NUMBER):
        holder = {"pid": status.get("pid"), "host": status.get("host")}  # no lock, or a foreign one
    if holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid"), holder.get("started_at_s")):
        return "crashed"
    age = heartbeat_age_s(status, now)
    interval = float(status.get("status_interval_s") or 60.0)
    # a heartbeat dated in the future (a skewed clock, a copied or edited file) proves nothing about the writer
    if age is not None and abs(age) > STALE_INTERVALS * interval:
        return "stale"
    return state


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's config.yaml (the base of `--resume`). Raises HrmkitError naming the file when it is missing,
    unreadable, not plain YAML (tags are refused) or not a mapping of keys."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise HrmkitError(f"--resume {run_dir}: {path} not found (is this a run folder?)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise HrmkitError(f"{path}: cannot read the run's config ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or not cfg:
        got = "an empty file" if cfg is None else repr(cfg)[:80]
        raise HrmkitError(f"{path}: expected a mapping of configuration keys, got {got}")
    return cfg


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        return cfg if isinstance(cfg, dict) else {}
    except Exception:  # a half-written or foreign file: the listing shows blanks
        return {}


def run_summary(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    """One row of `hrm runs`: id, task, preset, step, total, best, state, updated_at, heartbeat_age_s; a run whose
    status.json is unreadable or has fields of the wrong type gets state `invalid` and its `problem`."""
    run_dir = Path(run_dir)
    try:
        status = read_status(run_dir / "status.json") or {}
    except HrmkitError as e:
        return {"run_id": run_dir.name, "path": str(run_dir), "task": "?", "preset": "-", "global_step": None,
                "total_steps": None, "best": None, "state": "invalid", "updated_at": None, "heartbeat_age_s": None,
                "problem": str(e)}
    cfg = _config(run_dir)
    return {
        "run_id": status.get("run_id", run_dir.name), "path": str(run_dir),
        "task": status.get("task") or "?", "preset": status.get("preset") or cfg.get("preset") or "-",
        "global_step": status.get("global_step"), "total_steps": status.get("total_steps"),
        "best": status.get("best"), "state": observe_state(run_dir, status if status else None, now),
        "updated_at": status.get("updated_at"), "heartbeat_age_s": heartbeat_age_s(status, now),
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Summaries of the run folders under `root` (folders with a status.json or config.yaml), oldest first.

    Raises HrmkitError when `root` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise HrmkitError(f"{root}: no such runs folder")
    dirs = [d for d in root.iterdir() if d.is_dir() and ((d / "status.json").is_file() or (d / "config.yaml").is_file())]
    return [run_summary(d) for d in sorted(dirs, key=lambda d: d.name)]


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The `hrm runs` table."""
    head = ("RUN", "TASK", "PRESET", "STEP", "BEST", "STATE", "UPDATED")
    lines = [head]
    for r in rows:
        b = r["best"]
        best = f"{b.get('metric')} {b.get('value'):.4f} @{b.get('step')}" if b and b.get("value") is not None else "-"
        step = f"{r['global_step'] if r['global_step'] is not None else '?'}/{r['total_steps'] or '?'}"
        lines.append((r["run_id"], str(r["task"]), str(r["preset"]), step, best, r["state"], r["updated_at"] or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def find_resumable(root: Path, preset: str | None = None,
                   warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest run under `root` that can be resumed (`--resume auto`): not finished and no live writer
    (interrupted, crashed or stale-with-dead-writer). With `preset`, only runs of that preset. None if none.
    A run whose status.json is unreadable or has fields of the wrong type is skipped, as `hrm runs` lists it
    `invalid`: `warn` (default: a line on stderr) gets the problem; one damaged sibling must not block the rest."""
    root = Path(root)
    if not root.is_dir():
        return None
    warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
    for d in sorted((d for d in root.iterdir() if (d / "config.yaml").is_file()), key=lambda d: d.name, reverse=True):
        try:
            state = observe_state(d)
        except HrmkitError as e:
            warn(f"--resume auto: warning: skipping {d}: {e}")
            continue
        if state in ("finished", "running", "starting", "stale"):
            continue  # stale with a live writer: hung, not ours to take
        if preset is not None and _config(d).get("preset") != preset:
            continue
        return d
    return None

