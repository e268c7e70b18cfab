"""The package's shape: its import graph has no circle, each layer imports only the layers below it, and
the pure core does no I/O.

The graph counts every import: at module level, inside functions (a lazy import hides a circle from the
interpreter, not from a reader) and under ``TYPE_CHECKING``. Built with ``ast`` from the source files, so
nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lattice_qdrant

PACKAGE = Path(lattice_qdrant.__file__).parent
NAME = "lattice_qdrant"


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package by dotted name (a subpackage by its own name, for its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([package, *parts])] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules an import statement in ``module`` loads.

    ``from x import name`` loads ``x.name`` when that is a module, and ``x`` itself for any other name;
    parent packages, already being imported by then, are not counted.
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    found: set[str] = set()
    for alias in node.names:
        submodule = f"{origin}.{alias.name}"
        if submodule in known:
            found.add(submodule)
        elif origin in known:
            found.add(origin)
    return found


def import_graph(root: Path, package: str = NAME) -> dict[str, set[str]]:
    """``module -> modules it imports`` over the package, every import counted: at module level, inside
    functions and under ``TYPE_CHECKING``."""
    modules = _modules(root, package)
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= _imported(node, name, is_package, known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph(PACKAGE)
    assert graph[f"{NAME}.client"] >= {f"{NAME}.coordinator", f"{NAME}.store"}  # the graph sees imports
    assert cycles(graph) == [], "import circle(s): each module must only import the layers below it"


#: The layers, bottom up (README "How it is built"); a module may import its own layer and those below.
LAYERS: list[set[str]] = [
    # the pure core: decisions without I/O
    {
        "errors",
        "spec",
        "options",
        "state",
        "plan",
        "routing",
        "gates",
        "ranking",
        "kernels",
        "metrics",
        "report",
        "surface",
        "calibration",
    },
    # the embedders, and the store: the only package that calls qdrant-client
    {"embedders", "store", "store.base", "store.protocol", "store.control", "store.translate", "store.server"}
    | {"store.local", "inference"},  # inference: the embedders' ONNX Runtime and OpenVINO backends
    {"registry", "backups", "bluegreen", "traffic", "testing"},  # store operations, and the store fakes
    {"strategies", "strategies.base", "strategies.in_place", "strategies.blue_green", "strategies.reembed"},
    {"coordinator"},  # Migration: the lifecycle, applied through the strategy
    {"backfill", "mixed", "verify", "compare", "probe"},  # executors over the coordinator and the strategies
    {"client", "aclient"},  # the wrapping clients (sync, and its async twin) execute the routing decisions
    {"config", "commands"},
    {"cli", "cli_reference", "__main__", ""},
]
PURE = LAYERS[0]


def _layer(module: str) -> int:
    short = module.removeprefix(NAME).removeprefix(".")
    found = [i for i, layer in enumerate(LAYERS) if short in layer]
    assert found, f"{module} belongs to no layer: add it to LAYERS (and to the README's diagram)"
    return found[0]


def test_each_module_imports_only_its_layer_and_those_below() -> None:
    upward = [
        f"{a} -> {b}"
        for a, targets in import_graph(PACKAGE).items()
        for b in sorted(targets)
        if _layer(b) > _layer(a)
    ]
    assert upward == []


def test_the_pure_core_uses_qdrant_client_for_its_data_classes_only() -> None:
    """The decisions (routing, ranking, gates, the state machine) take what was read and return data: no
    store, no client, no request."""
    offenders = []
    for name in sorted(PURE):
        path = PACKAGE / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qdrant_client"):
                allowed = node.module in ("qdrant_client", "qdrant_client.http") and all(
                    alias.name == "models" for alias in node.names
                )
                allowed = allowed or node.module in ("qdrant_client.models", "qdrant_client.http.models")
                if not allowed:
                    offenders.append(f"{name}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{name}: import {a.name}" for a in node.names if a.name.startswith("qdrant_client")
                ]
    assert offenders == []


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.mark.parametrize(
    "b",
    [
        "from . import a\n",
        "def f():\n    from .a import thing\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import Thing\n",
        "import pkg.sub.c\n",
    ],
    ids=["module level", "inside a function", "under TYPE_CHECKING", "through a subpackage"],
)
def test_the_checker_sees_every_kind_of_import(tmp_path: Path, b: str) -> None:
    files = {"__init__.py": "", "a.py": "from .b import x\n", "b.py": b}
    if "sub" in b:
        files |= {"sub/__init__.py": "", "sub/c.py": "from ..a import y\n"}
    found = cycles(import_graph(_write(tmp_path, files), "pkg"))
    assert found and "pkg.a" in found[0] and "pkg.b" in found[0]


def test_the_checker_finds_no_circle_in_a_layered_package(tmp_path: Path) -> None:
    files = {
        "__init__.py": "from .top import run\n",
        "core.py": "",
        "mid.py": "from . import core\n",
        "top.py": "from pkg.mid import core\nfrom pkg import mid\n",
    }
    graph = import_graph(_write(tmp_path, files), "pkg")
    assert graph["pkg.top"] == {"pkg.mid"} and graph["pkg"] == {"pkg.top"}
    assert cycles(graph) == []
