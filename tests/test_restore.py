"""Undoing a finalize from the vector backup, per-point rollback, and the backups commands."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models
from typer.testing import CliRunner

import lattice_qdrant as lq
from lattice_qdrant import backups, commands
from lattice_qdrant.backfill import BackfillOptions, run_backfill
from lattice_qdrant.cli import app
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder

from conftest import MakeMigration, fill_collection, make_lattice, same_direction


@pytest.fixture
def finalized(
    lattice: lq.LatticeClient, make_migration: MakeMigration, modern: HashEmbedder
) -> tuple[lq.Migration, dict[Any, Any]]:
    migration = make_migration(n=40)
    docs = migration.collection
    run_backfill(migration, modern)
    migration.cutover()
    original = {
        r.id: r.vector["legacy"] for r in lattice.client.scroll(docs, limit=100, with_vectors=["legacy"])[0]
    }
    migration.finalize(force=True)
    return migration, original


def test_finalize_backs_up_the_source_vectors_first(finalized: Any, lattice: lq.LatticeClient) -> None:
    migration, original = finalized
    found = backups.list_backups(lattice.store, migration.collection)
    assert len(found) == 1 and found[0].complete and found[0].reason == "finalize"
    assert found[0].count == len(original) and found[0].vector == "legacy"
    assert any(e["event"].startswith("backup ") for e in migration.history())
    # finalizing again (repair) does not take a second backup
    migration.finalize()
    assert len(backups.list_backups(lattice.store, migration.collection)) == 1


def test_restore_after_finalize_gives_back_every_vector_and_the_routing(
    finalized: Any, lattice: lq.LatticeClient, legacy: HashEmbedder
) -> None:
    migration, original = finalized
    docs = migration.collection
    qdrant = lattice.client
    # the application keeps writing after finalize: one changed text, one new point
    lattice.upsert(docs, [models.PointStruct(id=5, vector=models.Document(text="rewritten", model="m"),
                                             payload={"text": "rewritten"})])  # fmt: skip
    lattice.upsert(docs, [models.PointStruct(id=99, vector=models.Document(text="brand new", model="m"),
                                             payload={"text": "brand new"})])  # fmt: skip
    session = commands.Session(
        settings=Settings(control_collection=lattice.store.control_collection), client=qdrant
    )
    outcome = commands.restore(session, docs)
    report = outcome.report
    assert report.verified and report.restored == len(original) - 1
    assert report.skipped_changed.count == 1 and list(report.skipped_changed.ids) == [5]
    assert outcome.embedded == 2  # the changed point and the new one, embedded with the source model
    state = migration.snapshot(refresh=True).state
    assert state.phase == lq.Phase.ROLLBACK_WINDOW and not state.finalized
    routing = migration.routing()
    assert routing.write == lq.WriteRoute.DUAL_WRITE and routing.query_vector == migration.plan.target_vector
    stored = {r.id: r.vector["legacy"] for r in qdrant.scroll(docs, limit=200, with_vectors=["legacy"])[0]}
    for pid, vector in original.items():
        if pid != 5:
            assert same_direction(stored[pid], vector, atol=1e-6), pid
    assert same_direction(stored[5], legacy.embed(["rewritten"])[0], atol=1e-6)
    assert same_direction(stored[99], legacy.embed(["brand new"])[0], atol=1e-6)
    migration.rollback()
    hit = lattice.query_points(docs, models.Document(text="brand new", model="m"), limit=1)
    assert hit.points[0].id == 99 and migration.routing().query_vector == "legacy"


def test_the_library_restore_embeds_what_the_backup_cannot_serve_like_the_cli(
    finalized: Any, lattice: lq.LatticeClient, legacy: HashEmbedder
) -> None:
    """``Migration.restore(embedder=...)`` and ``lattice-qdrant restore`` do the same: the points changed or
    inserted since the backup are embedded with the source model."""
    migration, original = finalized
    docs = migration.collection
    lattice.upsert(docs, [models.PointStruct(id=7, vector=models.Document(text="moved on", model="m"),
                                             payload={"text": "moved on"})])  # fmt: skip
    report = migration.restore(embedder=lattice.embedder(migration.plan.source))
    assert report.restored == len(original) - 1 and report.embedded == 1
    assert report.to_dict()["embedded"] == 1
    stored = lattice.client.retrieve(docs, [7], with_vectors=["legacy"])[0].vector
    assert isinstance(stored, dict) and same_direction(
        stored["legacy"], legacy.embed(["moved on"])[0], atol=1e-6
    )


def test_per_point_rollback_from_a_backup(finalized: Any, lattice: lq.LatticeClient) -> None:
    migration, _ = finalized
    qdrant = lattice.client
    session = commands.Session(
        settings=Settings(control_collection=lattice.store.control_collection), client=qdrant
    )
    qdrant.create_vector_name(
        migration.collection, "legacy", models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=64, distance=models.Distance.COSINE))
    )  # fmt: skip
    outcome = commands.restore(session, migration.collection, ids=[1, 2])
    assert outcome.report.restored == 2
    have = {r.id for r in qdrant.scroll(migration.collection, limit=100, with_vectors=["legacy"])[0]
            if "legacy" in (r.vector or {})}  # fmt: skip
    assert have == {1, 2}
    assert migration.snapshot(refresh=True).state.finalized  # per-point rollback leaves the lifecycle alone


def test_a_backup_the_rollback_window_needs_is_not_deleted_without_force(
    finalized: Any, lattice: lq.LatticeClient
) -> None:
    migration, _ = finalized
    session = commands.Session(settings=Settings(control_collection=lattice.store.control_collection),
                               client=lattice.client)  # fmt: skip
    backup = commands.list_backups(session, migration.collection)[0]
    with pytest.raises(lq.RollbackWindowOpenError, match="rollback window needs this backup"):
        commands.delete_backup(session, backup.backup_id)
    commands.delete_backup(session, backup.backup_id, force=True)
    assert commands.list_backups(session, migration.collection) == []
    with pytest.raises(lq.MigrationError, match="no complete backup"):
        commands.restore(session, migration.collection)


def test_rollback_mid_backfill(
    lattice: lq.LatticeClient, make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=60)
    docs = migration.collection
    gate = threading.Event()

    class Slow:
        dimension = modern.dimension

        def embed(self, texts: Any) -> Any:
            gate.wait(5)
            return modern.embed(texts)

    done: list[Any] = []
    worker = threading.Thread(
        target=lambda: done.append(run_backfill(migration, Slow(), BackfillOptions(batch_size=5)))  # type: ignore[arg-type]
    )
    worker.start()
    migration.cutover(force=True)  # a premature cutover while the backfill runs...
    assert migration.routing().query_vector == migration.plan.target_vector
    migration.rollback()  # ...rolled back before the backfill finished
    assert migration.routing().query_vector == "legacy"
    gate.set()
    worker.join(30)
    assert done and done[0].coverage == 1.0
    hit = lattice.query_points(docs, models.Document(text="dogs love walks", model="m"), limit=1)
    assert "Dogs" in hit.points[0].payload["text"]
    assert migration.state.rolled_back and migration.routing().write == lq.WriteRoute.DUAL_WRITE


CHILD = """
import sys
from qdrant_client import QdrantClient
from lattice_qdrant import backups
from lattice_qdrant.store import Store
path, control, backup_id = sys.argv[1:4]
client = QdrantClient(path=path)
report = backups.restore(Store(client, control_collection=control), backup_id, page_size=20)
print("done", report.restored, report.already, report.verified, flush=True)
client.close()
"""


@pytest.mark.slow
def test_a_restore_killed_with_sigkill_resumes(tmp_path: Path, legacy: HashEmbedder, names: Any) -> None:
    path = str(tmp_path / "qdrant")
    qdrant = QdrantClient(path=path)
    fill_collection(qdrant, "docs", legacy, n=600)
    control = names("control")
    store = lq.Store(qdrant, control_collection=control)
    original = {r.id: r.vector["legacy"] for r in qdrant.scroll("docs", limit=1000, with_vectors=True)[0]}
    manifest = backups.create_backup(store, "docs", "legacy", model="legacy:v1:x", reason="test")
    store.drop_vector("docs", "legacy")
    qdrant.close()
    rng = random.Random(11)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, path, control, manifest.backup_id], stdout=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(1.0, 2.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(30)
    final = subprocess.run([sys.executable, "-c", CHILD, path, control, manifest.backup_id],
                           capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert "done" in final.stdout and final.stdout.split()[-1] == "True"
    qdrant = QdrantClient(path=path)
    stored = {r.id: r.vector["legacy"] for r in qdrant.scroll("docs", limit=1000, with_vectors=True)[0]}
    qdrant.close()
    assert set(stored) == set(original)
    for pid, vector in original.items():
        assert same_direction(stored[pid], vector, atol=1e-6)


def test_backups_and_restore_through_the_cli(
    tmp_path: Path, legacy: HashEmbedder, modern: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    path = str(tmp_path / "db")
    qdrant = QdrantClient(path=path)
    fill_collection(qdrant, "docs", legacy, n=20)
    client = make_lattice(qdrant, type("N", (), {"__call__": lambda self, b: "lattice_qdrant"})())
    migration = client.plan("docs", source=legacy.spec("legacy"), target=modern.spec("modern"),
                            source_vector="legacy", rollback_window=3600)  # fmt: skip
    migration.start()
    run_backfill(migration, modern)
    migration.cutover()
    qdrant.close()
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["--path", path, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    assert "rollback window is open" in cli("finalize", "docs", code=3)
    cli("finalize", "docs", "--force")
    listing = cli("backups", "list")
    backup_id = listing.split()[0]
    assert "docs/'legacy'  20 vectors" in listing and "complete" in listing
    assert "count" in cli("backups", "show", backup_id)
    assert "still needed" in cli("backups", "delete", backup_id, code=3)
    out = cli("restore", "docs")
    assert "restored 20 vectors" in out and "verified" in out and "completed/rollback_window" in out
    assert "queries: source" in cli("rollback", "docs")
    assert f"deleted {backup_id}" in cli("backups", "delete", backup_id, "--force")
    assert "no backups" in cli("backups", "list")
