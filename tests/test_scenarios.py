"""What every strategy shares, written once and run for each strategy × backend × executor.

Routing before start, dual-writes, queries around cutover, rollback, finalize, a backfill stopped and
resumed, and bad input behave alike whichever way the target vectors are stored; the per-strategy files
keep what only one strategy does. A scenario asks the strategy where things are (its ``data_collection``,
its ``done()`` filter, whether the source vector keeps a place of its own) instead of testing its name.

The fixtures:

* ``backend`` (conftest): local mode always, a server when ``QDRANT_URL`` is set;
* ``strategy``: a :class:`Case`, the plan's strategy with the arguments it needs and its target model;
* ``executor``: the way a scenario reaches the wrapper: the sync one (:class:`SyncRun`) or the async twin
  (:class:`AsyncRun`);
* ``planned`` (filled and planned) and ``migrating`` (started too): the shared setup.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import AsyncQdrantClient, QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import backups
from lattice_qdrant.backfill import BackfillOptions, BackfillReport, run_backfill
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD
from lattice_qdrant.strategies import MigrationStrategy, strategy_for

from conftest import QDRANT_URL, fill_collection, make_lattice, same_direction, unit

#: points in a scenario's collection
N = 24
STRATEGIES = ["in_place", "blue_green", "reembed"]
QUERY = "a cat sleeps on the warm mat"


# --------------------------------------------------------------------------- the strategies


@dataclass(frozen=True)
class Case:
    """One strategy: its name, the plan arguments it needs, and the target model it migrates to."""

    name: str
    target: HashEmbedder
    target_spec: lq.ModelSpec
    options: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(params=STRATEGIES)
def strategy(
    request: pytest.FixtureRequest, names: Any, modern: HashEmbedder, target_spec: lq.ModelSpec
) -> Case:
    """In place and blue-green migrate to ``modern`` (another dimension); blue-green into a target
    collection of its own behind an alias. A re-embed needs the source's shape: version 2 of the source
    model, under the same vector name."""
    if request.param == "in_place":
        return Case("in_place", modern, target_spec)
    if request.param == "blue_green":
        options = {"target_collection": names("docs_v2"), "alias": names("live")}
        return Case("blue_green", modern, target_spec, options)
    newer = HashEmbedder(64, ngrams=2, salt="legacy-2")
    return Case("reembed", newer, newer.spec("legacy", 2))


# --------------------------------------------------------------------------- the executors


class Blocking:
    """A view of ``target`` whose method calls return through ``done`` (other attributes read through)."""

    def __init__(self, target: Any, done: Callable[[Any], Any]) -> None:
        self._target = target
        self._done = done

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._done(value(*args, **kwargs))

        return call


def _routed(name: str) -> Callable[..., Any]:
    """The executor's method ``name``: the wrapper's, called through the executor's ``lattice``."""

    def call(run: SyncRun, *args: Any, **kwargs: Any) -> Any:
        return getattr(run.lattice, name)(*args, **kwargs)

    call.__name__ = name
    return call


class SyncRun:
    """A scenario's way to the sync wrapper (``executor`` ``"sync"``).

    Scenarios call the wrapper's methods on it (``run.upsert(...)``, ``run.query_points(...)``), the
    migration's lifecycle on ``run.migration`` (``run.migration.start()``), and read and set up data with
    the plain client ``run.raw``; every call returns through :meth:`done`, which here returns what the call
    returned.

    The async executor (:class:`AsyncRun`) is one more entry in :data:`EXECUTORS` and one subclass.
    """

    def __init__(self, qdrant: QdrantClient, names: Any) -> None:
        self.raw: Any = Blocking(qdrant, self.done)
        self.lattice: Any = Blocking(make_lattice(qdrant, names), self.done)
        self.migration: Any = None
        self._plan: lq.MigrationPlan | None = None
        self._migration: lq.Migration | None = None

    @classmethod
    def open(cls, request: pytest.FixtureRequest) -> SyncRun:
        """The executor of a test, over the ``qdrant`` client of its backend."""
        return cls(request.getfixturevalue("qdrant"), request.getfixturevalue("names"))

    def done(self, value: Any) -> Any:
        """What a call returned, finished (a sync call is finished already)."""
        return value

    # the lifecycle

    def plan_migration(self, collection: str, **kwargs: Any) -> lq.MigrationPlan:
        """Plan a migration of ``collection``; afterwards ``run.migration`` is its lifecycle."""
        self._migration = self.lattice.plan(collection, **kwargs)
        self.migration = Blocking(self._migration, self.done)
        self._plan = self.migration.plan
        return self.plan

    def backfill(self, embedder: Any, **options: Any) -> BackfillReport:
        """One backfill run of the migration with ``options``."""
        return run_backfill(self._migration, embedder, BackfillOptions(**options))  # type: ignore[arg-type]

    # the wrapper's routed methods, as the wrapper takes them
    upsert = _routed("upsert")
    update_vectors = _routed("update_vectors")
    delete = _routed("delete")
    set_payload = _routed("set_payload")
    query_points = _routed("query_points")
    query_text = _routed("query_text")

    # what the scenarios ask of the plan (pure)

    @property
    def plan(self) -> lq.MigrationPlan:
        if self._plan is None:
            raise LookupError("nothing is planned yet")
        return self._plan

    @property
    def strategy(self) -> MigrationStrategy:
        return strategy_for(self.plan)


class AsyncRun(SyncRun):
    """A scenario's way to the async twin (``executor`` ``"async"``): ``lq.wrap(AsyncQdrantClient(...))``.

    ``raw`` is the ``AsyncQdrantClient`` itself (local mode cannot share an in-memory database between two
    clients), and :meth:`done` runs each coroutine on an event loop in a thread of its own, so a call made
    from a backfill thread (:class:`RacedEmbedder`) works as well. The lifecycle is the twin's
    ``AsyncMigration``; the backfill, synchronous, runs on its sync ``Migration``.
    """

    def __init__(self, qdrant: AsyncQdrantClient, names: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scenario-loop", daemon=True)
        self._thread.start()
        self.twin: lq.AsyncLatticeClient = make_lattice(qdrant, names)  # type: ignore[assignment]
        assert isinstance(self.twin, lq.AsyncLatticeClient)  # lq.wrap gave the async twin
        self.raw = Blocking(qdrant, self.done)
        self.lattice = Blocking(self.twin, self.done)
        self.migration = None
        self._plan = None
        self._migration = None

    @classmethod
    def open(cls, request: pytest.FixtureRequest) -> SyncRun:
        """The executor of a test, over an ``AsyncQdrantClient`` of its backend, closed at the end (on a
        server, after this test's collections are dropped)."""
        backend, names = request.getfixturevalue("backend"), request.getfixturevalue("names")
        client = (
            AsyncQdrantClient(":memory:")
            if backend == "local"
            else AsyncQdrantClient(url=QDRANT_URL, timeout=30)
        )
        run = cls(client, names)

        def close() -> None:
            if backend != "local":
                for coll in run.raw.get_collections().collections:
                    if coll.name.startswith(names.prefix):
                        run.raw.delete_collection(coll.name)
            run.done(run.twin.close())
            run._loop.call_soon_threadsafe(run._loop.stop)
            run._thread.join(5)
            run._loop.close()

        request.addfinalizer(close)
        return run

    def done(self, value: Any) -> Any:
        """What a call returned, its coroutine run to completion on the executor's loop."""
        if asyncio.iscoroutine(value):
            return asyncio.run_coroutine_threadsafe(value, self._loop).result()
        return value

    def backfill(self, embedder: Any, **options: Any) -> BackfillReport:
        """One backfill run (synchronous, the operator's) of the async migration's sync ``Migration``."""
        return run_backfill(self._migration.sync, embedder, BackfillOptions(**options))  # type: ignore[union-attr]


EXECUTORS: dict[str, type[SyncRun]] = {"sync": SyncRun, "async": AsyncRun}


@pytest.fixture(params=list(EXECUTORS))
def executor(request: pytest.FixtureRequest, backend: str) -> SyncRun:
    """The wrapper on the test's backend, reached the way the param says (``"sync"``, ``"async"``)."""
    return EXECUTORS[request.param].open(request)


@pytest.fixture
def planned(
    executor: SyncRun, strategy: Case, names: Any, legacy: HashEmbedder, source_spec: lq.ModelSpec
) -> SyncRun:
    """A collection of ``N`` points with their ``legacy`` vectors, and a plan of the strategy's migration."""
    docs = names("docs")
    fill_collection(executor.raw, docs, legacy, n=N)
    executor.plan_migration(
        docs,
        source=source_spec,
        target=strategy.target_spec,
        source_vector="legacy",
        strategy=strategy.name,
        **strategy.options,
    )
    return executor


@pytest.fixture
def migrating(planned: SyncRun) -> SyncRun:
    """The planned migration, started: writes are dual, nothing is backfilled yet."""
    planned.migration.start()
    return planned


# --------------------------------------------------------------------------- checks


def record(run: SyncRun, collection: str, pid: Any) -> models.Record | None:
    found = run.raw.retrieve(collection, [pid], with_payload=True, with_vectors=True)
    return found[0] if found else None


def vector_of(rec: models.Record, name: str) -> Any:
    return rec.vector if name == "" else rec.vector[name]  # type: ignore[index]


def stamp_of(rec: models.Record) -> tuple[Any, Any]:
    payload = rec.payload or {}
    return payload.get(MODEL_FIELD), payload.get(VERSION_FIELD)


def exists(run: SyncRun, collection: str) -> bool:
    return bool(run.raw.collection_exists(collection))


def ids_of(run: SyncRun, collection: str, flt: models.Filter | None = None) -> set[Any]:
    found, _ = run.raw.scroll(collection, scroll_filter=flt, limit=10_000, with_payload=False)
    return {r.id for r in found}


def shared_vector(run: SyncRun) -> bool:
    """Whether the target vectors overwrite the source vectors (one place for both models)."""
    plan = run.plan
    return (plan.collection, plan.source_vector) == (run.strategy.data_collection, plan.target_vector)


def holding(run: SyncRun, role: str) -> set[Any]:
    """The points holding ``role``'s model: the target's are the strategy's ``done()``; the source's are
    every point where the source vector has a place of its own, else the points not done."""
    plan, strategy = run.plan, run.strategy
    if role == "target":
        return ids_of(run, strategy.data_collection, strategy.done())
    return ids_of(run, plan.collection, strategy.todo() if shared_vector(run) else None)


def source_vector_of(run: SyncRun, pid: Any) -> Any:
    """The source model's vector of a point: in its own place, or (overwritten by the target's) the entry
    the write recorded in the migration's backup."""
    plan = run.plan
    if not shared_vector(run):
        rec = record(run, plan.collection, pid)
        assert rec is not None, pid
        return vector_of(rec, plan.source_vector)
    backup_id = run.migration.snapshot(refresh=True).backup_id
    rec = record(run, backups.backup_collection_name(plan.collection, backup_id), pid)
    assert rec is not None, pid
    return vector_of(rec, backups.BACKUP_VECTOR)


def target_record(run: SyncRun, pid: Any) -> models.Record:
    """The point in the collection holding the target vectors, which must hold the target model."""
    strategy = run.strategy
    rec = record(run, strategy.data_collection, pid)
    assert rec is not None, pid
    done = models.Filter(must=[strategy.done(), models.HasIdCondition(has_id=[pid])])
    assert ids_of(run, strategy.data_collection, done) == {pid}, "the strategy does not count it as done"
    return rec


def assert_dual_written(run: SyncRun, source: HashEmbedder, case: Case, pid: Any, text: str) -> None:
    """Point ``pid`` holds both models' embeddings of ``text``, each where the strategy keeps it."""
    plan = run.plan
    rec = target_record(run, pid)
    assert same_direction(vector_of(rec, plan.target_vector), case.target.embed([text])[0])
    assert stamp_of(rec) == (case.target_spec.model_id, case.target_spec.version)
    assert same_direction(source_vector_of(run, pid), source.embed([text])[0])


def cosine(a: Any, b: Any) -> float:
    return float(unit(a) @ unit(b))


def assert_found_by(
    run: SyncRun, hits: Sequence[models.ScoredPoint], model: HashEmbedder, role: str, query: str = QUERY
) -> None:
    """The hits are what ``model`` finds among the points holding it: each scored with ``model``'s
    embeddings of the query and of the point's text, and the first the best of them all."""
    assert hits, "nothing found"
    among = holding(run, role)
    where = run.strategy.data_collection if role == "target" else run.plan.collection
    texts = {r.id: r.payload["text"] for r in run.raw.retrieve(where, list(among))}
    want = model.embed([query])[0]
    scores = {
        pid: cosine(want, vec) for pid, vec in zip(texts, model.embed(list(texts.values())), strict=True)
    }
    for hit in hits:
        assert hit.id in among, (hit.id, role)
        assert hit.score == pytest.approx(scores[hit.id], abs=1e-4), (hit.id, role)
    assert hits[0].score == pytest.approx(max(scores.values()), abs=1e-4)


def doc(text: str) -> models.Document:
    return models.Document(text=text, model="any")


def written(pid: Any, text: str, **payload: Any) -> models.PointStruct:
    return models.PointStruct(id=pid, vector=doc(text), payload={"text": text, **payload})


def everything(run: SyncRun, names: Any) -> dict[str, list[models.Record]]:
    """Every point of every collection of this test, with payload and vectors (what a refused write must
    leave as it was)."""
    out: dict[str, list[models.Record]] = {}
    for coll in run.raw.get_collections().collections:
        if coll.name.startswith(names.prefix):
            found, _ = run.raw.scroll(coll.name, limit=10_000, with_payload=True, with_vectors=True)
            out[coll.name] = sorted(found, key=lambda r: str(r.id))
    return out


# --------------------------------------------------------------------------- routing before start


def test_before_start_writes_are_the_source_models_and_queries_search_the_source(
    planned: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan = planned, planned.plan
    routing = run.migration.routing()
    assert (routing.write, routing.query) == (lq.WriteRoute.LEGACY, lq.QueryRoute.SOURCE)
    text, plain = "a dog naps in the sun", "bread and butter"
    run.upsert(plan.collection, [written(100, text, k=1)])
    run.upsert(plan.collection, [models.PointStruct(id=101, vector=legacy.embed([plain])[0].tolist(),
                                                    payload={"text": plain})])  # fmt: skip
    for pid, words in ((100, text), (101, plain)):
        rec = record(run, plan.collection, pid)
        assert rec is not None and set(rec.vector) == {plan.source_vector}  # type: ignore[arg-type]
        assert same_direction(vector_of(rec, plan.source_vector), legacy.embed([words])[0])
        assert stamp_of(rec) == ("legacy", 1)
    assert record(run, plan.collection, 100).payload["k"] == 1  # type: ignore[union-attr]
    data = run.strategy.data_collection
    assert not exists(run, data) or ids_of(run, data, run.strategy.done()) == set()  # the target has nothing
    hits = run.query_points(plan.collection, doc(QUERY), limit=5).points
    assert_found_by(run, hits, legacy, "source")
    assert_found_by(run, run.query_text(plan.collection, QUERY, limit=5).points, legacy, "source")
    hits = run.query_points(plan.collection, legacy.embed([QUERY])[0].tolist(), limit=5).points
    assert_found_by(run, hits, legacy, "source")


# --------------------------------------------------------------------------- dual-writes


def test_after_start_every_write_reaches_both_models(
    migrating: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan = migrating, migrating.plan
    docs, data = plan.collection, run.strategy.data_collection
    assert run.migration.routing().write == lq.WriteRoute.DUAL_WRITE
    # a Document is embedded with both models, the payload kept and stamped with the target model
    text = "a cat naps in the sun"
    run.upsert(docs, [models.PointStruct(id=100, vector=doc(text), payload={"k": 1})])
    assert_dual_written(run, legacy, strategy, 100, text)
    target = target_record(run, 100)
    assert target.payload == {"k": 1, MODEL_FIELD: strategy.target_spec.model_id,
                              VERSION_FIELD: strategy.target_spec.version}  # fmt: skip
    # a point given no vector is embedded with both models from its text
    run.upsert(docs, [models.PointStruct(id=101, vector={}, payload={"text": "dogs love long walks"})])
    assert_dual_written(run, legacy, strategy, 101, "dogs love long walks")
    # update_vectors keeps both models in step
    run.update_vectors(docs, [models.PointVectors(id=3, vector=doc("rewritten words"))])
    assert_dual_written(run, legacy, strategy, 3, "rewritten words")
    # deletes and payload changes reach every collection holding the point
    run.delete(docs, points_selector=models.PointIdsList(points=[5]))
    assert record(run, docs, 5) is None and record(run, data, 5) is None
    run.set_payload(docs, payload={"tag": "x"}, points=[6])
    for coll in {docs, data}:
        assert record(run, coll, 6).payload["tag"] == "x"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- queries around cutover


def test_queries_follow_the_routing_before_and_after_cutover(
    migrating: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan, target = migrating, migrating.plan, strategy.target
    docs = plan.collection
    run.backfill(target, max_points=N // 2, batch_size=4)
    assert 0 < len(holding(run, "target")) < N
    assert run.migration.routing().query == lq.QueryRoute.SOURCE
    # routed (a Document with mode="routed", or a vector): the source model, over the points holding it
    hits = run.query_points(docs, doc(QUERY), mode="routed", limit=5).points
    assert_found_by(run, hits, legacy, "source")
    hits = run.query_points(docs, legacy.embed([QUERY])[0].tolist(), limit=5).points
    assert_found_by(run, hits, legacy, "source")

    with pytest.raises(lq.ThresholdNotMetError, match="--force"):
        run.migration.cutover()
    run.migration.cutover(force=True)
    assert run.migration.routing().query == lq.QueryRoute.TARGET
    hits = run.query_points(docs, doc(QUERY), mode="routed", limit=5).points
    assert_found_by(run, hits, target, "target")
    hits = run.query_points(docs, target.embed([QUERY])[0].tolist(), limit=5).points
    assert_found_by(run, hits, target, "target")

    run.backfill(target)  # every point holds the target: text queries are plain target queries
    assert holding(run, "target") == ids_of(run, docs)
    assert_found_by(run, run.query_points(docs, doc(QUERY), limit=5).points, target, "target")
    assert_found_by(run, run.query_text(docs, QUERY, limit=5).points, target, "target")


# --------------------------------------------------------------------------- rollback


def test_a_rollback_puts_queries_back_on_the_source_and_writes_stay_dual(
    migrating: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan = migrating, migrating.plan
    docs = plan.collection
    run.backfill(strategy.target, max_points=N // 2, batch_size=4)
    run.migration.cutover(force=True)
    with pytest.raises(lq.RollbackWindowOpenError, match="force"):
        run.migration.finalize()

    state = run.migration.rollback()
    assert state.phase == lq.Phase.MIGRATING and state.rolled_back
    routing = run.migration.routing()
    assert (routing.write, routing.query) == (lq.WriteRoute.DUAL_WRITE, lq.QueryRoute.SOURCE)
    assert routing.query_vector == plan.source_vector
    hits = run.query_points(docs, doc(QUERY), mode="routed", limit=5).points
    assert_found_by(run, hits, legacy, "source")
    hits = run.query_points(docs, legacy.embed([QUERY])[0].tolist(), limit=5).points
    assert_found_by(run, hits, legacy, "source")
    run.upsert(docs, [written(100, "written after the rollback")])
    assert_dual_written(run, legacy, strategy, 100, "written after the rollback")
    assert "rollback" in [e["event"] for e in run.migration.history()]


# --------------------------------------------------------------------------- finalize


def test_finalize_drops_the_source_as_the_strategy_says_and_everything_is_the_targets(
    migrating: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan, target = migrating, migrating.plan, strategy.target
    docs, data = plan.collection, run.strategy.data_collection
    state = run.migration.snapshot(refresh=True).state
    assert (state.status, state.phase, state.processed, state.total) == (
        lq.Status.IN_PROGRESS, lq.Phase.MIGRATING, 0, N
    )  # fmt: skip
    vectors = run.raw.get_collection(data).config.params.vectors
    made = vectors if plan.target_vector == "" else vectors[plan.target_vector]
    assert made.size == strategy.target_spec.dimension  # start made room for the target vectors
    assert plan.source_vector in run.raw.get_collection(docs).config.params.vectors  # and kept the source

    report = run.backfill(target)
    assert (report.covered, report.total) == (N, N)
    assert run.migration.progress().status == lq.Status.COMPLETED
    state = run.migration.cutover()
    assert state.phase == lq.Phase.ROLLBACK_WINDOW and state.cutover_at is not None
    assert run.migration.routing().query_vector == plan.target_vector
    state = run.migration.finalize(force=True)  # the window is open

    assert state.finalized and state.phase == lq.Phase.STABLE
    routing = run.migration.routing()
    assert (routing.write, routing.query, routing.query_vector) == (
        lq.WriteRoute.TARGET, lq.QueryRoute.TARGET, plan.target_vector
    )  # fmt: skip
    if shared_vector(run):  # nothing to drop: the one vector holds the target everywhere
        assert ids_of(run, docs, run.strategy.todo()) == set()
    else:  # the source vector is gone from wherever it was (with its collection, or from the collection)
        assert (
            not exists(run, docs)
            or plan.source_vector not in run.raw.get_collection(docs).config.params.vectors
        )
    assert holding(run, "target") == ids_of(run, data) and len(ids_of(run, data)) == N
    assert_found_by(run, run.query_points(docs, doc(QUERY), limit=5).points, target, "target")
    hits = run.query_points(docs, target.embed([QUERY])[0].tolist(), limit=5).points
    assert_found_by(run, hits, target, "target")
    # writes go to the target model only, and bring nothing of the source back
    run.upsert(docs, [written(200, "a late write")])
    rec = target_record(run, 200)
    assert same_direction(vector_of(rec, plan.target_vector), target.embed(["a late write"])[0])
    if not shared_vector(run):
        assert not exists(run, docs) or set(rec.vector) == {plan.target_vector}  # type: ignore[arg-type]
    events = [e["event"] for e in run.migration.history()]
    assert events[0] == "plan" and events[-1] == "finalize" and {"start", "cutover"} <= set(events)
    with pytest.raises(lq.InvalidTransitionError, match="finalize"):
        run.migration.rollback()


# --------------------------------------------------------------------------- backfill resume


class RacedEmbedder:
    """``inner``, for one backfill run, calling ``act`` (the application, writing) once, when it is first
    asked to embed ``text``: after the backfill read the point, before it writes. Records every text it
    embeds but the first call's (``run_backfill``'s check of the embedder)."""

    def __init__(
        self, inner: HashEmbedder, text: str | None = None, act: Callable[[], Any] | None = None
    ) -> None:
        self.inner, self.text, self.act = inner, text, act
        self.name = inner.name
        self.dimension = inner.dimension
        self.texts: list[str] = []
        self.acted = False
        self._checked = False
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        with self._lock:
            if self._checked:
                self.texts.extend(texts)
            self._checked = True
            act = self.act is not None and self.text in texts and not self.acted
            self.acted = self.acted or act
        if act and self.act is not None:
            self.act()
        return self.inner.embed(texts)


def test_a_backfill_stopped_midway_and_resumed_covers_every_point_once_and_never_a_fresher_write(
    migrating: SyncRun, strategy: Case, legacy: HashEmbedder
) -> None:
    run, plan = migrating, migrating.plan
    docs = plan.collection
    texts = {r.id: r.payload["text"] for r in run.raw.scroll(docs, limit=N, with_payload=True)[0]}
    victim, fresh = 2, "the application rewrote this point while the backfill embedded it"
    raced = RacedEmbedder(strategy.target, texts[victim], lambda: run.upsert(docs, [written(victim, fresh)]))
    resumed = RacedEmbedder(strategy.target)

    first = run.backfill(raced, max_points=10, batch_size=4, writers=1)

    assert raced.acted and first.stopped_by == "max_points"
    assert 0 < first.covered < N and first.covered == len(holding(run, "target"))
    assert run.migration.snapshot(refresh=True).state.status == lq.Status.IN_PROGRESS
    second = run.backfill(resumed, batch_size=4)
    assert (second.stopped_by, second.covered, second.total) == ("done", N, N)
    assert run.migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED
    # every point's text embedded once, the victim's old one too; its write lost to the application's
    assert sorted(raced.texts + resumed.texts) == sorted(texts.values())
    assert first.written + second.written == N - 1
    assert_dual_written(run, legacy, strategy, victim, fresh)
    assert target_record(run, victim).payload["text"] == fresh  # type: ignore[index]
    for pid, text in texts.items():
        rec = target_record(run, pid)
        assert stamp_of(rec) == (strategy.target_spec.model_id, strategy.target_spec.version), pid
        if pid != victim:
            assert same_direction(vector_of(rec, plan.target_vector), strategy.target.embed([text])[0]), pid


# --------------------------------------------------------------------------- bad input


def test_a_batch_with_one_bad_point_is_refused_whole_and_nothing_is_written(
    migrating: SyncRun, names: Any
) -> None:
    run, plan = migrating, migrating.plan
    before = everything(run, names)
    good = written(300, "fine")
    for bad in ([0.1] * 3, [float("nan")] * plan.source.dimension, "not numbers"):
        broken = models.PointStruct.model_construct(
            id=301, vector={plan.source_vector: bad}, payload={"text": "t"}
        )
        with pytest.raises(lq.VectorValidationError, match="nothing was written") as err:
            run.upsert(plan.collection, [good, broken])
        assert [pid for pid, _ in err.value.problems] == [301] and "point 301" in str(err.value)
        with pytest.raises(lq.VectorValidationError, match="nothing was written"):
            broken_vectors = models.PointVectors.model_construct(id=1, vector={plan.source_vector: bad})
            run.update_vectors(
                plan.collection, [models.PointVectors(id=0, vector=doc("fine")), broken_vectors]
            )
    assert everything(run, names) == before


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_an_empty_document_is_refused_in_a_write_and_in_a_query(
    migrating: SyncRun, names: Any, legacy: HashEmbedder, text: str
) -> None:
    run, plan = migrating, migrating.plan
    docs, empty = plan.collection, models.Document(text=text, model="any")
    before = everything(run, names)
    # the Document standing for both models, or for one vector of a point
    per_vector = {plan.source_vector: legacy.embed(["x"])[0].tolist(), plan.target_vector: empty}
    for vector in (empty, per_vector):
        with pytest.raises(lq.VectorValidationError, match="nothing was written") as err:
            run.upsert(
                docs,
                [written(300, "fine"), models.PointStruct(id=301, vector=vector, payload={"text": "fine"})],
            )
        assert [pid for pid, _ in err.value.problems] == [301]  # once, though the Document stands for both
        assert "models.Document has empty text" in err.value.problems[0][1]
    with pytest.raises(lq.VectorValidationError, match="empty text"):
        run.update_vectors(docs, [models.PointVectors(id=0, vector={plan.source_vector: doc("fine")}),
                                  models.PointVectors(id=1, vector={plan.source_vector: empty})])  # fmt: skip
    assert everything(run, names) == before
    for query in (empty, models.NearestQuery(nearest=empty)):
        for mode in (None, "routed", "mixed"):
            with pytest.raises(
                lq.VectorValidationError, match="empty text, so there is nothing to search for"
            ):
                run.query_points(docs, query, mode=mode, limit=3)
    with pytest.raises(lq.VectorValidationError, match="nothing to search for"):
        run.query_text(docs, text)
