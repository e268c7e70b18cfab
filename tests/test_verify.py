"""``verify``: re-embed points and find those whose vectors do not match their recorded model.

Damage is done with the raw client (random vectors, another model's vectors, stamps that lie), as a buggy
writer outside the wrapper would; races are injected deterministically by wrapping ``Store.update_vectors``.
A bug found in the library is pinned by a test marked ``xfail(strict=True)`` whose reason names it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.backfill import run_backfill
from lattice_qdrant.embedders import HashEmbedder, embedder_for
from lattice_qdrant.errors import ConfigError
from lattice_qdrant.spec import Distance
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD
from lattice_qdrant.testing import Call, Meanwhile
from lattice_qdrant.verify import (
    REASONS,
    Mismatch,
    VerifyReport,
    reservoir_sample,
    vectors_match,
    verify,
)

from conftest import MakeMigration, Watched, fill_collection, make_lattice, same_direction

TARGET = "modern-v1"

# --------------------------------------------------------------------------- helpers


def record(client: QdrantClient, collection: str, pid: Any) -> models.Record:
    return client.retrieve(collection, [pid], with_payload=True, with_vectors=True)[0]


def random_vector(dimension: int, seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=dimension).tolist()


def corrupt(client: QdrantClient, collection: str, ids: Sequence[Any], vector: str, dimension: int) -> None:
    """Overwrite ``vector`` of ``ids`` with random values (payload untouched)."""
    client.update_vectors(
        collection,
        [
            models.PointVectors(id=pid, vector={vector: random_vector(dimension, i)})
            for i, pid in enumerate(ids)
        ],
    )


#: the store method verify's fix writes with
FIX = "update_if_unchanged"


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, watched: Watched) -> lq.LatticeClient:
    """The wrapped client, over a store the tests watch and act through."""
    return make_lattice(qdrant, names, store=watched)


def check(lattice: lq.LatticeClient, collection: str, **kwargs: Any) -> VerifyReport:
    kwargs.setdefault("all_points", True)
    return verify(lattice.store, lattice.registry, collection, **kwargs)


def found(report: VerifyReport, reason: str | None = None) -> set[Any]:
    return {m.point_id for m in report.mismatches if reason is None or m.reason == reason}


def consistent(report: VerifyReport) -> None:
    assert report.checked == report.matched + report.points_mismatched + report.unverifiable
    assert report.mismatched >= report.points_mismatched
    assert report.fixed + report.fix_skipped <= report.mismatched
    assert report.remaining == report.mismatched - report.fixed
    assert report.clean == (report.remaining == 0)
    json.dumps(report.to_dict(), default=str)


Make = Callable[..., lq.Migration]


@pytest.fixture
def migrated(make_migration: MakeMigration, modern: HashEmbedder) -> Make:
    """A collection of ``n`` points, planned, started and (by default) fully backfilled."""

    def make(n: int = 24, *, backfilled: bool = True, texts: list[str] | None = None) -> lq.Migration:
        migration = make_migration(n, texts=texts)
        if backfilled:
            run_backfill(migration, modern)
        return migration

    return make


# --------------------------------------------------------------------------- what it finds


def test_a_clean_migrated_collection_verifies_clean(migrated: Make, lattice: lq.LatticeClient) -> None:
    docs = migrated().collection
    report = check(lattice, docs)
    consistent(report)
    assert (report.checked, report.total, report.matched, report.vectors_checked) == (24, 24, 24, 48)
    assert report.mismatched == report.unverifiable == report.unknown_model == 0
    assert report.clean and report.mismatches == [] and report.sample is None
    plan = lattice.migration(docs).plan
    assert report.vectors == {"legacy": plan.source.qualified_id, TARGET: plan.target.qualified_id}
    # the default: a sample of 200, which here is every point
    sampled = verify(lattice.store, lattice.registry, docs)
    assert (sampled.sample, sampled.checked, sampled.matched) == (200, 24, 24)


def test_a_half_backfilled_collection_verifies_clean(migrated: Make, lattice: lq.LatticeClient) -> None:
    migration = migrated(backfilled=False)
    docs = migration.collection
    run_backfill(migration, embedder_for(migration.plan.target), lq.backfill.BackfillOptions(until=50))
    covered = lattice.store.coverage(docs, TARGET).covered
    assert 0 < covered < 24
    report = check(lattice, docs)
    consistent(report)
    assert report.clean and report.matched == 24 and report.vectors_checked == 24 + covered


def test_corrupted_vectors_are_found_with_their_ids(migrated: Make, lattice: lq.LatticeClient) -> None:
    docs = migrated().collection
    corrupt(lattice.client, docs, [3, 7, 11], TARGET, 96)
    corrupt(lattice.client, docs, [5], "legacy", 64)
    report = check(lattice, docs)
    consistent(report)
    assert found(report, "vector") == {3, 5, 7, 11} == found(report)
    by_id = {m.point_id: m for m in report.mismatches}
    assert {pid: by_id[pid].vector for pid in by_id} == {3: TARGET, 5: "legacy", 7: TARGET, 11: TARGET}
    plan = lattice.migration(docs).plan
    assert by_id[3].model == plan.target.qualified_id and by_id[5].model == plan.source.qualified_id
    for m in report.mismatches:
        assert m.similarity is not None and m.similarity < 1 - 1e-3
        assert m.error is not None and m.error > 1e-3 and not m.fixed
    assert (report.matched, report.points_mismatched, report.mismatched) == (20, 4, 4)
    assert not report.clean and report.remaining == 4


def test_a_vector_embedded_from_another_text_is_found(
    migrated: Make, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    docs = migrated().collection
    stale = modern.embed(["an older version of the text"])[0].tolist()
    lattice.client.update_vectors(docs, [models.PointVectors(id=4, vector={TARGET: stale})])
    report = check(lattice, docs)
    assert found(report) == {4} and report.mismatches[0].reason == "vector"


def test_a_point_stamped_with_one_model_holding_vectors_of_another_is_found(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated().collection
    other = HashEmbedder(96, ngrams=2, salt="other")  # the target's shape, another vector space
    other_spec = other.spec("other", 1)
    lattice.registry.register(other_spec)
    texts = {pid: record(lattice.client, docs, pid).payload["text"] for pid in (2, 9)}
    for pid, text in texts.items():
        lattice.client.update_vectors(
            docs, [models.PointVectors(id=pid, vector={TARGET: other.embed([text])[0].tolist()})]
        )
        lattice.client.set_payload(docs, {MODEL_FIELD: "other", VERSION_FIELD: 1}, points=[pid])

    report = check(lattice, docs)
    consistent(report)
    assert found(report, "mixed_spaces") == {2, 9}
    assert found(report, "stamp") == {2, 9}  # the stamp names neither the source nor the target
    mixed = next(m for m in report.mismatches if m.reason == "mixed_spaces")
    assert mixed.vector == TARGET and other_spec.qualified_id in mixed.detail
    assert (report.points_mismatched, report.mismatched, report.matched) == (2, 4, 22)


def test_a_point_stamped_with_the_target_but_without_its_vector_is_found(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated().collection
    lattice.client.delete_vectors(docs, vectors=[TARGET], points=[6])
    report = check(lattice, docs)
    consistent(report)
    assert found(report) == {6}
    (m,) = report.mismatches
    assert (m.reason, m.vector) == ("stamp", TARGET)
    assert "has no 'modern-v1' vector" in m.detail


def test_a_point_holding_the_target_vector_without_a_stamp_is_found(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated().collection
    lattice.client.delete_payload(docs, [MODEL_FIELD, VERSION_FIELD], points=[8])
    report = check(lattice, docs)
    assert found(report, "stamp") == {8} == found(report)


def test_unstamped_points_holding_only_the_source_vector_are_fine(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated(backfilled=False).collection  # fill_collection stamps nothing
    report = check(lattice, docs)
    assert report.clean and report.matched == 24 and report.vectors_checked == 24


def test_a_payload_naming_an_unregistered_model_is_flagged(migrated: Make, lattice: lq.LatticeClient) -> None:
    docs = migrated().collection
    lattice.client.set_payload(docs, {MODEL_FIELD: "ghost", VERSION_FIELD: 3}, points=[1, 2])
    lattice.client.set_payload(docs, {MODEL_FIELD: "modern", VERSION_FIELD: "one"}, points=[3])
    report = check(lattice, docs)
    consistent(report)
    assert report.unknown_model == 3
    assert found(report, "unknown_model") == {1, 2, 3} == found(report)
    assert any("ghost:v3" in m.detail for m in report.mismatches)
    assert all(m.vector is None for m in report.mismatches)


def test_a_changed_model_configuration_makes_everything_mismatch(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated().collection
    v2 = HashEmbedder(96, ngrams=2, salt="modern-two").spec("modern", 2)  # same vector shape, new config
    lattice.registry.register(v2)
    report = check(lattice, docs, vector_models={TARGET: v2})
    consistent(report)
    assert report.vectors == {TARGET: v2.qualified_id}
    assert (report.checked, report.matched, report.points_mismatched, report.vectors_checked) == (
        24,
        0,
        24,
        24,
    )
    assert {m.vector for m in report.mismatches} == {TARGET}
    assert {m.model for m in report.mismatches} == {v2.qualified_id}
    # the stored vectors are v1's, as the stamps say: another space than v2's
    assert {m.reason for m in report.mismatches} == {"mixed_spaces"}
    assert "modern:v1" in report.mismatches[0].detail
    # v1 still verifies clean against the same vector
    v1 = lattice.registry.get("modern", 1)
    assert check(lattice, docs, vector_models={TARGET: v1}).clean


def test_a_changed_configuration_without_a_stamp_is_a_plain_vector_mismatch(
    qdrant: QdrantClient, lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    docs = names("plain")
    fill_collection(qdrant, docs, legacy, n=10)
    v1 = legacy.spec("legacy", 1)
    v2 = HashEmbedder(64, salt="legacy", ngrams=2).spec("legacy", 2)
    lattice.registry.register(v1)
    lattice.registry.register(v2)
    assert check(lattice, docs, vector_models={"legacy": v1}).clean
    report = check(lattice, docs, vector_models={"legacy": v2})
    assert report.mismatched == 10 and {m.reason for m in report.mismatches} == {"vector"}


def test_points_without_text_are_unverifiable_not_mismatched(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated().collection
    lattice.client.delete_payload(docs, ["text"], points=[1])
    lattice.client.set_payload(docs, {"text": "   "}, points=[2])
    lattice.client.set_payload(docs, {"text": 42}, points=[3])
    corrupt(lattice.client, docs, [1], TARGET, 96)  # cannot be told without its text
    report = check(lattice, docs)
    consistent(report)
    assert report.unverifiable == 3 and set(report.unverifiable_ids) == {1, 2, 3}
    assert report.mismatched == 0 and report.clean
    assert report.matched == 21 and report.checked == 24


def test_without_a_plan_vectors_are_mapped_to_registered_models(
    qdrant: QdrantClient, lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    docs = names("plain")
    fill_collection(qdrant, docs, legacy, n=12)
    spec = legacy.spec("legacy", 1)
    lattice.registry.register(spec)
    with pytest.raises(ConfigError, match="has no migration"):
        check(lattice, docs)
    with pytest.raises(ConfigError, match="has no vector 'nope'"):
        check(lattice, docs, vector_models={"nope": spec})
    with pytest.raises(ConfigError, match="is 64-d Cosine, but small:v1"):
        check(lattice, docs, vector_models={"legacy": HashEmbedder(32).spec("small", 1)})
    dot = spec.model_copy(update={"distance": Distance.DOT})
    with pytest.raises(ConfigError, match="64-d Dot"):
        check(lattice, docs, vector_models={"legacy": dot})
    corrupt(qdrant, docs, [0], "legacy", 64)
    report = check(lattice, docs, vector_models={"legacy": spec})
    assert found(report) == {0} and report.matched == 11
    # a stamp naming the mapped model on a point without its vector
    qdrant.set_payload(docs, {MODEL_FIELD: "legacy", VERSION_FIELD: 1}, points=[5])
    qdrant.delete_vectors(docs, vectors=["legacy"], points=[5])
    report = check(lattice, docs, vector_models={"legacy": spec})
    assert found(report, "stamp") == {5}


def test_bad_arguments_are_refused(migrated: Make, lattice: lq.LatticeClient) -> None:
    docs = migrated(n=4).collection
    with pytest.raises(ConfigError, match="tolerance"):
        check(lattice, docs, tolerance=2.0)
    with pytest.raises(ConfigError, match="sample"):
        check(lattice, docs, all_points=False, sample=0)
    with pytest.raises(ConfigError, match="page_size"):
        check(lattice, docs, page_size=0)


def test_a_long_text_embedded_truncated_as_the_backfill_does_matches(
    migrated: Make, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    long = "a long document " * 20 + "whose end the backfill never embedded"
    docs = migrated(n=3, texts=["short one", long, "short three"], backfilled=False).collection
    run_backfill(lattice.migration(docs), modern, lq.backfill.BackfillOptions(max_text_chars=100))
    assert not check(lattice, docs, max_text_chars=None).clean  # the full text gives another vector
    report = check(lattice, docs, max_text_chars=100)
    assert report.clean and report.matched == 3


# --------------------------------------------------------------------------- fix


def test_fix_repairs_and_a_second_run_is_clean(
    migrated: Make, lattice: lq.LatticeClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    docs = migrated().collection
    corrupt(lattice.client, docs, [3, 7], TARGET, 96)
    corrupt(lattice.client, docs, [5], "legacy", 64)
    lattice.client.delete_payload(docs, [MODEL_FIELD, VERSION_FIELD], points=[10])
    lattice.client.set_payload(docs, {MODEL_FIELD: "ghost", VERSION_FIELD: 1}, points=[12])
    lattice.client.set_payload(docs, {"text": ""}, points=[14])

    report = check(lattice, docs, fix=True)
    consistent(report)
    assert found(report) == {3, 5, 7, 10, 12}
    assert (report.fixed, report.fix_skipped, report.remaining) == (5, 0, 0)
    assert all(m.fixed for m in report.mismatches) and report.clean
    assert report.unverifiable == 1

    again = check(lattice, docs)
    assert again.clean and again.mismatched == 0 and again.matched == 23
    for pid in (3, 5, 7, 10, 12):
        point = record(lattice.client, docs, pid)
        text = point.payload["text"]
        assert same_direction(point.vector[TARGET], modern.embed([text])[0])
        assert same_direction(point.vector["legacy"], legacy.embed([text])[0])
        assert (point.payload[MODEL_FIELD], point.payload[VERSION_FIELD]) == ("modern", 1)


def test_fix_with_a_changed_configuration_rewrites_and_restamps(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated(n=8).collection
    v2 = HashEmbedder(96, ngrams=2, salt="modern-two")
    spec = v2.spec("modern", 2)
    lattice.registry.register(spec)
    report = check(lattice, docs, vector_models={TARGET: spec}, fix=True)
    assert report.fixed == 8 and report.clean
    assert check(lattice, docs, vector_models={TARGET: spec}).clean
    point = record(lattice.client, docs, 0)
    assert same_direction(point.vector[TARGET], v2.embed([point.payload["text"]])[0])
    assert (point.payload[MODEL_FIELD], point.payload[VERSION_FIELD]) == ("modern", 2)


def test_fix_leaves_what_it_cannot_decide(
    qdrant: QdrantClient, lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    """Without a plan, a stamp naming an unknown model on a point holding two vectors has no right answer."""
    docs = names("two")
    qdrant.create_collection(
        docs,
        vectors_config={
            "a": models.VectorParams(size=64, distance=models.Distance.COSINE),
            "b": models.VectorParams(size=64, distance=models.Distance.COSINE),
        },
    )
    vec = legacy.embed(["some text"])[0].tolist()
    qdrant.upsert(
        docs,
        [
            models.PointStruct(
                id=1,
                vector={"a": vec, "b": vec},
                payload={"text": "some text", MODEL_FIELD: "ghost", VERSION_FIELD: 1},
            )
        ],
    )
    spec = legacy.spec("legacy", 1)
    lattice.registry.register(spec)
    report = check(lattice, docs, vector_models={"a": spec, "b": spec}, fix=True)
    assert report.unknown_model == 1 and (report.fixed, report.fix_skipped, report.remaining) == (0, 1, 1)
    assert not report.clean


def writes(store: Watched) -> list[list[Any]]:
    """The ids of each conditional write verify's fix made."""
    return [list(call.arguments["pending"]) for call in store.of(FIX)]


def test_fix_does_not_clobber_a_point_whose_text_changed_meanwhile(
    migrated: Make, lattice: lq.LatticeClient, watched: Watched, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    docs = migrated(n=12).collection
    corrupt(lattice.client, docs, [2, 4, 6], TARGET, 96)
    new_text = "the application rewrote this point while verify was fixing it"

    def rewrite(call: Call) -> None:  # the application dual-writes point 4 between verify's read and write
        lattice.upsert(
            docs,
            [
                models.PointStruct(
                    id=4, vector=models.Document(text=new_text, model="auto"), payload={"text": new_text}
                )
            ],
        )

    watched.faults.inject(FIX, Meanwhile(rewrite, on=1))
    watched.clear()
    report = check(lattice, docs, fix=True)
    consistent(report)
    calls = writes(watched)
    assert calls and 4 in calls[0]  # verify did try to write it, with the vector of the old text
    assert found(report) == {2, 4, 6}
    assert {m.point_id for m in report.mismatches if m.fixed} == {2, 6}
    assert (report.fixed, report.fix_skipped, report.remaining) == (2, 1, 1)

    point = record(lattice.client, docs, 4)
    assert point.payload["text"] == new_text
    assert same_direction(point.vector[TARGET], modern.embed([new_text])[0])
    assert same_direction(point.vector["legacy"], legacy.embed([new_text])[0])
    watched.faults.clear()
    assert check(lattice, docs).clean


def test_fix_skips_points_deleted_meanwhile(
    migrated: Make, lattice: lq.LatticeClient, watched: Watched
) -> None:
    docs = migrated(n=12).collection
    corrupt(lattice.client, docs, [1, 5, 9], TARGET, 96)

    def delete(call: Call) -> None:
        lattice.client.delete(docs, points_selector=models.PointIdsList(points=[5]))

    watched.faults.inject(FIX, Meanwhile(delete, on=1))
    watched.clear()
    report = check(lattice, docs, fix=True)
    assert 5 in writes(watched)[0]  # the write was made with the point deleted meanwhile ...
    assert lattice.client.retrieve(docs, [5]) == []  # ... and did not create it again
    assert {m.point_id for m in report.mismatches if m.fixed} == {1, 9}
    assert (report.fixed, report.fix_skipped) == (2, 1)
    watched.faults.clear()
    assert check(lattice, docs).clean


def test_write_vectors_if_unchanged_writes_only_points_that_kept_their_text(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated(n=4).collection
    text0 = record(lattice.client, docs, 0).payload["text"]
    new = {TARGET: random_vector(96, 1)}
    kept = lattice.store.update_if_unchanged(
        docs, "text", {0: (text0, new), 1: ("not its text", new), 77: ("gone", new)}
    )
    assert kept == [0, 1]
    assert same_direction(record(lattice.client, docs, 0).vector[TARGET], new[TARGET])
    assert not same_direction(record(lattice.client, docs, 1).vector[TARGET], new[TARGET])
    assert lattice.store.update_if_unchanged(docs, "text", {}) == []


def test_a_vector_update_through_the_wrapper_verifies_clean(
    migrated: Make, lattice: lq.LatticeClient
) -> None:
    docs = migrated(n=6, backfilled=False).collection  # points unstamped, source vector only
    text = record(lattice.client, docs, 2).payload["text"]
    lattice.update_vectors(docs, [models.PointVectors(id=2, vector=models.Document(text=text, model="auto"))])
    assert TARGET in record(lattice.client, docs, 2).vector
    report = check(lattice, docs)
    assert report.clean, report.mismatches


# --------------------------------------------------------------------------- sampling


def test_a_sample_is_deterministic_with_a_seed_and_bounded(
    migrated: Make, lattice: lq.LatticeClient, watched: Watched
) -> None:
    docs = migrated(n=60).collection

    def sampled(seed: int) -> list[Any]:
        watched.clear()
        report = check(lattice, docs, all_points=False, sample=10, seed=seed, page_size=4)
        assert report.checked == 10 and report.sample == 10 and report.total == 60 and report.seed == seed
        scrolled = [c.arguments for c in watched.of("scroll") if c.collection == docs]
        retrieved = [list(c.arguments["ids"]) for c in watched.of("retrieve") if c.collection == docs]
        # ids are read without payload or vectors, a page at a time; points are fetched a page at a time
        assert scrolled and all(s["with_payload"] is False and not s["with_vectors"] for s in scrolled)
        assert all(s["limit"] == 4 for s in scrolled)
        assert all(len(ids) <= 4 for ids in retrieved)
        return [pid for ids in retrieved for pid in ids]

    first = sampled(seed=7)
    assert len(first) == len(set(first)) == 10
    assert sampled(seed=7) == first
    others = [sampled(seed=s) for s in range(5)]
    assert any(set(o) != set(first) for o in others)
    # a sample as large as the collection checks every point
    assert check(lattice, docs, all_points=False, sample=500).checked == 60


def test_a_sample_finds_the_damage_it_covers(migrated: Make, lattice: lq.LatticeClient) -> None:
    docs = migrated(n=40).collection
    corrupt(lattice.client, docs, list(range(40)), TARGET, 96)
    one = check(lattice, docs, all_points=False, sample=8, seed=3)
    two = check(lattice, docs, all_points=False, sample=8, seed=3)
    assert one.checked == 8 and found(one) == found(two) and len(found(one)) == 8
    assert check(lattice, docs, all_points=True, sample=8).checked == 40  # all_points wins


def test_reservoir_sample() -> None:
    assert reservoir_sample(range(5), 10, random.Random(0)) == [0, 1, 2, 3, 4]
    assert reservoir_sample([], 3, random.Random(0)) == []
    picked = reservoir_sample(range(1000), 10, random.Random(1))
    assert len(picked) == 10 and picked == sorted(picked)
    assert picked == reservoir_sample(iter(range(1000)), 10, random.Random(1))
    with pytest.raises(ConfigError):
        reservoir_sample(range(3), 0, random.Random(0))
    # every item is about equally likely: 2,000 samples of 5 out of 20 -> about 500 hits each
    hits = np.zeros(20)
    for seed in range(2000):
        hits[reservoir_sample(range(20), 5, random.Random(seed))] += 1
    assert hits.sum() == 10_000 and hits.min() > 400 and hits.max() < 600


# --------------------------------------------------------------------------- comparison


def test_vectors_match_follows_the_distance() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert vectors_match(a, a, Distance.COSINE, 1e-3)[0]
    assert vectors_match(a * 5, a, Distance.COSINE, 1e-3)[0]  # cosine: only the direction counts
    assert not vectors_match(a * 5, a, Distance.DOT, 1e-3)[0]  # dot: the length counts too
    assert not vectors_match(a * 5, a, Distance.EUCLID, 1e-3)[0]
    assert vectors_match(a * 1.0001, a, Distance.DOT, 1e-3)[0]
    ok, similarity, error = vectors_match(-a, a, Distance.COSINE, 1e-3)
    assert not ok and similarity == pytest.approx(-1.0) and error == pytest.approx(2.0)
    assert vectors_match([0.0, 0.0], [0.0, 0.0], Distance.COSINE, 1e-3) == (True, 1.0, 0.0)
    assert not vectors_match([0.0, 0.0], [1.0, 0.0], Distance.COSINE, 1e-3)[0]
    assert not vectors_match([1.0, 2.0], a, Distance.COSINE, 1e-3)[0]
    assert not vectors_match([float("nan"), 1.0, 1.0], a, Distance.COSINE, 1.0)[0]
    # the tolerance is what it says
    bent = a + np.array([0.0, 0.0, 0.2])
    sim = vectors_match(bent, a, Distance.COSINE, 0.0)[1]
    assert vectors_match(bent, a, Distance.COSINE, 1 - sim + 1e-9)[0]
    assert not vectors_match(bent, a, Distance.COSINE, 1 - sim - 1e-6)[0]


@pytest.mark.parametrize("distance", [Distance.DOT, Distance.EUCLID])
def test_raw_vectors_are_compared_under_dot_and_euclid(
    qdrant: QdrantClient, lattice: lq.LatticeClient, names: Any, distance: Distance
) -> None:
    docs = names("raw")
    spec = HashEmbedder(32, normalize=False).spec("raw", 1).model_copy(update={"distance": distance})
    embedder = embedder_for(spec)
    qdrant.create_collection(
        docs, vectors_config={"v": models.VectorParams(size=32, distance=models.Distance(distance.value))}
    )
    texts = ["one two two three", "four five", "six six six"]
    vectors = embedder.embed(texts)
    qdrant.upsert(
        docs,
        [
            models.PointStruct(id=i, vector={"v": vectors[i].tolist()}, payload={"text": t})
            for i, t in enumerate(texts)
        ],
    )
    lattice.registry.register(spec)
    assert check(lattice, docs, vector_models={"v": spec}).clean
    # the same direction at twice the length: a match under cosine, not here
    qdrant.update_vectors(docs, [models.PointVectors(id=1, vector={"v": (vectors[1] * 2).tolist()})])
    report = check(lattice, docs, vector_models={"v": spec}, fix=True)
    assert found(report) == {1} and report.mismatches[0].similarity == pytest.approx(1.0, abs=1e-6)
    assert report.fixed == 1
    assert check(lattice, docs, vector_models={"v": spec}).clean


def test_report_shapes() -> None:
    assert set(REASONS) == {"vector", "mixed_spaces", "stamp", "unknown_model"}
    m = Mismatch(point_id=1, vector="v", model="m:v1:abc", reason="vector", detail="d")
    report = VerifyReport(
        collection="c", vectors={"v": "m:v1:abc"}, total=3, sample=None, seed=0, checked=3, vectors_checked=3,
        matched=2, points_mismatched=1, mismatched=1, unverifiable=0, unknown_model=0, fixed=0, fix_skipped=0,
        mismatches=[m],
    )  # fmt: skip
    data = report.to_dict()
    assert data["remaining"] == 1 and data["clean"] is False and data["mismatches"][0]["point_id"] == 1
    with pytest.raises(AttributeError):
        report.checked = 4  # type: ignore[misc]


# --------------------------------------------------------------------------- CLI


def test_verify_through_the_cli(cli: Any, legacy: HashEmbedder) -> None:
    docs = cli.docs
    client = cli.qdrant()
    fill_collection(client, docs, legacy, n=30)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", docs)
    cli("backfill", docs)

    out = cli("verify", docs).output
    assert f"{docs}: checked 30 of 30 points (a sample of 200 (seed 0)); 30 match" in out
    assert "all match" in out

    client = cli.qdrant()
    corrupt(client, docs, [4, 17], TARGET, 96)
    client.close()
    out = cli("verify", docs, "--all", code=1).output
    assert "2 mismatched" in out and "2 mismatch(es) remain" in out
    assert re.search(r"vector\s+4: 'modern-v1' is not the modern:v1:", out)
    assert re.search(r"vector\s+17: ", out)
    data = json.loads(cli("verify", docs, "--sample", "30", "--json", code=1).output)
    assert {m["point_id"] for m in data["mismatches"]} == {4, 17} and data["clean"] is False
    assert data["sample"] == 30 and data["checked"] == 30

    out = cli("verify", docs, "--all", "--fix").output
    assert "[fixed]" in out and "fixed     2 of 2" in out and "all match" in out
    assert json.loads(cli("verify", docs, "--all", "--json").output)["clean"] is True

    # without the plan: name the model of each vector
    data = json.loads(cli("verify", docs, "--vector", "legacy=legacy:v1", "--json").output)
    assert set(data["vectors"]) == {"legacy"} and data["vectors_checked"] == 30

    bad = cli("verify", docs, "--all", "--sample", "3", code=2)
    assert "not both" in bad.output
    bad = cli("verify", docs, "--vector", "legacy", code=2)
    assert "NAME=MODEL_REF" in bad.output
    bad = cli("verify", docs, "--vector", "legacy=ghost", code=1)
    assert "not registered" in bad.output
    bad = cli("verify", docs, "--tolerance", "3", code=2)
    assert "tolerance" in bad.output


def test_verify_through_the_cli_without_a_plan(cli: Any, legacy: HashEmbedder) -> None:
    docs = cli.docs
    client = cli.qdrant()
    fill_collection(client, docs, legacy, n=10)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    refused = cli("verify", docs, code=2)
    assert "has no migration" in refused.output and "--vector" in refused.output
    assert "all match" in cli("verify", docs, "--vector", "legacy=legacy").output
    cli("verify", "nope", "--vector", "legacy=legacy", code=1)
