"""The blue-green strategy: a new collection, dual writes to both, an alias switch at cutover."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import commands
from lattice_qdrant.backfill import run_backfill
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import MODEL_FIELD
from lattice_qdrant.testing import Call, Fail, LoseReply, Meanwhile

from conftest import CORPUS, MakeMigration, Watched, make_lattice, same_direction


def unnamed_collection(client: QdrantClient, name: str, embedder: HashEmbedder, n: int) -> None:
    """A collection whose only vector is the unnamed default one (what in place refuses)."""
    client.create_collection(
        name, vectors_config=models.VectorParams(size=embedder.dimension, distance=models.Distance.COSINE)
    )
    texts = [f"{CORPUS[i % len(CORPUS)]} (note {i})" for i in range(n)]
    vectors = embedder.embed(texts)
    client.upsert(
        name,
        [
            models.PointStruct(id=i, vector=vectors[i].tolist(), payload={"text": t, "n": i})
            for i, t in enumerate(texts)
        ],
    )


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, watched: Watched) -> lq.LatticeClient:
    """The wrapped client, over a store the tests watch and act through."""
    return make_lattice(qdrant, names, store=watched)


@pytest.fixture
def blue(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> lq.Migration:
    docs, alias = names("docs"), names("live")
    unnamed_collection(lattice.client, docs, legacy, 30)
    # in place is refused at plan, naming the strategies that handle the layout; nothing is recorded
    with pytest.raises(lq.UnnamedVectorError, match=r"blue-green strategy .* the re-embed"):
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="")
    with pytest.raises(lq.MigrationNotFoundError):
        lattice.migration(docs)
    return lattice.plan(
        docs,
        source=source_spec,
        target=target_spec,
        source_vector="",
        strategy="blue_green",
        alias=alias,
        rollback_window=3600,
    )


def search_alias(client: QdrantClient, alias: str, vector: Any) -> list[Any]:
    """A reader that does not use the wrapper: plain qdrant-client through the alias."""
    return [p.id for p in client.query_points(alias, query=list(vector), limit=3).points]


def test_full_blue_green_lifecycle_on_an_unnamed_vector_collection(
    blue: lq.Migration, lattice: lq.LatticeClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    plan = blue.plan
    qdrant = lattice.client
    docs, target, alias = plan.collection, plan.data_collection, plan.alias
    assert alias and target == f"{docs}__modern-v1" and plan.target_vector == ""

    state = blue.start()
    assert state.phase == lq.Phase.MIGRATING
    assert qdrant.count(target, exact=True).count == 30  # the copy
    assert qdrant.get_collection(target).config.params.vectors.size == modern.dimension
    # readers through the alias still find the source collection
    assert search_alias(qdrant, alias, legacy.embed([CORPUS[0]])[0])[0] % len(CORPUS) == 0

    # writes reach both collections, each with its own model's vector; deletes too
    text = "a dog chases the cat across the garden"
    lattice.upsert(alias, [models.PointStruct(id=500, vector=models.Document(text=text, model="m"),
                                              payload={"text": text})])  # fmt: skip
    old = qdrant.retrieve(docs, [500], with_vectors=True)[0]
    new = qdrant.retrieve(target, [500], with_vectors=True)[0]
    assert same_direction(old.vector, legacy.embed([text])[0], atol=1e-5)
    assert same_direction(new.vector, modern.embed([text])[0], atol=1e-5)
    assert old.payload[MODEL_FIELD] == "legacy" and new.payload[MODEL_FIELD] == "modern"
    lattice.delete(docs, points_selector=models.PointIdsList(points=[29]))
    assert qdrant.retrieve(docs, [29]) == [] and qdrant.retrieve(target, [29]) == []
    lattice.set_payload(docs, payload={"tag": "x"}, points=[3])
    assert qdrant.retrieve(target, [3])[0].payload["tag"] == "x"

    with pytest.raises(lq.ThresholdNotMetError):
        blue.cutover()
    report = run_backfill(blue, modern)
    assert report.coverage == 1.0 and blue.state.status == lq.Status.COMPLETED

    state = blue.cutover()
    assert state.phase == lq.Phase.ROLLBACK_WINDOW
    assert qdrant.get_aliases().aliases[0].collection_name == target
    # an alias reader now searches the new model's space, unchanged code
    assert search_alias(qdrant, alias, modern.embed([CORPUS[1]])[0])[0] % len(CORPUS) == 1
    # the wrapper queries the target collection with the target model
    hit = lattice.query_points(docs, models.Document(text=text, model="m"), limit=1)
    assert hit.points[0].id == 500

    blue.rollback()
    assert {a.alias_name: a.collection_name for a in qdrant.get_aliases().aliases}[alias] == docs
    hit = lattice.query_points(alias, models.Document(text=text, model="m"), limit=1)
    assert hit.points[0].id == 500
    blue.cutover()
    blue.finalize(force=True)
    assert not qdrant.collection_exists(docs)
    assert {a.alias_name: a.collection_name for a in qdrant.get_aliases().aliases}[alias] == target
    # after finalize, writes by the old name go to the target collection only
    lattice.upsert(docs, [models.PointStruct(id=600, vector=models.Document(text="late", model="m"),
                                             payload={"text": "late"})])  # fmt: skip
    assert qdrant.retrieve(target, [600])[0].payload[MODEL_FIELD] == "modern"
    assert blue.coverage().total == qdrant.count(target, exact=True).count


def test_a_conditional_update_is_stamped_in_each_collection_only_where_it_wrote(
    blue: lq.Migration, lattice: lq.LatticeClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    plan = blue.plan
    qdrant = lattice.client
    blue.start()
    colls = {plan.collection: (legacy, "legacy"), plan.data_collection: (modern, "modern")}
    before = {c: {r.id: r for r in qdrant.retrieve(c, range(4), with_vectors=True)} for c in colls}
    first_two = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=2))])
    lattice.update_vectors(
        plan.collection,
        [models.PointVectors(id=i, vector=models.Document(text="rewritten", model="m")) for i in range(4)],
        update_filter=first_two,
    )
    for coll, (embedder, model_id) in colls.items():
        now = {r.id: r for r in qdrant.retrieve(coll, range(4), with_vectors=True)}
        for pid in (0, 1):
            assert same_direction(now[pid].vector, embedder.embed(["rewritten"])[0])
            assert now[pid].payload[MODEL_FIELD] == model_id
        for pid in (2, 3):
            assert now[pid] == before[coll][pid], (coll, pid)


def copying(plan: lq.MigrationPlan) -> Any:
    """Whether a call is the copy's read of the source collection."""
    return lambda call: call.collection == plan.collection


def test_copy_never_overwrites_a_dual_write_and_drops_points_deleted_meanwhile(
    blue: lq.Migration, lattice: lq.LatticeClient, watched: Watched
) -> None:
    plan = blue.plan
    qdrant = lattice.client

    def application(call: Call) -> None:
        # the application writes and deletes through the wrapper while the copy is about to run
        fresh = models.PointStruct(
            id=4, vector=models.Document(text="fresh", model="m"), payload={"text": "fresh"}
        )
        lattice.upsert(plan.collection, [fresh])
        qdrant.delete(plan.collection, points_selector=models.PointIdsList(points=[5]))  # outside the wrapper

    watched.faults.inject("iter_points", Meanwhile(application, on=1, when=copying(plan)))
    blue.start()
    assert watched.faults.fired
    assert qdrant.retrieve(plan.data_collection, [4])[0].payload["text"] == "fresh"
    assert qdrant.retrieve(plan.data_collection, [5]) == []
    assert qdrant.count(plan.data_collection, exact=True).count == 29


def test_a_copy_cut_off_is_finished_by_start_and_blocks_backfill_and_cutover(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder, watched: Watched
) -> None:
    watched.faults.inject("iter_points", Fail(KeyboardInterrupt(), on=1, when=copying(blue.plan)))
    with pytest.raises(KeyboardInterrupt):
        blue.start()
    assert blue.state.status == lq.Status.IN_PROGRESS  # dual-writes run; the copy did not finish
    with pytest.raises(lq.MigrationError, match=r"copy .* is not complete"):
        run_backfill(blue, modern)
    with pytest.raises(lq.InvalidTransitionError, match="copy"):
        blue.cutover(force=False)
    blue.start()  # finishes the copy
    assert run_backfill(blue, modern).coverage == 1.0


def test_an_alias_switch_cut_off_is_repaired_by_the_next_call(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder, watched: Watched
) -> None:
    plan = blue.plan
    blue.start()
    run_backfill(blue, modern)
    # the process dies between recording the cutover and switching the alias
    watched.faults.inject("switch_alias", Fail(KeyboardInterrupt(), on=1))
    with pytest.raises(KeyboardInterrupt):
        blue.cutover()
    assert blue.snapshot(refresh=True).state.phase == lq.Phase.ROLLBACK_WINDOW
    assert lattice.store.alias_target(plan.alias or "") == plan.collection  # the switch never happened
    assert blue.sync_alias() is True
    assert lattice.store.alias_target(plan.alias or "") == plan.data_collection


def test_cutover_refuses_a_missing_target_collection(blue: lq.Migration, lattice: lq.LatticeClient) -> None:
    blue.start()
    lattice.client.delete_collection(blue.plan.data_collection)
    with pytest.raises(lq.CollectionNotFoundError, match="target collection does not exist"):
        blue.cutover(force=True)
    assert lattice.store.alias_target(blue.plan.alias or "") == blue.plan.collection


def test_cancel_keeps_the_alias_on_the_source_and_drops_the_new_collection(
    blue: lq.Migration, lattice: lq.LatticeClient
) -> None:
    blue.start()
    blue.cancel()
    assert not lattice.client.collection_exists(blue.plan.data_collection)
    assert lattice.store.alias_target(blue.plan.alias or "") == blue.plan.collection


def test_blue_green_with_named_vectors_and_the_source_vector_kept(
    lattice: lq.LatticeClient, make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12, started=False, strategy="blue_green", copy_source_vector=True)
    docs = migration.collection
    plan = migration.plan
    assert plan.target_vector == "modern-v1" and plan.alias is None
    migration.start()
    rec = lattice.client.retrieve(plan.data_collection, [3], with_vectors=True)[0]
    assert set(rec.vector) == {"legacy"}  # copied; the target vector comes from the backfill
    run_backfill(migration, modern)
    migration.cutover()
    rec = lattice.client.retrieve(plan.data_collection, [3], with_vectors=True)[0]
    assert set(rec.vector) == {"legacy", "modern-v1"}
    hit = lattice.query_points(docs, models.Document(text=CORPUS[3], model="m"), limit=1)
    assert hit.points[0].id % len(CORPUS) == 3


def test_mixed_mode_works_across_the_two_collections(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    from lattice_qdrant.backfill import BackfillOptions

    blue.start()
    run_backfill(blue, modern, BackfillOptions(until=50, batch_size=5))
    res = lattice.query_points(blue.plan.collection, models.Document(text=CORPUS[2], model="m"), mode="mixed",
                               limit=3)  # fmt: skip
    assert res.points[0].id % len(CORPUS) == 2
    # the target vector is the unnamed one here: the covered candidates are rescored from it, not re-embedded
    from lattice_qdrant.mixed import mixed_query

    plan = blue.plan
    found = mixed_query(lattice.store, plan, CORPUS[2], limit=3, missing="source_order",
                        embed_source=lattice.embedder(plan.source).embed,
                        embed_target=lattice.embedder(plan.target).embed)  # fmt: skip
    assert found.rescored > 0 and found.embedded == 0


def test_verify_checks_the_source_collection_against_the_source_model(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    """The target vector keeps the source vector's name (here the unnamed one), but it lives in the target
    collection: the source collection's vectors are the source model's."""
    from lattice_qdrant.verify import verify

    blue.start()
    run_backfill(blue, modern)
    report = verify(lattice.store, lattice.registry, blue.collection, all_points=True,
                    embedder_for_spec=lattice.embedder)  # fmt: skip
    assert report.vectors == {"": blue.plan.source.qualified_id}
    assert report.checked == 30 and report.clean, report.mismatches[:3]


def test_compare_searches_the_target_in_the_target_collection(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    """The target vector keeps the source vector's name, in another collection: shadow comparison
    searches each model where its vectors are, whatever the routing."""
    from lattice_qdrant import compare as cmp

    blue.start()
    run_backfill(blue, modern)
    report = cmp.compare(lattice, blue.collection, [], sample=6)
    assert report.systems == ("source", "target", "mixed") and report.covered == report.total == 30
    assert all(o.results["target"] for o in report.outcomes)
    assert report.at_k[-1].recall["target"] == 1.0  # each known item is found by its own point


def test_doctor_checks_a_blue_green_plan_by_its_strategy(
    blue: lq.Migration, lattice: lq.LatticeClient
) -> None:
    """The unnamed vector is what blue-green is for, and the target vector's name is free in the new
    collection even though the source collection has a vector of that name."""
    session = commands.Session(
        settings=Settings(control_collection=lattice.store.control_collection), client=lattice.client
    )
    report = commands.doctor(session, blue.collection)
    assert report.safe, report.to_dict()
    found = {f.check: f.detail for f in report.findings}
    assert "vectors" not in found and repr(blue.plan.data_collection) in found["target vector"]
    assert "copy of every point's payload" in found["storage"]


def test_status_through_a_blue_green_lifecycle(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    from lattice_qdrant import commands
    from lattice_qdrant.cli import render_status
    from lattice_qdrant.config import Settings

    session = commands.Session(
        settings=Settings(control_collection=lattice.store.control_collection), client=lattice.client
    )
    plan = blue.plan
    blue.start()
    run_backfill(blue, modern)
    blue.cutover()
    report = commands.status(session, [plan.collection])[0]
    assert report.strategy == "blue_green" and report.alias_points_to == plan.data_collection
    assert f"alias {plan.alias!r} -> {plan.data_collection!r}" in render_status(report)
    blue.finalize(force=True)  # drops the source collection
    report = commands.status(session, [plan.collection])[0]
    assert report.finalized and report.covered == report.total == 30
    assert "nothing to do" in report.next_step


def test_restore_after_a_blue_green_finalize_rebuilds_the_source_collection(
    blue: lq.Migration, lattice: lq.LatticeClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    qdrant = lattice.client
    plan = blue.plan
    docs, target, alias = plan.collection, plan.data_collection, plan.alias
    blue.start()
    run_backfill(blue, modern)
    blue.cutover()
    original = {r.id: r for r in qdrant.scroll(docs, limit=100, with_vectors=True)[0]}
    blue.finalize(force=True)
    assert not qdrant.collection_exists(docs)
    # the application keeps writing after finalize: a changed text, a new point, a deleted point
    for pid, text in ((5, "rewritten"), (99, "brand new")):
        lattice.upsert(docs, [models.PointStruct(id=pid, vector=models.Document(text=text, model="m"),
                                                 payload={"text": text})])  # fmt: skip
    lattice.delete(docs, points_selector=models.PointIdsList(points=[7]))
    session = commands.Session(
        settings=Settings(control_collection=lattice.store.control_collection), client=qdrant
    )

    outcome = commands.restore(session, docs)

    report = outcome.report
    assert report.verified and report.restored == len(original) - 2
    assert list(report.skipped_changed.ids) == [5] and list(report.skipped_missing.ids) == [7]
    assert outcome.embedded == 2  # the changed point and the new one, with the source model
    state = blue.snapshot(refresh=True).state
    assert state.phase == lq.Phase.ROLLBACK_WINDOW and not state.finalized
    assert {a.alias_name: a.collection_name for a in qdrant.get_aliases().aliases}[alias] == target
    # the source collection again: its unnamed vector, every point, each with its own vector back
    assert qdrant.get_collection(docs).config.params.vectors.size == legacy.dimension
    stored = {r.id: r for r in qdrant.scroll(docs, limit=200, with_vectors=True)[0]}
    assert sorted(stored) == sorted((set(original) - {7}) | {99})
    for pid, record in original.items():
        if pid not in (5, 7):
            assert same_direction(stored[pid].vector, record.vector, atol=1e-6), pid
            assert stored[pid].payload["text"] == record.payload["text"]
    assert same_direction(stored[5].vector, legacy.embed(["rewritten"])[0], atol=1e-6)
    assert same_direction(stored[99].vector, legacy.embed(["brand new"])[0], atol=1e-6)
    assert {r.payload[MODEL_FIELD] for r in stored.values()} == {"legacy"}
    # writes reach both collections again
    lattice.upsert(docs, [models.PointStruct(id=100, vector=models.Document(text="again", model="m"),
                                             payload={"text": "again"})])  # fmt: skip
    assert qdrant.retrieve(docs, [100]) and qdrant.retrieve(target, [100])

    blue.rollback()
    assert {a.alias_name: a.collection_name for a in qdrant.get_aliases().aliases}[alias] == docs
    # readers of the alias search the old model's space again, unchanged code
    assert search_alias(qdrant, alias, legacy.embed([CORPUS[2]])[0])[0] % len(CORPUS) == 2


def test_a_blue_green_restore_cut_off_halfway_is_finished_by_the_next_call(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder, watched: Watched
) -> None:
    qdrant = lattice.client
    docs = blue.plan.collection
    blue.start()
    run_backfill(blue, modern)
    blue.cutover()
    original = {r.id: r.vector for r in qdrant.scroll(docs, limit=100, with_vectors=True)[0]}
    blue.finalize(force=True)
    # the copy back writes its first page, then the connection is lost
    lost = lq.TransientStoreError("connection lost")
    watched.faults.inject("upsert", LoseReply(lost, on=1, when=lambda call: call.collection == docs))
    with pytest.raises(lq.TransientStoreError):
        blue.restore()
    assert watched.faults.fired
    assert blue.snapshot(refresh=True).state.phase == lq.Phase.ROLLBACK_WINDOW  # writes are dual already

    report = blue.restore()

    assert report.verified and report.restored == len(original)
    stored = {r.id: r.vector for r in qdrant.scroll(docs, limit=100, with_vectors=True)[0]}
    assert sorted(stored) == sorted(original)
    for pid, vector in original.items():
        assert same_direction(stored[pid], vector, atol=1e-6), pid


def test_restore_of_a_blue_green_migration_whose_target_collection_is_gone(
    blue: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    blue.start()
    run_backfill(blue, modern)
    blue.cutover()
    blue.finalize(force=True)
    lattice.client.delete_collection(blue.plan.data_collection)
    with pytest.raises(lq.CollectionNotFoundError, match="cannot be rebuilt"):
        blue.restore()
    assert blue.snapshot(refresh=True).state.finalized  # nothing changed
