"""The store: the only part of the package that calls qdrant-client.

Everything that touches Qdrant goes through a :class:`Store` (:mod:`.protocol`): schema changes on the
migrated collection (payload indexes, the parallel named vector), point reads and writes, the control
collection that holds the migration records and the model registry (:mod:`.control`), and aliases. Two
backends implement it, one class each, chosen once from the client's type by :func:`open_store`:

* :class:`ServerStore` (:mod:`.server`), for a Qdrant server: the reference;
* :class:`LocalStore` (:mod:`.local`), for qdrant-client's local mode (``":memory:"`` or ``path=``), which
  overrides only what differs there.

Errors from qdrant-client are translated into the library's error tree (:mod:`.translate`), and transient
failures are retried. Fakes for tests (faulty, delayed, recording) wrap a store: see
:mod:`lattice_qdrant.testing`.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.local.async_qdrant_local import AsyncQdrantLocal
from qdrant_client.local.qdrant_local import QdrantLocal

from .base import (
    CONDITIONAL_WRITES_MIN_VERSION,
    CONTROL_COLLECTION,
    IN_PLACE_MIN_VERSION,
    MODEL_FIELD,
    PAYLOAD_INDEXES,
    SLICES_MIN_VERSION,
    VERSION_FIELD,
    Coverage,
    NumericPoints,
    RetryPolicy,
    VectorInfo,
    holding_written,
    same_text,
    stamp_filter,
    stamp_selector,
    vector_value,
)
from .control import _TOKEN_HISTORY as _TOKEN_HISTORY
from .control import ControlRecords, record_id
from .local import LocalStore
from .protocol import AliasStore, ControlStore, PointStore, Store, set_backend_chooser
from .server import COUNT_PAGE, ServerStore
from .translate import translate

__all__ = [
    "CONDITIONAL_WRITES_MIN_VERSION",
    "CONTROL_COLLECTION",
    "COUNT_PAGE",
    "IN_PLACE_MIN_VERSION",
    "MODEL_FIELD",
    "PAYLOAD_INDEXES",
    "SLICES_MIN_VERSION",
    "VERSION_FIELD",
    "AliasStore",
    "ControlRecords",
    "ControlStore",
    "Coverage",
    "LocalStore",
    "NumericPoints",
    "PointStore",
    "RetryPolicy",
    "ServerStore",
    "Store",
    "VectorInfo",
    "backend_for",
    "holding_written",
    "open_store",
    "record_id",
    "same_text",
    "stamp_filter",
    "stamp_selector",
    "translate",
    "vector_value",
]

#: What qdrant-client runs in-process as local mode (the sync and the async client's).
_LOCAL_MODE = (QdrantLocal, AsyncQdrantLocal)


def backend_for(client: Any) -> type[ServerStore]:
    """The store class for a client: :class:`LocalStore` when it runs qdrant-client's local mode (its
    ``_client`` is a ``QdrantLocal``), :class:`ServerStore` for anything else. Decided by type, once."""
    return LocalStore if isinstance(getattr(client, "_client", None), _LOCAL_MODE) else ServerStore


def open_store(
    client: QdrantClient,
    *,
    control_collection: str = CONTROL_COLLECTION,
    retry: RetryPolicy | None = None,
) -> ServerStore:
    """The store for ``client``: local mode's or a server's (see :func:`backend_for`).

    Args:
        client: the user's ``QdrantClient`` (server, ``path=`` or ``":memory:"``).
        control_collection: where migration records and the model registry live.
        retry: how transient failures are retried.
    """
    return backend_for(client)(client, control_collection=control_collection, retry=retry)


set_backend_chooser(backend_for)
