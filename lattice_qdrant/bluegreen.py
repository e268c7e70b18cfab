"""Blue-green's store operations: a new collection for the target model, the copy into it, the alias.

The strategy itself is :class:`~lattice_qdrant.strategies.BlueGreenStrategy`, which decides when each of
these runs; this module only talks to the store. For collections that cannot take a parallel named vector
(a server older than 1.18, a collection whose only vector is the unnamed one, a change of distance,
quantization or HNSW settings, or by choice):

1. ``prepare``: the target collection is created with the target vector (and the source vector when
   ``copy_source_vector``) and the source's payload indexes plus the model indexes; the alias readers use is
   created on the source collection if it does not exist yet.
2. The migration starts: from then on the wrapper writes every point to **both** collections (source
   vector to the old one, target vector to the new one; two requests, so not atomic together) and
   deletes and payload changes reach both.
3. ``copy``: every point's payload (and source vector if asked) is copied into the target collection with
   ``INSERT_ONLY``, so a point the wrapper already wrote there wins; points deleted while the copy ran are
   removed again afterwards. The copy is resumable (its completion is recorded in the control collection).
4. The same backfill engine fills the target vector in the target collection.
5. ``cutover`` records the state, then moves the alias to the target collection (after checking it
   exists: a server applies alias actions one by one); ``rollback`` moves it back. Every lifecycle call
   first puts the alias where the recorded state says, so a switch cut off halfway is repaired by the
   next call.
6. ``finalize`` drops the source collection (after a backup of its vectors, by policy).
7. ``restore`` undoes a finalize: ``recreate_source`` makes the source collection again (its source
   vector and the payload indexes), writes become dual again, every point of the target collection is
   copied back (payload, stamped with the source model), and the backup's vectors are written back.

Readers that query through the alias keep working at every step; the wrapper itself queries the physical
collection the routing names, so it never depends on the alias.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from qdrant_client import models

from .errors import CollectionNotFoundError, StoreError
from .plan import MigrationPlan
from .spec import Distance
from .state import MigrationState, QueryRoute, query_route
from .store import MODEL_FIELD, PAYLOAD_INDEXES, VERSION_FIELD, Store, VectorInfo

__all__ = [
    "clean_up_cancel",
    "copy_back",
    "copy_complete",
    "copy_points",
    "forget_copy",
    "prepare",
    "query_collection",
    "recreate_source",
    "sync_alias",
]

log = logging.getLogger(__name__)

_COPY = "copy"
_SCHEMAS = {t.value: t for t in models.PayloadSchemaType}


def prepare(store: Store, plan: MigrationPlan) -> None:
    """Create the target collection and its payload indexes, and the alias; idempotent."""
    source = store.vectors(plan.collection)
    if plan.source_vector not in source:
        known = ", ".join(repr(n) for n in source) or "none"
        raise StoreError(
            f"the source vector does not exist (vectors: {known})",
            collection=plan.collection,
            vector=plan.source_vector,
        )
    target = plan.target_collection or ""
    vectors = {
        plan.target_vector: VectorInfo(
            plan.target_vector, plan.target.dimension, Distance(plan.target.distance)
        )
    }
    if plan.copy_source_vector:
        src = source[plan.source_vector]
        vectors[plan.source_vector] = VectorInfo(plan.source_vector, src.size, src.distance)
    store.ensure_collection(target, vectors)
    _copy_indexes(store, plan.collection, target)
    if plan.alias:
        current = store.alias_target(plan.alias)
        if current is None:
            store.switch_alias(plan.alias, plan.collection)
        elif current not in (plan.collection, target):
            raise StoreError(
                f"alias {plan.alias!r} points to {current!r}, neither the source nor the target collection",
                collection=plan.collection,
            )


def _copy_indexes(store: Store, origin: str, collection: str) -> None:
    """Give ``collection`` the model indexes and the payload indexes ``origin`` has."""
    indexes = dict(PAYLOAD_INDEXES)
    for field, kind in store.payload_schema(origin).items():
        if kind in _SCHEMAS:
            indexes.setdefault(field, _SCHEMAS[kind])
    store.ensure_payload_indexes(collection, indexes)


def recreate_source(store: Store, plan: MigrationPlan, vector: VectorInfo) -> bool:
    """After finalize: create the source collection again, with ``vector`` (the backed-up source vector)
    and the target collection's payload indexes; idempotent. Returns whether it was created.

    Other named vectors the source collection had are not re-created: the backup holds only the
    source vector.

    Raises:
        CollectionNotFoundError: the target collection does not exist (nothing to restore into).
    """
    target = plan.data_collection
    if not store.collection_exists(target):
        raise CollectionNotFoundError(
            "the target collection does not exist, so the source collection cannot be rebuilt from it",
            collection=target,
        )
    created = store.ensure_collection(plan.collection, {vector.name: vector})
    _copy_indexes(store, target, plan.collection)
    return created


def copy_back(store: Store, plan: MigrationPlan, *, page_size: int = 256) -> int:
    """Copy every point of the target collection into the re-created source collection; resumable.

    Payload only, stamped with the source model (the backup's vectors are written next); ``INSERT_ONLY``,
    so a point the wrapper dual-wrote meanwhile wins. Points deleted while the copy ran are removed again.
    Returns the number of points copied or found already there.
    """
    target = plan.data_collection
    stamp = {MODEL_FIELD: plan.source.model_id, VERSION_FIELD: plan.source.version}
    copied = 0
    for page in store.iter_points(target, page_size=page_size, with_payload=True):
        points = [
            models.PointStruct(id=r.id, vector={}, payload={**(r.payload or {}), **stamp}) for r in page
        ]
        store.upsert(plan.collection, points, update_mode=models.UpdateMode.INSERT_ONLY)
        copied += len(points)
    removed = _remove_deleted(store, target, plan.collection, page_size)
    log.info(
        "%s: copied %d points back from %s (%d deleted meanwhile removed)",
        plan.collection,
        copied,
        target,
        removed,
    )
    return copied


def copy_complete(store: Store, plan: MigrationPlan) -> bool:
    """Whether the copy into the target collection has finished (read-only)."""
    record = store.get_record(_COPY, plan.collection)
    return bool(record and record.get("complete") and record.get("target") == plan.target_collection)


def copy_points(store: Store, plan: MigrationPlan, *, page_size: int = 256) -> int:
    """Copy every point's payload (and source vector if asked) into the target collection; resumable.

    Writes are ``INSERT_ONLY``, so what the wrapper already dual-wrote is never overwritten. Points
    deleted from the source while the copy ran are deleted from the target afterwards. Returns the
    number of points the copy inserted or found already there.
    """
    target = plan.target_collection or ""
    if not store.collection_exists(target):
        raise CollectionNotFoundError("the target collection does not exist; start first", collection=target)
    store.put_record(
        _COPY, plan.collection, {"collection": plan.collection, "target": target, "complete": False}
    )
    wanted: bool | list[str] = [plan.source_vector] if plan.copy_source_vector else False
    copied = 0
    for page in store.iter_points(
        plan.collection, page_size=page_size, with_payload=True, with_vectors=wanted
    ):
        points = []
        for record in page:
            vector: dict[str, Any] = {}
            if plan.copy_source_vector:
                raw = record.vector
                value = raw.get(plan.source_vector) if isinstance(raw, dict) else raw
                if value is not None:
                    vector[plan.source_vector] = value
            points.append(models.PointStruct(id=record.id, vector=vector, payload=record.payload or {}))
        store.upsert(target, points, update_mode=models.UpdateMode.INSERT_ONLY)
        copied += len(points)
    removed = _remove_deleted(store, plan.collection, target, page_size)
    store.put_record(
        _COPY,
        plan.collection,
        {
            "collection": plan.collection,
            "target": target,
            "complete": True,
            "copied": copied,
            "at": time.time(),
        },
    )
    log.info(
        "%s: copied %d points into %s (%d deleted meanwhile removed)",
        plan.collection,
        copied,
        target,
        removed,
    )
    return copied


def forget_copy(store: Store, plan: MigrationPlan) -> None:
    """Forget the recorded copy into the target collection (a new plan's copy starts afresh)."""
    store.delete_record(_COPY, plan.collection)


def clean_up_cancel(store: Store, plan: MigrationPlan, state: MigrationState, *, drop_target: bool) -> None:
    """After cancel: the alias back on the source collection, the copy forgotten (dual-writes have stopped,
    so a kept target collection is no longer a complete copy) and the target collection dropped unless
    kept. Idempotent: a cancel cut off halfway is finished by running it again."""
    sync_alias(store, plan, state)
    forget_copy(store, plan)
    if drop_target:
        store.drop_collection(plan.data_collection)


def _remove_deleted(store: Store, origin: str, copy: str, page_size: int) -> int:
    """Delete from ``copy`` the points ``origin`` no longer has (deleted while a copy ran)."""
    removed = 0
    for page in store.iter_points(copy, page_size=page_size, with_payload=False):
        ids = [r.id for r in page]
        present = {r.id for r in store.retrieve(origin, ids, with_payload=False)}
        gone = [pid for pid in ids if pid not in present]
        if gone:
            store.forward("delete", copy, points_selector=models.PointIdsList(points=gone))
            removed += len(gone)
    return removed


def query_collection(plan: MigrationPlan, route: QueryRoute) -> str:
    """The physical collection a query routed to ``route`` searches."""
    return (plan.target_collection or plan.collection) if route == QueryRoute.TARGET else plan.collection


def sync_alias(store: Store, plan: MigrationPlan, state: MigrationState) -> bool:
    """Point the alias where the state says queries go; return whether it had to move.

    Before the source collection is dropped (finalize) the alias follows the query route; afterwards it
    stays on the target collection.
    """
    if not plan.alias:
        return False
    route = query_route(state, 0.0, plan.policy)
    if state.finalized:
        route = QueryRoute.TARGET
    wanted = query_collection(plan, route)
    if store.alias_target(plan.alias) == wanted:
        return False
    store.switch_alias(plan.alias, wanted)
    log.info("%s: alias %r now points to %s", plan.collection, plan.alias, wanted)
    return True
