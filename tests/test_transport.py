"""The hand-over of the wrapper's validated points to qdrant-client's transport.

``QdrantClient.upsert`` and ``update_vectors`` scan every value of every vector for objects to embed before
they hand a request to their transport. The wrapper's routed writes carry only vectors it validated or
embedded (lists of numbers), so it hands them over directly; these tests say when it does, that what is
written is the same, and that a client with its own method (a subclass, an instrumented instance) always has
that method called.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.client import _numeric
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import MODEL_FIELD, NumericPoints, open_store
from lattice_qdrant.store.server import transport_method

from conftest import MakeMigration, make_lattice


class Scans:
    """Counts the scans of a client's inference inspector (patched on the instance)."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        inspector = client._inference_inspector
        original = inspector.inspect

        def counted(points: Any) -> bool:
            self.count += 1
            return bool(original(points))

        monkeypatch.setattr(inspector, "inspect", counted)


def given(migration: lq.Migration, legacy: HashEmbedder, modern: HashEmbedder, ids: range) -> list[Any]:
    texts = [f"note {i}" for i in ids]
    old, new = legacy.embed(texts), modern.embed(texts)
    return [
        models.PointStruct(
            id=i,
            vector={"legacy": old[k].tolist(), migration.plan.target_vector: new[k].tolist()},
            payload={"text": texts[k]},
        )
        for k, i in enumerate(ids)
    ]


@pytest.fixture
def watched(
    lattice: lq.LatticeClient, make_migration: MakeMigration, monkeypatch: pytest.MonkeyPatch
) -> tuple[lq.Migration, Scans]:
    """A started migration of 4 points, and the count of the scans of its client from now on."""
    return make_migration(n=4), Scans(lattice.client, monkeypatch)


def test_a_routed_upsert_of_given_vectors_is_handed_over_unscanned_and_written_as_given(
    lattice: lq.LatticeClient, watched: tuple[lq.Migration, Scans], legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    migration, scans = watched
    points = given(migration, legacy, modern, range(100, 103))
    lattice.upsert(migration.collection, points)
    assert scans.count == 0
    stored = lattice.client.retrieve(migration.collection, [100, 101, 102], with_vectors=True)
    for record, point in zip(sorted(stored, key=lambda r: r.id), points, strict=True):
        assert isinstance(record.vector, dict) and isinstance(point.vector, dict)
        for name, vector in point.vector.items():
            np.testing.assert_allclose(record.vector[name], vector, rtol=1e-6)
        assert (record.payload or {})[MODEL_FIELD] == migration.plan.target.model_id


def test_a_routed_upsert_that_embeds_is_handed_over_unscanned_too(
    lattice: lq.LatticeClient, watched: tuple[lq.Migration, Scans]
) -> None:
    """Vectors embedded by the wrapper are lists of floats like the given ones."""
    migration, scans = watched
    lattice.upsert(
        migration.collection,
        [
            models.PointStruct(
                id=7, vector=models.Document(text="dogs", model="lattice"), payload={"text": "dogs"}
            )
        ],
    )
    assert scans.count == 0
    record = lattice.client.retrieve(migration.collection, [7], with_vectors=True)[0]
    assert set(record.vector or {}) == {"legacy", migration.plan.target_vector}


def test_a_routed_update_vectors_is_handed_over_unscanned(
    lattice: lq.LatticeClient, watched: tuple[lq.Migration, Scans], legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    migration, scans = watched
    vectors = given(migration, legacy, modern, range(0, 2))
    lattice.update_vectors(
        migration.collection, [models.PointVectors(id=p.id, vector=p.vector) for p in vectors]
    )
    assert scans.count == 0
    record = lattice.client.retrieve(migration.collection, [1], with_vectors=True)[0]
    np.testing.assert_allclose(
        (record.vector or {})[migration.plan.target_vector],
        vectors[1].vector[migration.plan.target_vector],  # type: ignore[index]
        rtol=1e-6,
    )


def test_without_a_migration_the_callers_points_are_scanned_as_qdrant_client_scans_them(
    lattice: lq.LatticeClient,
    qdrant: QdrantClient,
    names: Any,
    legacy: HashEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unrouted, the points are the caller's (they may hold objects for qdrant-client to embed)."""
    plain = names("plain")
    qdrant.create_collection(
        plain,
        vectors_config={"v": models.VectorParams(size=legacy.dimension, distance=models.Distance.COSINE)},
    )
    scans = Scans(qdrant, monkeypatch)
    lattice.upsert(plain, [models.PointStruct(id=1, vector={"v": legacy.embed(["x"])[0].tolist()})])
    assert scans.count == 1


class Traced(QdrantClient):
    """A client with its own ``upsert`` and ``update_vectors`` (instrumentation, say)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("upsert")
        return super().upsert(*args, **kwargs)

    def update_vectors(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("update_vectors")
        return super().update_vectors(*args, **kwargs)


def test_a_client_with_its_own_write_methods_has_them_called(
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    client = Traced(":memory:")
    lattice = make_lattice(client, names)
    docs = names("docs")
    client.create_collection(
        docs,
        vectors_config={
            "legacy": models.VectorParams(size=legacy.dimension, distance=models.Distance.COSINE)
        },
    )
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    client.calls.clear()
    points = given(migration, legacy, modern, range(0, 2))
    lattice.upsert(docs, points)
    lattice.update_vectors(docs, [models.PointVectors(id=p.id, vector=p.vector) for p in points])
    assert client.calls == ["upsert", "update_vectors"]
    assert transport_method(client, "upsert") is None


def test_an_instance_with_its_own_method_has_it_called(qdrant: QdrantClient) -> None:
    calls: list[Any] = []
    qdrant.upsert = lambda *args, **kwargs: calls.append(args)  # type: ignore[method-assign]
    assert transport_method(qdrant, "upsert") is None
    assert transport_method(qdrant, "update_vectors") is not None


def test_only_numeric_points_are_handed_over(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store decides by the batch's type: a plain list is the caller's, scanned."""
    docs = names("docs")
    qdrant.create_collection(
        docs,
        vectors_config={"v": models.VectorParams(size=legacy.dimension, distance=models.Distance.COSINE)},
    )
    store = open_store(qdrant, control_collection=names("control"))
    scans = Scans(qdrant, monkeypatch)
    point = models.PointStruct(id=1, vector={"v": legacy.embed(["x"])[0].tolist()})
    store.upsert(docs, [point])
    assert scans.count == 1
    store.upsert(docs, NumericPoints([point]))
    store.update_vectors(docs, NumericPoints([models.PointVectors(id=1, vector={"v": point.vector["v"]})]))  # type: ignore[index]
    assert scans.count == 1
    assert transport_method(object(), "upsert") is None  # not a QdrantClient: its own method


@pytest.mark.parametrize(
    ("vector", "extras", "numeric"),
    [
        ({"a": [0.1, 0.2], "b": [0.3]}, {}, True),
        ([0.1, 0.2], {}, True),  # the unnamed vector, as a re-embed writes it
        ({}, {}, True),
        ({"a": models.Document(text="t", model="m")}, {}, False),  # left to server-side inference
        (models.Document(text="t", model="m"), {}, False),
        ({"a": [0.1]}, {"sparse": models.SparseVector(indices=[1], values=[0.5])}, False),  # passed through
    ],
)
def test_which_batches_are_numeric(vector: Any, extras: dict[str, Any], numeric: bool) -> None:
    batch = [models.PointStruct.model_construct(id=1, vector=vector, payload=None)]
    found = _numeric(batch, [extras])
    assert isinstance(found, NumericPoints) is numeric
    assert list(found) == batch


def test_the_async_twin_in_local_mode_hands_over_to_the_engine(
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    async def scenario() -> None:
        client = AsyncQdrantClient(":memory:")
        twin = lq.wrap(client, control_collection=names("control"), refresh_interval=0.0)
        docs = names("docs")
        await client.create_collection(
            docs,
            vectors_config={
                "legacy": models.VectorParams(size=legacy.dimension, distance=models.Distance.COSINE)
            },
        )
        migration = await twin.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
        await migration.start()
        scans = 0
        original = client._inference_inspector.inspect

        def counted(points: Any) -> bool:
            nonlocal scans
            scans += 1
            return bool(original(points))

        client._inference_inspector.inspect = counted  # type: ignore[method-assign]
        points = given(migration.sync, legacy, modern, range(0, 3))
        await twin.upsert(docs, points)
        assert scans == 0
        records = await client.retrieve(docs, [0, 1, 2], with_vectors=True)
        assert len(records) == 3 and all(target_spec.model_id in str(r.payload) for r in records)
        await client.close()

    asyncio.run(scenario())


def test_the_async_face_refuses_the_hand_over_for_a_client_with_its_own_method() -> None:
    from lattice_qdrant.aclient import _LocalFace

    class Own(AsyncQdrantClient):
        async def upsert(self, *args: Any, **kwargs: Any) -> Any:
            return await super().upsert(*args, **kwargs)

    mine, stock = _LocalFace(Own(":memory:")), _LocalFace(AsyncQdrantClient(":memory:"))
    assert transport_method(mine, "upsert") is None
    assert transport_method(mine, "update_vectors") is not None
    assert transport_method(stock, "upsert") is not None


def test_without_a_migration_a_point_with_nothing_to_embed_goes_as_the_caller_gave_it(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder
) -> None:
    """Not copied (a copy of every point cost more than the rest of the pass-through); a point with a
    Document of a registered model is copied with it embedded, the caller's left as it was."""
    lattice = make_lattice(qdrant, names, embedders={"legacy": legacy})
    plain = models.PointStruct(id=1, vector={"v": legacy.embed(["x"])[0].tolist()}, payload={"text": "x"})
    document = models.PointStruct(id=2, vector={"v": models.Document(text="y", model="legacy"), "w": [0.5]})
    sent = lattice._embed_unrouted([plain, document])
    assert sent[0] is plain
    assert sent[1] is not document and isinstance(document.vector["v"], models.Document)  # type: ignore[index]
    np.testing.assert_allclose(sent[1].vector["v"], legacy.embed(["y"])[0], rtol=1e-6)  # type: ignore[index]
    assert sent[1].vector["w"] == [0.5]  # type: ignore[index]
