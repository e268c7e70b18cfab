"""Mixed-coverage queries: use the target model on the covered part before cutover, lose nothing else.

While the backfill runs, the target vector covers only part of the collection. A mixed query:

1. embeds the query text with the source model and searches the source vector, ``oversample`` times the
   limit, fetching the hits' target vectors (and source vectors);
2. embeds the query text with the target model, in one pass with the best (by source rank) source hits
   that have no target vector, at most ``embed_budget`` of them (missing policy ``"embed"``); with none to
   embed (a budget of 0, the default, or ``"source_order"``) it does so while a server answers step 1's
   search (in local mode, whose search is CPU work in this process, after it); both models embed in the
   calling thread;
3. searches the target vector with it for the rest of ``limit * oversample`` candidates beyond the covered
   ones step 1 met, and at least ``limit`` (the best ``limit`` covered points are all it can return of
   them; deeper hits serve as scored neighbours for the estimates of step 5), with the hits' source
   vectors but not their target vectors: Qdrant's score of a hit is its target score;
4. scores in the target space every other candidate that has a target vector (stored, from step 1, or
   just embedded) with simsimd (:mod:`lattice_qdrant.kernels`, the collection's distance);
5. places the candidates still without a target vector by the **missing policy**:

   * ``"embed"``: by an estimated target score, from their nearest candidates in the source space
     (:func:`lattice_qdrant.ranking.estimate`); with ``read_repair`` the vectors embedded are also written
     back, through the strategy's stale-proof conditional write (the backfill's), so they count towards
     coverage;
   * ``"source_order"``: nothing is embedded; they keep the place the source search gave them (their score
     stays the source score), and the covered candidates fill the other places in target order.

A candidate without text is not embedded. Scores are in the target space (cosine similarity, dot product,
or a distance for Euclid / Manhattan, ordered as Qdrant orders them).

**What it costs.** Against a plain target query (one query embedding, one search): a second query
embedding (the source model's), a second search, the candidates' vectors in both replies, and the
budgeted texts in the target's embedding pass (about a query embedding's time per text of a paragraph's
length). ``embed_budget`` bounds the last, which is what dominates: embedding every uncovered candidate
(about 30 at 25% coverage, limit 10) costs some 20 times a target query. :attr:`MixedResult.uncovered`
lists the candidates met without a stored target vector, which the wrapping client records for the
backfill (:mod:`lattice_qdrant.traffic`).

A same-name re-embed has one vector name for both models: which model a point's vector holds is its stamp
(``embedding_model_id`` / ``embedding_version``), not the name. The source search is then restricted to the
points not stamped with the target, the target search to those stamped with it (each combined with the
caller's filter), and only the target search's hits count as holding a target vector; a query embedding is
never compared with the other model's vectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from . import kernels, ranking
from .calibration import passes
from .errors import ConfigError, StoreError
from .plan import MigrationPlan
from .routing import Role
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
        embedded: candidates embedded on the fly (missing policy ``"embed"``, within the budget).
        estimated: candidates placed by an estimated target score (``"embed"``, beyond the budget).
        kept_order: candidates kept at their source rank (``"source_order"``, or nothing to estimate from).
        repaired: ids whose vector was written back by read-repair.
        uncovered: ids of the candidates without a stored target vector (embedded or not, unless
            repaired), best source rank first: what the backfill should embed first.
    """

    points: list[models.ScoredPoint]
    candidates: int = 0
    rescored: int = 0
    embedded: int = 0
    estimated: int = 0
    kept_order: int = 0
    repaired: list[Any] = field(default_factory=list)
    uncovered: list[Any] = field(default_factory=list)


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
    embed_budget: int | None = None,
    query_filter: models.Filter | None = None,
    with_payload: bool | Sequence[str] = True,
    backend: kernels.Backend = "simsimd",
    score_threshold: tuple[float, float] | None = None,
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
        oversample: the source search gathers ``limit * oversample`` candidates, the target search the
            rest of them beyond the covered ones it met, at least ``limit`` (1 to 100).
        embed_budget: under ``"embed"``, how many candidates without a target vector are embedded at most
            (``None``: all of them; the wrapping client passes the plan's ``embed_budget``).
        query_filter: a filter both searches apply.
        with_payload: as in ``query_points`` (the text field is fetched internally either way).
        backend: rescoring kernels (``"simsimd"``, or ``"numpy"`` the reference).
        score_threshold: ``(source, target)`` thresholds: a candidate kept at its source rank (whose score
            is its source score) must be at least as good as the first, every other one (a target score,
            or an estimate of one) as the second; the best ``limit`` that pass are returned.

    Raises:
        ConfigError: ``oversample`` is not between 1 and 100, or ``embed_budget`` is negative.
    """
    _check_knobs(oversample, embed_budget)
    strategy = strategy_for(plan)
    k = max(limit, limit * oversample)
    searches = strategy.mixed_searches(query_filter)
    name, source_name = searches.target_vector, searches.source_vector
    vectors: dict[Any, NDArray[np.float32] | list[float]] = {}
    source_vectors: dict[Any, NDArray[np.float32] | list[float]] = {}

    def search(role: Role, query: NDArray[np.float32], depth: int) -> list[models.ScoredPoint]:
        plan_of = searches.source if role == "source" else searches.target
        points = store.query(
            plan_of.collection,
            query=query.tolist(),
            using=plan_of.using,
            limit=depth,
            with_payload=True,
            with_vectors=plan_of.with_vectors,
            query_filter=plan_of.query_filter,
        ).points
        for point in points:
            if role in searches.vectors_from:
                _keep(vectors, point, name)
            if role in searches.source_vectors_from:
                _keep(source_vectors, point, source_name)
        return points

    def source_side(q_source: NDArray[np.float32]) -> list[models.ScoredPoint]:
        hits = search("source", q_source, k)
        if searches.fetch_from is not None:
            _fetch(store, searches.fetch_from, [p.id for p in hits if p.id not in vectors], name, vectors)
        return hits

    # Both models embed in the calling thread: a CPU forward pass runs slower in a thread other than the
    # first one that used the model. Without texts to embed along with it, the target's query embedding
    # runs while a server answers the source search (a round trip waits; local mode's search is CPU work
    # in this process, which would only slow the forward pass down, so it runs first).
    alone = missing != "embed" or embed_budget == 0
    q_source = embed_source([text])[0]
    todo: list[tuple[Any, str]] = []
    if alone and not store.is_local:
        pending = _pool().submit(source_side, q_source)
        embedded = embed_target([text])
        by_source = pending.result()
    else:
        by_source = source_side(q_source)
        if not alone:
            todo = ranking.to_embed(ranking.gather(by_source, [], vectors), plan.text_field, embed_budget)
        embedded = embed_target([text, *(t for _, t in todo)])
    q_target, fresh = embedded[0], embedded[1:]
    # The best `limit` covered points in the target space are all a mixed query can return of them; the
    # deeper ones only serve as scored neighbours of the uncovered candidates' estimates, and the source
    # search already brought the covered ones it met: ask for the rest of k.
    by_target = search("target", q_target, max(limit, k - len(vectors)))
    # its hits' target scores are Qdrant's, against this very embedding: their vectors are not fetched
    known = {p.id: p.score for p in by_target}
    candidates = ranking.gather(by_source, by_target, vectors, source_vectors, known)
    uncovered = candidates.uncovered
    covered = len(candidates.order) - len(uncovered)
    result = MixedResult(points=[], candidates=len(candidates.order), rescored=covered)
    for (pid, _), row in zip(todo, fresh, strict=True):
        candidates.vectors[pid] = row
    result.embedded = len(todo)
    if todo and read_repair:
        try:
            result.repaired = strategy.write_target(
                store, {pid: (t, fresh[i]) for i, (pid, t) in enumerate(todo)}
            )
        except StoreError as exc:  # a failed repair must not fail the query
            log.warning("%s: read-repair failed: %s", plan.collection, exc)
    repaired = set(result.repaired)
    result.uncovered = [pid for pid in uncovered if pid not in repaired]
    scored = ranking.target_scores(candidates, q_target, plan.target, backend=backend)
    guessed: dict[Any, float] = {}
    if missing == "embed":
        guessed = ranking.estimate(candidates, scored, plan.source, q_source, backend=backend)
    result.points = ranking.rank(
        candidates,
        q_target,
        plan.target,
        limit=limit if score_threshold is None else len(candidates.order),
        with_payload=with_payload,
        backend=backend,
        scored=scored,
        estimates=guessed,
    )
    if score_threshold is not None:
        kept = {pid for pid in candidates.uncovered if pid not in guessed}
        source_t, target_t = score_threshold
        result.points = [
            p
            for p in result.points
            if (
                passes(p.score, source_t, plan.source.distance)
                if p.id in kept
                else passes(p.score, target_t, plan.target.distance)
            )
        ][:limit]
    result.estimated = len(guessed)
    result.kept_order = len(candidates.uncovered) - result.estimated
    return result


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads that wait for a server's answer to a mixed query's source search while the calling
    thread embeds the query for the target."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lattice-mixed")
        return _POOL


def _check_knobs(oversample: int, embed_budget: int | None) -> None:
    if isinstance(oversample, bool) or not isinstance(oversample, int) or not 1 <= oversample <= 100:
        raise ConfigError(
            f"oversample must be an integer from 1 to 100 (a mixed query gathers limit * oversample "
            f"candidates), got {oversample!r}",
            key="oversample",
        )
    if embed_budget is not None and (
        isinstance(embed_budget, bool) or not isinstance(embed_budget, int) or embed_budget < 0
    ):
        raise ConfigError(
            f"embed_budget must be an integer of at least 0 (the texts a mixed query embeds at most; 0 "
            f"embeds none), got {embed_budget!r}",
            key="embed_budget",
        )


def _keep(into: dict[Any, NDArray[np.float32] | list[float]], point: Any, name: str) -> None:
    """Keep ``point``'s dense vector ``name`` (``""``: the unnamed one) under its id, if it has one."""
    found = point.vector
    value = found.get(name) if isinstance(found, dict) else found if name == "" else None
    if isinstance(value, list) and value and not isinstance(value[0], list):
        into.setdefault(point.id, value)


def _fetch(
    store: Store,
    collection: str,
    ids: Sequence[Any],
    name: str,
    into: dict[Any, NDArray[np.float32] | list[float]],
) -> None:
    """Fetch the target vectors of ``ids`` from ``collection`` (blue-green's target collection)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return
    fetched = store.retrieve(collection, wanted, with_payload=False, with_vectors=[name] if name else True)
    for record in fetched:
        value = vector_value(record, name)
        if value is not None:
            into[record.id] = value
