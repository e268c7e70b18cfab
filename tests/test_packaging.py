"""The wheel holds the library only: the benchmarks, their fake servers and their corpus stay outside it."""

from __future__ import annotations

import ast
import pkgutil
import tomllib
from pathlib import Path

import pytest

import lattice_qdrant

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(lattice_qdrant.__file__).parent


def _is_benchmark(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("bench") or leaf == "corpus"


def test_the_package_has_no_benchmark_module() -> None:
    found = [m.name for m in pkgutil.walk_packages(lattice_qdrant.__path__, "lattice_qdrant.")]
    assert "lattice_qdrant.store" in found  # the walk does see the package's modules
    assert [name for name in found if _is_benchmark(name)] == [], "benchmarks belong in benchmarks/"


def test_no_package_module_imports_the_benchmarks() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert offenders == [], "the wheel does not ship benchmarks/: the package must not import it"


def test_the_wheel_config_picks_only_the_library() -> None:
    setuptools = pytest.importorskip("setuptools")
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    # what ``[tool.setuptools.packages.find]`` selects (namespace packages are on by default)
    finder = setuptools.find_namespace_packages if find.get("namespaces", True) else setuptools.find_packages
    packages = finder(
        where=str(REPO_ROOT / find.get("where", ["."])[0]),
        include=find.get("include", ["*"]),
        exclude=find.get("exclude", []),
    )
    assert "lattice_qdrant" in packages
    assert [p for p in packages if p.split(".")[0] != "lattice_qdrant"] == [], "only the library is shipped"
    assert (REPO_ROOT / "benchmarks" / "__init__.py").is_file()  # the benchmarks are where this test expects
