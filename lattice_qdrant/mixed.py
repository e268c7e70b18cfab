"""Mixed-coverage queries: use the target model on the covered part before cutover, lose nothing else.

While the backfill runs, the target vector covers only part of the collection. A mixed query:

1. embeds the query text with both models;
2. gathers candidates from a source-vector search (source embedding) and a target-vector search (target
   embedding), ``oversample`` times the limit each, fetching the candidates' target vectors;
3. rescores every candidate that has a target vector in the target space with simsimd
   (:mod:`lattice_qdrant.kernels`, the collection's distance);
4. handles candidates without a target vector by the **missing policy**:

   * ``"embed"``: embed their text with the target model on the fly and score them like the others;
     with ``read_repair`` the vector is also written back, through the strategy's stale-proof conditional
     write (the backfill's), so it counts towards coverage;
   * ``"source_order"``: keep them where the source search ranked them (their score stays the source
     score), and fill the other places with the covered candidates in target order.

A candidate without text under ``"embed"`` falls back to ``"source_order"``. Scores are in the target
space (cosine similarity, dot product, or a distance for Euclid / Manhattan, ordered as Qdrant orders them).

A same-name re-embed has one vector name for both models: which model a point's vector holds is its stamp
(``embedding_model_id`` / ``embedding_version``), not the name. The source search is then restricted to the
points not stamped with the target, the target search to those stamped with it (each combined with the
caller's filter), and only the target search's hits count as holding a target vector; a query embedding is
never compared with the other model's vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from . import kernels
from .errors import StoreError
from .plan import MigrationPlan
from .store import Store, vector_value
from .strategies import strategy_for

__all__ = ["MissingPolicy", "MixedResult", "mixed_query"]

log = logging.getLogger(__name__)

MissingPolicy = Literal["embed", "source_order"]
Embed = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass
class MixedResult:
    """A mixed query's points and how they were obtained.

    Attributes:
        points: the best ``limit`` candidates, best first.
        candidates: how many distinct candidates the two searches gathered.
        rescored: candidates scored in the target space from a stored target vector.
        embedded: candidates embedded on the fly (missing policy ``"embed"``).
        kept_order: candidates kept at their source rank (no target vector, no text, or ``"source_order"``).
        repaired: ids whose vector was written back by read-repair.
    """

    points: list[models.ScoredPoint]
    candidates: int = 0
    rescored: int = 0
    embedded: int = 0
    kept_order: int = 0
    repaired: list[Any] = field(default_factory=list)


def _target_of(point: models.ScoredPoint | models.Record, name: str) -> list[float] | None:
    vector = point.vector
    if isinstance(vector, dict):
        value = vector.get(name)
        if isinstance(value, list) and value and not isinstance(value[0], list):
            return [float(x) for x in value]
    return None


def mixed_query(
    store: Store,
    plan: MigrationPlan,
    text: str,
    *,
    embed_source: Embed,
    embed_target: Embed,
    limit: int = 10,
    missing: MissingPolicy = "embed",
    read_repair: bool = False,
    oversample: int = 4,
    query_filter: models.Filter | None = None,
    with_payload: bool | Sequence[str] = True,
    backend: kernels.Backend = "simsimd",
) -> MixedResult:
    """Search ``plan.collection`` with ``text`` in the target space over partial coverage.

    Args:
        store: the store adapter.
        plan: the collection's migration plan (vector names, text field, distances).
        text: the query text.
        embed_source: embeds texts with the source model.
        embed_target: embeds texts with the target model.
        limit: how many points to return.
        missing: what to do with candidates that have no target vector yet (module docstring).
        read_repair: write the vectors embedded on the fly back (only with ``missing="embed"``).
        oversample: each search gathers ``limit * oversample`` candidates.
        query_filter: a filter both searches apply.
        with_payload: as in ``query_points`` (the text field is fetched internally either way).
        backend: rescoring kernels (``"simsimd"``, or ``"numpy"`` the reference).
    """
    k = max(limit, limit * max(1, oversample))
    q_source = embed_source([text])[0]
    q_target = embed_target([text])[0]
    if plan.reembed:
        found_source, found_target, held = _reembed_candidates(
            store, plan, q_source, q_target, k, query_filter
        )
        return _rank(
            store, plan, found_source, found_target, held, q_target,
            embed_target=embed_target, limit=limit, missing=missing, read_repair=read_repair,
            with_payload=with_payload, backend=backend,
        )  # fmt: skip
    common: dict[str, Any] = {
        "limit": k,
        "with_payload": True,
        "with_vectors": [plan.target_vector],
        "query_filter": query_filter,
    }
    blue_green = plan.blue_green
    by_source = store.query(
        plan.collection,
        query=q_source.tolist(),
        using=plan.source_vector or None,
        **{**common, "with_vectors": False} if blue_green else common,
    ).points
    by_target = store.query(
        plan.data_collection, query=q_target.tolist(), using=plan.target_vector or None, **common
    ).points
    vectors: dict[Any, NDArray[np.float32] | list[float]] = {}
    for point in [*by_source, *by_target]:
        found = _target_of(point, plan.target_vector)
        if found is not None:
            vectors.setdefault(point.id, found)
    if blue_green:
        # the source search ran on the source collection: fetch target vectors from the target one
        lacking = list(dict.fromkeys(p.id for p in [*by_source, *by_target] if p.id not in vectors))
        fetched = (
            store.retrieve(
                plan.data_collection, lacking, with_payload=False, with_vectors=[plan.target_vector]
            )
            if lacking
            else []
        )
        for record in fetched:
            found = _target_of(record, plan.target_vector)
            if found is not None:
                vectors[record.id] = found
    return _rank(
        store, plan, by_source, by_target, vectors, q_target,
        embed_target=embed_target, limit=limit, missing=missing, read_repair=read_repair,
        with_payload=with_payload, backend=backend,
    )  # fmt: skip


def _reembed_candidates(
    store: Store,
    plan: MigrationPlan,
    q_source: NDArray[np.float32],
    q_target: NDArray[np.float32],
    k: int,
    query_filter: models.Filter | None,
) -> tuple[list[models.ScoredPoint], list[models.ScoredPoint], dict[Any, NDArray[np.float32] | list[float]]]:
    """Both searches over the one vector name, each restricted by the stamp to the points holding its
    model."""
    name = plan.source_vector
    strategy = strategy_for(plan)

    def restricted(version: models.Filter) -> models.Filter:
        return version if query_filter is None else models.Filter(must=[query_filter, version])

    by_source = store.query(
        plan.collection,
        query=q_source.tolist(),
        using=name,
        limit=k,
        with_payload=True,
        with_vectors=False,
        query_filter=restricted(strategy.todo()),
    ).points
    by_target = store.query(
        plan.collection,
        query=q_target.tolist(),
        using=name,
        limit=k,
        with_payload=True,
        with_vectors=[name] if name else True,
        query_filter=restricted(strategy.done()),
    ).points
    vectors: dict[Any, NDArray[np.float32] | list[float]] = {}
    for point in by_target:
        found = vector_value(point, name)
        if found is not None:
            vectors[point.id] = found
    return list(by_source), list(by_target), vectors


def _rank(
    store: Store,
    plan: MigrationPlan,
    by_source: Sequence[models.ScoredPoint],
    by_target: Sequence[models.ScoredPoint],
    vectors: dict[Any, NDArray[np.float32] | list[float]],
    q_target: NDArray[np.float32],
    *,
    embed_target: Embed,
    limit: int,
    missing: MissingPolicy,
    read_repair: bool,
    with_payload: bool | Sequence[str],
    backend: kernels.Backend,
) -> MixedResult:
    """Score the candidates of both searches in the target space (``vectors``: the target vectors held)."""
    order: list[Any] = []
    seen: dict[Any, models.ScoredPoint] = {}
    for point in [*by_source, *by_target]:
        if point.id not in seen:
            seen[point.id] = point
            order.append(point.id)
    result = MixedResult(points=[], candidates=len(order))
    result.rescored = len(vectors)
    if missing == "embed":
        todo = [
            (pid, text_of)
            for pid in order
            if pid not in vectors
            and isinstance(text_of := (seen[pid].payload or {}).get(plan.text_field), str)
            and text_of.strip()
        ]
        if todo:
            fresh = embed_target([t for _, t in todo])
            for (pid, _), row in zip(todo, fresh, strict=True):
                vectors[pid] = row
            result.embedded = len(todo)
            if read_repair:
                try:
                    result.repaired = strategy_for(plan).write_target(
                        store, {pid: (t, fresh[i]) for i, (pid, t) in enumerate(todo)}
                    )
                except StoreError as exc:  # a failed repair must not fail the query
                    log.warning("%s: read-repair failed: %s", plan.collection, exc)
    covered = [pid for pid in order if pid in vectors]
    matrix, _ = kernels.to_matrix([vectors[pid] for pid in covered], plan.target.dimension)
    idx, values = kernels.rank(q_target, matrix, plan.target.distance.value, backend=backend)
    ranked = [(covered[i], float(v)) for i, v in zip(idx, values, strict=True)]

    source_rank = {p.id: r for r, p in enumerate(by_source)}
    uncovered = [pid for pid in order if pid not in vectors]
    result.kept_order = len(uncovered)
    # Candidates kept in source order hold their source rank; covered ones fill the other places.
    slots: list[tuple[Any, float]] = []
    pending = iter(ranked)
    keep = sorted(uncovered, key=lambda pid: source_rank.get(pid, len(order)))
    positions = {pid: source_rank.get(pid, len(order)) for pid in keep}
    queue = list(keep)
    while len(slots) < len(order):
        if queue and positions[queue[0]] <= len(slots):
            pid = queue.pop(0)
            slots.append((pid, float(seen[pid].score)))
            continue
        nxt = next(pending, None)
        if nxt is None:
            slots.extend((pid, float(seen[pid].score)) for pid in queue)
            break
        slots.append(nxt)

    for pid, score in slots[:limit]:
        point = seen[pid]
        payload = point.payload if with_payload is not False else None
        if isinstance(with_payload, Sequence) and not isinstance(with_payload, str) and payload is not None:
            payload = {key: payload[key] for key in with_payload if key in payload}
        result.points.append(
            models.ScoredPoint(id=pid, version=point.version, score=score, payload=payload, vector=None)
        )
    return result
