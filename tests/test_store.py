"""Tests for lattice_qdrant.store: schema changes, coverage, error translation and retries, and the
control records' compare-and-set, on every backend.

Local mode keeps no payload indexes and reports no server version, so the schema tests go through
:class:`RecordingClient`, a proxy around the real client that records the schema requests a server would
receive, shows the indexes it was asked for in ``get_collection`` the way a server does, and can stand in
for a server of a given version or fail a method on demand.
"""

from __future__ import annotations

import inspect
import logging
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.common import client_warnings
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.errors import (
    CollectionNotFoundError,
    IndexConflictError,
    InPlaceUnsupportedError,
    PointNotFoundError,
    ServerVersionError,
    StorageFullError,
    StoreError,
    TransientStoreError,
    UnnamedVectorError,
    VectorConflictError,
    VectorNotFoundError,
)
from lattice_qdrant.spec import Distance, ModelSpec
from lattice_qdrant.store import (
    _TOKEN_HISTORY,
    MODEL_FIELD,
    VERSION_FIELD,
    Coverage,
    RetryPolicy,
    Store,
    VectorInfo,
    open_store,
    record_id,
    translate,
)
from lattice_qdrant.store import local as local_store
from lattice_qdrant.store.base import same_text

from conftest import fill_collection

KEYWORD = models.PayloadSchemaType.KEYWORD
INTEGER = models.PayloadSchemaType.INTEGER
NO_WAIT = RetryPolicy(attempts=5, initial=0.0, maximum=0.0, jitter=0.0)


# --------------------------------------------------------------------------- helpers


class _RemoteStandIn:
    """Takes the place of qdrant-client's ``QdrantLocal`` so the store believes it talks to a server."""


class RecordingClient:
    """A ``QdrantClient`` proxy: forwards everything, records calls, and can act like a server.

    Args:
        real: the client every call is forwarded to.
        version: when set, the proxy poses as a server of this version (``info()`` and ``_client``).
        hide: attribute names the proxy pretends not to have.
    """

    def __init__(self, real: QdrantClient, *, version: str | None = None, hide: tuple[str, ...] = ()) -> None:
        self._real = real
        self.hide = set(hide)
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.indexes: dict[tuple[str, str], models.PayloadSchemaType] = {}
        self.failures: dict[str, list[BaseException]] = {}
        self.always_fail: dict[str, BaseException] = {}
        self.after: dict[str, Callable[[], None]] = {}
        self.version = version
        if version is not None:
            self._client = _RemoteStandIn()

    def _invoke(self, name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        pending = self.failures.get(name)
        if pending:
            raise pending.pop(0)
        if name in self.always_fail:
            raise self.always_fail[name]
        result = fn(*args, **kwargs)
        if name == "create_payload_index":
            bound = bind(name, args, kwargs)
            self.indexes[(bound["collection_name"], bound["field_name"])] = bound["field_schema"]
        hook = self.after.pop(name, None)
        if hook is not None:
            hook()
        return result

    def __getattr__(self, name: str) -> Any:
        if name in self.hide:
            raise AttributeError(name)
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._invoke(name, attr, args, kwargs)

        return call

    def get_collection(self, *args: Any, **kwargs: Any) -> models.CollectionInfo:
        """The real collection info, with the recorded indexes in ``payload_schema`` (as a server)."""
        info: models.CollectionInfo = self._invoke("get_collection", self._real.get_collection, args, kwargs)
        name = bind("get_collection", args, kwargs)["collection_name"]
        schema = dict(info.payload_schema or {})
        for (collection, field), data_type in self.indexes.items():
            if collection == name:
                schema[field] = models.PayloadIndexInfo(data_type=data_type, points=0)
        return info.model_copy(update={"payload_schema": schema})

    def info(self) -> models.VersionInfo:
        if self.version is None:
            return self._invoke("info", self._real.info, (), {})
        self.calls.append(("info", (), {}))
        return models.VersionInfo(title="qdrant - vector search engine", version=self.version)

    def requests(self, name: str) -> list[dict[str, Any]]:
        """The calls made to ``name``, arguments bound to qdrant-client's signature."""
        return [bind(n, args, kwargs) for n, args, kwargs in self.calls if n == name]

    def count_calls(self, name: str) -> int:
        return sum(1 for n, _, _ in self.calls if n == name)


def bind(name: str, args: Any, kwargs: Any) -> dict[str, Any]:
    """Arguments of a ``QdrantClient`` method call by parameter name, defaults applied."""
    bound = inspect.signature(getattr(QdrantClient, name)).bind(None, *args, **kwargs)
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self")
    out.update(out.pop("kwargs", {}))
    return out


def http_error(status: int, body: bytes = b"") -> UnexpectedResponse:
    return UnexpectedResponse(
        status_code=status,
        reason_phrase=httpx.codes.get_reason_phrase(status),
        content=body,
        headers=httpx.Headers(),
    )


def server_error_body(message: str) -> bytes:
    """A Qdrant REST error body, as a server sends it."""
    escaped = message.replace('"', '\\"')
    return f'{{"status":{{"error":"{escaped}"}},"time":0.000123}}'.encode()


def index_requests(proxy: RecordingClient) -> list[tuple[str, str, Any, bool]]:
    return [
        (r["collection_name"], r["field_name"], r["field_schema"], r["wait"])
        for r in proxy.requests("create_payload_index")
    ]


def spec_with(spec: ModelSpec, **changes: Any) -> ModelSpec:
    return ModelSpec.model_validate({**spec.model_dump(), **changes})


def vector_of(size: int, seed: int = 1) -> list[float]:
    return [float((seed * (i + 3)) % 7 + 1) for i in range(size)]


@pytest.fixture
def coll(qdrant: QdrantClient, names: Any, legacy: HashEmbedder) -> str:
    """A collection with the named source vector ``legacy`` (64-d cosine) and 10 points."""
    name: str = names("docs")
    fill_collection(qdrant, name, legacy, n=10)
    return name


@pytest.fixture
def proxy(qdrant: QdrantClient) -> RecordingClient:
    return RecordingClient(qdrant)


@pytest.fixture
def store(qdrant: QdrantClient, names: Any) -> Store:
    return Store(qdrant, control_collection=names("control"))


# --------------------------------------------------------------------------- payload indexes


def test_ensure_payload_indexes_sends_the_requests_a_server_needs(
    proxy: RecordingClient, names: Any, coll: str
) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    created = store.ensure_payload_indexes(coll)

    assert created == [MODEL_FIELD, VERSION_FIELD]
    assert MODEL_FIELD == "embedding_model_id"
    assert VERSION_FIELD == "embedding_version"
    assert index_requests(proxy) == [
        (coll, "embedding_model_id", KEYWORD, True),
        (coll, "embedding_version", INTEGER, True),
    ]
    assert store.payload_schema(coll) == {
        "embedding_model_id": "keyword",
        "embedding_version": "integer",
    }


def test_ensure_payload_indexes_is_idempotent(proxy: RecordingClient, names: Any, coll: str) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    store.ensure_payload_indexes(coll)
    proxy.calls.clear()

    assert store.ensure_payload_indexes(coll) == []
    assert proxy.requests("create_payload_index") == []


def test_ensure_payload_indexes_creates_only_the_missing_one(
    proxy: RecordingClient, names: Any, coll: str
) -> None:
    proxy.create_payload_index(coll, field_name=MODEL_FIELD, field_schema=KEYWORD)
    proxy.calls.clear()
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    assert store.ensure_payload_indexes(coll) == [VERSION_FIELD]
    assert index_requests(proxy) == [(coll, VERSION_FIELD, INTEGER, True)]


@pytest.mark.parametrize(
    ("field", "other_type"),
    [(MODEL_FIELD, models.PayloadSchemaType.INTEGER), (VERSION_FIELD, KEYWORD)],
)
def test_ensure_payload_indexes_refuses_an_index_of_another_type(
    proxy: RecordingClient,
    names: Any,
    coll: str,
    field: str,
    other_type: models.PayloadSchemaType,
) -> None:
    proxy.create_payload_index(coll, field_name=field, field_schema=other_type)
    proxy.calls.clear()
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    with pytest.raises(IndexConflictError) as caught:
        store.ensure_payload_indexes(coll)

    message = str(caught.value)
    assert repr(field) in message
    assert repr(coll) in message
    assert caught.value.collection == coll
    assert isinstance(caught.value, StoreError)
    # Nothing at all was requested, not even the index of the other, unconflicted field.
    assert proxy.requests("create_payload_index") == []


def test_ensure_payload_indexes_mutes_local_modes_warning_and_restores_the_filters(
    backend: str, store: Store, coll: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "local":
        pytest.skip("local mode's warning")
    monkeypatch.setattr(client_warnings, "SEEN_MESSAGES", set())  # qdrant-client warns once per process
    before = list(warnings.filters)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        store.ensure_payload_indexes(coll)
        assert [str(w.message) for w in seen if "Payload indexes" in str(w.message)] == []
        # the filters are back: the application's own call warns (qdrant-client warns once per process)
        monkeypatch.setattr(client_warnings, "SEEN_MESSAGES", set())
        store.client.create_payload_index(coll, field_name="other", field_schema=KEYWORD)
        assert any("Payload indexes have no effect" in str(w.message) for w in seen)
    assert warnings.filters == before


def test_ensure_payload_indexes_leaves_the_warning_filters_alone_on_a_server(
    qdrant: QdrantClient, names: Any, coll: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # catch_warnings swaps the process's filters (not thread-safe): a server, which never warns, gets none
    def refuse() -> None:
        raise AssertionError("catch_warnings used on a server")

    proxy = RecordingClient(qdrant, version="1.18.0")
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    monkeypatch.setattr(warnings, "catch_warnings", refuse)

    assert store.ensure_payload_indexes(coll) == [MODEL_FIELD, VERSION_FIELD]
    assert index_requests(proxy) == [(coll, MODEL_FIELD, KEYWORD, True), (coll, VERSION_FIELD, INTEGER, True)]


def test_ensure_payload_indexes_on_the_backend_itself(qdrant: QdrantClient, store: Store, coll: str) -> None:
    assert store.ensure_payload_indexes(coll) == [MODEL_FIELD, VERSION_FIELD]
    if store.is_local:
        # Local mode keeps no indexes: it reports none, so they are requested again.
        assert store.payload_schema(coll) == {}
        assert store.ensure_payload_indexes(coll) == [MODEL_FIELD, VERSION_FIELD]
    else:
        assert store.payload_schema(coll) == {MODEL_FIELD: "keyword", VERSION_FIELD: "integer"}
        assert store.ensure_payload_indexes(coll) == []


def test_ensure_control_creates_the_control_collection_with_its_indexes(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    control = names("control")
    store = Store(proxy, control_collection=control)  # type: ignore[arg-type]
    assert not qdrant.collection_exists(control)

    store.ensure_control()

    assert qdrant.collection_exists(control)
    assert store.vectors(control) == {}
    assert index_requests(proxy) == [
        (control, "kind", KEYWORD, True),
        (control, "collection", KEYWORD, True),
        (control, "epoch", INTEGER, True),
    ]
    proxy.calls.clear()
    store.ensure_control()
    Store(proxy, control_collection=control).ensure_control()  # type: ignore[arg-type]
    assert proxy.requests("create_payload_index") == []
    assert proxy.requests("create_collection") == []


# --------------------------------------------------------------------------- check_in_place


def test_check_in_place_refuses_the_unnamed_default_vector(
    qdrant: QdrantClient, store: Store, names: Any
) -> None:
    name = names("unnamed")
    qdrant.create_collection(
        name, vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    assert store.vectors(name) == {"": VectorInfo("", 64, Distance.COSINE)}

    with pytest.raises(UnnamedVectorError) as caught:
        store.check_in_place(name, "legacy")

    assert isinstance(caught.value, InPlaceUnsupportedError)
    assert "blue-green" in str(caught.value)
    assert caught.value.collection == name


def test_check_in_place_names_a_missing_source_vector(
    qdrant: QdrantClient, store: Store, coll: str, target_spec: ModelSpec
) -> None:
    store.ensure_vector(coll, "other", target_spec)

    with pytest.raises(StoreError) as caught:
        store.check_in_place(coll, "nope")

    assert not isinstance(caught.value, InPlaceUnsupportedError)
    assert caught.value.vector == "nope"
    assert caught.value.collection == coll
    message = str(caught.value)
    assert "'nope'" in message
    assert "'legacy'" in message
    assert "'other'" in message


def test_check_in_place_returns_the_source_vector(store: Store, coll: str) -> None:
    assert store.check_in_place(coll, "legacy") == VectorInfo("legacy", 64, Distance.COSINE)


@pytest.mark.parametrize("version", ["1.17.3", "1.17.0", "1.9.9", "0.11.2"])
def test_check_in_place_refuses_a_server_older_than_1_18(
    qdrant: QdrantClient, names: Any, coll: str, version: str
) -> None:
    proxy = RecordingClient(qdrant, version=version)
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    assert not store.is_local

    with pytest.raises(InPlaceUnsupportedError) as caught:
        store.check_in_place(coll, "legacy")

    assert not isinstance(caught.value, UnnamedVectorError)
    message = str(caught.value)
    assert f"{version} found, 1.18+ needed" in message
    assert "blue-green" in message
    assert caught.value.collection == coll


@pytest.mark.parametrize("version", ["1.18.0", "1.18.2", "1.19.0", "2.0.0", "v1.18.0-dev"])
def test_check_in_place_accepts_a_server_of_1_18_or_newer(
    qdrant: QdrantClient, names: Any, coll: str, version: str
) -> None:
    store = Store(RecordingClient(qdrant, version=version), control_collection=names("c"))  # type: ignore[arg-type]

    assert store.check_in_place(coll, "legacy") == VectorInfo("legacy", 64, Distance.COSINE)


@pytest.mark.parametrize(
    ("version", "parsed"),
    [("1.17.3", (1, 17, 3)), ("1.18", (1, 18, 0)), ("v1.19.1-rc2", (1, 19, 1))],
)
def test_server_version_parses_the_reported_version(
    qdrant: QdrantClient, names: Any, version: str, parsed: tuple[int, int, int] | None
) -> None:
    store = Store(RecordingClient(qdrant, version=version), control_collection=names("c"))  # type: ignore[arg-type]
    assert store.server_version() == parsed


@pytest.mark.parametrize("version", ["dev", "", "1"])
def test_a_server_version_that_cannot_be_read_is_refused_not_guessed(
    qdrant: QdrantClient, names: Any, version: str
) -> None:
    # None means local mode; a server that hides its version may be older than 1.17
    store = Store(RecordingClient(qdrant, version=version), control_collection=names("c"))  # type: ignore[arg-type]

    with pytest.raises(ServerVersionError) as caught:
        store.server_version()

    assert (caught.value.found, caught.value.needed) == (None, (1, 17, 0))
    assert repr(version) in str(caught.value)
    assert "1.17+" in str(caught.value)
    with pytest.raises(ServerVersionError):
        store.check_conditional_writes()


# --------------------------------------------------------------------------- conditional writes: 1.17+


@pytest.mark.parametrize(
    ("version", "parsed"), [("1.16.3", (1, 16, 3)), ("1.15.4", (1, 15, 4)), ("1.9.9", (1, 9, 9))]
)
def test_check_conditional_writes_refuses_a_server_older_than_1_17(
    qdrant: QdrantClient, names: Any, version: str, parsed: tuple[int, int, int]
) -> None:
    store = Store(RecordingClient(qdrant, version=version), control_collection=names("c"))  # type: ignore[arg-type]

    with pytest.raises(ServerVersionError) as caught:
        store.check_conditional_writes("docs")

    assert (caught.value.found, caught.value.needed) == (parsed, (1, 17, 0))
    assert caught.value.collection == "docs"
    message = str(caught.value)
    assert f"Qdrant {version} found, 1.17+ needed" in message
    assert "update_mode" in message
    assert "upgrade the server" in message


@pytest.mark.parametrize("version", ["1.17.0", "1.17.1", "1.18.2", "2.0.0", None])
def test_check_conditional_writes_accepts_1_17_and_local_mode_reading_the_version_once(
    qdrant: QdrantClient, names: Any, version: str | None
) -> None:
    proxy = RecordingClient(qdrant, version=version)
    store = Store(proxy, control_collection=names("c"))  # type: ignore[arg-type]
    assert store.is_local is (version is None)

    store.check_conditional_writes()
    store.check_conditional_writes()

    assert proxy.count_calls("info") == (0 if version is None else 1)


def _insert_record(store: Store, coll: str) -> Any:
    return store.insert_record("migration", coll, {"collection": coll})


def _replace_record(store: Store, coll: str) -> Any:
    return store.replace_record("migration", coll, {"collection": coll}, expected={"epoch": 1})


def _conditional_upsert(store: Store, coll: str) -> Any:
    point = models.PointStruct(id=100, vector={"legacy": vector_of(64)}, payload={})
    return store.upsert(coll, [point], update_mode=models.UpdateMode.INSERT_ONLY)


def _filtered_upsert(store: Store, coll: str) -> Any:
    point = models.PointStruct(id=1, vector={"legacy": vector_of(64)}, payload={})
    return store.upsert(coll, [point], update_filter=models.Filter(must=[models.HasIdCondition(has_id=[1])]))


def _stale_proof_update(store: Store, coll: str) -> Any:
    return store.update_if_unchanged(coll, "text", {1: ("no longer the text", {"legacy": vector_of(64)})})


def _stamped_write(store: Store, coll: str) -> Any:
    return store.write_stamped(
        coll, "legacy", "text", {1: ("no longer the text", vector_of(64))}, ("m", 2), distance=Distance.COSINE
    )


def _stamped_update(store: Store, coll: str) -> Any:
    points = [models.PointVectors(id=1, vector={"legacy": vector_of(64)})]
    flt = models.Filter(must=[models.HasIdCondition(has_id=[1])])
    return store.update_vectors_stamped(coll, points, ("m", 2), [1], update_filter=flt)


CONDITIONAL_WRITES = [
    _insert_record,
    _replace_record,
    _conditional_upsert,
    _filtered_upsert,
    _stale_proof_update,
    _stamped_write,
    _stamped_update,
]


@pytest.mark.parametrize("write", CONDITIONAL_WRITES, ids=lambda f: f.__name__.strip("_"))
def test_a_conditional_write_is_refused_on_a_server_older_than_1_17_before_anything_is_sent(
    qdrant: QdrantClient, names: Any, coll: str, write: Callable[[Store, str], Any]
) -> None:
    # a 1.16 server would drop update_mode / update_filter and write unconditionally
    proxy = RecordingClient(qdrant, version="1.16.3")
    control = names("control")
    store = Store(proxy, control_collection=control)  # type: ignore[arg-type]

    with pytest.raises(ServerVersionError, match=r"1\.16\.3 found, 1\.17\+ needed"):
        write(store, coll)

    sent = {name for name, _, _ in proxy.calls}
    assert not sent & {"upsert", "update_vectors", "batch_update_points", "set_payload", "create_collection"}
    assert not qdrant.collection_exists(control)


@pytest.mark.parametrize("write", CONDITIONAL_WRITES, ids=lambda f: f.__name__.strip("_"))
def test_a_conditional_write_goes_through_on_1_17(
    qdrant: QdrantClient, names: Any, coll: str, write: Callable[[Store, str], Any]
) -> None:
    store = Store(RecordingClient(qdrant, version="1.17.0"), control_collection=names("control"))  # type: ignore[arg-type]
    if write is _replace_record:
        _insert_record(store, coll)
    write(store, coll)


def test_an_unconditional_write_still_goes_through_on_an_old_server(
    qdrant: QdrantClient, names: Any, coll: str
) -> None:
    # the wrapper passes writes to collections without a migration through, whatever the version
    proxy = RecordingClient(qdrant, version="1.12.0")
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    store.upsert(coll, [models.PointStruct(id=100, vector={"legacy": vector_of(64)}, payload={})])

    assert proxy.count_calls("upsert") == 1


def test_server_version_of_the_backend(backend: str, store: Store) -> None:
    if backend == "local":
        assert store.is_local
        assert store.server_version() is None
    else:
        assert not store.is_local
        version = store.server_version()
        assert version is not None
        assert version >= (1, 18, 0)


# --------------------------------------------------------------------------- ensure_vector / drop_vector


@pytest.mark.parametrize("distance", [Distance.COSINE, Distance.DOT, Distance.EUCLID])
def test_ensure_vector_creates_the_named_vector_from_the_spec(
    qdrant: QdrantClient,
    proxy: RecordingClient,
    names: Any,
    coll: str,
    target_spec: ModelSpec,
    distance: Distance,
) -> None:
    spec = spec_with(target_spec, distance=distance)
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    assert store.ensure_vector(coll, "modern-v1", spec) is True

    params = qdrant.get_collection(coll).config.params.vectors
    assert isinstance(params, dict)
    assert params["modern-v1"].size == 96
    assert params["modern-v1"].distance == models.Distance(distance.value)
    assert params["legacy"].size == 64
    assert store.vectors(coll)["modern-v1"] == VectorInfo("modern-v1", 96, distance)
    [request] = proxy.requests("create_vector_name")
    assert request["collection_name"] == coll
    assert request["vector_name"] == "modern-v1"
    assert request["vector_name_config"] == models.DenseVectorNameConfig(
        dense=models.DenseVectorConfig(size=96, distance=models.Distance(distance.value))
    )
    assert request["wait"] is True


def test_ensure_vector_twice_sends_no_second_request(
    proxy: RecordingClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    assert store.ensure_vector(coll, "modern-v1", target_spec) is True
    proxy.calls.clear()

    assert store.ensure_vector(coll, "modern-v1", target_spec) is False
    assert proxy.requests("create_vector_name") == []


@pytest.mark.parametrize(
    "changes", [{"dimension": 128}, {"distance": Distance.DOT}], ids=["size", "distance"]
)
def test_ensure_vector_refuses_an_existing_vector_of_another_shape(
    proxy: RecordingClient,
    names: Any,
    coll: str,
    target_spec: ModelSpec,
    changes: dict[str, Any],
) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    store.ensure_vector(coll, "modern-v1", target_spec)
    proxy.calls.clear()

    with pytest.raises(VectorConflictError) as caught:
        store.ensure_vector(coll, "modern-v1", spec_with(target_spec, **changes))

    assert caught.value.vector == "modern-v1"
    assert caught.value.collection == coll
    assert "'modern-v1'" in str(caught.value)
    assert proxy.requests("create_vector_name") == []
    assert store.vectors(coll)["modern-v1"] == VectorInfo("modern-v1", 96, Distance.COSINE)


def test_ensure_vector_refuses_the_source_vector_name_with_another_size(
    store: Store, coll: str, target_spec: ModelSpec
) -> None:
    with pytest.raises(VectorConflictError, match="'legacy'"):
        store.ensure_vector(coll, "legacy", target_spec)


def test_ensure_vector_without_create_vector_name_in_the_client(
    qdrant: QdrantClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    proxy = RecordingClient(qdrant, hide=("create_vector_name",))
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    with pytest.raises(InPlaceUnsupportedError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    assert "blue-green" in str(caught.value)
    assert caught.value.vector == "modern-v1"
    assert "modern-v1" not in store.vectors(coll)


@pytest.mark.parametrize("status", [404, 405])
def test_ensure_vector_on_a_server_without_the_endpoint(
    qdrant: QdrantClient, names: Any, coll: str, target_spec: ModelSpec, status: int
) -> None:
    proxy = RecordingClient(qdrant, version="1.17.3")
    proxy.always_fail["create_vector_name"] = http_error(status)
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(InPlaceUnsupportedError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    message = str(caught.value)
    assert "blue-green" in message
    assert "1.17.3 found, 1.18+ needed" in message
    assert str(status) in message
    assert caught.value.collection == coll
    assert caught.value.vector == "modern-v1"
    assert proxy.count_calls("create_vector_name") == 1


@pytest.mark.parametrize("status", [404, 405])
@pytest.mark.parametrize("version", ["1.18.0", "1.19.1", None])
def test_ensure_vector_refused_by_a_server_that_has_the_endpoint_says_what_it_was(
    qdrant: QdrantClient, names: Any, coll: str, target_spec: ModelSpec, status: int, version: str | None
) -> None:
    # a proxy or a URL prefix answered: "upgrade to 1.18" would send the operator the wrong way
    proxy = RecordingClient(qdrant, version=version)
    proxy.always_fail["create_vector_name"] = http_error(status, b"<html>no such route</html>")
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(StoreError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    assert type(caught.value) is StoreError
    message = str(caught.value)
    assert f"HTTP {status}: <html>no such route</html>" in message
    assert (f"Qdrant {version}" if version else "local mode") in message
    assert "not a missing feature" in message
    assert "proxy" in message
    assert f"PUT /collections/{coll}/vectors/modern-v1" in message
    assert (caught.value.collection, caught.value.vector) == (coll, "modern-v1")


def test_ensure_vector_refused_by_a_server_of_unknown_version(
    qdrant: QdrantClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    proxy = RecordingClient(qdrant, version="dev")
    proxy.always_fail["create_vector_name"] = http_error(404)
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(StoreError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    assert type(caught.value) is StoreError
    assert "version cannot be read" in str(caught.value)
    assert "is unknown" in str(caught.value)


def test_ensure_vector_on_a_missing_collection_says_so(
    qdrant: QdrantClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    # a server's 404 for a collection deleted meanwhile is not "too old"
    proxy = RecordingClient(qdrant, version="1.17.3")
    proxy.always_fail["create_vector_name"] = http_error(
        404, server_error_body(f"Not found: Collection `{coll}` doesn't exist!")
    )
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(CollectionNotFoundError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    assert caught.value.collection == coll


def test_ensure_vector_passes_other_refusals_through(
    proxy: RecordingClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    proxy.always_fail["create_vector_name"] = http_error(
        400, server_error_body("Wrong input: bad vector name")
    )
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(StoreError) as caught:
        store.ensure_vector(coll, "modern-v1", target_spec)

    assert type(caught.value) is StoreError
    assert "bad vector name" in str(caught.value)
    assert caught.value.vector == "modern-v1"


def test_drop_vector_removes_the_named_vector(
    proxy: RecordingClient, names: Any, coll: str, target_spec: ModelSpec
) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    store.ensure_vector(coll, "modern-v1", target_spec)

    assert store.drop_vector(coll, "modern-v1") is True

    assert set(store.vectors(coll)) == {"legacy"}
    [request] = proxy.requests("delete_vector_name")
    assert (request["collection_name"], request["vector_name"], request["wait"]) == (
        coll,
        "modern-v1",
        True,
    )
    assert store.count(coll) == 10


def test_drop_vector_of_a_missing_name_sends_nothing(proxy: RecordingClient, names: Any, coll: str) -> None:
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]

    assert store.drop_vector(coll, "modern-v1") is False

    assert proxy.requests("delete_vector_name") == []
    assert set(store.vectors(coll)) == {"legacy"}


# --------------------------------------------------------------------------- count / coverage


def test_coverage_of_an_empty_collection_is_complete(qdrant: QdrantClient, store: Store, names: Any) -> None:
    name = names("empty")
    qdrant.create_collection(
        name, vectors_config={"legacy": models.VectorParams(size=4, distance=models.Distance.DOT)}
    )

    coverage = store.coverage(name, "legacy")

    assert coverage == Coverage(covered=0, total=0)
    assert coverage.fraction == 1.0
    assert coverage.missing == 0


def test_coverage_follows_the_data(store: Store, coll: str, target_spec: ModelSpec) -> None:
    store.ensure_vector(coll, "modern-v1", target_spec)
    assert store.coverage(coll, "legacy") == Coverage(covered=10, total=10)
    assert store.coverage(coll, "modern-v1") == Coverage(covered=0, total=10)

    store.update_vectors(
        coll,
        [models.PointVectors(id=i, vector={"modern-v1": vector_of(96, i)}) for i in (1, 4, 7)],
    )

    coverage = store.coverage(coll, "modern-v1")
    assert coverage == Coverage(covered=3, total=10)
    assert coverage.fraction == pytest.approx(0.3)
    assert coverage.missing == 7
    # update_vectors left the source vector alone.
    assert store.coverage(coll, "legacy") == Coverage(covered=10, total=10)


# --------------------------------------------------------------------------- conditional writes


@pytest.fixture(params=["checked here", "conditional requests", "no local checks"])
def local_conditions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the local store makes a conditional write: each point checked against its own clause under
    the lock, or conditional requests of 16 points (a local collection not laid out as expected, or a
    qdrant-client without the checks the local store makes them with). A server's store takes neither."""
    if request.param == "conditional requests":
        monkeypatch.setattr(local_store, "_CONDITION_INTERNALS", ("no such attribute",))
    if request.param == "no local checks":
        monkeypatch.setattr(local_store, "_HAS_CHECKS", False)
    return str(request.param)


@pytest.mark.parametrize("stamp", [None, ("modern", 1)], ids=["no stamp", "stamp"])
def test_update_if_unchanged_writes_only_points_that_still_hold_their_text_and_lack_the_vector(
    qdrant: QdrantClient,
    store: Store,
    names: Any,
    legacy: HashEmbedder,
    target_spec: ModelSpec,
    local_conditions: str,
    stamp: tuple[str, int] | None,
) -> None:
    # more points than one local-mode request takes, with a race in each of several requests
    coll = names("docs")
    texts = fill_collection(qdrant, coll, legacy, n=70)
    store.ensure_vector(coll, "modern-v1", target_spec)
    qdrant.set_payload(coll, {"text": "changed by the application"}, points=[20])
    qdrant.update_vectors(coll, [models.PointVectors(id=35, vector={"modern-v1": vector_of(96, 99)})])
    qdrant.delete(coll, [45, 69])
    pending = {i: (texts[i], {"modern-v1": vector_of(96, i)}) for i in range(60)}  # 60-69 not in the write

    existing = store.update_if_unchanged(coll, "text", pending, lacking="modern-v1", stamp=stamp)

    assert sorted(existing) == [i for i in range(60) if i != 45]
    records = {r.id: r for r in qdrant.retrieve(coll, list(range(70)), with_vectors=["modern-v1"])}
    assert sorted(records) == [i for i in range(70) if i not in (45, 69)]  # nothing deleted came back
    for pid, record in records.items():
        stored = record.vector.get("modern-v1") if isinstance(record.vector, dict) else None
        payload = record.payload or {}
        stamped = (payload.get(MODEL_FIELD), payload.get(VERSION_FIELD))
        if pid == 20 or pid >= 60:
            assert (
                stored is None
            )  # its text changed (the vector of the old text is not written), or not written
            assert stamped == (None, None)
            continue
        if pid == 35:
            assert stored == pytest.approx(_unit(vector_of(96, 99)), abs=1e-5)  # the application's stays
        else:
            assert stored == pytest.approx(_unit(vector_of(96, pid)), abs=1e-5)
        # with a stamp, every point holding the vector afterwards has it, the application's (35) included
        assert stamped == (stamp or (None, None))


def test_local_update_if_unchanged_checks_each_point_once_and_writes_only_those_that_hold(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder, target_spec: ModelSpec
) -> None:
    # local mode would check every point of a conditional request against every point's clause
    proxy = RecordingClient(qdrant)
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    if not isinstance(store, local_store.LocalStore):
        pytest.skip("local mode's store")
    coll = names("docs")
    texts = fill_collection(qdrant, coll, legacy, n=40)
    store.ensure_vector(coll, "modern-v1", target_spec)
    qdrant.set_payload(coll, {"text": "changed by the application"}, points=[3])
    qdrant.delete(coll, [7])
    pending = {i: (texts[i], {"modern-v1": vector_of(96, i)}) for i in range(40)}

    existing = store.update_if_unchanged(coll, "text", pending, lacking="modern-v1")

    assert existing == [i for i in range(40) if i != 7]
    [request] = proxy.requests("update_vectors")
    assert request.get("update_filter") is None
    assert [p.id for p in request["points"]] == [i for i in range(40) if i not in (3, 7)]


@pytest.mark.parametrize("missing", ["_CONDITION_INTERNALS", "_HAS_CHECKS"])
def test_local_update_if_unchanged_without_what_it_checks_with_sends_conditional_requests(
    qdrant: QdrantClient,
    names: Any,
    legacy: HashEmbedder,
    target_spec: ModelSpec,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
) -> None:
    # a local collection laid out otherwise, or a qdrant-client without local mode's checks: the
    # conditions go to local mode in requests of 16 points, each checked there
    proxy = RecordingClient(qdrant)
    store = Store(proxy, control_collection=names("control"))  # type: ignore[arg-type]
    if not isinstance(store, local_store.LocalStore):
        pytest.skip("local mode's store")
    monkeypatch.setattr(
        local_store, missing, ("no such attribute",) if missing == "_CONDITION_INTERNALS" else False
    )
    coll = names("docs")
    texts = fill_collection(qdrant, coll, legacy, n=40)
    store.ensure_vector(coll, "modern-v1", target_spec)
    qdrant.set_payload(coll, {"text": "changed by the application"}, points=[3])
    pending = {i: (texts[i], {"modern-v1": vector_of(96, i)}) for i in range(40)}

    assert store.update_if_unchanged(coll, "text", pending, lacking="modern-v1") == list(range(40))

    requests = proxy.requests("update_vectors")
    assert [len(r["points"]) for r in requests] == [16, 16, 8]
    assert all(r.get("update_filter") is not None for r in requests)
    written = qdrant.retrieve(coll, list(range(40)), with_vectors=["modern-v1"])
    assert sorted(r.id for r in written if r.vector) == [i for i in range(40) if i != 3]


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "a"},
        {"text": ["b", "a"]},
        {"text": ["b"]},
        {"text": ""},
        {"text": []},
        {"text": None},
        {"text": 1},
        {"text": True},
        {"other": "a"},
        {},
    ],
)
@pytest.mark.parametrize("text", ["a", "", "1", None])
def test_local_check_of_a_points_text_is_local_modes_check_of_the_same_clause(
    payload: dict[str, Any], text: str | None
) -> None:
    # the local store checks a point's text itself, with local mode's own checks; whatever the payload
    # holds there, it decides as local mode would on the clause a server is sent (its id aside)
    from qdrant_client.local import payload_filters

    [_, clause] = same_text(7, "text", text).must  # type: ignore[misc]
    expected = payload_filters.check_filter(models.Filter(must=[clause]), payload, 7, {})
    assert local_store._holds(payload, "text", text) is expected


def test_update_if_unchanged_of_nothing_sends_nothing(proxy: RecordingClient, coll: str) -> None:
    assert Store(proxy).update_if_unchanged(coll, "text", {}) == []  # type: ignore[arg-type]
    assert proxy.requests("update_vectors") == []


def _unit(values: list[float]) -> list[float]:
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def test_coverage_of_an_unknown_vector_is_zero(store: Store, coll: str) -> None:
    assert store.coverage(coll, "nope") == Coverage(covered=0, total=10)


def test_count_with_a_filter(store: Store, coll: str) -> None:
    assert store.count(coll) == 10
    assert store.count(coll, models.Filter(must=[models.HasIdCondition(has_id=[0, 3, 5])])) == 3


@pytest.mark.parametrize(
    ("coverage", "fraction", "missing"),
    [
        (Coverage(0, 0), 1.0, 0),
        (Coverage(1, 4), 0.25, 3),
        (Coverage(4, 4), 1.0, 0),
        (Coverage(5, 4), 1.0, 0),  # a point written between the two counts
    ],
)
def test_coverage_fraction_and_missing(coverage: Coverage, fraction: float, missing: int) -> None:
    assert coverage.fraction == fraction
    assert coverage.missing == missing


# --------------------------------------------------------------------------- error translation


@pytest.mark.parametrize(
    "exc",
    [
        http_error(429, b"Too many requests"),
        http_error(503),
        http_error(502),
        http_error(504),
        ResponseHandlingException(ConnectionError("Connection refused")),
        ResponseHandlingException(httpx.ReadTimeout("read timed out")),
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
        httpx.ConnectError("connection refused"),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status_code", "")),
)
def test_translate_transient_failures(exc: BaseException) -> None:
    error = translate(exc, action="count points", collection="docs")
    assert isinstance(error, TransientStoreError)
    assert error.collection == "docs"
    assert "count points failed" in str(error)


def test_translate_a_bad_request_is_permanent() -> None:
    error = translate(
        http_error(400, server_error_body("Wrong input: Vector dimension error: expected dim: 96")),
        action="update vectors",
        collection="docs",
        vector="modern-v1",
        point_ids=[1, 2],
    )

    assert type(error) is StoreError
    message = str(error)
    assert "update vectors failed" in message
    assert "HTTP 400" in message
    assert "expected dim: 96" in message
    assert "'docs'" in message
    assert "'modern-v1'" in message
    assert "1, 2" in message
    assert (error.collection, error.vector, error.point_ids) == ("docs", "modern-v1", [1, 2])


def test_translate_shows_the_first_point_ids_only() -> None:
    error = translate(ValueError("boom"), action="upsert points", point_ids=list(range(8)))
    assert type(error) is StoreError
    assert "points 0, 1, 2, 3, 4 and 3 more" in str(error)
    assert error.point_ids == list(range(8))


@pytest.mark.parametrize(
    "exc",
    [
        http_error(404, server_error_body("Not found: Collection `docs` doesn't exist!")),
        ValueError("Collection docs not found"),
    ],
    ids=["server", "local"],
)
def test_translate_a_missing_collection(exc: BaseException) -> None:
    error = translate(exc, action="count points", collection="docs")
    assert isinstance(error, CollectionNotFoundError)
    assert error.collection == "docs"
    assert "'docs'" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        http_error(400, server_error_body("Wrong input: Not existing vector name error: minilm")),
        ValueError("Wrong input: Not existing vector name error: minilm"),
        ValueError("Dense vector minilm is not found in the collection"),
    ],
    ids=["server", "local-write", "local-query"],
)
def test_translate_a_missing_vector_names_the_vector_not_the_collection(exc: BaseException) -> None:
    error = translate(exc, action="query points", collection="docs")
    assert type(error) is VectorNotFoundError
    assert error.vector == "minilm" and error.collection == "docs"
    assert "no vector named 'minilm'" in str(error) and "collection does not exist" not in str(error)


def test_a_query_on_a_vector_the_collection_lacks_says_so() -> None:
    client = QdrantClient(":memory:")
    client.create_collection(
        "docs", vectors_config={"legacy": models.VectorParams(size=4, distance=models.Distance.COSINE)}
    )
    with pytest.raises(VectorNotFoundError, match="no vector named 'minilm'"):
        open_store(client).query("docs", query=[0.1, 0.2, 0.3, 0.4], using="minilm", limit=3)


def test_translate_a_missing_point_in_local_mode() -> None:
    error = translate(KeyError(7), action="update vectors", collection="docs", point_ids=[1, 7])
    assert isinstance(error, PointNotFoundError)
    assert error.point_ids == [7]
    assert "'docs'" in str(error)


def test_translate_a_missing_uuid_point_on_a_server() -> None:
    pid = str(uuid.uuid4())
    exc = http_error(404, server_error_body(f"Not found: No point with id {pid} found"))
    others = [str(uuid.uuid4()) for _ in range(3)]
    error = translate(exc, action="update vectors", collection="docs", point_ids=[*others, pid])
    assert isinstance(error, PointNotFoundError)
    assert error.point_ids == [pid]
    assert "'docs'" in str(error)


def test_translate_a_missing_integer_point_on_a_server_keeps_the_callers_id() -> None:
    exc = http_error(404, server_error_body("Not found: No point with id 7 found"))
    error = translate(exc, action="update vectors", collection="docs", point_ids=[1, 7])
    assert isinstance(error, PointNotFoundError)
    assert error.point_ids == [7]


class _FakeGrpcError(Exception):
    """Looks like a ``grpc.RpcError`` to the translator (module and ``code()``/``details()``/
    ``trailing_metadata()``)."""

    def __init__(self, code: str, details: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._metadata = metadata

    def code(self) -> Any:
        return type("Code", (), {"name": self._code})()

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


_FakeGrpcError.__module__ = "grpc._channel"


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        ("UNAVAILABLE", "failed to connect", TransientStoreError),
        ("DEADLINE_EXCEEDED", "deadline exceeded", TransientStoreError),
        ("NOT_FOUND", "Not found: Collection `docs` doesn't exist!", CollectionNotFoundError),
        ("INVALID_ARGUMENT", "Wrong input: bad", StoreError),
    ],
)
def test_translate_grpc_errors(code: str, details: str, kind: type[StoreError]) -> None:
    error = translate(_FakeGrpcError(code, details), action="count points", collection="docs")
    assert type(error) is kind
    assert details in str(error) or kind is CollectionNotFoundError


# What Qdrant sends (lib/shard/src/quota/check.rs and local_shard/shard_ops.rs in its source, 1.18-1.19).
RATE_LIMITED = (
    "Rate limiting exceeded: Write rate limit exceeded: Operation requires 64 tokens but only 3.0 were "
    "available. Retry after 2s"
)
DISK_QUOTA = (
    "Insufficient storage: Disk usage is at 97% of total capacity, exceeding the configured limit of 95%. "
    "Help: Reduce disk usage (e.g. delete points or drop collections), or raise `max_disk_usage_percent` "
    "in the global quota config."
)
MEMORY_QUOTA = (
    "Insufficient storage: Resident memory usage is at 93% of total memory, exceeding the configured limit "
    "of 90%. Help: Reduce memory usage (e.g. delete points or drop collections), or raise "
    "`max_resident_memory_percent` in the global quota config."
)
WAL_DISK_FULL = (
    "Service internal error: No space left on device: WAL buffer size exceeds available disk space"
)
NO_ROOM = (("qdrant-insufficient-storage", "1"),)  # the metadata that tells a quota from a rate limit


@pytest.mark.parametrize(
    "exc",
    [
        _FakeGrpcError("RESOURCE_EXHAUSTED", RATE_LIMITED),
        _FakeGrpcError("RESOURCE_EXHAUSTED", "", (("retry-after", "2"),)),
        http_error(429, server_error_body(RATE_LIMITED)),
        ResourceExhaustedResponse(RATE_LIMITED, 2),  # what qdrant-client raises when Retry-After is given
    ],
    ids=["grpc", "grpc-bare", "http-429", "client-retry-after"],
)
def test_a_rate_limit_is_transient(exc: BaseException) -> None:
    error = translate(exc, action="upsert points", collection="docs")
    assert type(error) is TransientStoreError


@pytest.mark.parametrize(
    ("exc", "hint"),
    [
        (_FakeGrpcError("RESOURCE_EXHAUSTED", DISK_QUOTA, NO_ROOM), "disk"),
        (_FakeGrpcError("RESOURCE_EXHAUSTED", DISK_QUOTA), "disk"),
        (_FakeGrpcError("RESOURCE_EXHAUSTED", "quota", NO_ROOM), "disk"),
        (_FakeGrpcError("RESOURCE_EXHAUSTED", MEMORY_QUOTA, NO_ROOM), "memory"),
        (_FakeGrpcError("INTERNAL", WAL_DISK_FULL), "disk"),
        (http_error(507, server_error_body(DISK_QUOTA)), "disk"),
        (http_error(507, server_error_body(MEMORY_QUOTA)), "memory"),
        (http_error(500, server_error_body(WAL_DISK_FULL)), "disk"),
        (http_error(500, server_error_body("File IO error: No space left on device (os error 28)")), "disk"),
        (OSError(28, "No space left on device"), "disk"),  # local mode with path=
        (sqlite3.OperationalError("database or disk is full"), "disk"),
    ],
    ids=[
        "grpc-quota",
        "grpc-quota-text",
        "grpc-marker",
        "grpc-memory",
        "grpc-wal",
        "http-507",
        "http-507-memory",
        "http-500-wal",
        "http-500-io",
        "local-oserror",
        "local-sqlite",
    ],
)
def test_a_server_without_room_is_not_transient_and_says_what_to_do(exc: BaseException, hint: str) -> None:
    # gRPC gives a full disk the rate limit's code; retrying it only hammers a full server
    error = translate(exc, action="upsert points", collection="docs", point_ids=[1])

    assert type(error) is StorageFullError
    assert not isinstance(error, TransientStoreError)
    assert (error.collection, error.point_ids) == ("docs", [1])
    message = str(error)
    assert "retrying does not help" in message
    if hint == "disk":
        assert "disk is full" in message and "max_disk_usage_percent" in message
        assert "backups" in message
    else:
        assert "memory quota" in message and "max_resident_memory_percent" in message
    detail = _FakeGrpcError.details(exc) if isinstance(exc, _FakeGrpcError) else ""
    assert detail in message  # what the server said


def test_a_message_above_grpc_size_limit_is_not_transient() -> None:
    exc = _FakeGrpcError("RESOURCE_EXHAUSTED", "Received message larger than max (5242880 vs. 4194304)")
    error = translate(exc, action="upsert points", collection="docs")
    assert type(error) is StoreError
    assert "smaller batches" in str(error)


def test_a_full_disk_is_not_retried(proxy: RecordingClient, names: Any, coll: str) -> None:
    proxy.always_fail["upsert"] = _FakeGrpcError("RESOURCE_EXHAUSTED", DISK_QUOTA, NO_ROOM)
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(StorageFullError):
        store.upsert(coll, [models.PointStruct(id=100, vector={"legacy": vector_of(64)}, payload={})])

    assert proxy.count_calls("upsert") == 1


def test_a_rate_limit_is_retried(proxy: RecordingClient, names: Any, coll: str) -> None:
    proxy.failures["upsert"] = [_FakeGrpcError("RESOURCE_EXHAUSTED", RATE_LIMITED)]
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    store.upsert(coll, [models.PointStruct(id=100, vector={"legacy": vector_of(64)}, payload={})])

    assert proxy.count_calls("upsert") == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda s, c: s.count(c),
        lambda s, c: s.collection_info(c),
        lambda s, c: s.vectors(c),
        lambda s, c: s.coverage(c, "legacy"),
        lambda s, c: s.scroll(c),
        lambda s, c: s.retrieve(c, [1]),
        lambda s, c: s.upsert(c, [models.PointStruct(id=1, vector={}, payload={})]),
        lambda s, c: s.update_vectors(c, [models.PointVectors(id=1, vector={"v": [1.0]})]),
        lambda s, c: s.ensure_payload_indexes(c),
    ],
    ids=[
        "count",
        "collection_info",
        "vectors",
        "coverage",
        "scroll",
        "retrieve",
        "upsert",
        "update_vectors",
        "ensure_payload_indexes",
    ],
)
def test_store_methods_on_a_missing_collection(
    store: Store, names: Any, call: Callable[[Store, str], Any]
) -> None:
    missing = names("missing")
    assert store.collection_exists(missing) is False

    with pytest.raises(CollectionNotFoundError) as caught:
        call(store, missing)

    assert caught.value.collection == missing
    assert repr(missing) in str(caught.value)
    assert store.collection_exists(missing) is False


def test_update_vectors_of_a_missing_point(store: Store, coll: str) -> None:
    with pytest.raises(PointNotFoundError) as caught:
        store.update_vectors(
            coll,
            [
                models.PointVectors(id=2, vector={"legacy": vector_of(64, 2)}),
                models.PointVectors(id=99, vector={"legacy": vector_of(64, 99)}),
            ],
        )

    # A server names the id in its message as text; local mode raises KeyError(99).
    assert "99" in [str(p) for p in caught.value.point_ids]
    assert caught.value.collection == coll
    assert repr(coll) in str(caught.value)
    assert "99" in str(caught.value)


def test_errors_keep_their_cause(store: Store, names: Any) -> None:
    with pytest.raises(CollectionNotFoundError) as caught:
        store.count(names("missing"))
    assert caught.value.__cause__ is not None
    assert not isinstance(caught.value.__cause__, StoreError)


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "exc",
    [
        http_error(503, b"Service Unavailable"),
        http_error(429, b"rate limited"),
        ResponseHandlingException(ConnectionError("Connection refused")),
        TimeoutError("timed out"),
    ],
    ids=["503", "429", "response-handling", "timeout"],
)
def test_a_transient_failure_is_retried_until_it_succeeds(
    proxy: RecordingClient, names: Any, coll: str, exc: BaseException
) -> None:
    proxy.failures["count"] = [exc, exc]
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    assert store.count(coll) == 10
    assert proxy.count_calls("count") == 3


def test_retries_are_logged(
    proxy: RecordingClient, names: Any, coll: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.failures["count"] = [http_error(503)]
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="lattice_qdrant.store"):
        assert store.count(coll) == 10

    assert any("transient failure" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "exc",
    [http_error(400, server_error_body("Wrong input: bad")), ValueError("bad value")],
    ids=["400", "value-error"],
)
def test_a_permanent_failure_is_not_retried(
    proxy: RecordingClient, names: Any, coll: str, exc: BaseException
) -> None:
    proxy.always_fail["count"] = exc
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    with pytest.raises(StoreError) as caught:
        store.count(coll)

    assert not isinstance(caught.value, TransientStoreError)
    assert proxy.count_calls("count") == 1


def test_a_missing_collection_is_not_retried(proxy: RecordingClient, names: Any) -> None:
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]
    with pytest.raises(CollectionNotFoundError):
        store.count(names("missing"))
    assert proxy.count_calls("count") == 1


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_a_transient_failure_on_every_attempt_gives_up_after_attempts(
    proxy: RecordingClient, names: Any, coll: str, attempts: int
) -> None:
    proxy.always_fail["count"] = http_error(503, b"Service Unavailable")
    retry = RetryPolicy(attempts=attempts, initial=0.0, maximum=0.0, jitter=0.0)
    store = Store(proxy, control_collection=names("control"), retry=retry)  # type: ignore[arg-type]

    with pytest.raises(TransientStoreError) as caught:
        store.count(coll)

    assert proxy.count_calls("count") == attempts
    assert caught.value.collection == coll
    assert "503" in str(caught.value)
    assert isinstance(caught.value.__cause__, UnexpectedResponse)


def test_retries_wait_and_log_as_the_policy_says_from_the_first_failure(
    proxy: RecordingClient,
    names: Any,
    coll: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the first attempt runs outside the retry machinery (a success costs nothing): a failure of it must
    # still be attempt 1, waited for and logged as the policy says, before attempts 2 and 3
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    proxy.always_fail["count"] = http_error(503)
    retry = RetryPolicy(attempts=3, initial=1.0, maximum=10.0, jitter=0.0)
    store = Store(proxy, control_collection=names("control"), retry=retry)  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="lattice_qdrant.store"), pytest.raises(TransientStoreError):
        store.count(coll)

    assert proxy.count_calls("count") == 3
    assert slept == [1.0, 2.0]
    logged = [r.getMessage() for r in caplog.records if "transient failure" in r.getMessage()]
    assert [m.split("(")[1].split(")")[0] for m in logged] == ["attempt 1", "attempt 2"]


def test_a_request_that_succeeds_at_once_does_not_enter_the_retry_machinery(
    proxy: RecordingClient, names: Any, coll: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lattice_qdrant.store import server

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tenacity was entered for a request that succeeded")

    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]
    monkeypatch.setattr(server, "Retrying", refuse)
    assert store.count(coll) == 10


def test_a_success_after_failures_returns_the_last_attempts_result(
    proxy: RecordingClient, names: Any, coll: str
) -> None:
    proxy.failures["count"] = [http_error(503), http_error(502)]
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    assert store.count(coll) == 10
    assert proxy.count_calls("count") == 3


def test_a_retried_write_is_applied_once(proxy: RecordingClient, names: Any, coll: str) -> None:
    proxy.failures["upsert"] = [http_error(503)]
    store = Store(proxy, control_collection=names("control"), retry=NO_WAIT)  # type: ignore[arg-type]

    store.upsert(coll, [models.PointStruct(id=100, vector={"legacy": vector_of(64)}, payload={})])

    assert proxy.count_calls("upsert") == 2
    assert store.count(coll) == 11


# --------------------------------------------------------------------------- control records


def test_record_ids_are_stable_uuids() -> None:
    assert record_id("migration", "docs") == record_id("migration", "docs")
    assert record_id("migration", "docs") != record_id("model", "docs")
    assert record_id("migration", "docs") != record_id("migration", "docs2")
    assert str(uuid.UUID(record_id("migration", "docs"))) == record_id("migration", "docs")


def test_insert_record_writes_only_once(store: Store, qdrant: QdrantClient, names: Any) -> None:
    assert store.insert_record("migration", "docs", {"collection": "docs", "n": 1}) is True
    assert store.insert_record("migration", "docs", {"collection": "docs", "n": 2}) is False
    other = Store(qdrant, control_collection=names("control"))
    assert other.insert_record("migration", "docs", {"collection": "docs", "n": 3}) is False

    stored = store.get_record("migration", "docs")
    assert stored is not None
    assert stored["n"] == 1
    assert (stored["kind"], stored["key"], stored["epoch"]) == ("migration", "docs", 1)
    assert stored["tokens"] == [stored["token"]]
    assert other.get_record("migration", "docs") == stored


def test_records_of_other_kinds_and_keys_are_separate(store: Store) -> None:
    assert store.insert_record("migration", "docs", {"n": 1}) is True
    assert store.insert_record("migration", "other", {"n": 2}) is True
    assert store.insert_record("model", "docs", {"n": 3}) is True
    records = [
        store.get_record(kind, key)
        for kind, key in [("migration", "docs"), ("migration", "other"), ("model", "docs")]
    ]
    assert [r["n"] if r else None for r in records] == [1, 2, 3]
    assert store.get_record("migration", "nope") is None


def test_replace_record_with_the_current_record_wins(store: Store) -> None:
    store.insert_record("migration", "docs", {"collection": "docs", "n": 1})
    first = store.get_record("migration", "docs")
    assert first is not None

    won = store.replace_record("migration", "docs", {"collection": "docs", "n": 2}, expected=first)

    assert won is not None
    assert won["epoch"] == 2
    assert won["n"] == 2
    assert won["tokens"] == [won["token"], first["token"]]
    assert store.get_record("migration", "docs") == won


def test_replace_record_with_a_stale_record_loses(store: Store) -> None:
    store.insert_record("migration", "docs", {"collection": "docs", "n": 1})
    first = store.get_record("migration", "docs")
    assert first is not None
    current = store.replace_record("migration", "docs", {"n": 2}, expected=first)
    assert current is not None

    lost = store.replace_record("migration", "docs", {"n": 3}, expected=first)

    assert lost is None
    assert store.get_record("migration", "docs") == current


def test_replace_record_of_a_vanished_record_loses(store: Store) -> None:
    store.insert_record("migration", "docs", {"n": 1})
    first = store.get_record("migration", "docs")
    assert first is not None
    store.delete_record("migration", "docs")
    assert store.get_record("migration", "docs") is None

    assert store.replace_record("migration", "docs", {"n": 2}, expected=first) is None
    assert store.get_record("migration", "docs") is None


def test_delete_record_of_a_missing_record_is_a_no_op(store: Store) -> None:
    store.insert_record("migration", "docs", {"n": 1})
    store.delete_record("migration", "nope")
    assert store.get_record("migration", "nope") is None
    assert store.get_record("migration", "docs") is not None


def test_delete_records_removes_only_the_keys_given(store: Store) -> None:
    for key in ("a", "b", "c"):
        store.insert_record("heartbeat", key, {"collection": "docs"})
    store.insert_record("migration", "a", {"collection": "docs"})

    store.delete_records("heartbeat", ["a", "c", "missing"])

    assert [r["key"] for r in store.list_records("heartbeat")] == ["b"]
    assert store.get_record("migration", "a") is not None
    store.delete_records("heartbeat", [])
    assert [r["key"] for r in store.list_records("heartbeat")] == ["b"]


def test_put_record_overwrites_unconditionally(store: Store) -> None:
    store.put_record("heartbeat", "worker-1", {"collection": "docs", "seen": 1})
    store.put_record("heartbeat", "worker-1", {"collection": "docs", "seen": 2})

    stored = store.get_record("heartbeat", "worker-1")
    assert stored is not None
    assert (stored["kind"], stored["key"], stored["seen"]) == ("heartbeat", "worker-1", 2)
    store.put_record("heartbeat", "worker-1", {"collection": "docs", "other": True})
    replaced = store.get_record("heartbeat", "worker-1")
    assert replaced is not None
    assert "seen" not in replaced
    assert len(store.list_records("heartbeat", collection="docs")) == 1


def test_a_winner_is_recognised_after_another_writer_moved_on(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    control = names("control")
    other = Store(qdrant, control_collection=control)
    other.insert_record("migration", "docs", {"n": 1})
    first = other.get_record("migration", "docs")
    assert first is not None
    ours = Store(proxy, control_collection=control)  # type: ignore[arg-type]
    moved: list[dict[str, Any] | None] = []

    def move_on() -> None:
        # Runs right after our conditional write, before we read the record back.
        current = other.get_record("migration", "docs")
        assert current is not None
        moved.append(other.replace_record("migration", "docs", {"n": 3}, expected=current))

    proxy.after["upsert"] = move_on

    won = ours.replace_record("migration", "docs", {"n": 2}, expected=first)

    assert moved and moved[0] is not None
    assert won is not None
    assert (won["n"], won["epoch"]) == (2, 2)
    stored = ours.get_record("migration", "docs")
    assert stored is not None
    assert (stored["n"], stored["epoch"]) == (3, 3)
    assert stored["tokens"][1] == won["token"]


def test_the_token_history_is_bounded(store: Store) -> None:
    store.insert_record("migration", "docs", {"n": 0})
    current = store.get_record("migration", "docs")
    assert current is not None
    seen = [current["token"]]
    for n in range(1, _TOKEN_HISTORY + 10):
        current = store.replace_record("migration", "docs", {"n": n}, expected=current)
        assert current is not None
        seen.append(current["token"])

    assert current["epoch"] == _TOKEN_HISTORY + 10
    assert current["tokens"] == list(reversed(seen))[:_TOKEN_HISTORY]


def test_reads_do_not_create_the_control_collection(qdrant: QdrantClient, names: Any) -> None:
    control = names("control")
    store = Store(qdrant, control_collection=control)

    assert store.get_record("migration", "docs") is None
    assert store.list_records("migration") == []
    assert store.list_records("event", collection="docs") == []
    store.delete_record("migration", "docs")
    store.delete_records("migration", ["docs", "other"])

    assert not qdrant.collection_exists(control)


def test_events_are_listed_per_collection(store: Store) -> None:
    for step in range(3):
        store.append_event("docs", {"event": "step", "step": step})
    store.append_event("other", {"event": "step", "step": 9})
    store.append_event("docs", {"event": "cheat", "kind": "migration", "collection": "other"})
    store.insert_record("migration", "docs", {"collection": "docs"})

    events = store.list_records("event", collection="docs")

    assert sorted(e.get("step", -1) for e in events) == [-1, 0, 1, 2]
    assert all(e["kind"] == "event" and e["collection"] == "docs" for e in events)
    assert len(store.list_records("event")) == 5
    assert [e["step"] for e in store.list_records("event", collection="other")] == [9]
    assert [r["key"] for r in store.list_records("migration")] == ["docs"]
    assert [r["key"] for r in store.list_records("migration", collection="docs")] == ["docs"]


def test_concurrent_compare_and_set_loses_no_increment(qdrant: QdrantClient, names: Any) -> None:
    control = names("control")
    setup = Store(qdrant, control_collection=control)
    setup.insert_record("counter", "c", {"count": 0})
    threads_n, rounds = 8, 25
    won: list[int] = []
    won_lock = threading.Lock()
    failures: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker() -> None:
        store = Store(qdrant, control_collection=control)
        try:
            start.wait()
            for _ in range(rounds):
                while True:
                    current = store.get_record("counter", "c")
                    assert current is not None
                    stored = store.replace_record(
                        "counter", "c", {"count": current["count"] + 1}, expected=current
                    )
                    if stored is not None:
                        with won_lock:
                            won.append(stored["count"])
                        break
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    # Switch threads often, so that reads and writes of different threads interleave.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)

    assert failures == []
    assert not any(t.is_alive() for t in threads)
    final = setup.get_record("counter", "c")
    assert final is not None
    # Every write that took effect incremented the count it was conditional on: none was lost.
    assert final["count"] == final["epoch"] - 1
    # Each win was a distinct increment: no two writers believed they won the same step.
    assert len(won) == threads_n * rounds
    assert len(set(won)) == len(won)
    assert max(won) <= final["count"]
    assert final["epoch"] >= 1 + threads_n * rounds


def test_a_winner_is_recognised_after_many_writers_moved_on(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    _replace_while_others_move_on(qdrant, proxy, names, others=32)


def test_a_winner_is_recognised_while_its_token_is_in_the_history(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    _replace_while_others_move_on(qdrant, proxy, names, others=_TOKEN_HISTORY - 1)


def test_an_outcome_pushed_out_of_the_history_is_reported_as_unknown(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    """Never 'you lost' for a write that took effect: past the history, the store says it cannot tell."""
    with pytest.raises(StoreError, match="cannot tell whether the update"):
        _replace_while_others_move_on(qdrant, proxy, names, others=_TOKEN_HISTORY)


def _replace_while_others_move_on(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any, *, others: int
) -> None:
    control = names("control")
    other = Store(qdrant, control_collection=control)
    other.insert_record("counter", "c", {"count": 0})
    first = other.get_record("counter", "c")
    assert first is not None
    ours = Store(proxy, control_collection=control)  # type: ignore[arg-type]

    def move_on() -> None:
        # Runs right after our conditional write took effect, before we read the record back.
        for _ in range(others):
            current = other.get_record("counter", "c")
            assert current is not None
            assert other.replace_record("counter", "c", {"count": current["count"] + 1}, expected=current)

    proxy.after["upsert"] = move_on

    won = ours.replace_record("counter", "c", {"count": 1}, expected=first)

    final = other.get_record("counter", "c")
    assert final is not None
    assert final["epoch"] == 2 + others  # our write took effect ...
    assert won is not None  # ... so we must be told so
    assert won["epoch"] == 2


def lose_next_reply(proxy: RecordingClient, name: str, *, retries: int) -> None:
    """The next call of ``name`` takes effect, then raises as a lost reply does; the ``retries`` calls after
    it raise before reaching Qdrant."""

    def lost() -> None:
        proxy.failures[name] = [ConnectionError("connection reset by peer") for _ in range(retries)]
        raise ConnectionError("connection reset by peer (after the write took effect)")

    proxy.after[name] = lost


@pytest.mark.parametrize("retries", [2, 0], ids=["every retry fails", "the retry is skipped"])
def test_a_replace_whose_reply_is_lost_is_recognised_as_won(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any, retries: int
) -> None:
    """The conditional write took effect but the call raised: after its retries failed too, or after a
    retry that the moved epoch skipped. The read-back finds the token: the write won."""
    control = names("control")
    other = Store(qdrant, control_collection=control)
    other.insert_record("migration", "docs", {"n": 1})
    first = other.get_record("migration", "docs")
    assert first is not None
    ours = Store(proxy, control_collection=control, retry=RetryPolicy(3, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    lose_next_reply(proxy, "upsert", retries=retries)

    won = ours.replace_record("migration", "docs", {"n": 2}, expected=first, token="mine")

    assert proxy.count_calls("upsert") == 1 + max(retries, 1)
    assert won is not None and (won["n"], won["epoch"], won["token"]) == (2, 2, "mine")
    assert other.get_record("migration", "docs") == won


def test_a_replace_that_never_reached_qdrant_raises_and_changes_nothing(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    control = names("control")
    other = Store(qdrant, control_collection=control)
    other.insert_record("migration", "docs", {"n": 1})
    first = other.get_record("migration", "docs")
    assert first is not None
    ours = Store(proxy, control_collection=control, retry=RetryPolicy(3, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    proxy.always_fail["upsert"] = ConnectionError("connection refused")

    with pytest.raises(TransientStoreError, match="connection refused"):
        ours.replace_record("migration", "docs", {"n": 2}, expected=first)

    assert other.get_record("migration", "docs") == first


def test_a_replace_that_failed_after_another_writer_moved_on_lost(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    """The write failed and the record is at another epoch without our token: the condition on the epoch
    read keeps our write from ever applying, so it lost (rather than 'try again')."""
    control = names("control")
    other = Store(qdrant, control_collection=control)
    other.insert_record("migration", "docs", {"n": 1})
    first = other.get_record("migration", "docs")
    assert first is not None
    moved = other.replace_record("migration", "docs", {"n": 3}, expected=first)
    ours = Store(proxy, control_collection=control, retry=RetryPolicy(3, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    proxy.always_fail["upsert"] = ConnectionError("connection refused")

    assert ours.replace_record("migration", "docs", {"n": 2}, expected=first) is None
    assert other.get_record("migration", "docs") == moved


def test_an_insert_whose_reply_is_lost_is_recognised(
    qdrant: QdrantClient, proxy: RecordingClient, names: Any
) -> None:
    control = names("control")
    ours = Store(proxy, control_collection=control, retry=RetryPolicy(3, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    ours.ensure_control()
    lose_next_reply(proxy, "upsert", retries=2)

    assert ours.insert_record("migration", "docs", {"n": 1}, token="mine") is True

    stored = Store(qdrant, control_collection=control).get_record("migration", "docs")
    assert stored is not None and (stored["n"], stored["token"]) == (1, "mine")
    # a second insert whose reply is lost finds another's record: it did not write
    lose_next_reply(proxy, "upsert", retries=2)
    assert ours.insert_record("migration", "docs", {"n": 2}) is False
    assert Store(qdrant, control_collection=control).get_record("migration", "docs") == stored


def test_an_event_appended_again_under_its_id_is_recorded_once(store: Store) -> None:
    store.append_event("docs", {"event": "cutover", "token": "t1"}, event_id="t1")
    store.append_event("docs", {"event": "cutover", "token": "t1"}, event_id="t1")
    store.append_event("docs", {"event": "note"})
    store.append_event("docs", {"event": "note"})

    events = sorted(e["event"] for e in store.list_records("event", collection="docs"))

    assert events == ["cutover", "note", "note"]


# --------------------------------------------------------------------------- points


def test_iter_points_streams_every_point_once_in_id_order(
    qdrant: QdrantClient, store: Store, names: Any, legacy: HashEmbedder
) -> None:
    name = names("many")
    fill_collection(qdrant, name, legacy, n=23)

    pages = list(store.iter_points(name, page_size=5))

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [r.id for page in pages for r in page] == list(range(23))
    assert all(r.payload and "text" in r.payload for page in pages for r in page)
    assert all(r.vector is None for page in pages for r in page)


def test_iter_points_with_a_filter_and_vectors(
    qdrant: QdrantClient, store: Store, names: Any, legacy: HashEmbedder
) -> None:
    name = names("many")
    fill_collection(qdrant, name, legacy, n=20)
    even: list[models.ExtendedPointId] = list(range(0, 20, 2))

    pages = list(
        store.iter_points(
            name,
            flt=models.Filter(must=[models.HasIdCondition(has_id=even)]),
            page_size=5,
            with_payload=False,
            with_vectors=["legacy"],
        )
    )

    assert [len(p) for p in pages] == [5, 5]
    assert [r.id for page in pages for r in page] == even
    for page in pages:
        for record in page:
            assert isinstance(record.vector, dict)
            assert len(record.vector["legacy"]) == 64  # type: ignore[arg-type]
            assert not record.payload


def test_iter_points_of_an_empty_collection_yields_nothing(
    qdrant: QdrantClient, store: Store, names: Any
) -> None:
    name = names("empty")
    qdrant.create_collection(
        name, vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.DOT)}
    )
    assert list(store.iter_points(name, page_size=3)) == []


def _mixed_collection(client: QdrantClient, name: str) -> list[Any]:
    """Integer and UUID ids, a second vector on some points, payload on most, a few deleted (one of them
    upserted again): what local mode's scroll order, masks and offsets have to get right."""
    client.create_collection(
        name,
        vectors_config={
            "a": models.VectorParams(size=2, distance=models.Distance.DOT),
            "b": models.VectorParams(size=2, distance=models.Distance.DOT),
        },
    )
    ids: list[Any] = [*range(40, 0, -3), *(str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{n}")) for n in range(12))]
    client.upsert(
        name,
        [
            models.PointStruct(
                id=pid,
                vector={"a": [1.0, float(n)], **({"b": [0.0, 1.0]} if n % 3 == 0 else {})},
                payload=None if n % 5 == 4 else {"n": n, "tag": "odd" if n % 2 else "even"},
            )
            for n, pid in enumerate(ids)
        ],
    )
    client.delete(name, [ids[2], ids[15], ids[7]])
    client.upsert(name, [models.PointStruct(id=ids[7], vector={"a": [1.0, 1.0]}, payload={"n": 7})])
    return ids


SCROLLS: list[dict[str, Any]] = [
    {},
    {"with_payload": False, "with_vectors": True},
    {"with_payload": ["tag"], "with_vectors": ["b"]},
    {"flt": models.Filter(must_not=[models.HasVectorCondition(has_vector="b")])},
    {"flt": models.Filter(must=[models.FieldCondition(key="tag", match=models.MatchValue(value="odd"))])},
    {"flt": models.Filter(must=[models.SliceCondition(slice=models.Slice(total=3, index=1))])},
    {"flt": models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="n"))])},
]


@pytest.mark.parametrize("limit", [1, 4, 100])
@pytest.mark.parametrize("ask", range(len(SCROLLS)))
def test_local_mode_scroll_pages_as_local_mode_does(names: Any, ask: int, limit: int) -> None:
    """The local store walks ids from the offset rather than calling local mode's scroll (which sorts and
    filters every point for each page): every page, offset and record is the same as local mode's own,
    for ids added between pages too, and for an offset that is no point's id."""
    client = QdrantClient(":memory:")
    name = names("mixed")
    ids = _mixed_collection(client, name)
    store = Store(client)
    kwargs = SCROLLS[ask]
    theirs_kwargs = {"scroll_filter" if k == "flt" else k: v for k, v in kwargs.items()}

    def both(offset: Any) -> tuple[Any, Any]:
        ours = store.scroll(name, limit=limit, offset=offset, **kwargs)
        theirs = client.scroll(name, limit=limit, offset=offset, **theirs_kwargs)
        return ours, theirs

    offset: Any = None
    pages = 0
    while True:
        ours, theirs = both(offset)
        assert ours == theirs
        offset = ours[1]
        pages += 1
        if pages == 2:  # new ids between pages, before and after the offset
            client.upsert(
                name,
                [
                    models.PointStruct(id=pid, vector={"a": [1.0, 2.0]}, payload={"n": 99, "tag": "odd"})
                    for pid in (0, 1000, str(uuid.uuid5(uuid.NAMESPACE_URL, "late")))
                ],
            )
        if offset is None:
            break
    for offset in (38, ids[2]):  # no point's id; a deleted point's
        ours, theirs = both(offset)
        assert ours == theirs
    client.close()


def test_local_mode_scroll_checks_each_point_once_per_pass(
    names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paging through a collection checks the filter on each point once, however many pages: a pass
    costs the collection's size, not its square (local mode's own scroll checks every point per page)."""
    from qdrant_client.local import payload_filters

    checked = 0
    check = payload_filters.check_filter

    def counting(*args: Any) -> bool:
        nonlocal checked
        checked += 1
        return check(*args)

    monkeypatch.setattr(payload_filters, "check_filter", counting)
    client = QdrantClient(":memory:")
    name = names("pass")
    fill_collection(client, name, HashEmbedder(8), n=300)
    odd = models.Filter(must_not=[models.HasIdCondition(has_id=list(range(0, 300, 2)))])
    pages = list(Store(client).iter_points(name, flt=odd, page_size=10))
    assert [r.id for page in pages for r in page] == list(range(1, 300, 2))
    assert len(pages) == 15
    assert checked <= 300 + len(pages)  # each point once (a page's last look-ahead is checked again)
    client.close()


def test_local_mode_scroll_falls_back_when_local_mode_is_laid_out_otherwise(names: Any) -> None:
    from lattice_qdrant.store import LocalStore

    client = QdrantClient(":memory:")
    name = names("docs")
    fill_collection(client, name, HashEmbedder(8), n=12)
    proxy = RecordingClient(client)
    proxy._client = _RemoteStandIn()  # not qdrant-client's QdrantLocal
    page, offset = LocalStore(proxy).scroll(name, limit=5, with_payload=False)  # type: ignore[arg-type]
    assert ([r.id for r in page], offset) == ([0, 1, 2, 3, 4], 5)
    assert proxy.count_calls("scroll") == 1
    client.close()


def test_upsert_and_retrieve_through_the_store(store: Store, coll: str) -> None:
    store.upsert(
        coll,
        [models.PointStruct(id=50, vector={"legacy": vector_of(64)}, payload={"text": "new"})],
    )
    [record] = store.retrieve(coll, [50, 51], with_vectors=["legacy"])
    assert record.id == 50
    assert record.payload == {"text": "new"}
    assert isinstance(record.vector, dict) and set(record.vector) == {"legacy"}
