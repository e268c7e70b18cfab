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

from . import kernels, ranking
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

    The plan's strategy says where the two searches run and where the candidates' target vectors are
    (:meth:`~lattice_qdrant.strategies.MigrationStrategy.mixed_searches`); the ranking is
    :mod:`lattice_qdrant.ranking`'s.

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
    strategy = strategy_for(plan)
    k = max(limit, limit * max(1, oversample))
    q_source = embed_source([text])[0]
    q_target = embed_target([text])[0]
    searches = strategy.mixed_searches(query_filter)
    found = {
        role: store.query(
            search.collection,
            query=vector.tolist(),
            using=search.using,
            limit=k,
            with_payload=True,
            with_vectors=search.with_vectors,
            query_filter=search.query_filter,
        ).points
        for role, search, vector in (
            ("source", searches.source, q_source),
            ("target", searches.target, q_target),
        )
    }
    name = searches.target_vector
    vectors: dict[Any, NDArray[np.float32] | list[float]] = {}
    for role in searches.vectors_from:
        for point in found[role]:
            value = vector_value(point, name)
            if value is not None:
                vectors.setdefault(point.id, value)
    if searches.fetch_from is not None:
        lacking = list(
            dict.fromkeys(p.id for p in [*found["source"], *found["target"]] if p.id not in vectors)
        )
        fetched = (
            store.retrieve(
                searches.fetch_from, lacking, with_payload=False, with_vectors=[name] if name else True
            )
            if lacking
            else []
        )
        for record in fetched:
            value = vector_value(record, name)
            if value is not None:
                vectors[record.id] = value
    candidates = ranking.gather(found["source"], found["target"], vectors)
    result = MixedResult(points=[], candidates=len(candidates.order), rescored=len(candidates.vectors))
    if missing == "embed":
        todo = ranking.to_embed(candidates, plan.text_field)
        if todo:
            fresh = embed_target([t for _, t in todo])
            for (pid, _), row in zip(todo, fresh, strict=True):
                candidates.vectors[pid] = row
            result.embedded = len(todo)
            if read_repair:
                try:
                    result.repaired = strategy.write_target(
                        store, {pid: (t, fresh[i]) for i, (pid, t) in enumerate(todo)}
                    )
                except StoreError as exc:  # a failed repair must not fail the query
                    log.warning("%s: read-repair failed: %s", plan.collection, exc)
    result.kept_order = len(candidates.uncovered)
    result.points = ranking.rank(
        candidates, q_target, plan.target, limit=limit, with_payload=with_payload, backend=backend
    )
    return result
