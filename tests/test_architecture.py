"""The package's shape: the layers of pyproject.toml's import-linter contracts (the package's, and the run life
cycle's inside ``subprobe/runs``), held by every import (imports inside functions included), no import cycle, and
each run-directory file name spelt in one module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "subprobe"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every ``subprobe`` module ``name`` imports, at the top or inside a function (``from pkg import mod``
    counts as an import of ``pkg.mod``; the root package's own attributes, e.g. ``__version__``, as ``subprobe``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "subprobe")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "subprobe":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


#: The contracts this file mirrors: id -> the package whose children they order.
CONTRACTS = {"layers": "subprobe", "runs": "subprobe.runs"}


def layers(contract_id: str = "layers") -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == contract_id]
    assert contract["containers"] == [CONTRACTS[contract_id]]
    return [[part.strip() for part in line.split("|")] for line in contract["layers"]]


def component(module: str, container: str = "subprobe") -> str | None:
    """``subprobe.data.batching`` -> ``data`` (the child of ``container`` a module is in); None for the container
    itself (the root package: the lazy public facade) and for modules outside it."""
    if not module.startswith(container + "."):
        return None
    return module[len(container) + 1:].split(".")[0]


@pytest.mark.parametrize("contract", CONTRACTS)
def test_every_module_is_in_a_layer(contract):
    container = CONTRACTS[contract]
    placed = {c for layer in layers(contract) for c in layer}
    present = {component(m, container) for m in MODULES} - {None}
    assert present - placed == set(), "add these modules to the layers of pyproject.toml"
    assert placed - present == set(), "the layers of pyproject.toml name modules that do not exist"


@pytest.mark.parametrize("contract", CONTRACTS)
def test_imports_go_down_the_layers(contract):
    container = CONTRACTS[contract]
    level = {c: i for i, layer in enumerate(layers(contract)) for c in layer}
    wrong = []
    for importer, imported in sorted((a, b) for a, bs in GRAPH.items() for b in bs):
        upper, lower = component(importer, container), component(imported, container)
        if upper is None or lower is None or upper == lower:
            continue
        if level[upper] >= level[lower]:  # same level: independent siblings
            wrong.append(f"{importer} -> {imported}")
    assert wrong == []


def test_no_import_cycle():
    """Tarjan's strongly connected components over modules: every one has a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_the_graph_sees_imports_inside_functions():
    assert "subprobe.training.trainer" in GRAPH["subprobe.api"]  # imported inside train_probe
    assert "subprobe.runs.resume" not in GRAPH["subprobe.cli"] and "subprobe.api" not in GRAPH["subprobe.runs.resume"]
    assert "subprobe.runs.rebuild" in GRAPH["subprobe.runs.loaded"]  # imported inside load_run


@pytest.mark.parametrize(
    "name",
    ["config.yaml", "env.json", "vocab.json", "log.jsonl", "masks.safetensors", "head.safetensors",
     "adapter.safetensors", "checkpoint.pt", "metrics.json", "error.txt", "predictions-"],
)
def test_run_directory_file_names_are_spelt_in_runs_py(name):
    """Outside subprobe/runs/directory.py a run's file names appear only in prose (docstrings, comments, messages)."""
    spelt = defaultdict(list)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == name:  # a path literal, not prose around it
                spelt[module].append(node.lineno)
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if f'"{name}"' in text or f"'{name}'" in text:
            spelt[str(path.relative_to(ROOT))].append(0)
    assert set(spelt) <= {"subprobe.runs.directory"}, dict(spelt)
