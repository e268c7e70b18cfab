"""The traffic queue: the uncovered points that queries meet, for the backfill to embed first.

A mixed query meets candidates that have no target vector yet (:attr:`~lattice_qdrant.mixed.MixedResult.
uncovered`). The wrapping client hands them to a :class:`TrafficRecorder`, which writes them to the control
collection in the background: one record per point of a collection (kind ``"traffic"``, keyed by collection
and point id, so a point met by many queries and many processes is recorded once), at most the plan's
``traffic_queue`` records per collection. The backfill reads the queue before the id order
(:func:`queued_ids`), so the part of the collection that searches reach is covered first, and deletes the
records of the points it has covered (:func:`forget`); ``status`` shows the queue's length
(:func:`queued`).

Costs: a query only adds ids to an in-memory buffer (bounded; ids beyond it are dropped); a background
thread writes the buffer at most once per ``interval`` (per collection: one read of the records already
there, one count and one upsert), and exits when idle. :meth:`TrafficRecorder.close` writes what is still
buffered (the wrapping clients' ``close`` calls it). The queue is a hint, not a ledger: ids still in the
buffer when a process dies without closing its client are lost (their points are covered in id order
later), and a bound reached drops new ids until the backfill drains the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from qdrant_client import models

from .errors import LatticeError
from .store import Store, record_id

__all__ = ["KIND", "TrafficRecorder", "forget", "queued", "queued_ids"]

log = logging.getLogger(__name__)

#: the control records' kind
KIND = "traffic"
#: ids a recorder remembers having written, per collection, so repeated traffic is not rewritten
_REMEMBERED = 65_536


def _key(collection: str, point_id: Any) -> str:
    return f"{collection}:{point_id}"


def _filter(collection: str) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key="kind", match=models.MatchValue(value=KIND)),
            models.FieldCondition(key="collection", match=models.MatchValue(value=collection)),
        ]
    )


def queued(store: Store, collection: str) -> int:
    """How many points of ``collection`` the traffic queue holds (read-only)."""
    if not store.collection_exists(store.control_collection):
        return 0
    return store.count(store.control_collection, _filter(collection))


def queued_ids(store: Store, collection: str, limit: int) -> list[Any]:
    """Up to ``limit`` point ids of ``collection``'s traffic queue, oldest records first (read-only)."""
    if limit <= 0:
        return []
    # the control records' own read: it asks whether the control collection exists only if the store does
    # not know it already (one request less before each backfill pass)
    found = [(r.get("at", 0.0), r.get("point_id")) for r in store.list_records(KIND, collection=collection)]
    found.sort(key=lambda item: item[0])
    return [pid for _, pid in found if pid is not None][:limit]


def forget(store: Store, collection: str, point_ids: Sequence[Any]) -> None:
    """Delete the traffic records of these points (absent ones are ignored)."""
    store.delete_records(KIND, [_key(collection, pid) for pid in point_ids])


class TrafficRecorder:
    """Writes the uncovered points queries meet to the traffic queue, off the request path.

    Args:
        store: where the control collection is.
        interval: seconds between two writes of the buffer (and the idle time before the thread exits).
        buffer: ids held in memory at most, over all collections; more are dropped until the next write.
    """

    def __init__(self, store: Store, *, interval: float = 1.0, buffer: int = 4096) -> None:
        self.store = store
        self.interval = interval
        self.buffer = buffer
        #: ids dropped because the buffer was full, or the queue at its bound
        self.dropped = 0
        self._pending: dict[str, dict[str, Any]] = {}
        self._bounds: dict[str, int] = {}
        self._size = 0
        self._written: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def note(self, collection: str, point_ids: Sequence[Any], bound: int) -> None:
        """Queue ``point_ids`` of ``collection`` for the next write (cheap; never raises, never waits on
        Qdrant). ``bound`` is the queue's length limit for the collection (``0``: record nothing)."""
        if bound <= 0 or not point_ids:
            return
        with self._lock:
            pending = self._pending.setdefault(collection, {})
            written = self._written.get(collection, OrderedDict())
            self._bounds[collection] = bound
            for pid in point_ids:
                key = str(pid)
                if key in pending or key in written:
                    continue
                if self._size >= self.buffer:
                    self.dropped += 1
                    continue
                pending[key] = pid
                self._size += 1
            if self._size and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="lattice-traffic", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Write what is buffered now, in the caller's thread; return how many records were written.

        Raises:
            StoreError: Qdrant refused or failed a request (the ids taken are dropped).
        """
        with self._writing:  # one write at a time: a flush returns after the background one it met
            with self._lock:
                taken, self._pending, self._size = self._pending, {}, 0
                bounds = dict(self._bounds)
            written = 0
            for collection, ids in taken.items():
                if ids:
                    written += self._write(collection, ids, bounds.get(collection, 0))
            return written

    def close(self) -> int:
        """Write what is still buffered, as a process about to exit should; return how many records were
        written. A failure is logged, not raised (the queue is a hint: the points are covered later in id
        order)."""
        try:
            return self.flush()
        except LatticeError as exc:
            log.warning("traffic queue: could not record the points queries met before closing: %s", exc)
            return 0

    def _write(self, collection: str, ids: dict[str, Any], bound: int) -> int:
        store = self.store
        queue = store.control_collection
        present = store.collection_exists(queue)
        points = [record_id(KIND, _key(collection, pid)) for pid in ids.values()]
        held = store.retrieve(queue, points, with_payload=True) if present else []
        known = {str((r.payload or {}).get("point_id")) for r in held}  # another process wrote them
        fresh = [(key, pid) for key, pid in ids.items() if key not in known]
        room = bound - (queued(store, collection) if present else 0)
        chosen = fresh[: max(0, room)]
        with self._lock:
            self.dropped += len(fresh) - len(chosen)
            self._remember(collection, known)
        if not chosen:
            return 0
        now = time.time()
        self.store.put_records(
            KIND,
            {
                _key(collection, pid): {"collection": collection, "point_id": pid, "at": now}
                for _, pid in chosen
            },
        )
        with self._lock:
            self._remember(collection, [key for key, _ in chosen])
        return len(chosen)

    def _remember(self, collection: str, keys: Iterable[str]) -> None:
        """Note ids as recorded (under the lock), forgetting the oldest beyond a bound."""
        remembered = self._written.setdefault(collection, OrderedDict())
        for key in keys:
            remembered[key] = None
        while len(remembered) > _REMEMBERED:
            remembered.popitem(last=False)

    def forget_written(self, collection: str) -> None:
        """Forget which ids were written for ``collection`` (they are recorded again when met again)."""
        with self._lock:
            self._written.pop(collection, None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._wake:
                self._wake.wait(self.interval)
                if not self._size:
                    if time.monotonic() - idle_since >= self.interval:
                        self._thread = None
                        return
                    continue
            idle_since = time.monotonic()
            try:
                self.flush()
            except LatticeError as exc:  # the queue is a hint: a failed write must not stop the process
                log.warning("traffic queue: could not record the points queries met: %s", exc)
