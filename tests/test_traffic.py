"""The traffic queue: the uncovered points mixed queries meet are recorded in the background, once each and
up to a bound, in the control collection; the backfill takes them first and clears them; status shows them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import commands, traffic
from lattice_qdrant.backfill import BackfillOptions, run_backfill
from lattice_qdrant.cli import render_status
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import open_store
from lattice_qdrant.testing import RecordingStore
from lattice_qdrant.traffic import TrafficRecorder

from conftest import fill_collection, make_lattice


@pytest.fixture
def started(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> lq.Migration:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=48)
    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    migration.start()
    return migration


def test_the_queue_holds_each_point_once_up_to_its_bound(lattice: lq.LatticeClient) -> None:
    recorder = TrafficRecorder(lattice.store, interval=60)
    recorder.note("docs", [1, 2, 3, 2, 1], bound=5)
    recorder.note("docs", [3, 4], bound=5)
    assert recorder.flush() == 4
    recorder.note("docs", [4, 1], bound=5)  # already written: nothing to write again
    assert recorder.flush() == 0
    other = TrafficRecorder(lattice.store, interval=60)  # another process meets some of the same points
    other.note("docs", [1, 2, 5, 6, 7], bound=5)
    assert other.flush() == 1 and other.dropped == 2  # 1 and 2 are queued already; room for one more
    assert traffic.queued(lattice.store, "docs") == 5
    assert sorted(traffic.queued_ids(lattice.store, "docs", 10)) == [1, 2, 3, 4, 5]
    assert traffic.queued(lattice.store, "elsewhere") == 0
    recorder.note("docs", [8], bound=0)  # a bound of 0 records nothing
    assert recorder.flush() == 0


def test_reading_the_queue_asks_whether_the_control_collection_exists_only_if_the_store_does_not_know(
    lattice: lq.LatticeClient,
) -> None:
    recorder = TrafficRecorder(lattice.store, interval=60)
    recorder.note("docs", [3, 1, 2], bound=5)
    recorder.flush()
    store = RecordingStore(lattice.store)
    store.ensure_control()  # what every write of a control record does first
    store.calls.clear()
    assert sorted(traffic.queued_ids(store, "docs", 10)) == [1, 2, 3]
    assert "collection_exists" not in [call.method for call in store.calls]


def test_the_buffer_is_bounded_and_a_query_never_waits(lattice: lq.LatticeClient) -> None:
    recorder = TrafficRecorder(lattice.store, interval=60, buffer=3)
    recorder.note("docs", list(range(10)), bound=100)
    assert recorder.dropped == 7
    assert recorder.flush() == 3


def test_the_background_thread_writes_and_then_exits(lattice: lq.LatticeClient) -> None:
    recorder = TrafficRecorder(lattice.store, interval=0.05)
    recorder.note("docs", [1, 2], bound=10)
    recorder.flush()  # waits for a write the thread may have started
    assert traffic.queued(lattice.store, "docs") == 2
    thread = recorder._thread
    if thread is not None:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_another_process_sees_the_queue(tmp_path: Path, names: Any) -> None:
    path = str(tmp_path / "db")
    client = QdrantClient(path=path)
    store = open_store(client, control_collection=names("control"))
    recorder = TrafficRecorder(store, interval=60)
    recorder.note("docs", [7, 3, 7], bound=10)
    recorder.flush()
    client.close()
    script = (
        "import json, sys\n"
        "from qdrant_client import QdrantClient\n"
        "from lattice_qdrant import traffic\n"
        "from lattice_qdrant.store import open_store\n"
        f"store = open_store(QdrantClient(path={path!r}), control_collection={names('control')!r})\n"
        "print(json.dumps(sorted(traffic.queued_ids(store, 'docs', 10))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [3, 7]


def test_mixed_queries_record_the_uncovered_candidates_they_meet(
    started: lq.Migration, lattice: lq.LatticeClient
) -> None:
    docs = started.collection
    run_backfill(started, lattice.embedder(started.plan.target), BackfillOptions(max_points=24))
    found = lattice.query_points(docs, models.Document(text="cat on a mat", model="m"), mode="mixed", limit=3)
    assert found.points
    lattice.traffic.flush()
    queued = set(traffic.queued_ids(lattice.store, docs, 100))
    covered = {
        r.id
        for r in lattice.client.scroll(docs, limit=100, with_vectors=[started.plan.target_vector])[0]
        if isinstance(r.vector, dict) and r.vector
    }
    assert queued and not queued & covered and len(queued) <= 12  # the source search's uncovered hits


def test_a_plan_with_no_traffic_queue_records_nothing(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=12)
    migration = lattice.plan(
        docs, source=source_spec, target=target_spec, source_vector="legacy", traffic_queue=0
    )
    migration.start()
    lattice.query_points(docs, models.Document(text="cat on a mat", model="m"), mode="mixed", limit=3)
    lattice.traffic.flush()
    assert traffic.queued(lattice.store, docs) == 0


def test_the_backfill_takes_the_queue_first_and_clears_it(
    started: lq.Migration, lattice: lq.LatticeClient
) -> None:
    docs = started.collection
    hot = [47, 30, 45, 12]  # far from the front of the id order
    recorder = TrafficRecorder(lattice.store, interval=60)
    recorder.note(docs, hot, bound=100)
    recorder.flush()
    report = run_backfill(
        started, lattice.embedder(started.plan.target), BackfillOptions(max_points=4, batch_size=2)
    )
    assert report.written == 4
    covered = {
        r.id
        for r in lattice.client.scroll(docs, limit=100, with_vectors=[started.plan.target_vector])[0]
        if isinstance(r.vector, dict) and r.vector
    }
    assert covered == set(hot)
    assert traffic.queued(lattice.store, docs) == 0
    # the next run goes on in id order
    run_backfill(started, lattice.embedder(started.plan.target), BackfillOptions(max_points=2, batch_size=2))
    assert started.coverage().covered == 6


def test_the_backfill_keeps_the_records_of_points_it_did_not_cover(
    started: lq.Migration, lattice: lq.LatticeClient
) -> None:
    docs = started.collection
    recorder = TrafficRecorder(lattice.store, interval=60)
    recorder.note(docs, [5, 6, 7], bound=100)
    recorder.flush()
    run_backfill(started, lattice.embedder(started.plan.target), BackfillOptions(max_points=2, batch_size=1))
    assert len(traffic.queued_ids(lattice.store, docs, 10)) == 1  # one was left to do: it stays queued


def test_status_shows_the_queue(
    qdrant: QdrantClient, names: Any, started: lq.Migration, lattice: lq.LatticeClient
) -> None:
    session = commands.Session(settings=Settings(control_collection=names("control")), client=qdrant)
    assert commands.status(session, [started.collection])[0].traffic_queued == 0
    recorder = TrafficRecorder(lattice.store, interval=60)
    recorder.note(started.collection, [1, 2, 3], bound=100)
    recorder.flush()
    (report,) = commands.status(session, [started.collection])
    assert report.traffic_queued == 3 and report.to_dict()["traffic_queued"] == 3
    assert "  traffic   3 point(s) met by queries, backfilled first" in render_status(report).splitlines()
    other = make_lattice(qdrant, names)  # another process's wrapper reads the same queue
    assert traffic.queued(other.store, started.collection) == 3


def test_closing_the_wrapper_writes_what_is_still_buffered(tmp_path: Path, names: Any) -> None:
    path = str(tmp_path / "db")
    control = names("control")
    lattice = lq.wrap(QdrantClient(path=path), control_collection=control)
    lattice.traffic.interval = 60  # the background thread would not write before the process exits
    lattice.traffic.note("docs", [4, 9], bound=10)
    lattice.close()
    reopened = QdrantClient(path=path)
    try:
        store = open_store(reopened, control_collection=control)
        assert sorted(traffic.queued_ids(store, "docs", 10)) == [4, 9]
    finally:
        reopened.close()


def test_the_async_twin_writes_what_is_still_buffered_when_closed(tmp_path: Path, names: Any) -> None:
    import asyncio

    from qdrant_client import AsyncQdrantClient

    path, control = str(tmp_path / "db"), names("control")

    async def run() -> None:
        twin = lq.wrap(AsyncQdrantClient(path=path), control_collection=control)
        twin.sync.traffic.interval = 60
        twin.sync.traffic.note("docs", [2], bound=10)
        await twin.close()

    asyncio.run(run())
    reopened = QdrantClient(path=path)
    try:
        assert traffic.queued_ids(open_store(reopened, control_collection=control), "docs", 10) == [2]
    finally:
        reopened.close()


def test_a_failed_write_at_close_is_logged_not_raised(
    lattice: lq.LatticeClient, caplog: pytest.LogCaptureFixture
) -> None:
    from lattice_qdrant.testing import Fail, FaultyStore

    store = FaultyStore(lattice.store)
    store.inject("put_records", Fail(lq.StoreError("connection refused")))
    recorder = TrafficRecorder(store, interval=60)
    recorder.note("docs", [1], bound=10)
    with caplog.at_level("WARNING", logger="lattice_qdrant.traffic"):
        assert recorder.close() == 0
    assert "before closing" in caplog.text and "connection refused" in caplog.text
