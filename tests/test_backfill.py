"""The backfill engine: every guarantee of ``lattice_qdrant.backfill``'s docstring, on every backend.

Races are injected deterministically: the backfill's writes go through the store's ``update_if_unchanged``,
so the migration, built over a store fake (``lattice_qdrant.testing``), lets "the application" act just
before (or after) a write. Bounds are observed with store fakes and sinks, never with wall-clock upper
bounds; a duration is only ever checked as a lower bound (a slow machine cannot break one). The crash tests
run ``backfill_child.py`` in subprocesses on a path-based local client and kill them at seeded random
moments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError
from qdrant_client import QdrantClient, models
from qdrant_client.local.siphash import point_id_slice

import lattice_qdrant as lq
from lattice_qdrant import traffic
from lattice_qdrant.backfill import (
    SHARD_HASH,
    SHARD_SLICE,
    BackfillOptions,
    BackfillProgress,
    BackfillReport,
    Shard,
    clear_failures,
    embed_queue_size,
    estimate,
    estimate_tokens,
    frozen_heap,
    joined_shard_method,
    list_failures,
    run_backfill,
    running,
    shard_method,
    shard_of,
)
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.metrics import NO_METRICS, BackfillMetrics, prometheus_metrics
from lattice_qdrant.state import Progress
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, Store, open_store
from lattice_qdrant.testing import Call, Meanwhile, RecordingStore, StoreWrapper

from conftest import QDRANT_URL, MakeMigration, Watched, fill_collection, make_lattice, same_direction

CHILD = Path(__file__).with_name("backfill_child.py")
TARGET = "modern-v1"

# --------------------------------------------------------------------------- helpers


def all_points(client: QdrantClient, collection: str) -> dict[Any, models.Record]:
    records, _ = client.scroll(collection, limit=100_000, with_payload=True, with_vectors=True)
    return {r.id: r for r in records}


def vector_of(record: models.Record, name: str) -> Any:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return vectors.get(name)


def assert_backfilled(
    client: QdrantClient, collection: str, modern: HashEmbedder, *, ids: Sequence[Any] | None = None
) -> dict[Any, models.Record]:
    """Every point (or those of ``ids``) holds the target vector of its own text, and the target's stamp."""
    points = all_points(client, collection)
    chosen = list(points) if ids is None else list(ids)
    expected = modern.embed([points[pid].payload["text"] for pid in chosen])
    for pid, want in zip(chosen, expected, strict=True):
        got = vector_of(points[pid], TARGET)
        assert got is not None, f"point {pid!r} has no target vector"
        assert same_direction(got, want), f"point {pid!r} holds a target vector of another text"
        assert points[pid].payload.get(MODEL_FIELD) == "modern", f"point {pid!r} is not stamped"
        assert points[pid].payload.get(VERSION_FIELD) == 1
    return points


def coverage(client: QdrantClient, collection: str) -> int:
    flt = models.Filter(must=[models.HasVectorCondition(has_vector=TARGET)])
    return client.count(collection, count_filter=flt, exact=True).count


@contextlib.contextmanager
def as_application(store: Store) -> Iterator[None]:
    """A raw client call made from a backfill thread: take the lock local mode needs (a no-op on servers)."""
    with store.exclusive():
        yield


#: the store method the in-place backfill writes vectors with
WRITE = "update_if_unchanged"
Hook = Callable[[int, list[Any]], None]


class Writes:
    """The backfill's writes through a :class:`Watched` store: the ids of every write since this was
    made, how many ran at once, and a test's own work just before or after a write (``number`` counts the
    writes from 1; the hook gets the write's ids). As a context manager, the hooks end with the block."""

    def __init__(
        self,
        store: Store,
        *,
        before: Hook | None = None,
        after: Hook | None = None,
        sleep: float = 0.0,
    ) -> None:
        assert isinstance(store, Watched), "build the migration over a Watched store"
        self.store = store
        store.clear()
        store.faults.clear(WRITE)
        self._counts = {"before": itertools.count(1), "after": itertools.count(1)}
        for when, hook in (("before", before), ("after", after)):
            if hook is not None:
                store.faults.inject(WRITE, Meanwhile(self._hook(when, hook), after=when == "after"))
        if sleep:
            store.faults.inject(WRITE, Meanwhile(lambda call: time.sleep(sleep)))

    def _hook(self, when: str, hook: Hook) -> Callable[[Call], None]:
        def act(call: Call) -> None:
            hook(next(self._counts[when]), list(call.arguments["pending"]))

        return act

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.faults.clear(WRITE)

    @property
    def calls(self) -> list[list[Any]]:
        return [list(call.arguments["pending"]) for call in self.store.of(WRITE)]

    @property
    def ids(self) -> list[Any]:
        return [pid for call in self.calls for pid in call]

    @property
    def max_concurrent(self) -> int:
        return self.store.most_at_once(WRITE)


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, watched: Watched) -> lq.LatticeClient:
    """The wrapped client, over a store the tests watch and act through."""
    return make_lattice(qdrant, names, store=watched)


class SlowEmbedder:
    """``inner``, waiting on ``gate`` (if any) and sleeping ``seconds`` before each batch.

    The first call passes straight through: it is ``run_backfill``'s check of the embedder, made before
    the pipeline starts.
    """

    def __init__(
        self,
        inner: HashEmbedder,
        seconds: float = 0.0,
        gate: threading.Event | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.inner = inner
        self.seconds = seconds
        self.gate = gate
        self.timeout = timeout
        self.name = inner.name
        self.calls = 0
        self.sizes: list[int] = []  # texts per call, after the check
        self.texts: list[str] = []  # every text embedded after the check, in call order

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        if self.calls == 1:
            return self.inner.embed(texts)
        self.sizes.append(len(texts))
        self.texts.extend(texts)
        if self.gate is not None:
            self.gate.wait(timeout=self.timeout)
        if self.seconds:
            time.sleep(self.seconds)
        return self.inner.embed(texts)


class PoisonedEmbedder:
    """``inner``, raising for any batch that holds a text containing ``poison``."""

    def __init__(self, inner: HashEmbedder, poison: str = "poison") -> None:
        self.inner = inner
        self.poison = poison
        self.name = inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if any(self.poison in t for t in texts):
            raise RuntimeError("the model choked on this text")
        return self.inner.embed(texts)


class RecordingMetrics(BackfillMetrics):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.points_written = 0
        self.failed = 0
        self.depths: list[tuple[str, int]] = []
        self.active_now: dict[str, int] = {"read": 0, "embed": 0, "write": 0}
        self.stages: set[str] = set()

    def points(self, collection: str, n: int) -> None:
        with self.lock:
            self.points_written += n

    def failures(self, collection: str, n: int) -> None:
        with self.lock:
            self.failed += n

    def queue_depth(self, collection: str, stage: str, depth: int) -> None:
        with self.lock:
            self.depths.append((stage, depth))

    def active(self, collection: str, stage: str, delta: int) -> None:
        with self.lock:
            self.active_now[stage] += delta

    def batch_seconds(self, collection: str, stage: str, seconds: float) -> None:
        with self.lock:
            self.stages.add(stage)


# --------------------------------------------------------------------------- 1. basic


def test_backfill_fills_every_point_with_the_target_model_and_leaves_the_rest_alone(
    make_migration: MakeMigration, lattice: lq.LatticeClient, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    migration = make_migration(n=40)
    docs = migration.collection
    lattice.client.set_payload(docs, {"tenant": "a", "year": 2024}, points=list(range(40)))
    before = all_points(lattice.client, docs)

    report = run_backfill(migration, modern, BackfillOptions(batch_size=7, writers=3))

    points = assert_backfilled(lattice.client, docs, modern)
    for pid, record in points.items():
        # the source vector and the rest of the payload are untouched
        assert same_direction(vector_of(record, "legacy"), vector_of(before[pid], "legacy"))
        assert same_direction(vector_of(record, "legacy"), legacy.embed([record.payload["text"]])[0])
        assert {k: v for k, v in record.payload.items() if k not in (MODEL_FIELD, VERSION_FIELD)} == (
            before[pid].payload
        )
    assert (report.written, report.covered, report.total, report.coverage) == (40, 40, 40, 1.0)
    assert (report.failed, report.truncated, report.stopped_by) == (0, 0, "done")
    assert report.collection == docs
    assert report.passes >= 1
    assert report.tokens == sum(estimate_tokens(r.payload["text"]) for r in points.values())
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED
    assert list_failures(lattice.store, docs) == []


def test_a_run_leaves_the_heap_it_started_with_out_of_garbage_collections(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    seen: list[int] = []
    assert gc.get_freeze_count() == 0
    run_backfill(
        migration,
        modern,
        BackfillOptions(batch_size=4),
        on_progress=lambda p: seen.append(gc.get_freeze_count()),
    )
    assert seen and min(seen) > 0  # frozen while it ran
    assert gc.get_freeze_count() == 0  # and given back


def test_concurrent_runs_share_the_freeze_and_a_process_frozen_by_itself_is_left_alone() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        first = gc.get_freeze_count()
        with frozen_heap():  # a second run of the process, meanwhile
            assert gc.get_freeze_count() >= first
        assert gc.get_freeze_count() >= first > 0  # still frozen for the first run
    assert gc.get_freeze_count() == 0
    kept = [object() for _ in range(3)]
    gc.freeze()  # the process froze its heap itself (before forking workers, say)
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen  # not unfrozen by the run
    finally:
        gc.unfreeze()
    del kept


def test_a_second_run_finds_nothing_to_do(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    run_backfill(migration, modern, BackfillOptions(batch_size=8))
    writes = Writes(migration.store)
    again = run_backfill(migration, modern, BackfillOptions(batch_size=8))
    assert (again.written, again.covered, again.total, again.stopped_by) == (0, 20, 20, "done")
    assert writes.calls == []
    assert again.embedding == 0.0  # no forward pass
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


class Awaits(StoreWrapper):
    """Calls for which ``waits`` is true wait (at most ``timeout`` seconds) until a call for which ``signal``
    is true has begun; ``came`` says, for each, whether it had."""

    def __init__(
        self,
        store: Store,
        waits: Callable[[Call], bool],
        signal: Callable[[Call], bool],
        timeout: float = 3.0,
    ) -> None:
        super().__init__(store)
        self.waits, self.signal, self.timeout = waits, signal, timeout
        self.begun = threading.Event()
        self.came: list[bool] = []

    def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
        if self.signal(call):
            self.begun.set()
        if self.waits(call):
            self.came.append(self.begun.wait(self.timeout))
        return proceed()


def test_the_recorded_failures_are_loaded_while_the_reader_reads_its_first_page(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20, texts=[f"text {i}" for i in range(19)] + [""])
    run_backfill(migration, modern, BackfillOptions(batch_size=8))  # records the empty text's failure
    docs = migration.collection
    store = Awaits(
        migration.store,
        waits=lambda call: call.method == "list_records" and call.arguments["kind"] == "failure",
        signal=lambda call: call.method == "scroll" and call.collection == docs,
    )
    again = run_backfill(lq.Migration(store, docs, refresh_interval=0), modern, BackfillOptions(batch_size=8))
    assert store.came == [True]  # the first page was asked for before the failures were known
    assert (again.written, again.failed) == (0, 0)  # and the failed point was still skipped


def test_the_traffic_queue_is_read_while_the_migration_record_is(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    # the first pass starts with the traffic queue: its read does not wait for the record's
    migration = make_migration(n=20)
    store = Awaits(
        migration.store,
        waits=lambda call: call.method == "get_record" and call.arguments["kind"] == "migration",
        signal=lambda call: call.method == "list_records" and call.arguments["kind"] == traffic.KIND,
    )
    report = run_backfill(lq.Migration(store, migration.collection, refresh_interval=0), modern)
    assert store.came[:1] == [True]
    assert (report.written, report.covered) == (20, 20)


def test_the_stamps_are_repaired_while_the_last_batches_are_written(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    # the repair (a stamp of every point matching a filter; the writers stamp by ids) is asked once the
    # reader has read everything, not after the last write: it is off the run's tail
    migration = make_migration(n=20)
    store = Awaits(
        migration.store,
        waits=lambda call: call.method == "update_if_unchanged",
        signal=lambda call: (
            call.method == "set_payload" and isinstance(call.arguments["points"], models.Filter)
        ),
    )
    options = BackfillOptions(batch_size=8)
    report = run_backfill(lq.Migration(store, migration.collection, refresh_interval=0), modern, options)
    assert store.came == [True, True, True]  # every write waited for the repair: it came while they were held
    assert (report.written, report.covered, report.total) == (20, 20, 20)


def test_a_pass_that_leaves_nothing_to_do_is_the_last_and_its_count_the_final_one(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    docs = migration.collection
    store = RecordingStore(migration.store)
    report = run_backfill(
        lq.Migration(store, docs, refresh_interval=0), modern, BackfillOptions(batch_size=8)
    )
    assert (report.written, report.passes, report.covered, report.total) == (20, 1, 20, 20)
    reads = [call for call in store.of("scroll") if call.collection == docs]
    assert len(reads) == 1  # no second pass looked for points left
    last_write = max(i for i, call in enumerate(store.calls) if call.method == "update_if_unchanged")
    assert [call.method for call in store.calls[last_write:]].count("coverage") == 1


def test_the_final_count_is_made_while_the_last_writes_are_read_back(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    # once every write landed, the count that ends the run does not wait for their read-backs
    migration = make_migration(n=20)
    docs = migration.collection
    written: list[Call] = []

    def count_after_writes(call: Call) -> bool:  # the run's first count is made before it writes
        if call.method == "update_if_unchanged":
            written.append(call)
        return call.method == "coverage" and call.collection == docs and bool(written)

    store = Awaits(
        migration.store,
        waits=lambda call: call.method == "retrieve" and call.collection == docs,
        signal=count_after_writes,
    )
    options = BackfillOptions(batch_size=8, writers=3)
    report = run_backfill(lq.Migration(store, docs, refresh_interval=0), modern, options)
    assert store.came == [True, True, True]  # every read-back waited for the count: it came meanwhile
    assert (report.written, report.passes, report.covered, report.total) == (20, 1, 20, 20)
    assert report.stopped_by == "done"


def test_a_count_made_before_a_read_back_fails_is_not_the_final_one(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    # the count shows nothing left, then the read-backs fail: the run fails and records no completion
    migration = make_migration(n=20)
    docs = migration.collection
    counted = threading.Event()
    came: list[bool] = []

    def covered(coverage: Any) -> bool:
        return bool(coverage.covered) and not coverage.missing

    class ReadBackFails(StoreWrapper):
        def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
            if call.collection != docs:
                return proceed()
            if call.method == "retrieve":
                came.append(counted.wait(3.0))
                raise lq.StoreError("read-back refused", collection=docs)
            result = proceed()
            if call.method == "coverage" and covered(result):  # not the run's first count
                counted.set()
            return result

    store = ReadBackFails(migration.store)
    options = BackfillOptions(batch_size=8, writers=3)
    with pytest.raises(lq.StoreError, match="read-back refused"):
        run_backfill(lq.Migration(store, docs, refresh_interval=0), modern, options)
    assert came and all(came)  # the count was made before the read-backs failed
    state = migration.snapshot(refresh=True).state
    assert state.status == lq.Status.FAILED and "read-back refused" in str(state.error)


def test_the_completion_is_the_runs_last_request_and_its_history_entry_is_kept_by_the_record(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    store = RecordingStore(migration.store)
    run_backfill(lq.Migration(store, docs, refresh_interval=0), modern, BackfillOptions(batch_size=4))
    # the start's entry, which the record carried, was appended while the run started; nothing after
    # the closing write
    assert {call.arguments["payload"]["event"] for call in store.of("append_event")} == {"start"}
    done = "completed/migrating"
    assert [e["to"] for e in migration.history()].count(done) == 1  # listed: the record carries it
    appended = lambda: [e["to"] for e in lattice.store.list_records("event", collection=docs)]  # noqa: E731
    assert done not in appended()
    migration.cutover()  # the next transition appends it, once
    assert appended().count(done) == 1
    assert [e["to"] for e in migration.history()].count(done) == 1


def test_keep_history_appends_the_carried_entry_once_so_the_next_transition_need_not(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = make_migration(n=4)
    store = RecordingStore(migration.store)
    other = lq.Migration(store, migration.collection, refresh_interval=0)  # another process's
    other.snapshot(refresh=True)
    other.keep_history()
    other.keep_history()  # once is enough
    assert [call.arguments["payload"]["event"] for call in store.of("append_event")] == ["start"]
    store.clear()
    other.pause()  # appends its own entry only
    assert [call.arguments["payload"]["event"] for call in store.of("append_event")] == ["pause"]
    other.keep_history()  # the pause's entry: appended already
    assert len(store.of("append_event")) == 1


def test_a_pass_with_failures_is_followed_by_one_that_looks(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    # a failed point counts as missing, so the count cannot tell whether anything else is left
    migration = make_migration(n=20, texts=[f"text {i}" for i in range(19)] + [""])
    report = run_backfill(migration, modern, BackfillOptions(batch_size=8))
    assert (report.written, report.failed, report.passes) == (19, 1, 2)
    assert (report.covered, report.total) == (19, 20)


def test_point_ids_may_be_uuids(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    lattice.client.create_collection(
        docs, vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)}
    )
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(25)]
    texts = [f"uuid point number {i}" for i in range(25)]
    texts[3] = ""
    lattice.client.upsert(
        docs,
        [
            models.PointStruct(id=pid, vector={"legacy": v.tolist()}, payload={"text": t})
            for pid, v, t in zip(ids, legacy.embed(texts), texts, strict=True)
        ],
    )
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    report = run_backfill(migration, modern, BackfillOptions(batch_size=6))
    assert (report.written, report.failed) == (24, 1)
    assert_backfilled(lattice.client, docs, modern, ids=[pid for pid in ids if pid != ids[3]])
    assert [f.point_id for f in list_failures(lattice.store, docs)] == [ids[3]]
    assert clear_failures(lattice.store, docs, [uuid.UUID(ids[3])]) == 1
    assert list_failures(lattice.store, docs) == []


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("planned", ("planned", "start it first")),
        ("paused", ("paused", "resume it first")),
        ("failed", ("failed", "resume it first", "disk full")),
        ("cancelled", ("cancelled", "plan a new migration")),
        ("finalized", ("finalized", "plan a new migration")),
    ],
)
def test_a_migration_that_is_not_running_is_refused(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    modern: HashEmbedder,
    setup: str,
    words: tuple[str, ...],
) -> None:
    migration = make_migration(n=10, started=setup != "planned")
    if setup == "paused":
        migration.pause("maintenance")
    elif setup == "failed":
        migration.fail("disk full")
    elif setup == "cancelled":
        migration.cancel(drop_target=False)
    elif setup == "finalized":
        migration.cutover(force=True)
        migration.finalize(force=True)
    writes = Writes(migration.store)
    with pytest.raises(lq.MigrationError) as err:
        run_backfill(migration, modern)
    message = str(err.value)
    assert migration.collection in message
    for word in words:
        assert word in message
    assert writes.calls == []
    assert coverage(lattice.client, migration.collection) == 0


def test_an_embedder_of_the_wrong_dimension_is_refused_before_anything_is_written(
    make_migration: MakeMigration, lattice: lq.LatticeClient
) -> None:
    migration = make_migration(n=10)
    writes = Writes(migration.store)
    with pytest.raises(lq.EmbedderError, match="96"):
        run_backfill(migration, HashEmbedder(32, ngrams=2, salt="modern"))
    assert writes.calls == []
    assert coverage(lattice.client, migration.collection) == 0
    assert list_failures(lattice.store, migration.collection) == []
    assert migration.snapshot(refresh=True).state.status == lq.Status.IN_PROGRESS


# --------------------------------------------------------------------------- 2. never stale


def test_a_text_changed_behind_the_wrappers_back_is_embedded_again_with_its_new_text(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    legacy: HashEmbedder,
    modern: HashEmbedder,
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    old_texts = {pid: r.payload["text"] for pid, r in all_points(lattice.client, docs).items()}
    new_text = "a writer that does not use the wrapper changed this text"
    victim: list[Any] = []

    def raw_writer(number: int, ids: list[Any]) -> None:
        if number == 1:
            victim.append(ids[len(ids) // 2])
            with as_application(migration.store):
                lattice.client.set_payload(docs, {"text": new_text}, points=[victim[0]])

    writes = Writes(migration.store, before=raw_writer)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=12, writers=1))

    points = assert_backfilled(lattice.client, docs, modern)
    record = points[victim[0]]
    assert same_direction(vector_of(record, TARGET), modern.embed([new_text])[0])
    assert not same_direction(vector_of(record, TARGET), modern.embed([old_texts[victim[0]]])[0])
    # the raw writer did not touch the source vector, and neither did the backfill
    assert same_direction(vector_of(record, "legacy"), legacy.embed([old_texts[victim[0]]])[0])
    # picked up again by a later pass of the same run
    assert report.passes >= 2
    assert sum(call.count(victim[0]) for call in writes.calls) == 2
    assert (report.covered, report.stopped_by) == (12, "done")


def test_points_deleted_between_read_and_write_are_skipped(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    docs = migration.collection
    gone: list[Any] = []

    def deleter(number: int, ids: list[Any]) -> None:
        if number == 1:
            gone.extend([ids[5], ids[11]])
            with as_application(migration.store):
                lattice.client.delete(docs, points_selector=models.PointIdsList(points=gone))

    Writes(migration.store, before=deleter)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=20, writers=1))

    points = assert_backfilled(lattice.client, docs, modern)
    assert len(gone) == 2 and not set(gone) & set(points)
    assert len(points) == 18
    assert (report.written, report.failed, report.covered, report.total) == (18, 0, 18, 18)
    assert report.stopped_by == "done"
    assert list_failures(lattice.store, docs) == []
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_a_dual_write_made_after_the_backfill_wrote_keeps_its_new_vector(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=30)
    docs = migration.collection
    new_text = "rewritten by the application after the backfill wrote it"
    victim: list[Any] = []

    def application(number: int, ids: list[Any]) -> None:
        if number == 1:
            victim.append(ids[0])
            lattice.upsert(docs, [models.PointStruct(id=victim[0], vector={}, payload={"text": new_text})])

    Writes(migration.store, after=application)
    run_backfill(migration, modern, BackfillOptions(batch_size=10, writers=1))
    points = assert_backfilled(lattice.client, docs, modern)
    assert same_direction(vector_of(points[victim[0]], TARGET), modern.embed([new_text])[0])


# --------------------------------------------------------------------------- 3. failures


def make_bad_points(client: QdrantClient, collection: str) -> None:
    """Points 1..4 become: missing text, empty text, a number, a text the embedder chokes on."""
    client.delete_payload(collection, ["text"], points=[1])
    client.set_payload(collection, {"text": "   "}, points=[2])
    client.set_payload(collection, {"text": 42}, points=[3])
    client.set_payload(collection, {"text": "a poison pill of a text"}, points=[4])


def test_bad_points_are_recorded_and_the_run_goes_on(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    make_bad_points(lattice.client, docs)

    report = run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))

    assert (report.written, report.failed, report.covered, report.total) == (8, 4, 8, 12)
    assert report.stopped_by == "done"
    assert_backfilled(lattice.client, docs, modern, ids=[0, *range(5, 12)])
    failures = list_failures(lattice.store, docs)
    assert [f.point_id for f in failures] == [1, 2, 3, 4]
    assert all(f.collection == docs and f.at > 0 for f in failures)
    reasons = {f.point_id: f.reason for f in failures}
    assert "'text'" in reasons[1] and "missing" in reasons[1]
    assert "empty" in reasons[2]
    assert "not text" in reasons[3]
    assert "embedder error" in reasons[4] and "choked" in reasons[4]
    # not complete: four points lack the target vector
    assert migration.snapshot(refresh=True).state.status == lq.Status.IN_PROGRESS

    # a second run skips what was recorded
    again = run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))
    assert (again.written, again.failed, again.stopped_by) == (0, 0, "done")
    assert list_failures(lattice.store, docs) == failures


def test_retry_failed_writes_fixed_points_and_forgets_their_failures(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    make_bad_points(lattice.client, docs)
    run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))

    lattice.client.set_payload(docs, {"text": "fixed: the text is back"}, points=[1])
    lattice.client.set_payload(docs, {"text": "fixed: a harmless text"}, points=[4])
    # without retry_failed, recorded failures stay skipped even once fixed
    skipped = run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))
    assert skipped.written == 0
    assert coverage(lattice.client, docs) == 8

    retried = run_backfill(
        migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5, retry_failed=True)
    )
    assert (retried.written, retried.failed) == (2, 2)
    assert_backfilled(lattice.client, docs, modern, ids=[1, 4])
    assert [f.point_id for f in list_failures(lattice.store, docs)] == [2, 3]

    lattice.client.set_payload(docs, {"text": "fixed: no longer empty"}, points=[2])
    lattice.client.set_payload(docs, {"text": "fixed: a string now"}, points=[3])
    final = run_backfill(migration, modern, BackfillOptions(batch_size=5, retry_failed=True))
    assert (final.written, final.failed, final.covered, final.stopped_by) == (2, 0, 12, "done")
    assert list_failures(lattice.store, docs) == []
    assert_backfilled(lattice.client, docs, modern)
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_clear_failures_forgets_some_or_all(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    make_bad_points(lattice.client, docs)
    run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))

    assert clear_failures(lattice.store, docs, [2, 999]) == 1
    assert [f.point_id for f in list_failures(lattice.store, docs)] == [1, 3, 4]
    assert clear_failures(lattice.store, docs, ["4"]) == 1  # ids match by their string form
    assert clear_failures(lattice.store, "another-collection") == 0
    assert clear_failures(lattice.store, docs) == 2
    assert list_failures(lattice.store, docs) == []
    assert clear_failures(lattice.store, docs) == 0
    # forgotten failures are tried again by the next run (and recorded again, being still bad)
    again = run_backfill(migration, PoisonedEmbedder(modern), BackfillOptions(batch_size=5))
    assert (again.written, again.failed) == (0, 4)


def test_list_failures_without_a_control_collection_is_empty(qdrant: QdrantClient, names: Any) -> None:
    store = Store(qdrant, control_collection=names("nothing"))
    assert list_failures(store, "docs") == []
    assert clear_failures(store, "docs") == 0
    assert not qdrant.collection_exists(names("nothing"))  # reading never creates it


def test_over_long_texts_are_truncated_before_embedding(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    texts = [f"{word} lorem ipsum dolor sit amet number {i}" for i, word in enumerate("abcdef")]
    texts += ["tiny", "cat nap"]
    migration = make_migration(texts=texts)
    docs = migration.collection
    report = run_backfill(migration, modern, BackfillOptions(max_text_chars=10, batch_size=3))
    assert (report.written, report.truncated) == (8, 6)
    assert report.tokens == sum(estimate_tokens(t[:10]) for t in texts)
    points = all_points(lattice.client, docs)
    for pid, text in enumerate(texts):
        record = points[pid]
        assert record.payload["text"] == text  # the stored text is not truncated
        assert same_direction(vector_of(record, TARGET), modern.embed([text[:10]])[0])
    assert not same_direction(vector_of(points[0], TARGET), modern.embed([texts[0]])[0])


# --------------------------------------------------------------------------- 4. pipeline and bounds


@pytest.mark.parametrize("writers", [1, 3])
def test_no_more_than_writers_writes_run_at_once(
    make_migration: MakeMigration, modern: HashEmbedder, writers: int
) -> None:
    migration = make_migration(n=160)
    writes = Writes(migration.store, sleep=0.02)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=8, writers=writers, queue_depth=4))
    assert report.written == 160
    assert 1 <= writes.max_concurrent <= writers
    if writers > 1:
        assert writes.max_concurrent > 1


def test_every_write_holds_at_most_batch_size_points(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=50)
    writes = Writes(migration.store)
    run_backfill(migration, modern, BackfillOptions(batch_size=7, writers=2))
    sizes = [len(call) for call in writes.calls]
    assert max(sizes) == 7
    assert sorted(writes.ids) == list(range(50))  # each point written exactly once


def in_flight_batches(options: BackfillOptions) -> int:
    """The most batches a run holds at once: the reader's, two queues, the embedder's window (the
    batch it took and the waiting ones it merged) and one per writer."""
    waiting = embed_queue_size(options)
    window = min(waiting + 1, max(1, options.embed_window // options.batch_size))
    return 1 + waiting + window + options.queue_depth + options.writers


def test_queues_and_the_work_in_flight_stay_bounded(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=120)
    options = BackfillOptions(batch_size=5, writers=1, queue_depth=2, embed_window=10)
    seen: list[tuple[int, int, int]] = []

    def on_progress(progress: BackfillProgress) -> None:
        seen.append((progress.queue_embed, progress.queue_write, progress.read - progress.written))

    metrics = RecordingMetrics()
    gate = threading.Event()

    def on_progress_then_embed(progress: BackfillProgress) -> None:
        on_progress(progress)
        if len(seen) >= 3:  # the embedder waits ~0.3 s: by then the reader has filled the queue
            gate.set()

    report = run_backfill(
        migration,
        SlowEmbedder(modern, 0.005, gate=gate),
        options,
        on_progress=on_progress_then_embed,
        metrics=metrics,
    )
    assert report.written == 120
    assert seen
    in_flight = in_flight_batches(options) * options.batch_size
    for queue_embed, queue_write, ahead in seen:
        assert 0 <= queue_embed <= options.queue_depth
        assert 0 <= queue_write <= options.queue_depth
        assert ahead <= in_flight
    assert metrics.depths and all(depth <= options.queue_depth for _, depth in metrics.depths)
    # the held embedder let batches pile up before it
    assert max(depth for stage, depth in metrics.depths if stage == "embed") == options.queue_depth


def longest_sorted_run(texts: Sequence[str]) -> int:
    """The most consecutive texts whose lengths never grow."""
    best = run = 1
    for before, after in itertools.pairwise(texts):
        run = run + 1 if len(after) <= len(before) else 1
        best = max(best, run)
    return best


@pytest.mark.parametrize("window", [5, 12, 20, 40])
def test_the_embedder_sorts_the_waiting_batches_together_by_length(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder, window: int
) -> None:
    migration = make_migration(n=60)
    gate = threading.Event()
    slow = SlowEmbedder(modern, gate=gate)
    options = BackfillOptions(batch_size=5, writers=1, queue_depth=3, embed_window=window)
    waiting = embed_queue_size(options)  # the queue holds a whole window (40: 7 batches, not 3)
    assert waiting == max(3, window // 5 - 1)
    window_batches = max(1, window // options.batch_size)

    def open_gate(progress: BackfillProgress) -> None:
        if progress.queue_embed == waiting or progress.read == 60:  # the reader filled the queue
            gate.set()

    report = run_backfill(migration, slow, options, on_progress=open_gate)
    assert report.written == 60
    assert_backfilled(lattice.client, migration.collection, modern)
    texts = [r.payload["text"] for r in all_points(lattice.client, migration.collection).values()]
    assert sorted(slow.texts) == sorted(texts)  # each point embedded once
    assert max(slow.sizes) <= options.batch_size  # calls of a batch, whatever the window
    assert report.tokens == sum(estimate_tokens(t) for t in texts)
    if window_batches == 1:
        assert slow.texts == texts  # no window: the reader's pages as they came, in id order
    else:
        # The embedder took k batches before the gate and, after it, the queue full behind them: one of
        # the two windows holds at least min(window, queue, 6 of the 12) batches, all sorted longest first.
        least = min(window_batches, waiting, 6) * options.batch_size
        assert longest_sorted_run(slow.texts) >= least
        assert longest_sorted_run(texts) < 2 * options.batch_size  # (the pages themselves are not sorted)


class PlanningEmbedder(SlowEmbedder):
    """A slow embedder that plans its own forward passes, as a sentence-transformers one packed by tokens
    does: longest first, as many texts per pass as fit in ``budget`` characters (at least one)."""

    def __init__(self, inner: HashEmbedder, budget: int, gate: threading.Event | None = None) -> None:
        super().__init__(inner, gate=gate)
        self.budget = budget
        self.planned: list[list[str]] = []  # texts per planned pass, in order
        #: each plan: the embed calls made before it, and its passes' texts
        self.plans: list[tuple[int, list[list[str]]]] = []
        self.fail_planning = False

    def passes(self, texts: Sequence[str]) -> list[list[int]]:
        if self.fail_planning:
            raise lq.EmbedderError("the tokenizer choked")
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        passes: list[list[int]] = []
        while order:
            width = max(1, self.budget // len(texts[order[0]]))
            passes.append(order[:width])
            order = order[width:]
        self.planned += [[texts[i] for i in group] for group in passes]
        self.plans.append((len(self.sizes), [[texts[i] for i in group] for group in passes]))
        return passes

    def calls_follow_the_plans(self) -> bool:
        """Whether every embed call was the next pass of the latest plan made before it (a window
        joined by more batches plans its passes not yet run again, with theirs)."""
        calls = list(itertools.accumulate(self.sizes))
        made = [self.texts[end - size : end] for size, end in zip(self.sizes, calls, strict=True)]
        for at, call in enumerate(made):
            start, passes = max((plan for plan in self.plans if plan[0] <= at), key=lambda plan: plan[0])
            if at - start >= len(passes) or passes[at - start] != call:
                return False
        return True


def test_each_embed_call_is_one_planned_pass_over_the_whole_window(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=60)
    writes = Writes(migration.store)
    gate = threading.Event()
    embedder = PlanningEmbedder(modern, budget=700, gate=gate)
    options = BackfillOptions(batch_size=5, writers=1, queue_depth=3, embed_window=40)
    waiting = embed_queue_size(options)

    def open_gate(progress: BackfillProgress) -> None:
        if progress.queue_embed == waiting or progress.read == 60:
            gate.set()

    report = run_backfill(migration, embedder, options, on_progress=open_gate)
    assert report.written == 60
    assert_backfilled(lattice.client, migration.collection, modern)
    # every call is one pass the embedder planned, in the planned order, and every point is embedded once
    assert embedder.calls_follow_the_plans()
    assert sorted(embedder.texts) == sorted(
        r.payload["text"] for r in all_points(lattice.client, migration.collection).values()
    )
    # passes span batches: the window was planned as a whole, wider than a batch where texts are short
    assert max(embedder.sizes) > options.batch_size
    # and the writers still get batches of batch_size points, each point once
    assert max(len(call) for call in writes.calls) == options.batch_size
    assert sorted(writes.ids) == list(range(60))


def test_batches_that_arrive_while_a_window_is_embedded_join_it(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    modern: HashEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reader's first page (one batch here) is all that waits when the embedder starts; the rest
    # arrives during its first pass, and joins the window instead of waiting for the next one.
    monkeypatch.setattr("lattice_qdrant.backfill._READ_PAGE", 5)
    migration = make_migration(n=40)
    embedding = threading.Event()
    all_queued = threading.Event()
    store = migration.store
    read = store.iter_points
    first_read = [True]

    def iter_points(collection: str, **kwargs: Any) -> Iterator[list[models.Record]]:
        gated = first_read[0] and collection == migration.collection  # the reader's first pass
        first_read[0] = first_read[0] and not gated
        for at, page in enumerate(read(collection, **kwargs)):
            if gated and at == 1:
                assert embedding.wait(timeout=10)
            yield page
        if gated:
            all_queued.set()  # asked for a page after the last one: the reader queued them all

    monkeypatch.setattr(store, "iter_points", iter_points)

    class Held(PlanningEmbedder):
        def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            if self.calls == 1:  # the first pass of the pipeline (the first call checks the embedder)
                embedding.set()
                assert all_queued.wait(timeout=10)
            return super().embed(texts)

    embedder = Held(modern, budget=130)  # two texts per pass
    report = run_backfill(
        migration, embedder, BackfillOptions(batch_size=5, writers=1, queue_depth=3, embed_window=40)
    )
    assert report.written == 40
    assert_backfilled(lattice.client, migration.collection, modern)
    assert embedder.calls_follow_the_plans()
    texts = {pid: r.payload["text"] for pid, r in all_points(lattice.client, migration.collection).items()}
    assert sorted(embedder.texts) == sorted(texts.values())  # each point embedded once
    assert len(embedder.plans) == 2
    (start, first), (joined_at, joined) = embedder.plans
    # the first window: the first page alone, planned in passes of two
    assert start == 0 and sorted(itertools.chain(*first)) == sorted(texts[i] for i in range(5))
    assert len(first) == 3
    # after its first pass: the three points it had not embedded and the seven batches that arrived
    assert joined_at == 1
    rest = [*itertools.chain(*first[1:]), *(texts[i] for i in range(5, 40))]
    assert sorted(itertools.chain(*joined)) == sorted(rest)
    lengths = [len(text) for text in itertools.chain(*joined)]
    assert lengths == sorted(lengths, reverse=True)  # planned as one window, longest first


def test_a_failing_pass_plan_falls_back_to_batches(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    modern: HashEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    migration = make_migration(n=30)
    embedder = PlanningEmbedder(modern, budget=700)
    embedder.fail_planning = True
    report = run_backfill(migration, embedder, BackfillOptions(batch_size=5, embed_window=40))
    assert (report.written, report.failed) == (30, 0)
    assert_backfilled(lattice.client, migration.collection, modern)
    assert max(embedder.sizes) <= 5
    assert "planning forward passes failed" in caplog.text and "the tokenizer choked" in caplog.text


def test_a_bad_text_in_a_wide_pass_fails_alone(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=30)
    docs = migration.collection
    lattice.client.set_payload(docs, payload={"text": "poison in a pass"}, points=[7])

    class Planned(PoisonedEmbedder):
        def passes(self, texts: Sequence[str]) -> list[list[int]]:
            return [list(range(len(texts)))]  # one pass for the whole window

    report = run_backfill(migration, Planned(modern), BackfillOptions(batch_size=5, embed_window=40))
    assert (report.written, report.failed) == (29, 1)
    assert [f.point_id for f in list_failures(lattice.store, docs)] == [7]
    assert_backfilled(lattice.client, docs, modern, ids=[i for i in range(30) if i != 7])


def test_max_rate_throttles_the_reader(make_migration: MakeMigration, modern: HashEmbedder) -> None:
    migration = make_migration(n=120)
    max_rate = 150.0
    report = run_backfill(migration, modern, BackfillOptions(batch_size=20, max_rate=max_rate))
    assert report.written == 120
    # a lower bound only: a slow machine makes it longer, never shorter
    assert report.elapsed >= 0.8 * 120 / max_rate


def test_delay_waits_after_each_batch(make_migration: MakeMigration, modern: HashEmbedder) -> None:
    migration = make_migration(n=60)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=10, delay=0.1))
    assert report.written == 60
    assert report.elapsed >= 0.8 * 6 * 0.1


def test_on_progress_numbers_are_consistent(make_migration: MakeMigration, modern: HashEmbedder) -> None:
    migration = make_migration(n=60)
    gate = threading.Event()
    snapshots: list[dict[str, Any]] = []

    def on_progress(progress: BackfillProgress) -> None:
        snapshots.append({**progress.to_dict(), "eta_raw": progress.eta})
        gate.set()  # the embedder starts after the first report: the first one has nothing written

    report = run_backfill(
        migration,
        SlowEmbedder(modern, 0.02, gate=gate),
        BackfillOptions(batch_size=10, writers=1),
        on_progress=on_progress,
    )
    assert len(snapshots) >= 2
    assert snapshots[0]["written"] == 0 and snapshots[0]["eta_raw"] is None
    remaining = [s["remaining"] for s in snapshots]
    assert remaining == sorted(remaining, reverse=True)
    for snap in snapshots:
        assert snap["collection"] == migration.collection
        assert snap["todo"] == 60
        assert snap["written"] <= snap["read"] <= 60
        assert snap["remaining"] == 60 - snap["written"] - snap["failed"]
        if snap["written"] == 0:
            assert snap["eta_raw"] is None
        else:
            assert snap["eta_raw"] is not None and snap["eta_raw"] >= 0
    assert snapshots[-1]["written"] == report.written == 60
    assert snapshots[-1]["remaining"] == 0 and snapshots[-1]["eta_raw"] == 0


# --------------------------------------------------------------------------- 5. stop


def stop_after_first_write(
    migration: lq.Migration, modern: HashEmbedder, options: BackfillOptions
) -> BackfillReport:
    """Run until the first write, then set the stop event (writes after the first wait for it)."""
    stop = threading.Event()

    def hold(number: int, ids: list[Any]) -> None:
        if number > 1:
            stop.wait(timeout=30)

    def on_progress(progress: BackfillProgress) -> None:
        if progress.written > 0:
            stop.set()

    with Writes(migration.store, before=hold):
        return run_backfill(migration, modern, options, stop=stop, on_progress=on_progress)


def test_a_stop_event_stops_the_run_and_the_next_run_finishes_the_rest(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    n = 200
    migration = make_migration(n=n)
    options = BackfillOptions(batch_size=10, writers=1, queue_depth=2, embed_window=30)
    first = stop_after_first_write(migration, modern, options)
    assert 0 < first.written < n
    # only the batches in flight when it was stopped were finished
    assert first.written <= options.batch_size * (in_flight_batches(options) + 1)
    assert first.covered == coverage(lattice.client, migration.collection) == first.written
    assert first.total == n
    assert migration.snapshot(refresh=True).state.status == lq.Status.IN_PROGRESS

    second = run_backfill(migration, modern, options)
    assert second.stopped_by == "done"
    assert first.written + second.written == n  # nothing done twice
    assert second.covered == n
    assert_backfilled(lattice.client, migration.collection, modern)
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_a_run_stopped_by_its_stop_event_says_so(make_migration: MakeMigration, modern: HashEmbedder) -> None:
    migration = make_migration(n=200)
    report = stop_after_first_write(
        migration,
        modern,
        BackfillOptions(batch_size=10, writers=1, queue_depth=2, embed_window=30),
    )
    assert report.covered < report.total
    assert report.stopped_by == "stop"


def test_a_failing_progress_callback_leaves_no_pipeline_running(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    release = threading.Event()

    def hold(number: int, ids: list[Any]) -> None:
        release.wait(timeout=1)  # writes are slow: the pipeline is busy when the callback fails

    def on_progress(progress: BackfillProgress) -> None:
        raise RuntimeError("the progress bar broke")

    Writes(migration.store, before=hold)
    before = set(threading.enumerate())
    try:
        with pytest.raises(RuntimeError, match="progress bar"):
            options = BackfillOptions(batch_size=10, writers=1, queue_depth=1, embed_window=20)
            run_backfill(migration, modern, options, on_progress=on_progress)
        leftover = [
            t
            for t in threading.enumerate()
            if t not in before and t.name.startswith("backfill-") and t.is_alive()
        ]
        assert leftover == []
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread not in before and thread.name.startswith("backfill-"):
                thread.join(timeout=30)


# --------------------------------------------------------------------------- 6. budgets


def test_until_stops_near_the_coverage_asked_for(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=100)
    options = BackfillOptions(batch_size=8, until=50)
    report = run_backfill(migration, modern, options)
    assert report.stopped_by == "until"
    assert 50 <= report.covered < 50 + options.batch_size
    assert report.covered == coverage(lattice.client, migration.collection)

    rest = run_backfill(migration, modern, BackfillOptions(batch_size=8))
    assert (rest.stopped_by, rest.covered, report.written + rest.written) == ("done", 100, 100)
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_a_run_whose_until_is_already_met_writes_nothing(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=40)
    run_backfill(migration, modern, BackfillOptions(batch_size=8, until=60))
    writes = Writes(migration.store)
    again = run_backfill(migration, modern, BackfillOptions(batch_size=8, until=50))
    assert (again.written, again.stopped_by) == (0, "until")
    assert again.covered >= 24
    assert writes.calls == []


def test_a_run_that_finds_everything_covered_records_completion_even_with_until(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=12)
    docs = migration.collection
    records = list(all_points(lattice.client, docs).values())
    vectors = modern.embed([r.payload["text"] for r in records])
    lattice.client.update_vectors(  # e.g. covered by another worker, or by the application's writes
        docs,
        [
            models.PointVectors(id=r.id, vector={TARGET: v.tolist()})
            for r, v in zip(records, vectors, strict=True)
        ],
    )
    report = run_backfill(migration, modern, BackfillOptions(until=100))
    assert report.covered == report.total == 12
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_max_points_caps_the_points_of_one_run(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=100)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=8, max_points=30))
    assert report.stopped_by == "max_points"
    assert report.written == 30
    assert coverage(lattice.client, migration.collection) == 30


def test_max_tokens_caps_the_tokens_of_one_run(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=60)
    texts = [
        r.payload["text"]
        for r in sorted(all_points(lattice.client, migration.collection).values(), key=lambda r: r.id)
    ]
    budget = sum(estimate_tokens(t) for t in texts[:3]) + 1
    report = run_backfill(migration, modern, BackfillOptions(batch_size=10, max_tokens=budget))
    assert report.stopped_by == "max_tokens"
    assert report.tokens <= budget
    assert report.written == 3
    assert coverage(lattice.client, migration.collection) == 3


def test_max_tokens_holds_even_when_the_embedder_lags_behind_the_reader(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder, watched: Watched
) -> None:
    migration = make_migration(n=100)
    docs = migration.collection
    texts = [r.payload["text"] for r in sorted(all_points(lattice.client, docs).values(), key=lambda r: r.id)]
    budget = sum(estimate_tokens(t) for t in texts[:25])  # two and a half batches
    gate = threading.Event()
    # the embedder waits until the reader has read four pages
    opens = Meanwhile(lambda call: gate.set(), on=range(4, 1000), when=lambda call: call.collection == docs)
    watched.faults.inject("scroll", opens)
    report = run_backfill(
        migration,
        SlowEmbedder(modern, gate=gate, timeout=1),
        BackfillOptions(batch_size=10, max_tokens=budget),
    )
    assert report.stopped_by == "max_tokens"
    assert report.tokens <= budget


# --------------------------------------------------------------------------- 7. priorities


def test_priority_filters_are_backfilled_first_in_order(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=60)
    docs = migration.collection
    tenant = {i: "abc"[(i * 7) % 3] for i in range(60)}
    for name in "abc":
        lattice.client.set_payload(docs, {"tenant": name}, points=[i for i in range(60) if tenant[i] == name])
    writes = Writes(migration.store)

    def only(name: str) -> models.Filter:
        return models.Filter(must=[models.FieldCondition(key="tenant", match=models.MatchValue(value=name))])

    options = BackfillOptions(batch_size=4, writers=1, queue_depth=1, priorities=(only("b"), only("c")))
    report = run_backfill(migration, modern, options)
    assert report.written == 60
    order = [tenant[pid] for pid in writes.ids]
    assert order == ["b"] * 20 + ["c"] * 20 + ["a"] * 20
    assert sorted(writes.ids) == list(range(60))
    assert_backfilled(lattice.client, docs, modern)


# --------------------------------------------------------------------------- 8. scale-out


def test_shard_of_is_stable() -> None:
    # pinned: a change here would send points to other workers in a fleet mid-migration
    assert [shard_of(i, 3) for i in range(10)] == [1, 2, 2, 1, 1, 2, 1, 1, 1, 1]
    assert [shard_of(i, 7) for i in (0, 1, 42, 10**12)] == [2, 2, 1, 2]
    point = "6f1d3c8e-2b7a-4c55-9a43-0c7f1b6a9e21"
    assert (shard_of(point, 3), shard_of(point, 5)) == (2, 3)
    assert shard_of(uuid.UUID(point), 5) == shard_of(point, 5)
    assert all(shard_of(i, 1) == 0 for i in range(20))


def test_shard_of_balances_integer_and_uuid_ids() -> None:
    for ids in (range(3000), [str(uuid.UUID(int=i * 104729)) for i in range(3000)]):
        counts = [0, 0, 0]
        for pid in ids:
            counts[shard_of(pid, 3)] += 1
        assert all(900 <= c <= 1100 for c in counts), counts


def test_shard_parse_and_str() -> None:
    shard = Shard.parse("1/3")
    assert (shard.index, shard.count, str(shard)) == (1, 3, "1/3")
    assert Shard.parse(" 0 / 1 ") == Shard(index=0, count=1)
    assert Shard.parse(str(Shard(index=6, count=8))) == Shard(index=6, count=8)
    with pytest.raises(ValidationError):
        shard.index = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x", "must look like I/N"),
        ("1/2/3", "must look like I/N"),
        ("", "must look like I/N"),
        ("-1/2", "greater than or equal to 0"),
        ("0/0", "greater than or equal to 1"),
        ("3/3", "shard index 3 must be below the shard count 3"),
        ("5/3", "shard index 5 must be below the shard count 3"),
    ],
)
def test_a_bad_shard_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Shard.parse(text)


class Reads(StoreWrapper):
    """The ids each ``scroll`` of ``collection`` returned (what a worker's reader read), and the filters."""

    def __init__(self, store: Store, collection: str) -> None:
        super().__init__(store)
        self.collection = collection
        self.pages: list[list[Any]] = []
        self.filters: list[models.Filter | None] = []

    def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
        result = proceed()
        if call.method == "scroll" and call.collection == self.collection:
            self.pages.append([r.id for r in result[0]])
            self.filters.append(call.arguments["flt"])
        return result

    @property
    def ids(self) -> list[Any]:
        return [pid for page in self.pages for pid in page]


def share_of(method: str | None, pid: Any, count: int) -> int:
    """The share a point belongs to by ``method``: Qdrant's slice (its SipHash, as local mode computes it)
    or the id hash."""
    return point_id_slice(pid, count) if method == SHARD_SLICE else shard_of(pid, count)


def slices_in(flt: models.Filter | None) -> list[models.SliceCondition]:
    must = [] if flt is None or flt.must is None else flt.must
    return [c for c in (must if isinstance(must, list) else [must]) if isinstance(c, models.SliceCondition)]


def test_three_shards_at_once_split_the_work_exactly(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    names: Any,
    modern: HashEmbedder,
) -> None:
    n = 90
    migration = make_migration(n=n)
    docs = migration.collection
    reports: dict[int, BackfillReport] = {}
    errors: list[BaseException] = []
    runs = []
    for index in range(3):
        # a worker of its own, as another process would have: its own store and migration object
        store = Watched(open_store(lattice.client, control_collection=names("control")))
        reads = Reads(store, docs)
        runs.append((index, lq.Migration(reads, docs, refresh_interval=0), Writes(store), reads))

    def work(index: int, worker: lq.Migration) -> None:
        try:
            options = BackfillOptions(batch_size=7, writers=2, shard=Shard(index=index, count=3))
            reports[index] = run_backfill(worker, modern, options)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(index, worker)) for index, worker, _, _ in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    # local mode and servers from 1.19 read by slices; older servers by id hash
    method = shard_method(lattice.store.server_version())
    union = []
    for index, _, writes, reads in runs:
        assert reports[index].shard_method == method
        assert all(share_of(method, pid, 3) == index for pid in writes.ids)
        assert reports[index].written == len(set(writes.ids))
        assert reports[index].stopped_by == "done"
        union += writes.ids
        if method == SHARD_SLICE:  # the reader read its slice only, each point once
            mine = sorted(pid for pid in range(n) if share_of(method, pid, 3) == index)
            assert sorted(reads.ids) == mine
            assert all(slices_in(f) == [Shard(index=index, count=3).condition()] for f in reads.filters)
    assert sorted(union) == list(range(n))  # nothing missed, nothing done twice
    assert sum(r.written for r in reports.values()) == n
    assert_backfilled(lattice.client, docs, modern)
    assert migration.progress().status == lq.Status.COMPLETED


class PosingServer:
    """The real client posing as a Qdrant server of ``version`` (what ``info()`` reports), so the server's
    store is chosen; every call takes one lock, as local mode needs from the backfill's threads."""

    _client = None  # not qdrant-client's local mode

    def __init__(self, real: QdrantClient, version: str) -> None:
        self._real = real
        self.version = version
        self._lock = threading.RLock()

    def info(self) -> models.VersionInfo:
        return models.VersionInfo(title="qdrant - vector search engine", version=self.version)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@pytest.mark.parametrize(("version", "method"), [("1.18.2", SHARD_HASH), ("1.19.0", SHARD_SLICE)])
def test_a_shard_reads_by_slices_from_1_19_and_by_id_hash_before(
    qdrant: QdrantClient,
    backend: str,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
    version: str,
    method: str,
) -> None:
    if backend != "local":
        pytest.skip("poses as a server over local mode")
    n = 60
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=n)
    poser = PosingServer(qdrant, version)
    reads = Reads(open_store(poser, control_collection=names("control")), docs)  # type: ignore[arg-type]
    lattice = make_lattice(poser, names, store=reads)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    reads.pages.clear()  # planning sampled texts
    reads.filters.clear()
    seen: list[list[dict[str, Any]]] = []
    options = BackfillOptions(batch_size=8, shard=Shard(index=1, count=3), heartbeat_interval=0.05)
    report = run_backfill(
        migration,
        SlowEmbedder(modern, 0.01),
        options,
        on_progress=lambda _: seen.append(running(reads, docs)),
    )
    mine = sorted(pid for pid in range(n) if share_of(method, pid, 3) == 1)
    assert report.shard_method == method
    assert report.written == len(mine)
    assert sorted(pid for pid in range(n) if vector_of(all_points(qdrant, docs)[pid], TARGET)) == mine
    first_pass = reads.ids[: len(reads.ids) if method == SHARD_SLICE else n]
    if method == SHARD_SLICE:  # only its slice, asked of Qdrant
        assert sorted(first_pass) == mine
        assert all(slices_in(f) for f in reads.filters)
    else:  # every point still to do, its share kept
        assert sorted(first_pass) == list(range(n))
        assert not any(slices_in(f) for f in reads.filters)
    beats = [beat for beats in seen for beat in beats]
    assert beats and all(b["shard"] == "1/3" and b["shard_method"] == method for b in beats)


def test_shard_method_follows_the_server_version() -> None:
    assert shard_method(None) == SHARD_SLICE  # local mode
    assert shard_method((1, 19, 0)) == shard_method((2, 0, 0)) == SHARD_SLICE
    assert shard_method((1, 18, 9)) == shard_method((1, 17, 0)) == SHARD_HASH


def test_a_worker_joins_the_method_of_the_workers_running(caplog: pytest.LogCaptureFixture) -> None:
    assert joined_shard_method("docs", SHARD_SLICE, []) == SHARD_SLICE
    assert joined_shard_method("docs", SHARD_HASH, [SHARD_HASH, SHARD_HASH]) == SHARD_HASH
    assert joined_shard_method("docs", SHARD_SLICE, [SHARD_SLICE]) == SHARD_SLICE
    with caplog.at_level("WARNING", logger="lattice_qdrant.backfill"):
        assert joined_shard_method("docs", SHARD_SLICE, [SHARD_HASH]) == SHARD_HASH
    assert "split the points by id hash; this worker does too" in caplog.text
    with pytest.raises(lq.ShardMethodError, match="read by Qdrant's slices, but this worker's server") as e:
        joined_shard_method("docs", SHARD_HASH, [SHARD_SLICE])
    assert (e.value.collection, e.value.ours, e.value.running) == ("docs", SHARD_HASH, [SHARD_SLICE])
    with pytest.raises(lq.ShardMethodError, match=r"split the points two ways \(hash and slice\)"):
        joined_shard_method("docs", SHARD_SLICE, [SHARD_SLICE, SHARD_HASH])


def running_worker(store: Store, collection: str, **beat: Any) -> None:
    """The heartbeat of another sharded worker, running now."""
    store.put_record(
        "backfill",
        f"{collection}:other",
        {"collection": collection, "shard": "0/2", "at": time.time(), **beat},
    )


@pytest.mark.parametrize("theirs", [{"shard_method": SHARD_HASH}, {}])
def test_a_worker_that_could_read_slices_joins_workers_splitting_by_id_hash(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder, theirs: dict[str, Any]
) -> None:
    """A worker running with the id hash (``{}``: a version that recorded no method had only that one)
    makes a new worker of the run split by id hash too, on a server that has slices."""
    migration = make_migration(n=30)
    docs = migration.collection
    running_worker(lattice.store, docs, **theirs)
    writes = Writes(migration.store)
    report = run_backfill(migration, modern, BackfillOptions(batch_size=4, shard=Shard(index=1, count=2)))
    assert report.shard_method == SHARD_HASH
    assert sorted(writes.ids) == [pid for pid in range(30) if shard_of(pid, 2) == 1]


def test_a_worker_without_slices_refuses_to_join_workers_reading_by_slices(
    qdrant: QdrantClient,
    backend: str,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    if backend != "local":
        pytest.skip("poses as a server over local mode")
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=20)
    lattice = make_lattice(PosingServer(qdrant, "1.18.0"), names)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    running_worker(lattice.store, docs, shard_method=SHARD_SLICE)
    with pytest.raises(lq.ShardMethodError, match="would split the points another way"):
        run_backfill(migration, modern, BackfillOptions(shard=Shard(index=1, count=2)))
    assert coverage(qdrant, docs) == 0  # refused before anything was read or written


def test_three_shard_processes_against_a_server(
    backend: str,
    qdrant: QdrantClient,
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    if backend != "server":
        pytest.skip("local mode allows one process per storage: run with QDRANT_URL for processes")
    n = 300
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=n)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                "--url",
                str(QDRANT_URL),
                "--collection",
                docs,
                "--control",
                names("control"),
                "--batch-size",
                "16",
                "--shard",
                f"{index}/3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(3)
    ]
    reports = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = out.strip().splitlines()
        assert lines[0] == "ready"
        reports.append(json.loads(lines[-1]))
    assert sum(r["written"] for r in reports) == n
    assert all(r["stopped_by"] == "done" for r in reports)
    assert_backfilled(qdrant, docs, modern)
    assert migration.progress().status == lq.Status.COMPLETED


# --------------------------------------------------------------------------- 9. crash safety


CONTROL = "lattice_control"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Path]:
    """A folder for a path-based local client, on tmpfs when the machine has one.

    Local mode commits every point to SQLite, which a slow disk makes crawl. A process kill (unlike a power
    cut) loses nothing the kernel has accepted, so tmpfs tests exactly the same crash safety.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "qdrant"
        return
    folder = Path(tempfile.mkdtemp(prefix="lattice-backfill-", dir=shm))
    try:
        yield folder / "qdrant"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_path_collection(path: Path, legacy: HashEmbedder, n: int) -> None:
    client = QdrantClient(path=str(path))
    try:
        fill_collection(client, "docs", legacy, n=n)
    finally:
        client.close()


def spawn(path: Path, log: Any, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(CHILD), "--path", str(path), "--collection", "docs", "--control", CONTROL]
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=log, text=True)


def wait_ready(proc: subprocess.Popen[str], log_path: Path) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"the child did not start: {line!r}\n{log_path.read_text()}"


def check_path(path: Path, modern: HashEmbedder, n: int) -> tuple[int, lq.MigrationState]:
    """Open the storage (no child may hold it): every target vector is right; return coverage and state."""
    client = QdrantClient(path=str(path))
    try:
        points = all_points(client, "docs")
        assert len(points) == n
        have = [r for r in points.values() if vector_of(r, TARGET) is not None]
        expected = modern.embed([r.payload["text"] for r in have]) if have else []
        for record, want in zip(have, expected, strict=True):
            assert same_direction(vector_of(record, TARGET), want), f"point {record.id} is wrong"
        state = lq.wrap(client, control_collection=CONTROL).migration("docs").snapshot(refresh=True).state
        return len(have), state
    finally:
        client.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(
    storage: Path, tmp_path: Path, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    n = 3000
    path = storage
    make_path_collection(path, legacy, n)
    rng = random.Random(20240611)
    log_path = tmp_path / "child.log"
    with log_path.open("w") as log:
        for _ in range(4):
            # throttled, so the four runs together cannot finish the collection before their kill
            with spawn(path, log, "--batch-size", "50", "--max-rate", "300") as proc:
                wait_ready(proc, log_path)
                time.sleep(rng.uniform(0.3, 1.5))
                proc.kill()
                proc.wait()
            assert proc.returncode == -signal.SIGKILL, log_path.read_text()
        covered, state = check_path(path, modern, n)
        assert covered < n  # the throttle keeps four short runs from finishing
        assert state.status == lq.Status.IN_PROGRESS
        with spawn(path, log, "--batch-size", "50") as proc:
            out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, log_path.read_text()
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["stopped_by"], report["covered"], report["total"]) == ("done", n, n)
    assert report["written"] == n - covered
    covered, state = check_path(path, modern, n)
    assert covered == n
    assert state.status == lq.Status.COMPLETED


@pytest.mark.slow
def test_sigterm_stops_cleanly_after_the_batches_in_flight(
    storage: Path, tmp_path: Path, legacy: HashEmbedder, modern: HashEmbedder
) -> None:
    n = 1000
    path = storage
    make_path_collection(path, legacy, n)
    log_path = tmp_path / "child.log"
    with log_path.open("w") as log:
        with spawn(path, log, "--batch-size", "50", "--max-rate", "200", "--sigterm") as proc:
            wait_ready(proc, log_path)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("the child did not stop on SIGTERM")
        assert proc.returncode == 0, log_path.read_text()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["total"] == n
    assert report["covered"] < n  # stopped early
    covered, state = check_path(path, modern, n)
    assert covered == report["covered"] == report["written"]
    assert state.status == lq.Status.IN_PROGRESS


# --------------------------------------------------------------------------- 10. estimate


def test_estimate_measures_without_writing(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=40)
    docs = migration.collection
    texts = [r.payload["text"] for r in all_points(lattice.client, docs).values()]
    writes = Writes(migration.store)
    dry = estimate(migration, modern)
    assert (dry.collection, dry.todo, dry.total, dry.sampled) == (docs, 40, 40, 40)
    assert dry.tokens == sum(estimate_tokens(t) for t in texts)
    assert dry.storage_bytes == 40 * (modern.dimension * 4 + 128)
    assert dry.points_per_second > 0
    assert dry.seconds == pytest.approx(40 / dry.points_per_second)
    assert writes.calls == []
    assert coverage(lattice.client, docs) == 0
    assert list_failures(lattice.store, docs) == []
    assert migration.snapshot(refresh=True).state.status == lq.Status.IN_PROGRESS


def test_estimate_samples_and_follows_shards_and_progress(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=90)
    assert estimate(migration, modern, sample=10).sampled == 10
    sharded = estimate(migration, modern, BackfillOptions(shard=Shard(index=1, count=3)))
    assert sharded.todo == 30
    assert sharded.storage_bytes == 30 * (modern.dimension * 4 + 128)
    run_backfill(migration, modern, BackfillOptions(max_points=20, batch_size=10))
    assert estimate(migration, modern).todo == 70
    run_backfill(migration, modern)
    done = estimate(migration, modern)
    assert (done.todo, done.total, done.tokens, done.storage_bytes, done.sampled) == (0, 90, 0, 0, 0)


def test_estimate_truncates_like_the_backfill(make_migration: MakeMigration, modern: HashEmbedder) -> None:
    migration = make_migration(texts=["x" * 400, "y" * 400])
    dry = estimate(migration, modern, BackfillOptions(max_text_chars=40))
    assert dry.tokens == 2 * estimate_tokens("x" * 40)


# --------------------------------------------------------------------------- 11. metrics


def test_prometheus_metrics_count_what_the_run_did(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    from prometheus_client import CollectorRegistry

    migration = make_migration(n=30)
    docs = migration.collection
    lattice.client.set_payload(docs, {"text": "poison"}, points=[7])
    registry = CollectorRegistry()
    report = run_backfill(
        migration,
        PoisonedEmbedder(modern),
        BackfillOptions(batch_size=6),
        metrics=prometheus_metrics(port=None, registry=registry),
    )
    labels = {"collection": docs}
    assert report.written == 29
    assert registry.get_sample_value("lattice_backfill_points_total", labels) == 29
    assert registry.get_sample_value("lattice_backfill_failures_total", labels) == 1
    for stage in ("read", "embed", "write"):
        staged = {"collection": docs, "stage": stage}
        count = registry.get_sample_value("lattice_backfill_batch_seconds_count", staged)
        assert count is not None and count >= 5, stage
        assert registry.get_sample_value("lattice_backfill_active_workers", staged) == 0, stage


def test_a_metrics_sink_sees_every_point_and_stage(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(n=30)
    metrics = RecordingMetrics()
    report = run_backfill(migration, modern, BackfillOptions(batch_size=6), metrics=metrics)
    assert metrics.points_written == report.written == 30
    assert metrics.failed == 0
    assert metrics.stages == {"read", "embed", "write"}
    assert metrics.active_now == {"read": 0, "embed": 0, "write": 0}
    # and the default sink discards everything
    assert run_backfill(migration, modern, metrics=NO_METRICS).written == 0


def test_prometheus_metrics_need_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(lq.MissingDependencyError, match=r"lattice-qdrant\[metrics\]"):
        prometheus_metrics()


# --------------------------------------------------------------------------- 12. heartbeats and state


def test_a_running_backfill_leaves_a_heartbeat_and_removes_it_at_the_end(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=40)
    docs = migration.collection
    gate = threading.Event()
    seen: list[list[dict[str, Any]]] = []

    def on_progress(progress: BackfillProgress) -> None:
        seen.append(running(lattice.store, docs))
        if len(seen) >= 3:  # the embedder starts once a heartbeat had time to be recorded
            gate.set()

    options = BackfillOptions(batch_size=10, heartbeat_interval=0.1)
    run_backfill(migration, SlowEmbedder(modern, 0.02, gate=gate), options, on_progress=on_progress)
    beats = [b for b in seen if b]
    assert beats
    assert all(len(b) == 1 for b in beats)
    beat = beats[-1][0]
    assert {"written", "rate", "eta", "todo", "read", "at"} <= set(beat)
    assert beat["collection"] == docs and beat["shard"] is None and beat["shard_method"] is None
    assert beat["todo"] == 40 and 0 <= beat["written"] <= 40
    assert running(lattice.store, docs) == []
    assert running(lattice.store, "another-collection") == []


def test_a_pause_from_another_process_stops_the_run(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    names: Any,
    modern: HashEmbedder,
) -> None:
    migration = make_migration(n=100)
    docs = migration.collection
    other = lq.Migration(Store(lattice.client, control_collection=names("control")), docs, refresh_interval=0)
    stop = threading.Event()

    def hold(number: int, ids: list[Any]) -> None:
        if number > 1:
            stop.wait(timeout=30)

    def on_progress(progress: BackfillProgress) -> None:
        if progress.written > 0 and other.state.status == lq.Status.IN_PROGRESS:
            other.pause("maintenance window")

    with Writes(migration.store, before=hold):
        options = BackfillOptions(
            batch_size=10, writers=1, queue_depth=1, embed_window=20, heartbeat_interval=0.1
        )
        report = run_backfill(migration, modern, options, stop=stop, on_progress=on_progress)
    assert report.stopped_by == "paused"
    assert report.covered < 100
    with pytest.raises(lq.MigrationError, match="paused"):
        run_backfill(migration, modern)
    migration.resume()
    rest = run_backfill(migration, modern)
    assert (rest.covered, report.written + rest.written) == (100, 100)
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


def test_a_store_failure_fails_the_migration_until_resumed(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=30)

    def broken(number: int, ids: list[Any]) -> None:
        raise lq.StoreError("update vectors failed: disk on fire", collection=migration.collection)

    with Writes(migration.store, before=broken), pytest.raises(lq.StoreError, match="disk on fire"):
        run_backfill(migration, modern, BackfillOptions(batch_size=10))
    state = migration.snapshot(refresh=True).state
    assert state.status == lq.Status.FAILED and "disk on fire" in str(state.error)
    assert running(lattice.store, migration.collection) == []
    with pytest.raises(lq.MigrationError, match="disk on fire"):
        run_backfill(migration, modern)
    migration.resume()
    report = run_backfill(migration, modern, BackfillOptions(batch_size=10))
    assert (report.written, report.stopped_by) == (30, "done")
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


class StampLost(StoreWrapper):
    """The target write's vectors land and its stamp does not: the connection drops between the two
    operations of its request (or, in local mode, between the two writes)."""

    def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
        if call.method != "update_if_unchanged" or call.arguments["stamp"] is None:
            return proceed()
        self.inner.update_if_unchanged(**{**call.arguments, "stamp": None})
        raise lq.StoreError(
            "write vectors and model stamps failed: connection reset", collection=call.collection
        )


def test_a_stamp_lost_between_the_two_writes_is_repaired_by_the_next_run(
    make_migration: MakeMigration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    migration = make_migration(n=20)
    docs = migration.collection
    lost = lq.Migration(StampLost(migration.store), docs, refresh_interval=0)
    with pytest.raises(lq.StoreError):
        run_backfill(lost, modern, BackfillOptions(batch_size=20, writers=1))
    assert coverage(lattice.client, docs) == 20  # the vectors were written
    assert not any(p.payload.get(MODEL_FIELD) == "modern" for p in all_points(lattice.client, docs).values())
    migration.resume()
    run_backfill(migration, modern)
    assert_backfilled(lattice.client, docs, modern)


def test_completion_survives_a_concurrent_stale_progress(
    make_migration: MakeMigration,
    lattice: lq.LatticeClient,
    names: Any,
    modern: HashEmbedder,
    watched: Watched,
) -> None:
    migration = make_migration(n=20)
    docs = migration.collection
    # another worker, which counted the coverage a moment ago
    other = lq.Migration(Store(lattice.client, control_collection=names("control")), docs, refresh_interval=0)
    stale = other.coverage()

    def completes(call: Call) -> bool:
        return bool(call.arguments["payload"].get("state", {}).get("status") == "completed")

    # right before the completion is written, the other worker records its stale progress
    race = Meanwhile(lambda call: other.apply(Progress(processed=stale.covered, total=stale.total)))
    watched.faults.inject("replace_record", dataclasses.replace(race, on=1, when=completes))
    # no heartbeat during the run: its final progress is its only completion attempt
    report = run_backfill(migration, modern, BackfillOptions(heartbeat_interval=3600))
    assert [fault for _, fault in watched.faults.fired] and report.covered == report.total == 20
    assert migration.snapshot(refresh=True).state.status == lq.Status.COMPLETED


# --------------------------------------------------------------------------- options


def test_options_defaults_and_freezing() -> None:
    options = BackfillOptions()
    defaults = (options.batch_size, options.writers, options.queue_depth, options.embed_window)
    assert defaults == (64, 4, 8, 2048)
    assert options.max_rate is None and options.until is None and options.shard is None
    assert options.priorities == () and not options.retry_failed
    with pytest.raises(ValidationError):
        options.batch_size = 3  # type: ignore[misc]
    flt = models.Filter(must=[models.FieldCondition(key="t", match=models.MatchValue(value="a"))])
    assert BackfillOptions(priorities=[flt]).priorities == (flt,)
    assert BackfillOptions(shard=Shard.parse("0/2")).shard == Shard(index=0, count=2)


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"batch_size": 10_001},
        {"writers": 0},
        {"queue_depth": 0},
        {"max_rate": 0},
        {"delay": -1},
        {"max_text_chars": 0},
        {"until": 0},
        {"until": 101},
        {"max_points": 0},
        {"max_tokens": 0},
        {"heartbeat_interval": 0},
    ],
)
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BackfillOptions(**bad)


def test_report_coverage_of_an_empty_collection_is_full() -> None:
    report = BackfillReport("c", 0, 0, 0, 0, 0, 0.0, 0, 0, "done")
    assert report.coverage == 1.0
    assert dataclasses.replace(report, covered=1, total=4).coverage == 0.25
    fresh = BackfillProgress(collection="c", todo=10)
    assert (fresh.remaining, fresh.eta, fresh.rate) == (10, None, 0.0)


def test_the_report_tells_the_span_of_the_forward_passes(
    make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    """From the start of the first pass to the end of the last: at least the embedder's own time, and the
    run's reads before it and writes after it left out."""
    migration = make_migration(n=24)
    slow = SlowEmbedder(modern, seconds=0.05)
    report = run_backfill(migration, slow, BackfillOptions(batch_size=8, embed_window=8))
    assert report.written == 24 and len(slow.sizes) == 3
    assert 3 * 0.05 <= report.embedding < report.elapsed
