"""Mixed mode's ranking is pure: candidates in, the ranking and the repair list out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
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


def test_a_target_hits_score_stands_for_its_vector() -> None:
    # 4 came from the target search without its vector; 1 is in both (its vector from the source search)
    by_source = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)]
    by_target = [hit(4, 5.0), hit(1, 4.0)]
    candidates = ranking.gather(by_source, by_target, {1: [1.0, 0.0], 3: [3.0, 0.0]}, scores={4: 2.5, 1: 1.5})
    assert candidates.uncovered == [2]  # 4 is covered: its score is known
    scored = ranking.target_scores(candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET)
    # the known scores are taken as they are (1's vector would score 1.0), the others rescored
    assert scored == {1: 1.5, 3: 3.0, 4: 2.5}
    ranked = ranking.rank(candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET, limit=4, scored=scored)
    assert [(p.id, p.score) for p in ranked] == [(3, 3.0), (2, 0.8), (4, 2.5), (1, 1.5)]


def test_an_embedded_candidate_is_ranked_like_the_stored_ones() -> None:
    candidates = ranking.gather([hit(1, 0.9, "one"), hit(2, 0.8)], [], {2: [1.0, 0.0]})
    for pid, _ in ranking.to_embed(candidates, "text"):
        candidates.vectors[pid] = np.array([4.0, 0.0], dtype=np.float32)
    ranked = ranking.rank(candidates, np.array([1.0, 0.0], dtype=np.float32), TARGET, limit=2)
    assert [(p.id, p.score) for p in ranked] == [(1, 4.0), (2, 1.0)] and candidates.uncovered == []


SOURCE = ModelSpec(model_id="s", version=1, dimension=2, distance="Cosine", name="hash:bow")


def test_a_candidate_not_embedded_is_placed_by_its_source_neighbours() -> None:
    # 1 and 2 hold target vectors; 3 does not, and sits next to 2 in the source space
    by_source = [hit(3, 0.50), hit(1, 0.49), hit(2, 0.48)]
    vectors: dict[Any, Any] = {1: [1.0, 0.0], 2: [3.0, 0.0]}
    sources: dict[Any, Any] = {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [0.1, 1.0]}
    candidates = ranking.gather(by_source, [], vectors, sources)
    q = np.array([1.0, 0.0], dtype=np.float32)
    scored = ranking.target_scores(candidates, q, TARGET)
    guessed = ranking.estimate(candidates, scored, SOURCE, np.array([1.0, 0.0], dtype=np.float32))
    near = np.array([0.1, 1.0]) / np.linalg.norm([0.1, 1.0])
    w1, w2 = max(float(near @ [1.0, 0.0]), 0) + 1e-6, float(near @ [0.0, 1.0]) + 1e-6
    assert guessed == {3: pytest.approx((w1 * 1.0 + w2 * 3.0) / (w1 + w2))}
    ranked = ranking.rank(candidates, q, TARGET, limit=3, scored=scored, estimates=guessed)
    assert [p.id for p in ranked] == [2, 3, 1]
    # without an estimate it keeps its source rank (first)
    assert [p.id for p in ranking.rank(candidates, q, TARGET, limit=3)] == [3, 2, 1]


def test_a_candidate_the_source_is_sure_of_keeps_its_source_rank() -> None:
    """A known-item search: the source scores its answer far above everything the target has scored, and
    the answer's neighbours score low in the target space; it keeps the top place instead of sinking."""
    answer = 0
    angles = np.radians(np.linspace(80, 100, 19))
    sources: dict[Any, Any] = {answer: [1.0, 0.0]}
    sources |= {i: [float(np.cos(a)), float(np.sin(a))] for i, a in enumerate(angles, start=1)}
    q_source = np.array([1.0, 0.0], dtype=np.float32)
    by_source = sorted(
        (hit(pid, float(np.dot(v, q_source))) for pid, v in sources.items()), key=lambda p: -p.score
    )
    vectors: dict[Any, Any] = {i: [0.1 * (i % 5), 1.0] for i in range(1, 20, 2)}  # half covered
    candidates = ranking.gather(by_source, [], vectors, sources)
    q_target = np.array([1.0, 0.0], dtype=np.float32)
    scored = ranking.target_scores(candidates, q_target, TARGET)
    guessed = ranking.estimate(candidates, scored, SOURCE, q_source)
    assert answer not in guessed and set(guessed) == set(candidates.uncovered) - {answer}
    ranked = ranking.rank(candidates, q_target, TARGET, limit=10, scored=scored, estimates=guessed)
    assert ranked[0].id == answer and by_source[0].id == answer  # the source alone's recall@1, kept
    # were it estimated like the others, it would sink below the scored candidates
    unsure = ranking.estimate(candidates, scored, SOURCE, q_source, sure=float("inf"))
    sunk = ranking.rank(candidates, q_target, TARGET, limit=5, scored=scored, estimates=unsure)
    assert answer not in [p.id for p in sunk]


def test_the_budget_embeds_the_best_source_ranks_first() -> None:
    by_source = [hit(i, 1.0 - i / 10, f"text {i}") for i in range(6)]
    candidates = ranking.gather(by_source, [], {1: [1.0, 0.0], 4: [1.0, 0.0]})
    assert ranking.to_embed(candidates, "text", 2) == [(0, "text 0"), (2, "text 2")]
    assert ranking.to_embed(candidates, "text", 0) == []
    assert [pid for pid, _ in ranking.to_embed(candidates, "text")] == [0, 2, 3, 5]
