"""A stand-in for a Qdrant server in strict mode, over qdrant-client's local mode (which has no strict mode).

:class:`StrictServer` wraps a local ``QdrantClient`` and poses as a server (the Store then takes its server
paths): ``get_collection`` shows the strict-mode config and the payload indexes created through it, and
each request a strict server would refuse is refused the way the server does it, before anything of it
runs, with the server's status (HTTP 400) and text (checked against Qdrant's source,
``lib/collection/src/operations/verification``):

* ``unindexed_filtering_retrieve`` / ``unindexed_filtering_update`` false: a filter of scroll, count or
  query (read), or the ``filter`` of a payload operation or a delete (update), using a field without a
  fitting index: ``Index required but not found for "field" of one of the following types: [...]``.
  ``has_id`` and ``has_vector`` need no index, ``is_empty`` any index, ``match`` on a string a keyword one;
  the ``update_filter`` of ``upsert`` / ``update_vectors`` is not checked.
* ``filter_max_conditions``: such a filter (read or update) with more conditions, counted as the server
  counts them: ``Filter condition limit reached (N > M)``.
* ``search_allow_exact`` false: ``count(exact=True)``: ``Exact search disabled!``.
* ``upsert_max_batchsize``: ``upsert`` / ``update_vectors`` (also inside ``batch_update_points``) of more
  points: ``Limit exceeded N > M for "upsert limit"`` (``"update limit"``).
* ``max_query_limit``: a scroll or query asking for more: ``Limit exceeded N > M for "limit"``.

A ``batch_update_points`` is checked whole before any operation runs, as a server does.
"""

from __future__ import annotations

from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

__all__ = ["StrictServer", "refusal"]

KEYWORD = models.PayloadSchemaType.KEYWORD
INTEGER = models.PayloadSchemaType.INTEGER


class _RemoteStandIn:
    """Takes the place of qdrant-client's ``QdrantLocal`` so the store believes it talks to a server."""


def refusal(message: str) -> UnexpectedResponse:
    """A strict-mode refusal as a server sends it over REST (strict-mode errors are HTTP 400)."""
    escaped = f"Bad request: {message}".replace('"', '\\"')
    return UnexpectedResponse(
        status_code=400,
        reason_phrase="Bad Request",
        content=f'{{"status":{{"error":"{escaped}"}},"time":0.0001}}'.encode(),
        headers=httpx.Headers(),
    )


def _needed(condition: Any) -> list[str] | None:
    """The index types any of which lets a strict server run ``condition`` (``None``: needs none)."""
    if isinstance(condition, models.HasIdCondition | models.HasVectorCondition):
        return None
    if isinstance(condition, models.IsEmptyCondition | models.IsNullCondition):
        return ["keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid"]
    if isinstance(condition, models.FieldCondition):
        match = condition.match
        if isinstance(match, models.MatchValue):
            value = match.value
            if isinstance(value, bool):
                return ["bool"]
            return ["integer"] if isinstance(value, int) else ["keyword"]
        if isinstance(match, models.MatchAny | models.MatchExcept):
            values = match.any if isinstance(match, models.MatchAny) else match.except_
            return ["integer"] if values and isinstance(values[0], int) else ["keyword"]
        if isinstance(match, models.MatchText):
            return ["text"]
        if condition.range is not None:
            return ["float", "integer"]
        return ["keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid"]
    raise NotImplementedError(f"the stand-in does not know {type(condition).__name__}")


def _unindexed(flt: models.Filter, schema: dict[str, str]) -> tuple[str, list[str]] | None:
    for group in (flt.must, flt.must_not, flt.should):
        if group is None:
            continue
        for condition in group if isinstance(group, list) else [group]:
            if isinstance(condition, models.Filter):
                found = _unindexed(condition, schema)
            else:
                needed = _needed(condition)
                key = getattr(condition, "key", None) or getattr(
                    getattr(condition, "is_empty", None) or getattr(condition, "is_null", None), "key", None
                )
                found = None if needed is None or schema.get(key) in needed else (key, needed)
            if found is not None:
                return found
    return None


def _conditions(flt: models.Filter) -> int:
    """The conditions of a filter as the server counts them (a nested filter counts its own)."""
    total = 0
    for group in (flt.must, flt.must_not, flt.should):
        for condition in [] if group is None else group if isinstance(group, list) else [group]:
            total += _conditions(condition) if isinstance(condition, models.Filter) else 1
    return total


class StrictServer:
    """A local ``QdrantClient`` posing as a Qdrant server whose collections are in strict mode.

    Args:
        real: the local client every accepted call goes to.
        strict: the collections in strict mode (``None``: all of them).
        **settings: the ``StrictModeConfig`` fields (``enabled`` is set).

    Attributes:
        refused: ``(method, message)`` of every refused call, in order.
        indexes: payload indexes created through the stand-in, by ``(collection, field)``.
    """

    def __init__(self, real: QdrantClient, *, strict: set[str] | None = None, **settings: Any) -> None:
        self._real = real
        self._client = _RemoteStandIn()
        self.strict = strict
        self.config = models.StrictModeConfigOutput(enabled=True, **settings)
        self.refused: list[tuple[str, str]] = []
        self.indexes: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []

    # -------------------------------------------------------------------- the server's face

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def info(self) -> models.VersionInfo:
        return models.VersionInfo(title="qdrant - vector search engine", version="1.18.0")

    def get_collection(self, collection_name: str, **kwargs: Any) -> models.CollectionInfo:
        info = self._real.get_collection(collection_name, **kwargs)
        schema = {
            field: models.PayloadIndexInfo(data_type=models.PayloadSchemaType(kind), points=0)
            for (coll, field), kind in self.indexes.items()
            if coll == collection_name
        }
        config = info.config.model_copy(
            update={"strict_mode_config": self.config if self._is_strict(collection_name) else None}
        )
        return info.model_copy(update={"payload_schema": schema, "config": config})

    def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = None, **kwargs: Any
    ) -> models.UpdateResult:
        """Recorded, not sent: local mode keeps no payload index (and warns)."""
        self.calls.append("create_payload_index")
        kind = field_schema.value if isinstance(field_schema, models.PayloadSchemaType) else str(field_schema)
        self.indexes[(collection_name, field_name)] = kind
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        for key in [k for k in self.indexes if k[0] == collection_name]:
            del self.indexes[key]
        return self._real.delete_collection(collection_name, **kwargs)

    # -------------------------------------------------------------------- checked requests

    def count(self, collection_name: str, count_filter: Any = None, exact: bool = True, **kwargs: Any) -> Any:
        self._check("count", collection_name, read=count_filter)
        if exact and self._is_strict(collection_name) and self.config.search_allow_exact is False:
            self._refuse("count", "Exact search disabled!. Help: Set exact=false.")
        return self._real.count(collection_name, count_filter=count_filter, exact=exact, **kwargs)

    def scroll(self, collection_name: str, scroll_filter: Any = None, limit: int = 10, **kwargs: Any) -> Any:
        self._check("scroll", collection_name, read=scroll_filter, limit=limit)
        return self._real.scroll(collection_name, scroll_filter=scroll_filter, limit=limit, **kwargs)

    def query_points(self, collection_name: str, *args: Any, **kwargs: Any) -> Any:
        self._check(
            "query_points", collection_name, read=kwargs.get("query_filter"), limit=kwargs.get("limit")
        )
        return self._real.query_points(collection_name, *args, **kwargs)

    def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> Any:
        self._check("upsert", collection_name, batch=("upsert limit", len(points)))
        return self._real.upsert(collection_name, points, **kwargs)

    def update_vectors(self, collection_name: str, points: Any, **kwargs: Any) -> Any:
        self._check("update_vectors", collection_name, batch=("update limit", len(points)))
        return self._real.update_vectors(collection_name, points, **kwargs)

    def set_payload(self, collection_name: str, payload: Any, points: Any, **kwargs: Any) -> Any:
        self._check("set_payload", collection_name, write=_selector_filter(points))
        return self._real.set_payload(collection_name, payload, points, **kwargs)

    def delete_payload(self, collection_name: str, keys: Any, points: Any, **kwargs: Any) -> Any:
        self._check("delete_payload", collection_name, write=_selector_filter(points))
        return self._real.delete_payload(collection_name, keys, points, **kwargs)

    def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> Any:
        self._check("delete", collection_name, write=_selector_filter(points_selector))
        return self._real.delete(collection_name, points_selector, **kwargs)

    def batch_update_points(self, collection_name: str, update_operations: Any, **kwargs: Any) -> Any:
        self.calls.append("batch_update_points")
        for op in update_operations:  # every operation is checked before any runs
            if isinstance(op, models.UpdateVectorsOperation):
                self._check(
                    "batch_update_points",
                    collection_name,
                    batch=("update limit", len(op.update_vectors.points)),
                )
            elif isinstance(op, models.UpsertOperation):
                batch = op.upsert.points if isinstance(op.upsert, models.PointsList) else op.upsert.batch.ids
                self._check("batch_update_points", collection_name, batch=("upsert limit", len(batch)))
            elif isinstance(op, models.SetPayloadOperation):
                self._check("batch_update_points", collection_name, write=op.set_payload.filter)
            elif isinstance(op, models.DeletePayloadOperation):
                self._check("batch_update_points", collection_name, write=op.delete_payload.filter)
        return self._real.batch_update_points(collection_name, update_operations, **kwargs)

    # -------------------------------------------------------------------- the checks

    def _is_strict(self, collection: str) -> bool:
        return self.strict is None or collection in self.strict

    def _refuse(self, method: str, message: str) -> None:
        self.refused.append((method, message))
        raise refusal(message)

    def _check(
        self,
        method: str,
        collection: str,
        *,
        read: models.Filter | None = None,
        write: models.Filter | None = None,
        limit: int | None = None,
        batch: tuple[str, int] | None = None,
    ) -> None:
        if method != "batch_update_points":
            self.calls.append(method)
        if not self._is_strict(collection):
            return
        config = self.config
        schema = {field: kind for (coll, field), kind in self.indexes.items() if coll == collection}
        for flt, allowed in (
            (read, config.unindexed_filtering_retrieve),
            (write, config.unindexed_filtering_update),
        ):
            found = _unindexed(flt, schema) if flt is not None and allowed is False else None
            if found is not None:
                key, needed = found
                self._refuse(
                    method,
                    f'Index required but not found for "{key}" of one of the following types: '
                    f"[{', '.join(sorted(set(needed)))}]. Help: Create an index for this key or use a "
                    "different filter.",
                )
            most = config.filter_max_conditions
            if flt is not None and most is not None and _conditions(flt) > most:
                self._refuse(
                    method,
                    f"Filter condition limit reached ({_conditions(flt)} > {most}). Help: Reduce the amount "
                    "of conditions of your filter.",
                )
        if limit is not None and config.max_query_limit is not None and limit > config.max_query_limit:
            self._refuse(
                method,
                f'Limit exceeded {limit} > {config.max_query_limit} for "limit". Help: Reduce the "limit" '
                f"parameter to or below {config.max_query_limit}.",
            )
        if batch is not None and config.upsert_max_batchsize is not None:
            name, size = batch
            if size > config.upsert_max_batchsize:
                self._refuse(
                    method,
                    f'Limit exceeded {size} > {config.upsert_max_batchsize} for "{name}". Help: Reduce the '
                    f'"{name}" parameter to or below {config.upsert_max_batchsize}.',
                )


def _selector_filter(selector: Any) -> models.Filter | None:
    if isinstance(selector, models.Filter):
        return selector
    if isinstance(selector, models.FilterSelector):
        return selector.filter
    return None
