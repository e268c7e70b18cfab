"""Mixed mode's ranking, as pure functions: candidates in, the ranking and the repair list out.

A mixed query (:mod:`lattice_qdrant.mixed` runs the searches) gathers candidates from a source-embedding
search and a target-embedding search. From them, and from the target vectors they hold:

* :func:`gather` puts the candidates in one order (source hits first) and remembers each one's source
  rank;
* :func:`to_embed` lists the candidates without a target vector that have text: under the missing policy
  ``embed`` they are embedded with the target model (and, with read-repair, written back);
* :func:`rank` scores every candidate holding a target vector in the target space with the kernels
  (:mod:`lattice_qdrant.kernels`), keeps the others at their source rank, and returns the best ``limit``.

No I/O and no embedder: the executor embeds what :func:`to_embed` lists and adds the rows to the
candidates' vectors before ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from . import kernels
from .spec import ModelSpec

__all__ = ["Candidates", "gather", "rank", "to_embed"]

Vector = NDArray[np.float32] | list[float]


@dataclass
class Candidates:
    """A mixed query's distinct candidates.

    Attributes:
        order: their ids, source hits first (in rank order), then the target's new ones.
        seen: each id's hit (its payload, version and score; the source hit when both found it).
        source_rank: each source hit's rank.
        vectors: the target vectors known, by id.
    """

    order: list[Any]
    seen: dict[Any, models.ScoredPoint]
    source_rank: dict[Any, int]
    vectors: dict[Any, Vector] = field(default_factory=dict)

    @property
    def uncovered(self) -> list[Any]:
        """The candidates without a target vector, in :attr:`order`."""
        return [pid for pid in self.order if pid not in self.vectors]


def gather(
    by_source: Sequence[models.ScoredPoint],
    by_target: Sequence[models.ScoredPoint],
    vectors: dict[Any, Vector],
) -> Candidates:
    """The candidates of both searches, with the target vectors they hold (``vectors``)."""
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
    )


def to_embed(candidates: Candidates, text_field: str) -> list[tuple[Any, str]]:
    """``(id, text)`` of the candidates without a target vector whose payload holds text: what the missing
    policy ``embed`` embeds with the target model, and read-repair writes back."""
    out = []
    for pid in candidates.uncovered:
        text = (candidates.seen[pid].payload or {}).get(text_field)
        if isinstance(text, str) and text.strip():
            out.append((pid, text))
    return out


def rank(
    candidates: Candidates,
    q_target: NDArray[np.float32],
    target: ModelSpec,
    *,
    limit: int,
    with_payload: bool | Sequence[str] = True,
    backend: kernels.Backend = "simsimd",
) -> list[models.ScoredPoint]:
    """The best ``limit`` candidates, best first.

    Candidates holding a target vector are scored against ``q_target`` in ``target``'s space (its
    distance; scores ordered as Qdrant orders them). The others keep their source rank (and their source
    score); the covered ones fill the other places, in target order.
    """
    order, seen, vectors = candidates.order, candidates.seen, candidates.vectors
    covered = [pid for pid in order if pid in vectors]
    matrix, _ = kernels.to_matrix([vectors[pid] for pid in covered], target.dimension)
    idx, values = kernels.rank(q_target, matrix, target.distance.value, backend=backend)
    ranked = [(covered[i], float(v)) for i, v in zip(idx, values, strict=True)]

    keep = sorted(candidates.uncovered, key=lambda pid: candidates.source_rank.get(pid, len(order)))
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
