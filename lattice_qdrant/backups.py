"""Vector backups: keep the vectors a destructive step removes, and put them back on request.

Before a step that destroys vectors (finalize dropping the source named vector, a re-embed under the same
vector name, a model version bump that keeps the id and dimension) :func:`create_backup` copies the
vector of every point, with the point's id, its text and its model payload fields, into a **backup
collection**; :func:`restore` writes them back.

Where backups live, and why there
    Each backup is its own Qdrant collection, ``{collection}__backup__{backup_id}``, on the same server as
    the collection it protects. It needs no extra infrastructure (no bucket, no credentials, no local disk
    that one machine of a fleet has and another has not), it is covered by the same access control and
    the same server backups as the data, it survives the process that made it, writes to it stream page by
    page, and it can be queried: a filter on the backup's payload picks the points to roll back. Its one
    named vector ``vector`` has the size of the backed-up vector. A Cosine vector is normalised here
    and stored under the ``Dot`` distance: the ranking is the same, but a Cosine collection re-normalises
    every vector it receives, in float32, which may move the last bit and break the checksum, while a Dot
    collection stores exactly the bits that were hashed. Each backup point has the original point's id
    and the payload ``{"text", "embedding_model_id", "embedding_version", "model"}`` (plus any ``fields``
    asked for), where ``model`` is the qualified id of the model that made the vector. The fields a
    restore filters on (``entry``, ``model``, ``embedding_model_id``, ``embedding_version``) have payload
    indexes, so a server in strict mode accepts the filters; an older backup gets them on its first restore.

The manifest
    A control record (kind ``backup``, key the backup id) written **before** the first point is copied,
    with ``complete`` false, and rewritten at the end with the count, the checksum and ``complete`` true.
    A backup whose manifest says it is incomplete was cut off (or is being deleted): restore refuses it.
    The checksum is order-independent and computed while streaming: for each point, the first 8 bytes of
    SHA-256 over the id, a NUL and the float32 vector (L2-normalised for Cosine), summed modulo 2**64.

Guarantees
    * **Flat memory.** Backup, restore and verification hold one page of points at a time, whatever the
      collection's size (ids named by the caller are the only exception: they are the caller's already).
    * **Nothing fresher is clobbered.** A vector is written back only to a point that still exists and
      still holds the text it held at backup time, and (unless ``force``) does not hold the vector yet.
      Points changed or deleted since are reported, never fatal. Qdrant applies an ``update_vectors`` batch
      point by point, so a point deleted during the restore fails the call after earlier points were
      written: the batch is written again without it, which the conditions make harmless.
    * **Resumable.** A restore killed at any moment is simply run again: points already holding the vector
      are counted as ``already`` and left alone.
    * **Verified.** A full restore checks the backup's count before writing and its checksum while
      reading; every restore reads each written page back, so a point that should hold the vector and
      does not is reported (``verified`` is false).

A backup is not a point-in-time snapshot of a live collection: each point is copied as one consistent
(vector, text, model) triple, but points written during the backup may or may not be in it.

Entries written later (a re-embed)
    During a same-name re-embed every write overwrites a point's source vector, so the wrapper puts the
    source vector it was given into the migration's backup as that point's entry (:func:`record_entries`),
    replacing an older one. Such an entry is marked (payload ``entry``: ``"replaced"`` when it took the
    place of an entry of the backup as made, with ``replaces`` holding that entry's checksum term;
    ``"added"`` for a point the backup did not hold), so the manifest's count and checksum still verify the
    backup as made: ``count`` = entries not ``"added"``, ``checksum`` = the terms of unmarked entries plus the
    ``replaces`` of ``"replaced"`` ones.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .errors import MigrationError, RollbackWindowOpenError, StoreError
from .spec import Distance
from .store import MODEL_FIELD, PAYLOAD_INDEXES, VERSION_FIELD, Store, VectorInfo

__all__ = [
    "BACKUP_VECTOR",
    "Checksum",
    "IdSample",
    "Manifest",
    "RestoreReport",
    "backup_collection_name",
    "canonical_vector",
    "create_backup",
    "delete_backup",
    "get_backup",
    "list_backups",
    "record_entries",
    "restore",
    "verify_backup",
]

log = logging.getLogger(__name__)

_KIND = "backup"
#: The one named vector of a backup collection.
BACKUP_VECTOR = "vector"
#: Payload keys of a backup point; extra ``fields`` may not use them.
_RESERVED = ("text", MODEL_FIELD, VERSION_FIELD, "model", "entry", "replaces")
#: How many ids a report keeps of each kind of skipped point (the counts are exact).
_ID_SAMPLE = 100
_MASK = 2**64 - 1
#: Payload key of an entry written after the backup was made, and its values (see the module docstring).
_ENTRY = "entry"
_REPLACED = "replaced"
_ADDED = "added"
_REPLACES = "replaces"
#: The payload indexes of a backup collection: a restore filters on ``entry`` and may select by model, and a
#: server in strict mode (``unindexed_filtering_retrieve=false``) refuses filters on unindexed fields.
_BACKUP_INDEXES: dict[str, models.PayloadSchemaType] = {
    **PAYLOAD_INDEXES,
    "model": models.PayloadSchemaType.KEYWORD,
    _ENTRY: models.PayloadSchemaType.KEYWORD,
}

PointId = int | str


def backup_collection_name(collection: str, backup_id: str) -> str:
    """The collection holding a backup's vectors."""
    return f"{collection}__backup__{backup_id}"


def _new_backup_id(now: float) -> str:
    """A short id that sorts by creation time: ``20261122T003512Z-3fa9`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(2)


def canonical_vector(values: Sequence[float] | NDArray[Any], distance: Distance) -> NDArray[np.float32]:
    """The float32 form of a vector that backups store and hash (L2-normalised for Cosine).

    Servers and local mode may hand back a Cosine vector normalised or not (local mode, after reopening a
    ``path=`` store); normalising first makes both give the same vector.
    """
    vector = np.asarray(values, dtype=np.float64)
    if distance == Distance.COSINE:
        norm = float(np.linalg.norm(vector))
        if norm > 0.0:
            vector = vector / norm
    return vector.astype(np.float32)


def _term(point_id: PointId | uuid.UUID, vector: NDArray[np.float32]) -> int:
    """One point's checksum term: the first 8 bytes of SHA-256 over its id, a NUL and its float32 vector."""
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    digest = hashlib.sha256(str(_id_key(point_id)).encode("utf-8") + b"\0" + data).digest()
    return int.from_bytes(digest[:8], "big")


def _stored_distance(distance: Distance) -> Distance:
    # A Cosine collection re-normalises what it receives (in float32); Dot stores the bits given.
    return Distance.DOT if distance == Distance.COSINE else distance


class Checksum:
    """An order-independent checksum of ``(point id, vector)`` pairs, computed while streaming.

    Each pair adds the first 8 bytes (big-endian) of SHA-256 over the id as text (an integer, or a UUID in
    lower-case canonical form), a NUL byte and the little-endian float32 vector; the sum is kept modulo
    2**64. Any order of the same pairs gives the same checksum; changing one value of one vector changes it.
    """

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, point_id: PointId | uuid.UUID, vector: NDArray[np.float32]) -> None:
        """Add one point (``vector`` already in :func:`canonical_vector` form)."""
        self.add_term(_term(point_id, vector))

    def add_term(self, term: int) -> None:
        """Add one point's term (as :func:`_term` computes it)."""
        self.total = (self.total + term) & _MASK
        self.count += 1

    def add_entry(self, record: models.Record, vector: NDArray[np.float64] | None) -> None:
        """Add a backup entry's share of the backup as made (module docstring: entries written later)."""
        payload = record.payload or {}
        entry = payload.get(_ENTRY)
        if entry == _ADDED:
            return
        if entry == _REPLACED:
            self.add_term(int(str(payload.get(_REPLACES)), 16))
        elif vector is not None:
            self.add(record.id, vector.astype(np.float32))

    @property
    def hexdigest(self) -> str:
        """The checksum as 16 hex digits."""
        return f"{self.total:016x}"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, as recorded in the control collection.

    Attributes:
        collection: the collection the vectors came from.
        backup_id: the backup's id (sorts by creation time).
        backup_collection: the collection holding the backed-up vectors.
        vector: the named vector backed up.
        model: qualified id of the model that made the vectors.
        dimension: size of the vectors.
        distance: distance of the backed-up named vector (what a restore re-creates).
        count: points in the backup (when complete).
        checksum: order-independent checksum of ids and vectors (see :class:`Checksum`).
        reason: why the backup was made (``finalize``, ``re-embed``, ...).
        created_at: unix time the backup started.
        complete: false while the backup is written (or deleted): such a backup cannot be restored.
        text_field: payload field of the original points holding the text.
        skipped: points of the collection without the vector, not in the backup.
        fields: extra payload fields copied into the backup (to select points on restore).
        completed_at: unix time the backup finished.
    """

    collection: str
    backup_id: str
    backup_collection: str
    vector: str
    model: str
    dimension: int
    distance: Distance
    count: int
    checksum: str
    reason: str
    created_at: float
    complete: bool
    text_field: str
    skipped: int = 0
    fields: tuple[str, ...] = ()
    completed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the manifest record's payload)."""
        return {
            "collection": self.collection,
            "backup_id": self.backup_id,
            "backup_collection": self.backup_collection,
            "vector": self.vector,
            "model": self.model,
            "dimension": self.dimension,
            "distance": self.distance.value,
            "count": self.count,
            "checksum": self.checksum,
            "reason": self.reason,
            "created_at": self.created_at,
            "complete": self.complete,
            "text_field": self.text_field,
            "skipped": self.skipped,
            "fields": list(self.fields),
            "completed_at": self.completed_at,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict` (extra keys of the control record are ignored).

        Raises:
            MigrationError: the record is not a readable manifest.
        """
        try:
            completed_at = payload.get("completed_at")
            return cls(
                collection=str(payload["collection"]),
                backup_id=str(payload["backup_id"]),
                backup_collection=str(payload["backup_collection"]),
                vector=str(payload["vector"]),
                model=str(payload["model"]),
                dimension=int(payload["dimension"]),
                distance=Distance(payload["distance"]),
                count=int(payload["count"]),
                checksum=str(payload["checksum"]),
                reason=str(payload.get("reason", "")),
                created_at=float(payload["created_at"]),
                complete=bool(payload["complete"]),
                text_field=str(payload.get("text_field", "text")),
                skipped=int(payload.get("skipped", 0)),
                fields=tuple(str(f) for f in payload.get("fields", ())),
                completed_at=None if completed_at is None else float(completed_at),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MigrationError(
                f"the backup record {payload.get('backup_id', payload.get('key'))!r} is not a readable "
                f"manifest ({type(exc).__name__}: {exc})"
            ) from exc


@dataclass(frozen=True)
class IdSample:
    """How many points fell in a category, and the first of their ids."""

    count: int = 0
    ids: tuple[PointId, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"count": self.count, "ids": list(self.ids)}


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did.

    Attributes:
        backup_id: the backup restored from.
        collection: the collection written to.
        vector: the named vector written.
        expected: backup points selected (the manifest's count for a full restore).
        restored: points that got their vector back in this run.
        already: points that held the vector already (a resumed restore), left alone.
        skipped_changed: points whose text changed since the backup: not clobbered.
        skipped_missing: points deleted since the backup.
        unrestored: points that still hold their backup text but lack the vector after the write (a
            concurrent writer removed it): run the restore again.
        not_in_backup: ids asked for that the backup does not hold (or the filter excluded).
        vector_created: whether the named vector was re-created on the collection.
        checksum_ok: whether the backup's checksum matched while reading it (full restores only).
        verified: every selected point was read back after its write and holds the vector, unless it is
            reported as changed or deleted since (``unrestored`` is empty). A full restore has also
            matched the backup's count and checksum against the manifest (a mismatch raises).
        embedded: points the backup could not serve (changed or inserted since) embedded afresh with the
            source model afterwards (``Migration.restore`` given the source model's embedder).
    """

    backup_id: str
    collection: str
    vector: str
    expected: int
    restored: int
    already: int
    skipped_changed: IdSample
    skipped_missing: IdSample
    unrestored: IdSample
    not_in_backup: IdSample
    vector_created: bool
    checksum_ok: bool | None
    verified: bool
    embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "backup_id": self.backup_id,
            "collection": self.collection,
            "vector": self.vector,
            "expected": self.expected,
            "restored": self.restored,
            "already": self.already,
            "skipped_changed": self.skipped_changed.to_dict(),
            "skipped_missing": self.skipped_missing.to_dict(),
            "unrestored": self.unrestored.to_dict(),
            "not_in_backup": self.not_in_backup.to_dict(),
            "vector_created": self.vector_created,
            "checksum_ok": self.checksum_ok,
            "verified": self.verified,
            "embedded": self.embedded,
        }


@dataclass
class _Ids:
    """Mutable twin of :class:`IdSample` while a restore runs."""

    count: int = 0
    ids: list[PointId] = field(default_factory=list)

    def add(self, point_id: PointId) -> None:
        self.count += 1
        if len(self.ids) < _ID_SAMPLE:
            self.ids.append(point_id)

    def frozen(self) -> IdSample:
        return IdSample(self.count, tuple(self.ids))


# ----------------------------------------------------------------------------------- helpers


def _vector_of(record: models.Record, name: str) -> NDArray[np.float64] | None:
    """The record's dense vector ``name``, or ``None`` (absent, sparse or a multivector)."""
    vectors = record.vector
    value = vectors.get(name) if isinstance(vectors, dict) else vectors if name == "" else None
    if not isinstance(value, list):
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except ValueError:  # a ragged multivector
        return None
    return array if array.ndim == 1 else None


def _text_of(payload: dict[str, Any] | None, text_field: str) -> str | None:
    value = (payload or {}).get(text_field)
    return value if isinstance(value, str) else None


def _same_text(payload: dict[str, Any] | None, text_field: str, text: str | None) -> bool:
    """Whether a point's current payload holds the backup's text (``None``: no text, as ``is_empty``)."""
    value = (payload or {}).get(text_field)
    if text is None:
        return value is None or value == []
    return value == text


def _id_key(point_id: Any) -> PointId:
    """An id as Qdrant gives it back: an int, or a UUID in canonical lower-case form."""
    if isinstance(point_id, int):
        return point_id
    if isinstance(point_id, uuid.UUID):
        return str(point_id)
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError:
        return str(point_id)


# ----------------------------------------------------------------------------------- backups


def create_backup(
    store: Store,
    collection: str,
    vector: str,
    *,
    model: str,
    text_field: str = "text",
    reason: str = "",
    page_size: int = 256,
    fields: Sequence[str] = (),
    clock: Callable[[], float] = time.time,
) -> Manifest:
    """Back up one named vector of every point of ``collection``, streaming, into a new backup.

    The manifest is recorded (incomplete) before the first point is copied and completed at the end, so a
    backup cut off halfway is recognised and refused by :func:`restore`. Points without the vector are
    skipped and counted (``Manifest.skipped``).

    Args:
        store: the store adapter.
        collection: the collection whose vectors are backed up.
        vector: the named vector to back up.
        model: qualified id of the model that made the vectors (``ModelSpec.qualified_id``).
        text_field: payload field holding the text (a restore only writes back to unchanged texts).
        reason: why the backup is made (shown by :func:`list_backups`).
        page_size: points read and written at a time (memory stays one page).
        fields: extra payload fields to copy, so that a restore can select points by them.
        clock: source of unix time.

    Returns:
        the completed manifest.

    Raises:
        StoreError: the collection or the vector does not exist.
        MigrationError: ``fields`` names a payload key the backup uses itself.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    clash = sorted(set(fields) & set(_RESERVED))
    if clash:
        raise MigrationError(
            f"cannot copy payload field(s) {', '.join(map(repr, clash))} into a backup: the backup uses "
            f"those keys itself ({', '.join(_RESERVED)})"
        )
    extra = tuple(dict.fromkeys(f for f in fields if f != text_field))
    vectors = store.vectors(collection)
    if vector not in vectors:
        known = ", ".join(repr(n) for n in vectors) or "none"
        raise StoreError(
            f"the vector to back up is not in the collection (vectors: {known}; '' is the unnamed one)",
            collection=collection,
            vector=vector,
        )
    info = vectors[vector]
    started = clock()
    backup_id = _new_backup_id(started)
    while store.get_record(_KIND, backup_id) is not None or store.collection_exists(
        backup_collection_name(collection, backup_id)
    ):
        backup_id = _new_backup_id(started)  # same second, same random suffix: draw again
    manifest = Manifest(
        collection=collection,
        backup_id=backup_id,
        backup_collection=backup_collection_name(collection, backup_id),
        vector=vector,
        model=model,
        dimension=info.size,
        distance=info.distance,
        count=0,
        checksum=Checksum().hexdigest,
        reason=reason,
        created_at=started,
        complete=False,
        text_field=text_field,
        fields=extra,
    )
    # The manifest first: a crash from here on leaves a backup that says it is incomplete.
    store.put_record(_KIND, backup_id, manifest.to_dict())
    store.ensure_collection(
        manifest.backup_collection,
        {BACKUP_VECTOR: VectorInfo(BACKUP_VECTOR, info.size, _stored_distance(info.distance))},
    )
    store.ensure_payload_indexes(manifest.backup_collection, _BACKUP_INDEXES)
    checksum = Checksum()
    skipped = 0
    for page in store.iter_points(
        collection,
        page_size=page_size,
        with_payload=list(dict.fromkeys([text_field, MODEL_FIELD, VERSION_FIELD, *extra])),
        with_vectors=[vector] if vector else True,
    ):
        points: list[models.PointStruct] = []
        for record in page:
            values = _vector_of(record, vector)
            if values is None:
                skipped += 1
                continue
            canonical = canonical_vector(values, info.distance)
            checksum.add(record.id, canonical)
            payload = record.payload or {}
            body: dict[str, Any] = {f: payload[f] for f in extra if f in payload}
            body.update(
                {
                    "text": _text_of(payload, text_field),
                    MODEL_FIELD: payload.get(MODEL_FIELD),
                    VERSION_FIELD: payload.get(VERSION_FIELD),
                    "model": model,
                }
            )
            points.append(
                models.PointStruct(id=record.id, vector={BACKUP_VECTOR: canonical.tolist()}, payload=body)
            )
        if points:
            store.upsert(manifest.backup_collection, points)
    done = replace(
        manifest,
        count=checksum.count,
        checksum=checksum.hexdigest,
        skipped=skipped,
        complete=True,
        completed_at=clock(),
    )
    store.put_record(_KIND, backup_id, done.to_dict())
    log.info(
        "%s: backed up %d %r vectors to %s (%d points without it skipped)",
        collection,
        done.count,
        vector,
        done.backup_collection,
        skipped,
    )
    return done


def record_entries(
    store: Store,
    manifest: Manifest,
    entries: Mapping[Any, tuple[Sequence[float] | NDArray[Any], str | None, tuple[str, int]]],
) -> None:
    """Make these vectors the points' entries in a backup, replacing older ones (a re-embed's writes).

    While a same-name re-embed runs, a write through the wrapper overwrites a point's source vector with its
    target vector; the source vector it was given goes here first, so a restore can give every point,
    including those written during the migration, its source vector back. The entries are marked (module
    docstring), so the manifest still verifies the backup as it was made.

    Args:
        store: the store adapter.
        manifest: the backup (complete).
        entries: point id -> ``(vector, text, (model_id, version))``: the source vector, the point's text
            (a restore writes back only while the point still holds it) and the model that made the vector.

    Raises:
        MigrationError: the backup is incomplete.
    """
    if not entries:
        return
    if not manifest.complete:
        raise MigrationError(f"backup {manifest.backup_id!r} is incomplete: no entries can be added to it")
    ids = [_id_key(pid) for pid in entries]
    before = {
        _id_key(r.id): r
        for r in store.retrieve(
            manifest.backup_collection, ids, with_payload=[_ENTRY, _REPLACES], with_vectors=[BACKUP_VECTOR]
        )
    }
    points = []
    for pid, (vector, text, (model_id, version)) in entries.items():
        key = _id_key(pid)
        old = before.get(key)
        marks: dict[str, Any] = {_ENTRY: _ADDED, _REPLACES: None}
        if old is not None:
            payload = old.payload or {}
            if payload.get(_ENTRY) in (_ADDED, _REPLACED):
                marks = {_ENTRY: payload[_ENTRY], _REPLACES: payload.get(_REPLACES)}
            else:
                stored = _vector_of(old, BACKUP_VECTOR)
                if stored is not None:
                    marks = {_ENTRY: _REPLACED, _REPLACES: f"{_term(old.id, stored.astype(np.float32)):016x}"}
        canonical = canonical_vector(vector, manifest.distance)
        points.append(
            models.PointStruct(
                id=key,
                vector={BACKUP_VECTOR: canonical.tolist()},
                payload={
                    "text": text,
                    MODEL_FIELD: model_id,
                    VERSION_FIELD: version,
                    "model": manifest.model,
                    **marks,
                },
            )
        )
    store.upsert(manifest.backup_collection, points)


def list_backups(store: Store, collection: str | None = None) -> list[Manifest]:
    """Every backup (of one collection, or of all), newest first, complete or not. Read-only."""
    manifests = []
    for record in store.list_records(_KIND, collection=collection):
        try:
            manifests.append(Manifest.from_payload(record))
        except MigrationError as exc:
            log.warning("skipping an unreadable backup record: %s", exc)
    return sorted(manifests, key=lambda m: (m.created_at, m.backup_id), reverse=True)


def get_backup(store: Store, backup_id: str) -> Manifest:
    """One backup's manifest (read-only).

    Raises:
        MigrationError: no backup has that id.
    """
    record = store.get_record(_KIND, backup_id)
    if record is None:
        raise MigrationError(f"there is no backup {backup_id!r}; list_backups shows the backups there are")
    return Manifest.from_payload(record)


def delete_backup(
    store: Store,
    backup_id: str,
    *,
    force: bool = False,
    protected: Callable[[Manifest], str | None] | None = None,
) -> None:
    """Delete a backup: its collection, then its manifest.

    The manifest is first marked incomplete, so a deletion cut off halfway leaves a backup that restore
    refuses and that can be deleted again.

    Args:
        store: the store adapter.
        backup_id: the backup to delete.
        force: delete it even when ``protected`` says it is still needed.
        protected: returns why the backup is still needed (a rollback window that may restore from it),
            or ``None``.

    Raises:
        MigrationError: no backup has that id.
        RollbackWindowOpenError: ``protected`` gave a reason and ``force`` is false.
    """
    manifest = get_backup(store, backup_id)
    reason = protected(manifest) if protected is not None else None
    if reason and not force:
        raise RollbackWindowOpenError(
            f"backup {backup_id!r} of {manifest.collection!r} is still needed: {reason}; "
            "pass force=True (--force) to delete it anyway"
        )
    if manifest.complete:
        store.put_record(_KIND, backup_id, replace(manifest, complete=False).to_dict())
    store.drop_collection(manifest.backup_collection)
    store.delete_record(_KIND, backup_id)
    log.info("%s: deleted backup %s", manifest.collection, backup_id)


def _stored_checksum(store: Store, manifest: Manifest, page_size: int) -> Checksum:
    checksum = Checksum()
    for page in store.iter_points(
        manifest.backup_collection,
        page_size=page_size,
        with_payload=[_ENTRY, _REPLACES],
        with_vectors=[BACKUP_VECTOR],
    ):
        for record in page:
            checksum.add_entry(record, _vector_of(record, BACKUP_VECTOR))
    return checksum


def verify_backup(store: Store, backup_id: str, *, page_size: int = 256) -> bool:
    """Whether a backup is complete and its collection still holds what the manifest says. Read-only.

    Recomputes the count and the checksum over the backup collection, streaming.

    Raises:
        MigrationError: no backup has that id.
    """
    manifest = get_backup(store, backup_id)
    if not manifest.complete:
        log.warning("backup %s is incomplete", backup_id)
        return False
    if not store.collection_exists(manifest.backup_collection):
        log.warning("backup %s: its collection %s is gone", backup_id, manifest.backup_collection)
        return False
    checksum = _stored_checksum(store, manifest, page_size)
    ok = checksum.count == manifest.count and checksum.hexdigest == manifest.checksum
    if not ok:
        log.warning(
            "backup %s: holds %d points with checksum %s; the manifest says %d points, %s",
            backup_id,
            checksum.count,
            checksum.hexdigest,
            manifest.count,
            manifest.checksum,
        )
    return ok


# ----------------------------------------------------------------------------------- restore


@dataclass
class _Entry:
    vector: NDArray[np.float64]
    text: str | None
    model_id: Any
    version: Any


class _Restore:
    """One restore run: the counters and the page-by-page write."""

    def __init__(self, store: Store, manifest: Manifest, *, force: bool, model_fields: bool) -> None:
        self.store = store
        self.collection = manifest.collection
        self.vector = manifest.vector
        self.text_field = manifest.text_field
        self.force = force
        self.model_fields = model_fields
        self.distance = manifest.distance
        self.seen = 0
        self.restored = 0
        self.already = 0
        self.changed = _Ids()
        self.missing = _Ids()
        self.unrestored = _Ids()

    def _current(self, ids: Sequence[PointId]) -> dict[PointId, models.Record]:
        records = self.store.retrieve(
            self.collection,
            ids,
            with_payload=[self.text_field],
            with_vectors=[self.vector] if self.vector else True,
        )
        return {_id_key(r.id): r for r in records}

    def _holds(self, record: models.Record) -> bool:
        return _vector_of(record, self.vector) is not None  # named, or the unnamed one ("")

    def page(self, entries: dict[PointId, _Entry]) -> None:
        """Restore one page of backup points."""
        self.seen += len(entries)
        current = self._current(list(entries))
        todo: dict[PointId, _Entry] = {}
        for pid, entry in entries.items():
            record = current.get(pid)
            if record is None:
                self.missing.add(pid)
            elif not _same_text(record.payload, self.text_field, entry.text):
                self.changed.add(pid)
            elif self._holds(record) and not self.force:
                self.already += 1
            else:
                todo[pid] = entry
        if not todo:
            return
        if self.model_fields:
            self._write_stamped(todo)
            return
        self._write(todo)
        if not todo:
            return
        # Read the page back: the conditions may have left points alone that changed in between.
        holding = self._classify(todo, set())
        self.restored += len(holding)

    def _classify(self, todo: dict[PointId, _Entry], effective: set[PointId]) -> list[PointId]:
        """After a write: the ids holding the vector (or in ``effective``); the others are counted as
        deleted, changed or unrestored."""
        after = self._current(list(todo))
        holding: list[PointId] = []
        for pid, entry in todo.items():
            record = after.get(pid)
            if record is None:
                self.missing.add(pid)
            elif not _same_text(record.payload, self.text_field, entry.text):
                self.changed.add(pid)
            elif pid in effective or (not self.model_fields and self._holds(record)):
                holding.append(pid)
            else:
                self.unrestored.add(pid)
        return holding

    def _write(self, todo: dict[PointId, _Entry]) -> None:
        """Conditional ``update_vectors`` of ``todo``; points deleted meanwhile leave it, reported.

        Each point only if it still holds the text it held at backup time, and (unless forced) still lacks
        the vector: a write made since the backup wins.
        """
        kept = {
            _id_key(pid)
            for pid in self.store.update_if_unchanged(
                self.collection,
                self.text_field,
                {pid: (entry.text, {self.vector: entry.vector}) for pid, entry in todo.items()},
                lacking=None if self.force else self.vector,
            )
        }
        for pid in [p for p in todo if p not in kept]:
            todo.pop(pid)
            self.missing.add(pid)

    def _write_stamped(self, todo: dict[PointId, _Entry]) -> None:
        """The vector and the model fields as at backup time, together (a same-name re-embed, where the
        fields say which model the vector holds); an entry without model fields removes them."""
        groups: dict[tuple[Any, Any], dict[PointId, _Entry]] = {}
        for pid, entry in todo.items():
            groups.setdefault((entry.model_id, entry.version), {})[pid] = entry
        effective: set[PointId] = set()
        for (model_id, version), group in groups.items():
            stamp = None if model_id is None and version is None else (str(model_id), int(version))
            written = self.store.write_stamped(
                self.collection,
                self.vector,
                self.text_field,
                {pid: (entry.text, entry.vector) for pid, entry in group.items()},
                stamp,
                distance=self.distance,
            )
            effective.update(_id_key(pid) for pid in written)
        self.restored += len(self._classify(todo, effective))


def _selection(ids: Sequence[Any] | None, flt: models.Filter | None) -> models.Filter | None:
    must: list[models.Condition] = []
    if ids is not None:
        must.append(models.HasIdCondition(has_id=[_id_key(i) for i in ids]))
    if flt is not None:
        must.append(flt)
    return models.Filter(must=must) if must else None


def restore(
    store: Store,
    backup_id: str,
    *,
    ids: Sequence[Any] | None = None,
    flt: models.Filter | None = None,
    force: bool = False,
    restore_model_fields: bool = False,
    page_size: int = 256,
) -> RestoreReport:
    """Write a backup's vectors back into its collection, streaming; safe to kill and run again.

    Re-creates the named vector if it was dropped, then writes each backed-up vector back to its point,
    only if the point still exists and still holds the text it held at backup time. Without ``force`` a
    point that holds the vector already is left alone (counted as ``already``): that makes a restore
    resumable, and is what a restore after finalize wants (the vector was dropped). To roll back points
    whose vector still exists (a re-embed under the same vector name), pass ``force=True``.

    Args:
        store: the store adapter.
        backup_id: the backup to restore from.
        ids: restore only these points.
        flt: restore only the backup points matching this filter; it is evaluated on the **backup's**
            payload: ``text``, ``embedding_model_id``, ``embedding_version``, ``model`` and the ``fields``
            copied when the backup was made.
        force: overwrite the vector of points that hold one.
        restore_model_fields: also write back the points' ``embedding_model_id`` / ``embedding_version``
            as they were at backup time, together with the vector (for a same-name re-embed, where the
            restored vector replaces the one those fields describe); a point that had none loses them.
        page_size: backup points read and written at a time.

    Returns:
        what was restored, skipped and verified; ``verified`` is false when points were left without
        the vector (running the restore again finishes them).

    Raises:
        MigrationError: the backup is unknown, incomplete, or its collection does not hold what its
            manifest says.
        VectorConflictError: the collection has the vector with another size or distance.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    manifest = get_backup(store, backup_id)
    if not manifest.complete:
        raise MigrationError(
            f"backup {backup_id!r} of {manifest.collection!r} is incomplete (it was cut off while being "
            "made, or is being deleted) and cannot be restored from; make a new backup, and delete this "
            "one"
        )
    full = ids is None and flt is None
    if not store.collection_exists(manifest.backup_collection):
        raise MigrationError(
            f"backup {backup_id!r}: its collection {manifest.backup_collection!r} does not exist any more"
        )
    # a backup made before the backup collections had all their indexes gets them on its first restore
    store.ensure_payload_indexes(manifest.backup_collection, _BACKUP_INDEXES)
    if full:
        added = models.Filter(must=[models.FieldCondition(key=_ENTRY, match=models.MatchValue(value=_ADDED))])
        held = store.count(manifest.backup_collection) - store.count(manifest.backup_collection, added)
        if held != manifest.count:
            raise MigrationError(
                f"backup {backup_id!r} is damaged: its collection holds {held} points, its manifest "
                f"says {manifest.count}; nothing was restored"
            )
    created = store.ensure_vector_shape(
        manifest.collection, manifest.vector, manifest.dimension, manifest.distance
    )
    run = _Restore(store, manifest, force=force, model_fields=restore_model_fields)
    checksum = Checksum()
    wanted = None if ids is None else {_id_key(i) for i in ids}
    found: set[PointId] = set()
    for page in store.iter_points(
        manifest.backup_collection,
        flt=_selection(ids, flt),
        page_size=page_size,
        with_payload=["text", MODEL_FIELD, VERSION_FIELD, _ENTRY, _REPLACES],
        with_vectors=[BACKUP_VECTOR],
    ):
        entries: dict[PointId, _Entry] = {}
        for record in page:
            values = _vector_of(record, BACKUP_VECTOR)
            if values is None:
                raise MigrationError(
                    f"backup {backup_id!r} is damaged: point {record.id!r} has no vector in "
                    f"{manifest.backup_collection!r}"
                )
            pid = _id_key(record.id)
            if full:
                checksum.add_entry(record, values)
            if wanted is not None:
                found.add(pid)
            payload = record.payload or {}
            text = payload.get("text")
            entries[pid] = _Entry(
                vector=values,
                text=text if isinstance(text, str) else None,
                model_id=payload.get(MODEL_FIELD),
                version=payload.get(VERSION_FIELD),
            )
        run.page(entries)
    checksum_ok: bool | None = None
    if full:
        checksum_ok = checksum.count == manifest.count and checksum.hexdigest == manifest.checksum
        if not checksum_ok:
            raise MigrationError(
                f"backup {backup_id!r} changed since it was made: it holds {checksum.count} points with "
                f"checksum {checksum.hexdigest}, its manifest says {manifest.count} with "
                f"{manifest.checksum}; the {run.restored} vectors written may not be the backed-up ones"
            )
    absent = _Ids()
    for pid in _ordered(wanted or (), found):
        absent.add(pid)
    report = RestoreReport(
        backup_id=backup_id,
        collection=manifest.collection,
        vector=manifest.vector,
        expected=manifest.count if full else run.seen,
        restored=run.restored,
        already=run.already,
        skipped_changed=run.changed.frozen(),
        skipped_missing=run.missing.frozen(),
        unrestored=run.unrestored.frozen(),
        not_in_backup=absent.frozen(),
        vector_created=created,
        checksum_ok=checksum_ok,
        verified=run.unrestored.count == 0,
    )
    log.info(
        "%s: restored %d %r vectors from backup %s (%d already there, %d changed, %d deleted since)",
        manifest.collection,
        report.restored,
        manifest.vector,
        backup_id,
        report.already,
        report.skipped_changed.count,
        report.skipped_missing.count,
    )
    return report


def _ordered(wanted: Iterable[PointId], found: set[PointId]) -> list[PointId]:
    return sorted(
        (p for p in wanted if p not in found),
        key=lambda p: (0, p, "") if isinstance(p, int) else (1, 0, p),
    )
