"""Configuration: migration defaults from a file, the environment and the command line.

Precedence, highest first: command-line options > ``LATTICE_QDRANT_*`` environment variables > the
config file > built-in defaults. The file is ``lattice-qdrant.toml`` in the working directory (or the path
given with ``--config`` / ``LATTICE_QDRANT_CONFIG``), or else a ``[tool.lattice-qdrant]`` table in
``pyproject.toml``. Keys are the field names of :class:`Settings`, in the file as written
(``batch_size = 128``), in the environment upper-cased (``LATTICE_QDRANT_BATCH_SIZE=128``). Durations
accept seconds or a suffix: ``90s``, ``30m``, ``24h``, ``7d``. A bad value is a
:class:`~lattice_qdrant.errors.ConfigError` naming the key and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from .backfill import BackfillSettings
from .embedders import EmbedderSettings
from .errors import ConfigError
from .options import Duration, documented, parse_duration
from .plan import PlanSettings

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "parse_duration"]

ENV_PREFIX = "LATTICE_QDRANT_"


@documented
class Settings(EmbedderSettings, BackfillSettings, PlanSettings):
    """Migration defaults. Every field can be set in the file, the environment or on the command line.

    The backfill's fields are :class:`~lattice_qdrant.backfill.BackfillSettings`'s, the plan defaults
    :class:`~lattice_qdrant.plan.PlanSettings`'s and how models run (device, precision, tokens per pass,
    the export cache) :class:`~lattice_qdrant.embedders.EmbedderSettings`'s, inherited with their types,
    bounds, defaults and descriptions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    retries: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts for a transient Qdrant failure (exponential backoff with jitter).",
    )
    control_collection: str = Field(
        default="lattice_qdrant",
        min_length=1,
        description="Collection holding migration records and the model registry.",
    )
    refresh_interval: Duration = Field(
        default=2.0,
        ge=0,
        description="Time a process routes by a cached migration state (seconds, or 90s, 30m, 24h, 7d).",
    )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from exc
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("lattice-qdrant", {})
    elif "tool" in data and "lattice-qdrant" in data["tool"]:
        data = data["tool"]["lattice-qdrant"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the lattice-qdrant settings must be a table")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def find_config(cwd: Path | None = None, explicit: str | Path | None = None) -> Path | None:
    """The config file in use: ``explicit``, else ``lattice-qdrant.toml``, else ``pyproject.toml``
    with a ``[tool.lattice-qdrant]`` table, in ``cwd``."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist", key="config")
        return path
    base = cwd or Path.cwd()
    own = base / "lattice-qdrant.toml"
    if own.is_file():
        return own
    pyproject = base / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None
        if "lattice-qdrant" in data.get("tool", {}):
            return pyproject
    return None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        out[name] = None if raw.strip().lower() in ("", "none", "null") else raw
    return out


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings from defaults < file < environment < ``overrides`` (``None`` values are ignored).

    Raises:
        ConfigError: a value is invalid or a key unknown; the message names the key and its source.
    """
    env = os.environ if env is None else env
    layers: list[tuple[str, dict[str, Any]]] = []
    path = find_config(cwd, config_file if config_file is not None else env.get(ENV_PREFIX + "CONFIG"))
    if path is not None:
        layers.append((str(path), _read_file(path)))
    layers.append(("the environment", _from_env(env)))
    layers.append(("the command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            if key not in Settings.model_fields:
                known = ", ".join(sorted(Settings.model_fields))
                raise ConfigError(f"unknown setting {key!r} in {source} (known: {known})", key=key)
            merged[key] = value
            origin[key] = source
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        where = origin.get(key, "the defaults")
        env_name = ENV_PREFIX + key.upper()
        raise ConfigError(
            f"invalid setting {key!r} (from {where}; env {env_name}): {first['msg']} "
            f"(got {merged.get(key)!r})",
            key=key,
        ) from exc
