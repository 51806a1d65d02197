"""Puzzle types: one `Task` object per type, found by name in a registry.

Built-in: "sudoku", "maze", "arc", "grid" (any integer grid, e.g. imported with `hrm data grid --from-jsonl`)
and "generic" (token rows of no known layout). A new type is one Python file: subclass `Task`, then
`register(MyTask)` (docs/tasks.md), or name the class in an installed package's `hrmkit.tasks` entry point:

    [project.entry-points."hrmkit.tasks"]
    futoshiki = "my_package.futoshiki:FutoshikiTask"

The `hrm` command also loads task files named by `hrm --task-file FILE.py[,FILE.py]` or the environment variable
`HRMKIT_TASK_FILES` (paths separated by os.pathsep), each a Python file that calls `register`.

Datasets, checkpoints and exported folders record their task as `Task.record()` ({"name", "params"});
`from_record` rebuilds it. Datasets built by the reference code carry no task: their three token layouts
(docs/design.md §1) are recognised once, where dataset.json is read (`data.format.infer_task`).

Public API: `Task`, `Augmentation`, `CellStyle`, `register(cls, replace=False)`, `get(name) -> type[Task]`,
`names()`, `load_task_files(paths)`, `resolve(task) -> Task` (a Task, a name or None), `from_record(record, where)`,
`of_metadata(meta)`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hrmkit.errors import HrmkitError
from hrmkit.tasks.base import Augmentation, CellStyle, Check, Task

__all__ = ["Task", "Augmentation", "CellStyle", "Check", "register", "get", "names", "resolve", "from_record",
           "load_task_files",
           "of_metadata", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "hrmkit.tasks"
TASK_FILES_ENV = "HRMKIT_TASK_FILES"
_REGISTRY: dict[str, type[Task]] = {}
_entry_points_loaded = False
_loaded_files: set[str] = set()


def register(cls: type[Task], *, replace: bool = False) -> type[Task]:
    """Make `cls` (a `Task` subclass with its own `name`) available by name; returns `cls`, so it also works
    as a class decorator. HrmkitError for a non-Task, an empty name, or a name taken by another class (unless
    `replace`)."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise HrmkitError(f"tasks.register: expected a subclass of hrmkit.tasks.Task, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name or name != name.strip():
        raise HrmkitError(f"tasks.register: {cls.__name__}.name must be a non-empty name, got {name!r}")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls and not replace and old.__qualname__ != cls.__qualname__:
        raise HrmkitError(f"tasks.register: task name {name!r} is already taken by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def load_task_files(paths: list[str | Path], where: str = "--task-file") -> None:
    """Run each Python file (once per process); the files register their tasks. HrmkitError naming `where`
    and the file when it is missing or fails to run."""
    for p in paths:
        path = Path(p).expanduser().resolve()
        if str(path) in _loaded_files:
            continue
        if not path.is_file() or path.suffix != ".py":
            raise HrmkitError(f"{where} {p}: no such Python file (a task file is a .py file calling "
                              "hrmkit.tasks.register)")
        name = f"hrmkit_task_file_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        _loaded_files.add(str(path))
        try:
            spec.loader.exec_module(module)
        except HrmkitError:
            raise
        except Exception as e:
            _loaded_files.discard(str(path))
            sys.modules.pop(name, None)
            raise HrmkitError(f"{where} {p}: the task file failed to run ({type(e).__name__}: {e})") from e


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    files = [f for f in os.environ.get(TASK_FILES_ENV, "").split(os.pathsep) if f.strip()]
    if files:
        load_task_files(files, TASK_FILES_ENV)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(ep.load())
        except Exception as e:  # a broken plug-in names itself instead of breaking every command
            raise HrmkitError(f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}): {e}") from e


def names() -> list[str]:
    """Registered task names, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get(name: str) -> type[Task]:
    """The task class registered as `name`; HrmkitError listing the known names otherwise."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise HrmkitError(f"unknown task {name!r}; known tasks: {', '.join(names())} (a task defined in a Python "
                          "file: load it with hrm --task-file FILE.py or HRMKIT_TASK_FILES; see docs/tasks.md)")
    return _REGISTRY[name]


def resolve(task: Task | str | None) -> Task:
    """A task object: `task` itself, the registered task of that name with no parameters, or the generic task
    for None."""
    if isinstance(task, Task):
        return task
    if task is None:
        return Task()
    return get(task).from_params(None)


def from_record(record: Any, where: str = "task") -> Task:
    """The task a dataset, checkpoint or export recorded: {"name": str, "params": {...}} (or a bare name, as
    dataset.json files before parameters were recorded). HrmkitError naming `where` for anything else."""
    if isinstance(record, str):
        record = {"name": record}
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise HrmkitError(f"{where}: expected a task record {{\"name\": ..., \"params\": {{...}}}}, got {record!r}")
    try:
        cls = get(record["name"])
    except HrmkitError as e:
        raise HrmkitError(f"{where}: {e}") from None
    return cls.from_params(record.get("params"), where)


def of_metadata(meta: Any, where: str = "dataset.json") -> Task:
    """The task of a dataset (`data.format.DatasetMetadata`: its `task` name and `task_params`); the generic
    task when it records none (reference layouts were recognised when it was read)."""
    if not meta.task:
        return Task()
    return from_record({"name": meta.task, "params": meta.task_params}, f"{where}: field 'task'")


def _register_builtins() -> None:
    from hrmkit.tasks.arc import ArcTask
    from hrmkit.tasks.grid import GridTask
    from hrmkit.tasks.maze import MazeTask
    from hrmkit.tasks.sudoku import SudokuTask

    for cls in (Task, SudokuTask, MazeTask, ArcTask, GridTask):
        register(cls)


_register_builtins()
