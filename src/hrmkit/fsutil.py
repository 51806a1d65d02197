"""Atomic file and folder writes: write under a temporary name in the same folder, fsync, rename.

A reader never sees a partial file, and a crash leaves either the old content or the new one.

Temporary names say whose they are: `.NAME.HOST-PID.RANDOM.tmp`. A writer killed mid-way (SIGKILL, or a
SIGTERM with no handler) cannot clean up, so `atomic_directory` sweeps the leftovers of dead writers on this
host from the folder it writes into (`sweep_leftovers`) before it starts. An OSError that names no file (a full
disk during `write`: "No space left on device") is re-raised naming the file or folder being written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from hrmkit.errors import HrmkitError
from hrmkit.proc import pid_alive

# .NAME.HOST-PID.RANDOM.tmp (HOST without dots; RANDOM from tempfile: letters, digits, underscore)
_LEFTOVER = re.compile(r"^\..+\.(?P<host>[^./]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("/", "_") or "host"


def temporary_prefix(name: str) -> str:
    """`.NAME.HOST-PID.`: the start of this process's temporary names for `name` (module docstring)."""
    return f".{name}.{_host()}-{os.getpid()}."


def sweep_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders in `folder` left by writers that died on this host (their PID no
    longer runs); returns what was removed. Names of live processes, other hosts or other programs are kept."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _LEFTOVER.match(p.name)
        if m is None or m["host"] != _host() or pid_alive(int(m["pid"])):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def named_oserror(e: OSError, path: str | os.PathLike) -> OSError:
    """`e` itself when it names a file; else the same error naming `path` (a full disk raises ENOSPC from
    `write` with no file name, and "?: No space left on device" helps nobody)."""
    if e.filename is not None:
        return e
    named = OSError(e.errno, e.strerror or str(e), str(path))
    named.__cause__ = e
    return named


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, fsync, os.replace). Raises OSError
    naming `path` (or the file at fault)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_oserror(e, path) from None
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success rename it to `final`, on any error delete it. First
    removes the leftovers of dead writers beside `final` (`sweep_leftovers`, each named on stderr).

    Raises FileExistsError if `final` exists and `overwrite` is False; an OSError raised in the block that
    names no file is re-raised naming `final`.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    for p in sweep_leftovers(final.parent):
        print(f"removed {p}, left by an interrupted write", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=temporary_prefix(final.name), suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise _in_final(named_oserror(e, final), tmp, final) from None
        raise


def _in_final(e: OSError, tmp: Path, final: Path) -> OSError:
    """`e` naming the file by where it was going (`final/...`), not by the temporary folder that is gone."""
    name = str(e.filename)
    if name == str(tmp) or name.startswith(str(tmp) + os.sep):
        moved = OSError(e.errno, e.strerror or str(e), str(final) + name[len(str(tmp)):])
        moved.__cause__ = e
        return moved
    return e


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: str | os.PathLike, warn=None) -> list[Any]:
    """The JSON values of a JSON-lines file (metrics.jsonl), one a line, blank lines skipped.

    A line that is not UTF-8 or not JSON (a torn write, a stray byte) is skipped and reported once through
    `warn` (a callable taking a message; default: stderr) with the file, how many lines and the first line's
    number, so that one bad line never stops a command that only reads the log. Raises OSError when the file
    cannot be read."""
    out, bad = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw.decode("utf-8")))
            except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
                bad.append(number)
    if bad:
        message = (f"{path}: skipped {len(bad)} line{'s' * (len(bad) != 1)} that are not UTF-8 JSON "
                   f"(first: line {bad[0]})")
        (warn or (lambda m: print(f"hrm: warning: {m}", file=sys.stderr, flush=True)))(message)
    return out


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; HrmkitError naming the file (and line/column) when unreadable or invalid."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise HrmkitError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise HrmkitError(f"{path}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HrmkitError(f"{path}: cannot read JSON ({e})") from None


def read_json_object_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object (dict) in the file at `path`, or None when the file is missing, unreadable, not JSON or
    holds another JSON value: for files another process may be writing or may never have written (status.json,
    lock files, a run's metrics.json), where absence is an answer, not an error. `read_json` raises instead."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError both are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None
