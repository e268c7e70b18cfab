"""The worker image's Dockerfile builds its venv as scripts/_venv.sh builds .venv, and runs the CLI.

No image is built here (there is no Docker engine): these tests read the Dockerfile and check it against the
venv script, pyproject.toml and the README's Kubernetes Job, which names the image.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
VENV_SCRIPT = (REPO_ROOT / "scripts" / "_venv.sh").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
README = (REPO_ROOT / "README.md").read_text()


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            out.append((instruction.upper(), arguments.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)


def _pip_installs() -> list[str]:
    return [a for i, a in _instructions() if i == "RUN" and "-m pip install" in a]


def test_torch_is_pinned_to_the_venv_script_s_version_and_installed_first() -> None:
    pinned = re.search(r'"torch==\$\{LATTICE_TORCH_VERSION:-([^}]+)\}"', VENV_SCRIPT)
    assert pinned, "scripts/_venv.sh no longer pins torch as this test expects"
    assert _args()["TORCH_VERSION"] == pinned.group(1)
    installs = _pip_installs()
    assert installs[0].endswith("--upgrade pip")  # as the venv script does, first
    assert '"torch==${TORCH_VERSION}"' in installs[1] and '--index-url "${TORCH_INDEX_URL}"' in installs[1]
    assert installs[2] == '/opt/venv/bin/python -m pip install ".[${EXTRAS}]"'  # the package, after torch
    assert len(installs) == 3
    # no default index: a build without one would take the default index's torch (CUDA, several GB)
    assert "TORCH_INDEX_URL" not in _args()
    assert any(i == "ARG" and a == "TORCH_INDEX_URL" for i, a in _instructions())
    guard = [a for i, a in _instructions() if i == "RUN" and "TORCH_INDEX_URL" in a and "pip" not in a]
    assert guard and guard[0].startswith('test -n "${TORCH_INDEX_URL}"'), guard


def test_the_extras_exist_and_bring_the_model_and_a_backend() -> None:
    extras = _args()["EXTRAS"].split(",")
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) <= set(declared), set(extras) - set(declared)
    assert {"minilm", "onnx"} <= set(extras)
    assert "dev" not in extras  # a worker needs no test tools


def test_the_build_copies_what_the_package_needs() -> None:
    copied = " ".join(a for i, a in _instructions() if i == "COPY")
    assert "pyproject.toml" in copied and "README.md" in copied  # the readme is the package's metadata
    assert PYPROJECT["project"]["readme"] == "README.md"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(pattern.rstrip("*") in copied for pattern in include)
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and {"!pyproject.toml", "!README.md", "!lattice_qdrant/"} <= set(ignored)


def test_the_entrypoint_is_the_cli_s_console_script() -> None:
    (entrypoint,) = [a for i, a in _instructions() if i == "ENTRYPOINT"]
    assert entrypoint == '["lattice-qdrant"]'
    target = PYPROJECT["project"]["scripts"]["lattice-qdrant"]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_image_runs_offline_as_the_venv_script_does() -> None:
    env = " ".join(a for i, a in _instructions() if i == "ENV")
    for variable in re.findall(r"^export (HF_\w+|TRANSFORMERS_\w+)=(\S+)", VENV_SCRIPT, re.M):
        assert "=".join(variable) in env, variable
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "LATTICE_QDRANT_CACHE_DIR=/cache" in env  # exports outside the venv, in a folder the user owns
    assert ("USER", "10001") in _instructions()


def test_the_readme_s_job_runs_the_image_the_dockerfile_builds() -> None:
    version = PYPROJECT["project"]["version"]
    section = README[README.index("### Scale-out") :].split("\n## ", 1)[0]
    assert f"docker build -t lattice-qdrant:{version} --build-arg TORCH_INDEX_URL=" in section
    assert f"docker build -t lattice-qdrant:{version} --build-arg TORCH_INDEX_URL=" in DOCKERFILE
    job = section.split("```yaml", 1)[1].split("```", 1)[0]
    assert re.findall(r"^\s+image: (\S+)$", job, re.M) == [f"registry.example.com/lattice-qdrant:{version}"]
    # The CUDA variant: built with another torch, run under its own tag.
    assert f"docker build -t lattice-qdrant:{version}-cuda" in section and "TORCH_INDEX_URL=" in section
    assert f"image: registry.example.com/lattice-qdrant:{version}-cuda" in section
    # The entrypoint is the CLI: the Job passes the command's arguments, not a shell.
    assert 'args: ["backfill"' in job and "command:" not in job
