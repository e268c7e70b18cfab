"""Every routed method of the wrapper follows the migration, on every strategy: bulk uploads, batches of
operations, vector deletes, text changes through payload writes, batched and grouped queries, the search
matrices; the same validation on each; the inference choice for cloud-inference clients."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import surface
from lattice_qdrant.backfill import run_backfill
from lattice_qdrant.client import LatticeClient
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import Store, open_store
from lattice_qdrant.testing import Meanwhile, StoreWrapper

from conftest import CORPUS, MakeMigration, Watched, fill_collection, make_lattice, same_direction

STRATEGIES = ["in_place", "blue_green", "reembed"]
N = 12


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(strategy: str) -> HashEmbedder:
    """The target model: 96-d beside the source, 64-d (the source's shape) for a re-embed."""
    return HashEmbedder(64 if strategy == "reembed" else 96, ngrams=2, salt="modern")


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, watched: Watched) -> lq.LatticeClient:
    return make_lattice(qdrant, names, store=watched)


@pytest.fixture
def migrating(make_migration: MakeMigration, target: HashEmbedder, strategy: str) -> lq.Migration:
    """A started migration of ``N`` points (writes go to both models), for each strategy."""
    return make_migration(N, target=target.spec("modern", 1), strategy=strategy, rollback_window=3600)


def point_of(client: QdrantClient, collection: str, pid: Any) -> models.Record | None:
    found = client.retrieve(collection, [pid], with_payload=True, with_vectors=True)
    return found[0] if found else None


def fresh_target(
    client: QdrantClient, migration: lq.Migration, target: HashEmbedder, pid: Any, text: str | None = None
) -> bool:
    """Whether point ``pid`` holds the target model's embedding of its text (or of ``text``)."""
    strategy, plan = migration.strategy, migration.plan
    collection = strategy.data_collection
    rec = point_of(client, collection, pid)
    if rec is None:
        return False
    text = text if text is not None else (rec.payload or {}).get("text")
    vectors = rec.vector if isinstance(rec.vector, dict) else {"": rec.vector}
    value = vectors.get(plan.target_vector)
    holds = client.count(
        collection, count_filter=models.Filter(must=[models.HasIdCondition(has_id=[pid]), strategy.done()])
    ).count
    return value is not None and holds == 1 and same_direction(value, target.embed([str(text)])[0])


def covered(client: QdrantClient, migration: lq.Migration, target: HashEmbedder, ids: list[Any]) -> int:
    return sum(fresh_target(client, migration, target, pid) for pid in ids)


def shared(migration: lq.Migration) -> bool:
    """Whether both models share one vector name (a re-embed): a plain vector would be ambiguous, so the
    application leaves it out and the wrapper embeds the text with both."""
    return migration.plan.source_vector == migration.plan.target_vector and (
        migration.plan.source.dimension == migration.plan.target.dimension
    )


def new_points(migration: lq.Migration, legacy: HashEmbedder, ids: list[Any]) -> list[models.PointStruct]:
    """Points as an application on the source model writes them: its vector (none for a re-embed) and
    the text."""
    texts = [f"{CORPUS[i % len(CORPUS)]} (new {i})" for i in range(len(ids))]
    vectors = legacy.embed(texts)
    return [
        models.PointStruct(
            id=pid, vector={} if shared(migration) else {"legacy": v.tolist()}, payload={"text": t}
        )
        for pid, v, t in zip(ids, vectors, texts, strict=True)
    ]


def count_all(client: QdrantClient, migration: lq.Migration) -> tuple[int, ...]:
    """Points in each collection of the migration (both of a blue-green one)."""
    names = dict.fromkeys([migration.plan.collection, migration.strategy.data_collection])
    return tuple(client.count(c, exact=True).count for c in names)


# --------------------------------------------------------------------------- the table


def test_every_routed_method_is_the_wrappers_own_with_the_clients_parameters() -> None:
    for name in surface.ROUTED:
        assert name in vars(LatticeClient), f"LatticeClient does not define the routed method {name}"
        ours = list(inspect.signature(getattr(LatticeClient, name)).parameters.values())
        theirs = list(inspect.signature(getattr(QdrantClient, name)).parameters.values())
        head = [(p.name, p.kind, p.default) for p in theirs]
        assert [(p.name, p.kind, p.default) for p in ours[: len(theirs) - 1]] == head[:-1], name
        assert ours[-1].kind == inspect.Parameter.VAR_KEYWORD, name
        # anything the wrapper adds is keyword-only, between the client's parameters and **kwargs
        assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs) - 1 : -1]), name


def test_passed_through_names_reach_the_client_and_other_names_are_refused(
    lattice: lq.LatticeClient, migrating: lq.Migration
) -> None:
    assert lattice.count(migrating.collection, exact=True).count == N
    assert lattice.collection_exists(migrating.collection)
    assert lattice.cloud_inference is False
    with pytest.raises(AttributeError, match=r"neither table of lattice_qdrant/surface\.py"):
        lattice.upsert_points_faster  # noqa: B018 - what a newer qdrant-client might add


def test_a_method_a_newer_client_adds_does_not_bypass_the_migration(names: Any) -> None:
    class Newer(QdrantClient):
        def upsert_quickly(self, collection_name: str, points: Any) -> None:
            """A write the table does not know."""

    client = Newer(":memory:")
    lattice = make_lattice(client, names)
    assert "upsert_quickly" not in surface.ROUTED and "upsert_quickly" not in surface.PASSED_THROUGH
    with pytest.raises(AttributeError, match="upsert_quickly is in neither table"):
        lattice.upsert_quickly("docs", [])
    assert lattice.client.upsert_quickly("docs", []) is None  # knowingly, on the wrapped client
    client.close()


# --------------------------------------------------------------------------- uploads


@pytest.mark.parametrize("parallel", [1, 3])
def test_uploaded_points_all_get_a_target_vector(
    lattice: lq.LatticeClient,
    migrating: lq.Migration,
    legacy: HashEmbedder,
    target: HashEmbedder,
    parallel: int,
) -> None:
    ids = list(range(100, 170))
    lattice.upload_points(
        migrating.collection, new_points(migrating, legacy, ids), batch_size=16, parallel=parallel
    )
    assert covered(lattice.client, migrating, target, ids) == 70
    assert count_all(lattice.client, migrating)[0] == N + 70


def test_upload_collection_takes_arrays_named_arrays_and_lists(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, target: HashEmbedder
) -> None:
    texts = [f"{CORPUS[i % len(CORPUS)]} (upload {i})" for i in range(30)]
    vectors: Any = legacy.embed(texts)
    payload = [{"text": t} for t in texts]
    if shared(migrating):  # no vector: a plain one would be ambiguous, and the text is embedded with both
        vectors = {"legacy": [models.Document(text=t, model="any") for t in texts]}
    column = vectors["legacy"] if isinstance(vectors, dict) else vectors
    lattice.upload_collection(
        migrating.collection, {"legacy": column[:10]}, payload=payload[:10], ids=range(200, 210), batch_size=4
    )
    lattice.upload_collection(
        migrating.collection,
        [{"legacy": v if shared(migrating) else v.tolist()} for v in vectors["legacy"][10:20]]
        if shared(migrating)
        else [{"legacy": v.tolist()} for v in vectors[10:20]],
        payload=payload[10:20],
        ids=list(range(210, 220)),
    )
    # ids left out are random UUIDs, as qdrant-client makes them
    lattice.upload_collection(migrating.collection, {"legacy": column[20:]}, payload=payload[20:])
    records, _ = lattice.client.scroll(migrating.collection, limit=100, with_payload=True)
    made = [r.id for r in records if isinstance(r.id, str)]
    assert len(made) == 10 and all(uuid.UUID(pid) for pid in made)
    assert covered(lattice.client, migrating, target, [*range(200, 220), *made]) == 30


def test_upload_collection_of_a_plain_array_routes_it_by_dimension(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, target: HashEmbedder
) -> None:
    texts = ["a plain array row", "another plain row"]
    array = legacy.embed(texts)  # 2-d, one row per point
    if migrating.plan.source.dimension == migrating.plan.target.dimension:
        with pytest.raises(lq.VectorValidationError, match="plain vector is ambiguous"):
            lattice.upload_collection(migrating.collection, array, payload=[{"text": t} for t in texts])
        return
    lattice.upload_collection(
        migrating.collection, array, payload=[{"text": t} for t in texts], ids=[300, 301]
    )
    assert covered(lattice.client, migrating, target, [300, 301]) == 2


def test_a_generator_of_points_is_read_one_batch_at_a_time(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, watched: Watched
) -> None:
    batch, seen, docs = 8, [], migrating.collection

    def writes() -> int:
        return len([c for c in watched.of("upsert") if c.collection == docs])

    def points() -> Iterator[models.PointStruct]:
        for i, point in enumerate(new_points(migrating, legacy, list(range(400, 448)))):
            seen.append((i, writes()))
            yield point

    watched.clear()
    lattice.upload_points(migrating.collection, points(), batch_size=batch)
    # point i is read once the batches before its own batch's predecessor are written, not all up front
    per_batch = writes() // 6
    assert per_batch >= 1  # each batch went through the routing
    assert all(done >= (i // batch) * per_batch for i, done in seen), seen
    assert seen[-1][1] >= 5 * per_batch


def test_a_bad_point_refuses_an_upload_held_in_memory_whole(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder
) -> None:
    points = new_points(migrating, legacy, list(range(500, 570)))
    points[65] = models.PointStruct(id=565, vector={"legacy": [0.1] * 64}, payload={})  # no text, no target
    before = count_all(lattice.client, migrating)
    with pytest.raises(lq.VectorValidationError, match="nothing was written") as err:
        lattice.upload_points(migrating.collection, points, batch_size=16)
    assert [pid for pid, _ in err.value.problems] == [565]
    assert count_all(lattice.client, migrating) == before
    with pytest.raises(lq.VectorValidationError, match="payload has 2 items for 3 vectors"):
        lattice.upload_collection(migrating.collection, {"legacy": np.zeros((3, 64))}, payload=[{}, {}])


def test_a_bad_batch_of_a_generator_is_refused_after_the_batches_before_it(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder
) -> None:
    points = new_points(migrating, legacy, list(range(600, 640)))
    points[35] = models.PointStruct.model_construct(
        id=635, vector={"legacy": [0.1] * 3}, payload={"text": "t"}
    )
    with pytest.raises(lq.UploadRejectedError, match="32 point") as err:
        lattice.upload_points(migrating.collection, iter(points), batch_size=16)
    assert err.value.written == 32 and err.value.problems[0][0] == 635
    assert count_all(lattice.client, migrating)[0] == N + 32  # the bad batch wrote nothing


# --------------------------------------------------------------------------- batch_update_points


def test_each_operation_of_a_batch_is_routed_as_its_single_call(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, target: HashEmbedder
) -> None:
    docs = migrating.collection
    [point] = new_points(migrating, legacy, [700])
    text3 = point_of(lattice.client, docs, 3).payload["text"]  # type: ignore[union-attr]
    results = lattice.batch_update_points(
        docs,
        [
            models.UpsertOperation(upsert=models.PointsList(points=[point])),
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload={"text": "a brand new text"}, points=[1])
            ),
            models.DeleteOperation(delete=models.PointIdsList(points=[2])),
            models.UpdateVectorsOperation(
                update_vectors=models.UpdateVectors(
                    points=[
                        models.PointVectors(id=3, vector={"legacy": models.Document(text=text3, model="m")})
                    ]
                )
            ),
        ],
    )
    assert len(results) == 4
    assert fresh_target(lattice.client, migrating, target, 700)
    assert fresh_target(lattice.client, migrating, target, 1, "a brand new text")
    assert fresh_target(lattice.client, migrating, target, 3)
    for collection in dict.fromkeys([docs, migrating.strategy.data_collection]):  # both, blue-green
        assert lattice.client.retrieve(collection, [2]) == []
        assert point_of(lattice.client, collection, 1).payload["text"] == "a brand new text"  # type: ignore[union-attr]


def test_one_bad_operation_refuses_the_whole_batch(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder
) -> None:
    docs = migrating.collection
    before = count_all(lattice.client, migrating)
    bad = models.PointStruct.model_construct(id=801, vector={"legacy": [0.1] * 5}, payload={"text": "t"})
    with pytest.raises(lq.VectorValidationError, match=r"operation 2 \(upsert\)") as err:
        lattice.batch_update_points(
            docs,
            [
                models.DeleteOperation(delete=models.PointIdsList(points=[0])),
                models.SetPayloadOperation(set_payload=models.SetPayload(payload={"k": 1}, points=[1])),
                models.UpsertOperation(upsert=models.PointsList.model_construct(points=[bad])),
            ],
        )
    assert err.value.problems[0][0] == 801
    assert count_all(lattice.client, migrating) == before
    assert "k" not in point_of(lattice.client, docs, 1).payload  # type: ignore[union-attr]


# --------------------------------------------------------------------------- delete_vectors


def test_deleting_the_applications_vector_deletes_the_points_embedding_in_both_models(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, target: HashEmbedder
) -> None:
    plan, data = migrating.plan, migrating.strategy.data_collection
    lattice.upsert(migrating.collection, new_points(migrating, legacy, [140, 141]))
    assert fresh_target(lattice.client, migrating, target, 140)
    lattice.delete_vectors(migrating.collection, ["legacy"], [140])
    for collection in dict.fromkeys([plan.collection, data]):
        held = point_of(lattice.client, collection, 140)
        assert held is not None and not held.vector, collection  # neither model's vector is left
    assert fresh_target(lattice.client, migrating, target, 141)  # the others keep theirs


# --------------------------------------------------------------------------- text changes


@pytest.mark.parametrize("when", ["dual-write", "after cutover", "after finalize"])
def test_a_text_changed_through_set_payload_re_embeds_the_target_vector(
    lattice: lq.LatticeClient, migrating: lq.Migration, target: HashEmbedder, when: str
) -> None:
    if when != "dual-write":
        run_backfill(migrating, lattice.embedder(migrating.plan.target))
        migrating.cutover()
    if when == "after finalize":
        migrating.finalize(force=True)
    docs = migrating.strategy.data_collection if when == "after finalize" else migrating.collection
    lattice.set_payload(docs, {"text": "the weather turns cold"}, [1, 2])
    lattice.set_payload(
        docs,
        {"text": "bread rises overnight"},
        models.Filter(must=[models.HasIdCondition(has_id=[3, 4])]),
    )
    lattice.overwrite_payload(docs, {"text": "a kitten chases string", "k": 1}, [5])
    assert all(fresh_target(lattice.client, migrating, target, pid) for pid in (1, 2, 3, 4, 5))
    assert (
        point_of(lattice.client, migrating.strategy.data_collection, 3).payload["text"]
        == "bread rises overnight"
    )  # type: ignore[union-attr]


def test_a_filter_on_the_old_text_selects_the_points_to_re_embed(
    lattice: lq.LatticeClient, migrating: lq.Migration, target: HashEmbedder
) -> None:
    docs = migrating.collection
    old = point_of(lattice.client, docs, 6).payload["text"]  # type: ignore[union-attr]
    on_old = models.Filter(must=[models.FieldCondition(key="text", match=models.MatchValue(value=old))])
    lattice.set_payload(docs, {"text": "stocks rally at the close"}, on_old)
    assert fresh_target(lattice.client, migrating, target, 6, "stocks rally at the close")


def test_a_text_changed_again_meanwhile_is_not_overwritten(
    lattice: lq.LatticeClient, migrating: lq.Migration, target: HashEmbedder, watched: Watched, strategy: str
) -> None:
    docs, data = migrating.collection, migrating.strategy.data_collection
    before = point_of(lattice.client, data, 7).vector  # type: ignore[union-attr]

    def race(call: Any) -> None:
        lattice.client.set_payload(data, {"text": "another process wrote this"}, [7])

    method = "write_stamped" if strategy == "reembed" else "update_if_unchanged"
    watched.faults.inject(method, Meanwhile(race, on=1))
    lattice.set_payload(docs, {"text": "what the wrapper wrote"}, [7])
    assert [call.method for call, _ in watched.faults.fired] == [method]  # the re-embed was tried
    assert point_of(lattice.client, data, 7).vector == before  # type: ignore[union-attr]


def test_deleting_the_text_leaves_the_target_vector(
    lattice: lq.LatticeClient, migrating: lq.Migration, target: HashEmbedder
) -> None:
    docs, data = migrating.collection, migrating.strategy.data_collection
    text = point_of(lattice.client, docs, 8).payload["text"]  # type: ignore[union-attr]
    lattice.set_payload(docs, {"text": text}, [8])  # gives it a fresh target vector first
    lattice.delete_payload(docs, ["text"], [8])
    assert fresh_target(lattice.client, migrating, target, 8, text)
    assert "text" not in point_of(lattice.client, data, 8).payload  # type: ignore[union-attr]


def test_an_upsert_with_a_new_text_re_embeds_the_target_vector(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, target: HashEmbedder
) -> None:
    text = "rain again across the north"
    [point] = new_points(migrating, legacy, [9])
    lattice.upsert(migrating.collection, [point.model_copy(update={"payload": {"text": text}})])
    assert fresh_target(lattice.client, migrating, target, 9, text)


# --------------------------------------------------------------------------- queries


def test_batched_and_grouped_queries_embed_documents_with_the_routed_model(
    lattice: lq.LatticeClient, migrating: lq.Migration, target: HashEmbedder
) -> None:
    run_backfill(migrating, lattice.embedder(migrating.plan.target))
    migrating.cutover()
    docs, text = migrating.collection, CORPUS[3]
    single = lattice.query_points(docs, models.Document(text=text, model="any"), limit=3)
    batch = lattice.query_batch_points(
        docs,
        [
            models.QueryRequest(query=models.Document(text=text, model="any"), limit=3),
            models.QueryRequest(query=target.embed([CORPUS[0]])[0].tolist(), limit=1, with_payload=True),
        ],
    )
    assert [p.id for p in batch[0].points] == [p.id for p in single.points]
    assert batch[1].points[0].payload["text"].startswith(CORPUS[0])  # type: ignore[index]
    groups = lattice.query_points_groups(
        docs, "text", models.Document(text=text, model="any"), limit=2, group_size=1
    )
    assert groups.groups[0].hits[0].id == single.points[0].id
    with pytest.raises(lq.VectorValidationError, match="request 1"):
        lattice.query_batch_points(
            docs, [models.QueryRequest(query=[0.1] * target.dimension), models.QueryRequest(query=[0.1] * 5)]
        )


def test_a_mixed_mode_request_of_a_batch_runs_as_query_points(
    lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=N)
    migration = lattice.plan(
        docs, source=legacy.spec("legacy", 1), target=modern.spec("modern", 1), source_vector="legacy",
        query_mode="mixed",
    )  # fmt: skip
    migration.start()
    query = models.Document(text=CORPUS[5], model="any")
    [found] = lattice.query_batch_points(docs, [models.QueryRequest(query=query, limit=2)])
    assert [p.id for p in found.points] == [p.id for p in lattice.query_points(docs, query, limit=2).points]


def test_the_search_matrix_uses_the_routed_vector(
    lattice: lq.LatticeClient, migrating: lq.Migration, watched: Watched
) -> None:
    run_backfill(migrating, lattice.embedder(migrating.plan.target))
    plan = migrating.plan
    watched.clear()
    lattice.search_matrix_pairs(migrating.collection, sample=4, limit=1)
    migrating.cutover()
    lattice.search_matrix_offsets(migrating.collection, sample=4, limit=1)
    [before, after] = [
        c.arguments for c in watched.of("forward") if c.arguments["method"].startswith("search")
    ]
    assert (before["collection"], before["using"]) == (plan.collection, plan.source_vector)
    assert (after["collection"], after["using"]) == (migrating.strategy.data_collection, plan.target_vector)


# --------------------------------------------------------------------------- the same validation everywhere


def bad_point() -> models.PointStruct:
    return models.PointStruct.model_construct(id=901, vector={"legacy": [0.1] * 7}, payload={"text": "t"})


WRITES = {
    "upsert": lambda lq_, c, good: lq_.upsert(c, [good, bad_point()]),
    "upload_points": lambda lq_, c, good: lq_.upload_points(c, [good, bad_point()]),
    "upload_collection": lambda lq_, c, good: lq_.upload_collection(
        c, [good.vector, bad_point().vector], payload=[good.payload, {"text": "t"}], ids=[good.id, 901]
    ),
    "batch_update_points": lambda lq_, c, good: lq_.batch_update_points(
        c, [models.UpsertOperation(upsert=models.PointsList.model_construct(points=[good, bad_point()]))]
    ),
    "update_vectors": lambda lq_, c, good: lq_.update_vectors(
        c,
        [
            models.PointVectors(id=0, vector={"legacy": models.Document(text="zero", model="m")}),
            models.PointVectors.model_construct(id=1, vector={"legacy": [0.1] * 7}),
        ],
    ),
}


@pytest.mark.parametrize("method", sorted(WRITES))
def test_every_routed_write_refuses_a_batch_with_one_bad_point_whole(
    lattice: lq.LatticeClient, migrating: lq.Migration, legacy: HashEmbedder, method: str
) -> None:
    assert set(WRITES) | {"delete", "delete_vectors"} >= {
        n for n, (kind, _) in surface.ROUTED.items() if kind == "write" and "payload" not in n
    }
    [good] = new_points(migrating, legacy, [0])
    before = [
        point_of(lattice.client, c, 0)
        for c in dict.fromkeys([migrating.collection, migrating.strategy.data_collection])
    ]
    with pytest.raises(lq.VectorValidationError, match=r"has 7 dimensions|ambiguous|written by both models"):
        WRITES[method](lattice, migrating.collection, good)
    after = [
        point_of(lattice.client, c, 0)
        for c in dict.fromkeys([migrating.collection, migrating.strategy.data_collection])
    ]
    assert after == before
    assert lattice.client.retrieve(migrating.collection, [901]) == []


# --------------------------------------------------------------------------- server-side inference


class ServerInference(StoreWrapper):
    """A store standing in for a server with inference: the ``models.Document`` it receives are embedded
    by model name (as Qdrant Cloud would), everything else reaches the store as sent."""

    def __init__(self, store: Store, models_by_name: dict[str, HashEmbedder]) -> None:
        super().__init__(store)
        self.models = models_by_name
        self.documents: list[models.Document] = []

    def _embedded(self, value: Any) -> Any:
        if isinstance(value, models.Document):
            self.documents.append(value)
            return self.models[value.model].embed([value.text])[0].tolist()
        if isinstance(value, dict):
            return {k: self._embedded(v) for k, v in value.items()}
        return value

    def upsert(self, collection: str, points: Any, **kwargs: Any) -> Any:
        sent = [p.model_copy(update={"vector": self._embedded(p.vector)}) for p in points]
        return super().upsert(collection, sent, **kwargs)

    def query(self, collection: str, **kwargs: Any) -> Any:
        return super().query(collection, **{**kwargs, "query": self._embedded(kwargs.get("query"))})

    def update_if_unchanged(self, collection: str, text_field: str, pending: Any, **kwargs: Any) -> Any:
        sent = {pid: (text, self._embedded(dict(vectors))) for pid, (text, vectors) in pending.items()}
        return super().update_if_unchanged(collection, text_field, sent, **kwargs)


def test_a_cloud_inference_client_needs_the_choice_made_explicitly(qdrant: QdrantClient, names: Any) -> None:
    qdrant.cloud_inference = True  # as QdrantClient(url=..., cloud_inference=True) sets it
    try:
        with pytest.raises(lq.ConfigError, match="cloud_inference=True: say where") as err:
            make_lattice(qdrant, names)
        assert err.value.key == "inference"
        assert make_lattice(qdrant, names, inference="local").inference == "local"
        assert make_lattice(qdrant, names, inference="server").inference == "server"
    finally:
        qdrant.cloud_inference = False
    with pytest.raises(lq.ConfigError, match="needs a client made with"):
        make_lattice(qdrant, names, inference="server")
    assert make_lattice(qdrant, names).inference == "local"


def test_server_inference_sends_documents_of_the_routed_models(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    source, target = legacy.spec("legacy", 1), modern.spec("modern", 1)
    server = ServerInference(
        open_store(qdrant, control_collection=names("control")),
        {source.model_id: legacy, target.model_id: modern},
    )
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=N)
    qdrant.cloud_inference = True
    try:
        lattice = make_lattice(qdrant, names, store=server, inference="server", load_embedders=False)
    finally:
        qdrant.cloud_inference = False
    migration = lattice.plan(docs, source=source, target=target, source_vector="legacy")
    migration.start()
    text = "a heron waits by the river"
    lattice.upsert(
        docs, [models.PointStruct(id=50, vector=models.Document(text=text, model="x"), payload={})]
    )
    lattice.set_payload(docs, {"text": "the river floods in spring"}, [1])
    assert {(d.model, d.text) for d in server.documents} == {
        (source.model_id, text),
        (target.model_id, text),
        (target.model_id, "the river floods in spring"),
    }
    assert fresh_target(qdrant, migration, modern, 50, text)
    assert fresh_target(qdrant, migration, modern, 1, "the river floods in spring")
    migration.cutover(force=True)
    hit = lattice.query_points(docs, models.Document(text=text, model="x"), limit=1)
    assert hit.points[0].id == 50 and server.documents[-1].model == target.model_id
    migration.rollback()
    with pytest.raises(lq.ConfigError, match="mixed mode"):
        lattice.query_points(docs, models.Document(text=text, model="x"), mode="mixed")


def test_server_inference_refuses_a_re_embed_whose_backups_need_the_vectors(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder
) -> None:
    newer = HashEmbedder(64, ngrams=2, salt="modern")
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=N)
    qdrant.cloud_inference = True
    try:
        lattice = make_lattice(qdrant, names, inference="server")
    finally:
        qdrant.cloud_inference = False
    migration = lattice.plan(
        docs, source=legacy.spec("legacy", 1), target=newer.spec("modern", 1), source_vector="legacy",
        strategy="reembed",
    )  # fmt: skip
    migration.start()
    with pytest.raises(lq.ConfigError, match="re-embed backs up"):
        lattice.upsert(docs, [models.PointStruct(id=60, vector=models.Document(text="x", model="x"))])
    assert qdrant.retrieve(docs, [60]) == []
