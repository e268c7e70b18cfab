"""Store fakes for tests: wrap a real store to fail, delay or record its calls.

Every fake is a :class:`~lattice_qdrant.store.Store` that sends each call on to the store it wraps, so a
test injects one where a store is taken (``lq.wrap(client, store=...)``, ``lq.Migration(store, ...)``,
``commands.Session(..., store=...)``) instead of patching methods::

    from lattice_qdrant.store import open_store
    from lattice_qdrant.testing import FaultyStore, LoseReply, RecordingStore

    store = FaultyStore(open_store(client))
    store.inject("append_event", LoseReply(TransientStoreError("connection reset"), on=1))
    lattice = lq.wrap(client, store=store)

* :class:`FaultyStore` fails named methods on a schedule: an error instead of the call (:class:`Fail`), a
  call that takes effect and then raises as a lost reply does (:class:`LoseReply`), a call delivered twice
  as a retry after a lost reply is (:class:`Resend`), or another actor's work right before or after it
  (:class:`Meanwhile`);
* :class:`DelayedStore` answers like a remote server: each request first spends ``latency`` seconds on
  the network, then is served one at a time;
* :class:`RecordingStore` records every call and its arguments (and how many ran at once).

A fake sends the point, schema and alias operations on to the wrapped store; the control records are kept
by the same code every store uses (:class:`~lattice_qdrant.store.ControlRecords`) over the fake's own point
operations, so a fault injected in an ``upsert`` or a ``retrieve`` of the control collection reaches the
records' compare-and-set as it would from Qdrant. Fakes stack: ``RecordingStore(FaultyStore(store))``.
Subclass :class:`StoreWrapper` and override :meth:`StoreWrapper.handle` for a fake of your own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from qdrant_client import models
from qdrant_client.http import models as rest

from .errors import ConfigError
from .spec import Distance, ModelSpec
from .store import ControlRecords, Coverage, Store, VectorInfo
from .store.base import pages
from .store.protocol import ALIAS_METHODS, CONTROL_METHODS, POINT_METHODS

__all__ = [
    "Call",
    "DelayedStore",
    "Fail",
    "Fault",
    "FaultyStore",
    "LoseReply",
    "Meanwhile",
    "RecordingStore",
    "Resend",
    "StoreWrapper",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
#: every method a fake can act on, by name
_METHODS = POINT_METHODS | CONTROL_METHODS | ALIAS_METHODS


@functools.cache
def _signature(method: str) -> inspect.Signature:
    """The protocol's signature of ``method``, without ``self``."""
    signature = inspect.signature(getattr(Store, method))
    return signature.replace(parameters=list(signature.parameters.values())[1:])


@dataclass(frozen=True)
class Call:
    """One call of a store method, its arguments bound to the protocol's signature (defaults applied).

    Attributes:
        method: the method's name (``"upsert"``, ``"replace_record"``, ...).
        arguments: the arguments by parameter name.
    """

    method: str
    arguments: Mapping[str, Any]

    @classmethod
    def of(cls, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call:
        """The call of ``method`` with these arguments."""
        bound = _signature(method).bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.update(arguments.pop("kwargs", None) or {})
        return cls(method, arguments)

    @property
    def collection(self) -> str | None:
        """The ``collection`` argument, when the method has one."""
        value = self.arguments.get("collection")
        return None if value is None else str(value)


def _pages(
    store: Store,
    collection: str,
    *,
    flt: models.Filter | None = None,
    page_size: int = 256,
    with_payload: bool | Sequence[str] = True,
    with_vectors: bool | Sequence[str] = False,
) -> Iterator[list[models.Record]]:
    return pages(
        store.scroll,
        collection,
        flt=flt,
        page_size=page_size,
        with_payload=with_payload,
        with_vectors=with_vectors,
    )


class StoreWrapper(ControlRecords):
    """A store that sends every call on to ``store``: the base of the fakes.

    Each call goes through :meth:`handle`, which a fake overrides to act around it. Attributes that are no
    part of the protocol (a store's ``client``, ``retry``) are the wrapped store's.

    Args:
        store: the store to wrap (a real one, or another fake).
    """

    def __init__(self, store: Store) -> None:
        self.inner = store

    def handle(self, call: Call, proceed: Callable[[], _R]) -> _R:
        """Make ``call``: ``proceed()`` sends it on and returns its result. Override to act around it."""
        return proceed()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    # ----------------------------------------------------------------- plumbing

    def _send(self, method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """A point or alias operation: through :meth:`handle`, then to the wrapped store's ``method``."""
        call = Call.of(method.__name__, args, kwargs)
        return self.handle(call, lambda: method(*args, **kwargs))

    def _keep(
        self,
        name: str,
        method: Callable[Concatenate[Any, _P], _R],
        over: StoreWrapper,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _R:
        """An operation every store builds on its own point operations (the control records, the pages
        of ``iter_points``): through :meth:`handle` of every fake in the stack, then ``method`` over the
        outermost fake (``over``), whose point operations go through the whole stack to the real store."""
        call = Call.of(name, args, kwargs)

        def proceed() -> _R:
            if isinstance(self.inner, StoreWrapper):
                return self.inner._keep(name, method, over, *args, **kwargs)
            return method(over, *args, **kwargs)

        return self.handle(call, proceed)

    # ----------------------------------------------------------------- points and schema

    @property
    def is_local(self) -> bool:
        """The wrapped store's."""
        return self.inner.is_local

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """The wrapped store's."""
        return self.inner.exclusive()

    def server_version(self) -> tuple[int, int, int] | None:
        return self._send(self.inner.server_version)

    def check_conditional_writes(self, collection: str | None = None) -> None:
        return self._send(self.inner.check_conditional_writes, collection)

    def collection_exists(self, collection: str) -> bool:
        return self._send(self.inner.collection_exists, collection)

    def collection_info(self, collection: str) -> models.CollectionInfo:
        return self._send(self.inner.collection_info, collection)

    def strict_mode(self, collection: str) -> models.StrictModeConfigOutput | None:
        return self._send(self.inner.strict_mode, collection)

    def vectors(self, collection: str) -> dict[str, VectorInfo]:
        return self._send(self.inner.vectors, collection)

    def payload_schema(self, collection: str) -> dict[str, str]:
        return self._send(self.inner.payload_schema, collection)

    def ensure_payload_indexes(
        self, collection: str, indexes: dict[str, models.PayloadSchemaType] | None = None
    ) -> list[str]:
        return self._send(self.inner.ensure_payload_indexes, collection, indexes)

    def check_in_place(self, collection: str, source_vector: str) -> VectorInfo:
        return self._send(self.inner.check_in_place, collection, source_vector)

    def ensure_vector(self, collection: str, name: str, spec: ModelSpec) -> bool:
        return self._send(self.inner.ensure_vector, collection, name, spec)

    def ensure_vector_shape(
        self, collection: str, name: str, size: int, distance: Distance, *, needed_by: str | None = None
    ) -> bool:
        return self._send(
            self.inner.ensure_vector_shape, collection, name, size, distance, needed_by=needed_by
        )

    def drop_vector(self, collection: str, name: str) -> bool:
        return self._send(self.inner.drop_vector, collection, name)

    def ensure_collection(self, collection: str, vectors: dict[str, VectorInfo]) -> bool:
        return self._send(self.inner.ensure_collection, collection, vectors)

    def drop_collection(self, collection: str) -> bool:
        return self._send(self.inner.drop_collection, collection)

    def count(self, collection: str, flt: models.Filter | None = None) -> int:
        return self._send(self.inner.count, collection, flt)

    def coverage(self, collection: str, vector: str) -> Coverage:
        return self._send(self.inner.coverage, collection, vector)

    def upsert(
        self,
        collection: str,
        points: Sequence[models.PointStruct],
        *,
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        return self._send(
            self.inner.upsert,
            collection,
            points,
            update_filter=update_filter,
            update_mode=update_mode,
            **kwargs,
        )

    def update_vectors(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        return self._send(
            self.inner.update_vectors, collection, points, update_filter=update_filter, **kwargs
        )

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
        return self._send(
            self.inner.update_vectors_stamped,
            collection,
            points,
            stamp,
            stamp_ids,
            update_filter=update_filter,
            **kwargs,
        )

    def set_payload(
        self, collection: str, payload: dict[str, Any], points: models.Filter | Sequence[Any]
    ) -> models.UpdateResult:
        return self._send(self.inner.set_payload, collection, payload, points)

    def update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Mapping[str, Any]]],
        *,
        lacking: str | None = None,
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        return self._send(
            self.inner.update_if_unchanged, collection, text_field, pending, lacking=lacking, stamp=stamp
        )

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
        return self._send(
            self.inner.write_stamped,
            collection,
            name,
            text_field,
            pending,
            stamp,
            distance=distance,
            unless=unless,
            one_request=one_request,
        )

    def retrieve(
        self,
        collection: str,
        ids: Sequence[Any],
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> list[models.Record]:
        return self._send(
            self.inner.retrieve, collection, ids, with_payload=with_payload, with_vectors=with_vectors
        )

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
        return self._send(
            self.inner.scroll,
            collection,
            flt=flt,
            limit=limit,
            offset=offset,
            with_payload=with_payload,
            with_vectors=with_vectors,
        )

    def iter_points(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        page_size: int = 256,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> Iterator[list[models.Record]]:
        # one scroll per page, each through the whole stack: a page is a request
        return self._keep(
            "iter_points",
            _pages,
            self,
            collection,
            flt=flt,
            page_size=page_size,
            with_payload=with_payload,
            with_vectors=with_vectors,
        )

    def query(self, collection: str, **kwargs: Any) -> rest.QueryResponse:
        return self._send(self.inner.query, collection, **kwargs)

    def forward(self, method: str, collection: str, *args: Any, **kwargs: Any) -> Any:
        return self._send(self.inner.forward, method, collection, *args, **kwargs)

    # ----------------------------------------------------------------- aliases

    def alias_target(self, alias: str) -> str | None:
        return self._send(self.inner.alias_target, alias)

    def switch_alias(self, alias: str, collection: str) -> None:
        return self._send(self.inner.switch_alias, alias, collection)

    # ----------------------------------------------------------------- control records

    @property
    def control_collection(self) -> str:
        """The wrapped store's."""
        return self.inner.control_collection

    def ensure_control(self) -> None:
        return self._keep("ensure_control", ControlRecords.ensure_control, self)

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._keep("get_record", ControlRecords.get_record, self, kind, key)

    def list_records(self, kind: str, *, collection: str | None = None) -> list[dict[str, Any]]:
        return self._keep("list_records", ControlRecords.list_records, self, kind, collection=collection)

    def insert_record(
        self, kind: str, key: str, payload: dict[str, Any], *, token: str | None = None
    ) -> bool:
        return self._keep(
            "insert_record", ControlRecords.insert_record, self, kind, key, payload, token=token
        )

    def replace_record(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        expected: dict[str, Any],
        token: str | None = None,
    ) -> dict[str, Any] | None:
        return self._keep(
            "replace_record",
            ControlRecords.replace_record,
            self,
            kind,
            key,
            payload,
            expected=expected,
            token=token,
        )

    def put_record(self, kind: str, key: str, payload: dict[str, Any]) -> None:
        return self._keep("put_record", ControlRecords.put_record, self, kind, key, payload)

    def put_records(self, kind: str, records: Mapping[str, dict[str, Any]]) -> None:
        return self._keep("put_records", ControlRecords.put_records, self, kind, records)

    def delete_record(self, kind: str, key: str) -> None:
        return self._keep("delete_record", ControlRecords.delete_record, self, kind, key)

    def delete_records(self, kind: str, keys: Sequence[str]) -> None:
        return self._keep("delete_records", ControlRecords.delete_records, self, kind, keys)

    def append_event(self, collection: str, payload: dict[str, Any], *, event_id: str | None = None) -> None:
        return self._keep(
            "append_event", ControlRecords.append_event, self, collection, payload, event_id=event_id
        )


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What happens to some calls of a method (the base of :class:`Fail`, :class:`LoseReply`,
    :class:`Resend` and :class:`Meanwhile`).

    Attributes:
        on: which of the matching calls it hits, counted from 1 since it was injected: one number, a
            collection of them (``range(1, 4)``), or ``None`` for every one.
        when: which calls match (``None``: every call of the method), e.g.
            ``lambda call: call.collection == "docs"``.
    """

    on: int | Collection[int] | None = None
    when: Callable[[Call], bool] | None = None

    def hits(self, number: int) -> bool:
        """Whether the ``number``-th matching call is hit."""
        if self.on is None:
            return True
        if isinstance(self.on, int):
            return number == self.on
        return number in self.on


@dataclass(frozen=True)
class Fail(Fault):
    """The call raises ``error`` instead of being made: nothing reaches Qdrant."""

    error: BaseException


@dataclass(frozen=True)
class LoseReply(Fault):
    """The call is made (it takes effect), then raises ``error``, as a call whose reply was lost does."""

    error: BaseException


@dataclass(frozen=True)
class Resend(Fault):
    """The call is made twice, as a retry after a lost reply sends it again; the second reply is returned."""


@dataclass(frozen=True)
class Meanwhile(Fault):
    """Something else happens around the call: ``action(call)`` runs right before it (with ``after``, right
    after it returned), as another process or the application would act in between."""

    action: Callable[[Call], object]
    after: bool = False


@dataclass
class _Scheduled:
    fault: Fault
    seen: int = 0


class FaultyStore(StoreWrapper):
    """A store whose named methods fail on a schedule (see the module's docstring).

    Args:
        store: the store to wrap.
        faults: faults by method name (``{"upsert": LoseReply(error, on=1)}``); more with :meth:`inject`.

    Attributes:
        fired: every fault that hit a call, with the call, in order.
    """

    def __init__(self, store: Store, faults: Mapping[str, Fault | Sequence[Fault]] | None = None) -> None:
        super().__init__(store)
        self._schedule: dict[str, list[_Scheduled]] = {}
        self._mutex = threading.Lock()
        self.fired: list[tuple[Call, Fault]] = []
        for method, found in (faults or {}).items():
            self.inject(method, *([found] if isinstance(found, Fault) else found))

    def inject(self, method: str, *faults: Fault) -> None:
        """Add faults to the calls of ``method`` (their ``on`` counts calls from now on).

        Raises:
            ConfigError: the store has no such method.
        """
        if method not in _METHODS:
            raise ConfigError(f"a store has no method {method!r} to inject a fault into", key=method)
        with self._mutex:
            self._schedule.setdefault(method, []).extend(_Scheduled(f) for f in faults)

    def clear(self, method: str | None = None) -> None:
        """Remove the faults of ``method`` (of every method when ``None``)."""
        with self._mutex:
            if method is None:
                self._schedule.clear()
            else:
                self._schedule.pop(method, None)

    def handle(self, call: Call, proceed: Callable[[], _R]) -> _R:
        with self._mutex:
            scheduled = list(self._schedule.get(call.method, ()))
        # predicates may read the store: never under the mutex
        matching = [s for s in scheduled if s.fault.when is None or s.fault.when(call)]
        hits: list[Fault] = []
        with self._mutex:
            for entry in matching:
                entry.seen += 1
                if entry.fault.hits(entry.seen):
                    hits.append(entry.fault)
        if not hits:
            return proceed()
        for fault in hits:
            if isinstance(fault, Meanwhile) and not fault.after:
                self._fire(call, fault)
                fault.action(call)
        for fault in hits:
            if isinstance(fault, Fail):
                self._fire(call, fault)
                raise fault.error
        result = proceed()
        for fault in hits:
            if isinstance(fault, Resend):
                self._fire(call, fault)
                result = proceed()
        for fault in hits:
            if isinstance(fault, Meanwhile) and fault.after:
                self._fire(call, fault)
                fault.action(call)
        for fault in hits:
            if isinstance(fault, LoseReply):
                self._fire(call, fault)
                raise fault.error
        return result

    def _fire(self, call: Call, fault: Fault) -> None:
        with self._mutex:
            self.fired.append((call, fault))


# --------------------------------------------------------------------------- latency


class DelayedStore(StoreWrapper):
    """A store that answers like a remote server: each request first spends ``latency`` seconds on the
    network (concurrently with other requests), then is served (one at a time with ``serial``).

    A request is a call of a point, schema or alias operation (each page of ``iter_points`` is a
    ``scroll``); the control records are made of those, so they pay for each of theirs. The check that
    conditional writes hold is one request on its first call only: a server's store reads the version
    once, then trusts it.

    Args:
        store: the store to wrap.
        latency: seconds per request (an attribute: change it at any time).
        serial: serve one request at a time, as a busy server would (and local mode must).
    """

    def __init__(self, store: Store, latency: float, *, serial: bool = True) -> None:
        super().__init__(store)
        self.latency = latency
        self.serial = serial
        self._serve = threading.RLock()
        self._checked = False  # whether conditional writes were checked (once, as a server's store does)
        self._inside = threading.local()  # ``depth``: the exclusive sections this thread is in

    def _depth(self) -> int:
        depth: int = getattr(self._inside, "depth", 0)
        return depth

    def _served(self) -> contextlib.AbstractContextManager[Any]:
        if not self.serial or self._depth() > 0:
            # a request of an exclusive section is served under the wrapped store's lock, which it holds:
            # taking the service lock too, after it, could wait in a circle with a request holding the
            # service lock and waiting for the wrapped store's
            return contextlib.nullcontext()
        return self._serve

    def handle(self, call: Call, proceed: Callable[[], _R]) -> _R:
        if call.method in CONTROL_METHODS or call.method == "iter_points":
            return proceed()  # its requests pay for themselves
        if call.method == "check_conditional_writes":
            if self._checked:
                return proceed()
            self._checked = True
        if self.latency:
            time.sleep(self.latency)
        with self._served():
            return proceed()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The wrapped store's exclusive section only: a server serves other requests while a client runs
        a compare-and-set's write and read-back, so requests that do not need the wrapped store's lock
        (a stand-in serving data itself) go on meanwhile; its own requests still pay the latency."""
        with self.inner.exclusive():
            self._inside.depth = self._depth() + 1
            try:
                yield
            finally:
                self._inside.depth -= 1


# --------------------------------------------------------------------------- recording


class RecordingStore(StoreWrapper):
    """A store that records every call and its arguments.

    Args:
        store: the store to wrap.

    Attributes:
        calls: every call, in the order they were made (a call made inside another, such as the
            ``upsert`` of a ``replace_record``, comes after it).
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.calls: list[Call] = []
        self._mutex = threading.Lock()
        self._running: dict[str, int] = {}
        self._most: dict[str, int] = {}

    def handle(self, call: Call, proceed: Callable[[], _R]) -> _R:
        with self._mutex:
            self.calls.append(call)
            running = self._running[call.method] = self._running.get(call.method, 0) + 1
            self._most[call.method] = max(self._most.get(call.method, 0), running)
        try:
            return proceed()
        finally:
            with self._mutex:
                self._running[call.method] -= 1

    def of(self, method: str) -> list[Call]:
        """The calls of ``method``, in order."""
        with self._mutex:
            return [call for call in self.calls if call.method == method]

    def most_at_once(self, method: str) -> int:
        """The most calls of ``method`` that ran at the same time."""
        with self._mutex:
            return self._most.get(method, 0)

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        with self._mutex:
            self.calls.clear()
            self._most = dict(self._running)
