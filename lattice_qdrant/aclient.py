"""The async twin: ``lattice_qdrant.wrap(AsyncQdrantClient(...))`` routes an asyncio application's calls.

:func:`wrap` returns a :class:`LatticeClient` for a ``QdrantClient`` and an :class:`AsyncLatticeClient` for
an ``AsyncQdrantClient``. The twin has the async client's method names and arguments, awaitable where the
async client's are (``upload_points`` and ``upload_collection`` are plain calls there, uploading from
worker processes, and so they are here), and routes writes and queries exactly as the sync wrapper does;
its lifecycle is awaitable too (:class:`AsyncMigration`).

**How it executes.** Decisions are made once, by the pure core (``routing``, ``ranking``, the strategies),
and executed by the sync :class:`~lattice_qdrant.client.LatticeClient`. The twin holds one and runs each
routed call, and each lifecycle step, in a worker thread (``asyncio.to_thread``, the loop's default
executor), so nothing of the routing is written twice and the event loop is never blocked by embedding
(CPU-bound) or by the several requests a routed call may make. The exceptions are in local mode, whose own
requests run on the loop: a ``query_points`` whose query is not text (a vector), and an ``upsert`` whose
vectors are all given, embed nothing and run on the loop too, since the hand-over to a thread costs more
than their routing (an upsert that would embed stops before writing anything, and runs in the thread).
Pass-through methods are the user's ``AsyncQdrantClient``'s, awaited natively. The sync executor reaches
Qdrant through:

* for a server, a ``QdrantClient`` built from the async client's ``init_options`` (the same URL, key,
  timeouts, gRPC choice; ``check_compatibility`` off, as the async client checks), or the ``sync_client``
  given to :func:`wrap`. An option with no sync twin (an async ``auth_token_provider``, an httpx async
  transport) is refused by name (:class:`~lattice_qdrant.errors.AsyncClientError`): pass ``sync_client=``.
* for local mode (``AsyncQdrantClient(":memory:")`` or ``path=``), no second client can share the storage,
  so a synchronous face of the async client drives its coroutines to their end in the calling thread:
  qdrant-client's async local mode only awaits its own coroutines, so a coroutine of it never suspends
  (one that did would raise ``AsyncClientError``). Local mode is not thread-safe: every call the twin
  makes on it, the routed ones in worker threads and the pass-through ones on the loop, takes the one lock
  of the local store (a pass-through waits at most for the request, or the read-back of a control
  record's write, in progress). Call the local client through the twin only.

Why threads rather than an async store generated from the sync one (as qdrant-client generates its async
client): the store is most of the package's I/O code (retries, strict-mode adaptations, compare-and-set of
the control records), and a generated copy would double what must be kept congruent with a server, while
embedding must leave the loop anyway. The cost is a thread per routed call in flight (bounded by the
executor) and the fact that a cancelled ``await`` does not stop its call: it runs to its end in its thread,
as a request already sent to a server would.

The backfill stays synchronous (it is the operator's process): an async service wraps
``AsyncQdrantClient(url=...)`` while ``lattice-qdrant backfill`` runs against the same URL; both route by
the state in the control collection.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast, overload

import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from . import backups
from .client import LatticeClient, run_on_loop
from .client import wrap as wrap_sync
from .coordinator import DEFAULT_REFRESH_INTERVAL, Migration
from .embedders import Embedder, EmbedderSettings
from .errors import AsyncClientError, ConfigError, MigrationError
from .plan import MigrationPlan
from .routing import Coverage, Inference, Routing, Snapshot, query_text
from .spec import ModelSpec
from .state import MigrationState
from .store import CONTROL_COLLECTION, LocalStore, RetryPolicy, Store, backend_for
from .store.local import _local_lock
from .store.server import has_own
from .strategies import MigrationStrategy
from .surface import ATTRIBUTES, PASSED_THROUGH, ROUTED

__all__ = ["AsyncLatticeClient", "AsyncMigration", "sync_client_for", "wrap"]

T = TypeVar("T")


@overload
def wrap(
    client: QdrantClient,
    *,
    embedders: Mapping[str, Embedder] | None = ...,
    control_collection: str = ...,
    refresh_interval: float = ...,
    retry: RetryPolicy | None = ...,
    load_embedders: bool = ...,
    store: Store | None = ...,
    embedder_settings: EmbedderSettings | None = ...,
    inference: Inference | None = ...,
    translate_thresholds: bool = ...,
) -> LatticeClient: ...


@overload
def wrap(
    client: AsyncQdrantClient,
    *,
    embedders: Mapping[str, Embedder] | None = ...,
    control_collection: str = ...,
    refresh_interval: float = ...,
    retry: RetryPolicy | None = ...,
    load_embedders: bool = ...,
    store: Store | None = ...,
    embedder_settings: EmbedderSettings | None = ...,
    inference: Inference | None = ...,
    translate_thresholds: bool = ...,
    sync_client: QdrantClient | None = ...,
) -> AsyncLatticeClient: ...


def wrap(
    client: QdrantClient | AsyncQdrantClient,
    *,
    embedders: Mapping[str, Embedder] | None = None,
    control_collection: str = CONTROL_COLLECTION,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    retry: RetryPolicy | None = None,
    load_embedders: bool = True,
    store: Store | None = None,
    embedder_settings: EmbedderSettings | None = None,
    inference: Inference | None = None,
    translate_thresholds: bool = True,
    sync_client: QdrantClient | None = None,
) -> LatticeClient | AsyncLatticeClient:
    """Wrap a ``QdrantClient`` or an ``AsyncQdrantClient`` so its writes and queries follow each
    collection's migration.

    Args:
        client: the application's client (server, ``path=`` or ``":memory:"``), sync or async.
        embedders: embedders by model reference: ``model_id``, ``model_id:vN``, the qualified id, or
            the spec's ``name``; also used for ``models.Document(model=...)`` on collections without a
            migration.
        control_collection: collection holding migration records and the model registry.
        refresh_interval: seconds a process routes by a cached migration state (the bound on how long
            two processes may route differently after a transition).
        retry: how transient Qdrant failures are retried.
        load_embedders: build an embedder from a registered spec when none was given (loads the model).
        store: the store to reach Qdrant through instead of the client's own (``control_collection`` and
            ``retry`` are then the store's): a fake of :mod:`lattice_qdrant.testing`, for instance.
        embedder_settings: how the embedders built from specs run (device, precision, tokens per pass,
            export cache); the defaults when ``None``.
        inference: where the ``models.Document`` of routed writes and queries is embedded: ``"local"``, or
            ``"server"`` by Qdrant's inference (see :func:`lattice_qdrant.client.wrap`); a client made with
            ``cloud_inference=True`` needs the choice made here.
        translate_thresholds: translate the ``score_threshold`` of queries answered in the target space
            with the migration's score calibration (``False``: send it as given; see
            :func:`lattice_qdrant.client.wrap`).
        sync_client: an ``AsyncQdrantClient`` only: the ``QdrantClient`` of the same server its routed
            calls run on (default: one built from the async client's ``init_options``).

    Returns:
        A :class:`~lattice_qdrant.client.LatticeClient` for a ``QdrantClient``, an
        :class:`AsyncLatticeClient` for an ``AsyncQdrantClient``.

    Raises:
        AsyncClientError: an option of the async client has no sync twin, and no ``sync_client`` was given.
        ConfigError: ``sync_client`` given with a ``QdrantClient``; ``inference`` missing for a
            cloud-inference client, or not fitting the client.
    """
    common: dict[str, Any] = {
        "embedders": embedders,
        "control_collection": control_collection,
        "refresh_interval": refresh_interval,
        "retry": retry,
        "load_embedders": load_embedders,
        "store": store,
        "embedder_settings": embedder_settings,
        "inference": inference,
        "translate_thresholds": translate_thresholds,
    }
    if isinstance(client, AsyncQdrantClient):
        return AsyncLatticeClient(client, sync_client=sync_client, **common)
    if sync_client is not None:
        raise ConfigError("sync_client is for wrapping an AsyncQdrantClient; a QdrantClient is its own")
    return wrap_sync(client, **common)


# ----------------------------------------------------------------- the sync clients the executor runs on


def _is_async_callable(value: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one (a lambda returning a coroutine is
    not seen: qdrant-client's sync client raises when it calls it)."""
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(type(value).__call__)


def sync_client_for(client: AsyncQdrantClient) -> QdrantClient:
    """A ``QdrantClient`` of the server ``client`` talks to, built from its ``init_options``.

    ``check_compatibility`` is off: the async client checks the server's version itself, and a check here
    would be a blocking request made where the twin is built (often on the event loop).

    Raises:
        AsyncClientError: an option has no sync twin (an async ``auth_token_provider``, an httpx async
            transport or client); build the ``QdrantClient`` yourself and pass it as ``sync_client``.
    """
    options = dict(client.init_options)
    for key, value in options.items():
        if (key == "auth_token_provider" and _is_async_callable(value)) or isinstance(
            value, httpx.AsyncBaseTransport | httpx.AsyncClient
        ):
            raise AsyncClientError(
                f"the AsyncQdrantClient's {key!r} is asynchronous, and the wrapper's routed calls run on a "
                "synchronous QdrantClient of the same server; build one with a synchronous equivalent and "
                "pass it: lattice_qdrant.wrap(async_client, sync_client=QdrantClient(...))",
                key=key,
            )
    options["check_compatibility"] = False
    return QdrantClient(**options)


def _drive(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Run a coroutine of qdrant-client's local mode to its end, here (it never suspends).

    Raises:
        AsyncClientError: the coroutine suspended (this qdrant-client's local mode awaits something).
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise AsyncClientError(
        f"qdrant-client's async local mode suspended in {name}(), which the async wrapper relies on it "
        "never doing; use a Qdrant server, or the qdrant-client version this release supports"
    )


class _LocalFace:
    """A synchronous face of an ``AsyncQdrantClient`` in local mode, for the sync executor.

    Each method of the async client is called here and, when it is a coroutine, driven to its end in the
    calling thread (:func:`_drive`), under the lock every local store over this face takes (local mode is
    not thread-safe). ``_client`` is the async client's local-mode engine, so the store chosen for this
    face is the local-mode one.
    """

    def __init__(self, client: AsyncQdrantClient) -> None:
        self._async = client
        self.lock: threading.RLock = _local_lock(self)

    @property
    def _client(self) -> Any:
        return self._async._client

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._async, name)
        if not callable(found):
            return found
        call = functools.wraps(found)(self._driven(found, name))
        # kept: the store asks for a method on every request, and wrapping it anew cost more than routing
        # (the async client's methods are bound once; a value that is not callable is read each time)
        self.__dict__[name] = call
        return call

    def transport(self, name: str) -> Callable[..., Any] | None:
        """The local-mode engine's ``name``, driven as :meth:`__getattr__` drives the client's, which
        ``AsyncQdrantClient.<name>`` awaits after its scan for objects to embed (see
        :func:`~lattice_qdrant.store.server.transport_method`); ``None`` when the async client's class or
        the instance has its own ``name``."""
        if has_own(self._async, AsyncQdrantClient, name):
            return None
        found = getattr(self._async._client, name, None)
        return None if found is None else self._driven(found, name)

    def _driven(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        """``method`` called under the local lock, a coroutine it returns driven to its end here."""
        lock = self.lock

        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                result = method(*args, **kwargs)
                return _drive(result, name) if inspect.iscoroutine(result) else result

        return call

    def __repr__(self) -> str:
        return f"_LocalFace({self._async!r})"


# ----------------------------------------------------------------- the twin


class AsyncMigration:
    """One collection's migration, its lifecycle awaitable: each step is the sync
    :class:`~lattice_qdrant.coordinator.Migration`'s, run in a worker thread.

    ``plan``, ``state`` and ``strategy`` are properties of the record as this migration last read or wrote
    it (no I/O, so they are safe on the loop): a step's result is there as soon as it returns. Await
    :meth:`snapshot` for a current read. The sync ``Migration`` is :attr:`sync` (the backfill takes it).

    Args:
        migration: the sync migration this one runs.
    """

    def __init__(self, migration: Migration) -> None:
        self.sync = migration

    def __repr__(self) -> str:
        return f"AsyncMigration({self.collection!r})"

    @property
    def collection(self) -> str:
        """The migrated collection."""
        return self.sync.collection

    def _last(self) -> Snapshot:
        snap = self.sync.cached_snapshot()
        if snap is None:  # an AsyncMigration is made from a migration that was read; kept for safety
            raise MigrationError(f"{self.collection!r}: the migration was never read; await snapshot()")
        return snap

    @property
    def plan(self) -> MigrationPlan:
        """The plan, as last read (no I/O)."""
        return self._last().plan

    @property
    def state(self) -> MigrationState:
        """The state as this migration last read or wrote it (no I/O); ``await snapshot()`` reads it."""
        return self._last().state

    @property
    def strategy(self) -> MigrationStrategy:
        """The plan's strategy (no I/O)."""
        return self.sync.strategy_of(self._last())

    # ----------------------------------------------------------------- reading

    async def snapshot(self, *, refresh: bool = False) -> Snapshot:
        """The record, from cache when younger than ``refresh_interval`` (read-only)."""
        return await asyncio.to_thread(self.sync.snapshot, refresh=refresh)

    async def coverage(self) -> Coverage:
        """Points holding the target model, counted from the data now (read-only)."""
        return await asyncio.to_thread(self.sync.coverage)

    async def routing(self, coverage: float | None = None) -> Routing:
        """Where writes and queries go now (read-only)."""
        return await asyncio.to_thread(self.sync.routing, coverage)

    async def rollback_window_left(self) -> float | None:
        """Seconds until finalize is allowed without force, or ``None`` outside the window."""
        return await asyncio.to_thread(self.sync.rollback_window_left)

    async def history(self) -> list[dict[str, Any]]:
        """Every recorded transition of this collection, oldest first (read-only)."""
        return await asyncio.to_thread(self.sync.history)

    async def finalize_backup(self, backup_id: str | None = None) -> backups.Manifest:
        """The backup ``restore`` uses (see :meth:`Migration.finalize_backup`)."""
        return await asyncio.to_thread(self.sync.finalize_backup, backup_id)

    # ----------------------------------------------------------------- the lifecycle

    async def start(self) -> MigrationState:
        """Prepare the collection and start migrating (see :meth:`Migration.start`)."""
        return await asyncio.to_thread(self.sync.start)

    async def progress(self, coverage: Coverage | None = None) -> MigrationState:
        """Record the coverage counted from the data (see :meth:`Migration.progress`)."""
        return await asyncio.to_thread(self.sync.progress, coverage)

    async def pause(self, reason: str = "") -> MigrationState:
        """Pause the backfill; writes keep going to both vectors."""
        return await asyncio.to_thread(self.sync.pause, reason)

    async def resume(self) -> MigrationState:
        """Resume after a pause or a failure."""
        return await asyncio.to_thread(self.sync.resume)

    async def cancel(self, *, drop_target: bool = True) -> MigrationState:
        """Abandon the migration (see :meth:`Migration.cancel`)."""
        return await asyncio.to_thread(self.sync.cancel, drop_target=drop_target)

    async def cutover(self, *, force: bool = False) -> MigrationState:
        """Switch queries to the target and open the rollback window (see :meth:`Migration.cutover`)."""
        return await asyncio.to_thread(self.sync.cutover, force=force)

    async def rollback(self) -> MigrationState:
        """Switch queries back to the source; writes keep going to both."""
        return await asyncio.to_thread(self.sync.rollback)

    async def finalize(self, *, force: bool = False) -> MigrationState:
        """Drop the source and leave a stable single-model collection (see :meth:`Migration.finalize`)."""
        return await asyncio.to_thread(self.sync.finalize, force=force)

    async def restore(
        self, backup_id: str | None = None, *, embedder: Embedder | None = None
    ) -> backups.RestoreReport:
        """Undo a finalize, or a re-embed (see :meth:`Migration.restore`)."""
        return await asyncio.to_thread(self.sync.restore, backup_id, embedder=embedder)


class AsyncLatticeClient:
    """An ``AsyncQdrantClient`` whose writes and queries follow the migration of each collection.

    Use :func:`wrap` to build one. Every method of ``AsyncQdrantClient`` keeps its name and arguments:
    the routed ones (:data:`lattice_qdrant.surface.ROUTED`) run the sync wrapper's routing in a worker
    thread, the others are the wrapped client's, awaited natively (see the module's docstring).

    Attributes:
        client: the wrapped ``AsyncQdrantClient``.
        sync: the sync :class:`~lattice_qdrant.client.LatticeClient` that executes the routed calls (its
            methods block: call them from a thread).
    """

    def __init__(
        self,
        client: AsyncQdrantClient,
        *,
        embedders: Mapping[str, Embedder] | None = None,
        control_collection: str = CONTROL_COLLECTION,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        retry: RetryPolicy | None = None,
        load_embedders: bool = True,
        store: Store | None = None,
        embedder_settings: EmbedderSettings | None = None,
        inference: Inference | None = None,
        translate_thresholds: bool = True,
        sync_client: QdrantClient | None = None,
    ) -> None:
        self.client = client
        local = sync_client is None and issubclass(backend_for(client), LocalStore)
        self._local = _LocalFace(client) if local else None
        self._owns_sync = sync_client is None and not local
        runs_on = sync_client or self._local or sync_client_for(client)
        self.sync = LatticeClient(
            cast(QdrantClient, runs_on),
            embedders=embedders,
            control_collection=control_collection,
            refresh_interval=refresh_interval,
            retry=retry,
            load_embedders=load_embedders,
            store=store,
            embedder_settings=embedder_settings,
            inference=inference,
            translate_thresholds=translate_thresholds,
        )

    def __getattr__(self, name: str) -> Any:
        # What surface.py passes through is the wrapped client's: awaited natively on a server; in local
        # mode driven under the local lock (it never suspends), so it never meets a routed request. A name
        # in neither table (a newer qdrant-client's) may write or search vectors: refused, as the sync
        # wrapper refuses it.
        if name not in PASSED_THROUGH and name not in ATTRIBUTES:
            if name.startswith("__"):
                raise AttributeError(name)
            raise AttributeError(
                f"{type(self.client).__name__}.{name} is in neither table of lattice_qdrant/surface.py "
                "(ROUTED, PASSED_THROUGH): the wrapper does not know whether it writes or searches vectors, "
                f"so it does not pass it through; classify it there, or call it on the wrapped client "
                f"(.client.{name}) to bypass the migration knowingly"
            )
        found = getattr(self.client, name)
        if self._local is None or not callable(found):
            return found
        local = getattr(self._local, name)
        if not inspect.iscoroutinefunction(found):
            return local

        @functools.wraps(found)
        async def locked(*args: Any, **kwargs: Any) -> Any:
            return local(*args, **kwargs)

        return locked

    def __repr__(self) -> str:
        return f"AsyncLatticeClient({self.client!r})"

    async def _routed(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The sync wrapper's ``name``, in a worker thread (looked up by name, so it follows that wrapper)."""
        return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

    @property
    def store(self) -> Store:
        """The store the routed calls reach Qdrant through (synchronous: call it from a thread)."""
        return self.sync.store

    async def close(self, grpc_grace: float | None = None, **kwargs: Any) -> None:
        """Write the traffic queue's buffered ids, then close the wrapped client, and the sync client built
        for the routed calls."""
        await asyncio.to_thread(self.sync.traffic.close)
        if self._owns_sync:
            await asyncio.to_thread(self.sync.client.close)
        await self.__getattr__("close")(grpc_grace=grpc_grace, **kwargs)

    # ----------------------------------------------------------------- embedders

    def add_embedder(self, ref: str, embedder: Embedder) -> None:
        """Register an embedder under a model reference (see :func:`wrap`)."""
        self.sync.add_embedder(ref, embedder)

    def embedder(self, spec: ModelSpec) -> Embedder:
        """The embedder for a spec (see :meth:`LatticeClient.embedder`); building one loads the model,
        so the first call for a spec given no embedder may block: make it from a thread."""
        return self.sync.embedder(spec)

    # ----------------------------------------------------------------- migrations

    async def plan(
        self,
        collection: str,
        *,
        source: ModelSpec,
        target: ModelSpec,
        source_vector: str,
        target_vector: str | None = None,
        target_collection: str | None = None,
        **options: Any,
    ) -> AsyncMigration:
        """Plan moving ``collection`` from ``source`` to ``target`` (see :meth:`LatticeClient.plan`).

        Raises:
            PlanError: an option is unknown, or the options do not make a consistent plan.
        """
        migration = await asyncio.to_thread(
            functools.partial(
                self.sync.plan,
                collection,
                source=source,
                target=target,
                source_vector=source_vector,
                target_vector=target_vector,
                target_collection=target_collection,
                **options,
            )
        )
        return AsyncMigration(migration)

    async def migration(self, collection: str) -> AsyncMigration:
        """The migration of ``collection``.

        Raises:
            MigrationNotFoundError: the collection has none.
        """
        return AsyncMigration(await asyncio.to_thread(self.sync.migration, collection))

    # ----------------------------------------------------------------- routed: writes

    async def upsert(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``upsert``, routed as the sync wrapper's :meth:`~lattice_qdrant.client.LatticeClient.upsert`.

        In local mode an upsert whose vectors are all given embeds nothing, and runs on the loop as local
        mode's own requests do; one that would embed stops before writing anything and runs in a worker
        thread."""
        if self._local is not None:
            done, result = run_on_loop(lambda: self.sync.upsert(*args, **kwargs))
            if done:
                return cast(models.UpdateResult, result)
        return cast(models.UpdateResult, await self._routed("upsert", args, kwargs))

    def upload_points(self, *args: Any, **kwargs: Any) -> None:
        """``upload_points``, routed as the sync wrapper's; a plain call, as on ``AsyncQdrantClient``
        (it blocks while it embeds and uploads: ``await asyncio.to_thread(client.upload_points, ...)``
        keeps the loop free)."""
        self.sync.upload_points(*args, **kwargs)

    def upload_collection(self, *args: Any, **kwargs: Any) -> None:
        """``upload_collection``, routed as the sync wrapper's; a plain call, as on ``AsyncQdrantClient``
        (see :meth:`upload_points`)."""
        self.sync.upload_collection(*args, **kwargs)

    async def batch_update_points(self, *args: Any, **kwargs: Any) -> list[models.UpdateResult]:
        """``batch_update_points``, each operation routed as the sync wrapper routes it."""
        return cast(list[models.UpdateResult], await self._routed("batch_update_points", args, kwargs))

    async def update_vectors(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``update_vectors``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("update_vectors", args, kwargs))

    async def delete_vectors(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``delete_vectors``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("delete_vectors", args, kwargs))

    async def delete(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``delete``, routed as the sync wrapper's (both collections while blue-green dual-writes)."""
        return cast(models.UpdateResult, await self._routed("delete", args, kwargs))

    async def set_payload(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``set_payload``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("set_payload", args, kwargs))

    async def overwrite_payload(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``overwrite_payload``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("overwrite_payload", args, kwargs))

    async def delete_payload(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``delete_payload``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("delete_payload", args, kwargs))

    async def clear_payload(self, *args: Any, **kwargs: Any) -> models.UpdateResult:
        """``clear_payload``, routed as the sync wrapper's."""
        return cast(models.UpdateResult, await self._routed("clear_payload", args, kwargs))

    # ----------------------------------------------------------------- routed: queries

    async def query_points(self, *args: Any, **kwargs: Any) -> models.QueryResponse:
        """``query_points`` with ``using`` and the query embedding chosen by the migration, as the sync
        wrapper's :meth:`~lattice_qdrant.client.LatticeClient.query_points` (``mode``, ``missing`` and
        ``read_repair`` too).

        In local mode a query that is not text (a vector) embeds nothing, and runs on the loop as local
        mode's own requests do: handing it to a worker thread would cost more than routing it."""
        if self._local is not None and query_text(args[1] if len(args) > 1 else kwargs.get("query")) is None:
            return self.sync.query_points(*args, **kwargs)
        return cast(models.QueryResponse, await self._routed("query_points", args, kwargs))

    async def query_batch_points(self, *args: Any, **kwargs: Any) -> list[models.QueryResponse]:
        """``query_batch_points``, each request routed as the sync wrapper routes it."""
        return cast(list[models.QueryResponse], await self._routed("query_batch_points", args, kwargs))

    async def query_points_groups(self, *args: Any, **kwargs: Any) -> models.GroupsResult:
        """``query_points_groups``, routed as the sync wrapper's."""
        return cast(models.GroupsResult, await self._routed("query_points_groups", args, kwargs))

    async def search_matrix_pairs(self, *args: Any, **kwargs: Any) -> models.SearchMatrixPairsResponse:
        """``search_matrix_pairs`` on the routed vector, as the sync wrapper's."""
        return cast(models.SearchMatrixPairsResponse, await self._routed("search_matrix_pairs", args, kwargs))

    async def search_matrix_offsets(self, *args: Any, **kwargs: Any) -> models.SearchMatrixOffsetsResponse:
        """``search_matrix_offsets`` on the routed vector, as the sync wrapper's."""
        return cast(
            models.SearchMatrixOffsetsResponse, await self._routed("search_matrix_offsets", args, kwargs)
        )

    async def query_text(
        self, collection_name: str, text: str, *, limit: int = 10, **kwargs: Any
    ) -> models.QueryResponse:
        """Search with plain text, embedded with the routed model (see :meth:`LatticeClient.query_text`).

        Raises:
            VectorValidationError: the text is empty.
        """
        return cast(
            models.QueryResponse,
            await self._routed("query_text", (collection_name, text), {"limit": limit, **kwargs}),
        )


def _routed_signature(name: str) -> inspect.Signature:
    """``AsyncQdrantClient.name``'s signature, with the keyword arguments the sync wrapper's method adds
    (``query_points``' ``mode``, for one) before its ``**kwargs``."""
    base = inspect.signature(getattr(AsyncQdrantClient, name))
    own = getattr(LatticeClient, name, None)
    params = list(base.parameters.values())
    if own is not None:
        extras = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(own).parameters.values()
            if p.name not in base.parameters
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        at = next((i for i, p in enumerate(params) if p.kind == inspect.Parameter.VAR_KEYWORD), len(params))
        params[at:at] = extras
    return base.replace(parameters=params)


for _name in ROUTED:
    vars(AsyncLatticeClient)[_name].__signature__ = _routed_signature(_name)
del _name
