"""Mixed mode's ranking, as pure functions: candidates in, the ranking and the repair list out.

A mixed query (:mod:`lattice_qdrant.mixed` runs the searches) gathers candidates from a source-embedding
search and a target-embedding search. From them, and from the target vectors they hold:

* :func:`gather` puts the candidates in one order (source hits first) and remembers each one's source
  rank;
* :func:`to_embed` lists the candidates without a target vector that have text, best source rank first, up
  to a budget: under the missing policy ``embed`` they are embedded with the target model (and, with
  read-repair, written back);
* :func:`rank` scores every candidate holding a target vector in the target space with the kernels
  (:mod:`lattice_qdrant.kernels`), places the others (:func:`estimate`, or their source rank), and returns
  the best ``limit``.

**Placing what was not embedded.** Under ``embed`` with a budget, the candidates left without a target
vector get an estimated target score (:func:`estimate`): the mean of the target scores of their
:data:`NEIGHBOURS` nearest candidates in the *source* space among those holding a target vector, weighted by
similarity. A point close to well-scored points in the source space is likely well scored in the target
space too; one whose source score alone put it high, among neighbours the target model ranks low, sinks.
One whose source score beats every scored candidate's by more than :data:`SOURCE_SURE` standard deviations
(the source model is sure of it, as of the paragraph a quoted sentence comes from) keeps its source rank, as
do the others (no source vector known, no neighbour, or the policy ``source_order``).

No I/O and no embedder: the executor embeds what :func:`to_embed` lists and adds the rows to the
candidates' vectors before ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from . import kernels
from .spec import ModelSpec

__all__ = [
    "NEIGHBOURS",
    "SOURCE_SURE",
    "Candidates",
    "estimate",
    "gather",
    "rank",
    "target_scores",
    "to_embed",
]

Vector = NDArray[np.float32] | list[float]

#: how many source-space neighbours an estimated target score averages (:func:`estimate`)
NEIGHBOURS = 3
#: standard deviations by which a source score must beat every scored candidate's to keep its source rank
SOURCE_SURE = 2.0


@dataclass
class Candidates:
    """A mixed query's distinct candidates.

    Attributes:
        order: their ids, source hits first (in rank order), then the target's new ones.
        seen: each id's hit (its payload, version and score; the source hit when both found it).
        source_rank: each source hit's rank.
        vectors: the target vectors known, by id.
        source_vectors: the source vectors known, by id (for :func:`estimate`).
        scores: target scores known without their vectors, by id: what the target search gave its hits
            (they hold a target vector; Qdrant scored it against the same query embedding).
    """

    order: list[Any]
    seen: dict[Any, models.ScoredPoint]
    source_rank: dict[Any, int]
    vectors: dict[Any, Vector] = field(default_factory=dict)
    source_vectors: dict[Any, Vector] = field(default_factory=dict)
    scores: dict[Any, float] = field(default_factory=dict)

    @property
    def uncovered(self) -> list[Any]:
        """The candidates without a target vector (neither a vector nor a target score known), in
        :attr:`order`."""
        return [pid for pid in self.order if pid not in self.vectors and pid not in self.scores]


def gather(
    by_source: Sequence[models.ScoredPoint],
    by_target: Sequence[models.ScoredPoint],
    vectors: dict[Any, Vector],
    source_vectors: dict[Any, Vector] | None = None,
    scores: Mapping[Any, float] | None = None,
) -> Candidates:
    """The candidates of both searches, with the target vectors they hold (``vectors``), the source
    vectors known (``source_vectors``) and the target scores known without a vector (``scores``)."""
    order: list[Any] = []
    seen: dict[Any, models.ScoredPoint] = {}
    for point in [*by_source, *by_target]:
        if point.id not in seen:
            seen[point.id] = point
            order.append(point.id)
    return Candidates(
        order=order,
        seen=seen,
        source_rank={p.id: r for r, p in enumerate(by_source)},
        vectors=dict(vectors),
        source_vectors=dict(source_vectors or {}),
        scores=dict(scores or {}),
    )


def to_embed(candidates: Candidates, text_field: str, budget: int | None = None) -> list[tuple[Any, str]]:
    """``(id, text)`` of the candidates without a target vector whose payload holds text, best source rank
    first, at most ``budget`` of them (``None``: all): what the missing policy ``embed`` embeds with the
    target model, and read-repair writes back."""
    out: list[tuple[Any, str]] = []
    last = len(candidates.order)
    for pid in sorted(candidates.uncovered, key=lambda p: candidates.source_rank.get(p, last)):
        if budget is not None and len(out) >= budget:
            break
        text = (candidates.seen[pid].payload or {}).get(text_field)
        if isinstance(text, str) and text.strip():
            out.append((pid, text))
    return out


def target_scores(
    candidates: Candidates,
    q_target: NDArray[np.float32],
    target: ModelSpec,
    *,
    backend: kernels.Backend = "simsimd",
) -> dict[Any, float]:
    """The target score of every candidate holding a target vector, against ``q_target``: the score known
    (:attr:`Candidates.scores`), else its vector's, scored with the kernels."""
    known = candidates.scores
    covered = [pid for pid in candidates.order if pid in candidates.vectors and pid not in known]
    matrix, _ = kernels.to_matrix([candidates.vectors[pid] for pid in covered], target.dimension)
    values = kernels.scores(q_target, matrix, target.distance.value, backend=backend)
    scored = {pid: float(v) for pid, v in zip(covered, values, strict=True)}
    scored.update((pid, float(known[pid])) for pid in candidates.order if pid in known)
    return scored


def estimate(
    candidates: Candidates,
    scored: Mapping[Any, float],
    source: ModelSpec,
    q_source: NDArray[np.float32],
    *,
    neighbours: int = NEIGHBOURS,
    sure: float = SOURCE_SURE,
    backend: kernels.Backend = "simsimd",
) -> dict[Any, float]:
    """Estimated target scores of the candidates without a target vector (see the module docstring).

    Args:
        candidates: the candidates, with their source vectors.
        scored: the target score of each candidate holding a target vector (:func:`target_scores`).
        source: the source model (its distance measures the neighbourhood).
        q_source: the query's source embedding.
        neighbours: how many neighbours to average.
        sure: a candidate whose source score beats every scored candidate's by more than this many
            standard deviations of the source hits' scores gets no estimate (it keeps its source rank).
        backend: scoring kernels.

    Returns:
        an estimate per uncovered candidate that has a source vector and is not one the source is sure of,
        when some scored candidate has a source vector too; empty otherwise.
    """
    sv = candidates.source_vectors
    known = [pid for pid in candidates.order if pid in scored and pid in sv]
    rest = [pid for pid in candidates.uncovered if pid in sv]
    if not known or not rest:
        return {}
    a, _ = kernels.to_matrix([sv[pid] for pid in rest], source.dimension)
    b, _ = kernels.to_matrix([sv[pid] for pid in known], source.dimension)
    higher = kernels.higher_is_better(source.distance)
    sign = 1.0 if higher else -1.0
    by_source = sign * kernels.scores(
        q_source, np.concatenate([a, b]), source.distance.value, backend=backend
    )
    hits = [i for i, pid in enumerate([*rest, *known]) if pid in candidates.source_rank]
    spread = float(np.std(by_source[hits])) if len(hits) > 1 else 0.0  # over the source search's hits
    best_known = float(by_source[len(rest) :].max())
    near = kernels.pairwise(a, b, source.distance.value, backend=backend).astype(np.float64)
    if higher:
        order = np.argsort(-near, axis=1, kind="stable")
        weight = np.maximum(near, 0.0) + 1e-6
    else:
        order = np.argsort(near, axis=1, kind="stable")
        weight = 1.0 / (1.0 + np.maximum(near, 0.0))
    values = np.array([scored[pid] for pid in known], dtype=np.float64)
    out: dict[Any, float] = {}
    for row, pid in enumerate(rest):
        if spread > 0 and (float(by_source[row]) - best_known) / spread > sure:
            continue  # the source model is sure of it: it keeps its source rank
        nearest = order[row, : max(1, neighbours)]
        w = weight[row, nearest]
        out[pid] = float((w * values[nearest]).sum() / w.sum())
    return out


def rank(
    candidates: Candidates,
    q_target: NDArray[np.float32],
    target: ModelSpec,
    *,
    limit: int,
    with_payload: bool | Sequence[str] = True,
    backend: kernels.Backend = "simsimd",
    scored: Mapping[Any, float] | None = None,
    estimates: Mapping[Any, float] | None = None,
) -> list[models.ScoredPoint]:
    """The best ``limit`` candidates, best first.

    Candidates holding a target vector are scored against ``q_target`` in ``target``'s space (its
    distance; scores ordered as Qdrant orders them; or ``scored``, from :func:`target_scores`). The
    others with an estimated target score (``estimates``, from :func:`estimate`) are ranked with them at
    that score, which is the score returned. The rest keep their source rank (and their source score); the
    ranked ones fill the other places, in target order.
    """
    order, seen = candidates.order, candidates.seen
    if scored is None:
        scored = target_scores(candidates, q_target, target, backend=backend)
    guessed = estimates or {}
    covered = [pid for pid in order if pid in scored]
    pool = [*covered, *(pid for pid in candidates.uncovered if pid in guessed)]
    pool_values = np.array([scored.get(pid, guessed.get(pid, 0.0)) for pid in pool], dtype=np.float64)
    higher = kernels.higher_is_better(target.distance)
    best = np.argsort(-pool_values if higher else pool_values, kind="stable")
    ranked = [(pool[i], float(pool_values[i])) for i in best]

    keep = sorted(
        (pid for pid in candidates.uncovered if pid not in guessed),
        key=lambda pid: candidates.source_rank.get(pid, len(order)),
    )
    positions = {pid: candidates.source_rank.get(pid, len(order)) for pid in keep}
    slots: list[tuple[Any, float]] = []
    pending = iter(ranked)
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

    out = []
    for pid, score in slots[:limit]:
        point = seen[pid]
        payload = point.payload if with_payload is not False else None
        if isinstance(with_payload, Sequence) and not isinstance(with_payload, str) and payload is not None:
            payload = {key: payload[key] for key in with_payload if key in payload}
        out.append(
            models.ScoredPoint(id=pid, version=point.version, score=score, payload=payload, vector=None)
        )
    return out
