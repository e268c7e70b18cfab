"""Configuration: defaults < file < environment < command line, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lattice_qdrant.backfill import BackfillOptions, BackfillSettings
from lattice_qdrant.commands import Connection, Session, backfill_options
from lattice_qdrant.config import Settings, load_settings, parse_duration
from lattice_qdrant.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    assert load_settings(env={}, cwd=tmp_path) == Settings()


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    (tmp_path / "lattice-qdrant.toml").write_text("batch_size = 10\nwriters = 3\nretries = 7\n")
    env = {"LATTICE_QDRANT_BATCH_SIZE": "20", "LATTICE_QDRANT_WRITERS": "4"}
    s = load_settings({"batch_size": 30, "writers": None}, env=env, cwd=tmp_path)
    assert (s.batch_size, s.writers, s.retries, s.queue_depth) == (30, 4, 7, Settings().queue_depth)


def test_pyproject_table_and_explicit_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.lattice-qdrant]\nrollback-window = '2h'\n")
    assert load_settings(env={}, cwd=tmp_path).rollback_window == 7200
    other = tmp_path / "other.toml"
    other.write_text("rollback_window = 60\n")
    assert load_settings(env={}, cwd=tmp_path, config_file=other).rollback_window == 60
    env = {"LATTICE_QDRANT_CONFIG": str(other)}
    assert load_settings(env=env, cwd=tmp_path).rollback_window == 60
    # lattice-qdrant.toml wins over pyproject.toml
    (tmp_path / "lattice-qdrant.toml").write_text("rollback_window = '1m'\n")
    assert load_settings(env={}, cwd=tmp_path).rollback_window == 60


@pytest.mark.parametrize(
    ("where", "content", "key", "fragment"),
    [
        ("file", "batch_size = 0\n", "batch_size", "greater than or equal to 1"),
        ("file", "writers = 'x'\n", "writers", "valid integer"),
        ("file", "no_such = 1\n", "no_such", "unknown setting"),
        ("file", "backup_policy = 'sometimes'\n", "backup_policy", "'always' or 'never'"),
        ("file", "rollback_window = 'soon'\n", "rollback_window", "not a duration"),
        ("env", "LATTICE_QDRANT_CUTOVER_THRESHOLD=1.5", "cutover_threshold", "less than or equal to 1"),
        ("env", "LATTICE_QDRANT_MAX_RATE=-3", "max_rate", "greater than 0"),
    ],
)
def test_a_bad_value_names_the_key_and_where_it_came_from(
    tmp_path: Path, where: str, content: str, key: str, fragment: str
) -> None:
    env: dict[str, str] = {}
    if where == "file":
        (tmp_path / "lattice-qdrant.toml").write_text(content)
    else:
        name, value = content.split("=", 1)
        env[name] = value
    with pytest.raises(ConfigError) as err:
        load_settings(env=env, cwd=tmp_path)
    assert err.value.key == key
    assert key in str(err.value) and fragment in str(err.value)
    assert ("lattice-qdrant.toml" if where == "file" else "the environment") in str(err.value)


def test_unreadable_file_and_missing_explicit_file(tmp_path: Path) -> None:
    (tmp_path / "lattice-qdrant.toml").write_text("not = [valid")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={}, cwd=tmp_path, config_file=tmp_path / "nope.toml")


def test_env_none_unsets_an_optional_value(tmp_path: Path) -> None:
    (tmp_path / "lattice-qdrant.toml").write_text("max_rate = 100\n")
    assert load_settings(env={"LATTICE_QDRANT_MAX_RATE": "none"}, cwd=tmp_path).max_rate is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("1.5d", 129600), (5, 5)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "10x", "-5", "", True, -1])
def test_bad_durations(bad: str | int | bool) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_compare_margin_comes_from_the_environment(tmp_path: Path) -> None:
    assert load_settings(env={"LATTICE_QDRANT_COMPARE_MARGIN": "0.05"}, cwd=tmp_path).compare_margin == 0.05
    with pytest.raises(ConfigError, match="compare_margin"):
        load_settings(env={"LATTICE_QDRANT_COMPARE_MARGIN": "2"}, cwd=tmp_path)


def _declared(field: Any) -> tuple[Any, ...]:
    """What a field is: its type, default, bounds and description."""
    return (field.annotation, field.default, field.metadata, field.description)


def test_settings_hold_every_backfill_setting_as_the_backfill_declares_it() -> None:
    for name, field in BackfillSettings.model_fields.items():
        assert name in Settings.model_fields, f"Settings lacks the backfill setting {name!r}"
        assert _declared(Settings.model_fields[name]) == _declared(field), name
        assert _declared(BackfillOptions.model_fields[name]) == _declared(field), name


def test_every_setting_and_option_is_described() -> None:
    for model in (Settings, BackfillOptions):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"    {name}: " in (model.__doc__ or ""), f"{model.__name__}'s docstring lacks {name}"


def test_every_backfill_setting_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"LATTICE_QDRANT_" + name.upper(): "7" for name in BackfillSettings.model_fields}
    settings = load_settings(env=env, cwd=tmp_path)
    assert all(getattr(settings, name) == 7 for name in BackfillSettings.model_fields)


def test_backfill_options_take_every_backfill_setting(tmp_path: Path) -> None:
    values = {"batch_size": 3, "writers": 2, "queue_depth": 5, "embed_window": 9, "max_rate": 11.0}
    values |= {"delay": 0.5, "max_text_chars": 13}
    assert set(values) == set(BackfillSettings.model_fields)
    session = Session(Connection(path=":memory:"), Settings(**values))
    try:
        options = backfill_options(session, writers=None, until=50)
    finally:
        session.close()
    assert {name: getattr(options, name) for name in values} == values
    assert options.until == 50


def test_durations_are_accepted_wherever_a_duration_is_set() -> None:
    assert BackfillOptions(delay="2s").delay == 2.0
    assert Settings(delay="1m", refresh_interval="5s", rollback_window="1h").model_dump(
        include={"delay", "refresh_interval", "rollback_window"}
    ) == {"delay": 60.0, "refresh_interval": 5.0, "rollback_window": 3600.0}
    with pytest.raises(ValueError, match="not a duration"):
        BackfillOptions(delay="soon")
