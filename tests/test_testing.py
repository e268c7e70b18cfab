"""The store's backends are chosen once by the client's type, and the store fakes of
``lattice_qdrant.testing`` fail, delay and record calls the way they say (users test with them too)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import commands
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import (
    LocalStore,
    RetryPolicy,
    ServerStore,
    Store,
    backend_for,
    open_store,
    record_id,
)
from lattice_qdrant.testing import (
    Call,
    DelayedStore,
    Fail,
    FaultyStore,
    LoseReply,
    Meanwhile,
    RecordingStore,
    Resend,
    StoreWrapper,
)

from conftest import fill_collection

PACKAGE = Path(lq.__file__).parent
LOST = lq.TransientStoreError("connection reset by peer")


@pytest.fixture
def local() -> Any:
    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.fixture
def store(local: QdrantClient) -> ServerStore:
    return open_store(local, control_collection="control", retry=RetryPolicy(attempts=1))


def point(pid: int, text: str = "a text") -> models.PointStruct:
    return models.PointStruct(id=pid, vector={}, payload={"text": text})


@pytest.fixture
def docs(store: ServerStore) -> str:
    store.ensure_collection("docs", {})
    return "docs"


def texts(store: Store, collection: str = "docs") -> dict[Any, Any]:
    return {r.id: (r.payload or {}).get("text") for page in store.iter_points(collection) for r in page}


# --------------------------------------------------------------------------- the backend, chosen once


class QdrantLocal:
    """Named like qdrant-client's local mode, and nothing else: not taken for it."""


class _Posing:
    """A client that says nothing of local mode: a server, as far as anyone can tell."""

    def __init__(self, real: QdrantClient, inner: Any) -> None:
        self._real = real
        self._client = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_local_client_gets_the_local_store(local: QdrantClient, tmp_path: Path) -> None:
    assert type(open_store(local)) is LocalStore
    on_disk = QdrantClient(path=str(tmp_path / "db"))
    try:
        assert type(open_store(on_disk)) is LocalStore
    finally:
        on_disk.close()
    assert backend_for(AsyncQdrantClient(":memory:")) is LocalStore  # the async client's local mode too


def test_a_server_client_gets_the_server_store() -> None:
    client = QdrantClient(url="http://localhost:1", check_compatibility=False)  # nothing is sent yet
    try:
        store = open_store(client)
        assert type(store) is ServerStore
        assert not store.is_local
    finally:
        client.close()


def test_a_class_merely_named_qdrantlocal_is_not_taken_for_local_mode(local: QdrantClient) -> None:
    posing = _Posing(local, QdrantLocal())
    assert type(posing._client).__name__ == "QdrantLocal"
    store = open_store(posing)  # type: ignore[arg-type]
    assert type(store) is ServerStore and not store.is_local


def test_a_proxy_that_hands_out_the_real_local_client_is_local_mode(local: QdrantClient) -> None:
    assert type(open_store(_Posing(local, local._client))) is LocalStore  # type: ignore[arg-type]


def test_store_still_opens_the_backend_for_a_client(local: QdrantClient) -> None:
    store = Store(local, control_collection="mine")  # type: ignore[misc,call-arg]
    assert type(store) is LocalStore and store.control_collection == "mine"
    assert type(Store(_Posing(local, object()))) is ServerStore  # type: ignore[misc,call-arg]
    assert isinstance(store, ServerStore)  # local mode is the server's store with what differs overridden


def test_nothing_in_the_package_sniffs_the_backend_by_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if '"QdrantLocal"' in text or "'QdrantLocal'" in text or re.search(r"\)\.__name__ ==", text):
            offenders.append(f"{path.name} compares a class name")
        if "QdrantLocal" in text and path != PACKAGE / "store" / "__init__.py":
            offenders.append(f"{path.name} names QdrantLocal")
        if path.parent.name == "store" and "if self.is_local" in text:
            offenders.append(f"{path.name} branches on is_local")
    assert offenders == []


def test_the_local_store_takes_its_clients_lock_and_a_server_store_none(local: QdrantClient) -> None:
    one, two = open_store(local), open_store(local)
    with one.exclusive():
        assert one.exclusive() is two.exclusive()  # every store over the client shares it
        taken = threading.Event()

        def other() -> None:
            with two.exclusive():
                taken.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not taken.wait(0.1)
    thread.join(5)
    assert taken.is_set()
    server = open_store(_Posing(local, object()))  # type: ignore[arg-type]
    with server.exclusive(), server.exclusive():
        pass


# --------------------------------------------------------------------------- wrappers


def test_a_wrapper_is_a_store_that_sends_every_call_on(store: ServerStore, docs: str) -> None:
    wrapped = StoreWrapper(store)
    wrapped.upsert(docs, [point(1), point(2, "b")])
    assert texts(wrapped) == {1: "a text", 2: "b"}
    assert wrapped.is_local and wrapped.control_collection == "control"
    assert wrapped.client is store.client  # what is no part of the protocol is the wrapped store's
    assert wrapped.insert_record("k", "one", {"n": 1})
    assert store.get_record("k", "one")["n"] == 1  # type: ignore[index]
    assert wrapped.alias_target("nothing") is None


def test_a_call_has_its_arguments_by_name_with_defaults(store: ServerStore, docs: str) -> None:
    recording = RecordingStore(store)
    recording.scroll(docs, limit=3)
    recording.upsert(docs, [point(1)], ordering=models.WriteOrdering.STRONG)
    scroll, upsert = recording.calls
    assert scroll.method == "scroll" and scroll.collection == docs
    assert scroll.arguments["limit"] == 3 and scroll.arguments["offset"] is None
    assert upsert.arguments["update_mode"] is None  # a default
    assert upsert.arguments["ordering"] == models.WriteOrdering.STRONG  # an extra keyword argument


# --------------------------------------------------------------------------- FaultyStore


def test_fail_raises_instead_of_making_the_call(store: ServerStore, docs: str) -> None:
    faulty = FaultyStore(store, {"upsert": Fail(LOST, on=2)})
    faulty.upsert(docs, [point(1)])
    with pytest.raises(lq.TransientStoreError):
        faulty.upsert(docs, [point(2)])
    faulty.upsert(docs, [point(3)])  # only the second call
    assert sorted(texts(store)) == [1, 3]
    assert [(call.method, fault) for call, fault in faulty.fired] == [("upsert", Fail(LOST, on=2))]


def test_a_fault_without_on_hits_every_call_until_cleared(store: ServerStore, docs: str) -> None:
    faulty = FaultyStore(store)
    faulty.inject("drop_collection", Fail(KeyboardInterrupt()))
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            faulty.drop_collection(docs)
    faulty.clear("drop_collection")
    assert faulty.drop_collection(docs)


def test_when_picks_the_calls_that_count(store: ServerStore, docs: str) -> None:
    store.ensure_collection("other", {})
    faulty = FaultyStore(store)
    faulty.inject("upsert", Fail(LOST, on=range(1, 3), when=lambda call: call.collection == "other"))
    faulty.upsert(docs, [point(1)])
    for pid in (2, 3):
        with pytest.raises(lq.TransientStoreError):
            faulty.upsert("other", [point(pid)])
    faulty.upsert("other", [point(4)])
    assert texts(store, "other") == {4: "a text"} and texts(store) == {1: "a text"}


def test_a_lost_reply_takes_effect_then_raises(store: ServerStore, docs: str) -> None:
    faulty = FaultyStore(store, {"upsert": LoseReply(LOST, on=1)})
    with pytest.raises(lq.TransientStoreError, match="connection reset"):
        faulty.upsert(docs, [point(1)])
    assert texts(store) == {1: "a text"}


def test_resend_delivers_the_call_twice(store: ServerStore, docs: str) -> None:
    recording = RecordingStore(store)
    faulty = FaultyStore(recording, {"upsert": Resend(on=1)})
    faulty.upsert(docs, [point(1)])
    assert len(recording.of("upsert")) == 2


def test_meanwhile_acts_right_before_or_after_the_call(store: ServerStore, docs: str) -> None:
    seen: list[tuple[str, dict[Any, Any]]] = []
    faulty = FaultyStore(store)
    faulty.inject(
        "upsert",
        Meanwhile(lambda call: seen.append(("before", texts(store)))),
        Meanwhile(lambda call: seen.append(("after", texts(store))), after=True),
    )
    faulty.upsert(docs, [point(1)])
    assert seen == [("before", {}), ("after", {1: "a text"})]


def test_an_unknown_method_is_refused(store: ServerStore) -> None:
    with pytest.raises(lq.ConfigError, match="updsert"):
        FaultyStore(store, {"updsert": Fail(LOST)})


def test_a_lost_reply_under_the_records_is_settled_by_their_read_back(store: ServerStore) -> None:
    """The records are kept over the fake's own point operations: a write of the control collection whose
    reply is lost is recognised as this call's by the token read back."""
    control = store.control_collection
    faulty = FaultyStore(store)
    assert faulty.insert_record("k", "one", {"n": 1})
    expected = faulty.get_record("k", "one")
    assert expected is not None
    faulty.inject("upsert", LoseReply(LOST, on=1, when=lambda call: call.collection == control))
    stored = faulty.replace_record("k", "one", {"n": 2}, expected=expected)
    assert stored is not None and stored["n"] == 2 and stored["epoch"] == 2
    assert len(faulty.fired) == 1


def test_a_lost_reply_whose_read_back_fails_too_raises_and_the_write_stands(store: ServerStore) -> None:
    control = store.control_collection
    faulty = FaultyStore(store)
    faulty.insert_record("k", "one", {"n": 1})
    expected = faulty.get_record("k", "one")
    assert expected is not None
    lost = LoseReply(LOST, on=1, when=lambda call: call.collection == control)
    faulty.inject("upsert", lost)
    faulty.inject("retrieve", Fail(LOST, on=1, when=lambda call: any(f is lost for _, f in faulty.fired)))
    with pytest.raises(lq.TransientStoreError):
        faulty.replace_record("k", "one", {"n": 2}, expected=expected)
    assert store.get_record("k", "one")["n"] == 2  # type: ignore[index]


def test_faults_stack_and_record_calls_are_seen_by_every_fake(store: ServerStore) -> None:
    faulty = FaultyStore(store, {"append_event": Fail(KeyboardInterrupt(), on=1)})
    recording = RecordingStore(faulty)
    with pytest.raises(KeyboardInterrupt):
        recording.append_event("docs", {"event": "start"})
    recording.append_event("docs", {"event": "start"}, event_id="t1")
    assert [c.method for c in recording.calls].count("append_event") == 2
    upserts = recording.of("upsert")
    assert len(upserts) == 1 and upserts[0].arguments["points"][0].id == record_id("event", "t1")


# --------------------------------------------------------------------------- RecordingStore


def test_recording_counts_the_calls_running_at_once(store: ServerStore, docs: str) -> None:
    barrier = threading.Barrier(3)
    slow = FaultyStore(store, {"count": Meanwhile(lambda call: barrier.wait(5))})
    recording = RecordingStore(slow)
    threads = [threading.Thread(target=recording.count, args=(docs,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert recording.most_at_once("count") == 3 and len(recording.of("count")) == 3
    recording.clear()
    assert recording.calls == [] and recording.most_at_once("count") == 0


# --------------------------------------------------------------------------- DelayedStore


def test_each_request_pays_the_latency_and_is_served_one_at_a_time(store: ServerStore, docs: str) -> None:
    delayed = DelayedStore(store, 0.05)
    started = time.perf_counter()
    threads = [threading.Thread(target=delayed.count, args=(docs,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.perf_counter() - started
    assert 0.05 <= elapsed < 4 * 0.05  # the network time overlaps; the service does not wait on it


def test_the_conditional_writes_check_is_a_request_only_once(store: ServerStore) -> None:
    # a server's store reads the version on the first check and trusts it afterwards
    delayed = DelayedStore(store, 0.2)
    started = time.perf_counter()
    for _ in range(5):
        delayed.check_conditional_writes()
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 3 * 0.2


def test_a_page_of_iter_points_is_a_request(store: ServerStore, docs: str) -> None:
    store.upsert(docs, [point(i) for i in range(6)])
    recording = RecordingStore(store)
    delayed = DelayedStore(recording, 0.03)
    started = time.perf_counter()
    pages = list(delayed.iter_points(docs, page_size=2))
    assert [len(p) for p in pages] == [2, 2, 2]
    assert time.perf_counter() - started >= 3 * 0.03
    assert [c.arguments["offset"] for c in recording.of("scroll")] == [None, 2, 4]  # one scroll per page


def test_records_over_a_delayed_store_pay_for_their_requests(store: ServerStore) -> None:
    recording = RecordingStore(store)
    delayed = DelayedStore(recording, 0.0)
    delayed.put_record("k", "one", {"n": 1})
    assert delayed.get_record("k", "one")["n"] == 1  # type: ignore[index]
    assert "upsert" in [c.method for c in recording.calls]


def test_an_exclusive_section_of_a_delayed_local_store_does_not_deadlock(
    store: ServerStore, docs: str
) -> None:
    delayed = DelayedStore(store, 0.0)
    delayed.insert_record("k", "one", {"n": 0})
    done: list[int] = []

    def bump() -> None:
        for _ in range(10):
            while True:
                expected = delayed.get_record("k", "one")
                if expected and delayed.replace_record(
                    "k", "one", {"n": expected["n"] + 1}, expected=expected
                ):
                    break
        done.append(1)

    def read() -> None:
        for _ in range(30):
            delayed.count(docs)

    threads = [threading.Thread(target=bump), threading.Thread(target=bump), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done == [1, 1]
    assert delayed.get_record("k", "one")["n"] == 20  # type: ignore[index]


def test_an_exclusive_section_does_not_hold_up_requests_that_need_no_lock(store: ServerStore) -> None:
    # a compare-and-set of a control record (write, read-back) in one thread; meanwhile another thread's
    # request served without the wrapped store's lock (a stand-in serving data itself), as a server
    # serves other requests while a client runs its compare-and-set
    class Served(StoreWrapper):
        def count(self, collection: str, flt: models.Filter | None = None) -> int:
            return 7

    delayed = DelayedStore(Served(store), 0.2)
    delayed.put_record("k", "one", {"n": 0})
    entered = threading.Event()
    section: list[float] = []

    def compare_and_set() -> None:
        with delayed.exclusive():
            entered.set()
            started = time.perf_counter()
            for _ in range(3):
                delayed.get_record("k", "one")
            section.append(time.perf_counter() - started)

    writer = threading.Thread(target=compare_and_set)
    writer.start()
    entered.wait(5)
    started = time.perf_counter()
    assert delayed.count("docs") == 7
    waited = time.perf_counter() - started
    writer.join(5)
    assert section and section[0] >= 0.6  # the section's own requests paid their latency
    assert waited < 0.45  # its latency only, not the rest of the section


# --------------------------------------------------------------------------- where a store is taken


def test_wrap_and_the_session_take_a_store(
    local: QdrantClient, legacy: HashEmbedder, source_spec: lq.ModelSpec, target_spec: lq.ModelSpec
) -> None:
    fill_collection(local, "docs", legacy, n=5)
    recording = RecordingStore(open_store(local, control_collection="control"))
    lattice = lq.wrap(local, store=recording, refresh_interval=0)
    assert lattice.store is recording
    lattice.plan("docs", source=source_spec, target=target_spec, source_vector="legacy").start()
    assert [c.arguments["name"] for c in recording.of("ensure_vector")] == [f"{target_spec.model_id}-v1"]

    session = commands.Session(settings=Settings(control_collection="control"), client=local, store=recording)
    assert session.store is recording
    assert [report.collection for report in commands.status(session, ["docs"])] == ["docs"]


def test_a_call_of_a_method_with_no_collection_has_none() -> None:
    assert Call.of("alias_target", ("live",), {}).collection is None
