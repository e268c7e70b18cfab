"""The control records: one point per record in the control collection, changed by compare-and-set.

:class:`ControlRecords` implements the :class:`~lattice_qdrant.store.protocol.ControlStore` part of a store
on top of its point operations (``upsert``, ``retrieve``, ``iter_points``, ...), so every store, the fakes of
:mod:`lattice_qdrant.testing` included, keeps its records the same way, and a fault in those operations
reaches the records as it would from Qdrant.

A record has an integer ``epoch``; it is changed by a conditional upsert (``update_filter`` on the epoch it
was read at, ``UPDATE_ONLY``) carrying a fresh ``token``, then read back: the write took effect exactly when
the stored token is ours. This is a compare-and-set that works on every backend, because Qdrant does not
say which points a conditional write skipped. The read-back also settles a write whose reply was lost (it
raised, yet took effect).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import models

from ..errors import StoreError, TransientStoreError
from .protocol import Store

__all__ = ["ControlRecords", "record_id"]

_CONTROL_INDEXES: dict[str, models.PayloadSchemaType] = {
    "kind": models.PayloadSchemaType.KEYWORD,
    "collection": models.PayloadSchemaType.KEYWORD,
    "epoch": models.PayloadSchemaType.INTEGER,
}
#: Tokens a record keeps of its last writes (a win is recognised among them).
_TOKEN_HISTORY = 256
_NAMESPACE = uuid.UUID("6f1d3c8e-2b7a-4c55-9a43-0c7f1b6a9e21")


def record_id(kind: str, key: str) -> str:
    """Stable point id of a control record (a UUID derived from its kind and key)."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


class ControlRecords(Store):
    """The control records of a store, kept with the store's own point operations (a base class: the
    point, schema and alias operations are the subclass's)."""

    _control_ready = False

    # ----------------------------------------------------------------- control records

    def ensure_control(self) -> None:
        """Create the control collection (no vectors, indexed fields) if it does not exist."""
        if self._control_ready:
            return
        name = self.control_collection
        if not self.collection_exists(name):
            self.ensure_collection(name, {})  # no vectors; safe when another process creates it first
        self.ensure_payload_indexes(name, _CONTROL_INDEXES)
        self._control_ready = True

    def _control_exists(self) -> bool:
        """Whether the control collection exists; reads never create it."""
        return self._control_ready or self.collection_exists(self.control_collection)

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The payload of a control record, or ``None`` (read-only)."""
        if not self._control_exists():
            return None
        found = self.retrieve(self.control_collection, [record_id(kind, key)], with_payload=True)
        if not found:
            return None
        return dict(found[0].payload or {})

    def list_records(self, kind: str, *, collection: str | None = None) -> list[dict[str, Any]]:
        """Payloads of every control record of a kind (optionally for one collection). Read-only."""
        if not self._control_exists():
            return []
        must: list[models.Condition] = [
            models.FieldCondition(key="kind", match=models.MatchValue(value=kind))
        ]
        if collection is not None:
            must.append(models.FieldCondition(key="collection", match=models.MatchValue(value=collection)))
        out: list[dict[str, Any]] = []
        for page in self.iter_points(self.control_collection, flt=models.Filter(must=must)):
            out.extend(dict(r.payload or {}) for r in page)
        return out

    def insert_record(
        self, kind: str, key: str, payload: dict[str, Any], *, token: str | None = None
    ) -> bool:
        """Create a record if no record has that key; return whether ours was written.

        The payload gets ``kind``, ``key``, ``epoch`` 1 and ``token`` (a fresh one unless given). A write
        whose reply is lost (it raised after its retries) is told from the token read back.

        Raises:
            ServerVersionError: the server is older than 1.17 (checked before anything is created).
            TransientStoreError: the write failed and no record was found, or the read-back failed (the
                write may have taken effect: the record's ``token`` tells).
        """
        self.check_conditional_writes()
        self.ensure_control()
        token = token or uuid.uuid4().hex
        body = {
            **payload,
            "kind": kind,
            "key": key,
            "epoch": 1,
            "token": token,
            "tokens": [token],
            "updated_at": time.time(),
        }
        try:
            self.upsert(
                self.control_collection,
                [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
                update_mode=models.UpdateMode.INSERT_ONLY,
                ordering=models.WriteOrdering.STRONG,
            )
        except TransientStoreError:
            # its reply may be lost: the record read back says whether it took effect
            stored = self.get_record(kind, key)
            if stored is None:
                raise
            return stored.get("token") == token
        stored = self.get_record(kind, key)
        return stored is not None and stored.get("token") == token

    def replace_record(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        expected: dict[str, Any],
        token: str | None = None,
    ) -> dict[str, Any] | None:
        """Compare-and-set: replace the record if it is still the one read as ``expected``.

        The write is conditional on ``expected``'s epoch; the record keeps the tokens of its last writes,
        so a win is recognised even when another process has already moved the record on after us. The
        same holds for a write whose reply was lost: when the conditional upsert raises after its retries
        (the write may have taken effect, and a retry of one that did is skipped by the condition), the
        record is read back all the same, and the token says what happened.

        Args:
            kind: the record's kind.
            key: the record's key.
            payload: the new payload.
            expected: the record as read; the write only applies if it is still at this epoch.
            token: this write's token (a fresh one unless given); a caller that keeps it can tell later,
                from the record's ``tokens``, whether a write that raised took effect.

        Returns:
            the stored payload when this call's write took effect, or ``None`` when the record had moved
            on (or vanished) first; in that case nothing was changed by this call.

        Raises:
            ServerVersionError: the server is older than 1.17 (it would replace the record whatever its
                epoch).
            TransientStoreError: the write failed and the record is still at ``expected``'s epoch (nothing
                was changed, unless the request is still on its way), or the read-back failed (the outcome
                is unknown: the record's ``tokens`` tell, once it can be read).
        """
        self.check_conditional_writes()
        self.ensure_control()
        token = token or uuid.uuid4().hex
        expected_epoch = int(expected["epoch"])
        history = [str(t) for t in expected.get("tokens", [])][: _TOKEN_HISTORY - 1]
        body = {
            **payload,
            "kind": kind,
            "key": key,
            "epoch": expected_epoch + 1,
            "token": token,
            "tokens": [token, *history],
            "updated_at": time.time(),
        }
        # In local mode the write and its read-back happen under one lock, so nobody moves in between.
        failure: TransientStoreError | None = None
        with self.exclusive():
            try:
                self.upsert(
                    self.control_collection,
                    [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
                    update_filter=models.Filter(
                        must=[
                            models.FieldCondition(key="epoch", match=models.MatchValue(value=expected_epoch))
                        ]
                    ),
                    update_mode=models.UpdateMode.UPDATE_ONLY,
                    ordering=models.WriteOrdering.STRONG,
                )
            except TransientStoreError as exc:
                failure = exc  # the write may have taken effect with its reply lost: read back
            stored = self.get_record(kind, key)
        if stored is None:
            return None
        tokens = stored.get("tokens", [])
        if token in tokens:
            return stored if stored.get("token") == token else body
        if failure is not None and int(stored.get("epoch", 0)) == expected_epoch:
            raise failure  # not written (yet): nobody else moved the record either
        if int(stored.get("epoch", 0)) - expected_epoch >= len(tokens):
            raise StoreError(
                f"cannot tell whether the update of {kind} {key!r} took effect: "
                f"{int(stored.get('epoch', 0)) - expected_epoch} writes happened meanwhile; read it again",
                collection=self.control_collection,
            )
        return None

    def put_record(self, kind: str, key: str, payload: dict[str, Any]) -> None:
        """Write a record unconditionally (for records only one writer owns: heartbeats, failures)."""
        self.ensure_control()
        body = {**payload, "kind": kind, "key": key, "updated_at": time.time()}
        self.upsert(
            self.control_collection,
            [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
        )

    def put_records(self, kind: str, records: Mapping[str, dict[str, Any]]) -> None:
        """Write records unconditionally, in one request (``records``: payload by key)."""
        if not records:
            return
        self.ensure_control()
        now = time.time()
        self.upsert(
            self.control_collection,
            [
                models.PointStruct(
                    id=record_id(kind, key),
                    vector={},
                    payload={**payload, "kind": kind, "key": key, "updated_at": now},
                )
                for key, payload in records.items()
            ],
        )

    def delete_record(self, kind: str, key: str) -> None:
        """Remove a control record (no-op if absent)."""
        self.delete_records(kind, [key])

    def delete_records(self, kind: str, keys: Sequence[str]) -> None:
        """Remove control records (absent ones are ignored)."""
        if not keys or not self._control_exists():
            return
        self.forward(
            "delete",
            self.control_collection,
            points_selector=models.PointIdsList(points=[record_id(kind, k) for k in keys]),
        )

    def append_event(self, collection: str, payload: dict[str, Any], *, event_id: str | None = None) -> None:
        """Append an entry to a collection's migration history (never overwritten by another entry).

        Args:
            collection: the migrated collection.
            payload: the entry.
            event_id: the entry's own id (a transition's token): appending it again writes the same point,
                so an entry is recorded once however often it is appended. A fresh id unless given.
        """
        self.ensure_control()
        self.upsert(
            self.control_collection,
            [
                models.PointStruct(
                    id=record_id("event", event_id) if event_id else str(uuid.uuid4()),
                    vector={},
                    payload={**payload, "kind": "event", "collection": collection},
                )
            ],
        )
