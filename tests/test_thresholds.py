"""Score thresholds across a migration: measured, stored with the migration, translated where the target
answers (query_points, its batch and groups variants, mixed mode, the async twin), warned about once
without a calibration, and refused when no distance can give them."""

from __future__ import annotations

import asyncio
import json
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import commands
from lattice_qdrant import compare as cmp
from lattice_qdrant.backfill import run_backfill
from lattice_qdrant.calibration import RECORD_FIELD, ScoreCalibration, ScoreThresholdWarning
from lattice_qdrant.compare import QuerySpec
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.errors import (
    CalibrationError,
    ConfigError,
    ScoreThresholdError,
    StoreError,
    VectorValidationError,
)

from conftest import MakeMigration, make_lattice

VOCABULARY = [f"w{i}" for i in range(80)]
_RNG = random.Random(3)
# Documents of 12 words and queries of 4 from one vocabulary: the bag of words (the source) scores a
# query's top 10 around 0.39, the unigrams-and-bigrams model (the target) around 0.27.
TEXTS = [" ".join(_RNG.choice(VOCABULARY) for _ in range(12)) for _ in range(150)]
QUERIES = [" ".join(_RNG.choice(VOCABULARY) for _ in range(4)) for _ in range(60)]
# Calibrated on the application's own queries (hashed words score in coarse steps, so another sample of
# 80 queries moves the translated threshold by a step or two).
CALIBRATION_QUERIES = [QuerySpec(q) for q in QUERIES]
THRESHOLD = 0.45  # keeps about a quarter of the source's top 10, hardly any of the target's


def session_for(qdrant: Any, names: Any) -> commands.Session:
    return commands.Session(client=qdrant, settings=Settings(control_collection=names("control")))


def doc(text: str) -> models.Document:
    return models.Document(text=text, model="routed")


def results(client: Any, collection: str, threshold: float | None = THRESHOLD, **kwargs: Any) -> int:
    """Results of every query at ``limit=10`` with ``threshold``, summed."""
    return sum(
        len(client.query_points(collection, doc(q), limit=10, score_threshold=threshold, **kwargs).points)
        for q in QUERIES
    )


def backfilled(make_migration: MakeMigration, lattice: lq.LatticeClient, **plan: Any) -> lq.Migration:
    migration = make_migration(texts=TEXTS, **plan)
    run_backfill(migration, lattice.embedder(migration.plan.target))
    return migration


def calibrated(lattice: lq.LatticeClient, migration: lq.Migration) -> ScoreCalibration:
    found = cmp.calibrate(lattice, migration.collection, CALIBRATION_QUERIES)
    migration.save_calibration(found)
    return found


# --------------------------------------------------------------------------- the numbers


def test_a_threshold_returns_about_as_many_results_after_cutover(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    before = results(lattice, docs)
    assert 80 <= before <= 300  # about a quarter of 600
    found = calibrated(lattice, migration)
    assert found.method == "calibrate" and found.k == 10 and found.coverage == 1.0
    assert found.translate(THRESHOLD).target < THRESHOLD - 0.05  # the target scores lower
    migration.cutover()
    after = results(lattice, docs)
    assert abs(after - before) <= 0.1 * before, (before, after)
    as_given = results(make_lattice(qdrant, names, translate_thresholds=False), docs)
    assert as_given < 0.4 * before, (before, as_given)
    # without a threshold nothing changes
    assert results(lattice, docs, None) == 600


def test_the_batch_and_groups_variants_translate_too(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    calibrated(lattice, migration)
    migration.cutover()
    target = lattice.query_points(docs, doc(QUERIES[0]), limit=10, score_threshold=THRESHOLD).points
    batch = lattice.query_batch_points(
        docs,
        [
            models.QueryRequest(query=doc(QUERIES[0]), limit=10, score_threshold=THRESHOLD),
            models.QueryRequest(query=doc(QUERIES[0]), limit=10),
        ],
    )
    assert [p.id for p in batch[0].points] == [p.id for p in target]
    assert len(batch[1].points) == 10
    groups = lattice.query_points_groups(
        docs, "text", doc(QUERIES[0]), limit=10, group_size=1, score_threshold=THRESHOLD
    )
    assert len(groups.groups) == len(target)


def test_a_prefetch_searching_the_target_vector_translates_its_threshold(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any
) -> None:
    migration = backfilled(make_migration, lattice)
    docs, plan = migration.collection, migration.plan
    found = calibrated(lattice, migration)
    migration.cutover()
    target = lattice.embedder(plan.target)

    def prefetched(client: Any, nested: bool = False) -> int:
        total = 0
        for q in QUERIES:
            vector = target.embed([q])[0].tolist()
            inner = models.Prefetch(
                query=vector, using=plan.target_vector, score_threshold=THRESHOLD, limit=10
            )
            # the outer prefetch (no threshold) only passes the inner one's hits on
            prefetch = models.Prefetch(prefetch=inner, query=vector, using=plan.target_vector, limit=10)
            total += len(
                client.query_points(docs, doc(q), prefetch=[prefetch] if nested else inner, limit=10).points
            )
        return total

    translated = results(lattice, docs)  # the query's own threshold, translated
    assert prefetched(lattice) == translated and prefetched(lattice, nested=True) == translated
    as_given = prefetched(make_lattice(qdrant, names, translate_thresholds=False))
    assert as_given < 0.4 * translated, (translated, as_given)
    # a prefetch of the source vector keeps its threshold: it searches the source space
    legacy = lattice.embedder(plan.source)
    source_side = models.Prefetch(
        query=legacy.embed([QUERIES[0]])[0].tolist(), using=plan.source_vector, score_threshold=0.99
    )
    sent: list[Any] = []
    real = lattice.store.query

    def spy(collection: str, **kwargs: Any) -> Any:
        sent.append(kwargs["prefetch"])
        return real(collection, **kwargs)

    lattice.store.query = spy  # type: ignore[method-assign]
    lattice.query_points(docs, doc(QUERIES[0]), prefetch=[source_side], limit=10)
    assert sent == [[source_side]]
    assert found.translate(THRESHOLD).target != THRESHOLD


def test_mixed_mode_applies_the_translated_threshold_to_target_scores(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    before = results(lattice, docs)
    calibration = calibrated(lattice, migration)
    mixed = sum(
        len(lattice.query_points(docs, doc(q), limit=10, score_threshold=THRESHOLD, mode="mixed").points)
        for q in QUERIES
    )
    assert abs(mixed - before) <= 0.1 * before, (before, mixed)
    translated = calibration.translate(THRESHOLD).target
    points = lattice.query_points(docs, doc(QUERIES[1]), limit=10, score_threshold=THRESHOLD, mode="mixed")
    assert all(p.score >= translated for p in points.points)


def test_mixed_mode_holds_source_scores_to_the_source_threshold(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    """A candidate without a target vector kept at its source rank has its source score: the source
    threshold is the one it must meet."""
    migration = make_migration(texts=TEXTS, missing_policy="source_order")
    docs = migration.collection
    with pytest.warns(ScoreThresholdWarning):
        points = lattice.query_points(
            docs, doc(QUERIES[2]), limit=10, score_threshold=THRESHOLD, mode="mixed"
        )
    plain = lattice.query_points(docs, doc(QUERIES[2]), limit=10, score_threshold=THRESHOLD, mode="routed")
    # nothing is covered: every candidate keeps its source rank and score, as the source search gives them
    assert [p.id for p in points.points] == [p.id for p in plain.points]


# --------------------------------------------------------------------------- without a calibration


def test_without_a_calibration_the_threshold_is_sent_as_given_and_warned_about_once(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results(lattice, docs)  # the source answers: nothing to translate, no warning
    migration.cutover()
    with pytest.warns(ScoreThresholdWarning, match=f"lattice-qdrant calibrate {docs}") as caught:
        untranslated = results(lattice, docs)
    assert len(caught) == 1  # 60 queries, one warning in this process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results(lattice, docs)
        results(make_lattice(qdrant, names), docs)  # another wrapper, the same process
    assert untranslated == results(make_lattice(qdrant, names, translate_thresholds=False), docs)


def test_a_threshold_beyond_the_sampled_scores_is_clamped_with_a_warning(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    calibrated(lattice, migration)
    migration.cutover()
    with pytest.warns(ScoreThresholdWarning, match="outside"):
        found = lattice.query_points(migration.collection, doc(QUERIES[0]), limit=10, score_threshold=-0.99)
    assert len(found.points) == 10


# --------------------------------------------------------------------------- bad input


def test_a_threshold_no_distance_can_give_is_refused_in_the_target_space(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    calibrated(lattice, migration)
    migration.cutover()
    for bad in (1.5, -1.2, float("nan")):
        with pytest.raises(ScoreThresholdError, match=r"Cosine scores lie in \[-1, 1\]"):
            lattice.query_points(docs, doc("w1 w2"), score_threshold=bad)
    with pytest.raises(VectorValidationError, match=r"request 1: score_threshold 2\.0"):
        lattice.query_batch_points(
            docs,
            [
                models.QueryRequest(query=doc("w1"), limit=3),
                models.QueryRequest(query=doc("w1"), score_threshold=2.0),
            ],
        )


def test_too_few_scores_make_no_calibration(make_migration: MakeMigration, lattice: lq.LatticeClient) -> None:
    migration = make_migration(texts=TEXTS[:8])
    run_backfill(migration, lattice.embedder(migration.plan.target))
    with pytest.raises(CalibrationError, match=r"at least 100 source scores, got 64 \(8 queries x top 10\)"):
        cmp.calibrate(lattice, migration.collection, sample=8)


def test_an_empty_collection_has_nothing_to_calibrate_with(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = make_migration(texts=TEXTS[:4])
    lattice.delete(migration.collection, models.PointIdsList(points=[0, 1, 2, 3]))
    with pytest.raises(CalibrationError, match="no queries to calibrate with"):
        cmp.calibrate(lattice, migration.collection)


def test_a_queries_file_with_unknown_ids_is_refused(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    specs = [QuerySpec("w1 w2", frozenset({1, 9999, 123456}))]
    with pytest.raises(ConfigError, match=r"name 2 relevant id\(s\) that .* does not hold: 123456, 9999"):
        cmp.calibrate(lattice, migration.collection, specs, origin="q.jsonl")


def test_calibrating_needs_both_vectors(make_migration: MakeMigration, lattice: lq.LatticeClient) -> None:
    migration = make_migration(texts=TEXTS, started=False)
    with pytest.raises(StoreError, match="the target vector does not exist"):
        cmp.calibrate(lattice, migration.collection, CALIBRATION_QUERIES)


# --------------------------------------------------------------------------- the record


def test_the_calibration_is_kept_by_every_transition_and_absent_from_older_records(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any
) -> None:
    migration = backfilled(make_migration, lattice)
    assert migration.calibration is None and RECORD_FIELD not in migration.snapshot(refresh=True).record
    found = calibrated(lattice, migration)
    state = migration.state
    assert migration.calibration == found and migration.state == state  # the state is unchanged
    migration.cutover()
    migration.rollback()
    migration.cutover()
    other = make_lattice(qdrant, names).migration(migration.collection)  # another process reads it
    assert other.calibration == found
    assert migration.snapshot(refresh=True).record[RECORD_FIELD] == found.to_payload()


def test_a_calibration_of_other_models_is_not_stored(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = backfilled(make_migration, lattice)
    found = cmp.calibrate(lattice, migration.collection, CALIBRATION_QUERIES)
    other = ScoreCalibration.from_payload({**found.to_payload(), "source": "else:v1:00000000"})
    with pytest.raises(CalibrationError, match="measured for else:v1:00000000"):
        migration.save_calibration(other)


def test_compare_and_probe_measure_it_and_save_it_when_asked(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any, tmp_path: Path
) -> None:
    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    session = commands.Session(
        client=qdrant, settings=lq.config.Settings(control_collection=names("control"))
    )
    session.client.add_embedder("legacy", lattice.embedder(migration.plan.source))
    session.client.add_embedder("modern", lattice.embedder(migration.plan.target))
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps({"query": q.text}) for q in CALIBRATION_QUERIES))
    report = commands.compare(session, docs, queries_file=str(queries), record=False)
    assert report.calibration is not None and report.calibration.method == "compare"
    assert migration.calibration is None  # not asked to save
    commands.compare(session, docs, queries_file=str(queries), record=False, save_calibration=True)
    assert migration.calibration is not None and migration.calibration.method == "compare"
    probed = commands.probe(session, docs, target="modern", sample=150, save_calibration=True)
    assert probed.calibration is not None and migration.calibration == probed.calibration
    assert "threshold calibration: source -> target probe" in probed.render_text()
    stored = commands.calibrate(session, docs, queries_file=str(queries))
    assert migration.calibration == stored and stored.queries == len(CALIBRATION_QUERIES)


def test_status_shows_the_stored_calibration_or_how_to_store_one(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any
) -> None:
    from lattice_qdrant.cli import render_status

    migration = backfilled(make_migration, lattice)
    docs = migration.collection
    session = session_for(qdrant, names)
    hint = f"lattice-qdrant calibrate {docs}"
    report = commands.status(session, [docs])[0]
    assert (report.calibration, report.calibration_hint) == (None, hint)
    assert report.to_dict()["calibration"] is None and report.to_dict()["calibration_hint"] == hint
    line = (
        "  scores    not calibrated: a query's score_threshold reaches the target model untranslated; "
        f"measure one with: {hint}"
    )
    assert line in render_status(report).splitlines()

    found = ScoreCalibration.from_payload({**calibrated(lattice, migration).to_payload(), "measured_at": 0.0})
    migration.save_calibration(found)
    report = commands.status(session, [docs])[0]
    assert report.calibration_hint is None
    assert report.to_dict()["calibration"] == {
        "method": "calibrate",
        "measured_at": 0.0,
        "queries": len(CALIBRATION_QUERIES),
        "k": 10,
        "source_count": found.source_count,
        "target_count": found.target_count,
        "coverage": 1.0,
    }
    line = (
        f"  scores    calibrated by calibrate on 1970-01-01 00:00 UTC: {len(CALIBRATION_QUERIES)} queries x "
        f"top 10 ({found.source_count} source, {found.target_count} target scores), at 100.0% coverage"
    )
    assert line in render_status(report).splitlines()
    probed = ScoreCalibration.from_payload({**found.to_payload(), "method": "probe", "coverage": None})
    migration.save_calibration(probed)
    text = render_status(commands.status(session, [docs])[0])
    assert "calibrated by probe on 1970-01-01 00:00 UTC" in text and "coverage" not in text.split("scores")[1]


@pytest.mark.parametrize("end", ["finalize", "cancel"])
def test_status_gives_no_calibration_hint_once_calibrating_is_past(
    make_migration: MakeMigration, lattice: lq.LatticeClient, qdrant: Any, names: Any, end: str
) -> None:
    from lattice_qdrant.cli import render_status

    migration = backfilled(make_migration, lattice)
    if end == "finalize":
        migration.cutover()
        migration.finalize(force=True)
    else:
        migration.cancel()
    report = commands.status(session_for(qdrant, names), [migration.collection])[0]
    assert (report.calibration, report.calibration_hint) == (None, None)
    scores = [line for line in render_status(report).splitlines() if line.startswith("  scores")]
    # after finalize the target answers, uncalibrated; after a cancel the source does, as it always did
    assert scores == (
        ["  scores    not calibrated: a query's score_threshold reaches the target model untranslated"]
        if end == "finalize"
        else []
    )


def test_probe_saves_only_with_a_migration(qdrant: Any, names: Any, legacy: HashEmbedder) -> None:
    from conftest import fill_collection

    docs = names("bare")
    fill_collection(qdrant, docs, legacy, texts=TEXTS)
    session = commands.Session(
        client=qdrant, settings=lq.config.Settings(control_collection=names("control"))
    )
    session.client.add_embedder("legacy", legacy)
    session.client.registry.register(legacy.spec("legacy"))
    report = commands.probe(session, docs, source="legacy", target="legacy", sample=150)
    assert report.calibration is not None
    assert report.calibration.translate(0.4).target == pytest.approx(0.4)  # the same model
    with pytest.raises(ConfigError, match="--save-calibration stores the score calibration"):
        commands.probe(session, docs, source="legacy", target="legacy", sample=150, save_calibration=True)
    small = commands.probe(session, docs, source="legacy", target="legacy", sample=5, known_items=5, ks=[1])
    assert small.calibration is None and "at least 100" in small.calibration_problem


# --------------------------------------------------------------------------- the async twin


def test_the_async_twin_translates(
    names: Any, legacy: HashEmbedder, modern: HashEmbedder, source_spec: Any, target_spec: Any
) -> None:
    async def scenario() -> tuple[int, int, int]:
        aqdrant = AsyncQdrantClient(":memory:")
        twin = lq.wrap(aqdrant, control_collection=names("control"), refresh_interval=0.0)
        docs = names("adocs")
        await aqdrant.create_collection(
            docs, vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)}
        )
        vectors = legacy.embed(TEXTS)
        await twin.upsert(
            docs,
            [
                models.PointStruct(id=i, vector={"legacy": vectors[i].tolist()}, payload={"text": t})
                for i, t in enumerate(TEXTS)
            ],
        )
        migration = await twin.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
        await migration.start()
        await asyncio.to_thread(run_backfill, migration.sync, twin.embedder(target_spec))

        async def count(client: Any) -> int:
            found = [
                await client.query_points(docs, doc(q), limit=10, score_threshold=THRESHOLD) for q in QUERIES
            ]
            return sum(len(r.points) for r in found)

        before = await count(twin)
        found = await asyncio.to_thread(cmp.calibrate, twin.sync, docs, CALIBRATION_QUERIES)
        await asyncio.to_thread(migration.sync.save_calibration, found)
        await migration.cutover()
        after = await count(twin)
        off = lq.wrap(
            aqdrant, control_collection=names("control"), refresh_interval=0.0, translate_thresholds=False
        )
        as_given = await count(off)
        await aqdrant.close()
        return before, after, as_given

    before, after, as_given = asyncio.run(scenario())
    assert abs(after - before) <= 0.1 * before and as_given < 0.4 * before, (before, after, as_given)


# --------------------------------------------------------------------------- the CLI


def test_calibrate_through_the_cli(cli: Any, legacy: HashEmbedder, tmp_path: Path) -> None:
    from conftest import fill_collection

    client = cli.qdrant()
    fill_collection(client, cli.docs, legacy, texts=TEXTS)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    cli("plan", cli.docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", cli.docs)
    cli("backfill", cli.docs)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "w1 w2", "relevant": [424242]}) + "\n")
    refused = cli("calibrate", cli.docs, "--queries", str(bad), code=2)
    assert "does not hold: 424242" in refused.output
    assert "at least 100 source scores" in cli("calibrate", cli.docs, "--sample", "3", code=1).output
    out = cli("calibrate", cli.docs, "--sample", "100").output
    assert f"{cli.docs}: score calibration stored with the migration (legacy:v1:" in out
    assert "calibrate: 100 queries x top 10" in out and "p50" in out and "  target  " in out
    stored = json.loads(cli("calibrate", cli.docs, "--sample", "50", "--json").output)
    assert stored["queries"] == 50 and len(stored["source_quantiles"]) == 101
    status = json.loads(cli("status", cli.docs, "--json").stdout)[0]
    assert status["calibration"]["method"] == "calibrate" and status["calibration"]["queries"] == 50
    assert status["calibration_hint"] is None
    assert "  scores    calibrated by calibrate on " in cli("status", cli.docs).output
    out = cli("cutover", cli.docs).output
    assert "no score calibration" not in out


def test_a_cutover_without_a_calibration_says_how_to_make_one(cli: Any, legacy: HashEmbedder) -> None:
    from conftest import fill_collection

    client = cli.qdrant()
    fill_collection(client, cli.docs, legacy, texts=TEXTS)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    cli("plan", cli.docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", cli.docs)
    cli("backfill", cli.docs)
    status = json.loads(cli("status", cli.docs, "--json").stdout)[0]
    assert (
        status["calibration"] is None and status["calibration_hint"] == f"lattice-qdrant calibrate {cli.docs}"
    )
    assert f"measure one with: lattice-qdrant calibrate {cli.docs}" in cli("status", cli.docs).output
    out = cli("cutover", cli.docs).output
    assert "no score calibration is stored" in out and f"lattice-qdrant calibrate {cli.docs}" in out
