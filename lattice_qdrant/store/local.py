"""The local-mode backend: a store over qdrant-client's local mode (``":memory:"`` or ``path=``).

Local mode is a convenience, not the reference: :class:`LocalStore` is the server's store with what
differs there overridden, and nothing else in the package asks which one it has.

* qdrant-client's local mode is not thread-safe (a conditional write is a read then a write in Python):
  every store over the same local client takes the same lock for each request, and :meth:`exclusive`
  hands it out (the control records hold it across a write and its read-back).
* It has no server version (it follows the client's features), no strict mode and no payload indexes
  (it warns that they do nothing; the store still requests them, muted).
* A conditional write checks each point against every clause of its condition, so a request costs the
  square of its size: ``update_if_unchanged`` checks each point against its own clause (local mode's own
  check, under the lock) and writes the points that hold unconditionally.
* A filter selector scans the whole collection, so ``write_stamped`` stamps by ids after a read-back, and
  ``update_vectors_stamped`` stamps after the write, both under the lock.
* Its scroll sorts every id and checks the filter on every point for each page, so paging through a
  collection costs the square of its size: :meth:`LocalStore.scroll` walks the ids in order from the
  offset instead, checking the filter only on the points it visits (local mode's own check, on its own
  data), so a pass over the collection costs its size.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import warnings
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from qdrant_client import models
from qdrant_client.local import payload_filters
from qdrant_client.local.local_collection import LocalCollection
from qdrant_client.local.payload_value_extractor import value_by_key
from qdrant_client.local.utils import normalize_point_id

from .base import stamp_payload, stamp_selector
from .server import ServerStore, named_vectors

__all__ = ["LocalStore"]

#: points per conditional write in local mode (its cost grows with the square of a request's size)
_LOCAL_CONDITIONAL_CHUNK = 16

_LOCAL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCAL_LOCKS_GUARD = threading.Lock()


#: what :meth:`LocalStore.scroll` reads of a local collection (else it takes local mode's own scroll)
_INTERNALS = (
    "ids",
    "payload",
    "deleted",
    "deleted_per_vector",
    "_get_payload",
    "_get_vectors",
    "_universal_id",
    "_validate_with_payload",
)


#: what :meth:`LocalStore.update_if_unchanged` reads of a local collection (else it sends conditional writes)
_CONDITION_INTERNALS = ("payload", "_existing_idx", "_calculate_has_vector")
#: and the checks of local mode it makes them with (else it sends conditional writes)
_HAS_CHECKS = all(hasattr(payload_filters, name) for name in ("check_is_empty", "values_match"))


class _IdOrder:
    """A local collection's point ids in scroll order (local mode's own sort key), kept between pages.

    Local mode only ever adds ids (a deleted point stays, marked deleted, and comes back under its old
    index when upserted again), in the insertion order of its ``ids`` dict: while that dict has as many
    ids as when they were sorted, the order holds; when it has more, only the new ones are sorted in.
    """

    def __init__(self) -> None:
        self.size = 0
        self.keys: list[tuple[str, int]] = []

    def of(self, collection: LocalCollection) -> list[tuple[str, int]]:
        ids = collection.ids
        if len(ids) < self.size:  # not what local mode does: sort them all again
            self.size, self.keys = 0, []
        if len(ids) > self.size:
            added = sorted(map(collection._universal_id, itertools.islice(ids, self.size, None)))
            self.keys = sorted(self.keys + added) if self.keys else added  # two sorted runs: a merge
            self.size = len(ids)
        return self.keys


#: per local collection (weakly: a dropped collection takes its order with it); used under the local lock
_ORDERS: weakref.WeakKeyDictionary[LocalCollection, _IdOrder] = weakref.WeakKeyDictionary()


def _holds(payload: dict[str, Any], text_field: str, text: str | None) -> bool:
    """Whether ``payload`` holds ``text`` in ``text_field`` (``None``: no text there): the clause of
    :func:`~lattice_qdrant.store.base.same_text` without its id, by local mode's own checks of it."""
    if text is None:
        return bool(payload_filters.check_is_empty(payload, text_field))
    values = value_by_key(payload, text_field)
    return values is not None and any(payload_filters.values_match(value, text) for value in values)


def _point_id(key: tuple[str, int]) -> Any:
    """A sort key back to its point id (``("", 7)`` -> ``7``, ``(uuid, 0)`` -> ``uuid``)."""
    return key[0] if key[0] else key[1]


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
        payload = stamp_payload(stamp)
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
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        """:meth:`ServerStore.update_if_unchanged`, with each point checked against its own condition only.

        Local mode checks each point of a conditional write against every clause of its condition (one per
        point), so a request costs the square of its size. Here, under the local lock (nothing else of this
        process runs in between), each point is checked against its own clause, by local mode's own check
        on its own data, the points that hold are written by one unconditional ``update_vectors``, and with
        ``stamp`` those holding the vectors written are stamped by ids. When the local collection is not
        laid out as expected, conditional writes of 16 points are sent (each stamped after a read-back).
        """
        with self._lock:
            found = self._local_collection(collection, _CONDITION_INTERNALS) if _HAS_CHECKS else None
            if found is None:
                items = list(pending.items())
                existing: list[Any] = []
                for start in range(0, len(items), _LOCAL_CONDITIONAL_CHUNK):
                    chunk = dict(items[start : start + _LOCAL_CONDITIONAL_CHUNK])
                    existing += self._update_if_unchanged(collection, text_field, chunk, lacking, stamp)
                return existing
            index_of: dict[Any, int] = {}  # the ids still there, and where local mode holds them
            holding: list[Any] = []  # those of them whose condition holds
            held: list[Any] = []  # those of them not written that hold every vector written already
            names = {name for _, vectors in pending.values() for name in vectors}
            for pid, (text, _) in pending.items():
                idx = found._existing_idx(pid)  # the clause's id: found, or not there
                if idx is None:  # deleted meanwhile (or never there): skipped, as on a server
                    continue
                index_of[pid] = idx
                has = found._calculate_has_vector(idx)
                if (lacking is None or not has.get(lacking)) and _holds(found.payload[idx], text_field, text):
                    holding.append(pid)
                elif names <= has.keys():
                    held.append(pid)
            if holding:
                self.update_vectors(collection, named_vectors(pending, holding))
            if stamp is not None and (holding or held):
                self.set_payload(collection, stamp_payload(stamp), holding + held)
            return list(index_of)

    def _local_collection(self, collection: str, internals: Sequence[str]) -> LocalCollection | None:
        """Local mode's own collection, when it has the ``internals`` read directly (else ``None``)."""
        collection_of = getattr(getattr(self.client, "_client", None), "_get_collection", None)
        found = collection_of(collection) if callable(collection_of) else None
        if not isinstance(found, LocalCollection) or not all(hasattr(found, a) for a in internals):
            return None
        return found

    def _stamps_by_ids(self, collection: str) -> bool:
        """Always: a filter selector scans the whole collection in local mode."""
        return True

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
        """One page of points in id order and the offset of the next page (``None`` at the end).

        The same page as local mode's scroll, in the time of the points visited rather than of the whole
        collection: local mode sorts every id and checks the filter on every point for each page, which
        makes paging through a collection cost the square of its size. This walks the ids in local mode's
        order from ``offset`` (sorted once, and again only for ids added since) and checks the filter,
        with local mode's own function, only on the points it visits. Falls back to local mode's scroll
        when the local collection is not laid out as expected.
        """
        return self._call(  # type: ignore[no-any-return]
            "scroll points",
            self._scroll_page,
            collection,
            flt,
            limit,
            offset,
            with_payload if isinstance(with_payload, bool) else list(with_payload),
            with_vectors if isinstance(with_vectors, bool) else list(with_vectors),
            collection=collection,
            reading=True,
        )

    def _scroll_page(
        self,
        collection: str,
        flt: models.Filter | None,
        limit: int,
        offset: Any,
        with_payload: bool | list[str],
        with_vectors: bool | list[str],
    ) -> tuple[list[models.Record], Any]:
        # the store was chosen for local mode; its collections are read directly when laid out as expected
        found = self._local_collection(collection, _INTERNALS)
        if found is None or limit < 1:
            records, next_offset = self.client.scroll(
                collection,
                scroll_filter=flt,
                limit=limit,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            return list(records), next_offset
        found._validate_with_payload(with_payload)
        payload_filters.validate_filter(flt)  # a filter the server refuses fails even on an empty collection
        keys = _ORDERS.setdefault(found, _IdOrder()).of(found)
        start = 0 if offset is None else bisect_left(keys, found._universal_id(normalize_point_id(offset)))
        ids, deleted, vectors_deleted = found.ids, found.deleted, found.deleted_per_vector
        page: list[models.Record] = []
        for at in range(start, len(keys)):
            point_id = _point_id(keys[at])
            idx = ids.get(point_id)
            if idx is None or deleted[idx]:
                continue
            if flt is not None:
                has_vector = {name: True for name, gone in vectors_deleted.items() if not gone[idx]}
                if not payload_filters.check_filter(flt, found.payload[idx], point_id, has_vector):
                    continue
            if len(page) == limit:
                return page, point_id
            page.append(
                models.Record(
                    id=point_id,
                    payload=found._get_payload(idx, with_payload),
                    vector=found._get_vectors(idx, with_vectors),  # type: ignore[arg-type]  # as local mode
                )
            )
        return page, None
