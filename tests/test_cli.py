"""The CLI, driven through typer's test runner: exit codes, output, and the lifecycle end to end."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lattice_qdrant import cli as cli_module
from lattice_qdrant.backfill import BackfillOptions, BackfillProgress, BackfillSettings
from lattice_qdrant.cli import app
from lattice_qdrant.client import LatticeClient
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.errors import PlanError
from lattice_qdrant.options import summary
from lattice_qdrant.plan import MigrationPlan, PlanOptions
from lattice_qdrant.store import Store

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


def test_every_command_s_help_is_its_commands_function_s_docstring() -> None:
    for name, command in all_commands():
        function = inspect.unwrap(command.callback)
        source = cli_module.HELP_SOURCES.get(function)
        assert source is not None, f"{name} is not registered with cli._command"
        assert source.__module__ == "lattice_qdrant.commands", name
        assert command.help == summary(source), name
        assert function.__doc__ is None, f"{name} has a second docstring; its help is {source.__name__}'s"


def test_help_is_the_first_paragraph_of_the_docstring_as_plain_text() -> None:
    def documented() -> None:
        """Plan ``collection``'s move with :func:`~lattice_qdrant.commands.plan`
        (see :mod:`lattice_qdrant.plan`).

        Details for Python callers.
        """

    assert summary(documented) == "Plan collection's move with plan (see lattice_qdrant.plan)."


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


def test_plan_refuses_a_text_field_the_points_do_not_have(registered: Run) -> None:
    cli, docs = registered, registered.docs
    args = ("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    out = cli(*args, "--text-field", "body", code=2).output
    assert "none of the 60 sampled points" in out and "'body'" in out
    assert "payload fields: 'text'" in out and "--text-field" in out
    assert "no migration" in cli("status", docs, code=1).output
    assert f"{docs}: planned/stable" in cli(*args).output


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


def doctor_lines(output: str) -> dict[str, str]:
    """``{check: verdict}`` from doctor's lines (the last verdict of a check that appears twice)."""
    out = {}
    for line in output.splitlines():
        found = re.match(r"^(OK|WARN|FAIL)\s+(\S+(?: \S+)?)\s{2,}", line)
        if found:
            out[found.group(2)] = found.group(1)
    return out


def test_doctor_fails_what_cannot_be_migrated_in_place(registered: Run, legacy: HashEmbedder) -> None:
    from qdrant_client import models

    cli, docs = registered, registered.docs
    plan = ["--source-vector", "legacy"]
    wrong = cli("doctor", docs, "--source", "modern", "--target", "legacy", *plan, code=1)
    assert doctor_lines(wrong.output)["source vector"] == "FAIL"
    assert "'legacy' is 64-d Cosine, but modern:v1" in wrong.output
    assert "NOT safe to start" in wrong.output
    missing = cli("doctor", "nope", "--source", "legacy", "--target", "modern", *plan, code=1)
    assert doctor_lines(missing.output)["collection"] == "FAIL"
    unknown = cli("doctor", docs, "--source", "legacy", "--target", "ghost", *plan, code=1)
    assert doctor_lines(unknown.output)["models"] == "FAIL" and "'ghost' is not registered" in unknown.output
    # the unnamed default vector, and points without text
    client = cli.qdrant()
    client.create_collection(
        "unnamed", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    points = [models.PointStruct(id=i, vector=[0.1] * 64, payload={"t": i}) for i in range(3)]
    client.upsert("unnamed", points)
    client.close()
    out = cli("doctor", "unnamed", "--source", "legacy", "--target", "modern", *plan, "--json", code=1).output
    report = json.loads(out)
    verdicts = {f["check"]: f["verdict"] for f in report["findings"]}
    assert report["safe"] is False
    assert verdicts["vectors"] == "fail" and verdicts["text field"] == "fail"
    assert any("blue-green" in f["detail"] for f in report["findings"] if f["check"] == "vectors")


def test_doctor_recommends_blue_green_on_a_server_older_than_1_18(
    qdrant: Any, names: Any, legacy: HashEmbedder, source_spec: Any, target_spec: Any
) -> None:
    from lattice_qdrant import commands
    from lattice_qdrant.config import Settings

    class OldServer:
        """The real client, reporting itself as a Qdrant 1.17 server."""

        _client = None

        def info(self) -> Any:
            from qdrant_client import models

            return models.VersionInfo(title="qdrant", version="1.17.3")

        def __getattr__(self, name: str) -> Any:
            return getattr(qdrant, name)

    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=5)
    session = commands.Session(settings=Settings(control_collection=names("control")), client=OldServer())  # type: ignore[arg-type]
    commands.register_model(session, source_spec)
    commands.register_model(session, target_spec)
    report = commands.doctor(session, docs, source="legacy", target="modern", source_vector="legacy")
    server = next(f for f in report.findings if f.check == "server")
    assert server.verdict == "fail" and "1.17.3" in server.detail and "blue-green" in server.detail
    assert not report.safe


def posing_as(qdrant: Any, version: str) -> Any:
    """The real client, reporting itself as a Qdrant server of ``version``."""
    from qdrant_client import models

    class Server:
        _client = None  # not qdrant-client's local mode

        def info(self) -> Any:
            return models.VersionInfo(title="qdrant", version=version)

        def __getattr__(self, name: str) -> Any:
            return getattr(qdrant, name)

    return Server()


@pytest.mark.parametrize(
    ("strategy", "version", "verdict", "says"),
    [
        ("in_place", "1.16.3", "fail", "Qdrant 1.16.3 found, 1.17+ needed by every strategy"),
        ("blue_green", "1.16.3", "fail", "Qdrant 1.16.3 found, 1.17+ needed by every strategy"),
        ("reembed", "1.15.4", "fail", "Qdrant 1.15.4 found, 1.17+ needed by every strategy"),
        ("in_place", "1.17.3", "fail", "Qdrant 1.17.3 found, 1.18+ needed"),
        ("blue_green", "1.17.0", "ok", "Qdrant 1.17.0 (blue_green needs 1.17+)"),
        ("reembed", "1.17.3", "ok", "Qdrant 1.17.3 (reembed needs 1.17+)"),
        ("in_place", "1.18.0", "ok", "Qdrant 1.18.0 (in-place named vectors need 1.18+)"),
        ("blue_green", "dev", "fail", "no readable version ('dev')"),
    ],
)
def test_doctor_checks_the_server_version_the_plan_needs(
    qdrant: Any,
    names: Any,
    legacy: HashEmbedder,
    source_spec: Any,
    target_spec: Any,
    strategy: str,
    version: str,
    verdict: str,
    says: str,
) -> None:
    from lattice_qdrant import commands
    from lattice_qdrant.config import Settings
    from lattice_qdrant.plan import Strategy

    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=5)
    settings = Settings(control_collection=names("control"))
    # planned where planning works; the doctor then asks the server that is there now
    local = commands.Session(settings=settings, client=qdrant)
    commands.register_model(local, source_spec)
    commands.register_model(local, HashEmbedder(64, salt="newer").spec("legacy", 2))
    commands.register_model(local, target_spec)
    target = "legacy:v2" if strategy == "reembed" else "modern"
    commands.plan(
        local, docs, source="legacy:v1", target=target, source_vector="legacy", strategy=Strategy(strategy)
    )

    session = commands.Session(settings=settings, client=posing_as(qdrant, version))
    report = commands.doctor(session, docs)

    server = next(f for f in report.findings if f.check == "server")
    assert server.verdict == verdict, server.detail
    assert says in server.detail
    if verdict == "fail":
        assert not report.safe


def test_doctor_without_a_plan_on_a_server_older_than_1_17(
    qdrant: Any, names: Any, legacy: HashEmbedder, source_spec: Any, target_spec: Any
) -> None:
    from lattice_qdrant import commands
    from lattice_qdrant.config import Settings

    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=5)
    settings = Settings(control_collection=names("control"))
    local = commands.Session(settings=settings, client=qdrant)
    commands.register_model(local, source_spec)
    commands.register_model(local, target_spec)

    session = commands.Session(settings=settings, client=posing_as(qdrant, "1.16.3"))
    report = commands.doctor(session, docs, source="legacy", target="modern", source_vector="legacy")

    server = next(f for f in report.findings if f.check == "server")
    assert server.verdict == "fail"
    assert "Qdrant 1.16.3 found, 1.17+ needed by every strategy" in server.detail
    assert "update_mode" in server.detail and "to 1.18+ for in place" in server.detail
    assert not report.safe
    # the other checks still run
    assert {"collection", "source vector", "target vector"} <= {f.check for f in report.findings}


def test_status_shows_rate_and_eta_while_a_backfill_runs(
    lattice: Any, names: Any, legacy: HashEmbedder, modern: HashEmbedder, source_spec: Any, target_spec: Any
) -> None:
    import threading

    from lattice_qdrant import commands
    from lattice_qdrant.backfill import BackfillOptions, run_backfill
    from lattice_qdrant.cli import render_status
    from lattice_qdrant.config import Settings

    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=40)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    gate = threading.Event()
    calls: list[int] = []

    class Slow:
        dimension = modern.dimension

        def embed(self, texts: Any) -> Any:
            calls.append(len(texts))
            if len(calls) > 2:  # the dimension check, then one batch; hold the rest until status was read
                gate.wait(10)
            return modern.embed(texts)

    options = BackfillOptions(batch_size=10, embed_window=10, heartbeat_interval=0.05)  # one batch per call
    worker = threading.Thread(target=run_backfill, args=(migration, Slow(), options))
    worker.start()
    try:
        session = commands.Session(
            settings=Settings(control_collection=names("control")), client=lattice.client
        )
        for _ in range(200):
            report = commands.status(session, [docs])[0]
            if report.workers and report.workers[0]["written"] > 0:
                break
            gate.wait(0.05)
        assert report.workers and report.rate > 0 and report.eta is not None
        text = render_status(report)
        assert re.search(r"backfill  1 worker\(s\), [\d.]+ points/s, ETA \d", text), text
        assert "wait for the running backfill" in report.next_step
    finally:
        gate.set()
        worker.join(30)
    assert commands.status(session, [docs])[0].workers == []


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (None, "reads by Qdrant's slices (server 1.19+, local mode): each worker reads only its share"),
        ("1.19.0", "reads by Qdrant's slices"),
        ("1.18.4", "splits by id hash (Qdrant 1.19+ has slices): each worker reads every point still to do"),
    ],
)
def test_doctor_and_status_say_how_shards_split_the_points(
    qdrant: Any,
    names: Any,
    legacy: HashEmbedder,
    source_spec: Any,
    target_spec: Any,
    version: str | None,
    says: str,
) -> None:
    from lattice_qdrant import commands
    from lattice_qdrant.config import Settings

    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=5)
    settings = Settings(control_collection=names("control"))
    local = commands.Session(settings=settings, client=qdrant)
    commands.register_model(local, source_spec)
    commands.register_model(local, target_spec)
    commands.plan(local, docs, source="legacy", target="modern", source_vector="legacy")
    session = commands.Session(
        settings=settings, client=qdrant if version is None else posing_as(qdrant, version)
    )

    [shards] = [f for f in commands.doctor(session, docs).findings if f.check == "shards"]
    assert shards.verdict == "ok" and says in shards.detail
    report = commands.status(session, [docs])[0]
    assert report.shard_method == ("hash" if version == "1.18.4" else "slice")
    assert report.to_dict()["shard_method"] == report.shard_method  # status --json


def test_status_tells_the_shard_method_of_the_running_workers(
    qdrant: Any, names: Any, legacy: HashEmbedder, source_spec: Any, target_spec: Any
) -> None:
    import time

    from lattice_qdrant import commands
    from lattice_qdrant.cli import render_status
    from lattice_qdrant.config import Settings

    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=5)
    session = commands.Session(settings=Settings(control_collection=names("control")), client=qdrant)
    commands.register_model(session, source_spec)
    commands.register_model(session, target_spec)
    commands.plan(session, docs, source="legacy", target="modern", source_vector="legacy")
    commands.start(session, docs)

    def beat(worker: str, **fields: Any) -> None:
        record = {"collection": docs, "shard": "0/2", "rate": 1.0, "written": 1, "at": time.time(), **fields}
        session.store.put_record("backfill", f"{docs}:{worker}", record)

    beat("a", shard_method="hash")  # local mode has slices, but the run's workers split by id hash
    report = commands.status(session, [docs])[0]
    assert report.shard_method == "hash"
    assert "; shards by id hash (each worker reads every point to do)" in render_status(report)
    beat("b")  # a version that recorded no method had only the id hash
    assert commands.status(session, [docs])[0].shard_method == "hash"
    beat("c", shard_method="slice")
    report = commands.status(session, [docs])[0]
    assert report.shard_method == "mixed"
    assert "shards by two methods at once: stop the workers" in render_status(report)


# -- the backfill command: several collections, signals, progress, metrics ------------------------------


def _planned_and_started(cli: Run, *collections: str) -> None:
    for name in collections:
        cli("plan", name, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
        cli("start", name)


def test_backfill_names_several_collections_in_one_run(registered: Run, legacy: HashEmbedder) -> None:
    cli, docs = registered, registered.docs
    other = f"{docs}_b"
    client = cli.qdrant()
    fill_collection(client, other, legacy, n=25)
    client.close()
    _planned_and_started(cli, docs, other)
    out = cli("backfill", docs, other, "--batch-size", "8").output
    assert f"{docs}: wrote 60 vectors" in out and "coverage 100.0% (60 of 60); done" in out
    assert f"{other}: wrote 25 vectors" in out and "coverage 100.0% (25 of 25); done" in out
    assert out.index(f"{docs}: wrote") < out.index(f"{other}: wrote")  # in the order named
    reports = json.loads(cli("status", docs, other, "--json").output)
    assert [(r["collection"], r["coverage"], r["status"]) for r in reports] == [
        (docs, 1.0, "completed"),
        (other, 1.0, "completed"),
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_stops_the_backfill_command_with_a_message_and_the_next_run_finishes(
    registered: Run, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    cli, docs = registered, registered.docs
    _planned_and_started(cli, docs)
    # whatever arrives after the command restored its handlers must not end the test run
    previous = signal.signal(signum, lambda *_: None)
    sent = threading.Event()
    report = cli_module._Reporter.__call__

    def signal_once_written(self: Any, progress: Any) -> None:
        if progress.written and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signum)
        report(self, progress)

    # the CLI's own reporter sees the first write: the command builds its store, there is none to fake
    with monkeypatch.context() as patch:
        patch.setattr(cli_module._Reporter, "__call__", signal_once_written)
        try:
            result = cli("backfill", docs, "--batch-size", "5", "--max-rate", "30")
        finally:
            signal.signal(signum, previous)
    assert sent.is_set()
    said = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert f"{signal.Signals(signum).name}: stopping after the batches in flight" in said
    assert "run the same command again to carry on" in said
    assert "stopped by a signal; run again to carry on" in result.output
    covered = json.loads(cli("status", docs, "--json").output)[0]["covered"]
    assert 0 < covered < 60
    assert signal.getsignal(signum) is previous  # the command put the handlers back
    assert "coverage 100.0% (60 of 60); done" in cli("backfill", docs).output


def _progress(collection: str, **numbers: int) -> BackfillProgress:
    return BackfillProgress(collection=collection, todo=numbers.pop("todo", 100), **numbers)


def test_progress_off_a_terminal_is_structured_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = cli_module._Reporter(interval=0.0)
    reporter.tty = False
    reporter(_progress("docs", written=40, read=50, failed=2))
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"backfill collection=docs written=40 remaining=\d+ failed=2 rate=[\d.]+/s eta=(\d+s|unknown)", line
    ), line
    quiet = cli_module._Reporter(interval=3600.0)
    quiet.tty = False
    quiet(_progress("docs", written=1))
    quiet(_progress("docs", written=2))  # within the interval: no second line
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    reporter.close()


@pytest.mark.parametrize("uptime", [0.0, 10.0, 3599.0, 86_400.0])
def test_first_progress_line_prints_whatever_the_machine_uptime(
    uptime: float, capsys: pytest.CaptureFixture[str]
) -> None:
    # The monotonic clock counts from boot: a machine up for less than the interval printed nothing at first.
    now = [uptime]
    reporter = cli_module._Reporter(interval=3600.0, clock=lambda: now[0])
    reporter.tty = False
    reporter(_progress("docs", written=1))
    now[0] += 10.0
    reporter(_progress("docs", written=2))  # within the interval
    now[0] += 3600.0
    reporter(_progress("docs", written=3))  # the interval has passed
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["written=1", "written=3"]


def test_progress_on_a_terminal_is_a_bar_per_collection() -> None:
    reporter = cli_module._Reporter()
    reporter.tty = True
    try:
        reporter(_progress("docs", todo=100, written=30, failed=5))
        reporter(_progress("docs", todo=100, written=60, failed=5))
        reporter(_progress("articles", todo=10, written=4))
        tasks = reporter._progress.tasks
        assert [(t.description, t.total, t.completed) for t in tasks] == [
            ("docs", 100, 65),
            ("articles", 10, 4),
        ]
        assert all("rate" in t.fields for t in tasks)
    finally:
        reporter.close()


def test_metrics_port_serves_prometheus_metrics_of_the_run(registered: Run) -> None:
    pytest.importorskip("prometheus_client")
    cli, docs = registered, registered.docs
    _planned_and_started(cli, docs)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli("backfill", docs, "--metrics-port", str(port))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert re.search(rf'lattice_backfill_points_total\{{collection="{docs}"\}} 60\.0', text), text[:2000]
    assert "lattice_backfill_batch_seconds" in text and "lattice_backfill_queue_depth" in text


def test_scripts_backfill_is_the_backfill_command() -> None:
    root = Path(__file__).parent.parent
    if not (root / ".venv" / ".lattice-qdrant-installed").is_file():
        pytest.skip("scripts/backfill builds .venv first: run scripts/test once")
    done = subprocess.run(
        ["bash", str(root / "scripts" / "backfill"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: lattice-qdrant backfill [OPTIONS]" in done.stdout
    assert "Collections to backfill, in order." in done.stdout
    assert "--shard" in done.stdout and "--metrics-port" in done.stdout and "--dry-run" in done.stdout


def test_status_lists_failed_points_and_retry_failed_writes_them_once_fixed(registered: Run) -> None:
    cli, docs = registered, registered.docs
    client = cli.qdrant()
    client.set_payload(docs, payload={"text": "   "}, points=[3])
    client.delete_payload(docs, keys=["text"], points=[4])
    client.close()
    _planned_and_started(cli, docs)

    out = cli("backfill", docs, "--batch-size", "8").output
    assert "wrote 58 vectors" in out and "2 failed" in out and "coverage 96.7% (58 of 60)" in out
    status = cli("status", docs).output
    assert re.search(r"failed\s+2 point\(s\): 3 \([^)]*empty[^)]*\), 4 \([^)]*missing[^)]*\)", status), status
    failures = json.loads(cli("status", docs, "--json").output)[0]["failures"]
    assert [f["point_id"] for f in failures] == [3, 4]

    # a plain run skips what was recorded; --retry-failed tries again, and fixed points are written
    assert "wrote 0 vectors" in cli("backfill", docs).output
    client = cli.qdrant()
    client.set_payload(docs, payload={"text": "now it has text"}, points=[3, 4])
    client.close()
    out = cli("backfill", docs, "--retry-failed").output
    assert "wrote 2 vectors" in out and "0 failed" in out and "coverage 100.0% (60 of 60); done" in out
    report = json.loads(cli("status", docs, "--json").output)[0]
    assert (report["failed"], report["failures"]) == (0, [])


# -- options written once: the plan's and the backfill's fields are the CLI's options -----------------


def _flags(command: str) -> set[str]:
    found = dict(all_commands())[command]
    return {opt for param in found.params for opt in param.opts}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


PLAN_IDENTITY = {"collection", "source", "target", "source_vector", "target_vector", "created_at"}


def test_every_plan_option_is_an_option_of_plan_migrate_and_client_plan() -> None:
    # a field added to MigrationPlan is an option (PlanOptions), or one of what the plan is about
    assert set(MigrationPlan.model_fields) == set(PlanOptions.model_fields) | PLAN_IDENTITY
    for command in ("plan", "migrate"):
        missing = {_flag(n) for n in PlanOptions.model_fields} - _flags(command)
        assert not missing, f"lattice-qdrant {command} lacks {sorted(missing)}"
    assert {"--source", "--target", "--source-vector", "--target-vector"} <= _flags("plan")
    signature = inspect.signature(LatticeClient.plan)
    assert {"source", "target", "source_vector", "target_vector"} <= set(signature.parameters)
    assert signature.parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_every_backfill_option_is_an_option_of_backfill_and_migrate() -> None:
    internal = {"heartbeat_interval", "progress_interval"}
    flags = {_flag(n) for n in BackfillOptions.model_fields if n not in internal} - {"--priorities"}
    assert flags | {"--priority"} <= _flags("backfill")
    assert {_flag(n) for n in BackfillSettings.model_fields} <= _flags("migrate")


def test_plan_options_reach_the_stored_plan_from_the_flags_the_env_and_the_defaults(
    registered: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, docs = registered, registered.docs
    other = f"{docs}_b"
    client = cli.qdrant()
    client.create_collection(other, vectors_config=client.get_collection(docs).config.params.vectors)
    client.close()
    monkeypatch.setenv("LATTICE_QDRANT_BACKUP_POLICY", "never")
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--oversample", "7", "--query-threshold", "0.5", "--rollback-window", "90m")  # fmt: skip
    cli("plan", other, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--backup-policy", "always")  # fmt: skip
    client = cli.qdrant()
    store = Store(client, control_collection=cli.control)
    first, second = (store.get_record("migration", c)["plan"] for c in (docs, other))
    client.close()
    assert (first["oversample"], first["query_threshold"], first["rollback_window"]) == (7, 0.5, 5400.0)
    assert (first["backup_policy"], second["backup_policy"]) == ("never", "always")  # env, then the flag
    assert (second["oversample"], second["query_threshold"], second["strategy"]) == (4, None, "in_place")


def test_migrate_takes_the_plan_and_backfill_options(registered: Run) -> None:
    cli, docs = registered, registered.docs
    args = [
        "--source",
        "legacy",
        "--target",
        "modern",
        "--source-vector",
        "legacy",
        "--rollback-window",
        "30m",
    ]
    out = cli("migrate", docs, *args, "--writers", "2", "--batch-size", "7", "--yes", "--json").output
    report = json.loads(out[out.index("[") :])[0]
    assert report["phase"] == "rollback_window" and 0 < report["rollback_window_left"] <= 1800
    assert "invalid backfill option" in cli("migrate", docs, "--writers", "0", "--yes", code=2).output


def test_backfill_takes_every_backfill_setting(registered: Run) -> None:
    cli, docs = registered, registered.docs
    _planned_and_started(cli, docs)
    out = cli("backfill", docs, "--max-text-chars", "5", "--delay", "0s", "--writers", "1").output
    assert "wrote 60 vectors" in out and "60 truncated" in out


def test_an_unknown_plan_option_is_refused_by_name(lattice: Any, source_spec: Any, target_spec: Any) -> None:
    with pytest.raises(PlanError, match=r"unknown plan option\(s\) cutover_treshold \(known: alias, "):
        lattice.plan(
            "docs", source=source_spec, target=target_spec, source_vector="legacy", cutover_treshold=0.5
        )


def test_client_plan_takes_every_plan_option(lattice: Any, names: Any, legacy: HashEmbedder,
                                             source_spec: Any, target_spec: Any) -> None:  # fmt: skip
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=3)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy",
                             oversample=9, backup_policy="never", rollback_window="1h")  # fmt: skip
    assert (migration.plan.oversample, migration.plan.backup_policy) == (9, "never")
    assert migration.plan.rollback_window == 3600.0
