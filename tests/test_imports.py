"""The import graph of src/hrmkit: no cycles between modules, and lower layers never import higher ones.

Every `import` and `from ... import` statement counts, at module level or inside a function (a function-level
import is a dependency all the same: it only runs later). The graph is read with `ast`, nothing is imported.
`from hrmkit.pkg import name` points at the submodule `hrmkit.pkg.name` when there is one, at the submodule a
lazy package resolves the name to (`_EXPORTS` of hrmkit/models/__init__.py), else at the package itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Layers, lowest first: a module may import its own layer and lower ones only. Modules not listed here are the
# base (errors, limits, fsutil, proc, device, halting, config), which import no layer; `eval` sits below `train`
# (training evaluates as it goes; evaluation never trains). `tasks` shares the data layer: a task wraps its
# builder's token layout (tasks.sudoku reads data.sudoku) and the renderer and generic builders ask the task.
LAYERS = {
    "data": 1, "tasks": 1, "models": 2, "loading": 3, "presets": 4, "eval": 5, "train": 6, "deploy": 7,
    "bench": 8, "cli": 9, "hrmkit": 9,  # hrmkit/__init__.py: `hrmkit.load` is the deploy API
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in (SRC / "hrmkit").rglob("*.py")}
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def _lazy_exports(package: str) -> dict[str, str]:
    for node in ast.parse(MODULES[package].read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imports_of(module: str) -> list[tuple[str, int]]:
    """(imported hrmkit module, line) for every import statement of `module`, function-level ones included."""
    base = module if module in PACKAGES else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "hrmkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")[:len(base.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hrmkit":
                continue
            lazy = _lazy_exports(target) if target in PACKAGES else {}
            for a in node.names:
                if target == "hrmkit" and a.name == "__version__":
                    continue  # a constant of the root package, not the deploy API it re-exports
                if f"{target}.{a.name}" in MODULES:
                    out.append((f"{target}.{a.name}", node.lineno))
                elif a.name in lazy:
                    out.append((f"{target}.{lazy[a.name]}", node.lineno))
                else:
                    out.append((target, node.lineno))
    return [(m, line) for m, line in out if m != module]


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "hrmkit"
    return name, LAYERS.get(name, 0)


def _is_cli(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1]
    return leaf == "cli" or leaf.endswith("_cli")


def find_cycle() -> list[str] | None:
    """One import cycle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for dep, _ in GRAPH[m]:
            if dep not in GRAPH:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_every_import_resolves_to_a_module():
    unknown = [f"{m}:{line} imports {dep}" for m, deps in GRAPH.items() for dep, line in deps if dep not in MODULES]
    assert not unknown, "\n".join(unknown)


def test_no_import_cycles():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {next(line for dep, line in GRAPH[a] if dep == b)})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for m, deps in GRAPH.items():
        (name, rank), cli = _layer(m), _is_cli(m)
        for dep, line in deps:
            dep_name, dep_rank = _layer(dep)
            # A layer's own `cli` module registers its command for `hrm`: it sits above every layer.
            if dep_rank > rank and not cli:
                wrong.append(f"{m}:{line} ({name}) imports {dep} ({dep_name})")
            if _is_cli(dep) and not cli:
                wrong.append(f"{m}:{line} imports the command module {dep}")
    assert not wrong, "\n".join(wrong)


def test_the_layering_rules_the_code_relies_on():
    """The rules spelled out, so that a change of LAYERS above cannot quietly drop one."""
    assert LAYERS["data"] < LAYERS["models"] < LAYERS["eval"] < LAYERS["train"] < LAYERS["deploy"]
    assert all(LAYERS[k] < LAYERS["deploy"] for k in ("data", "models", "loading", "presets", "eval", "train"))


def test_the_checker_sees_function_level_imports_and_cycles(monkeypatch):
    """A cycle made only of a function-level import is found (the graph is patched, nothing is imported)."""
    inner = [dep for dep, _ in GRAPH["hrmkit.eval.evaluate"]]
    assert "hrmkit.eval.tta" in inner  # imported inside evaluate_split only
    monkeypatch.setitem(GRAPH, "hrmkit.eval.tta", GRAPH["hrmkit.eval.tta"] + [("hrmkit.eval.evaluate", 1)])
    cycle = find_cycle()
    assert cycle is not None and {"hrmkit.eval.evaluate", "hrmkit.eval.tta"} <= set(cycle)


def test_the_command_line_starts_without_pytorch():
    """`hrm --help` and `hrm data ...` build the whole parser; nothing on that path may import torch (1.7 s on
    a 2-core CPU), only the commands that run a model do, when they run."""
    import subprocess
    import sys

    code = "import sys, hrmkit.cli; hrmkit.cli.build_parser(); print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
