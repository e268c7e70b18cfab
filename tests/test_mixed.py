"""Mixed-coverage queries: the target model on the covered part before cutover, without losing the rest.

Every expectation is computed independently: the candidates the two searches gathered (recorded at the
store) are scored with numpy from the target model's embeddings of their text and ordered as Qdrant orders
the distance. Races are injected deterministically by wrapping ``Store.update_vectors``.
A bug found in the library is pinned by a test marked ``xfail(strict=True)`` whose reason names it.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.backfill import run_backfill, write_target_vectors
from lattice_qdrant.embedders import Embedder, HashEmbedder, embedder_for
from lattice_qdrant.errors import VectorValidationError
from lattice_qdrant.mixed import MixedResult, mixed_query
from lattice_qdrant.spec import Distance
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, Store, open_store
from lattice_qdrant.testing import Call, FaultyStore, Meanwhile, StoreWrapper

from conftest import MakeMigration, fill_collection, make_lattice, unit

TARGET = "modern-v1"
QUERIES = [
    "the cat sat on the mat",
    "vector search over embeddings",
    "bread and butter recipe",
    "football match tomorrow",
]
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "mat",
    "fire",
    "sat",
    "walk",
    "python",
    "code",
    "vector",
    "search",
    "embeddings",
    "index",
    "market",
    "stock",
    "bread",
    "bakery",
    "butter",
    "recipe",
    "eggs",
    "flour",
    "migration",
    "schema",
    "football",
    "match",
    "tomorrow",
    "rain",
    "weather",
    "qdrant",
    "database",
    "neighbour",
    "model",
    "space",
    "point",
    "query",
    "fast",
    "slow",
    "red",
    "green",
    "blue",
    "over",
    "on",
    "and",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct bags of words, so that few candidates tie on a score."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
        if text not in out:
            out.append(text)
    return out


# --------------------------------------------------------------------------- helpers


def score(query: NDArray[Any], vectors: NDArray[Any], distance: Distance) -> NDArray[np.float64]:
    """Scores as Qdrant computes them, in float64."""
    q = np.asarray(query, dtype=np.float64)
    m = np.asarray(vectors, dtype=np.float64).reshape(-1, q.shape[0])
    if distance == Distance.COSINE:
        qn, mn = np.linalg.norm(q), np.linalg.norm(m, axis=1)
        return np.where(mn * qn > 0, m @ q / np.where(mn * qn > 0, mn * qn, 1.0), 0.0)
    if distance == Distance.DOT:
        return m @ q
    if distance == Distance.EUCLID:
        return np.linalg.norm(m - q, axis=1)
    return np.abs(m - q).sum(axis=1)


def best_first(ids: Sequence[Any], scores: NDArray[np.float64], distance: Distance) -> list[Any]:
    """``ids`` ordered best first under ``distance`` (ties keep the given order, as ``kernels.rank`` does)."""
    higher = distance in (Distance.COSINE, Distance.DOT)
    order = np.argsort(-scores if higher else scores, kind="stable")
    return [ids[i] for i in order]


def assert_ranking(
    got: Sequence[tuple[Any, float]], want: Sequence[tuple[Any, float]], tol: float = 1e-5
) -> None:
    """``got`` is the head of ``want`` (both best first, ``(id, score)``), up to the order of tied scores.

    Scores must agree position by position; ids must agree except inside a run of scores within ``tol`` of
    each other, where any order is right (float32 arithmetic differs between Qdrant, simsimd and numpy), and
    at the cut, where any of the tied ids may be the last one in.
    """
    assert len(got) == min(len(got), len(want)) and got, (got, want)
    for (gid, gscore), (_, wscore) in zip(got, want, strict=False):
        assert gscore == pytest.approx(wscore, rel=tol, abs=tol), (gid, got, want)
    n, i = len(got), 0
    while i < n:
        j = i
        while j + 1 < len(want) and abs(want[j + 1][1] - want[i][1]) <= tol * max(1.0, abs(want[i][1])):
            j += 1
        group = {pid for pid, _ in want[i : j + 1]}
        mine = {pid for pid, _ in got[i : min(j + 1, n)]}
        if j + 1 <= n:
            assert mine == group, (i, got, want)
        else:
            assert mine <= group, (i, got, want)
        i = j + 1


def pairs(points: Sequence[models.ScoredPoint]) -> list[tuple[Any, float]]:
    return [(p.id, float(p.score)) for p in points]


def texts_of(client: QdrantClient, collection: str, ids: Sequence[Any]) -> dict[Any, str]:
    return {r.id: r.payload["text"] for r in client.retrieve(collection, list(ids), with_payload=True)}


def coverage(client: QdrantClient, collection: str) -> int:
    flt = models.Filter(must=[models.HasVectorCondition(has_vector=TARGET)])
    return client.count(collection, count_filter=flt, exact=True).count


class Searches(FaultyStore):
    """The migration's store, recording every search (``query``) it makes with its answer; under
    :meth:`replaying`, the same search made again gets the first answer (local mode's float32 scores wobble
    between identical calls, which can swap exact ties). Faults are injected as in any ``FaultyStore``."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.made: list[tuple[Call, list[models.ScoredPoint]]] = []
        self._replay: dict[Any, Any] | None = None

    def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
        if call.method != "query":
            return super().handle(call, proceed)
        args = call.arguments
        q = args.get("query")
        options = (repr(args.get(k)) for k in ("limit", "query_filter", "with_payload", "with_vectors"))
        key = (call.collection, args.get("using"), tuple(q) if isinstance(q, list) else repr(q), *options)
        if self._replay is not None and key in self._replay:
            response = self._replay[key]
        else:
            response = super().handle(call, proceed)
            if self._replay is not None:
                self._replay[key] = response
        self.made.append((call, list(response.points)))
        return response

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Within this block, a search made twice gets the first answer again."""
        self._replay = {}
        try:
            yield
        finally:
            self._replay = None


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any) -> lq.LatticeClient:
    """The wrapped client, over a store that records the searches and takes faults."""
    store = Searches(open_store(qdrant, control_collection=names("control")))
    return make_lattice(qdrant, names, store=store)


class Setup:
    """A started migration of ``n`` points, with its embedders and the means to cover chosen points."""

    def __init__(self, lattice: lq.LatticeClient, migration: lq.Migration, source: Embedder) -> None:
        self.lattice = lattice
        self.migration = migration
        self.plan = migration.plan
        self.docs = migration.collection
        self.source = source
        self.target = embedder_for(self.plan.target)
        self.distance = self.plan.target.distance
        assert isinstance(lattice.store, Searches)
        self.store: Searches = lattice.store
        self.replaying = self.store.replaying

    @property
    def searches(self) -> list[tuple[str | None, list[models.ScoredPoint]]]:
        """Every search the library made since the last query: its vector and its answer."""
        return [(call.arguments.get("using"), points) for call, points in self.store.made]

    def gathered(self) -> list[Any]:
        """The candidates of the last query: its source hits then its target hits, each id once."""
        out: list[Any] = []
        for _, points in self.searches:
            out.extend(p.id for p in points if p.id not in out)
        return out

    def source_ranks(self) -> dict[Any, int]:
        """Rank of each hit of the last query's source search."""
        ((points),) = [points for using, points in self.searches if using == self.plan.source_vector]
        return {p.id: rank for rank, p in enumerate(points)}

    @property
    def raw(self) -> QdrantClient:
        return self.lattice.client

    def cover(self, ids: Sequence[Any]) -> None:
        """Give exactly these points their target vector (through the backfill's conditional write)."""
        texts = texts_of(self.raw, self.docs, ids)
        vectors = self.target.embed([texts[pid] for pid in ids])
        write_target_vectors(
            self.lattice.store, self.plan, {pid: (texts[pid], vectors[i]) for i, pid in enumerate(ids)}
        )

    def cover_all(self) -> None:
        run_backfill(self.migration, self.target)

    def query(self, text: str, **kwargs: Any) -> MixedResult:
        self.store.made.clear()
        return mixed_query(
            self.lattice.store,
            self.plan,
            text,
            embed_source=self.source.embed,
            embed_target=self.target.embed,
            **kwargs,
        )

    def search(
        self, text: str, vector: str, k: int, query_filter: models.Filter | None = None
    ) -> list[models.ScoredPoint]:
        """The raw client's own search of one named vector."""
        embedder = self.source if vector == self.plan.source_vector else self.target
        return self.raw.query_points(
            self.docs,
            query=embedder.embed([text])[0].tolist(),
            using=vector,
            limit=k,
            query_filter=query_filter,
            with_payload=True,
        ).points

    def brute_force(self, text: str, ids: Sequence[Any]) -> list[tuple[Any, float]]:
        """``ids`` ranked best first in the target space from the target model's embedding of their text."""
        texts = texts_of(self.raw, self.docs, ids)
        query = self.target.embed([text])[0]
        values = score(query, self.target.embed([texts[pid] for pid in ids]), self.distance)
        scores = dict(zip(ids, values.tolist(), strict=True))
        return [(pid, scores[pid]) for pid in best_first(list(ids), values, self.distance)]


Make = Callable[..., Setup]


@pytest.fixture
def setup(lattice: lq.LatticeClient, make_migration: MakeMigration, legacy: HashEmbedder) -> Make:
    def make(n: int = 48, **plan: Any) -> Setup:
        return Setup(lattice, make_migration(n, texts=make_texts(n), **plan), legacy)

    return make


def ids_of(points: Sequence[models.ScoredPoint]) -> list[Any]:
    return [p.id for p in points]


# --------------------------------------------------------------------------- rescoring is exact


@pytest.mark.parametrize("text", QUERIES)
def test_at_no_coverage_embed_ranks_the_candidates_exactly_in_the_target_space(
    setup: Make, text: str
) -> None:
    s = setup()
    result = s.query(text, limit=5, oversample=4, missing="embed")
    gathered = s.gathered()
    assert len(gathered) == 20  # the target search finds nothing yet
    assert_ranking(pairs(result.points), s.brute_force(text, gathered))
    assert len(result.points) == 5
    assert (result.candidates, result.rescored, result.embedded, result.kept_order) == (20, 0, 20, 0)
    assert result.repaired == [] and coverage(s.raw, s.docs) == 0  # no read-repair unless asked


@pytest.mark.parametrize("text", QUERIES)
def test_at_full_coverage_mixed_is_the_target_search(setup: Make, text: str) -> None:
    s = setup()
    s.cover_all()
    result = s.query(text, limit=7, oversample=3)
    assert_ranking(pairs(result.points), pairs(s.search(text, TARGET, 30)))
    assert len(result.points) == 7
    assert result.embedded == result.kept_order == 0 and result.rescored == result.candidates


@pytest.mark.parametrize("text", QUERIES)
def test_at_partial_coverage_embed_orders_as_full_coverage_would(setup: Make, text: str) -> None:
    s = setup()
    s.cover([pid for pid in range(48) if pid % 3 == 0])
    result = s.query(text, limit=6, oversample=4, missing="embed")
    gathered = s.gathered()
    assert_ranking(pairs(result.points), s.brute_force(text, gathered))
    assert result.candidates == len(gathered)
    assert result.rescored + result.embedded == result.candidates and result.kept_order == 0
    assert 0 < result.rescored < result.candidates

    # the same candidates, scored from the vectors a full backfill stores, come in the same order
    s.cover_all()
    stored = {
        r.id: r.vector[TARGET]
        for r in s.raw.retrieve(s.docs, gathered, with_vectors=[TARGET])
        if isinstance(r.vector, dict)
    }
    values = score(s.target.embed([text])[0], np.array([stored[pid] for pid in gathered]), s.distance)
    scores = dict(zip(gathered, values.tolist(), strict=True))
    full = [(pid, scores[pid]) for pid in best_first(gathered, values, s.distance)]
    assert_ranking(pairs(result.points), full)


def test_numpy_and_simsimd_backends_give_the_same_ranking(setup: Make) -> None:
    s = setup()
    s.cover(list(range(0, 48, 2)))
    covered = set(range(0, 48, 2))
    for text in QUERIES:
        for missing in ("embed", "source_order"):
            with s.replaying():  # the same candidates for both
                fast = s.query(text, limit=100, missing=missing, backend="simsimd")
                reference = s.query(text, limit=100, missing=missing, backend="numpy")
            assert len(fast.points) == fast.candidates == reference.candidates
            if missing == "embed":
                assert_ranking(pairs(fast.points), pairs(reference.points))
                continue
            # uncovered candidates hold the same places; the covered ones rank the same around them
            kept = [(i, p.id) for i, p in enumerate(fast.points) if p.id not in covered]
            assert kept == [(i, p.id) for i, p in enumerate(reference.points) if p.id not in covered]
            assert_ranking(
                [p for p in pairs(fast.points) if p[0] in covered],
                [p for p in pairs(reference.points) if p[0] in covered],
            )


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("distance", [Distance.DOT, Distance.EUCLID, Distance.MANHATTAN])
def test_other_distances_rank_in_the_direction_qdrant_does(
    setup: Make, target_spec: lq.ModelSpec, distance: Distance
) -> None:
    # unnormalised vectors, so that dot, Euclid and Manhattan rank differently from cosine
    target = target_spec.model_copy(update={"distance": distance, "normalize": False})
    s = setup(target=target)
    assert s.lattice.store.vectors(s.docs)[TARGET].distance == distance
    s.cover([pid for pid in range(48) if pid % 2 == 0])
    for text in QUERIES:
        result = s.query(text, limit=6, oversample=4, missing="embed")
        assert_ranking(pairs(result.points), s.brute_force(text, s.gathered()))

    s.cover_all()
    for text in QUERIES:
        result = s.query(text, limit=6, oversample=4)
        native = s.search(text, TARGET, 30)  # Qdrant's own order and scores for this distance
        assert_ranking(pairs(result.points), pairs(native))
        assert len(result.points) == 6


# --------------------------------------------------------------------------- the missing policy


def well_apart(points: Sequence[models.ScoredPoint], ranks: range, count: int) -> list[int]:
    """The first ``count`` ranks whose score is clear of both neighbours' (no tie can move them)."""
    out = []
    for r in ranks:
        gaps = [abs(points[r].score - points[n].score) for n in (r - 1, r + 1) if 0 <= n < len(points)]
        if min(gaps) > 1e-4:
            out.append(r)
    assert len(out) >= count, "the corpus has too many ties for this query"
    return out[:count]


def test_source_order_keeps_uncovered_candidates_at_their_source_ranks(setup: Make) -> None:
    s = setup()
    text = QUERIES[0]
    by_source = s.search(text, "legacy", 16)  # limit 8, oversample 2: what the query gathers
    ranks = well_apart(by_source, range(8), 2)
    uncovered = {by_source[r].id for r in ranks}
    s.cover([pid for pid in range(48) if pid not in uncovered])

    result = s.query(text, limit=8, oversample=2, missing="source_order")
    got = ids_of(result.points)
    assert len(got) == 8
    source_ranks = s.source_ranks()
    for rank in ranks:
        pid = by_source[rank].id
        assert source_ranks[pid] == rank and got[rank] == pid
        assert result.points[rank].score == pytest.approx(by_source[rank].score, abs=1e-6)
    # the other places hold the covered candidates, best first in the target space
    covered = s.brute_force(text, [pid for pid in s.gathered() if pid not in uncovered])
    assert_ranking([p for p in pairs(result.points) if p[0] not in uncovered], covered)
    assert (result.kept_order, result.embedded) == (2, 0)
    assert result.rescored == result.candidates - 2


def test_source_order_at_no_coverage_is_the_source_search(setup: Make) -> None:
    s = setup()
    for text in QUERIES:
        result = s.query(text, limit=5, missing="source_order")
        assert_ranking(pairs(result.points), pairs(s.search(text, "legacy", 20)))
        assert len(result.points) == 5 and result.kept_order == result.candidates == 20


def source_neighbours_estimate(s: Setup, pid: Any, exact: dict[Any, float], neighbours: int = 3) -> float:
    """The target score mixed mode estimates for ``pid``: the mean of the exact target scores of its
    ``neighbours`` nearest scored candidates in the source space (stored source vectors), weighted by
    their cosine similarity."""
    ids = [pid, *exact]
    stored = {r.id: r.vector["legacy"] for r in s.raw.retrieve(s.docs, ids, with_vectors=["legacy"])}
    near = score(np.array(stored[pid]), np.array([stored[q] for q in exact]), Distance.COSINE)
    order = np.argsort(-near, kind="stable")[:neighbours]
    weights = np.maximum(near[order], 0.0) + 1e-6
    values = np.array(list(exact.values()))[order]
    return float((weights * values).sum() / weights.sum())


def test_points_without_text_are_placed_by_their_source_neighbours_under_embed(setup: Make) -> None:
    s = setup()
    text = QUERIES[1]
    by_source = s.search(text, "legacy", 20)
    ranks = well_apart(by_source, range(10), 2)
    mute = {by_source[r].id for r in ranks}
    s.raw.delete_payload(s.docs, ["text"], points=[by_source[ranks[0]].id])
    s.raw.set_payload(s.docs, {"text": "   "}, points=[by_source[ranks[1]].id])

    result = s.query(text, limit=10, oversample=2, missing="embed", read_repair=True)
    # the 18 with text are embedded and scored exactly; the 2 without are placed among them by the score
    # their source-space neighbours have
    exact = dict(s.brute_force(text, [pid for pid in s.gathered() if pid not in mute]))
    guessed = {pid: source_neighbours_estimate(s, pid, exact) for pid in mute}
    everyone = {**exact, **guessed}
    ids = list(everyone)
    want = [(pid, everyone[pid]) for pid in best_first(ids, np.array(list(everyone.values())), s.distance)]
    assert_ranking(pairs(result.points), want)
    assert (result.kept_order, result.embedded, result.estimated) == (0, 18, 2)
    assert not mute & set(result.repaired) and set(result.uncovered) == mute


# --------------------------------------------------------------------------- read-repair


def test_read_repair_writes_the_embedded_vectors_back(setup: Make) -> None:
    s = setup()
    s.cover([0, 1, 2])
    before = coverage(s.raw, s.docs)
    text = QUERIES[2]
    result = s.query(text, limit=5, oversample=4, missing="embed", read_repair=True)
    assert result.embedded > 0
    assert coverage(s.raw, s.docs) == before + result.embedded
    assert sorted(result.repaired) == sorted(pid for pid in s.gathered() if pid not in (0, 1, 2))
    records = s.raw.retrieve(s.docs, result.repaired, with_payload=True, with_vectors=True)
    expected = s.target.embed([r.payload["text"] for r in records])
    for record, want in zip(records, expected, strict=True):
        assert np.allclose(unit(record.vector[TARGET]), unit(want), atol=1e-5)
        assert (record.payload[MODEL_FIELD], record.payload[VERSION_FIELD]) == ("modern", 1)

    # the next query finds them covered: nothing left to embed among the same candidates
    again = s.query(text, limit=5, oversample=4, missing="embed", read_repair=True)
    assert again.embedded == 0 and again.repaired == []
    # the same ranking, but for points tied with the last one in (its score is now Qdrant's, before it was
    # computed here from the embedding): either may take the last place
    assert [p.score for p in again.points] == pytest.approx([p.score for p in result.points], abs=1e-5)
    last = result.points[-1].score

    def above_the_cut(points: Sequence[models.ScoredPoint]) -> list[Any]:
        return [p.id for p in points if abs(p.score - last) > 1e-5]

    assert sorted(above_the_cut(again.points)) == sorted(above_the_cut(result.points))  # scores fix the order


def test_read_repair_needs_embed(setup: Make) -> None:
    s = setup()
    result = s.query(QUERIES[0], limit=5, missing="source_order", read_repair=True)
    assert result.repaired == [] and coverage(s.raw, s.docs) == 0


#: the store method read-repair writes with
REPAIR = "update_if_unchanged"


def inject_dual_write(s: Setup, new_text: str, pick: Callable[[list[Any]], Any]) -> list[Any]:
    """Right before the repair's write, the application rewrites one of the points in it."""
    victim: list[Any] = []

    def rewrite(call: Call) -> None:
        victim.append(pick(list(call.arguments["pending"])))
        s.lattice.upsert(
            s.docs,
            [
                models.PointStruct(
                    id=victim[0],
                    vector=models.Document(text=new_text, model="auto"),
                    payload={"text": new_text},
                )
            ],
        )

    s.store.inject(REPAIR, Meanwhile(rewrite, on=1))
    return victim


def test_read_repair_never_overwrites_a_fresher_vector(setup: Make) -> None:
    s = setup()
    new_text = "the application rewrote this point between the query's read and its repair"
    victim = inject_dual_write(s, new_text, lambda ids: ids[len(ids) // 2])
    result = s.query(QUERIES[3], limit=5, missing="embed", read_repair=True)
    assert victim and result.embedded > 1
    record = s.raw.retrieve(s.docs, victim, with_payload=True, with_vectors=True)[0]
    assert record.payload["text"] == new_text
    assert np.allclose(unit(record.vector[TARGET]), unit(s.target.embed([new_text])[0]), atol=1e-5)
    assert np.allclose(unit(record.vector["legacy"]), unit(s.source.embed([new_text])[0]), atol=1e-5)
    assert coverage(s.raw, s.docs) == result.embedded  # the others were repaired; the victim by its writer


def test_read_repair_does_not_report_a_skipped_point_as_repaired(setup: Make) -> None:
    s = setup()
    victim = inject_dual_write(s, "rewritten meanwhile", lambda ids: ids[0])
    result = s.query(QUERIES[3], limit=5, missing="embed", read_repair=True)
    assert victim
    assert victim[0] not in result.repaired


def test_read_repair_skips_a_point_deleted_meanwhile(setup: Make) -> None:
    s = setup()
    gone: list[Any] = []

    def delete(call: Call) -> None:
        gone.append(list(call.arguments["pending"])[1])
        s.raw.delete(s.docs, points_selector=models.PointIdsList(points=gone))

    s.store.inject(REPAIR, Meanwhile(delete, on=1))
    result = s.query(QUERIES[0], limit=5, missing="embed", read_repair=True)
    assert gone and gone[0] not in result.repaired
    assert coverage(s.raw, s.docs) == result.embedded - 1 == len(result.repaired)


# --------------------------------------------------------------------------- filters and payloads


def test_query_filter_is_applied_by_both_searches(setup: Make) -> None:
    s = setup()
    for pid in range(48):
        s.raw.set_payload(s.docs, {"group": pid % 3}, points=[pid])
    s.cover(list(range(0, 48, 2)))
    flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=1))])

    def seen() -> list[Any]:
        return [call.arguments for call, _ in s.store.made]

    for text in QUERIES:
        result = s.query(text, limit=5, oversample=2, query_filter=flt)
        assert sorted(k["using"] for k in seen()) == ["legacy", TARGET]
        assert all(k["query_filter"] == flt for k in seen())
        gathered = s.gathered()
        assert result.points and all(pid % 3 == 1 for pid in gathered)
        assert_ranking(pairs(result.points), s.brute_force(text, gathered))
    # without the filter, better candidates of the other groups come first
    unfiltered = s.query(QUERIES[0], limit=5, oversample=2)
    assert any(pid % 3 != 1 for pid in ids_of(unfiltered.points))
    # the routed client passes it on in mixed mode
    s.store.made.clear()
    hits = s.lattice.query_points(
        s.docs, models.Document(text=QUERIES[0], model="auto"), limit=5, mode="mixed", query_filter=flt
    )
    assert len(seen()) == 2 and all(k["query_filter"] == flt for k in seen())
    assert hits.points and all(pid % 3 == 1 for pid in ids_of(hits.points))


def test_with_payload_shapes_the_points_returned(setup: Make) -> None:
    s = setup()
    s.raw.set_payload(s.docs, {"tag": "x"}, points=list(range(48)))
    full = s.query(QUERIES[0], limit=3)
    assert all(set(p.payload) == {"text", "tag"} for p in full.points)
    assert all(p.payload is None for p in s.query(QUERIES[0], limit=3, with_payload=False).points)
    assert all(set(p.payload) == {"tag"} for p in s.query(QUERIES[0], limit=3, with_payload=["tag"]).points)
    assert all(p.vector is None for p in full.points)


def test_a_limit_beyond_the_candidates_returns_them_all(setup: Make) -> None:
    s = setup(n=6)
    s.cover([0, 1])
    for missing in ("embed", "source_order"):
        result = s.query(QUERIES[0], limit=10, missing=missing)
        assert sorted(ids_of(result.points)) == list(range(6)) and result.candidates == 6


# --------------------------------------------------------------------------- through the routed client


def test_the_plan_defaults_apply_when_the_query_omits_them(setup: Make) -> None:
    s = setup(query_mode="mixed", missing_policy="source_order")
    s.cover(list(range(0, 48, 3)))
    client = s.lattice
    for text in QUERIES:
        doc = models.Document(text=text, model="auto")
        with s.replaying():  # the client and the direct call see the same candidates
            default = client.query_points(s.docs, doc, limit=5)  # the plan says mixed, source_order
            assert pairs(default.points) == pairs(s.query(text, limit=5, missing="source_order").points)
            override = client.query_points(s.docs, doc, limit=5, missing="embed")
            direct = s.query(text, limit=5, missing="embed", embed_budget=s.plan.embed_budget)
            assert pairs(override.points) == pairs(direct.points)
        assert pairs(default.points) != pairs(override.points)
        plain = client.query_points(s.docs, doc, limit=5, mode="routed")
        assert_ranking(pairs(plain.points), pairs(s.search(text, "legacy", 20)))
    assert coverage(s.raw, s.docs) == 16  # the plan does not read-repair


def test_the_plan_read_repair_default_and_its_override(setup: Make) -> None:
    s = setup(query_mode="mixed", missing_policy="embed", read_repair=True, embed_budget=40)
    client = s.lattice
    client.query_points(s.docs, models.Document(text=QUERIES[0], model="auto"), limit=5, read_repair=False)
    assert coverage(s.raw, s.docs) == 0
    client.query_points(s.docs, models.Document(text=QUERIES[0], model="auto"), limit=5)
    assert coverage(s.raw, s.docs) == 20  # oversample 4: every candidate was embedded and written back
    # the plan's budget bounds the read-repairs as it bounds the embeddings
    client.query_points(s.docs, models.Document(text=QUERIES[1], model="auto"), limit=5, embed_budget=3)
    assert coverage(s.raw, s.docs) == 23


def test_a_routed_plan_queries_mixed_only_when_asked(setup: Make) -> None:
    s = setup()  # query_mode "routed"
    s.cover(list(range(0, 48, 2)))
    doc = models.Document(text=QUERIES[2], model="auto")
    routed = s.lattice.query_points(s.docs, doc, limit=5)
    assert_ranking(pairs(routed.points), pairs(s.search(QUERIES[2], "legacy", 20)))
    with s.replaying():
        mixed = s.lattice.query_points(s.docs, doc, limit=5, mode="mixed")
        assert pairs(mixed.points) == pairs(
            s.query(QUERIES[2], limit=5, embed_budget=s.plan.embed_budget).points
        )
        nearest = s.lattice.query_points(s.docs, models.NearestQuery(nearest=doc), limit=5, mode="mixed")
        assert pairs(nearest.points) == pairs(mixed.points)
    assert set(ids_of(mixed.points)) != set(ids_of(routed.points))  # it did search the target space


def test_mixed_after_cutover_is_the_routed_target_search(setup: Make) -> None:
    s = setup(query_mode="mixed")
    s.cover_all()
    s.migration.cutover()
    for text in QUERIES:
        doc = models.Document(text=text, model="auto")
        mixed = s.lattice.query_points(s.docs, doc, limit=6, mode="mixed")
        routed = s.lattice.query_points(s.docs, doc, limit=6, mode="routed")
        native = pairs(s.search(text, TARGET, 30))
        assert_ranking(pairs(mixed.points), native)
        assert_ranking(pairs(routed.points), native)
    # a vector query is fine once mixed is the same as routed
    vector = s.target.embed([QUERIES[0]])[0].tolist()
    hits = s.lattice.query_points(s.docs, vector, limit=3, mode="mixed")
    assert_ranking(pairs(hits.points), pairs(s.search(QUERIES[0], TARGET, 30)))


def test_mixed_before_start_is_the_source_search(setup: Make) -> None:
    s = setup(started=False, query_mode="mixed")
    doc = models.Document(text=QUERIES[0], model="auto")
    hits = s.lattice.query_points(s.docs, doc, limit=5)
    assert_ranking(pairs(hits.points), pairs(s.search(QUERIES[0], "legacy", 20)))


def test_a_vector_query_in_mixed_mode_is_refused(setup: Make) -> None:
    s = setup()
    vector = s.source.embed([QUERIES[0]])[0].tolist()
    with pytest.raises(VectorValidationError, match=r"pass a models\.Document"):
        s.lattice.query_points(s.docs, vector, limit=3, mode="mixed")
    with pytest.raises(VectorValidationError, match="does not take with_vectors"):
        s.lattice.query_points(
            s.docs, models.Document(text="x", model="auto"), limit=3, mode="mixed", with_vectors=True
        )


# --------------------------------------------------------------------------- the embedding budget


class Counting:
    """An embedder that counts the calls and the texts it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(len(texts))
        return self.inner.embed(texts)


@pytest.mark.parametrize("budget", [0, 1, 3, 7])
def test_the_budget_bounds_the_texts_embedded_in_one_pass_with_the_query(setup: Make, budget: int) -> None:
    s = setup()
    s.cover(list(range(0, 48, 4)))
    target = Counting(s.target)
    result = mixed_query(
        s.lattice.store,
        s.plan,
        QUERIES[0],
        embed_source=s.source.embed,
        embed_target=target.embed,
        limit=5,
        embed_budget=budget,
    )
    assert target.calls == [1 + budget]  # the query text and the budgeted candidates, one call
    assert (
        result.embedded == budget and result.estimated + result.kept_order == len(result.uncovered) - budget
    )
    # the ones embedded are the uncovered candidates the source ranked best
    ranks = s.source_ranks()
    uncovered = sorted((pid for pid in ranks if pid % 4), key=ranks.__getitem__)
    assert result.uncovered == uncovered
    assert set(result.uncovered[:budget]) <= {p.id for p in result.points} | set(uncovered)


def test_the_client_embeds_no_more_than_the_plan_allows(setup: Make) -> None:
    s = setup(query_mode="mixed")
    assert s.plan.embed_budget == 0  # the default: no document text on the request path
    s.cover(list(range(0, 48, 4)))
    target = Counting(s.target)
    s.lattice.add_embedder(s.plan.target.qualified_id, target)  # type: ignore[arg-type]
    doc = models.Document(text=QUERIES[1], model="auto")
    s.lattice.query_points(s.docs, doc, limit=5)
    s.lattice.query_points(s.docs, doc, limit=5, embed_budget=2)
    assert target.calls == [1, 3]


BAD_KNOBS = [
    ("embed_budget", -1, "embed_budget must be an integer of at least 0"),
    ("oversample", 0, "oversample must be an integer from 1 to 100"),
    ("oversample", 101, "oversample must be an integer from 1 to 100"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_KNOBS)
def test_a_bad_budget_or_oversample_is_a_clear_error(
    setup: Make, option: str, value: int, message: str
) -> None:
    s = setup()
    with pytest.raises(lq.ConfigError, match=message) as found:
        s.query(QUERIES[0], **{option: value})
    assert found.value.key == option
    doc = models.Document(text="x", model="auto")
    with pytest.raises(lq.ConfigError, match=BAD_KNOBS[0][2]):
        s.lattice.query_points(s.docs, doc, mode="mixed", embed_budget=-1)


@pytest.mark.parametrize(("option", "value", "message"), BAD_KNOBS)
def test_a_plan_names_a_bad_budget_or_oversample(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
    option: str,
    value: int,
    message: str,
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=4)
    with pytest.raises(lq.PlanError, match=rf"^{option}: Input should be (greater|less) than or equal to"):
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy", **{option: value})


# --------------------------------------------------------------------------- what a query asks, and where


@pytest.mark.parametrize("covered_every", [1, 2, 3, 48])
def test_the_target_search_asks_only_for_the_candidates_the_source_search_left(
    setup: Make, covered_every: int
) -> None:
    s = setup()
    s.cover(list(range(0, 48, covered_every)))
    s.query(QUERIES[1], limit=5, oversample=4)
    (source_call, source_hits), (target_call, _) = s.store.made
    assert source_call.arguments["using"] == s.plan.source_vector
    assert source_call.arguments["limit"] == 20
    # Qdrant's score of a target hit is its target score: only its source vector comes back
    assert target_call.arguments["with_vectors"] == [s.plan.source_vector]
    covered = sum(1 for p in source_hits if isinstance(p.vector, dict) and TARGET in p.vector)
    # the best 5 covered points are all the target can add to the answer; the rest of the 20 are neighbours
    assert target_call.arguments["limit"] == max(5, 20 - covered)


class Remote(StoreWrapper):
    """A store that answers as a server would: not local, each search waits for ``release`` (up to 5 s)
    before it is served, and every search records the thread it ran in."""

    def __init__(self, store: Store, release: threading.Event) -> None:
        super().__init__(store)
        self.release = release
        self.threads: list[tuple[str | None, int, bool]] = []

    @property
    def is_local(self) -> bool:
        return False

    def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
        if call.method == "query":
            released = self.release.wait(5)
            self.threads.append((call.arguments.get("using"), threading.get_ident(), released))
        return proceed()


class Threads:
    """An embedder that records the thread of each call, and sets ``embedded`` once it was called."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dimension = inner.dimension
        self.threads: list[int] = []
        self.embedded = threading.Event()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.threads.append(threading.get_ident())
        self.embedded.set()
        return self.inner.embed(texts)


def test_a_servers_source_search_runs_while_the_calling_thread_embeds_for_the_target(setup: Make) -> None:
    s = setup()
    s.cover(list(range(0, 48, 2)))
    expected = s.query(QUERIES[2], limit=5, embed_budget=0)
    source, target = Threads(s.source), Threads(s.target)
    remote = Remote(s.lattice.store, release=target.embedded)  # the source search waits for the target's
    found = mixed_query(
        remote,
        s.plan,
        QUERIES[2],
        embed_source=source.embed,
        embed_target=target.embed,
        limit=5,
        embed_budget=0,
    )
    me = threading.get_ident()
    assert source.threads == [me] and target.threads == [me]  # both models in the calling thread
    (first, second) = remote.threads
    assert first[0] == s.plan.source_vector and first[1] != me and first[2]  # overlapped with the embedding
    assert second[0] == TARGET and second[1] == me
    assert ids_of(found.points) == ids_of(expected.points)


@pytest.mark.parametrize("budget", [0, 2])
def test_local_mode_and_a_budget_run_the_query_in_order_in_the_calling_thread(
    setup: Make, budget: int
) -> None:
    s = setup()
    s.cover(list(range(0, 48, 2)))
    source, target = Threads(s.source), Threads(s.target)
    order: list[str] = []

    class Local(StoreWrapper):
        def handle(self, call: Call, proceed: Callable[[], Any]) -> Any:
            if call.method == "query":
                order.append(f"search {call.arguments['using']} in {threading.get_ident()}")
            return proceed()

    def embed_target(texts: Sequence[str]) -> NDArray[np.float32]:
        order.append(f"embed {len(texts)} for the target")
        return target.embed(texts)

    store: Store = Local(s.lattice.store)
    if budget:  # a budget needs the source hits before the target's pass, even on a server
        store = Remote(store, threading.Event())
        store.release.set()
    mixed_query(
        store,
        s.plan,
        QUERIES[3],
        embed_source=source.embed,
        embed_target=embed_target,
        limit=5,
        embed_budget=budget,
    )
    me = threading.get_ident()
    assert source.threads == [me] and target.threads == [me]
    assert order == [
        f"search {s.plan.source_vector} in {me}",
        f"embed {1 + budget} for the target",
        f"search {TARGET} in {me}",
    ]
