"""The README is part of the product: its quickstart runs, and its CLI reference is current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lattice_qdrant import cli_reference, surface
from lattice_qdrant.config import ENV_PREFIX, Settings

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().split("\n## ")[0]
    assert "scripts/demo" in head and "scripts/test" in head


def test_the_quickstart_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text()
    block = re.search(r"<!-- quickstart:start -->\n```python\n(.*?)```\n<!-- quickstart:end -->", text, re.S)
    assert block, "the quickstart block is missing"
    exec(compile(block.group(1), "README.md quickstart", "exec"), {"__name__": "quickstart"})
    out = capsys.readouterr().out
    assert "backfilled 3 points, coverage 100%" in out
    assert "completed/stable (finalized) ['modern-v1']" in out


def test_the_async_quickstart_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text()
    block = re.search(
        r"<!-- quickstart-async:start -->\n```python\n(.*?)```\n<!-- quickstart-async:end -->", text, re.S
    )
    assert block, "the async quickstart block is missing"
    exec(compile(block.group(1), "README.md async quickstart", "exec"), {"__name__": "quickstart"})
    out = capsys.readouterr().out
    assert "completed/rollback_window ['a cat sleeps on the mat', 'a dog barks at the cat']" in out


def test_the_cli_reference_is_generated_from_the_current_help() -> None:
    text = README.read_text()
    start, end = text.index(cli_reference.START), text.index(cli_reference.END) + len(cli_reference.END)
    assert text[start:end] == cli_reference.render(), (
        "the README's CLI reference is out of date: python -m lattice_qdrant.cli_reference --write README.md"
    )


def test_the_table_of_routed_and_passed_through_methods_is_generated_from_the_surface() -> None:
    text = README.read_text()
    start, end = text.index(surface.START), text.index(surface.END) + len(surface.END)
    assert text[start:end] == surface.render(), (
        "the README's table of client methods is out of date: "
        "python -m lattice_qdrant.cli_reference --write README.md"
    )
    assert all(f"| `{name}` |" in surface.render() for name in surface.ROUTED)


def test_the_configuration_example_names_every_setting() -> None:
    text = README.read_text()
    example = text[text.index("# lattice-qdrant.toml") :].split("```", 1)[0]
    for name in Settings.model_fields:
        assert re.search(rf"^(# )?{name} = .*# {ENV_PREFIX}{name.upper()}", example, re.M), name
