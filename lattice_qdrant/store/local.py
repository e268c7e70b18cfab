"""The local-mode backend: a store over qdrant-client's local mode (``":memory:"`` or ``path=``).

Local mode is a convenience, not the reference: :class:`LocalStore` is the server's store with what
differs there overridden, and nothing else in the package asks which one it has.

* qdrant-client's local mode is not thread-safe (a conditional write is a read then a write in Python):
  every store over the same local client takes the same lock for each request, and :meth:`exclusive`
  hands it out (the control records hold it across a write and its read-back).
* It has no server version (it follows the client's features), no strict mode and no payload indexes
  (it warns that they do nothing; the store still requests them, muted).
* A conditional write checks each point against every clause of its condition, so a request costs the
  square of its size: ``update_if_unchanged`` sends small requests.
* A filter selector scans the whole collection, so ``write_stamped`` stamps by ids after a read-back, and
  ``update_vectors_stamped`` stamps after the write, both under the lock.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from qdrant_client import models

from .base import MODEL_FIELD, VERSION_FIELD, stamp_selector
from .server import ServerStore

__all__ = ["LocalStore"]

#: points per conditional write in local mode (its cost grows with the square of a request's size)
_LOCAL_CONDITIONAL_CHUNK = 16

_LOCAL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCAL_LOCKS_GUARD = threading.Lock()


def _local_lock(client: Any) -> threading.RLock:
    """The one lock of every store over this local client."""
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.get(client)
        if lock is None:
            lock = _LOCAL_LOCKS[client] = threading.RLock()
        return lock


class LocalStore(ServerStore):
    """The store over qdrant-client's local mode (see the module's docstring for what differs).

    Args:
        client: the user's ``QdrantClient`` (``path=`` or ``":memory:"``).
        control_collection: where migration records and the model registry live.
        retry: how transient failures are retried.
    """

    def _make_lock(self) -> contextlib.AbstractContextManager[Any]:
        return _local_lock(self.client)

    @property
    def is_local(self) -> bool:
        """``True``: qdrant-client's local mode (no server)."""
        return True

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """The lock every store over this local client takes for each request (re-entrant)."""
        return self._lock

    def server_version(self) -> tuple[int, int, int] | None:
        """``None``: local mode has no server version (it follows the client's features)."""
        return None

    def strict_mode(self, collection: str) -> models.StrictModeConfigOutput | None:
        """``None``: local mode has no strict mode."""
        return None

    @contextlib.contextmanager
    def _creating_index(self) -> Iterator[None]:
        """Local mode warns that payload indexes do nothing there (a server needs them): mute that.

        ``warnings.catch_warnings`` swaps the process's filters and is not thread-safe, so it runs under the
        local lock that serialises every store over the client (a server never warns).
        """
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            yield

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
        """``update_vectors``, then the model stamp of ``stamp_ids`` (the points of them matching
        ``update_filter`` when given), one after the other under the local lock."""
        if stamp is None or not stamp_ids:
            return self.update_vectors(collection, points, update_filter=update_filter, **kwargs)
        payload = {MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]}
        with self._lock:
            result = self.update_vectors(collection, points, update_filter=update_filter, **kwargs)
            self.set_payload(collection, payload, stamp_selector(stamp_ids, update_filter))
            return result

    def update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Mapping[str, Any]]],
        *,
        lacking: str | None = None,
    ) -> list[Any]:
        """:meth:`ServerStore.update_if_unchanged`, in requests of 16 points: local mode checks each point
        against every clause of the condition (one per point), so smaller requests cost less in all."""
        items = list(pending.items())
        written: list[Any] = []
        for start in range(0, len(items), _LOCAL_CONDITIONAL_CHUNK):
            chunk = dict(items[start : start + _LOCAL_CONDITIONAL_CHUNK])
            written += self._update_if_unchanged(collection, text_field, chunk, lacking)
        return written

    def _stamps_by_ids(self, collection: str) -> bool:
        """Always: a filter selector scans the whole collection in local mode."""
        return True
