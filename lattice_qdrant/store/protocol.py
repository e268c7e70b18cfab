"""The store protocol: what the rest of the package asks of Qdrant, in three concerns.

* :class:`PointStore`: schema (collections, named vectors, payload indexes) and points (counts, reads,
  queries, conditional writes);
* :class:`ControlStore`: the control collection's records (compare-and-set) and the migration history;
* :class:`AliasStore`: collection aliases (blue-green).

:class:`Store` is all three; the package's modules take a ``Store`` and never ask which backend is behind
it. The backends are :class:`~lattice_qdrant.store.ServerStore` (a Qdrant server) and
:class:`~lattice_qdrant.store.LocalStore` (qdrant-client's local mode), chosen once from the client's type
by :func:`~lattice_qdrant.store.open_store`; the fakes of :mod:`lattice_qdrant.testing` wrap either.
``Store(client, ...)`` opens the backend as ``open_store`` does (kept for code written before the
protocol; type checkers know it as a protocol, so typed code calls ``open_store``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from qdrant_client import models
from qdrant_client.http import models as rest

from ..spec import Distance, ModelSpec
from .base import Coverage, VectorInfo

__all__ = [
    "ALIAS_METHODS",
    "CONTROL_METHODS",
    "POINT_METHODS",
    "AliasStore",
    "ControlStore",
    "PointStore",
    "Store",
    "set_backend_chooser",
]


class PointStore(Protocol):
    """Schema and points: collections, named vectors, payload indexes, counts, reads and writes."""

    @property
    def is_local(self) -> bool:
        """Whether this is qdrant-client's local mode (no server: no strict mode, no payload indexes)."""
        ...

    def server_version(self) -> tuple[int, int, int] | None:
        """The server's version, or ``None`` in local mode."""
        ...

    def check_conditional_writes(self, collection: str | None = None) -> None:
        """Refuse a server that would silently ignore conditional writes (older than 1.17)."""
        ...

    def exclusive(self) -> AbstractContextManager[Any]:
        """A context in which no other thread reaches the same Qdrant through a store: local mode's lock
        (qdrant-client's local mode is not thread-safe); nothing on a server."""
        ...

    def collection_exists(self, collection: str) -> bool:
        """Whether the collection exists (read-only)."""
        ...

    def collection_info(self, collection: str) -> models.CollectionInfo:
        """The collection's configuration and counters (read-only)."""
        ...

    def strict_mode(self, collection: str) -> models.StrictModeConfigOutput | None:
        """The collection's strict-mode settings when strict mode is on, else ``None`` (read-only)."""
        ...

    def vectors(self, collection: str) -> dict[str, VectorInfo]:
        """The collection's dense vectors by name; the unnamed default vector is keyed ``""``."""
        ...

    def payload_schema(self, collection: str) -> dict[str, str]:
        """Indexed payload fields and their types."""
        ...

    def ensure_payload_indexes(
        self, collection: str, indexes: dict[str, models.PayloadSchemaType] | None = None
    ) -> list[str]:
        """Create the payload indexes (the model stamp's by default) if missing; return the fields created."""
        ...

    def check_in_place(self, collection: str, source_vector: str) -> VectorInfo:
        """Check the collection can take a parallel named vector; return the source vector."""
        ...

    def ensure_vector(self, collection: str, name: str, spec: ModelSpec) -> bool:
        """Add ``name`` as a dense named vector sized for ``spec``; return whether it was created."""
        ...

    def ensure_vector_shape(
        self, collection: str, name: str, size: int, distance: Distance, *, needed_by: str | None = None
    ) -> bool:
        """Add ``name`` as a dense named vector of this shape; return whether it was created."""
        ...

    def drop_vector(self, collection: str, name: str) -> bool:
        """Delete a named vector from the collection; return whether it existed."""
        ...

    def ensure_collection(self, collection: str, vectors: dict[str, VectorInfo]) -> bool:
        """Create a collection with these dense vectors unless it exists; return whether it was created."""
        ...

    def drop_collection(self, collection: str) -> bool:
        """Delete a whole collection; return whether it existed."""
        ...

    def count(self, collection: str, flt: models.Filter | None = None) -> int:
        """Exact number of points matching ``flt`` (read-only)."""
        ...

    def coverage(self, collection: str, vector: str) -> Coverage:
        """How many points have ``vector``, counted from the data (read-only)."""
        ...

    def upsert(
        self,
        collection: str,
        points: Sequence[models.PointStruct],
        *,
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Upsert whole points, conditionally with ``update_filter`` / ``update_mode``."""
        ...

    def update_vectors(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Write only the named vectors given, conditionally with ``update_filter``."""
        ...

    def update_vectors_stamped(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        stamp: tuple[str, int] | None,
        stamp_ids: Sequence[Any],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """``update_vectors`` and the model stamp of ``stamp_ids``, as close together as Qdrant allows."""
        ...

    def set_payload(
        self, collection: str, payload: dict[str, Any], points: models.Filter | Sequence[Any]
    ) -> models.UpdateResult:
        """Merge ``payload`` into the points selected by ids or a filter."""
        ...

    def update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Mapping[str, Any]]],
        *,
        lacking: str | None = None,
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        """Write named vectors to points that still hold the text they were embedded from (with ``stamp``,
        then stamp ``(model_id, version)`` on those holding the vectors written); return the ids that
        still exist."""
        ...

    def write_stamped(
        self,
        collection: str,
        name: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Any]],
        stamp: tuple[str, int] | None,
        *,
        distance: Distance,
        unless: models.Filter | None = None,
        one_request: bool | None = None,
    ) -> list[Any]:
        """Overwrite vector ``name`` and the model stamp together, on points that still hold their text;
        return the ids where the write took effect."""
        ...

    def retrieve(
        self,
        collection: str,
        ids: Sequence[Any],
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> list[models.Record]:
        """Points by id; missing ids are simply absent (read-only)."""
        ...

    def scroll(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        limit: int = 256,
        offset: Any = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> tuple[list[models.Record], Any]:
        """One page of points in id order and the offset of the next page (``None`` at the end)."""
        ...

    def iter_points(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        page_size: int = 256,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> Iterator[list[models.Record]]:
        """Pages of points matching ``flt``, streamed."""
        ...

    def query(self, collection: str, **kwargs: Any) -> rest.QueryResponse:
        """``query_points`` (the routed client decides ``using``)."""
        ...

    def forward(self, method: str, collection: str, *args: Any, **kwargs: Any) -> Any:
        """Call a point operation of qdrant-client (``delete``, ``set_payload``, ...) on ``collection``."""
        ...


class ControlStore(Protocol):
    """The control collection: one record per (kind, key), changed by compare-and-set, and the history."""

    @property
    def control_collection(self) -> str:
        """Where migration records and the model registry live."""
        ...

    def ensure_control(self) -> None:
        """Create the control collection if it does not exist."""
        ...

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The payload of a control record, or ``None`` (read-only)."""
        ...

    def list_records(self, kind: str, *, collection: str | None = None) -> list[dict[str, Any]]:
        """Payloads of every control record of a kind (optionally for one collection). Read-only."""
        ...

    def insert_record(
        self, kind: str, key: str, payload: dict[str, Any], *, token: str | None = None
    ) -> bool:
        """Create a record if no record has that key; return whether ours was written."""
        ...

    def replace_record(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        expected: dict[str, Any],
        token: str | None = None,
    ) -> dict[str, Any] | None:
        """Compare-and-set: replace the record if it is still the one read as ``expected``; return the
        stored payload when this write took effect, ``None`` when the record had moved on."""
        ...

    def put_record(self, kind: str, key: str, payload: dict[str, Any]) -> None:
        """Write a record unconditionally (for records only one writer owns)."""
        ...

    def put_records(self, kind: str, records: Mapping[str, dict[str, Any]]) -> None:
        """Write records unconditionally, in one request (``records``: payload by key)."""
        ...

    def delete_record(self, kind: str, key: str) -> None:
        """Remove a control record (no-op if absent)."""
        ...

    def delete_records(self, kind: str, keys: Sequence[str]) -> None:
        """Remove control records (absent ones are ignored)."""
        ...

    def append_event(self, collection: str, payload: dict[str, Any], *, event_id: str | None = None) -> None:
        """Append an entry to a collection's migration history (``event_id``: recorded once however often
        it is appended)."""
        ...


class AliasStore(Protocol):
    """Collection aliases."""

    def alias_target(self, alias: str) -> str | None:
        """The collection ``alias`` points to, or ``None`` when there is no such alias (read-only)."""
        ...

    def switch_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` (an existing collection) in one action."""
        ...


_opener: Callable[[Any], type[Store]] | None = None


def set_backend_chooser(choose: Callable[[Any], type[Store]]) -> None:
    """Say how ``Store(client, ...)`` picks its backend class (set once, by :mod:`lattice_qdrant.store`)."""
    global _opener
    _opener = choose


class Store(PointStore, ControlStore, AliasStore, Protocol):
    """A store: points and schema, control records and aliases (see the module's docstring)."""

    if not TYPE_CHECKING:

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            # Store(client, ...) opens the backend for the client: the same as open_store(client, ...)
            if cls is Store:
                client = args[0] if args else kwargs.get("client")
                if _opener is None:  # pragma: no cover - lattice_qdrant.store sets it on import
                    raise TypeError("lattice_qdrant.store is not imported")
                cls = _opener(client)
            return object.__new__(cls)


def _members(protocol: type) -> frozenset[str]:
    return frozenset(name for name in vars(protocol) if not name.startswith("_"))


#: The methods (and properties) of each concern, by name.
POINT_METHODS = _members(PointStore)
CONTROL_METHODS = _members(ControlStore)
ALIAS_METHODS = _members(AliasStore)
