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
* picks ``using`` for queries from the routing state, embeds query text with the matching model, and
  refuses a query vector whose dimension does not fit the routed model.

Collections without a migration, and every other method of the client, pass through unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from qdrant_client.http import models as rest

from .coordinator import DEFAULT_REFRESH_INTERVAL, Migration, plan_migration
from .embedders import Embedder, check_embedder, embed_checked, embedder_for
from .errors import MigrationNotFoundError, StoreError, VectorValidationError
from .mixed import MissingPolicy, mixed_query
from .plan import MigrationPlan
from .registry import ModelRegistry
from .spec import ModelSpec
from .state import QueryRoute, WriteRoute
from .store import CONTROL_COLLECTION, MODEL_FIELD, VERSION_FIELD, RetryPolicy, Store

__all__ = ["LatticeClient", "wrap"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TEXT_TYPES = (models.Document,)


def wrap(
    client: QdrantClient,
    *,
    embedders: Mapping[str, Embedder] | None = None,
    control_collection: str = CONTROL_COLLECTION,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    retry: RetryPolicy | None = None,
    load_embedders: bool = True,
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
    """
    return LatticeClient(
        client,
        embedders=embedders,
        control_collection=control_collection,
        refresh_interval=refresh_interval,
        retry=retry,
        load_embedders=load_embedders,
    )


class LatticeClient:
    """A ``QdrantClient`` whose writes and queries follow the migration of each collection.

    Use :func:`wrap` to build one. Attributes the wrapper does not define are the wrapped client's.
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
    ) -> None:
        self.client = client
        self.store = Store(client, control_collection=control_collection, retry=retry)
        self.registry = ModelRegistry(self.store)
        self.refresh_interval = refresh_interval
        self.load_embedders = load_embedders
        self._embedders: dict[str, Embedder] = dict(embedders or {})
        self._built: dict[str, Embedder] = {}
        self._migrations: dict[str, Migration] = {}
        self._absent: dict[str, float] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Everything the wrapper does not route is the wrapped client's, unchanged.
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"LatticeClient({self.client!r})"

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
                from .errors import EmbedderError

                raise EmbedderError(
                    f"no embedder for {spec.qualified_id}; pass embedders={{{spec.model_id!r}: ...}} "
                    "to wrap()"
                )
            found = embedder_for(spec)
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
        text_field: str = "text",
        cutover_threshold: float = 0.99,
        query_threshold: float | None = None,
        rollback_window: float = 86400.0,
    ) -> Migration:
        """Plan moving ``collection`` from ``source`` to ``target``; nothing changes until ``start``.

        Registers both models and records the plan in Qdrant. ``target_vector`` defaults to the target
        spec's :attr:`~lattice_qdrant.spec.ModelSpec.vector_name`.
        """
        plan = MigrationPlan(
            collection=collection,
            source=source,
            target=target,
            source_vector=source_vector,
            target_vector=target_vector or target.vector_name,
            text_field=text_field,
            cutover_threshold=cutover_threshold,
            query_threshold=query_threshold,
            rollback_window=rollback_window,
        )
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
        migration = Migration(self.store, collection, refresh_interval=self.refresh_interval)
        try:
            migration.snapshot(refresh=True)
        except MigrationNotFoundError:
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
            if not _schema_moved(exc):
                raise
            before = migration.snapshot().epoch
            if migration.snapshot(refresh=True).epoch == before:
                raise
            log.info("%s: routing changed under us, retrying once", migration.collection)
            return call()

    # ----------------------------------------------------------------- writes

    def upsert(
        self,
        collection_name: str,
        points: models.Batch | Sequence[models.PointStruct],
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Upsert points, routed and validated as the collection's migration requires.

        Raises:
            VectorValidationError: a point is missing a routed vector or has a bad one; nothing was
                written.
        """
        structs = _as_point_structs(points)
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.upsert(collection_name, self._embed_unrouted(structs), **kwargs)

        def write() -> models.UpdateResult:
            prepared = self._route_points(migration, structs)
            return self.store.upsert(collection_name, prepared, **kwargs)

        return self._with_fresh_routing(migration, write)

    def _route_points(
        self, migration: Migration, points: Sequence[models.PointStruct]
    ) -> list[models.PointStruct]:
        plan = migration.plan
        routing = migration.routing(coverage=0.0)
        required = routing.write_vectors
        specs = {plan.source_vector: plan.source, plan.target_vector: plan.target}
        problems: list[tuple[Any, str]] = []
        vectors: list[dict[str, Any]] = []
        pending: dict[str, list[tuple[int, str]]] = {name: [] for name in required}
        for index, point in enumerate(points):
            given = _named(point.vector, required)
            if isinstance(given, str):
                problems.append((point.id, given))
                vectors.append({})
                continue
            out: dict[str, Any] = {}
            for name, value in given.items():
                if name in specs and name not in required:
                    # e.g. the source vector after finalize: it no longer exists in the collection.
                    continue
                out[name] = value
            payload = point.payload or {}
            for name in required:
                spec = specs[name]
                value = out.get(name)
                if value is None:
                    text = payload.get(plan.text_field)
                    if isinstance(text, str) and text.strip():
                        pending[name].append((index, text))
                    else:
                        problems.append(
                            (
                                point.id,
                                f"missing vector {name!r} ({spec.qualified_id}): give it, a "
                                f"models.Document, or text in the payload field {plan.text_field!r}",
                            )
                        )
                elif isinstance(value, _TEXT_TYPES):
                    pending[name].append((index, value.text))
                else:
                    checked = _check_vector(value, spec, name)
                    if isinstance(checked, str):
                        problems.append((point.id, checked))
                    else:
                        out[name] = checked
            vectors.append(out)
        if problems:
            raise VectorValidationError(problems)
        for name, items in pending.items():
            if not items:
                continue
            spec = specs[name]
            embedded = embed_checked(self.embedder(spec), [text for _, text in items], spec)
            for (index, _), row in zip(items, embedded, strict=True):
                vectors[index][name] = row.tolist()
        stamp = plan.target if routing.write != WriteRoute.LEGACY else plan.source
        return [
            models.PointStruct(
                id=point.id,
                vector=vectors[index],
                payload={
                    **(point.payload or {}),
                    MODEL_FIELD: stamp.model_id,
                    VERSION_FIELD: stamp.version,
                },
            )
            for index, point in enumerate(points)
        ]

    def _embed_unrouted(self, points: Sequence[models.PointStruct]) -> list[models.PointStruct]:
        """Embed ``models.Document`` values whose ``model`` names a registered embedder."""
        out = []
        for point in points:
            vector = point.vector
            if isinstance(vector, _TEXT_TYPES) and vector.model in self._embedders:
                vector = self._embedders[vector.model].embed([vector.text])[0].tolist()
            elif isinstance(vector, dict):
                vector = {
                    name: (
                        self._embedders[value.model].embed([value.text])[0].tolist()
                        if isinstance(value, _TEXT_TYPES) and value.model in self._embedders
                        else value
                    )
                    for name, value in vector.items()
                }
            out.append(point if vector is point.vector else point.model_copy(update={"vector": vector}))
        return out

    def update_vectors(
        self,
        collection_name: str,
        points: Sequence[models.PointVectors],
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Update named vectors, keeping both in step while writes are dual.

        While dual-writing, a point whose update gives one of the two routed vectors gets the other one
        embedded from its stored text, so the two never disagree; without text the batch is rejected.
        """
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.update_vectors(collection_name, points, **kwargs)

        def write() -> models.UpdateResult:
            return self.store.update_vectors(
                collection_name, self._route_vector_updates(migration, points), **kwargs
            )

        return self._with_fresh_routing(migration, write)

    def _route_vector_updates(
        self, migration: Migration, points: Sequence[models.PointVectors]
    ) -> list[models.PointVectors]:
        plan = migration.plan
        required = migration.routing(coverage=0.0).write_vectors
        specs = {plan.source_vector: plan.source, plan.target_vector: plan.target}
        problems: list[tuple[Any, str]] = []
        updates: list[dict[str, Any]] = []
        need_text: dict[str, list[int]] = {}
        pending: dict[str, list[tuple[int, str]]] = {}
        for index, point in enumerate(points):
            given = _named(point.vector, required)
            if isinstance(given, str):
                problems.append((point.id, given))
                updates.append({})
                continue
            out: dict[str, Any] = {}
            for name, value in given.items():
                spec = specs.get(name)
                if spec is None:
                    out[name] = value
                elif name not in required:
                    continue
                elif isinstance(value, _TEXT_TYPES):
                    pending.setdefault(name, []).append((index, value.text))
                else:
                    checked = _check_vector(value, spec, name)
                    if isinstance(checked, str):
                        problems.append((point.id, checked))
                    else:
                        out[name] = checked
            touched = set(given) & set(required)
            if touched:
                for name in required:
                    if name not in given:
                        need_text.setdefault(name, []).append(index)
            updates.append(out)
        if need_text:
            ids = sorted({points[i].id for idxs in need_text.values() for i in idxs}, key=str)
            records = self.store.retrieve(migration.collection, ids, with_payload=[plan.text_field])
            texts = {r.id: (r.payload or {}).get(plan.text_field) for r in records}
            for name, idxs in need_text.items():
                for index in idxs:
                    text = texts.get(points[index].id)
                    if isinstance(text, str) and text.strip():
                        pending.setdefault(name, []).append((index, text))
                    else:
                        problems.append(
                            (
                                points[index].id,
                                f"missing vector {name!r}: writes go to both vectors during the "
                                f"migration and the point has no text in {plan.text_field!r} to "
                                "embed it from",
                            )
                        )
        if problems:
            raise VectorValidationError(problems)
        for name, items in pending.items():
            spec = specs[name]
            embedded = embed_checked(self.embedder(spec), [text for _, text in items], spec)
            for (index, _), row in zip(items, embedded, strict=True):
                updates[index][name] = row.tolist()
        return [models.PointVectors(id=point.id, vector=updates[index]) for index, point in enumerate(points)]

    # ----------------------------------------------------------------- queries

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        *,
        using: str | None = None,
        mode: Literal["routed", "mixed"] | None = None,
        missing: MissingPolicy | None = None,
        read_repair: bool | None = None,
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
            mode: ``"routed"`` or ``"mixed"`` (default: the plan's ``query_mode``). Mixed mode, before
                cutover, rescores candidates of both vectors in the target space (needs a
                ``models.Document``; see :mod:`lattice_qdrant.mixed`); once queries are routed to the
                target it is the same as routed.
            missing: mixed mode's policy for candidates without a target vector (default: the plan's).
            read_repair: mixed mode writes vectors embedded on the fly back (default: the plan's).
            **kwargs: passed to ``query_points`` (``limit``, ``query_filter``, ``with_payload``, ...).

        Raises:
            VectorValidationError: the query vector does not fit the routed model, or mixed mode got a
                vector instead of text.
        """
        migration = self._migration_for(collection_name)
        if migration is None:
            prepared = self._embed_unrouted_query(query)
            if using is not None:
                kwargs["using"] = using
            return self.store.query(collection_name, query=prepared, **kwargs)

        def run() -> rest.QueryResponse:
            plan = migration.plan
            routing = migration.routing()
            chosen = mode or plan.query_mode
            if (
                chosen == "mixed"
                and using is None
                and routing.write == WriteRoute.DUAL_WRITE
                and (routing.query == QueryRoute.SOURCE)
            ):
                return self._mixed(migration, query, missing, read_repair, kwargs)
            name = using if using is not None else routing.query_vector
            specs = {plan.source_vector: plan.source, plan.target_vector: plan.target}
            spec = specs.get(name)
            prepared = query if spec is None else self._prepare_query(query, spec, name)
            return self.store.query(collection_name, query=prepared, using=name, **kwargs)

        return self._with_fresh_routing(migration, run)

    def _mixed(
        self,
        migration: Migration,
        query: Any,
        missing: MissingPolicy | None,
        read_repair: bool | None,
        kwargs: dict[str, Any],
    ) -> rest.QueryResponse:
        text = query.text if isinstance(query, _TEXT_TYPES) else None
        if isinstance(query, models.NearestQuery) and isinstance(query.nearest, _TEXT_TYPES):
            text = query.nearest.text
        if text is None:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        unsupported = set(kwargs) - {"limit", "query_filter", "with_payload"}
        if unsupported:
            raise VectorValidationError(
                [(None, f"mixed mode does not take {', '.join(sorted(unsupported))}; use mode='routed'")]
            )
        plan = migration.plan
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
            query_filter=kwargs.get("query_filter"),
            with_payload=kwargs.get("with_payload", True),
        )
        return rest.QueryResponse(points=result.points)

    def _prepare_query(self, query: Any, spec: ModelSpec, name: str) -> Any:
        if isinstance(query, _TEXT_TYPES):
            return embed_checked(self.embedder(spec), [query.text], spec)[0].tolist()
        if isinstance(query, models.NearestQuery):
            return query.model_copy(update={"nearest": self._prepare_query(query.nearest, spec, name)})
        if _is_dense(query):
            checked = _check_vector(query, spec, name)
            if isinstance(checked, str):
                raise VectorValidationError([(None, f"query vector: {checked}")])
            return checked
        return query

    def _embed_unrouted_query(self, query: Any) -> Any:
        if isinstance(query, _TEXT_TYPES) and query.model in self._embedders:
            return self._embedders[query.model].embed([query.text])[0].tolist()
        return query

    def query_text(
        self, collection_name: str, text: str, *, limit: int = 10, **kwargs: Any
    ) -> rest.QueryResponse:
        """Search with plain text, embedded with the routed model."""
        return self.query_points(
            collection_name, models.Document(text=text, model="lattice"), limit=limit, **kwargs
        )


def _schema_moved(exc: StoreError) -> bool:
    text = str(exc).lower()
    return "not existing vector" in text or (
        "vector" in text and ("does not exist" in text or "not found" in text)
    )


def _is_dense(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(x, int | float | np.floating | np.integer) for x in value)
    )


def _check_vector(value: Any, spec: ModelSpec, name: str) -> list[float] | str:
    """The vector as a list of floats, or a problem naming the vector and what is wrong."""
    try:
        array: NDArray[np.float64] = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"vector {name!r} is not a list of numbers"
    if array.ndim != 1:
        return f"vector {name!r} is not a flat list of numbers (shape {array.shape})"
    if array.shape[0] != spec.dimension:
        return (
            f"vector {name!r} has {array.shape[0]} dimensions, but {spec.qualified_id} has {spec.dimension}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        return f"vector {name!r} has a non-finite value at index {bad}"
    return [float(x) for x in array]


def _named(vector: Any, required: Sequence[str]) -> dict[str, Any] | str:
    """The point's vectors by name, or a problem when they cannot be read as such."""
    if vector is None:
        return {}
    if isinstance(vector, dict):
        return dict(vector)
    if isinstance(vector, _TEXT_TYPES):
        return dict.fromkeys(required, vector)
    if _is_dense(vector):
        if len(required) == 1:
            return {required[0]: vector}
        names = " and ".join(repr(n) for n in required)
        return (
            f"a plain vector is ambiguous while writes go to {names}; give a dict of named vectors "
            "or a models.Document"
        )
    return f"unsupported vector value of type {type(vector).__name__}"


def _as_point_structs(
    points: models.Batch | Sequence[models.PointStruct],
) -> list[models.PointStruct]:
    if not isinstance(points, models.Batch):
        return list(points)
    ids = list(points.ids)
    payloads = list(points.payloads) if points.payloads is not None else [None] * len(ids)
    raw = points.vectors
    if isinstance(raw, dict):
        per_point: list[Any] = [{name: raw[name][i] for name in raw} for i in range(len(ids))]
    else:
        per_point = list(raw)
    return [
        models.PointStruct(id=pid, vector=vec, payload=payload)
        for pid, vec, payload in zip(ids, per_point, payloads, strict=True)
    ]
