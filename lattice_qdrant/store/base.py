"""What every store shares: the payload fields and versions the migration relies on, the value types a
store answers with, and the filters and checks built from them (pure code, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from ..kernels import vectors_match_rows
from ..routing import Coverage as Coverage  # re-exported: the store answers coverage in it
from ..spec import Distance

MODEL_FIELD = "embedding_model_id"
VERSION_FIELD = "embedding_version"
#: The payload indexes every migrated collection gets, and their types.
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    MODEL_FIELD: models.PayloadSchemaType.KEYWORD,
    VERSION_FIELD: models.PayloadSchemaType.INTEGER,
}
#: Default name of the collection holding migration records and the model registry.
CONTROL_COLLECTION = "lattice_qdrant"
#: Named vectors can be added to a live collection from this server version on.
IN_PLACE_MIN_VERSION = (1, 18, 0)
#: Qdrant's slice filter (``SliceCondition``: points whose id hashes to slice ``i`` of ``n``) exists from
#: this server version on; local mode has it too.
SLICES_MIN_VERSION = (1, 19, 0)
#: Conditional writes hold from this server version on (``update_mode``; ``update_filter`` since 1.15.4):
#: older servers drop the fields silently, so every strategy needs it.
CONDITIONAL_WRITES_MIN_VERSION = (1, 17, 0)


class NumericPoints(list[Any]):
    """Points (``PointStruct`` or ``PointVectors``) whose every vector is a list of numbers, built by the
    wrapper from vectors it validated or embedded: nothing in them for qdrant-client to embed.

    A store hands such a batch to qdrant-client's transport directly (see
    :func:`~lattice_qdrant.store.server.transport_method`): ``QdrantClient.upsert`` and ``update_vectors``
    otherwise scan every value of every vector for objects to embed (``models.Document`` and the like), which
    costs more than the wrapper's routing of a point and can find nothing here. Any other sequence of points
    goes through the client's public method, scan included.
    """


@dataclass(frozen=True)
class VectorInfo:
    """A dense vector of a collection: its size and distance (``name`` is ``""`` when unnamed)."""

    name: str
    size: int
    distance: Distance


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` tries, exponential backoff with jitter."""

    attempts: int = 5
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.5


def version_text(version: Sequence[int]) -> str:
    """``(1, 17, 0)`` -> ``"1.17.0"``."""
    return ".".join(map(str, version))


def same_text(point_id: Any, text_field: str, text: str | None) -> models.Filter:
    """The condition "this point still holds this text" (``None``: no text), one clause of a conditional
    write."""
    holds: models.Condition = (
        models.IsEmptyCondition(is_empty=models.PayloadField(key=text_field))
        if text is None
        else models.FieldCondition(key=text_field, match=models.MatchValue(value=text))
    )
    return models.Filter(must=[models.HasIdCondition(has_id=[point_id]), holds])


def unchanged(
    text_field: str,
    todo: Mapping[Any, tuple[str | None, Any]],
    ids: Sequence[Any],
    unless: models.Condition | None = None,
) -> models.Filter:
    """The condition of a conditional write of ``ids``: each still holds the text its vector was embedded
    from (``todo``: ``(text, ...)`` by id), and, with ``unless``, the point does not match ``unless``."""
    return models.Filter(
        must_not=[unless] if unless is not None else None,
        should=[same_text(pid, text_field, todo[pid][0]) for pid in ids],
    )


def lacking_vector(name: str | None) -> models.Condition | None:
    """``has_vector`` of ``name`` (``None``: no condition): what a write that only fills a vector skips."""
    return models.HasVectorCondition(has_vector=name) if name is not None else None


def holding(ids: Sequence[Any], names: Sequence[str]) -> models.Filter:
    """The condition "one of ``ids`` holding every vector of ``names``": the points a stamp sent in the
    same request as their vectors' write goes to (``has_id`` and ``has_vector`` need no payload index, so a
    strict mode's ``unindexed_filtering_update`` lets it through)."""
    holds: list[models.Condition] = [models.HasVectorCondition(has_vector=name) for name in names]
    return models.Filter(must=[models.HasIdCondition(has_id=list(ids)), *holds])


def stamp_payload(stamp: tuple[str, int]) -> dict[str, Any]:
    """The payload of a model stamp ``(model_id, version)``: ``embedding_model_id`` and
    ``embedding_version``."""
    return {MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]}


def stamp_filter(model_id: str, version: int) -> models.Filter:
    """The condition "this point is stamped with this model" (``embedding_model_id`` and
    ``embedding_version``); a re-embed tells which model a point's vector holds by it."""
    return models.Filter(
        must=[
            models.FieldCondition(key=MODEL_FIELD, match=models.MatchValue(value=model_id)),
            models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=version)),
        ]
    )


def stamp_selector(ids: Sequence[Any], update_filter: models.Filter | None) -> models.Filter | list[Any]:
    """The points a stamp goes to after a write of ``ids`` made conditional by ``update_filter``.

    Without a filter, the ids themselves. With one, the filter "one of ``ids`` and matching
    ``update_filter``": a conditional write skips the points that do not match and does not say which, so
    the stamp must follow the same condition. Evaluated after the vector write, that is the condition the
    write saw as long as the filter does not read what the write changed (a ``has_vector`` of a vector it
    sets, negated; the wrapper refuses those). A payload operation with a filter on an unindexed field is
    refused by a server in strict mode (``unindexed_filtering_update=false``), unlike the ``update_filter``
    of the vector write.
    """
    if update_filter is None:
        return list(ids)
    return models.Filter(must=[models.HasIdCondition(has_id=list(ids)), update_filter])


def _dense(record: Any, name: str) -> list[Any] | None:
    """A record's dense vector ``name`` (``""``: the unnamed one) as it came, or ``None``."""
    vectors = record.vector
    value = vectors.get(name) if isinstance(vectors, dict) else vectors if name == "" else None
    return value if isinstance(value, list) and value and not isinstance(value[0], list) else None


def vector_value(record: Any, name: str) -> list[float] | None:
    """A record's (or scored point's) dense vector ``name`` (``""``: the unnamed one), or ``None``."""
    value = _dense(record, name)
    return None if value is None else [float(x) for x in value]


def holding_written(
    records: Sequence[Any], name: str, written: Mapping[Any, tuple[Any, Any]], distance: Distance
) -> set[Any]:
    """The ids of ``records`` (a read-back) whose stored vector ``name`` is the one written (``written``:
    ``(text, vector)`` by id, as the write had them), checked together: as a server stores it, cosine
    vectors normalised, and a collection storing ``float16`` rounds each value to 11 significant bits (a
    relative error up to 5e-4, which local mode, keeping float32 whatever the datatype, never shows)."""
    found = [(r.id, stored) for r in records if r.id in written and (stored := _dense(r, name)) is not None]
    tolerance = 1e-5 if distance == Distance.COSINE else 1e-3
    mine = [written[pid][1] for pid, _ in found]
    verdicts = vectors_match_rows([stored for _, stored in found], mine, distance, tolerance)
    return {pid for (pid, _), ours in zip(found, verdicts, strict=True) if ours}


def pages(
    scroll: Callable[..., tuple[list[models.Record], Any]],
    collection: str,
    *,
    flt: models.Filter | None = None,
    page_size: int = 256,
    with_payload: bool | Sequence[str] = True,
    with_vectors: bool | Sequence[str] = False,
) -> Iterator[list[models.Record]]:
    """Pages of points matching ``flt``, one ``scroll`` (a store's) per page (memory stays one page)."""
    offset: Any = None
    while True:
        page, offset = scroll(
            collection,
            flt=flt,
            limit=page_size,
            offset=offset,
            with_payload=with_payload,
            with_vectors=with_vectors,
        )
        if page:
            yield page
        if offset is None:
            return
