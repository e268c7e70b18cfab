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

from pydantic import ValidationError
from qdrant_client import QdrantClient, models
from qdrant_client.conversions.conversion import GrpcToRest
from qdrant_client.http import models as rest

from . import backups
from .coordinator import DEFAULT_REFRESH_INTERVAL, Migration, find_migration, plan_migration
from .embedders import Embedder, EmbedderSettings, check_embedder, embed_checked, embedder_for
from .errors import (
    EmbedderError,
    MigrationError,
    MigrationNotFoundError,
    PlanError,
    StoreError,
    VectorValidationError,
)
from .mixed import MissingPolicy, mixed_query
from .plan import MigrationPlan, PlanOptions, Strategy
from .registry import ModelRegistry
from .routing import (
    EMPTY_DOCUMENT,
    TEXT_TYPES,
    MixedQuery,
    PassThrough,
    Resolution,
    Snapshot,
    as_point_structs,
    blank,
    check_update_filter,
    check_vector,
    id_key,
    is_dense,
    query_text,
    resolve,
    roles,
    route,
    schema_moved,
    split,
)
from .spec import ModelSpec
from .store import (
    CONTROL_COLLECTION,
    MODEL_FIELD,
    VERSION_FIELD,
    RetryPolicy,
    Store,
    open_store,
    stamp_selector,
)
from .strategies import strategy_class

__all__ = ["LatticeClient", "wrap"]

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    """
    return LatticeClient(
        client,
        embedders=embedders,
        control_collection=control_collection,
        refresh_interval=refresh_interval,
        retry=retry,
        load_embedders=load_embedders,
        store=store,
        embedder_settings=embedder_settings,
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
        store: Store | None = None,
        embedder_settings: EmbedderSettings | None = None,
    ) -> None:
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
                "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
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
            if not schema_moved(str(exc)):
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

        In place, the routed vectors go in one upsert (an upsert replaces the whole point). Blue-green,
        the source vector goes to the source collection and the target vector to the target collection.

        Raises:
            VectorValidationError: a point is missing a routed vector or has a bad one; nothing was
                written.
        """
        structs = as_point_structs(points)
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.upsert(collection_name, self._embed_unrouted(structs), **kwargs)

        def write() -> models.UpdateResult:
            snap = migration.snapshot()
            strategy, plan = migration.strategy_of(snap), snap.plan
            required = roles(route(snap, 0.0).write)
            ids = [p.id for p in structs]
            texts = [(p.payload or {}).get(plan.text_field) for p in structs]
            splits = [split(p.vector, plan, required, ambiguous=strategy.ambiguity()) for p in structs]
            resolved = self._embedded(plan, resolve(plan, ids, splits, required, texts))
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
                stamp = destination.stamp
                batch = [
                    models.PointStruct(
                        id=p.id,
                        vector=destination.vectors_of(resolved.roles[i], resolved.extras[i]),
                        payload={
                            **(p.payload or {}),
                            MODEL_FIELD: stamp.model_id,
                            VERSION_FIELD: stamp.version,
                        },
                    )
                    for i, p in enumerate(structs)
                ]
                result = self.store.upsert(destination.collection, batch, **options)
            if result is None:  # pragma: no cover - every route has a destination
                raise StoreError("no destination for the write", collection=collection_name)
            return result

        return self._with_fresh_routing(migration, write)

    def _embedded(self, plan: MigrationPlan, resolved: Resolution) -> Resolution:
        """``resolved`` with what it left to embed embedded, each text with its role's model."""
        specs = {"source": plan.source, "target": plan.target}
        for role, todo in resolved.pending.items():
            if todo:
                spec = specs[role]
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

    def _embed_unrouted(self, points: Sequence[models.PointStruct]) -> list[models.PointStruct]:
        """Embed ``models.Document`` values whose ``model`` names a registered embedder.

        Raises:
            VectorValidationError: such a Document has empty text; nothing was written.
        """
        empty = [
            (point.id, f"{EMPTY_DOCUMENT} (vector {name!r}); give the text to embed, or the vector")
            for point in points
            for name, value in (
                point.vector.items() if isinstance(point.vector, dict) else [("", point.vector)]
            )
            if isinstance(value, TEXT_TYPES) and value.model in self._embedders and blank(value.text)
        ]
        if empty:
            raise VectorValidationError(empty)
        out = []
        for point in points:
            vector = point.vector
            if isinstance(vector, TEXT_TYPES) and vector.model in self._embedders:
                vector = self._embedders[vector.model].embed([vector.text])[0].tolist()
            elif isinstance(vector, dict):
                vector = {
                    name: (
                        self._embedders[value.model].embed([value.text])[0].tolist()
                        if isinstance(value, TEXT_TYPES) and value.model in self._embedders
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

        An ``update_filter`` makes the write conditional, and the model stamp follows the same condition:
        only the points written are stamped (a re-embed backs up only those). A filter requiring a vector
        this write sets to be missing (``must_not`` ``has_vector``) is refused, since the stamp, applied
        after the vectors, could not tell the points written; filter on the payload instead.

        Raises:
            VectorValidationError: a point or the ``update_filter`` is refused; nothing was written.
        """
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.update_vectors(collection_name, points, **kwargs)

        def write() -> models.UpdateResult:
            snap = migration.snapshot()
            strategy, plan = migration.strategy_of(snap), snap.plan
            required = roles(route(snap, 0.0).write)
            splits = [split(p.vector, plan, required, ambiguous=strategy.ambiguity()) for p in points]
            touched = [not isinstance(part, str) and bool(part[0]) for part in splits]
            texts: list[Any] = [None] * len(points)
            need = [p.id for p, t in zip(points, touched, strict=True) if t]
            if need and len(required) > 1:
                home = plan.collection if "source" in required else strategy.data_collection
                stored = {
                    r.id: (r.payload or {}).get(plan.text_field)
                    for r in self.store.retrieve(home, need, with_payload=[plan.text_field])
                }
                texts = [stored.get(p.id) for p in points]
            hint = (
                "writes go to both vectors during the migration and the point has no text in "
                f"{plan.text_field!r} to embed it from; give both vectors"
            )
            ids = [p.id for p in points]
            resolved = self._embedded(
                plan, resolve(plan, ids, splits, required, texts, fill=touched, hint=hint)
            )
            # the model that wrote the routed vectors, as an upsert stamps it
            routed = [p.id for i, p in enumerate(points) if resolved.roles[i]]
            writes = []
            for destination in strategy.destinations(collection_name, required):
                batch = [
                    models.PointVectors(
                        id=p.id, vector=destination.vectors_of(resolved.roles[i], resolved.extras[i])
                    )
                    for i, p in enumerate(points)
                ]
                writes.append((destination, [b for b in batch if b.vector]))
            # a caller's update_filter makes the write conditional: the stamp follows the same condition
            caller = _update_filter(kwargs)
            if caller is not None:
                written = {n for _, batch in writes for n in _vector_names(batch)}
                check_update_filter(caller, written, (MODEL_FIELD, VERSION_FIELD))
            entries = strategy.source_entries(ids, resolved.roles, texts, required)
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
                    result = self.store.update_vectors(collection, batch, **options)
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

    def delete(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        """Delete points; while a blue-green migration dual-writes, from both collections."""
        return self._forward("delete", collection_name, *args, **kwargs)

    def set_payload(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        """Set payload keys; while a blue-green migration dual-writes, in both collections."""
        return self._forward("set_payload", collection_name, *args, **kwargs)

    def overwrite_payload(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        """Replace payloads; while a blue-green migration dual-writes, in both collections."""
        return self._forward("overwrite_payload", collection_name, *args, **kwargs)

    def delete_payload(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        """Delete payload keys; while a blue-green migration dual-writes, in both collections."""
        return self._forward("delete_payload", collection_name, *args, **kwargs)

    def clear_payload(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        """Clear payloads; while a blue-green migration dual-writes, in both collections."""
        return self._forward("clear_payload", collection_name, *args, **kwargs)

    def _forward(self, method: str, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        migration = self._migration_for(collection_name)
        if migration is None:
            return getattr(self.client, method)(collection_name, *args, **kwargs)
        snap = migration.snapshot()
        targets = migration.strategy_of(snap).forwards(route(snap, 0.0).write)
        if targets is None:  # one collection holds both models: the call is the client's, unchanged
            return getattr(self.client, method)(collection_name, *args, **kwargs)
        result: Any = None
        for collection in targets:
            result = self.store.forward(method, collection, *args, **kwargs)
        return result

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
            VectorValidationError: the query vector does not fit the routed model, mixed mode got a
                vector instead of text, or the query text is empty.
        """
        migration = self._migration_for(collection_name)
        nearest = query.nearest if isinstance(query, models.NearestQuery) else query
        if (
            isinstance(nearest, TEXT_TYPES)
            and blank(nearest.text)
            and (migration is not None or nearest.model in self._embedders)
        ):
            raise VectorValidationError(
                [(None, f"the query's {EMPTY_DOCUMENT}, so there is nothing to search for; give the text")]
            )
        if migration is None:
            prepared = self._embed_unrouted_query(query)
            if using is not None:
                kwargs["using"] = using
            return self.store.query(collection_name, query=prepared, **kwargs)

        def run() -> rest.QueryResponse:
            snap = migration.snapshot()
            strategy, plan = migration.strategy_of(snap), snap.plan
            coverage = migration.recent_coverage() if strategy.query_needs_coverage(snap, using) else None
            decided = strategy.query_plan(
                snap, coverage, collection_name, textual=query_text(query) is not None, mode=mode, using=using
            )
            if isinstance(decided, MixedQuery):
                return self._mixed(plan, query, missing, read_repair, kwargs)
            if isinstance(decided, PassThrough):
                return self.store.query(decided.collection, query=query, using=decided.using, **kwargs)
            spec = plan.target if decided.role == "target" else plan.source
            options = dict(kwargs)
            if decided.restriction is not None:
                user = options.get("query_filter")
                options["query_filter"] = (
                    decided.restriction if user is None else models.Filter(must=[user, decided.restriction])
                )
            prepared = self._prepare_query(query, spec, decided.using)
            return self.store.query(decided.collection, query=prepared, using=decided.using, **options)

        return self._with_fresh_routing(migration, run)

    def _mixed(
        self,
        plan: MigrationPlan,
        query: Any,
        missing: MissingPolicy | None,
        read_repair: bool | None,
        kwargs: dict[str, Any],
    ) -> rest.QueryResponse:
        text = query_text(query)
        if text is None:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        unsupported = set(kwargs) - {"limit", "query_filter", "with_payload"}
        if unsupported:
            raise VectorValidationError(
                [(None, f"mixed mode does not take {', '.join(sorted(unsupported))}; use mode='routed'")]
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
            query_filter=kwargs.get("query_filter"),
            with_payload=kwargs.get("with_payload", True),
        )
        return rest.QueryResponse(points=result.points)

    def _prepare_query(self, query: Any, spec: ModelSpec, name: str) -> Any:
        if isinstance(query, TEXT_TYPES):
            return embed_checked(self.embedder(spec), [query.text], spec)[0].tolist()
        if isinstance(query, models.NearestQuery):
            return query.model_copy(update={"nearest": self._prepare_query(query.nearest, spec, name)})
        if is_dense(query):
            checked = check_vector(query, spec, name)
            if isinstance(checked, str):
                raise VectorValidationError([(None, f"query vector: {checked}")])
            return checked
        return query

    def _embed_unrouted_query(self, query: Any) -> Any:
        if isinstance(query, TEXT_TYPES) and query.model in self._embedders:
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


def _update_filter(kwargs: dict[str, Any]) -> models.Filter | None:
    """The caller's ``update_filter`` as a REST filter (a gRPC one is converted in place), or ``None``."""
    found = kwargs.get("update_filter")
    if found is None or isinstance(found, models.Filter):
        return found
    kwargs["update_filter"] = converted = GrpcToRest.convert_filter(found)
    return converted


def _vector_names(batch: Sequence[models.PointVectors]) -> set[str]:
    """The vector names a batch of ``update_vectors`` writes (``""``: the unnamed vector)."""
    return {n for p in batch for n in (p.vector if isinstance(p.vector, dict) else {"": None})}
