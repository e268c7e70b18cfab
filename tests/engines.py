"""Two engines behind one small vocabulary, for the congruence tests (``test_congruence.py``).

:class:`LocalEngine` is qdrant-client's local mode (what every other test runs on); :class:`EdgeEngine` is
Qdrant's own shard code in-process (``qdrant-edge-py``, module ``qdrant_edge``): the server's segments,
payload indexes, filters and update operations, without the collection layer (no aliases, no consensus, one
shard, one operation per update). A scenario written against :class:`Engine` runs on both, and the test
compares what they return.

Filters are written in qdrant-client's own models (``models.Filter``, the vocabulary the library builds its
conditions in, e.g. ``store.stamp_filter`` and ``store.same_text``), and translated for edge here, so the
library's own filters are what run on the engine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# A declared dev dependency: fail loudly when it is missing, never skip.
import qdrant_edge as qe
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from lattice_qdrant.store import RetryPolicy, Store

COLLECTION = "c"

Vectors = Mapping[str, Sequence[float]]

_DISTANCES = {
    "Cosine": (models.Distance.COSINE, qe.Distance.Cosine),
    "Dot": (models.Distance.DOT, qe.Distance.Dot),
    "Euclid": (models.Distance.EUCLID, qe.Distance.Euclid),
}
_DATATYPES = {
    "float32": (models.Datatype.FLOAT32, qe.VectorStorageDatatype.Float32),
    "float16": (models.Datatype.FLOAT16, qe.VectorStorageDatatype.Float16),
}
_SCHEMAS = {
    "keyword": (models.PayloadSchemaType.KEYWORD, qe.PayloadSchemaType.Keyword),
    "integer": (models.PayloadSchemaType.INTEGER, qe.PayloadSchemaType.Integer),
    "text": (models.PayloadSchemaType.TEXT, qe.PayloadSchemaType.Text),
}
_MODES = {
    models.UpdateMode.UPSERT: qe.UpdateMode.Upsert,
    models.UpdateMode.INSERT_ONLY: qe.UpdateMode.InsertOnly,
    models.UpdateMode.UPDATE_ONLY: qe.UpdateMode.UpdateOnly,
}


@dataclass(frozen=True)
class Rec:
    """A point as either engine gives it back: id (UUIDs as text), vectors by name (``""``: unnamed)."""

    id: Any
    vectors: dict[str, list[float]]
    payload: dict[str, Any]


def _norm_id(point_id: Any) -> Any:
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def _vectors_of(raw: Any) -> dict[str, list[float]]:
    """Both engines give a point holding only the unnamed vector as a plain list, otherwise a dict."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {name: [float(x) for x in v] for name, v in raw.items()}
    return {"": [float(x) for x in raw]}


def _rec(record: Any) -> Rec:
    return Rec(_norm_id(record.id), _vectors_of(record.vector), dict(record.payload or {}))


class Engine:
    """The operations the library relies on, in one vocabulary. ``vectors`` maps names to
    ``(size, distance)`` with distance ``"Cosine"``, ``"Dot"`` or ``"Euclid"``; ``""`` alone is the
    unnamed default vector."""

    name: str

    def create(self, vectors: Mapping[str, tuple[int, str]], *, datatype: str | None = None) -> None:
        """A collection (a shard) with these dense vectors, stored as ``datatype`` (``"float16"``)."""
        raise NotImplementedError

    def index(self, field: str, schema: str) -> None:
        """A payload index (``keyword``, ``integer`` or ``text``)."""
        raise NotImplementedError

    def indexes(self) -> dict[str, str]:
        """Indexed fields and their type names (lower case)."""
        raise NotImplementedError

    def upsert(
        self,
        points: Sequence[tuple[Any, Vectors, dict[str, Any] | None]],
        *,
        condition: models.Filter | None = None,
        mode: models.UpdateMode | None = None,
    ) -> None:
        raise NotImplementedError

    def update_vectors(
        self, points: Sequence[tuple[Any, Vectors]], *, condition: models.Filter | None = None
    ) -> None:
        raise NotImplementedError

    def add_vector(self, name: str, size: int, distance: str) -> None:
        raise NotImplementedError

    def drop_vector(self, name: str) -> None:
        raise NotImplementedError

    def count(self, flt: models.Filter | None = None) -> int:
        """Exact count."""
        raise NotImplementedError

    def scroll(
        self, *, flt: models.Filter | None = None, limit: int = 100, offset: Any = None, vectors: bool = True
    ) -> tuple[list[Rec], Any]:
        """One page in id order and the next page's offset (``None`` at the end)."""
        raise NotImplementedError

    def retrieve(self, ids: Sequence[Any]) -> dict[Any, Rec]:
        raise NotImplementedError

    def query(
        self, vector: Sequence[float], *, using: str = "", limit: int = 10, flt: models.Filter | None = None
    ) -> list[tuple[Any, float]]:
        """Nearest points as ``(id, score)``."""
        raise NotImplementedError

    def set_payload(
        self, payload: dict[str, Any], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        raise NotImplementedError

    def delete_payload(
        self, keys: Sequence[str], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        raise NotImplementedError

    def delete(self, ids: Sequence[Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # derived, the same on both engines

    def scroll_all(self, *, flt: models.Filter | None = None, page: int = 100) -> list[Rec]:
        out: list[Rec] = []
        offset: Any = None
        while True:
            records, offset = self.scroll(flt=flt, limit=page, offset=offset)
            out += records
            if offset is None:
                return out

    def ids(self, flt: models.Filter | None = None) -> list[Any]:
        return [r.id for r in self.scroll_all(flt=flt)]

    def store(self) -> Store:
        """The library's :class:`Store` on this engine (collection :data:`COLLECTION`)."""
        raise NotImplementedError


class LocalEngine(Engine):
    """qdrant-client's local mode (``QdrantClient(":memory:")``), one collection."""

    name = "local"

    def __init__(self) -> None:
        self.client = QdrantClient(":memory:")

    def create(self, vectors: Mapping[str, tuple[int, str]], *, datatype: str | None = None) -> None:
        stored = None if datatype is None else _DATATYPES[datatype][0]
        params = {
            name: models.VectorParams(size=size, distance=_DISTANCES[distance][0], datatype=stored)
            for name, (size, distance) in vectors.items()
        }
        self.client.create_collection(
            COLLECTION, vectors_config=params[""] if list(params) == [""] else params
        )

    def index(self, field: str, schema: str) -> None:
        self.client.create_payload_index(COLLECTION, field_name=field, field_schema=_SCHEMAS[schema][0])

    def indexes(self) -> dict[str, str]:
        schema = self.client.get_collection(COLLECTION).payload_schema or {}
        return {field: str(info.data_type.value).lower() for field, info in schema.items()}

    def upsert(
        self,
        points: Sequence[tuple[Any, Vectors, dict[str, Any] | None]],
        *,
        condition: models.Filter | None = None,
        mode: models.UpdateMode | None = None,
    ) -> None:
        structs = [
            models.PointStruct(id=pid, vector=_client_vector(vectors), payload=payload)
            for pid, vectors, payload in points
        ]
        self.client.upsert(COLLECTION, structs, update_filter=condition, update_mode=mode)

    def update_vectors(
        self, points: Sequence[tuple[Any, Vectors]], *, condition: models.Filter | None = None
    ) -> None:
        self.client.update_vectors(
            COLLECTION,
            [models.PointVectors(id=pid, vector=_client_vector(vectors)) for pid, vectors in points],
            update_filter=condition,
        )

    def add_vector(self, name: str, size: int, distance: str) -> None:
        config = models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=size, distance=_DISTANCES[distance][0])
        )
        self.client.create_vector_name(COLLECTION, name, config)

    def drop_vector(self, name: str) -> None:
        self.client.delete_vector_name(COLLECTION, name)

    def count(self, flt: models.Filter | None = None) -> int:
        return int(self.client.count(COLLECTION, count_filter=flt, exact=True).count)

    def scroll(
        self, *, flt: models.Filter | None = None, limit: int = 100, offset: Any = None, vectors: bool = True
    ) -> tuple[list[Rec], Any]:
        records, next_offset = self.client.scroll(
            COLLECTION, scroll_filter=flt, limit=limit, offset=offset, with_payload=True, with_vectors=vectors
        )
        return [_rec(r) for r in records], _norm_id(next_offset)

    def retrieve(self, ids: Sequence[Any]) -> dict[Any, Rec]:
        records = self.client.retrieve(COLLECTION, list(ids), with_payload=True, with_vectors=True)
        return {_norm_id(r.id): _rec(r) for r in records}

    def query(
        self, vector: Sequence[float], *, using: str = "", limit: int = 10, flt: models.Filter | None = None
    ) -> list[tuple[Any, float]]:
        response = self.client.query_points(
            COLLECTION, query=list(vector), using=using or None, limit=limit, query_filter=flt
        )
        return [(_norm_id(p.id), float(p.score)) for p in response.points]

    def set_payload(
        self, payload: dict[str, Any], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        self.client.set_payload(COLLECTION, payload=payload, points=_selector(ids, flt))

    def delete_payload(
        self, keys: Sequence[str], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        self.client.delete_payload(COLLECTION, keys=list(keys), points=_selector(ids, flt))

    def delete(self, ids: Sequence[Any]) -> None:
        self.client.delete(COLLECTION, points_selector=models.PointIdsList(points=list(ids)))

    def store(self) -> Store:
        """The library's :class:`Store` over this client (local mode: its local code paths)."""
        return Store(self.client, retry=RetryPolicy(attempts=1))

    def close(self) -> None:
        self.client.close()


def _client_vector(vectors: Vectors) -> Any:
    return {name: list(v) for name, v in vectors.items()}


def _selector(ids: Sequence[Any] | None, flt: models.Filter | None) -> Any:
    if (ids is None) == (flt is None):
        raise ValueError("give ids or a filter")
    return list(ids) if ids is not None else flt


class EdgeEngine(Engine):
    """Qdrant's shard code in-process (``qdrant_edge.EdgeShard``), one shard in its own directory."""

    name = "edge"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shard: Any = None

    def create(self, vectors: Mapping[str, tuple[int, str]], *, datatype: str | None = None) -> None:
        stored = None if datatype is None else _DATATYPES[datatype][1]
        params = {
            name: qe.EdgeVectorParams(size=size, distance=_DISTANCES[distance][1], datatype=stored)
            for name, (size, distance) in vectors.items()
        }
        config = qe.EdgeConfig(vectors=params[""] if list(params) == [""] else params)
        self.shard = qe.EdgeShard.create(str(self.path), config)

    def _update(self, operation: Any) -> None:
        self.shard.update(operation)

    def index(self, field: str, schema: str) -> None:
        self._update(qe.UpdateOperation.create_field_index(field, _SCHEMAS[schema][1]))

    def indexes(self) -> dict[str, str]:
        schema = self.shard.info().payload_schema
        return {field: str(info.data_type).rsplit(".", 1)[-1].lower() for field, info in schema.items()}

    def upsert(
        self,
        points: Sequence[tuple[Any, Vectors, dict[str, Any] | None]],
        *,
        condition: models.Filter | None = None,
        mode: models.UpdateMode | None = None,
    ) -> None:
        structs = [qe.Point(pid, _edge_vector(vectors), payload) for pid, vectors, payload in points]
        self._update(
            qe.UpdateOperation.upsert_points(
                structs,
                condition=None if condition is None else edge_filter(condition),
                update_mode=None if mode is None else _MODES[mode],
            )
        )

    def update_vectors(
        self, points: Sequence[tuple[Any, Vectors]], *, condition: models.Filter | None = None
    ) -> None:
        self._update(
            qe.UpdateOperation.update_vectors(
                [qe.PointVectors(pid, _edge_vector(vectors)) for pid, vectors in points],
                condition=None if condition is None else edge_filter(condition),
            )
        )

    def add_vector(self, name: str, size: int, distance: str) -> None:
        self._update(qe.UpdateOperation.create_dense_vector(name, size, _DISTANCES[distance][1]))

    def drop_vector(self, name: str) -> None:
        self._update(qe.UpdateOperation.delete_vector_name(name))

    def count(self, flt: models.Filter | None = None) -> int:
        return int(self.shard.count(qe.CountRequest(exact=True, filter=_maybe(flt))))

    def scroll(
        self, *, flt: models.Filter | None = None, limit: int = 100, offset: Any = None, vectors: bool = True
    ) -> tuple[list[Rec], Any]:
        records, next_offset = self.shard.scroll(
            qe.ScrollRequest(
                offset=offset, limit=limit, filter=_maybe(flt), with_payload=True, with_vector=vectors
            )
        )
        return [_rec(r) for r in records], _norm_id(next_offset)

    def retrieve(self, ids: Sequence[Any]) -> dict[Any, Rec]:
        records = self.shard.retrieve(list(ids), with_payload=True, with_vector=True)
        return {_norm_id(r.id): _rec(r) for r in records}

    def query(
        self, vector: Sequence[float], *, using: str = "", limit: int = 10, flt: models.Filter | None = None
    ) -> list[tuple[Any, float]]:
        points = self.shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(list(vector), using=using or None),
                filter=_maybe(flt),
                with_payload=False,
                with_vector=False,
            )
        )
        return [(_norm_id(p.id), float(p.score)) for p in points]

    def set_payload(
        self, payload: dict[str, Any], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        _selector(ids, flt)
        if ids is not None:
            self._update(qe.UpdateOperation.set_payload(list(ids), payload))
        else:
            self._update(qe.UpdateOperation.set_payload_by_filter(edge_filter(flt), payload))

    def delete_payload(
        self, keys: Sequence[str], *, ids: Sequence[Any] | None = None, flt: models.Filter | None = None
    ) -> None:
        _selector(ids, flt)
        if ids is not None:
            self._update(qe.UpdateOperation.delete_payload(list(ids), list(keys)))
        else:
            self._update(qe.UpdateOperation.delete_payload_by_filter(edge_filter(flt), list(keys)))

    def delete(self, ids: Sequence[Any]) -> None:
        self._update(qe.UpdateOperation.delete_points(list(ids)))

    def store(self) -> Store:
        """The library's :class:`Store` over this shard, through :class:`EdgeClient` (a server to it)."""
        return Store(EdgeClient(self.shard), retry=RetryPolicy(attempts=1))

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


def _edge_vector(vectors: Vectors) -> Any:
    return {name: [float(x) for x in v] for name, v in vectors.items()}


def _maybe(flt: models.Filter | None) -> Any:
    return None if flt is None else edge_filter(flt)


def edge_filter(flt: models.Filter) -> Any:
    """A qdrant-client ``models.Filter`` as a ``qdrant_edge.Filter`` (the conditions the library uses)."""

    def many(conditions: Any) -> list[Any] | None:
        if conditions is None:
            return None
        if not isinstance(conditions, list):
            conditions = [conditions]
        return [condition(c) for c in conditions]

    return qe.Filter(must=many(flt.must), should=many(flt.should), must_not=many(flt.must_not))


def condition(cond: Any) -> Any:
    """One qdrant-client condition as its ``qdrant_edge`` twin."""
    if isinstance(cond, models.Filter):
        return edge_filter(cond)
    if isinstance(cond, models.HasIdCondition):
        return qe.HasIdCondition(set(cond.has_id))
    if isinstance(cond, models.HasVectorCondition):
        return qe.HasVectorCondition(cond.has_vector)
    if isinstance(cond, models.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, models.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, models.SliceCondition):
        return qe.SliceCondition(cond.slice.total, cond.slice.index)
    if isinstance(cond, models.FieldCondition):
        if cond.match is not None:
            return qe.FieldCondition(cond.key, match=_match(cond.match))
        if cond.range is not None:
            r = cond.range
            return qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    raise NotImplementedError(f"no edge twin for {cond!r}")


def _match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    raise NotImplementedError(f"no edge twin for {match!r}")


# --------------------------------------------------------------------------- the library's Store on edge


class EdgeClient:
    """Just enough of ``QdrantClient`` for the :class:`Store`'s point operations, run on an edge shard.

    The Store sees no local mode here, so it takes its **server** code paths (one request per conditional
    write, ``batch_update_points`` for vector and stamp). The collection name is ignored (one shard). A
    missing point is raised as a server raises it: HTTP 404 ``Not found: No point with id N found`` (the
    shard's own text is ``No point with id N``; the server's collection layer adds the rest). A batch runs its
    operations in order and stops at the first failing one, as a server does.
    """

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.requests: list[tuple[str, Any]] = []

    def _update(self, operation: Any) -> None:
        try:
            self.shard.update(operation)
        except Exception as exc:
            text = str(exc)
            if text.startswith("No point with id "):
                body = json.dumps({"status": {"error": f"Not found: {text} found"}, "time": 0.0})
                raise UnexpectedResponse(
                    status_code=404, reason_phrase="Not Found", content=body.encode(), headers=httpx.Headers()
                ) from exc
            raise

    @staticmethod
    def info() -> models.VersionInfo:
        # The shard code of qdrant-edge 0.9 has update modes and conditional updates: a server of 1.18 or
        # later as far as the library's version checks are concerned.
        return models.VersionInfo(title="qdrant-edge", version="1.18.0")

    @staticmethod
    def _done() -> models.UpdateResult:
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def upsert(
        self,
        collection_name: str,
        points: Sequence[models.PointStruct],
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        **_: Any,
    ) -> models.UpdateResult:
        self.requests.append(("upsert", [p.id for p in points]))
        self._update(_upsert_op(points, update_filter, update_mode))
        return self._done()

    def update_vectors(
        self,
        collection_name: str,
        points: Sequence[models.PointVectors],
        update_filter: models.Filter | None = None,
        **_: Any,
    ) -> models.UpdateResult:
        self.requests.append(("update_vectors", [p.id for p in points]))
        self._update(_update_vectors_op(points, update_filter))
        return self._done()

    def set_payload(
        self, collection_name: str, payload: dict[str, Any], points: Any, **_: Any
    ) -> models.UpdateResult:
        self.requests.append(("set_payload", points))
        self._update(_payload_op("set", payload, points))
        return self._done()

    def delete_payload(
        self, collection_name: str, keys: list[str], points: Any, **_: Any
    ) -> models.UpdateResult:
        self.requests.append(("delete_payload", points))
        self._update(_payload_op("delete", keys, points))
        return self._done()

    def batch_update_points(
        self, collection_name: str, update_operations: Sequence[Any], **_: Any
    ) -> list[models.UpdateResult]:
        self.requests.append(("batch_update_points", [type(op).__name__ for op in update_operations]))
        results = []
        for op in update_operations:
            if isinstance(op, models.UpdateVectorsOperation):
                self._update(_update_vectors_op(op.update_vectors.points, op.update_vectors.update_filter))
            elif isinstance(op, models.SetPayloadOperation):
                sp = op.set_payload
                self._update(
                    _payload_op("set", sp.payload, sp.points if sp.points is not None else sp.filter)
                )
            elif isinstance(op, models.DeletePayloadOperation):
                dp = op.delete_payload
                self._update(
                    _payload_op("delete", dp.keys, dp.points if dp.points is not None else dp.filter)
                )
            elif isinstance(op, models.UpsertOperation):
                up = op.upsert
                self._update(_upsert_op(up.points, up.update_filter, up.update_mode))
            else:
                raise NotImplementedError(f"no edge twin for {op!r}")
            results.append(self._done())
        return results

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        with_payload: Any = True,
        with_vectors: Any = False,
        **_: Any,
    ) -> list[models.Record]:
        records = self.shard.retrieve(list(ids), with_payload=with_payload, with_vector=with_vectors)
        return [_client_record(r) for r in records]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        **_: Any,
    ) -> tuple[list[models.Record], Any]:
        records, next_offset = self.shard.scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=limit,
                filter=_maybe(scroll_filter),
                with_payload=with_payload,
                with_vector=with_vectors,
            )
        )
        return [_client_record(r) for r in records], _norm_id(next_offset)

    def count(
        self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **_: Any
    ) -> models.CountResult:
        return models.CountResult(
            count=self.shard.count(qe.CountRequest(exact=exact, filter=_maybe(count_filter)))
        )

    def delete(self, collection_name: str, points_selector: Any, **_: Any) -> models.UpdateResult:
        ids = points_selector.points if isinstance(points_selector, models.PointIdsList) else points_selector
        self._update(qe.UpdateOperation.delete_points(list(ids)))
        return self._done()


def _client_record(record: Any) -> models.Record:
    return models.Record(id=_norm_id(record.id), vector=record.vector, payload=record.payload)


def _upsert_op(
    points: Sequence[models.PointStruct], flt: models.Filter | None, mode: models.UpdateMode | None
) -> Any:
    return qe.UpdateOperation.upsert_points(
        [qe.Point(p.id, p.vector, p.payload) for p in points],
        condition=_maybe(flt),
        update_mode=None if mode is None else _MODES[mode],
    )


def _update_vectors_op(points: Sequence[models.PointVectors], flt: models.Filter | None) -> Any:
    return qe.UpdateOperation.update_vectors(
        [qe.PointVectors(p.id, p.vector) for p in points], condition=_maybe(flt)
    )


def _payload_op(kind: str, what: Any, points: Any) -> Any:
    """A set or delete payload operation by ids (a list or ``PointIdsList``) or by a filter."""
    if isinstance(points, models.PointIdsList):
        points = points.points
    if isinstance(points, models.FilterSelector):
        points = points.filter
    if isinstance(points, models.Filter):
        flt = edge_filter(points)
        if kind == "set":
            return qe.UpdateOperation.set_payload_by_filter(flt, what)
        return qe.UpdateOperation.delete_payload_by_filter(flt, list(what))
    if kind == "set":
        return qe.UpdateOperation.set_payload(list(points), what)
    return qe.UpdateOperation.delete_payload(list(points), list(what))
