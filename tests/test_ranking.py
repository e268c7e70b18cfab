"""Mixed mode's ranking is pure: candidates in, the ranking and the repair list out."""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import models

from lattice_qdrant import ranking
from lattice_qdrant.spec import ModelSpec

TARGET = ModelSpec(model_id="t", version=1, dimension=2, distance="Dot", name="hash:bow")


def hit(pid: int, score: float, text: str | None = None) -> models.ScoredPoint:
    payload: dict[str, Any] = {"text": text} if text is not None else {"n": pid}
    return models.ScoredPoint(id=pid, version=0, score=score, payload=payload)


def test_covered_candidates_are_rescored_and_the_others_keep_their_source_rank() -> None:
    by_source = [hit(1, 0.9), hit(2, 0.8, "two"), hit(3, 0.7)]
    by_target = [hit(4, 5.0), hit(1, 4.0)]
    vectors: dict[Any, Any] = {1: [1.0, 0.0], 3: [3.0, 0.0], 4: [2.0, 0.0]}
    candidates = ranking.gather(by_source, by_target, vectors)
    assert candidates.order == [1, 2, 3, 4] and candidates.uncovered == [2]
    assert ranking.to_embed(candidates, "text") == [(2, "two")]  # the repair list, when embedded
    ranked = ranking.rank(candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET, limit=4)
    # point 2 has no target vector: it keeps the place the source search gave it (second)
    assert [(p.id, p.score) for p in ranked] == [(3, 3.0), (2, 0.8), (4, 2.0), (1, 1.0)]
    assert ranked[0].payload == {"n": 3}
    fewer = ranking.rank(
        candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET, limit=2, with_payload=False
    )
    assert [p.id for p in fewer] == [3, 2] and fewer[0].payload is None


def test_an_embedded_candidate_is_ranked_like_the_stored_ones() -> None:
    candidates = ranking.gather([hit(1, 0.9, "one"), hit(2, 0.8)], [], {2: [1.0, 0.0]})
    for pid, _ in ranking.to_embed(candidates, "text"):
        candidates.vectors[pid] = np.array([4.0, 0.0], dtype=np.float32)
    ranked = ranking.rank(candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET, limit=2)
    assert [(p.id, p.score) for p in ranked] == [(1, 4.0), (2, 1.0)] and candidates.uncovered == []
