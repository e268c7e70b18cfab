"""The CLI, driven through typer's test runner: exit codes, output, and the lifecycle end to end."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lattice_qdrant.cli import app
from lattice_qdrant.embedders import HashEmbedder

from conftest import fill_collection

Run = Callable[..., Any]


@pytest.fixture
def registered(cli: Run, legacy: HashEmbedder) -> Run:
    client = cli.qdrant()
    fill_collection(client, cli.docs, legacy, n=60)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    return cli


def all_commands() -> list[tuple[str, Any]]:
    group: Any = typer.main.get_command(app)
    out: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            out += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
        else:
            out.append((name, command))
    return out


EXPECTED = {
    "models register", "models list", "models show", "plan", "start", "pause", "resume", "cancel",
    "backfill", "status", "cutover", "rollback", "finalize", "doctor", "migrate",
}  # fmt: skip


def test_every_lifecycle_command_exists_and_has_help() -> None:
    commands = dict(all_commands())
    assert set(commands) >= EXPECTED
    for name, command in commands.items():
        assert command.help and command.help.strip(), f"{name} has no help text"
        result = CliRunner().invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name, _ in all_commands():
        assert f"lattice-qdrant {name}" in readme, f"`lattice-qdrant {name}` is missing from the README"


def test_the_lifecycle_through_the_cli(registered: Run) -> None:
    cli, docs = registered, registered.docs
    out = cli("models", "list").output
    assert re.search(r"legacy:v1:[0-9a-f]{8}\s+64-d Cosine\s+hash:bow-1-legacy", out)
    assert (
        "already registered"
        in cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64").output
    )
    conflict = cli("models", "register", "legacy", "--name", "hash:bow-1-other", "--dimension", "64", code=1)
    assert "already registered as legacy:v1" in conflict.output

    doctor = cli("doctor", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    assert "safe to start" in doctor.output and "FAIL" not in doctor.output

    out = cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
              "--rollback-window", "1h").output  # fmt: skip
    assert f"{docs}: planned/stable" in out and "next      lattice-qdrant doctor" in out
    out = cli("start", docs).output
    assert "in_progress/migrating" in out and "writes: dual_write" in out
    assert f"lattice-qdrant backfill {docs}" in out

    refused = cli("cutover", docs, code=3)
    assert "below the threshold" in refused.output and "--force" in refused.output

    out = cli("backfill", docs, "--until", "50").output
    assert "coverage target reached" in out
    status = json.loads(cli("status", docs, "--json").output)[0]
    assert 0.5 <= status["coverage"] < 1 and status["covered"] >= 30

    out = cli("backfill", docs, "--batch-size", "16").output
    assert "coverage 100.0% (60 of 60); done" in out
    out = cli("status", docs).output
    assert "completed/migrating" in out and "100.0%" in out and f"lattice-qdrant cutover {docs}" in out

    out = cli("cutover", docs).output
    assert "queries: target" in out and "left before finalize" in out
    refused = cli("finalize", docs, code=3)
    assert "rollback window is open" in refused.output and "--force" in refused.output
    assert "queries: source" in cli("rollback", docs).output
    cli("cutover", docs)
    out = cli("finalize", docs, "--force").output
    assert "completed/stable (finalized)" in out and "writes: target" in out
    assert "nothing to do" in out
    client = cli.qdrant()
    assert set(client.get_collection(docs).config.params.vectors) == {"modern-v1"}
    client.close()


def test_pause_resume_cancel(registered: Run) -> None:
    cli, docs = registered, registered.docs
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    refused = cli("pause", docs, code=3)
    assert "cannot apply 'pause'" in refused.output
    cli("start", docs)
    out = cli("pause", docs, "--reason", "maintenance").output
    assert "paused    maintenance" in out and f"lattice-qdrant resume {docs}" in out
    refused = cli("backfill", docs, code=1)
    assert "resume it first" in refused.output
    assert "in_progress/migrating" in cli("resume", docs).output
    out = cli("cancel", docs).output
    assert "cancelled/stable" in out and "writes: legacy" in out


def test_migrate_in_one_go_asks_before_each_step(registered: Run) -> None:
    cli, docs = registered, registered.docs
    args = ["migrate", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy"]
    declined = cli(*args, input="n\n", code=1).output  # no to planning: nothing is written
    assert "has no migration" in declined
    out = cli(*args, input="y\nn\n").output
    assert "plan " in out and "start " in out
    assert "planned/stable" in out  # said no to start
    out = cli(*args, "--yes").output
    assert "rollback_window" in out and "queries: target" in out


def test_dry_run_writes_nothing(registered: Run) -> None:
    cli, docs = registered, registered.docs
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", docs)
    out = cli("backfill", docs, "--dry-run").output
    assert re.search(r"60 of 60 points to embed, ~\d+ tokens", out)
    data = json.loads(cli("backfill", docs, "--dry-run", "--json").output)[0]
    assert data["todo"] == 60 and data["storage_bytes"] == 60 * (96 * 4 + 128)
    assert json.loads(cli("status", docs, "--json").output)[0]["covered"] == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status", "nope"], 1, "has no migration"),
        (["start", "nope"], 1, "has no migration"),
        (["models", "show", "ghost"], 1, "not registered"),
        (["models", "show", "x:y:z:w"], 1, "not a model reference"),
        (
            ["plan", "D", "--source", "ghost", "--target", "modern", "--source-vector", "v"],
            1,
            "not registered",
        ),
        (["backfill", "D", "--shard", "3/3"], 2, "below the shard count"),
        (["backfill", "D", "--priority", "novalue"], 2, "invalid --priority"),
        (["backfill", "D", "--batch-size", "0"], 2, "batch_size"),
        (["models", "register", "bad id!", "--name", "x", "--dimension", "3"], 2, "model_id"),
        (
            [
                "plan",
                "D",
                "--source",
                "legacy",
                "--target",
                "modern",
                "--source-vector",
                "legacy",
                "--rollback-window",
                "soon",
            ],
            2,
            "not a duration",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_an_exit_code(
    registered: Run, args: list[str], code: int, message: str
) -> None:
    args = [registered.docs if a == "D" else a for a in args]
    result = registered(*args, code=code)
    assert message in result.output
    assert "Traceback" not in result.output


def test_traceback_flag_shows_the_stack(cli: Run) -> None:
    result = cli("--traceback", "status", "nope", code=1)
    assert "Traceback" in result.output and "MigrationNotFoundError" in result.output


def test_no_connection_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("LATTICE_QDRANT_URL", "QDRANT_URL", "LATTICE_QDRANT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2 and "give exactly one of --url" in result.output


def test_the_api_key_never_appears(registered: Run) -> None:
    secret = "s3cr3t-key-value"
    outputs = [
        registered("--api-key", secret, "models", "list").output,
        registered("--api-key", secret, "--traceback", "status", "nope", code=1).output,
        registered("--api-key", secret, "status", "--json").output,
    ]
    assert all(secret not in out for out in outputs)


def test_config_file_env_and_flags_precedence(registered: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    cli, docs = registered, registered.docs
    Path("lattice-qdrant.toml").write_text("rollback_window = '2h'\ncutover_threshold = 0.5\n")
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", docs)
    cli("backfill", docs, "--until", "60")
    out = cli("cutover", docs).output  # threshold 0.5 from the file
    assert "1h 59m left" in out or "2h 0m left" in out
    cli("rollback", docs)
    monkeypatch.setenv("LATTICE_QDRANT_ROLLBACK_WINDOW", "3h")  # env beats the file
    Path("lattice-qdrant.toml").write_text("batch_size = 'many'\n")
    bad = cli("status", code=2)
    assert "invalid setting 'batch_size'" in bad.output and "lattice-qdrant.toml" in bad.output
