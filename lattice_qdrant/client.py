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
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from qdrant_client import QdrantClient, models
from qdrant_client.http import models as rest

from . import backups
from .coordinator import DEFAULT_REFRESH_INTERVAL, NAME_KIND, Migration, plan_migration
from .embedders import Embedder, check_embedder, embed_checked, embedder_for
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
from .spec import ModelSpec
from .state import QueryRoute, Status, WriteRoute
from .store import (
    CONTROL_COLLECTION,
    MODEL_FIELD,
    VERSION_FIELD,
    RetryPolicy,
    Store,
    open_store,
    stamp_filter,
    stamp_selector,
)

__all__ = ["LatticeClient", "wrap"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TEXT_TYPES = (models.Document,)
_EMPTY_DOCUMENT = "models.Document has empty text"


def _blank(text: Any) -> bool:
    """Whether a text gives an embedder nothing to embed (empty, whitespace, or not a string)."""
    return not isinstance(text, str) or not text.strip()


def wrap(
    client: QdrantClient,
    *,
    embedders: Mapping[str, Embedder] | None = None,
    control_collection: str = CONTROL_COLLECTION,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    retry: RetryPolicy | None = None,
    load_embedders: bool = True,
    store: Store | None = None,
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
    """
    return LatticeClient(
        client,
        embedders=embedders,
        control_collection=control_collection,
        refresh_interval=refresh_interval,
        retry=retry,
        load_embedders=load_embedders,
        store=store,
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
        strategy = Strategy(options.pop("strategy", Strategy.IN_PLACE))
        if strategy == Strategy.REEMBED and target_vector is None:
            target_vector = source_vector
        if strategy == Strategy.BLUE_GREEN:
            target_collection = target_collection or f"{collection}__{target.vector_name}"
            if target_vector is None:
                target_vector = target.vector_name if options.get("copy_source_vector") else source_vector
        try:
            plan = MigrationPlan(
                collection=collection,
                source=source,
                target=target,
                source_vector=source_vector,
                target_vector=target.vector_name if target_vector is None else target_vector,
                strategy=strategy,
                target_collection=target_collection,
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
        migration = Migration(self.store, collection, refresh_interval=self.refresh_interval)
        try:
            migration.snapshot(refresh=True)
        except MigrationNotFoundError:
            alias = self.store.get_record(NAME_KIND, collection)
            if alias is None:
                with self._lock:
                    self._absent[collection] = time.monotonic()
                return None
            # a blue-green alias or target collection: the migration is recorded under the source's name
            migration = Migration(
                self.store, str(alias["collection"]), refresh_interval=self.refresh_interval
            )
            migration.snapshot(refresh=True)
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

        In place, the routed vectors go in one upsert (an upsert replaces the whole point). Blue-green,
        the source vector goes to the source collection and the target vector to the target collection.

        Raises:
            VectorValidationError: a point is missing a routed vector or has a bad one; nothing was
                written.
        """
        structs = _as_point_structs(points)
        migration = self._migration_for(collection_name)
        if migration is None:
            return self.store.upsert(collection_name, self._embed_unrouted(structs), **kwargs)

        def write() -> models.UpdateResult:
            plan = migration.plan
            required = _roles(migration.routing(coverage=0.0).write)
            texts = [(p.payload or {}).get(plan.text_field) for p in structs]
            splits = [_split(p.vector, plan, required) for p in structs]
            roles, extras = self._resolve(migration, [p.id for p in structs], splits, required, texts)
            narrowed = self._back_up_sources(
                migration,
                [p.id for p in structs],
                roles,
                texts,
                required,
                _update_filter(kwargs),
                kwargs.get("update_mode"),
                inserts=True,
            )
            options = kwargs if narrowed is None else {**kwargs, "update_filter": narrowed}
            result: models.UpdateResult | None = None
            for collection, vectors_of, stamp in _destinations(plan, collection_name, required):
                batch = [
                    models.PointStruct(
                        id=p.id,
                        vector=vectors_of(roles[i], extras[i]),
                        payload={
                            **(p.payload or {}),
                            MODEL_FIELD: stamp.model_id,
                            VERSION_FIELD: stamp.version,
                        },
                    )
                    for i, p in enumerate(structs)
                ]
                result = self.store.upsert(collection, batch, **options)
            if result is None:  # pragma: no cover - every route has a destination
                raise StoreError("no destination for the write", collection=collection_name)
            return result

        return self._with_fresh_routing(migration, write)

    def _resolve(
        self,
        migration: Migration,
        ids: Sequence[Any],
        splits: Sequence[_Split],
        required: tuple[str, ...],
        texts: Sequence[Any],
        *,
        fill: Sequence[bool] | None = None,
        hint: str | None = None,
    ) -> tuple[list[dict[str, list[float]]], list[dict[str, Any]]]:
        """Every point's routed vectors by role (``source``/``target``), validated and embedded.

        ``splits`` are the points' vector values as :func:`_split` read them (once, by the caller);
        ``texts`` the text each point can be embedded from when a routed vector is not given (``None``: no
        text). With ``fill``, only the points marked ``True`` need every routed vector. Raises
        :class:`VectorValidationError` listing every bad point.
        """
        plan = migration.plan
        specs = {"source": plan.source, "target": plan.target}
        names = {"source": plan.source_vector, "target": plan.target_vector}
        problems: list[tuple[Any, str]] = []
        roles: list[dict[str, list[float]]] = []
        extras: list[dict[str, Any]] = []
        pending: dict[str, list[tuple[int, str]]] = {role: [] for role in required}
        for index, (pid, split) in enumerate(zip(ids, splits, strict=True)):
            if isinstance(split, str):
                problems.append((pid, split))
                roles.append({})
                extras.append({})
                continue
            given, extra = split
            out: dict[str, list[float]] = {}
            blank: list[str] = []
            must = fill[index] if fill is not None else True
            for role in required:
                spec, name = specs[role], names[role]
                found = given.get(role)
                if found is None:
                    if not must:
                        continue
                    text = texts[index]
                    if isinstance(text, str) and text.strip():
                        pending[role].append((index, text))
                    else:
                        problems.append(
                            (
                                pid,
                                f"missing vector {name!r} ({spec.qualified_id}): "
                                + (
                                    hint
                                    or "give it, a models.Document, or text in the payload field "
                                    f"{plan.text_field!r}"
                                ),
                            )
                        )
                elif isinstance(found, _TEXT_TYPES):
                    if _blank(found.text):
                        # like empty payload text: embedding nothing would write a meaningless vector
                        blank.append(name)
                    else:
                        pending[role].append((index, found.text))
                else:
                    checked = _check_vector(found, spec, name)
                    if isinstance(checked, str):
                        problems.append((pid, checked))
                    else:
                        out[role] = checked
            if blank:  # one problem per point, though a Document may stand for both vectors
                shown = ", ".join(repr(n) for n in dict.fromkeys(blank))
                problems.append(
                    (pid, f"{_EMPTY_DOCUMENT} (vector {shown}); give the text to embed, or the vector")
                )
            roles.append(out)
            extras.append(extra)
        if problems:
            raise VectorValidationError(problems)
        for role, todo in pending.items():
            if todo:
                spec = specs[role]
                embedded = embed_checked(self.embedder(spec), [text for _, text in todo], spec)
                for (index, _), row in zip(todo, embedded, strict=True):
                    roles[index][role] = row.tolist()
        return roles, extras

    def _back_up_sources(
        self,
        migration: Migration,
        ids: Sequence[Any],
        roles: Sequence[dict[str, list[float]]],
        texts: Sequence[Any],
        required: tuple[str, ...],
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        *,
        inserts: bool = False,
    ) -> models.Filter | None:
        """A re-embed's dual-write keeps only the target vector under the shared name: the source vector
        goes into the migration's backup first, as the point's entry, so a restore gives it back.

        A write made conditional by the caller (``update_filter``, or an upsert's ``update_mode``; an
        upsert ``inserts`` missing ids) backs up only the points it would write now, and returns the
        condition to write with: the caller's, narrowed to those points, so no point is written without its
        entry. ``None``: write with the caller's arguments unchanged.
        """
        snap = migration.snapshot()
        plan = snap.plan
        if not plan.reembed or len(required) < 2:
            return None
        entries = {
            pid: (
                role["source"],
                text if isinstance(text, str) else None,
                (plan.source.model_id, plan.source.version),
            )
            for pid, role, text in zip(ids, roles, texts, strict=True)
            if "source" in role
        }
        narrowed: models.Filter | None = None
        if update_filter is not None or update_mode is not None:
            written = self._written_now(plan.collection, ids, update_filter, update_mode, inserts=inserts)
            keys = {_id_key(pid) for pid in written}
            entries = {pid: entry for pid, entry in entries.items() if _id_key(pid) in keys}
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
        existing = {_id_key(r.id) for r in self.store.retrieve(collection, ids, with_payload=False)}
        present = [pid for pid in ids if _id_key(pid) in existing]
        missing = [pid for pid in ids if _id_key(pid) not in existing] if inserts else []
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
            keys = {_id_key(r.id) for r in found}
            matched = [pid for pid in present if _id_key(pid) in keys]
        return matched if update_mode == models.UpdateMode.UPDATE_ONLY else matched + missing

    def _embed_unrouted(self, points: Sequence[models.PointStruct]) -> list[models.PointStruct]:
        """Embed ``models.Document`` values whose ``model`` names a registered embedder.

        Raises:
            VectorValidationError: such a Document has empty text; nothing was written.
        """
        blank = [
            (point.id, f"{_EMPTY_DOCUMENT} (vector {name!r}); give the text to embed, or the vector")
            for point in points
            for name, value in (
                point.vector.items() if isinstance(point.vector, dict) else [("", point.vector)]
            )
            if isinstance(value, _TEXT_TYPES) and value.model in self._embedders and _blank(value.text)
        ]
        if blank:
            raise VectorValidationError(blank)
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
            plan = migration.plan
            required = _roles(migration.routing(coverage=0.0).write)
            splits = [_split(p.vector, plan, required) for p in points]
            touched = [not isinstance(split, str) and bool(split[0]) for split in splits]
            texts: list[Any] = [None] * len(points)
            need = [p.id for p, t in zip(points, touched, strict=True) if t]
            if need and len(required) > 1:
                home = plan.collection if "source" in required else plan.data_collection
                stored = {
                    r.id: (r.payload or {}).get(plan.text_field)
                    for r in self.store.retrieve(home, need, with_payload=[plan.text_field])
                }
                texts = [stored.get(p.id) for p in points]
            hint = (
                "writes go to both vectors during the migration and the point has no text in "
                f"{plan.text_field!r} to embed it from; give both vectors"
            )
            roles, extras = self._resolve(
                migration, [p.id for p in points], splits, required, texts, fill=touched, hint=hint
            )
            # the model that wrote the routed vectors, as an upsert stamps it
            routed = [p.id for i, p in enumerate(points) if roles[i]]
            writes = []
            for collection, vectors_of, stamp in _destinations(plan, collection_name, required):
                batch = [
                    models.PointVectors(id=p.id, vector=vectors_of(roles[i], extras[i]))
                    for i, p in enumerate(points)
                ]
                writes.append((collection, [b for b in batch if b.vector], stamp))
            # a caller's update_filter makes the write conditional: the stamp follows the same condition
            caller = _update_filter(kwargs)
            if caller is not None:
                _check_update_filter(caller, {n for _, batch, _ in writes for n in _vector_names(batch)})
            ids = [p.id for p in points]
            narrowed = self._back_up_sources(migration, ids, roles, texts, required, caller)
            options = kwargs if narrowed is None else {**kwargs, "update_filter": narrowed}
            result: models.UpdateResult | None = None
            for collection, batch, stamp in writes:
                if plan.reembed and batch:
                    # the stamp says which model the shared name holds: with the vectors, in one request
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
        if migration is None or not migration.plan.blue_green:
            return getattr(self.client, method)(collection_name, *args, **kwargs)
        plan = migration.plan
        write = migration.routing(coverage=0.0).write
        targets = {
            WriteRoute.LEGACY: [plan.collection],
            WriteRoute.DUAL_WRITE: [plan.collection, plan.data_collection],
            WriteRoute.TARGET: [plan.data_collection],
        }[write]
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
            isinstance(nearest, _TEXT_TYPES)
            and _blank(nearest.text)
            and (migration is not None or nearest.model in self._embedders)
        ):
            raise VectorValidationError(
                [(None, f"the query's {_EMPTY_DOCUMENT}, so there is nothing to search for; give the text")]
            )
        if migration is None:
            prepared = self._embed_unrouted_query(query)
            if using is not None:
                kwargs["using"] = using
            return self.store.query(collection_name, query=prepared, **kwargs)

        def run() -> rest.QueryResponse:
            plan = migration.plan
            if plan.reembed:
                return self._query_reembed(
                    migration, collection_name, query, using, mode, missing, read_repair, kwargs
                )
            routing = migration.routing()
            chosen = mode or plan.query_mode
            # A vector query cannot be mixed (it is in one model's space): by the plan's default it is
            # routed; asked for explicitly, mixed mode refuses it.
            textual = isinstance(query, _TEXT_TYPES) or (
                isinstance(query, models.NearestQuery) and isinstance(query.nearest, _TEXT_TYPES)
            )
            if (
                chosen == "mixed"
                and (textual or mode == "mixed")
                and using is None
                and routing.write == WriteRoute.DUAL_WRITE
                and (routing.query == QueryRoute.SOURCE)
            ):
                return self._mixed(migration, query, missing, read_repair, kwargs)
            name = using if using is not None else routing.query_vector
            target_side = routing.query == QueryRoute.TARGET if using is None else name == plan.target_vector
            if using is not None and plan.source_vector == plan.target_vector:
                target_side = routing.query == QueryRoute.TARGET  # same name in both: follow the routing
            spec = plan.target if target_side else plan.source
            if name not in (plan.source_vector, plan.target_vector):
                return self.store.query(collection_name, query=query, using=name, **kwargs)
            prepared = self._prepare_query(query, spec, name)
            where = collection_name
            if plan.blue_green:
                where = plan.data_collection if target_side else plan.collection
            return self.store.query(where, query=prepared, using=name, **kwargs)

        return self._with_fresh_routing(migration, run)

    def _query_reembed(
        self,
        migration: Migration,
        collection_name: str,
        query: Any,
        using: str | None,
        mode: Literal["routed", "mixed"] | None,
        missing: MissingPolicy | None,
        read_repair: bool | None,
        kwargs: dict[str, Any],
    ) -> rest.QueryResponse:
        """A query during a re-embed: never compares a query of one model with a vector of the other.

        The stamp says which model a point's vector holds. A text query over partial coverage is mixed
        (both versions' candidates, scored in the target space); at coverage 0 it searches the source-holding
        points with the source embedding, at 100% the target-holding ones with the target embedding. A vector
        (or ``mode="routed"``) searches only the points holding the model the routing says. After finalize
        every point holds the target: a plain target query.
        """
        plan = migration.plan
        name = plan.source_vector
        if using is not None and using != name:
            return self.store.query(collection_name, query=query, using=using, **kwargs)
        snap = migration.snapshot()
        state = snap.state
        if state.finalized or state.status == Status.PLANNED:
            spec = plan.target if state.finalized else plan.source
            return self.store.query(
                collection_name, query=self._prepare_query(query, spec, name), using=name, **kwargs
            )
        textual = isinstance(query, _TEXT_TYPES) or (
            isinstance(query, models.NearestQuery) and isinstance(query.nearest, _TEXT_TYPES)
        )
        if mode == "mixed" and not textual:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        cov = migration.recent_coverage()
        if textual and mode != "routed":
            if 0 < cov.covered < cov.total:
                return self._mixed(migration, query, missing, read_repair, kwargs)
            target_side = cov.total > 0 and cov.covered >= cov.total
            if cov.total == 0:
                target_side = migration.routing(coverage=1.0).query == QueryRoute.TARGET
        else:
            target_side = migration.routing(coverage=cov.fraction).query == QueryRoute.TARGET
        spec = plan.target if target_side else plan.source
        holds_target = stamp_filter(plan.target.model_id, plan.target.version)
        version = holds_target if target_side else models.Filter(must_not=[holds_target])
        user = kwargs.get("query_filter")
        kwargs = {**kwargs, "query_filter": version if user is None else models.Filter(must=[user, version])}
        return self.store.query(
            collection_name, query=self._prepare_query(query, spec, name), using=name, **kwargs
        )

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
        """Search with plain text, embedded with the routed model.

        Raises:
            VectorValidationError: the text is empty.
        """
        if _blank(text):
            raise VectorValidationError([(None, "the query text is empty: there is nothing to search for")])
        return self.query_points(
            collection_name, models.Document(text=text, model="lattice"), limit=limit, **kwargs
        )


def _schema_moved(exc: StoreError) -> bool:
    text = str(exc).lower()
    return "not existing vector" in text or (
        "vector" in text and ("does not exist" in text or "not found" in text)
    )


def _id_key(point_id: Any) -> Any:
    """An id as Qdrant gives it back (an int, or a UUID in canonical form), to compare ids."""
    if isinstance(point_id, int):
        return point_id
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError:
        return str(point_id)


def _update_filter(kwargs: dict[str, Any]) -> models.Filter | None:
    """The caller's ``update_filter`` as a REST filter (a gRPC one is converted in place), or ``None``."""
    found = kwargs.get("update_filter")
    if found is None or isinstance(found, models.Filter):
        return found
    from qdrant_client.conversions.conversion import GrpcToRest

    kwargs["update_filter"] = converted = GrpcToRest.convert_filter(found)
    return converted


def _vector_names(batch: Sequence[models.PointVectors]) -> set[str]:
    """The vector names a batch of ``update_vectors`` writes (``""``: the unnamed vector)."""
    return {n for p in batch for n in (p.vector if isinstance(p.vector, dict) else {"": None})}


def _negated_vectors(flt: models.Filter, negated: bool = False) -> set[str]:
    """Vector names whose ``has_vector`` the filter reads negated (under an odd number of ``must_not``)."""
    out: set[str] = set()

    def listed(value: Any) -> list[Any]:
        return [] if value is None else list(value) if isinstance(value, list) else [value]

    def walk(condition: Any, negated: bool) -> None:
        if isinstance(condition, models.Filter):
            positive = listed(condition.must) + listed(condition.should)
            if condition.min_should is not None:
                positive += condition.min_should.conditions
            for item in positive:
                walk(item, negated)
            for item in listed(condition.must_not):
                walk(item, not negated)
        elif isinstance(condition, models.NestedCondition):
            walk(condition.nested.filter, negated)
        elif isinstance(condition, models.HasVectorCondition) and negated:
            out.add(condition.has_vector)

    walk(flt, negated)
    return out


def _check_update_filter(flt: models.Filter, written: set[str]) -> None:
    """Refuse a caller's ``update_filter`` the model stamp cannot follow.

    The stamp goes, after the vector write, to the points matching the same filter; that is exactly the
    points written unless the filter reads a vector the write sets. Reading one as present (``must``) still
    holds after the write; reading one as missing (``must_not`` ``has_vector``) no longer does for the points
    just written, so they would keep the old model's stamp.
    """
    clash = sorted(_negated_vectors(flt) & written)
    if clash:
        shown = ", ".join(repr(n) for n in clash)
        raise VectorValidationError(
            [
                (
                    None,
                    f"the update_filter requires the vector {shown} to be missing, and this write sets it: "
                    "the model stamp of the points written could not follow the filter; filter on the "
                    f"payload instead (for instance {MODEL_FIELD!r} / {VERSION_FIELD!r})",
                )
            ]
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


_VectorsOf = Callable[[dict[str, list[float]], dict[str, Any]], Any]


def _roles(write: WriteRoute) -> tuple[str, ...]:
    """The roles a write route writes: the source model's vector, the target's, or both."""
    return {
        WriteRoute.LEGACY: ("source",),
        WriteRoute.DUAL_WRITE: ("source", "target"),
        WriteRoute.TARGET: ("target",),
    }[write]


def _destinations(
    plan: MigrationPlan, collection_name: str, required: tuple[str, ...]
) -> list[tuple[str, _VectorsOf, ModelSpec]]:
    """Where a routed write goes: ``(collection, vectors of a point, model to stamp)`` per collection."""
    src, tgt = plan.source_vector, plan.target_vector
    if plan.reembed:
        # one name: the target's vector once writes reach it (the source's went to the backup), else the
        # source's; the unnamed vector is written as a plain list
        role = "target" if "target" in required else "source"

        def shared(roles: dict[str, list[float]], extra: dict[str, Any]) -> Any:
            vector = roles.get(role)
            if vector is None:
                return dict(extra)
            return vector if src == "" else {**extra, src: vector}

        return [(collection_name, shared, plan.target if role == "target" else plan.source)]
    if not plan.blue_green:
        stamp = plan.target if "target" in required else plan.source

        def both(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
            names = {"source": src, "target": tgt}
            return {**extra, **{names[r]: v for r, v in roles.items()}}

        return [(collection_name, both, stamp)]
    out: list[tuple[str, _VectorsOf, ModelSpec]] = []
    if "source" in required:

        def old(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
            return {**extra, **({src: roles["source"]} if "source" in roles else {})}

        out.append((plan.collection, old, plan.source))
    if "target" in required:

        def new(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
            vectors = {tgt: roles["target"]} if "target" in roles else {}
            if plan.copy_source_vector and "source" in roles:
                vectors[src] = roles["source"]
            return vectors

        out.append((plan.data_collection, new, plan.target))
    return out


_Split = tuple[dict[str, Any], dict[str, Any]] | str
"""A point's vectors as ``(values by role, other named vectors)``, or the problem with them."""


def _split(value: Any, plan: MigrationPlan, required: tuple[str, ...]) -> _Split:
    """A point's vector value as ``(values by role, other named vectors)``, or the problem with it."""
    names = {"source": plan.source_vector, "target": plan.target_vector}
    specs = {"source": plan.source, "target": plan.target}

    def by_dimension(vector: Any, roles: Sequence[str]) -> str | None:
        fits = [r for r in roles if specs[r].dimension == len(vector)]
        return fits[0] if len(fits) == 1 else None

    if value is None:
        return {}, {}
    if isinstance(value, _TEXT_TYPES):
        return dict.fromkeys(required, value), {}
    if _is_dense(value):
        role = required[0] if len(required) == 1 else by_dimension(value, required)
        if role is None and plan.reembed:
            return _reembed_ambiguity(plan)
        if role is None:
            shown = " and ".join(repr(names[r]) for r in required)
            return (
                f"a plain vector is ambiguous while writes go to {shown}; give a dict of named vectors "
                "or a models.Document"
            )
        return {role: value}, {}
    if not isinstance(value, dict):
        return f"unsupported vector value of type {type(value).__name__}"
    given: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, item in value.items():
        owners = [r for r in ("source", "target") if names[r] == name]
        if not owners:
            extra[name] = item
            continue
        wanted = [r for r in owners if r in required]
        if not wanted:
            continue  # e.g. the source vector after finalize: it no longer exists
        if len(wanted) == 1:
            given[wanted[0]] = item
        elif isinstance(item, _TEXT_TYPES):
            given.update(dict.fromkeys(wanted, item))
        elif _is_dense(item) and (role := by_dimension(item, wanted)) is not None:
            given[role] = item
        elif plan.reembed:
            return _reembed_ambiguity(plan)
        else:
            return (
                f"vector {name!r} is written by both models during this migration; give a "
                "models.Document (or text) so each model embeds it"
            )
    return given, extra


def _reembed_ambiguity(plan: MigrationPlan) -> str:
    return (
        f"a plain vector is ambiguous while a re-embed writes both models under {plan.source_vector!r} "
        f"(both are {plan.source.dimension}-d): give a models.Document, or leave the vector out and put "
        f"the text in the payload field {plan.text_field!r}, so each model embeds it"
    )


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
