"""The async twin: ``lq.wrap(AsyncQdrantClient(...))`` routes as the sync wrapper does, awaitably.

Each test drives its coroutine with ``asyncio.run`` (one event loop per test): the twin, its migration and
the async client need no loop to be built, only to be awaited.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import aclient
from lattice_qdrant import client as sync_module
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.state import Phase, Status
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, open_store
from lattice_qdrant.surface import PASSED_THROUGH, ROUTED
from lattice_qdrant.testing import RecordingStore

from conftest import CORPUS, same_direction

LIFECYCLE = ("start", "pause", "resume", "cancel", "cutover", "rollback", "finalize", "restore", "progress")


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A plain test that runs the coroutine ``test`` on its own event loop."""

    @functools.wraps(test)
    def plain(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return plain


class Slow:
    """An embedder that takes ``delay`` seconds per call, holding the thread as a CPU-bound model would."""

    def __init__(self, embedder: HashEmbedder, delay: float) -> None:
        self.embedder, self.delay = embedder, delay
        self.dimension = embedder.dimension
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        time.sleep(self.delay)
        return self.embedder.embed(texts)


@pytest.fixture
def aqdrant() -> Iterator[AsyncQdrantClient]:
    client = AsyncQdrantClient(":memory:")
    yield client
    asyncio.run(client.close())


@pytest.fixture
def twin(aqdrant: AsyncQdrantClient, names: Any) -> lq.AsyncLatticeClient:
    return lq.wrap(aqdrant, control_collection=names("control"), refresh_interval=0.0)


async def fill(client: Any, name: str, embedder: HashEmbedder, n: int = 12) -> list[str]:
    """Create ``name`` with a named source vector and ``n`` points with text, through ``client``."""
    await client.create_collection(
        name,
        vectors_config={
            "legacy": models.VectorParams(size=embedder.dimension, distance=models.Distance.COSINE)
        },
    )
    texts = [f"{CORPUS[i % len(CORPUS)]} (note {i})" for i in range(n)]
    vectors = embedder.embed(texts)
    await client.upsert(
        name,
        [
            models.PointStruct(id=i, vector={"legacy": vectors[i].tolist()}, payload={"text": t})
            for i, t in enumerate(texts)
        ],
    )
    return texts


async def migrating(
    twin: lq.AsyncLatticeClient, docs: str, legacy: HashEmbedder, source: lq.ModelSpec, target: lq.ModelSpec
) -> lq.AsyncMigration:
    await fill(twin, docs, legacy)
    migration = await twin.plan(docs, source=source, target=target, source_vector="legacy")
    await migration.start()
    return migration


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------- the surface


@pytest.mark.parametrize("name", sorted(ROUTED))
def test_every_routed_method_is_on_the_twin_as_on_the_async_client(name: str) -> None:
    """Same name, awaitable where ``AsyncQdrantClient``'s is (``upload_points`` and ``upload_collection``
    are plain calls there), and ``AsyncQdrantClient``'s parameters, in order, with their defaults."""
    ours, theirs = getattr(lq.AsyncLatticeClient, name), getattr(AsyncQdrantClient, name)
    assert name in vars(lq.AsyncLatticeClient)  # defined by the twin, not passed through
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs)
    mine = inspect.signature(ours).parameters
    expected = inspect.signature(theirs).parameters
    assert [p for p in mine.values() if p.name in expected] == list(expected.values())


def test_query_points_takes_the_sync_wrappers_own_arguments_too() -> None:
    params = inspect.signature(lq.AsyncLatticeClient.query_points).parameters
    assert {"mode", "missing", "read_repair"} <= set(params)
    assert params["mode"].kind == inspect.Parameter.KEYWORD_ONLY


def test_the_lifecycle_is_awaitable() -> None:
    for name in (*LIFECYCLE, "snapshot", "coverage", "routing", "history"):
        assert inspect.iscoroutinefunction(getattr(lq.AsyncMigration, name)), name
    for name in ("plan", "migration", "query_text", "close"):
        assert inspect.iscoroutinefunction(getattr(lq.AsyncLatticeClient, name)), name


def test_wrap_returns_the_twin_for_an_async_client_and_the_sync_wrapper_otherwise(
    aqdrant: AsyncQdrantClient,
) -> None:
    assert isinstance(lq.wrap(aqdrant), lq.AsyncLatticeClient)
    sync = QdrantClient(":memory:")
    assert isinstance(lq.wrap(sync), lq.LatticeClient)
    with pytest.raises(lq.ConfigError, match="sync_client is for wrapping an AsyncQdrantClient"):
        lq.wrap(sync, sync_client=QdrantClient(":memory:"))
    with pytest.raises(lq.ConfigError, match=r"is wrapped by lattice_qdrant\.wrap"):
        sync_module.wrap(aqdrant)  # type: ignore[arg-type]


# ----------------------------------------------------------------- the lifecycle and routing, in local mode


@run
async def test_the_whole_migration_through_the_twin(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    await fill(twin, docs, legacy)
    migration = await twin.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    assert migration.state.status == Status.PLANNED and migration.collection == docs
    state = await migration.start()
    assert state.phase == Phase.MIGRATING and migration.state == state
    target = migration.plan.target_vector

    # dual-write: a Document is embedded with both models, in one upsert, and stamped
    text = "a dog barks at the cat"
    await twin.upsert(
        docs,
        [models.PointStruct(id=100, vector=models.Document(text=text, model="any"), payload={"text": text})],
    )
    (rec,) = await twin.retrieve(docs, [100], with_payload=True, with_vectors=True)
    assert same_direction(rec.vector["legacy"], legacy.embed([text])[0])
    assert same_direction(rec.vector[target], modern.embed([text])[0])
    assert rec.payload == {"text": text, MODEL_FIELD: "modern", VERSION_FIELD: 1}

    # update_vectors with the source vector only: the target is embedded from the stored text
    new_legacy = legacy.embed(["something else"])[0].tolist()
    await twin.update_vectors(docs, [models.PointVectors(id=1, vector={"legacy": new_legacy})])
    (rec,) = await twin.retrieve(docs, [1], with_payload=True, with_vectors=True)
    assert same_direction(rec.vector["legacy"], new_legacy)
    assert same_direction(rec.vector[target], modern.embed([rec.payload["text"]])[0])

    # queries follow the routing: the source space before cutover, the target after
    query = models.Document(text="a dog barks", model="routed")
    before = (await twin.query_points(docs, query, limit=1, with_vectors=True)).points[0]
    assert before.id == 100
    assert before.score == pytest.approx(
        cosine(legacy.embed(["a dog barks"])[0], legacy.embed([text])[0]), 1e-5
    )

    from lattice_qdrant.backfill import run_backfill

    report = await asyncio.to_thread(run_backfill, migration.sync, twin.embedder(target_spec))
    assert report.coverage == 1.0
    assert (await migration.coverage()).fraction == 1.0
    state = await migration.cutover()
    assert state.phase == Phase.ROLLBACK_WINDOW and migration.state.phase == Phase.ROLLBACK_WINDOW
    after = (await twin.query_points(docs, query, limit=1)).points[0]
    assert after.score == pytest.approx(
        cosine(modern.embed(["a dog barks"])[0], modern.embed([text])[0]), 1e-5
    )
    hits = await twin.query_text(docs, "a dog barks", limit=1)
    assert hits.points[0].score == pytest.approx(after.score)

    state = await migration.rollback()
    assert state.phase == Phase.MIGRATING
    back = (await twin.query_points(docs, query, limit=1)).points[0]
    assert back.score == pytest.approx(before.score)

    await migration.cutover()
    state = await migration.finalize(force=True)
    assert state.finalized
    info = await twin.get_collection(docs)
    assert list(info.config.params.vectors) == [target]  # type: ignore[arg-type]
    again = await twin.migration(docs)
    assert again.state.finalized and [e["event"] for e in await again.history()][-1] == "finalize"


@run
async def test_a_bad_point_rejects_the_whole_batch_and_nothing_is_written(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    migration = await migrating(twin, names("docs"), legacy, source_spec, target_spec)
    docs = migration.collection
    before = (await twin.count(docs, exact=True)).count
    good = models.PointStruct(id=300, vector=models.Document(text="fine", model="m"), payload={})
    bad = models.PointStruct.model_construct(id=301, vector={"legacy": [0.1] * 3}, payload={"text": "t"})
    with pytest.raises(lq.VectorValidationError, match="nothing was written") as err:
        await twin.upsert(docs, [good, bad])
    assert err.value.problems[0][0] == 301 and "has 3 dimensions" in err.value.problems[0][1]
    assert (await twin.count(docs, exact=True)).count == before
    assert await twin.retrieve(docs, [300]) == []
    with pytest.raises(lq.VectorValidationError, match=r"\d+ dimensions"):
        await twin.query_points(docs, [0.1] * 5)
    with pytest.raises(lq.VectorValidationError, match="empty"):
        await twin.query_text(docs, "  ")


@run
async def test_pass_through_methods_are_the_async_clients_awaited(
    twin: lq.AsyncLatticeClient, aqdrant: AsyncQdrantClient, names: Any, legacy: HashEmbedder
) -> None:
    docs = names("plain")
    for name in ("create_collection", "count", "scroll", "retrieve", "get_collection"):
        assert inspect.iscoroutinefunction(getattr(twin, name)), name
    await fill(twin, docs, legacy, n=5)  # create_collection and an unrouted upsert
    assert (await twin.count(docs, exact=True)).count == 5
    page, _ = await twin.scroll(docs, limit=10)
    assert sorted(p.id for p in page) == [0, 1, 2, 3, 4]
    assert (await aqdrant.count(docs, exact=True)).count == 5  # the same storage
    hits = await twin.query_points(docs, legacy.embed(["cat"])[0].tolist(), using="legacy", limit=2)
    assert len(hits.points) == 2  # no migration: passed to the client unchanged
    with pytest.raises(lq.MigrationNotFoundError):
        await twin.migration(docs)


@run
async def test_a_pause_resume_and_cancel_are_awaitable(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    migration = await migrating(twin, names("docs"), legacy, source_spec, target_spec)
    assert (await migration.pause("lunch")).status == Status.PAUSED
    assert migration.state.status == Status.PAUSED
    assert (await migration.resume()).status == Status.IN_PROGRESS
    routing = await migration.routing()
    assert routing.write == lq.WriteRoute.DUAL_WRITE
    state = await migration.cancel()
    assert state.terminal
    info = await twin.get_collection(migration.collection)
    assert list(info.config.params.vectors) == ["legacy"]  # type: ignore[arg-type]


def test_every_passed_through_method_is_the_async_clients_awaitable_as_there(
    twin: lq.AsyncLatticeClient,
) -> None:
    """In local mode each is wrapped to take the local lock, and stays what it is: a coroutine function
    where ``AsyncQdrantClient``'s is one, a plain call where it is not."""
    for name in sorted(PASSED_THROUGH):
        theirs = getattr(AsyncQdrantClient, name)
        if not callable(theirs) or isinstance(theirs, property):
            continue
        ours = getattr(twin, name)
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name
        assert ours.__name__ == name, name


@run
async def test_a_local_path_works_and_keeps_the_migration_across_a_reopening(
    tmp_path: Any,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    control = names("control")
    first = lq.wrap(AsyncQdrantClient(path=str(tmp_path / "db")), control_collection=control)
    migration = await migrating(first, "docs", legacy, source_spec, target_spec)
    await first.upsert("docs", [models.PointStruct(id=50, vector=models.Document(text="a cat", model="m"))])
    await first.close()

    again = lq.wrap(AsyncQdrantClient(path=str(tmp_path / "db")), control_collection=control)
    reopened = await again.migration("docs")
    assert reopened.state.phase == Phase.MIGRATING
    (rec,) = await again.retrieve("docs", [50], with_vectors=True)
    assert same_direction(rec.vector[migration.plan.target_vector], modern.embed(["a cat"])[0])
    await again.close()


def test_a_name_in_neither_table_is_refused_as_the_sync_wrapper_refuses_it(
    twin: lq.AsyncLatticeClient,
) -> None:
    with pytest.raises(AttributeError, match=r"neither table of lattice_qdrant/surface\.py"):
        twin.some_method_a_newer_client_adds  # noqa: B018
    assert twin.cloud_inference is False  # an attribute the table reads through


@run
async def test_uploads_and_batches_are_routed_through_the_twin(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    migration = await migrating(twin, names("docs"), legacy, source_spec, target_spec)
    docs, target = migration.collection, migration.plan.target_vector
    texts = [f"uploaded {i}" for i in range(5)]
    points = (models.PointStruct(id=500 + i, vector={}, payload={"text": t}) for i, t in enumerate(texts))
    assert twin.upload_points(docs, points, batch_size=2) is None  # a plain call, as on AsyncQdrantClient
    batched = models.PointStruct(
        id=600, vector=models.Document(text="batched", model="m"), payload={"text": "batched"}
    )
    await twin.batch_update_points(docs, [models.UpsertOperation(upsert=models.PointsList(points=[batched]))])
    found = await twin.retrieve(docs, [*range(500, 505), 600], with_vectors=True, with_payload=True)
    assert len(found) == 6
    for rec in found:
        assert same_direction(rec.vector[target], modern.embed([rec.payload["text"]])[0])
        assert same_direction(rec.vector["legacy"], legacy.embed([rec.payload["text"]])[0])
        assert rec.payload[MODEL_FIELD] == "modern"


# ----------------------------------------------------------------- concurrency


@run
async def test_routed_calls_gathered_on_one_loop_all_land_and_nothing_races(
    aqdrant: AsyncQdrantClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    slow = Slow(modern, 0.01)
    twin = lq.wrap(
        aqdrant, control_collection=names("control"), refresh_interval=0.0, embedders={"modern": slow}
    )
    migration = await migrating(twin, names("docs"), legacy, source_spec, target_spec)
    docs, target = migration.collection, migration.plan.target_vector

    def point(i: int) -> models.PointStruct:
        text = f"{CORPUS[i % len(CORPUS)]} (new {i})"
        return models.PointStruct(
            id=1000 + i, vector=models.Document(text=text, model="m"), payload={"text": text}
        )

    writes = [twin.upsert(docs, [point(i)]) for i in range(16)]
    updates = [
        twin.set_payload(docs, {"seen": True}, points=[i]) for i in range(6)
    ]  # a routed payload write, between them
    reads = [twin.count(docs, exact=True) for _ in range(8)] + [
        twin.scroll(docs, limit=100) for _ in range(4)
    ]
    queries = [twin.query_points(docs, models.Document(text="cat", model="m"), limit=3) for _ in range(6)]
    results = await asyncio.gather(*writes, *updates, *reads, *queries)
    assert all(r is not None for r in results)
    records, _ = await twin.scroll(docs, limit=1000, with_vectors=True, with_payload=True)
    new = [r for r in records if int(r.id) >= 1000]
    assert len(new) == 16
    for rec in new:
        assert same_direction(rec.vector[target], modern.embed([rec.payload["text"]])[0])
        assert same_direction(rec.vector["legacy"], legacy.embed([rec.payload["text"]])[0])
        assert rec.payload[MODEL_FIELD] == "modern"
    assert sum(1 for r in records if (r.payload or {}).get("seen")) == 6


@run
async def test_a_pass_through_in_local_mode_waits_for_the_routed_request_in_progress(
    twin: lq.AsyncLatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    """Local mode is not thread-safe: a pass-through on the loop takes the lock a routed call's requests
    take in their thread, so the two never run at once."""
    docs = names("plain")
    await fill(twin, docs, legacy, n=3)
    face = twin.sync.client
    held, release = threading.Event(), threading.Event()

    def request_in_progress() -> None:
        with face.lock:  # type: ignore[attr-defined]
            held.set()
            release.wait(5)

    worker = threading.Thread(target=request_in_progress)
    worker.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    assert (await twin.count(docs, exact=True)).count == 3
    assert time.monotonic() - started >= 0.25
    worker.join(5)


def test_a_coroutine_of_local_mode_that_suspends_is_refused() -> None:
    async def suspends() -> int:
        await asyncio.sleep(0)
        return 1

    async def returns() -> int:
        return 2

    assert aclient._drive(returns(), "returns") == 2
    with pytest.raises(lq.AsyncClientError, match="suspended in suspends"):
        aclient._drive(suspends(), "suspends")


# ----------------------------------------------------------------- a server's client


def remote() -> AsyncQdrantClient:
    """A client of a server that is not there: building it makes no request, and the tests never await it."""
    return AsyncQdrantClient(url="http://127.0.0.1:9", timeout=7, prefix="q", check_compatibility=False)


def test_the_routed_calls_of_a_servers_client_run_on_a_sync_client_of_the_same_server() -> None:
    client = remote()
    twin = lq.wrap(client)
    sync = twin.sync.client
    assert isinstance(sync, QdrantClient)
    assert sync.init_options == {**client.init_options, "check_compatibility": False}
    assert twin.count == client.count  # pass-through: the async client's own method
    asyncio.run(twin.close())


def test_a_cloud_inference_client_needs_the_inference_choice_on_the_twin_too() -> None:
    client = AsyncQdrantClient(url="https://127.0.0.1:9", cloud_inference=True, check_compatibility=False)
    with pytest.raises(lq.ConfigError, match="cloud_inference=True"):
        lq.wrap(client)
    twin = lq.wrap(client, inference="server")
    assert twin.sync.inference == "server" and twin.sync.client.cloud_inference
    asyncio.run(twin.close())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("auth_token_provider", "async"),
        ("transport", httpx.AsyncHTTPTransport()),
    ],
)
def test_an_option_with_no_sync_twin_is_refused_by_name(option: str, value: Any) -> None:
    async def token() -> str:
        return "t"

    options = {option: token if value == "async" else value}
    client = AsyncQdrantClient(url="https://127.0.0.1:9", check_compatibility=False, **options)
    with pytest.raises(lq.AsyncClientError, match=f"{option}.*sync_client=") as err:
        lq.wrap(client)
    assert err.value.key == option
    # the way out the message names
    twin = lq.wrap(client, sync_client=QdrantClient(":memory:"))
    assert isinstance(twin, lq.AsyncLatticeClient)


@pytest.mark.parametrize("where", ["server", "local"])
@run
async def test_embedding_never_blocks_the_event_loop(
    where: str,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    """A slow embedder (0.4 s a call, holding its thread) while a ticker keeps ticking on the loop. The
    server is posed by a sync local client the routed calls run on (``sync_client``), which a RecordingStore
    watches; the async client, never awaited, stands for the server's."""
    slow = Slow(modern, 0.4)
    kwargs: dict[str, Any] = {"control_collection": names("control"), "refresh_interval": 0.0}
    if where == "server":
        sync = QdrantClient(":memory:")
        recording = RecordingStore(open_store(sync, control_collection=names("control")))
        twin = lq.wrap(remote(), sync_client=sync, store=recording, embedders={"modern": slow}, **kwargs)
        setup: Any = sync
        docs = names("docs")
        sync.create_collection(
            docs, vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)}
        )
        sync.upsert(
            docs,
            [
                models.PointStruct(
                    id=0, vector={"legacy": legacy.embed(["x"])[0].tolist()}, payload={"text": "x"}
                )
            ],
        )
    else:
        setup = AsyncQdrantClient(":memory:")
        twin = lq.wrap(setup, embedders={"modern": slow}, **kwargs)
        docs = names("docs")
        await fill(twin, docs, legacy, n=1)
    migration = await twin.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    await migration.start()
    ticks: list[float] = []

    async def ticker() -> None:
        while len(ticks) < 100:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    await twin.upsert(
        docs,
        [
            models.PointStruct(
                id=7, vector=models.Document(text="a cat", model="m"), payload={"text": "a cat"}
            )
        ],
    )
    await twin.query_points(docs, models.Document(text="cat", model="m"), limit=1)
    took = time.monotonic() - started
    ticking.cancel()
    assert slow.calls >= 1 and took >= 0.4
    during = [t for t in ticks if started <= t <= started + took]
    assert len(during) >= took / 0.02 * 0.5  # the loop kept ticking while the model embedded
    gaps = np.diff(during)
    assert gaps.max() < 0.2
    if where == "server":
        assert recording.of("upsert")  # the routed write went through the sync executor's store
        await twin.close()
    else:
        await setup.close()


@run
async def test_in_local_mode_a_vector_query_runs_on_the_loop_and_a_text_query_in_a_thread(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    # a vector query embeds nothing: handing it to a thread would cost more than its routing
    twin.add_embedder("legacy", legacy)
    twin.add_embedder("modern", modern)
    docs = names("docs")
    await migrating(twin, docs, legacy, source_spec, target_spec)
    seen: list[threading.Thread] = []
    routed = twin.sync.query_points

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread())
        return routed(*args, **kwargs)

    twin.sync.query_points = watched  # type: ignore[method-assign]
    vector = legacy.embed(["a cat"])[0].tolist()
    by_vector = await twin.query_points(docs, vector, limit=3)
    by_keyword = await twin.query_points(docs, query=vector, limit=3)
    by_text = await twin.query_points(docs, models.Document(text="a cat", model="m"), limit=3, mode="routed")
    assert seen[0] is seen[1] is threading.current_thread()
    assert seen[2] is not threading.current_thread()
    assert (
        [p.id for p in by_vector.points]
        == [p.id for p in by_keyword.points]
        == [p.id for p in by_text.points]
    )


def test_the_local_face_wraps_each_method_once(aqdrant: AsyncQdrantClient) -> None:
    face = aclient._LocalFace(aqdrant)
    assert face.query_points is face.query_points  # not wrapped anew on every request
    assert face.init_options == aqdrant.init_options


@run
async def test_in_local_mode_an_upsert_with_its_vectors_runs_on_the_loop_and_one_to_embed_in_a_thread(
    twin: lq.AsyncLatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    slow = Slow(modern, 0.0)
    twin.add_embedder("legacy", legacy)
    twin.add_embedder("modern", slow)
    docs = names("docs")
    migration = await migrating(twin, docs, legacy, source_spec, target_spec)
    target = migration.plan.target_vector
    threads: list[threading.Thread] = []
    embed = slow.embed

    def watched(texts: Sequence[str]) -> Any:
        threads.append(threading.current_thread())
        return embed(texts)

    slow.embed = watched  # type: ignore[method-assign]
    routed, ran_in = twin.sync.upsert, []

    def upsert(*args: Any, **kwargs: Any) -> Any:
        ran_in.append(threading.current_thread())
        return routed(*args, **kwargs)

    twin.sync.upsert = upsert  # type: ignore[method-assign]
    given = {"legacy": legacy.embed(["given"])[0].tolist(), target: modern.embed(["given"])[0].tolist()}
    await twin.upsert(docs, [models.PointStruct(id=100, vector=given, payload={"text": "given"})])
    assert threads == [] and ran_in == [threading.current_thread()]  # on the loop, as local mode's own
    # the target vector left out is embedded from the text, in a worker thread, and written once
    half = {"legacy": legacy.embed(["half"])[0].tolist()}
    await twin.upsert(docs, [models.PointStruct(id=101, vector=half, payload={"text": "half"})])
    assert len(threads) == 1 and threads[0] is not threading.current_thread()
    assert ran_in[1] is threading.current_thread() and ran_in[2] is threads[0]  # stopped, then run again
    records = await twin.retrieve(docs, [100, 101], with_vectors=True)
    stored = {r.id: r.vector for r in records}
    assert same_direction(stored[100][target], given[target])
    assert same_direction(stored[101][target], modern.embed(["half"])[0])


@run
async def test_in_local_mode_an_unrouted_document_is_embedded_in_a_thread(
    twin: lq.AsyncLatticeClient, names: Any, legacy: HashEmbedder
) -> None:
    threads: list[threading.Thread] = []
    embed = legacy.embed

    def watched(texts: Sequence[str]) -> Any:
        threads.append(threading.current_thread())
        return embed(texts)

    legacy.embed = watched  # type: ignore[method-assign]
    twin.add_embedder("legacy", legacy)
    docs = names("plain")
    await fill(twin, docs, legacy, n=1)
    threads.clear()
    document = models.Document(text="a cat", model="legacy")
    await twin.upsert(docs, [models.PointStruct(id=5, vector={"legacy": document}, payload={})])
    assert len(threads) == 1 and threads[0] is not threading.current_thread()
    assert len(await twin.retrieve(docs, [5])) == 1
