"""The same-name re-embed strategy: the target vectors overwrite the source vectors under one name.

Which model a point's vector holds is its stamp (``embedding_model_id`` / ``embedding_version``). Every
scenario runs on the backend fixture (local mode, and a server when ``QDRANT_URL`` is set): the lifecycle
from the library and the CLI, the unnamed vector, a version bump under one model id, races with the
application, bad inputs, the store's two write paths, a start cut off during its backup and a backfill
killed with SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import backups, commands
from lattice_qdrant.backfill import BackfillOptions, estimate, run_backfill
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, Store, stamp_filter
from lattice_qdrant.testing import Call, LoseReply, Meanwhile

from conftest import (
    CORPUS,
    QDRANT_URL,
    MakeMigration,
    Watched,
    fill_collection,
    make_lattice,
    same_direction,
    unit,
)

CHILD = Path(__file__).with_name("backfill_child.py")
DIM = 64


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, watched: Watched) -> lq.LatticeClient:
    """The wrapped client, over a store the tests watch and act through."""
    return make_lattice(qdrant, names, store=watched)


@pytest.fixture
def newer() -> HashEmbedder:
    """A target of the source's shape (64-d Cosine): hashed unigrams and bigrams."""
    return HashEmbedder(DIM, ngrams=2, salt="modern")


@pytest.fixture
def newer_spec(newer: HashEmbedder) -> lq.ModelSpec:
    return newer.spec("modern", 1)


def texts_of(n: int) -> list[str]:
    return [f"{CORPUS[i % len(CORPUS)]} (note {i})" for i in range(n)]


def stamp_some(client: QdrantClient, collection: str, spec: lq.ModelSpec, ids: list[int]) -> None:
    """Stamp some points with the source model (the others keep no stamp, as legacy data often has)."""
    client.set_payload(collection, {MODEL_FIELD: spec.model_id, VERSION_FIELD: spec.version}, points=ids)


def records(client: QdrantClient, collection: str, name: str = "legacy") -> dict[Any, models.Record]:
    found, _ = client.scroll(
        collection, limit=10_000, with_payload=True, with_vectors=[name] if name else True
    )
    return {r.id: r for r in found}


def vector_of(record: models.Record, name: str) -> list[float]:
    value = record.vector if name == "" else (record.vector or {})[name]  # type: ignore[index]
    assert isinstance(value, list)
    return value


def stamp_of(record: models.Record) -> tuple[Any, Any]:
    payload = record.payload or {}
    return payload.get(MODEL_FIELD), payload.get(VERSION_FIELD)


def target_held(client: QdrantClient, collection: str, spec: lq.ModelSpec) -> set[Any]:
    found, _ = client.scroll(
        collection, scroll_filter=stamp_filter(spec.model_id, spec.version), limit=10_000, with_payload=False
    )
    return {r.id for r in found}


def brute_force(
    client: QdrantClient,
    collection: str,
    embedder: HashEmbedder,
    query: str,
    name: str = "legacy",
) -> list[tuple[Any, float]]:
    """Every point ranked in ``embedder``'s space, from its text (cosine)."""
    points = records(client, collection, name=name)
    ids = sorted(points, key=str)
    matrix = np.stack([unit(v) for v in embedder.embed([points[p].payload["text"] for p in ids])])
    scores = matrix @ unit(embedder.embed([query])[0])
    order = np.argsort(-scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order]


def assert_same_ranking(got: list[models.ScoredPoint], expected: list[tuple[Any, float]]) -> None:
    """``got`` is the exact top of ``expected`` (a ranking of every point): the same scores in order, and each
    id one of those with its score (ties may come in either order, at the cut too)."""
    assert len(got) > 0
    assert [round(p.score, 5) for p in got] == [round(s, 5) for _, s in expected[: len(got)]]
    by_score: dict[float, set[Any]] = {}
    for pid, score in expected:
        by_score.setdefault(round(score, 5), set()).add(pid)
    for point in got:
        assert point.id in by_score[round(point.score, 5)], (point.id, point.score)


Plan = Callable[..., lq.Migration]


@pytest.fixture
def planned(
    lattice: lq.LatticeClient,
    make_migration: MakeMigration,
    source_spec: lq.ModelSpec,
    newer_spec: lq.ModelSpec,
) -> Plan:
    """A re-embed's plan of ``n`` points, every other one stamped with the source model (legacy data often
    has no stamp)."""

    def make(n: int = 40, **kwargs: Any) -> lq.Migration:
        kwargs.setdefault("rollback_window", 3600.0)
        migration = make_migration(n, started=False, target=newer_spec, strategy="reembed", **kwargs)
        stamp_some(lattice.client, migration.collection, source_spec, list(range(0, n, 2)))
        return migration

    return make


# --------------------------------------------------------------------------- the plan


def test_a_reembed_plan_keeps_the_vector_name_and_the_collection(planned: Plan) -> None:
    migration = planned()
    plan = migration.plan
    assert plan.strategy == lq.Strategy.REEMBED and plan.reembed and not plan.blue_green
    assert plan.target_vector == plan.source_vector == "legacy"
    assert plan.data_collection == migration.collection
    assert migration.snapshot(refresh=True).backup_id is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"target": "wide"}, r"must be 64-d Cosine like the source, but wide:v1:\w+ is 96-d .*blue_green"),
        ({"target": "dot"}, r"64-d Cosine like the source, but dot:v1:\w+ is 64-d Dot; use the blue_green"),
        ({"backup_policy": "never"}, "backup is the only way back: backup_policy 'never' is refused"),
        ({"target_vector": "other"}, "target_vector must be 'legacy' \\(or left out\\), not 'other'"),
        ({"alias": "docs_live"}, "belong to the blue_green strategy"),
        ({"target": "same"}, "source and target are the same model"),
    ],
)
def test_a_reembed_plan_is_refused_when_it_cannot_work(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    newer_spec: lq.ModelSpec,
    change: dict[str, Any],
    problem: str,
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=4)
    targets = {
        "wide": HashEmbedder(96, salt="wide").spec("wide", 1),
        "dot": newer_spec.model_copy(update={"model_id": "dot", "distance": lq.Distance.DOT}),
        "same": source_spec,
    }
    kwargs: dict[str, Any] = {"target": newer_spec, **change}
    if isinstance(kwargs["target"], str):
        kwargs["target"] = targets[kwargs["target"]]
    with pytest.raises(lq.PlanError, match=problem) as err:
        lattice.plan(docs, source=source_spec, source_vector="legacy", strategy="reembed", **kwargs)
    assert isinstance(err.value, ValueError) and err.value.key == "plan"
    with pytest.raises(lq.MigrationNotFoundError):
        lattice.migration(docs)  # nothing was recorded


# --------------------------------------------------------------------------- the lifecycle


def test_the_full_lifecycle_never_mixes_spaces_and_restore_gives_back_every_vector(
    planned: Plan,
    lattice: lq.LatticeClient,
    legacy: HashEmbedder,
    newer: HashEmbedder,
    newer_spec: lq.ModelSpec,
) -> None:
    migration = planned(n=40, cutover_threshold=1.0, embed_budget=100)  # mixed mode embeds every candidate
    docs, qdrant, store = migration.collection, lattice.client, lattice.store
    original = records(qdrant, docs)

    # start: every source vector is backed up before anything is overwritten
    state = migration.start()
    assert state.phase == lq.Phase.MIGRATING and (state.processed, state.total) == (0, 40)
    backup_id = migration.snapshot(refresh=True).backup_id
    assert backup_id is not None
    manifest = backups.get_backup(store, backup_id)
    assert (manifest.complete, manifest.count, manifest.reason, manifest.vector) == (
        True,
        40,
        "reembed",
        "legacy",
    )
    assert any(e["event"] == f"backup {backup_id}" for e in migration.history())
    assert migration.protects(manifest) is not None
    with pytest.raises(lq.RollbackWindowOpenError, match="only copy of its source vectors"):
        backups.delete_backup(store, backup_id, protected=migration.protects)

    # a partial backfill: coverage is what the stamps say
    report = run_backfill(migration, newer, BackfillOptions(max_points=15, batch_size=5, writers=1))
    assert (report.written, report.covered, report.total) == (15, 15, 40)
    assert migration.coverage() == lq.Coverage(covered=15, total=40)
    holding = target_held(qdrant, docs, newer_spec)
    assert len(holding) == 15
    now = records(qdrant, docs)
    for pid, record in now.items():
        model = newer if pid in holding else legacy
        assert same_direction(vector_of(record, "legacy"), model.embed([record.payload["text"]])[0]), pid

    # text queries at partial coverage: mixed, every candidate scored in the target space (all 40 points are
    # candidates at limit 10 with oversample 4, so the result is exactly the brute force)
    for query in ("vectors and similarity search", "bread and butter recipe", "football match"):
        hits = lattice.query_points(docs, models.Document(text=query, model="m"), limit=10).points
        assert_same_ranking(hits, brute_force(qdrant, docs, newer, query))
        filtered = lattice.query_points(
            docs, models.Document(text=query, model="m"), limit=5,
            query_filter=models.Filter(must=[models.HasIdCondition(has_id=list(range(20)))]),
        ).points  # fmt: skip
        assert {p.id for p in filtered} <= set(range(20))
    # a raw vector cannot be mixed: it searches only the points holding the routed (source) model
    raw = lattice.query_points(docs, legacy.embed(["the cat on the mat"])[0].tolist(), limit=40).points
    assert {p.id for p in raw} == set(range(40)) - holding
    for point in raw:
        stored = vector_of(now[point.id], "legacy")
        assert point.score == pytest.approx(
            float(unit(stored) @ unit(legacy.embed(["the cat on the mat"])[0]))
        )

    with pytest.raises(lq.VectorValidationError, match=r"pass a models\.Document, not a vector"):
        lattice.query_points(docs, legacy.embed(["cat"])[0].tolist(), mode="mixed")
    # mode="routed" searches, like a vector, only the points holding the routed (source) model
    routed = lattice.query_points(docs, models.Document(text="the cat", model="m"), mode="routed", limit=40)
    assert {p.id for p in routed.points} == set(range(40)) - holding
    with pytest.raises(lq.ThresholdNotMetError):
        migration.cutover()
    with pytest.raises(lq.InvalidTransitionError, match="restore them from the backup first"):
        migration.cancel()

    run_backfill(migration, newer)
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED
    # at 100% a text query is a plain target query
    hits = lattice.query_points(docs, models.Document(text="stock market news", model="m"), limit=7).points
    assert_same_ranking(hits, brute_force(qdrant, docs, newer, "stock market news"))

    migration.cutover()
    routing = migration.routing()
    assert routing.query == lq.QueryRoute.TARGET and routing.query_vector == "legacy"
    raw = lattice.query_points(docs, newer.embed(["rain tomorrow"])[0].tolist(), limit=3).points
    assert_same_ranking(raw, brute_force(qdrant, docs, newer, "rain tomorrow"))
    migration.rollback()
    assert migration.routing().query == lq.QueryRoute.SOURCE
    # every point holds the target now: a source-space vector has nothing to search
    assert lattice.query_points(docs, legacy.embed(["rain"])[0].tolist(), limit=3).points == []
    migration.cutover()
    state = migration.finalize(force=True)  # force: the window is open
    assert state.finalized and "legacy" in store.vectors(docs)  # nothing dropped
    assert migration.protects(manifest) is not None  # the rollback window after finalize needs it
    hits = lattice.query_points(
        docs, models.Document(text="a programming language", model="m"), limit=5
    ).points
    assert_same_ranking(hits, brute_force(qdrant, docs, newer, "a programming language"))

    # restore: every point gets its original vector and stamp back, and the migration is cancelled
    restored = migration.restore()
    assert (restored.restored, restored.expected, restored.verified, restored.checksum_ok) == (
        40,
        40,
        True,
        True,
    )
    assert restored.skipped_changed.count == restored.skipped_missing.count == 0
    state = migration.snapshot(refresh=True).state
    assert state.status == lq.Status.CANCELLED and not state.finalized
    assert [e["event"] for e in migration.history()][-4:] == [
        "reopen",
        "rollback",
        "cancel",
        f"restore {backup_id}",
    ]
    back = records(qdrant, docs)
    for pid, record in original.items():
        np.testing.assert_allclose(
            unit(vector_of(back[pid], "legacy")), unit(vector_of(record, "legacy")), atol=1e-6
        )
        assert stamp_of(back[pid]) == stamp_of(record), pid
        assert set(back[pid].payload) == set(record.payload), pid  # unstamped points lost the stamp again
    assert migration.coverage().covered == 0
    assert migration.protects(manifest) is None  # nothing holds the target any more
    hits = lattice.query_points(docs, models.Document(text="dogs and long walks", model="m"), limit=5).points
    assert_same_ranking(hits, brute_force(qdrant, docs, legacy, "dogs and long walks"))
    assert backups.verify_backup(store, backup_id)


def test_restore_before_cutover_cancels_and_rolls_every_point_back(
    planned: Plan, lattice: lq.LatticeClient, newer: HashEmbedder, newer_spec: lq.ModelSpec
) -> None:
    migration = planned(n=30)
    docs = migration.collection
    original = records(lattice.client, docs)
    migration.start()
    run_backfill(migration, newer, BackfillOptions(max_points=12, batch_size=4))
    migration.pause("looks wrong")
    report = migration.restore()
    assert (report.restored, report.verified) == (30, True)
    assert migration.snapshot(refresh=True).state.status == lq.Status.CANCELLED
    assert target_held(lattice.client, docs, newer_spec) == set()
    back = records(lattice.client, docs)
    for pid, record in original.items():
        assert same_direction(vector_of(back[pid], "legacy"), vector_of(record, "legacy"), atol=1e-6)
    # resumable: run on the cancelled migration, it finds everything in place
    again = migration.restore()
    assert (again.restored, again.verified) == (30, True)
    with pytest.raises(lq.MigrationError, match="is cancelled/stable; plan a new migration"):
        run_backfill(migration, newer)


def test_a_collection_with_only_the_unnamed_vector(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    newer: HashEmbedder,
    source_spec: lq.ModelSpec,
    newer_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    qdrant = lattice.client
    texts = texts_of(24)
    qdrant.create_collection(
        docs, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    qdrant.upsert(
        docs,
        [models.PointStruct(id=i, vector=v.tolist(), payload={"text": t})
         for i, (t, v) in enumerate(zip(texts, legacy.embed(texts), strict=True))],
    )  # fmt: skip
    original = records(qdrant, docs, name="")
    with pytest.raises(lq.UnnamedVectorError, match="reembed"):
        lattice.plan(docs, source=source_spec, target=HashEmbedder(96).spec("wide", 1), source_vector="")
    migration = lattice.plan(
        docs, source=source_spec, target=newer_spec, source_vector="", strategy="reembed", embed_budget=100
    )  # mixed mode embeds every candidate: its ranking is the brute force's
    assert migration.plan.target_vector == ""
    migration.start()
    assert backups.get_backup(lattice.store, migration.snapshot().backup_id or "").count == 24
    # the application writes during the migration (a Document: both models embed it)
    lattice.upsert(docs, [models.PointStruct(id=3, vector=models.Document(text="fresh words", model="m"),
                                             payload={"text": "fresh words"})])  # fmt: skip
    run_backfill(migration, newer, BackfillOptions(max_points=10, batch_size=4))
    assert migration.coverage().covered == 11
    hits = lattice.query_points(docs, models.Document(text="vector search", model="m"), limit=8).points
    assert_same_ranking(hits, brute_force(qdrant, docs, newer, "vector search", name=""))
    run_backfill(migration, newer)
    migration.cutover()
    migration.finalize(force=True)
    assert qdrant.get_collection(docs).config.params.vectors == models.VectorParams(
        size=DIM, distance=models.Distance.COSINE
    )  # still the unnamed vector only
    stored = records(qdrant, docs, name="")
    for pid, record in stored.items():
        assert same_direction(vector_of(record, ""), newer.embed([record.payload["text"]])[0]), pid
    report = migration.restore()
    assert (report.restored, report.verified) == (24, True)
    back = records(qdrant, docs, name="")
    for pid, record in original.items():
        want = legacy.embed(["fresh words"])[0] if pid == 3 else vector_of(record, "")
        assert same_direction(vector_of(back[pid], ""), want, atol=1e-6), pid
        assert stamp_of(back[pid]) == ((None, None) if pid != 3 else ("legacy", 1))


def test_a_version_bump_under_the_same_model_id(
    lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder, source_spec: lq.ModelSpec
) -> None:
    docs = names("docs")
    qdrant = lattice.client
    fill_collection(qdrant, docs, legacy, n=30)
    stamp_some(qdrant, docs, source_spec, list(range(30)))
    bumped = HashEmbedder(DIM, ngrams=2, salt="legacy-2")
    v2 = bumped.spec("legacy", 2)
    assert (v2.model_id, v2.dimension) == (source_spec.model_id, source_spec.dimension)
    migration = lattice.plan(
        docs, source=source_spec, target=v2, source_vector="legacy", strategy="reembed", embed_budget=100
    )  # mixed mode embeds every candidate: its ranking is the brute force's
    migration.start()
    run_backfill(migration, bumped, BackfillOptions(max_points=10, batch_size=5))
    versions = [r.payload[VERSION_FIELD] for r in records(qdrant, docs).values()]
    assert sorted(versions).count(2) == 10 and sorted(versions).count(1) == 20
    assert migration.coverage() == lq.Coverage(covered=10, total=30)
    hits = lattice.query_points(docs, models.Document(text="cats and dogs", model="m"), limit=6).points
    assert_same_ranking(hits, brute_force(qdrant, docs, bumped, "cats and dogs"))
    run_backfill(migration, bumped)
    assert {r.payload[VERSION_FIELD] for r in records(qdrant, docs).values()} == {2}
    report = migration.restore()
    assert report.restored == 30
    assert {stamp_of(r) for r in records(qdrant, docs).values()} == {("legacy", 1)}


# --------------------------------------------------------------------------- races with the application


def test_a_text_changed_during_the_backfill_is_embedded_again_and_not_clobbered_by_restore(
    planned: Plan, lattice: lq.LatticeClient, watched: Watched, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    migration = planned(n=20)
    docs, store = migration.collection, migration.store
    migration.start()
    changed: list[Any] = []

    def rewrite(call: Call) -> None:
        # the application rewrites the text behind the wrapper's back, after it was embedded
        with store.exclusive():
            lattice.client.set_payload(docs, {"text": "rewritten behind our back"}, points=[7])
        changed.append(7)

    holds_7 = Meanwhile(rewrite, on=1, when=lambda call: 7 in call.arguments["pending"])
    watched.faults.inject("write_stamped", holds_7)
    report = run_backfill(migration, newer, BackfillOptions(batch_size=4, writers=1))
    assert changed == [7] and report.passes == 2 and report.covered == 20  # then a count finds nothing left
    point = records(lattice.client, docs)[7]
    assert same_direction(vector_of(point, "legacy"), newer.embed(["rewritten behind our back"])[0])
    assert stamp_of(point) == ("modern", 1)

    restored = migration.restore()
    assert list(restored.skipped_changed.ids) == [7] and restored.restored == 19
    point = records(lattice.client, docs)[7]
    assert stamp_of(point) == ("modern", 1)  # not clobbered with the old text's vector
    # the CLI's restore embeds such points with the source model
    session = commands.Session(
        settings=Settings(control_collection=store.control_collection), client=lattice.client
    )
    outcome = commands.restore(session, docs)
    assert outcome.embedded == 1 and outcome.status is not None and outcome.status.covered == 0
    point = records(lattice.client, docs)[7]
    assert same_direction(vector_of(point, "legacy"), legacy.embed(["rewritten behind our back"])[0])
    assert stamp_of(point) == ("legacy", 1)


def test_the_library_restore_of_a_reembed_embeds_the_points_changed_since_their_entry(
    planned: Plan, lattice: lq.LatticeClient, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    migration = planned(n=10)
    docs = migration.collection
    migration.start()
    run_backfill(migration, newer)
    lattice.client.set_payload(docs, {"text": "rewritten behind our back"}, points=[4])  # no fresh entry
    report = migration.restore(embedder=lattice.embedder(migration.plan.source))
    assert list(report.skipped_changed.ids) == [4] and report.restored == 9 and report.embedded == 1
    point = records(lattice.client, docs)[4]
    assert same_direction(vector_of(point, "legacy"), legacy.embed(["rewritten behind our back"])[0])
    assert stamp_of(point) == ("legacy", 1) and migration.coverage().covered == 0


def test_writes_during_the_migration_are_restored_from_their_backup_entries(
    planned: Plan, lattice: lq.LatticeClient, legacy: HashEmbedder, newer: HashEmbedder, names: Any,
    qdrant: QdrantClient,
) -> None:  # fmt: skip
    migration = planned(n=20)
    docs, store = migration.collection, migration.store
    migration.start()
    backup_id = migration.snapshot().backup_id or ""
    # another process of the fleet writes: an existing point with new text, and a new point
    other = make_lattice(qdrant, names)
    other.upsert(docs, [
        models.PointStruct(id=4, vector=models.Document(text="changed by the app", model="m"),
                           payload={"text": "changed by the app"}),
        models.PointStruct(id=100, vector={}, payload={"text": "inserted by the app"}),
    ])  # fmt: skip
    other.update_vectors(
        docs, [models.PointVectors(id=5, vector={"legacy": models.Document(text="x", model="m")})]
    )
    now = records(qdrant, docs)
    for pid, text in ((4, "changed by the app"), (100, "inserted by the app")):
        assert same_direction(vector_of(now[pid], "legacy"), newer.embed([text])[0])
        assert stamp_of(now[pid]) == ("modern", 1)
    assert same_direction(vector_of(now[5], "legacy"), newer.embed(["x"])[0]) and stamp_of(now[5]) == (
        "modern",
        1,
    )
    # the application deletes a point: restore must not bring it back
    other.delete(docs, points_selector=models.PointIdsList(points=[9]))
    assert backups.verify_backup(store, backup_id)  # the manifest still verifies the backup as made

    run_backfill(migration, newer)
    other.upsert(docs, [models.PointStruct(id=4, vector=models.Document(text="changed again", model="m"),
                                           payload={"text": "changed again"})])  # fmt: skip
    migration.cutover()
    report = migration.restore()
    assert report.verified and report.checksum_ok
    assert list(report.skipped_missing.ids) == [9] and report.skipped_changed.count == 0
    assert report.restored == 20  # 19 of the backup as made (9 is gone), plus 100
    back = records(qdrant, docs)
    assert 9 not in back
    # point 5 kept its text: its entry holds the source vector the update gave ("x", embedded by the source)
    for pid, text in ((4, "changed again"), (100, "inserted by the app"), (5, "x")):
        assert same_direction(vector_of(back[pid], "legacy"), legacy.embed([text])[0]), pid
        assert stamp_of(back[pid]) == ("legacy", 1)
    assert target_held(qdrant, docs, migration.plan.target) == set()


class PosingAsServer:
    """The real client, taken for a server by the store (which then takes its one-request write paths)."""

    _client = None

    def __init__(self, real: QdrantClient) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("server_path", [False, True], ids=["local-path", "server-path"])
def test_a_conditional_write_stamps_and_backs_up_only_the_points_it_wrote(
    qdrant: QdrantClient,
    names: Any,
    legacy: HashEmbedder,
    newer: HashEmbedder,
    source_spec: lq.ModelSpec,
    newer_spec: lq.ModelSpec,
    server_path: bool,
) -> None:
    lattice = make_lattice(PosingAsServer(qdrant) if server_path else qdrant, names)
    assert lattice.store.is_local is not server_path
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=8)
    stamp_some(qdrant, docs, source_spec, [0, 2, 4, 6])
    qdrant.set_payload(docs, {"group": "a"}, points=[0, 1])
    qdrant.set_payload(docs, {"group": "b"}, points=[2, 3, 4, 5, 6, 7])
    migration = lattice.plan(
        docs, source=source_spec, target=newer_spec, source_vector="legacy", strategy="reembed"
    )
    migration.start()
    original = records(qdrant, docs)
    only_a = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="a"))])

    def doc(text: str) -> models.Document:
        return models.Document(text=text, model="m")

    rewritten = {"legacy": doc("rewritten")}
    lattice.update_vectors(
        docs, [models.PointVectors(id=i, vector=rewritten) for i in range(4)], update_filter=only_a
    )
    # upserts the filter or the mode turn away, and a new id the filter lets through (it inserts)
    upserted = {"text": "upserted", "group": "b"}
    lattice.upsert(
        docs, [models.PointStruct(id=4, vector=doc("upserted"), payload=upserted)], update_filter=only_a
    )
    lattice.upsert(docs, [models.PointStruct(id=5, vector=doc("upserted"), payload=upserted)],
                   update_mode=models.UpdateMode.INSERT_ONLY)  # fmt: skip
    lattice.upsert(docs, [models.PointStruct(id=50, vector=doc("inserted"), payload={"text": "inserted"})],
                   update_filter=only_a)  # fmt: skip
    now = records(qdrant, docs)
    for pid in (0, 1):  # written: the target's vector, and its stamp
        assert same_direction(vector_of(now[pid], "legacy"), newer.embed(["rewritten"])[0])
        assert stamp_of(now[pid]) == ("modern", 1)
    assert stamp_of(now[50]) == ("modern", 1)
    for pid in (2, 3, 4, 5, 6, 7):  # turned away: vector, payload and stamp as they were
        assert now[pid] == original[pid], pid

    # the backup took entries for the written points only: a restore gives every other point its own
    report = migration.restore()
    assert report.verified and report.skipped_changed.count == 0
    back = records(qdrant, docs)
    for pid in (0, 1):
        assert same_direction(vector_of(back[pid], "legacy"), legacy.embed(["rewritten"])[0])
    assert same_direction(vector_of(back[50], "legacy"), legacy.embed(["inserted"])[0])
    for pid in (2, 3, 4, 5, 6, 7):
        assert same_direction(vector_of(back[pid], "legacy"), vector_of(original[pid], "legacy")), pid
        assert stamp_of(back[pid]) == stamp_of(original[pid])


# --------------------------------------------------------------------------- bad inputs and refusals


def test_plain_vectors_are_refused_while_both_models_write_one_name(
    planned: Plan, lattice: lq.LatticeClient, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    migration = planned(n=6)
    docs = migration.collection
    # before start a plain vector is the source model's, stamped so
    lattice.upsert(docs, [models.PointStruct(id=50, vector={"legacy": legacy.embed(["a"])[0].tolist()},
                                             payload={"text": "a"})])  # fmt: skip
    assert stamp_of(records(lattice.client, docs)[50]) == ("legacy", 1)
    migration.start()
    plain = legacy.embed(["b"])[0].tolist()
    for vector in (plain, {"legacy": plain}):
        ambiguous = r"ambiguous while a re-embed writes both models under 'legacy' \(both are 64-d\): give a"
        with pytest.raises(lq.VectorValidationError, match=ambiguous) as err:
            lattice.upsert(docs, [models.PointStruct(id=51, vector=vector, payload={"text": "b"})])
        assert err.value.problems[0][0] == 51
    with pytest.raises(lq.VectorValidationError, match="ambiguous"):
        lattice.update_vectors(docs, [models.PointVectors(id=1, vector={"legacy": plain})])
    with pytest.raises(lq.VectorValidationError, match="missing vector 'legacy'"):
        lattice.upsert(docs, [models.PointStruct(id=52, vector={}, payload={"other": 1})])
    assert 51 not in records(lattice.client, docs) and 52 not in records(lattice.client, docs)
    # text in the payload is enough: both models embed it
    lattice.upsert(docs, [models.PointStruct(id=51, vector={}, payload={"text": "b"})])
    assert same_direction(vector_of(records(lattice.client, docs)[51], "legacy"), newer.embed(["b"])[0])
    run_backfill(migration, newer)
    migration.cutover()
    migration.finalize(force=True)
    # after finalize a plain vector is the target model's
    lattice.upsert(
        docs, [models.PointStruct(id=53, vector=newer.embed(["c"])[0].tolist(), payload={"text": "c"})]
    )
    assert stamp_of(records(lattice.client, docs)[53]) == ("modern", 1)


def test_finalize_with_points_on_the_source_is_refused_even_forced(
    planned: Plan, newer: HashEmbedder
) -> None:
    migration = planned(n=12)
    migration.start()
    run_backfill(migration, newer, BackfillOptions(max_points=6))
    migration.cutover(force=True)
    with pytest.raises(lq.RollbackWindowOpenError, match=r"6 point\(s\) .* still hold the source model"):
        migration.finalize(force=True)
    assert not migration.snapshot(refresh=True).state.finalized


def test_cancel_without_target_points_and_restore_before_start(
    planned: Plan, lattice: lq.LatticeClient
) -> None:
    migration = planned(n=5)
    with pytest.raises(lq.InvalidTransitionError, match="it has not started"):
        migration.restore()
    migration.start()
    state = migration.cancel()
    assert state.status == lq.Status.CANCELLED
    manifest = backups.get_backup(lattice.store, migration.snapshot().backup_id or "")
    assert migration.protects(manifest) is None  # nothing was overwritten: the backup may go
    backups.delete_backup(lattice.store, manifest.backup_id, protected=migration.protects)


# --------------------------------------------------------------------------- the store's write, both paths


@pytest.mark.parametrize("one_request", [True, False], ids=["server-path", "local-path"])
@pytest.mark.parametrize("name", ["legacy", ""])
def test_write_stamped_writes_vector_and_stamp_together_only_where_the_conditions_hold(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, newer: HashEmbedder, one_request: bool, name: str
) -> None:
    docs = names("docs")
    texts = texts_of(6)
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    qdrant.create_collection(docs, vectors_config=params if name == "" else {name: params})
    olds = legacy.embed(texts)
    vectors = [v.tolist() if name == "" else {name: v.tolist()} for v in olds]
    qdrant.upsert(
        docs, [models.PointStruct(id=i, vector=vectors[i], payload={"text": t}) for i, t in enumerate(texts)]
    )
    qdrant.set_payload(docs, {MODEL_FIELD: "modern", VERSION_FIELD: 1}, points=[2])  # already on the target
    qdrant.set_payload(docs, {"text": "changed"}, points=[3])  # the text moved on since it was embedded
    store = Store(qdrant)
    fresh = newer.embed(texts)
    pending = {i: (texts[i], fresh[i]) for i in range(5)}
    pending[77] = ("never there", fresh[5])  # deleted meanwhile: skipped, never created
    written = store.write_stamped(docs, name, "text", pending, ("modern", 1), distance=lq.Distance.COSINE,
                                  unless=stamp_filter("modern", 1), one_request=one_request)  # fmt: skip
    assert sorted(written) == [0, 1, 4]
    now = records(qdrant, docs, name=name)
    assert 77 not in now
    for pid in (0, 1, 4):
        assert same_direction(vector_of(now[pid], name), fresh[pid]) and stamp_of(now[pid]) == ("modern", 1)
    for pid in (2, 3, 5):
        assert same_direction(vector_of(now[pid], name), olds[pid])
    assert stamp_of(now[3]) == stamp_of(now[5]) == (None, None)
    # stamp None takes the stamp away again (a point restored to how it was before it was stamped)
    back = store.write_stamped(
        docs,
        name,
        "text",
        {0: (texts[0], olds[0])},
        None,
        distance=lq.Distance.COSINE,
        one_request=one_request,
    )
    assert back == [0]
    point = records(qdrant, docs, name=name)[0]
    assert same_direction(vector_of(point, name), olds[0]) and set(point.payload or {}) == {"text"}


# --------------------------------------------------------------------------- start, backfill and read-repair


def test_a_start_cut_off_during_its_backup_overwrites_nothing_and_is_redone(
    planned: Plan, lattice: lq.LatticeClient, watched: Watched
) -> None:
    migration = planned(n=30)
    docs, store = migration.collection, migration.store
    original = records(lattice.client, docs)
    # the process dies right after the backup's first page was written
    killed = LoseReply(KeyboardInterrupt(), on=1, when=lambda call: "__backup__" in str(call.collection))
    watched.faults.inject("upsert", killed)
    with pytest.raises(KeyboardInterrupt):
        migration.start()
    assert watched.faults.fired
    assert migration.snapshot(refresh=True).state.status == lq.Status.PLANNED
    cut = backups.list_backups(store, docs)
    assert len(cut) == 1 and not cut[0].complete
    assert records(lattice.client, docs) == original  # nothing was overwritten
    migration.start()
    found = backups.list_backups(store, docs)
    assert len(found) == 1 and found[0].complete and found[0].count == 30  # the cut-off one was deleted
    assert migration.snapshot().backup_id == found[0].backup_id


def test_estimate_status_doctor_and_verify_know_the_strategy(
    planned: Plan, lattice: lq.LatticeClient, newer: HashEmbedder, legacy: HashEmbedder
) -> None:
    migration = planned(n=16)
    docs = migration.collection
    session = commands.Session(settings=Settings(control_collection=lattice.store.control_collection),
                               client=lattice.client)  # fmt: skip
    doctor = commands.doctor(session, docs)
    assert doctor.safe, doctor.to_dict()
    assert any("overwrites 'legacy' point by point" in f.detail for f in doctor.findings)
    migration.start()
    run_backfill(migration, newer, BackfillOptions(max_points=6))
    dry = estimate(migration, newer)
    assert (dry.todo, dry.total, dry.storage_bytes) == (10, 16, 0)
    status = commands.status(session, [docs])[0]
    assert (status.strategy, status.covered, status.total) == ("reembed", 6, 16)
    assert status.backup_id == migration.snapshot().backup_id
    report = commands.verify(session, docs, all_points=True)
    assert report.clean and report.checked == 16 and report.vectors_checked == 16
    # a write cut off between vector and stamp: the target's vector under the source's stamp
    held = target_held(lattice.client, docs, migration.plan.target)
    victim = next(pid for pid in range(16) if pid not in held)
    text = records(lattice.client, docs)[victim].payload["text"]
    lattice.client.update_vectors(
        docs, [models.PointVectors(id=victim, vector={"legacy": newer.embed([text])[0].tolist()})]
    )
    report = commands.verify(session, docs, all_points=True)
    assert [(m.point_id, m.reason) for m in report.mismatches] == [(victim, "mixed_spaces")]
    # the next backfill selects it again (its stamp says source) and writes vector and stamp
    run_backfill(migration, newer)
    assert commands.verify(session, docs, all_points=True).clean
    assert migration.coverage().covered == 16


def test_read_repair_writes_the_vector_and_the_stamp(
    planned: Plan, lattice: lq.LatticeClient, newer: HashEmbedder
) -> None:
    migration = planned(n=20, read_repair=True, embed_budget=100)
    docs = migration.collection
    migration.start()
    run_backfill(migration, newer, BackfillOptions(max_points=5))
    lattice.query_points(docs, models.Document(text="market announcement", model="m"), limit=3)
    # limit 3, oversample 4: the 12 best of the 15 source-holding points were embedded and written back
    assert len(target_held(lattice.client, docs, migration.plan.target)) == 5 + 12
    lattice.query_points(docs, models.Document(text="market announcement", model="m"), limit=5)
    assert len(target_held(lattice.client, docs, migration.plan.target)) == 20
    for pid, record in records(lattice.client, docs).items():
        assert same_direction(vector_of(record, "legacy"), newer.embed([record.payload["text"]])[0]), pid


def test_source_order_keeps_uncovered_points_at_their_source_rank(
    planned: Plan, lattice: lq.LatticeClient, newer: HashEmbedder, legacy: HashEmbedder
) -> None:
    migration = planned(n=20, missing_policy="source_order")
    docs = migration.collection
    migration.start()
    run_backfill(migration, newer, BackfillOptions(max_points=8))
    held = target_held(lattice.client, docs, migration.plan.target)
    query = "baked bread every morning"
    hits = lattice.query_points(docs, models.Document(text=query, model="m"), limit=20).points
    texts = {pid: r.payload["text"] for pid, r in records(lattice.client, docs).items()}
    for point in hits:
        model = newer if point.id in held else legacy  # each scored in the space of the model it holds
        want = float(unit(model.embed([texts[point.id]])[0]) @ unit(model.embed([query])[0]))
        assert point.score == pytest.approx(want, abs=1e-5), point.id


# --------------------------------------------------------------------------- a backfill killed with SIGKILL


@pytest.mark.slow
def test_a_reembed_backfill_killed_at_random_moments_finishes_exactly(
    tmp_path: Path, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    n = 1500
    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    try:
        fill_collection(client, "docs", legacy, n=n)
        original = records(client, "docs")
    finally:
        client.close()
    log_path = tmp_path / "child.log"
    command = [sys.executable, str(CHILD), "--path", str(path), "--collection", "docs", "--control", "ctl",
               "--strategy", "reembed", "--batch-size", "50"]  # fmt: skip
    with log_path.open("w") as log:
        for delay in (0.1, 0.4, 0.2):
            with subprocess.Popen(
                [*command, "--max-rate", "300", "--progress"], stdout=subprocess.PIPE, stderr=log, text=True
            ) as proc:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready", log_path.read_text()
                # kill once writes are landing, however slowly a loaded machine got there
                assert proc.stdout.readline().startswith("written "), log_path.read_text()
                time.sleep(delay)
                proc.kill()
                proc.wait()
            assert proc.returncode == -signal.SIGKILL, log_path.read_text()
        client = QdrantClient(path=str(path))
        try:
            cut = target_held(client, "docs", newer.spec("modern", 1))
            assert 0 < len(cut) < n  # the kills landed mid-backfill (throttled at 300 points/s)
            now = records(client, "docs")
            for pid in cut:  # whatever the stamp says the target holds, it holds
                assert same_direction(
                    vector_of(now[pid], "legacy"), newer.embed([now[pid].payload["text"]])[0]
                )
        finally:
            client.close()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True) as proc:
            out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, log_path.read_text()
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["stopped_by"], report["covered"], report["total"]) == ("done", n, n)
    client = QdrantClient(path=str(path))
    try:
        now = records(client, "docs")
        fresh = newer.embed([now[pid].payload["text"] for pid in range(n)])
        for pid in range(n):
            assert same_direction(vector_of(now[pid], "legacy"), fresh[pid]), pid
            assert stamp_of(now[pid]) == ("modern", 1), pid
        lattice = lq.wrap(client, control_collection="ctl", refresh_interval=0.0,
                          embedders={"legacy": legacy, "modern": newer})  # fmt: skip
        migration = lattice.migration("docs")
        assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED
        report = migration.restore()
        assert (report.restored, report.verified, report.checksum_ok) == (n, True, True)
        back = records(client, "docs")
        for pid in range(n):
            assert same_direction(
                vector_of(back[pid], "legacy"), vector_of(original[pid], "legacy"), atol=1e-6
            )
    finally:
        client.close()


# --------------------------------------------------------------------------- the CLI


def test_the_reembed_lifecycle_through_the_cli(cli: Any, legacy: HashEmbedder) -> None:
    docs = cli.docs
    client = cli.qdrant()
    fill_collection(client, docs, legacy, n=30)
    original = records(client, docs)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "64")
    cli("models", "register", "wide", "--name", "hash:bow-2-wide", "--dimension", "96")
    refused = cli("plan", docs, "--source", "legacy", "--target", "wide", "--source-vector", "legacy",
                  "--strategy", "reembed", code=2)  # fmt: skip
    assert "use the blue_green strategy" in refused.output
    out = cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
              "--strategy", "reembed", "--rollback-window", "1h").output  # fmt: skip
    assert "planned/stable" in out and "(vector 'legacy')" in out
    doctor = cli("doctor", docs).output
    assert "safe to start" in doctor
    out = cli("start", docs).output
    assert (
        "in_progress/migrating" in out
        and "re-embed: one vector, the payload stamp says which model; backup" in out
    )
    backup = json.loads(cli("backups", "list", docs, "--json").output)[0]
    assert backup["reason"] == "reembed" and backup["count"] == 30 and backup["complete"]
    refused = cli("backups", "delete", backup["backup_id"], code=3)
    assert "only copy of its source vectors" in refused.output
    cli("backfill", docs, "--max-points", "10", "--batch-size", "5")
    status = json.loads(cli("status", docs, "--json").output)[0]
    assert (status["strategy"], status["covered"], status["total"]) == ("reembed", 10, 30)
    refused = cli("cancel", docs, code=3)
    assert "lattice-qdrant restore" in refused.output
    cli("backfill", docs)
    cli("cutover", docs)
    out = cli("finalize", docs, "--force").output
    assert "completed/stable (finalized)" in out
    out = cli("restore", docs).output
    assert "restored 30 vectors" in out and "verified" in out and "cancelled/stable" in out
    client = cli.qdrant()
    try:
        back = records(client, docs)
        for pid, record in original.items():
            assert same_direction(vector_of(back[pid], "legacy"), vector_of(record, "legacy"), atol=1e-6)
            assert stamp_of(back[pid]) == (None, None)
    finally:
        client.close()


@pytest.mark.integration
@pytest.mark.skipif(not QDRANT_URL, reason="QDRANT_URL is not set")
def test_the_server_takes_the_one_request_write(
    names: Any, legacy: HashEmbedder, newer: HashEmbedder
) -> None:
    """On a real server the default path is the single batch request (checked above by forcing it locally)."""
    client = QdrantClient(url=QDRANT_URL, timeout=30)
    docs = names("docs")
    try:
        fill_collection(client, docs, legacy, n=8)
        store = Store(client)
        assert not store.is_local
        texts = texts_of(8)
        fresh = newer.embed(texts)
        written = store.write_stamped(docs, "legacy", "text", {i: (texts[i], fresh[i]) for i in range(8)},
                                      ("modern", 1), distance=lq.Distance.COSINE)  # fmt: skip
        assert sorted(written) == list(range(8))
    finally:
        client.delete_collection(docs)
        client.close()
