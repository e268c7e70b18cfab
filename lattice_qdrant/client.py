"""The routed client: the user's ``QdrantClient``, wrapped, so writes and queries follow the migration.

``wrap(client)`` returns a :class:`LatticeClient`. For a collection with a migration it

* routes writes: source only (legacy), both named vectors in **one** upsert (dual-write; an upsert replaces
  the whole point, so a write of one vector would erase the other), or target only (after finalize), and
  stamps ``embedding_model_id`` / ``embedding_version`` for what was written;
* fills a routed vector the caller did not give: a ``models.Document(text=..., model=...)`` in place of a
  vector is embedded with the routed model(s), and a missing vector is embedded from the plan's text
  field in the payload; otherwise the batch is rejected;
* validates every vector (dimension, finite values, required names) and rejects a bad batch whole, before
  anything is written;
* re-embeds the target vector when a payload write changes the plan's text field;
* picks ``using`` for queries from the routing state, embeds query text with the matching model, and
  refuses a query vector whose dimension does not fit the routed model.

Which of the client's methods are routed is :mod:`lattice_qdrant.surface`'s table (``ROUTED``); each is a
method of :class:`LatticeClient` with the client's own parameters. The ``PASSED_THROUGH`` methods reach the
wrapped client unchanged, and so do collections without a migration. A name in neither table (a method
a newer qdrant-client added) raises ``AttributeError`` instead of silently bypassing the migration.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, TypeVar

from pydantic import ValidationError
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.conversions.conversion import GrpcToRest
from qdrant_client.http import models as rest

from . import backups, surface
from .calibration import ScoreThresholdWarning, check_threshold, target_threshold
from .coordinator import DEFAULT_REFRESH_INTERVAL, Migration, find_migration, plan_migration
from .embedders import Embedder, EmbedderSettings, check_embedder, embed_checked, embedder_for
from .errors import (
    ConfigError,
    EmbedderError,
    LatticeError,
    MigrationError,
    MigrationNotFoundError,
    PlanError,
    StoreError,
    UploadRejectedError,
    VectorNotFoundError,
    VectorValidationError,
)
from .mixed import MissingPolicy, mixed_query
from .plan import MigrationPlan, PlanOptions, Strategy
from .registry import ModelRegistry
from .routing import (
    EMPTY_DOCUMENT,
    TEXT_TYPES,
    Inference,
    MixedQuery,
    PassThrough,
    Resolution,
    Role,
    Snapshot,
    TextChange,
    as_point_structs,
    as_request,
    batched,
    blank,
    check_update_filter,
    dense_vector,
    id_key,
    in_memory,
    inference_mode,
    point_struct,
    point_vectors,
    query_text,
    request_options,
    resolve,
    roles,
    route,
    schema_moved,
    selected,
    single_call,
    split,
    text_change,
    upload_problem,
    upload_rows,
    upload_structs,
)
from .spec import ModelSpec
from .store import (
    CONTROL_COLLECTION,
    MODEL_FIELD,
    VERSION_FIELD,
    NumericPoints,
    RetryPolicy,
    Store,
    open_store,
    stamp_selector,
)
from .strategies import MigrationStrategy, strategy_class
from .traffic import TrafficRecorder

__all__ = ["LatticeClient", "wrap"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_Point = TypeVar("_Point", models.PointStruct, models.PointVectors)

#: Ids a text change re-embeds per request.
REEMBED_PAGE = 256

#: Set while the async twin runs a routed upsert on its event loop (local mode): an upsert that would embed
#: stops, before anything is written, with :class:`_Offload`, and the twin runs it again in a worker thread.
_ON_LOOP: ContextVar[bool] = ContextVar("lattice_qdrant_on_loop", default=False)


class _Offload(LatticeError):
    """The routed call would embed, which must not happen on the event loop (never seen by callers)."""


def run_on_loop(call: Callable[[], T]) -> tuple[bool, T | None]:
    """``(True, call())``, or ``(False, None)`` when ``call`` is an upsert that would embed (it stopped before
    writing anything, so running it again elsewhere is safe). For the async twin in local mode."""
    token = _ON_LOOP.set(True)
    try:
        return True, call()
    except _Offload:
        return False, None
    finally:
        _ON_LOOP.reset(token)


def wrap(
    client: QdrantClient,
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
) -> LatticeClient:
    """Wrap a ``QdrantClient`` so its writes and queries follow each collection's migration.

    Args:
        client: the application's client (server, ``path=`` or ``":memory:"``).
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
        inference: where the ``models.Document`` of routed writes and queries is embedded: ``"local"``
            (the default for a client without cloud inference) with the routed model's embedder, or
            ``"server"`` by Qdrant's inference, the Document's ``model`` set to the routed spec's
            ``model_id`` (needs ``QdrantClient(..., cloud_inference=True)``). A client made with
            ``cloud_inference=True`` needs the choice made here.
        translate_thresholds: translate the ``score_threshold`` of a query answered in the target space
            with the migration's score calibration (:mod:`lattice_qdrant.calibration`); ``False`` sends it
            as given (the application's thresholds are the target's already).

    Raises:
        ConfigError: ``inference`` is missing for a cloud-inference client, or does not fit the client; or
            ``client`` is an ``AsyncQdrantClient``, which ``lattice_qdrant.wrap`` wraps in the async twin
            (:mod:`lattice_qdrant.aclient`).
    """
    if isinstance(client, AsyncQdrantClient):
        raise ConfigError(
            "an AsyncQdrantClient is wrapped by lattice_qdrant.wrap (the async twin, "
            "lattice_qdrant.aclient.AsyncLatticeClient), not lattice_qdrant.client.wrap"
        )
    return LatticeClient(
        client,
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


class LatticeClient:
    """A ``QdrantClient`` whose writes and queries follow the migration of each collection.

    Use :func:`wrap` to build one. The methods :data:`lattice_qdrant.surface.ROUTED` names are the
    wrapper's own, with the client's parameters; those ``PASSED_THROUGH`` names are the wrapped client's.
    """

    def __init__(
        self,
        client: QdrantClient,
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
    ) -> None:
        self.inference: Inference = inference_mode(bool(getattr(client, "cloud_inference", False)), inference)
        #: translate the score_threshold of queries answered in the target space (see :func:`wrap`)
        self.translate_thresholds = translate_thresholds
        self.client = client
        self.store: Store = (
            store
            if store is not None
            else open_store(client, control_collection=control_collection, retry=retry)
        )
        self.registry = ModelRegistry(self.store)
        self.refresh_interval = refresh_interval
        self.load_embedders = load_embedders
        self.embedder_settings = embedder_settings
        self._embedders: dict[str, Embedder] = dict(embedders or {})
        self._built: dict[str, Embedder] = {}
        self._migrations: dict[str, Migration] = {}
        self._absent: dict[str, float] = {}
        self._manifests: dict[str, backups.Manifest] = {}
        self._lock = threading.Lock()
        #: records the uncovered points mixed queries meet, for the backfill (:mod:`lattice_qdrant.traffic`)
        self.traffic = TrafficRecorder(self.store)

    def __getattr__(self, name: str) -> Any:
        # Only what surface.py passes through is the wrapped client's: a method it does not know (a newer
        # qdrant-client's) may write or search vectors, and must not bypass the migration unnoticed.
        if name in surface.PASSED_THROUGH or name in surface.ATTRIBUTES:
            return getattr(self.client, name)
        if name in surface.ROUTED:  # pragma: no cover - a test checks every routed name is defined
            raise AttributeError(f"LatticeClient does not implement the routed method {name!r}")
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"{type(self.client).__name__}.{name} is in neither table of lattice_qdrant/surface.py (ROUTED, "
            "PASSED_THROUGH): the wrapper does not know whether it writes or searches vectors, so it does "
            f"not pass it through; classify it there, or call it on the wrapped client (.client.{name}) "
            "to bypass the migration knowingly"
        )

    def __repr__(self) -> str:
        return f"LatticeClient({self.client!r})"

    def close(self, grpc_grace: float | None = None, **kwargs: Any) -> None:
        """Write the traffic queue's buffered ids (:meth:`TrafficRecorder.close`), then close the wrapped
        client. Without it, ids that mixed queries met in the last second are not queued for the backfill."""
        self.traffic.close()
        self.client.close(grpc_grace=grpc_grace, **kwargs)

    # ----------------------------------------------------------------- embedders

    def add_embedder(self, ref: str, embedder: Embedder) -> None:
        """Register an embedder under a model reference (see :func:`wrap`)."""
        with self._lock:
            self._embedders[ref] = embedder

    def embedder(self, spec: ModelSpec) -> Embedder:
        """The embedder for a spec: one given by the user, else one built from the spec.

        Raises:
            EmbedderError: none was given, building is off, or its dimension does not fit the spec.
        """
        refs = (spec.qualified_id, f"{spec.model_id}:v{spec.version}", spec.model_id, spec.name)
        with self._lock:
            found = next((self._embedders[r] for r in refs if r in self._embedders), None)
            if found is None:
                found = self._built.get(spec.qualified_id)
        if found is None:
            if not self.load_embedders:
                raise EmbedderError(
                    f"no embedder for {spec.qualified_id}; pass embedders={{{spec.model_id!r}: ...}} "
                    "to wrap()"
                )
            found = embedder_for(spec, self.embedder_settings)
            with self._lock:
                found = self._built.setdefault(spec.qualified_id, found)
        check_embedder(found, spec)
        return found

    # ----------------------------------------------------------------- migrations

    def plan(
        self,
        collection: str,
        *,
        source: ModelSpec,
        target: ModelSpec,
        source_vector: str,
        target_vector: str | None = None,
        target_collection: str | None = None,
        **options: Any,
    ) -> Migration:
        """Plan moving ``collection`` from ``source`` to ``target``; nothing changes until ``start``.

        Registers both models and records the plan in Qdrant. ``target_vector`` defaults to the target
        spec's :attr:`~lattice_qdrant.spec.ModelSpec.vector_name`. ``options`` are the
        :class:`~lattice_qdrant.plan.PlanOptions` fields (``strategy``, ``cutover_threshold``,
        ``rollback_window``, ``query_mode``, ``compare_margin``, ...), each defaulting as that model says.

        Blue-green (``strategy="blue_green"``): ``target_collection`` defaults to
        ``{collection}__{target vector name}``, and the target vector keeps the source vector's name (so
        readers of ``alias`` need no change at cutover) unless ``copy_source_vector`` keeps both.

        Re-embed (``strategy="reembed"``): the target vectors overwrite the source vectors under the same
        name (``target_vector`` defaults to, and must be, ``source_vector``; ``""`` is the unnamed vector);
        the target must have the source's dimension and distance, and ``backup_policy`` must be ``always``.

        Raises:
            PlanError: an option is unknown, or the options do not make a consistent plan (the message says
                why).
        """
        unknown = sorted(set(options) - set(PlanOptions.model_fields))
        if unknown:
            known = ", ".join(sorted(PlanOptions.model_fields))
            raise PlanError(f"unknown plan option(s) {', '.join(unknown)} (known: {known})")
        strategy = Strategy(options.pop("strategy", PlanOptions.model_fields["strategy"].default))
        derived = strategy_class(strategy).plan_defaults(
            collection,
            source_vector,
            target,
            target_vector,
            {**options, "target_collection": target_collection},
        )
        try:
            plan = MigrationPlan(
                **{"target_collection": target_collection, **derived},
                collection=collection,
                source=source,
                target=target,
                source_vector=source_vector,
                strategy=strategy,
                **options,
            )
        except ValidationError as exc:
            raise PlanError(
                "; ".join(
                    (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                    + str(e["msg"]).removeprefix("Value error, ")
                    for e in exc.errors()
                )
            ) from None
        plan_migration(self.store, plan)
        with self._lock:
            self._absent.pop(collection, None)
            self._migrations.pop(collection, None)
        return self.migration(collection)

    def migration(self, collection: str) -> Migration:
        """The migration of ``collection``.

        Raises:
            MigrationNotFoundError: the collection has none.
        """
        found = self._migration_for(collection)
        if found is None:
            raise MigrationNotFoundError(collection)
        return found

    def _migration_for(self, collection: str) -> Migration | None:
        with self._lock:
            known = self._migrations.get(collection)
            absent_since = self._absent.get(collection)
        if known is not None:
            return known
        if absent_since is not None and time.monotonic() - absent_since < self.refresh_interval:
            return None
        migration = find_migration(self.store, collection, refresh_interval=self.refresh_interval)
        if migration is None:
            with self._lock:
                self._absent[collection] = time.monotonic()
            return None
        with self._lock:
            return self._migrations.setdefault(collection, migration)

    def _with_fresh_routing(self, migration: Migration, call: Callable[[], T]) -> T:
        """Run ``call``; if it failed because another process changed the schema, refresh and retry."""
        try:
            return call()
        except StoreError as exc:
            if not (isinstance(exc, VectorNotFoundError) or schema_moved(str(exc))):
                raise
            before = migration.snapshot().epoch
            if migration.snapshot(refresh=True).epoch == before:
                raise
            log.info("%s: routing changed under us, retrying once", migration.collection)
            return call()

    # ----------------------------------------------------------------- writes

    def _refuse_server_inference(self, strategy: MigrationStrategy) -> None:
        """Refuse, before anything is written, a migration whose strategy needs the embeddings in this
        process while the wrapper leaves embedding to the server."""
        refusal = strategy.server_inference_refusal() if self.inference == "server" else None
        if refusal is not None:
            raise ConfigError(refusal, key="inference")

    def upsert(
        self,
        collection_name: str,
        points: models.Batch | Sequence[models.PointStruct],
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        update_filter: models.Filter | Any = None,
        update_mode: models.UpdateMode | None = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Upsert points, routed and validated as the collection's migration requires.

        In place, the routed vectors go in one upsert (an upsert replaces the whole point). Blue-green,
        the source vector goes to the source collection and the target vector to the target collection.
        A point whose payload has a new text gets its routed vectors embedded from it when they are not
        given, so no target vector is left from the old text.

        Raises:
            VectorValidationError: a point is missing a routed vector or has a bad one; nothing was
                written.
        """
        options = _explicit(
            "upsert",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            update_filter=update_filter,
            update_mode=update_mode,
            timeout=timeout,
            **kwargs,
        )
        return self._upsert(collection_name, as_point_structs(points), options)

    def _upsert(
        self, collection_name: str, structs: list[models.PointStruct], kwargs: dict[str, Any]
    ) -> models.UpdateResult:
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.upsert(collection_name, self._embed_unrouted(structs), **kwargs)

        def write() -> models.UpdateResult:
            snap = migration.snapshot()
            strategy, plan = migration.strategy_of(snap), snap.plan
            required, texts, checked = self._check_upsert(snap, strategy, structs)
            resolved = self._embedded(plan, checked)
            ids = [p.id for p in structs]
            narrowed = self._back_up_sources(
                migration,
                snap,
                strategy.source_entries(ids, resolved.roles, texts, required),
                ids,
                _update_filter(kwargs),
                kwargs.get("update_mode"),
                inserts=True,
            )
            options = kwargs if narrowed is None else {**kwargs, "update_filter": narrowed}
            result: models.UpdateResult | None = None
            for destination in strategy.destinations(collection_name, required):
                stamp = {MODEL_FIELD: destination.stamp.model_id, VERSION_FIELD: destination.stamp.version}
                vectors_of, by_role, extras = destination.vectors_of, resolved.roles, resolved.extras
                # built without validating the routed vectors again (they were checked, and validating a
                # 768-dimension vector costs more than routing the point); a point with vectors outside the
                # migration (sparse ones, say, perhaps given as plain data) is validated as before
                batch = [
                    (models.PointStruct if extras[i] else point_struct)(
                        id=p.id,
                        vector=vectors_of(by_role[i], extras[i]),
                        payload={**p.payload, **stamp} if p.payload else stamp.copy(),
                    )
                    for i, p in enumerate(structs)
                ]
                result = self.store.upsert(destination.collection, _numeric(batch, extras), **options)
            if result is None:  # pragma: no cover - every route has a destination
                raise StoreError("no destination for the write", collection=collection_name)
            return result

        return self._with_fresh_routing(migration, write)

    def _check_upsert(
        self, snap: Snapshot, strategy: MigrationStrategy, structs: Sequence[models.PointStruct]
    ) -> tuple[tuple[Role, ...], list[Any], Resolution]:
        """An upsert's points validated against the routing (nothing embedded, nothing written): the roles
        written, each point's text, and what is left to embed.

        Raises:
            VectorValidationError: every bad point.
        """
        self._refuse_server_inference(strategy)
        plan = snap.plan
        required = roles(route(snap, 0.0).write)
        ids = [p.id for p in structs]
        texts = [(p.payload or {}).get(plan.text_field) for p in structs]
        splits = [split(p.vector, plan, required, ambiguous=strategy.ambiguity()) for p in structs]
        return required, texts, resolve(plan, ids, splits, required, texts)

    def upload_points(
        self,
        collection_name: str,
        points: Iterable[models.PointStruct],
        batch_size: int = 64,
        parallel: int = 1,
        method: str | None = None,
        max_retries: int = 3,
        wait: bool = False,
        shard_key_selector: Any = None,
        update_filter: models.Filter | Any = None,
        update_mode: models.UpdateMode | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload points in batches of ``batch_size``, each routed and validated as :meth:`upsert`.

        A generator is read lazily, one batch at a time; points held in a list or tuple are validated
        whole before anything is written. From a generator, a bad batch is refused whole and the batches
        before it stay written (:class:`~lattice_qdrant.errors.UploadRejectedError` says how many points
        were). ``parallel`` > 1 (0: one per CPU) sends that many routed batches at once from a pool of
        threads of this process (embedding and routing need the wrapper, which processes would not
        share); ``method`` is therefore unused, and ``max_retries`` is the store's retry policy.

        Raises:
            VectorValidationError: a point is bad (see above for what was written).
        """
        options = _explicit(
            "upsert",
            wait=wait,
            shard_key_selector=shard_key_selector,
            update_filter=update_filter,
            update_mode=update_mode,
            **kwargs,
        )
        again = (lambda: upload_structs(points)) if isinstance(points, Sequence) else None
        self._upload(collection_name, again, upload_structs(points), batch_size, parallel, options)

    def upload_collection(
        self,
        collection_name: str,
        vectors: Any,
        payload: Iterable[dict[Any, Any]] | None = None,
        ids: Iterable[Any] | None = None,
        batch_size: int = 64,
        parallel: int = 1,
        method: str | None = None,
        max_retries: int = 3,
        wait: bool = False,
        shard_key_selector: Any = None,
        update_filter: models.Filter | Any = None,
        update_mode: models.UpdateMode | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload vectors, payloads and ids as points, in batches routed and validated as :meth:`upsert`.

        ``vectors`` is an iterable of vectors (lists, dicts of named vectors, ``models.Document``), a 2-d
        numpy array, or a dict of vector name -> 2-d array (or list of vectors); a routed vector left out is
        embedded from the payload's text. ``ids`` default to random UUIDs, as qdrant-client makes them.
        Held in memory (lists, tuples, arrays), the upload is validated whole before anything is written;
        read from a generator, batch by batch (see :meth:`upload_points`, which also says what
        ``parallel``, ``method`` and ``max_retries`` do).

        Raises:
            VectorValidationError: the columns do not fit together, or a point is bad.
        """
        problem = upload_problem(vectors, payload, ids)
        if problem is not None:
            raise VectorValidationError([(None, problem)])
        options = _explicit(
            "upsert",
            wait=wait,
            shard_key_selector=shard_key_selector,
            update_filter=update_filter,
            update_mode=update_mode,
            **kwargs,
        )
        again: Callable[[], Iterator[Any]] | None = None
        if in_memory(vectors, payload, ids):
            if ids is None:  # the same random ids in the check and in the write, made as qdrant-client does
                columns = list(vectors.values()) if isinstance(vectors, dict) else [vectors]
                ids = [str(uuid.uuid4()) for _ in range(len(columns[0]) if columns else 0)]
            fixed = ids

            def rows() -> Iterator[Any]:
                return upload_rows(vectors, payload, fixed)

            again = rows
        self._upload(
            collection_name, again, upload_rows(vectors, payload, ids), batch_size, parallel, options
        )

    def _upload(
        self,
        collection_name: str,
        again: Callable[[], Iterator[Any]] | None,
        points: Iterable[Any],
        batch_size: int,
        parallel: int,
        options: dict[str, Any],
    ) -> None:
        """Upsert ``points`` batch by batch, ``parallel`` batches at a time; ``again`` (data held in
        memory) reads them once more, to validate the whole upload first."""
        if again is not None:
            self._check_upload(collection_name, again(), batch_size)
        workers = (os.cpu_count() or 1) if parallel == 0 else max(1, parallel)
        written = 0
        if workers == 1:
            for batch in batched(points, batch_size):
                written += self._upload_batch(collection_name, batch, options, written)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lattice-upload") as pool:
            running: set[Future[int]] = set()
            for batch in batched(points, batch_size):
                if len(running) >= 2 * workers:  # read the points no faster than they are written
                    done, running = wait_for(running, return_when=FIRST_COMPLETED)
                    written += sum(f.result() for f in done)
                running.add(pool.submit(self._upload_batch, collection_name, batch, options, written))
            for future in running:
                written += future.result()

    def _upload_batch(
        self, collection_name: str, batch: list[Any], options: dict[str, Any], written: int
    ) -> int:
        """Upsert one batch of an upload (``written``: points of the upload written before it); return
        how many points it wrote."""
        try:
            self._upsert(collection_name, batch, options)
        except VectorValidationError as exc:
            if written:
                raise UploadRejectedError(exc.problems, written=written) from None
            raise
        return len(batch)

    def _check_upload(self, collection_name: str, points: Iterable[Any], batch_size: int) -> None:
        """Validate every point of an upload against the routing, reporting every bad one; nothing is
        written or embedded."""
        migration = self._migration_for(collection_name)
        if migration is None:
            for batch in batched(points, batch_size):
                self._embed_unrouted(batch, check_only=True)
            return
        snap = migration.snapshot()
        strategy = migration.strategy_of(snap)
        problems: list[tuple[Any, str]] = []
        for batch in batched(points, batch_size):
            try:
                self._check_upsert(snap, strategy, batch)
            except VectorValidationError as exc:
                problems += exc.problems
        if problems:
            raise VectorValidationError(problems)

    # ------------------------------------------------------------ helpers of the writes

    def _embedded(self, plan: MigrationPlan, resolved: Resolution) -> Resolution:
        """``resolved`` with what it left to embed embedded, each text with its role's model (with
        server-side inference, as a ``models.Document`` of that model for the server to embed)."""
        specs = {"source": plan.source, "target": plan.target}
        for role, todo in resolved.pending.items():
            if todo:
                if _ON_LOOP.get():
                    raise _Offload(role)
                spec = specs[role]
                if self.inference == "server":
                    resolved.defer(role, spec.model_id)
                    continue
                resolved.fill(role, embed_checked(self.embedder(spec), [text for _, text in todo], spec))
        return resolved

    def _back_up_sources(
        self,
        migration: Migration,
        snap: Snapshot,
        entries: dict[Any, tuple[list[float], str | None, tuple[str, int]]] | None,
        ids: Sequence[Any],
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        *,
        inserts: bool = False,
    ) -> models.Filter | None:
        """Record the backup ``entries`` the strategy asks for before a write (``None``: none, as where the
        source vectors stay in the collection); a re-embed keeps only the target vector under the shared
        name, so the source vector goes into the migration's backup first, as the point's entry.

        A write made conditional by the caller (``update_filter``, or an upsert's ``update_mode``; an
        upsert ``inserts`` missing ids) backs up only the points it would write now, and returns the
        condition to write with: the caller's, narrowed to those points, so no point is written without its
        entry. ``None``: write with the caller's arguments unchanged.
        """
        if entries is None:
            return None
        narrowed: models.Filter | None = None
        if update_filter is not None or update_mode is not None:
            written = self._written_now(
                snap.plan.collection, ids, update_filter, update_mode, inserts=inserts
            )
            keys = {id_key(pid) for pid in written}
            entries = {pid: entry for pid, entry in entries.items() if id_key(pid) in keys}
            must: list[models.Condition] = [models.HasIdCondition(has_id=written)]
            narrowed = models.Filter(must=must + ([update_filter] if update_filter is not None else []))
        if not entries:
            return narrowed
        if snap.backup_id is None:
            raise MigrationError(
                f"the re-embed of {migration.collection!r} records no backup, so a write cannot keep its "
                "source vector; run start again"
            )
        with self._lock:
            manifest = self._manifests.get(snap.backup_id)
        if manifest is None:
            manifest = backups.get_backup(self.store, snap.backup_id)
            with self._lock:
                self._manifests[snap.backup_id] = manifest
        backups.record_entries(self.store, manifest, entries)
        return narrowed

    def _written_now(
        self,
        collection: str,
        ids: Sequence[Any],
        update_filter: models.Filter | None,
        update_mode: models.UpdateMode | None,
        *,
        inserts: bool,
    ) -> list[Any]:
        """The ids a write conditional on ``update_filter`` / ``update_mode`` would write now (read-only).

        Existing points are written when they match the filter (and the mode is not ``INSERT_ONLY``);
        an upsert (``inserts``) also inserts missing ids, unless the mode is ``UPDATE_ONLY``.
        """
        existing = {id_key(r.id) for r in self.store.retrieve(collection, ids, with_payload=False)}
        present = [pid for pid in ids if id_key(pid) in existing]
        missing = [pid for pid in ids if id_key(pid) not in existing] if inserts else []
        if update_mode == models.UpdateMode.INSERT_ONLY:
            return missing
        matched = present
        if update_filter is not None and present:
            found, _ = self.store.scroll(
                collection,
                flt=models.Filter(must=[models.HasIdCondition(has_id=present), update_filter]),
                limit=len(present),
                with_payload=False,
            )
            keys = {id_key(r.id) for r in found}
            matched = [pid for pid in present if id_key(pid) in keys]
        return matched if update_mode == models.UpdateMode.UPDATE_ONLY else matched + missing

    def _embed_unrouted(
        self, points: Sequence[models.PointStruct], *, check_only: bool = False
    ) -> list[models.PointStruct]:
        """Embed ``models.Document`` values whose ``model`` names a registered embedder (``check_only``:
        only check them).

        Raises:
            VectorValidationError: such a Document has empty text; nothing was written.
        """
        registered = self._registered
        found = [  # one look at each vector: most writes hold none to embed, and end here
            (point.id, name, value)
            for point in points
            for name, value in (
                point.vector.items() if isinstance(point.vector, dict) else [("", point.vector)]
            )
            if registered(value)
        ]
        if not found:
            return list(points)
        empty = [
            (pid, f"{EMPTY_DOCUMENT} (vector {name!r}); give the text to embed, or the vector")
            for pid, name, value in found
            if blank(value.text)
        ]
        if empty:
            raise VectorValidationError(empty)
        if check_only:
            return list(points)
        if _ON_LOOP.get():
            raise _Offload("unrouted")
        out = []
        for point in points:
            vector = point.vector
            if registered(vector):
                vector = self._embed_unrouted_query(vector)
            elif isinstance(vector, dict) and any(map(registered, vector.values())):
                # only a point with something to embed is copied: the others go as the caller gave them
                vector = {name: self._embed_unrouted_query(value) for name, value in vector.items()}
            out.append(point if vector is point.vector else point.model_copy(update={"vector": vector}))
        return out

    def update_vectors(
        self,
        collection_name: str,
        points: Sequence[models.PointVectors],
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        update_filter: models.Filter | Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Update named vectors, keeping both in step while writes are dual.

        While dual-writing, a point whose update gives one of the two routed vectors gets the other one
        embedded from its stored text, so the two never disagree; without text the batch is rejected.

        An ``update_filter`` makes the write conditional, and the model stamp follows the same condition:
        only the points written are stamped (a re-embed backs up only those). A filter requiring a vector
        this write sets to be missing (``must_not`` ``has_vector``) is refused, since the stamp, applied
        after the vectors, could not tell the points written; filter on the payload instead.

        Raises:
            VectorValidationError: a point or the ``update_filter`` is refused; nothing was written.
        """
        options = _explicit(
            "update_vectors",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            update_filter=update_filter,
            timeout=timeout,
            **kwargs,
        )
        return self._update_vectors(collection_name, list(points), options)

    def _update_vectors(
        self, collection_name: str, points: list[models.PointVectors], kwargs: dict[str, Any]
    ) -> models.UpdateResult:
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.update_vectors(collection_name, points, **kwargs)

        def write() -> models.UpdateResult:
            snap = migration.snapshot()
            strategy, plan = migration.strategy_of(snap), snap.plan
            checked = self._check_update_vectors(snap, strategy, collection_name, points, kwargs)
            resolved = self._embedded(plan, checked.resolution)
            required, ids = checked.required, [p.id for p in points]
            # the model that wrote the routed vectors, as an upsert stamps it
            routed = [p.id for i, p in enumerate(points) if resolved.roles[i]]
            writes = []
            for destination in strategy.destinations(collection_name, required):
                batch = [
                    (models.PointVectors if resolved.extras[i] else point_vectors)(
                        id=p.id, vector=destination.vectors_of(resolved.roles[i], resolved.extras[i])
                    )
                    for i, p in enumerate(points)
                ]
                writes.append((destination, [b for b in batch if b.vector]))
            caller = _update_filter(kwargs)
            entries = strategy.source_entries(ids, resolved.roles, checked.texts, required)
            narrowed = self._back_up_sources(migration, snap, entries, ids, caller)
            options = kwargs if narrowed is None else {**kwargs, "update_filter": narrowed}
            result: models.UpdateResult | None = None
            for destination, batch in writes:
                collection, stamp = destination.collection, destination.stamp
                if destination.stamp_with_vectors and batch:
                    # the stamp says which model the vector holds: with the vectors, in one request
                    result = self.store.update_vectors_stamped(
                        collection,
                        batch,
                        (stamp.model_id, stamp.version) if routed else None,
                        routed,
                        **options,
                    )
                    continue
                if batch:
                    result = self.store.update_vectors(
                        collection, _numeric(batch, resolved.extras), **options
                    )
                if routed:
                    self.store.set_payload(
                        collection,
                        {MODEL_FIELD: stamp.model_id, VERSION_FIELD: stamp.version},
                        stamp_selector(routed, options.get("update_filter")),
                    )
            if result is None:
                raise VectorValidationError([(None, "nothing to update: no vector of this collection given")])
            return result

        return self._with_fresh_routing(migration, write)

    def _check_update_vectors(
        self,
        snap: Snapshot,
        strategy: MigrationStrategy,
        collection_name: str,
        points: Sequence[models.PointVectors],
        kwargs: dict[str, Any],
    ) -> _VectorUpdate:
        """An ``update_vectors`` validated against the routing and the stored texts (reads only; nothing
        embedded or written).

        Raises:
            VectorValidationError: every bad point, or an ``update_filter`` the stamp cannot follow.
        """
        self._refuse_server_inference(strategy)
        plan = snap.plan
        required = roles(route(snap, 0.0).write)
        splits = [split(p.vector, plan, required, ambiguous=strategy.ambiguity()) for p in points]
        touched = [not isinstance(part, str) and bool(part[0]) for part in splits]
        texts: list[Any] = [None] * len(points)
        need = [p.id for p, t in zip(points, touched, strict=True) if t]
        if need and len(required) > 1:
            home = plan.collection if "source" in required else strategy.data_collection
            stored = {
                id_key(r.id): (r.payload or {}).get(plan.text_field)
                for r in self.store.retrieve(home, need, with_payload=[plan.text_field])
            }
            texts = [stored.get(id_key(p.id)) for p in points]
        hint = (
            "writes go to both vectors during the migration and the point has no text in "
            f"{plan.text_field!r} to embed it from; give both vectors"
        )
        ids = [p.id for p in points]
        resolution = resolve(plan, ids, splits, required, texts, fill=touched, hint=hint)
        caller = _update_filter(kwargs)
        if caller is not None:
            # the names this write sets: every routed vector of a point it touches, and the others given
            written: set[str] = set()
            for destination in strategy.destinations(collection_name, required):
                for i, extra in enumerate(resolution.extras):
                    given: dict[str, list[float]] = {role: [] for role in required} if touched[i] else {}
                    value = destination.vectors_of(given, extra)
                    written |= set(value) if isinstance(value, dict) else {""}
            check_update_filter(caller, written, (MODEL_FIELD, VERSION_FIELD))
        return _VectorUpdate(required, texts, resolution)

    def delete_vectors(
        self,
        collection_name: str,
        vectors: Sequence[str],
        points: Any,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Delete named vectors of the points selected; the names are the application's.

        Naming the source or the target vector deletes the point's embedding: every vector the migration
        writes now (both while dual-writing, in each collection of a blue-green migration), so neither
        model keeps an embedding the application removed. Other names are deleted as given. A point
        that keeps its text is embedded again by the backfill while it lacks the target vector (delete
        the point, or its text, to take it out of search).
        """
        options = _explicit(
            "delete_vectors",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        migration = self._migration_for(collection_name)
        if migration is None:
            found: models.UpdateResult = self.store.forward(
                "delete_vectors", collection_name, vectors=vectors, points=points, **options
            )
            return found
        snap = migration.snapshot()
        strategy = migration.strategy_of(snap)
        required = roles(route(snap, 0.0).write)
        result: models.UpdateResult | None = None
        for collection, names in strategy.vector_deletions(collection_name, list(vectors), required):
            result = self.store.forward("delete_vectors", collection, vectors=names, points=points, **options)
        if result is None:
            raise VectorValidationError([(None, "no vector to delete: give the names of vectors to delete")])
        return result

    def delete(
        self,
        collection_name: str,
        points_selector: Any,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Delete points; while a blue-green migration dual-writes, from both collections."""
        options = _explicit(
            "delete",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        return self._payload_write(
            "delete", collection_name, {"points_selector": points_selector}, options, lambda field: None
        )

    def set_payload(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Any,
        key: str | None = None,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Set payload keys; while a blue-green migration dual-writes, in both collections.

        A new text in the plan's text field re-embeds the target vector of the points selected (ids or a
        filter), in the same call (see :meth:`_reembed_text`).
        """
        options = _explicit(
            "set_payload",
            key=key,
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        return self._payload_write(
            "set_payload",
            collection_name,
            {"payload": payload, "points": points},
            options,
            lambda field: text_change("set_payload", field, payload=payload, key=key),
        )

    def overwrite_payload(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Any,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Replace payloads; while a blue-green migration dual-writes, in both collections; a new text
        re-embeds the target vector, as :meth:`set_payload`."""
        options = _explicit(
            "overwrite_payload",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        return self._payload_write(
            "overwrite_payload",
            collection_name,
            {"payload": payload, "points": points},
            options,
            lambda field: text_change("overwrite_payload", field, payload=payload),
        )

    def delete_payload(
        self,
        collection_name: str,
        keys: Sequence[str],
        points: Any,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Delete payload keys; while a blue-green migration dual-writes, in both collections. Deleting
        the text leaves the target vector as it is (``verify`` counts the point as unverifiable)."""
        options = _explicit(
            "delete_payload",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        return self._payload_write(
            "delete_payload", collection_name, {"keys": keys, "points": points}, options, lambda field: None
        )

    def clear_payload(
        self,
        collection_name: str,
        points_selector: Any,
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Clear payloads; while a blue-green migration dual-writes, in both collections (the target
        vector stays, as with :meth:`delete_payload`)."""
        options = _explicit(
            "clear_payload",
            wait=wait,
            ordering=ordering,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        return self._payload_write(
            "clear_payload",
            collection_name,
            {"points_selector": points_selector},
            options,
            lambda field: None,
        )

    def _payload_write(
        self,
        method: str,
        collection_name: str,
        call: dict[str, Any],
        options: dict[str, Any],
        change_of: Callable[[str], TextChange | None],
    ) -> models.UpdateResult:
        """A delete or payload write, sent where the strategy says (both collections of a dual-writing
        blue-green migration), then the text change re-embedded."""
        migration = self._migration_for(collection_name)
        if migration is None:
            found: models.UpdateResult = getattr(self.client, method)(collection_name, **call, **options)
            return found
        snap = migration.snapshot()
        strategy = migration.strategy_of(snap)
        write = route(snap, 0.0).write
        change = change_of(snap.plan.text_field)
        reembed = change is not None and change.embeddable and "target" in roles(write)
        if reembed:
            self._refuse_server_inference(strategy)
        # the points are resolved before the write: a filter on the text would not select them after it
        selector = call.get("points", call.get("points_selector"))
        ids = self._selected_ids(strategy.data_collection, selector) if reembed else []
        targets = strategy.forwards(write)
        result: models.UpdateResult | None = None
        if targets is None:  # one collection holds both models: the call is the client's, unchanged
            result = getattr(self.client, method)(collection_name, **call, **options)
        else:
            for collection in targets:
                result = self.store.forward(method, collection, **call, **options)
        if result is None:  # pragma: no cover - every route has a collection
            raise StoreError(f"no collection for {method}", collection=collection_name)
        if reembed and change is not None and change.text is not None:
            self._reembed_text(strategy, change.text, ids)
        return result

    def _selected_ids(self, collection: str, selector: Any) -> list[Any]:
        """The ids a points selector selects in ``collection`` now: the ids given, or a filter's matches
        read by scroll in bounded pages."""
        ids, flt = selected(_rest_selector(selector))
        if ids is not None:
            return ids
        found: list[Any] = []
        for page in self.store.iter_points(collection, flt=flt, page_size=REEMBED_PAGE, with_payload=False):
            found += [r.id for r in page]
        return found

    def _reembed_text(self, strategy: MigrationStrategy, text: str, ids: Sequence[Any]) -> None:
        """The target vector of ``ids`` embedded from their new ``text`` (one embedding: a payload write
        sets the same text on every point it selects), written where the point still holds that text.

        The source vector is the application's own embedding, as before the migration: the wrapper only
        keeps the target vectors, which it and the backfill write, in step with the text.
        """
        if not ids:
            return
        target = strategy.plan.target
        vector: Any
        if self.inference == "server":
            vector = models.Document(text=text, model=target.model_id)
        else:
            vector = embed_checked(self.embedder(target), [text], target)[0]
        for page in batched(ids, REEMBED_PAGE):
            strategy.rewrite_target(self.store, text, page, vector)

    def batch_update_points(
        self,
        collection_name: str,
        update_operations: Sequence[Any],
        wait: bool = True,
        ordering: models.WriteOrdering | None = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> list[models.UpdateResult]:
        """Run the operations in order, each routed as its single-call twin (``upsert``, ``set_payload``,
        ``update_vectors``, ...).

        Every operation is validated first, against the routing and the data as they are before the batch:
        one bad operation refuses the whole batch before anything is written. The operations then run
        one by one, each as its twin does (so a blue-green migration's dual-write reaches both collections
        with one operation before the next runs, and a text change re-embeds); as on a server, the
        batch is not atomic and the operations after a failing one do not run. Without a migration the
        batch is one request, as given.

        Returns:
            one result per operation.

        Raises:
            VectorValidationError: an operation is refused (its index and problem); nothing was written.
        """
        options = _explicit("batch_update_points", wait=wait, ordering=ordering, timeout=timeout, **kwargs)
        operations = [
            op if isinstance(op, _REST_OPERATIONS) else GrpcToRest.convert_points_update_operation(op)
            for op in update_operations
        ]
        migration = self._migration_for(collection_name)
        if migration is None:
            embedded = [self._embed_unrouted_operation(op) for op in operations]
            result: list[models.UpdateResult] = self.store.forward(
                "batch_update_points", collection_name, update_operations=embedded, **options
            )
            return result
        calls = self._check_operations(migration, collection_name, operations)
        single = {k: v for k, v in options.items() if k in ("wait", "ordering", "timeout")}
        return [getattr(self, method)(collection_name, **arguments, **single) for method, arguments in calls]

    def _check_operations(
        self, migration: Migration, collection_name: str, operations: Sequence[Any]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The operations as single calls, each validated as its twin validates it.

        Raises:
            VectorValidationError: every problem, each named by its operation's index.
        """
        snap = migration.snapshot()
        strategy = migration.strategy_of(snap)
        calls: list[tuple[str, dict[str, Any]]] = []
        problems: list[tuple[Any, str]] = []
        for index, operation in enumerate(operations):
            found = single_call(operation)
            if isinstance(found, str):
                problems.append((None, f"operation {index}: {found}"))
                continue
            method, arguments = found
            arguments = {k: v for k, v in arguments.items() if v is not None}
            try:
                if method == "upsert":
                    self._check_upsert(snap, strategy, as_point_structs(arguments["points"]))
                elif method == "update_vectors":
                    self._check_update_vectors(
                        snap, strategy, collection_name, arguments["points"], dict(arguments)
                    )
                else:
                    selected(_rest_selector(arguments.get("points", arguments.get("points_selector"))))
            except VectorValidationError as exc:
                problems += [
                    (pid, f"operation {index} ({method}): {problem}") for pid, problem in exc.problems
                ]
            calls.append((method, arguments))
        if problems:
            raise VectorValidationError(problems)
        return calls

    def _embed_unrouted_operation(self, operation: Any) -> Any:
        """An upsert operation with its ``models.Document`` of registered embedders embedded (a collection
        without a migration); any other operation as it is."""
        if not isinstance(operation, models.UpsertOperation):
            return operation
        found = operation.upsert
        points = found.batch if isinstance(found, models.PointsBatch) else found.points
        embedded = self._embed_unrouted(as_point_structs(points))
        return models.UpsertOperation(
            upsert=models.PointsList(
                points=embedded,
                shard_key=found.shard_key,
                update_filter=found.update_filter,
                update_mode=found.update_mode,
            )
        )

    # ----------------------------------------------------------------- queries

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | Any = None,
        search_params: models.SearchParams | Any = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        lookup_from: Any = None,
        consistency: Any = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        *,
        mode: Literal["routed", "mixed"] | None = None,
        missing: MissingPolicy | None = None,
        read_repair: bool | None = None,
        embed_budget: int | None = None,
        **kwargs: Any,
    ) -> rest.QueryResponse:
        """``query_points`` with ``using`` chosen by the migration and query text embedded.

        ``query`` may be a vector, a ``models.Document`` (embedded with the routed model), a
        ``models.NearestQuery`` of either, or anything else ``query_points`` takes. An explicit
        ``using`` naming the source or target vector is honoured and checked the same way.

        Args:
            collection_name: the collection.
            query: what to search for.
            using: a vector name, overriding the routing.
            prefetch: as ``query_points`` (passed as given, but for the ``score_threshold`` of a prefetch
                searching the target vector, translated as the query's own).
            query_filter: as ``query_points``.
            search_params: as ``query_points``.
            limit: as ``query_points``.
            offset: as ``query_points``.
            with_payload: as ``query_points``.
            with_vectors: as ``query_points``.
            score_threshold: as ``query_points``.
            lookup_from: as ``query_points``.
            consistency: as ``query_points``.
            shard_key_selector: as ``query_points``.
            timeout: as ``query_points``.
            mode: ``"routed"`` or ``"mixed"`` (default: the plan's ``query_mode``). Mixed mode, before
                cutover, rescores candidates of both vectors in the target space (needs a
                ``models.Document``; see :mod:`lattice_qdrant.mixed`); once queries are routed to the
                target it is the same as routed.
            missing: mixed mode's policy for candidates without a target vector (default: the plan's).
            read_repair: mixed mode writes vectors embedded on the fly back (default: the plan's).
            embed_budget: mixed mode embeds at most this many candidates without a target vector (default:
                the plan's ``embed_budget``).
            **kwargs: passed to ``query_points``.

        Raises:
            VectorValidationError: the query vector does not fit the routed model, mixed mode got a
                vector instead of text, or the query text is empty.
        """
        options = _explicit(
            "query_points",
            prefetch=prefetch,
            query_filter=query_filter,
            search_params=search_params,
            limit=limit,
            offset=offset,
            with_payload=with_payload,
            with_vectors=with_vectors,
            score_threshold=score_threshold,
            lookup_from=lookup_from,
            consistency=consistency,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        migration = self._migration_for(collection_name)
        self._check_query_text(query, migration)
        if migration is None:
            if using is not None:
                options["using"] = using
            return self.store.query(collection_name, query=self._embed_unrouted_query(query), **options)

        def run() -> rest.QueryResponse:
            snap = migration.snapshot()
            decided = self._routed_query(migration, snap, collection_name, query, using, mode, options)
            if decided is None:
                return self._mixed(snap.plan, query, missing, read_repair, embed_budget, options, snap)
            collection, call = decided
            return self.store.query(collection, **call)

        return self._with_fresh_routing(migration, run)

    def _check_query_text(self, query: Any, migration: Migration | None) -> None:
        nearest = query.nearest if isinstance(query, models.NearestQuery) else query
        if (
            isinstance(nearest, TEXT_TYPES)
            and blank(nearest.text)
            and (migration is not None or nearest.model in self._embedders)
        ):
            raise VectorValidationError(
                [(None, f"the query's {EMPTY_DOCUMENT}, so there is nothing to search for; give the text")]
            )

    def _routed_query(
        self,
        migration: Migration,
        snap: Snapshot,
        collection_name: str,
        query: Any,
        using: str | None,
        mode: Literal["routed", "mixed"] | None,
        options: Mapping[str, Any],
        *,
        has_query: bool = True,
    ) -> tuple[str, dict[str, Any]] | None:
        """Where a query runs and its arguments (``using`` and the query as the strategy's plan says,
        text embedded, a vector checked), or ``None`` for a mixed-mode query (:meth:`_mixed` runs it)."""
        strategy, plan = migration.strategy_of(snap), snap.plan
        coverage = migration.recent_coverage() if strategy.query_needs_coverage(snap, using) else None
        decided = strategy.query_plan(
            snap, coverage, collection_name, textual=query_text(query) is not None, mode=mode, using=using
        )
        if isinstance(decided, MixedQuery):
            return None
        call = dict(options)
        if has_query:
            call["query"] = query
        if isinstance(decided, PassThrough):
            return decided.collection, {**call, "using": decided.using}
        self._refuse_server_inference(strategy)
        spec = plan.target if decided.role == "target" else plan.source
        if decided.restriction is not None:
            user = call.get("query_filter")
            if user is not None and not isinstance(user, models.Filter):
                user = GrpcToRest.convert_filter(user)
            call["query_filter"] = (
                decided.restriction if user is None else models.Filter(must=[user, decided.restriction])
            )
        if has_query:
            call["query"] = self._prepare_query(query, spec, decided.using)
        call["using"] = decided.using
        if decided.role == "target" and call.get("score_threshold") is not None:
            call["score_threshold"] = self._target_threshold(snap, call["score_threshold"])
        if call.get("prefetch") is not None:
            call["prefetch"] = self._prefetch_thresholds(snap, call["prefetch"], decided.role)
        return decided.collection, call

    def _prefetch_thresholds(self, snap: Snapshot, prefetch: Any, role: Role) -> Any:
        """``prefetch`` (one or a list, nested ones included) with the ``score_threshold`` of each prefetch
        that searches the target vector translated as the query's own is. A prefetch names its vector
        itself (the routing does not choose it); with one name for both models (a re-embed) it is in the
        space the query is routed to. Anything that is not a ``models.Prefetch`` passes as given."""
        plan = snap.plan

        def in_target(using: str | None) -> bool:
            if plan.source_vector == plan.target_vector:
                return role == "target"
            return (using or "") == plan.target_vector

        def one(item: Any) -> Any:
            if not isinstance(item, models.Prefetch):
                return item
            update: dict[str, Any] = {}
            if item.score_threshold is not None and in_target(item.using):
                update["score_threshold"] = self._target_threshold(snap, item.score_threshold)
            if item.prefetch is not None:
                update["prefetch"] = every(item.prefetch)
            return item.model_copy(update=update) if update else item

        def every(found: Any) -> Any:
            return [one(item) for item in found] if isinstance(found, list) else one(found)

        return every(prefetch)

    def _target_threshold(self, snap: Snapshot, threshold: Any) -> float:
        """A source-space ``score_threshold`` as the target space needs it (the calibration's decision,
        :func:`~lattice_qdrant.calibration.target_threshold`), warning once when it cannot be translated."""
        plan = snap.plan
        choice = target_threshold(
            threshold,
            collection=plan.collection,
            source=plan.source,
            target=plan.target,
            calibration=snap.calibration,
            translate=self.translate_thresholds,
        )
        if choice.warning is not None:
            key = (plan.collection, plan.source.qualified_id, plan.target.qualified_id, choice.warning)
            _warn_once(key, choice.message)
        return choice.value

    def query_batch_points(
        self,
        collection_name: str,
        requests: Sequence[models.QueryRequest],
        consistency: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> list[rest.QueryResponse]:
        """Run each request as :meth:`query_points` would: ``using`` and the query (a vector, a
        ``models.Document`` embedded with the routed model) follow the routing.

        The routed requests are sent in one ``query_batch_points`` per collection they search; a request
        mixed mode takes (the plan's ``query_mode``, before cutover) runs on its own, as
        :meth:`query_points` runs it.

        Returns:
            one response per request, in their order.

        Raises:
            VectorValidationError: a request is refused (its index and problem); nothing was searched.
        """
        options = _explicit("query_batch_points", consistency=consistency, timeout=timeout, **kwargs)
        migration = self._migration_for(collection_name)
        problems: list[tuple[Any, str]] = []
        for index, request in enumerate(requests):
            try:
                self._check_query_text(request.query, migration)
            except VectorValidationError as exc:
                problems += [(None, f"request {index}: {p}") for _, p in exc.problems]
        if problems:
            raise VectorValidationError(problems)
        if migration is None:
            prepared = [r.model_copy(update={"query": self._embed_unrouted_query(r.query)}) for r in requests]
            found: list[rest.QueryResponse] = self.store.forward(
                "query_batch_points", collection_name, requests=prepared, **options
            )
            return found

        def run() -> list[rest.QueryResponse]:
            snap = migration.snapshot()
            out: list[rest.QueryResponse | None] = [None] * len(requests)
            grouped: dict[str, list[tuple[int, models.QueryRequest]]] = {}
            mixed: list[tuple[int, dict[str, Any]]] = []
            refused: list[tuple[Any, str]] = []
            for index, request in enumerate(requests):
                arguments = request_options(request)
                query, using = arguments.pop("query", None), arguments.pop("using", None)
                try:
                    decided = self._routed_query(
                        migration, snap, collection_name, query, using, None, arguments
                    )
                    if decided is None:
                        mixed.append((index, {"query": query, **arguments}))
                        continue
                    collection, call = decided
                    grouped.setdefault(collection, []).append((index, as_request(call)))
                except VectorValidationError as exc:
                    refused += [(None, f"request {index}: {p}") for _, p in exc.problems]
            if refused:
                raise VectorValidationError(refused)
            for collection, batch in grouped.items():
                answers = self.store.forward(
                    "query_batch_points", collection, requests=[r for _, r in batch], **options
                )
                for (index, _), answer in zip(batch, answers, strict=True):
                    out[index] = answer
            for index, arguments in mixed:
                query = arguments.pop("query")
                out[index] = self._mixed(snap.plan, query, None, None, None, arguments, snap)
            return [r if r is not None else rest.QueryResponse(points=[]) for r in out]

        return self._with_fresh_routing(migration, run)

    def query_points_groups(
        self,
        collection_name: str,
        group_by: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | Any = None,
        search_params: models.SearchParams | Any = None,
        limit: int = 10,
        group_size: int = 3,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        with_lookup: Any = None,
        lookup_from: Any = None,
        consistency: Any = None,
        shard_key_selector: Any = None,
        timeout: int | None = None,
        **kwargs: Any,
    ) -> rest.GroupsResult:
        """``query_points_groups`` routed as :meth:`query_points` in routed mode (groups cannot be mixed:
        a re-embed over partial coverage searches the points holding the model the routing says).

        Raises:
            VectorValidationError: as :meth:`query_points`.
        """
        options = _explicit(
            "query_points_groups",
            prefetch=prefetch,
            query_filter=query_filter,
            search_params=search_params,
            limit=limit,
            group_size=group_size,
            with_payload=with_payload,
            with_vectors=with_vectors,
            score_threshold=score_threshold,
            with_lookup=with_lookup,
            lookup_from=lookup_from,
            consistency=consistency,
            shard_key_selector=shard_key_selector,
            timeout=timeout,
            **kwargs,
        )
        migration = self._migration_for(collection_name)
        self._check_query_text(query, migration)
        if migration is None:
            if using is not None:
                options["using"] = using
            found: rest.GroupsResult = self.store.forward(
                "query_points_groups",
                collection_name,
                group_by=group_by,
                query=self._embed_unrouted_query(query),
                **options,
            )
            return found

        def run() -> rest.GroupsResult:
            snap = migration.snapshot()
            decided = self._routed_query(migration, snap, collection_name, query, using, "routed", options)
            if decided is None:  # pragma: no cover - routed mode is never mixed
                raise VectorValidationError([(None, "query_points_groups cannot run in mixed mode")])
            collection, call = decided
            result: rest.GroupsResult = self.store.forward(
                "query_points_groups", collection, group_by=group_by, **call
            )
            return result

        return self._with_fresh_routing(migration, run)

    def search_matrix_pairs(
        self,
        collection_name: str,
        query_filter: models.Filter | Any = None,
        limit: int = 3,
        sample: int = 10,
        using: str | None = None,
        consistency: Any = None,
        timeout: int | None = None,
        shard_key_selector: Any = None,
        **kwargs: Any,
    ) -> rest.SearchMatrixPairsResponse:
        """The distance matrix of sampled points (pairs), in the routed vector (``using`` as
        :meth:`query_points` chooses it; a re-embed samples the points holding that model)."""
        result: rest.SearchMatrixPairsResponse = self._matrix(
            "search_matrix_pairs",
            collection_name,
            using,
            _explicit(
                "search_matrix_pairs",
                query_filter=query_filter,
                limit=limit,
                sample=sample,
                consistency=consistency,
                timeout=timeout,
                shard_key_selector=shard_key_selector,
                **kwargs,
            ),
        )
        return result

    def search_matrix_offsets(
        self,
        collection_name: str,
        query_filter: models.Filter | Any = None,
        limit: int = 3,
        sample: int = 10,
        using: str | None = None,
        consistency: Any = None,
        timeout: int | None = None,
        shard_key_selector: Any = None,
        **kwargs: Any,
    ) -> rest.SearchMatrixOffsetsResponse:
        """The distance matrix of sampled points (offsets), in the routed vector, as
        :meth:`search_matrix_pairs`."""
        result: rest.SearchMatrixOffsetsResponse = self._matrix(
            "search_matrix_offsets",
            collection_name,
            using,
            _explicit(
                "search_matrix_offsets",
                query_filter=query_filter,
                limit=limit,
                sample=sample,
                consistency=consistency,
                timeout=timeout,
                shard_key_selector=shard_key_selector,
                **kwargs,
            ),
        )
        return result

    def _matrix(self, method: str, collection_name: str, using: str | None, options: dict[str, Any]) -> Any:
        migration = self._migration_for(collection_name)
        if migration is None:
            if using is not None:
                options["using"] = using
            return self.store.forward(method, collection_name, **options)

        def run() -> Any:
            snap = migration.snapshot()
            decided = self._routed_query(
                migration, snap, collection_name, None, using, "routed", options, has_query=False
            )
            if decided is None:  # pragma: no cover - routed mode is never mixed
                raise VectorValidationError([(None, f"{method} cannot run in mixed mode")])
            collection, call = decided
            return self.store.forward(method, collection, **call)

        return self._with_fresh_routing(migration, run)

    def _mixed(
        self,
        plan: MigrationPlan,
        query: Any,
        missing: MissingPolicy | None,
        read_repair: bool | None,
        embed_budget: int | None,
        kwargs: dict[str, Any],
        snap: Snapshot,
    ) -> rest.QueryResponse:
        if self.inference == "server":
            raise ConfigError(
                "mixed mode rescores candidates with both embeddings of the query, which needs them in this "
                "process: pass mode='routed' (or plan query_mode='routed'), or wrap with inference='local'",
                key="inference",
            )
        text = query_text(query)
        if text is None:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        unsupported = set(kwargs) - {"limit", "query_filter", "with_payload", "score_threshold"}
        if unsupported:
            raise VectorValidationError(
                [(None, f"mixed mode does not take {', '.join(sorted(unsupported))}; use mode='routed'")]
            )
        threshold = kwargs.get("score_threshold")
        # a candidate kept at its source rank has its source score; the others are in the target space
        thresholds = (
            None
            if threshold is None
            else (check_threshold(threshold, plan.source.distance), self._target_threshold(snap, threshold))
        )
        source, target = self.embedder(plan.source), self.embedder(plan.target)
        result = mixed_query(
            self.store,
            plan,
            text,
            embed_source=lambda texts: embed_checked(source, texts, plan.source),
            embed_target=lambda texts: embed_checked(target, texts, plan.target),
            limit=int(kwargs.get("limit", 10)),
            missing=missing or plan.missing_policy,
            read_repair=plan.read_repair if read_repair is None else read_repair,
            oversample=plan.oversample,
            embed_budget=plan.embed_budget if embed_budget is None else embed_budget,
            query_filter=kwargs.get("query_filter"),
            with_payload=kwargs.get("with_payload", True),
            score_threshold=thresholds,
        )
        self.traffic.note(plan.collection, result.uncovered, plan.traffic_queue)
        return rest.QueryResponse(points=result.points)

    def _prepare_query(self, query: Any, spec: ModelSpec, name: str) -> Any:
        if isinstance(query, TEXT_TYPES):
            if self.inference == "server":
                return models.Document(text=query.text, model=spec.model_id)
            return embed_checked(self.embedder(spec), [query.text], spec)[0].tolist()
        if isinstance(query, models.NearestQuery):
            return query.model_copy(update={"nearest": self._prepare_query(query.nearest, spec, name)})
        checked = dense_vector(query, spec, name)
        if isinstance(checked, str):
            raise VectorValidationError([(None, f"query vector: {checked}")])
        return query if checked is None else checked

    def _registered(self, value: Any) -> TypeGuard[models.Document]:
        """Whether ``value`` is a ``models.Document`` (or text object) of a registered embedder: what a
        call on a collection without a migration embeds here rather than leave to qdrant-client."""
        return isinstance(value, TEXT_TYPES) and value.model in self._embedders

    def _embed_unrouted_query(self, query: Any) -> Any:
        """``query`` embedded when it is a Document of a registered embedder (:meth:`_registered`), else
        as it is."""
        if self._registered(query):
            return self._embedders[query.model].embed([query.text])[0].tolist()
        return query

    def query_text(
        self, collection_name: str, text: str, *, limit: int = 10, **kwargs: Any
    ) -> rest.QueryResponse:
        """Search with plain text, embedded with the routed model.

        Raises:
            VectorValidationError: the text is empty.
        """
        if blank(text):
            raise VectorValidationError([(None, "the query text is empty: there is nothing to search for")])
        return self.query_points(
            collection_name, models.Document(text=text, model="lattice"), limit=limit, **kwargs
        )


_WARNED: set[tuple[str, ...]] = set()
_WARNED_LOCK = threading.Lock()


def _warn_once(key: tuple[str, ...], message: str) -> None:
    """Warn (``ScoreThresholdWarning``) once per process for ``key`` (a migration and a kind of warning)."""
    with _WARNED_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(message, ScoreThresholdWarning, stacklevel=2)


def _update_filter(kwargs: dict[str, Any]) -> models.Filter | None:
    """The caller's ``update_filter`` as a REST filter (a gRPC one is converted in place), or ``None``."""
    found = kwargs.get("update_filter")
    if found is None or isinstance(found, models.Filter):
        return found
    kwargs["update_filter"] = converted = GrpcToRest.convert_filter(found)
    return converted


def _numeric(batch: list[_Point], extras: Sequence[dict[str, Any]]) -> list[_Point]:
    """``batch`` as :class:`~lattice_qdrant.store.NumericPoints` when every vector in it is a list (the
    routed vectors: validated lists of numbers, or embedded ones) and no point carries a vector outside the
    migration (passed through as given, it may be anything), so qdrant-client's scan of every value for
    objects to embed is skipped; else ``batch`` as it is (a routed vector left to server-side inference is a
    ``models.Document``: the scan must see it)."""
    if any(extras):
        return batch
    for point in batch:
        vector = point.vector
        if type(vector) is dict:
            if not all(type(value) is list for value in vector.values()):
                return batch
        elif type(vector) is not list:
            return batch
    return NumericPoints(batch)


def _vector_names(batch: Sequence[models.PointVectors]) -> set[str]:
    """The vector names a batch of ``update_vectors`` writes (``""``: the unnamed vector)."""
    return {n for p in batch for n in (p.vector if isinstance(p.vector, dict) else {"": None})}


@dataclass(frozen=True)
class _VectorUpdate:
    """An ``update_vectors`` validated: the roles written, each point's stored text, what to embed."""

    required: tuple[Role, ...]
    texts: list[Any]
    resolution: Resolution


#: The REST operations of ``batch_update_points`` (anything else is a gRPC one, converted).
_REST_OPERATIONS = (
    models.UpsertOperation,
    models.DeleteOperation,
    models.SetPayloadOperation,
    models.OverwritePayloadOperation,
    models.DeletePayloadOperation,
    models.ClearPayloadOperation,
    models.UpdateVectorsOperation,
    models.DeleteVectorsOperation,
)


@functools.cache
def _defaults(method: str) -> dict[str, Any]:
    """``QdrantClient.<method>``'s parameter defaults by name."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(getattr(QdrantClient, method)).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _explicit(method: str, **values: Any) -> dict[str, Any]:
    """The arguments of ``QdrantClient.<method>`` given other than as their defaults: what the wrapper
    passes on (the client applies its defaults to the rest, as it would have)."""
    defaults = _defaults(method)
    given: dict[str, Any] = {}
    for name, value in values.items():
        found = defaults.get(name, inspect.Parameter.empty)
        if not (value is found or (type(value) is type(found) and value == found)):
            given[name] = value
    return given


def _rest_selector(selector: Any) -> Any:
    """A points selector as REST models (a gRPC filter or selector converted)."""
    if isinstance(selector, models.Filter | models.PointIdsList | models.FilterSelector | list | tuple):
        return selector
    name = type(selector).__name__
    if name == "Filter":
        return GrpcToRest.convert_filter(selector)
    if name == "PointsSelector":
        return GrpcToRest.convert_points_selector(selector)
    return selector
