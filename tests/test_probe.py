"""The probe: its statistics and verdict rule (pure), its numbers on constructed collections against a brute
force written here, that it writes nothing, its reports, its errors, and the CLI command."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import commands
from lattice_qdrant import probe as pr
from lattice_qdrant.backfill import estimate_tokens, vector_bytes
from lattice_qdrant.compare import query_from_text, recall_at_k
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import MINILM, HashEmbedder

N = 60
OLD = HashEmbedder(64, salt="old")
GOOD = HashEmbedder(256, salt="good")


def make_texts(n: int = N, seed: int = 7) -> list[str]:
    """Texts of random words: each first sentence (the known-item query) shares words with its text only."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return [
        " ".join(rng.choice(vocab) for _ in range(10)) + ". " + " ".join(rng.choice(vocab) for _ in range(10))
        for _ in range(n)
    ]


def fill(qdrant: QdrantClient, name: str, texts: list[str], vectors: Any, vector: str = "old") -> None:
    qdrant.create_collection(
        name,
        vectors_config={vector: models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)},
    )
    qdrant.upsert(
        name,
        [
            models.PointStruct(id=i, vector={vector: vectors[i].tolist()}, payload={"text": t})
            for i, t in enumerate(texts)
        ],
    )


def session_for(qdrant: QdrantClient, names: Any, *, register: bool = True) -> commands.Session:
    session = commands.Session(client=qdrant, settings=Settings(control_collection=names("control")))
    if register:
        session.client.registry.register(OLD.spec("old"))
        session.client.registry.register(GOOD.spec("good"))
    return session


@pytest.fixture
def texts() -> list[str]:
    return make_texts()


@pytest.fixture
def deranged(qdrant: QdrantClient, names: Any, texts: list[str]) -> str:
    """A collection whose stored vectors are the old model's embedding of the NEXT point's text: the source
    finds every known item one point off (recall@1 exactly 0), the target finds each one first."""
    docs = names("docs")
    fill(qdrant, docs, texts, OLD.embed([texts[(i + 1) % N] for i in range(N)]))
    return docs


@pytest.fixture
def faithful(qdrant: QdrantClient, names: Any, texts: list[str]) -> str:
    """A collection whose stored vectors are the old model's embedding of each point's own text."""
    docs = names("docs")
    fill(qdrant, docs, texts, OLD.embed(texts))
    return docs


def snapshot(qdrant: QdrantClient, name: str) -> Any:
    """Everything a write could change: the configuration, the count, every point with payload and vectors."""
    if not qdrant.collection_exists(name):
        return None
    info = qdrant.get_collection(name)
    records, _ = qdrant.scroll(name, limit=100_000, with_payload=True, with_vectors=True)
    return (
        info.config.model_dump(),
        info.payload_schema,
        qdrant.count(name, exact=True).count,
        sorted((r.model_dump() for r in records), key=lambda r: str(r["id"])),
    )


# --------------------------------------------------------------------------- statistics and the verdict


def test_an_interval_holds_its_mean_and_pairs_through_shared_draws() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(50)
    draws = pr.resample_indices(50, 2000, np.random.default_rng(1))
    est = pr.interval(values, draws)
    assert est.value == pytest.approx(values.mean())
    assert est.low < est.value < est.high
    # about two standard errors either side
    se = values.std(ddof=1) / np.sqrt(50)
    assert est.high - est.low == pytest.approx(4 * se, rel=0.2)
    # constant values: no spread; and one value is its own interval
    assert pr.interval(np.full(10, 0.5), pr.resample_indices(10, 100, rng)) == pr.Interval(0.5, 0.5, 0.5)
    assert pr.interval([1.0], pr.resample_indices(1, 100, rng)) == pr.Interval(1.0, 1.0, 1.0)
    # the same draws for a - b as for a and b: b = a + 0.1 gives a difference with no spread at all
    shifted = values + 0.1
    gain = pr.interval(shifted - values, draws)
    assert (gain.low, gain.value, gain.high) == pytest.approx((0.1, 0.1, 0.1))
    with pytest.raises(lq.ConfigError):
        pr.interval([], draws[:, :0])


def test_an_interval_is_widened_to_hold_a_mean_resampling_misses() -> None:
    # a skewed sample: one large value among zeros; most resamples miss it, yet the mean stays inside
    values = np.zeros(30)
    values[0] = 30.0
    est = pr.interval(values, pr.resample_indices(30, 500, np.random.default_rng(3)), level=0.5)
    assert est.low <= est.value == 1.0 <= est.high


def test_quantiles() -> None:
    q = pr.quantiles(float(v) for v in range(101))
    assert q == {"p5": 5.0, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p95": 95.0, "count": 101}
    assert pr.quantiles([]) is None


@pytest.mark.parametrize(
    ("gain", "margin", "labelled", "expected", "said"),
    [
        (pr.Interval(0.2, 0.1, 0.3), 0.02, 50, "migrate", "above 0 and at least the margin"),
        # better for sure, but by less than the margin: the whole interval below it
        (pr.Interval(0.01, 0.005, 0.015), 0.02, 50, "not worth it", "below the margin"),
        # worse for sure
        (pr.Interval(-0.2, -0.3, -0.1), 0.02, 50, "not worth it", "below 0"),
        # identical models
        (pr.Interval(0.0, 0.0, 0.0), 0.02, 50, "not worth it", "below the margin"),
        (pr.Interval(0.0, 0.0, 0.0), 0.0, 50, "inconclusive", "both sides"),
        # the interval reaches both sides of the margin
        (pr.Interval(0.05, -0.01, 0.11), 0.02, 50, "inconclusive", "both sides"),
        # above 0 for sure, but the estimate below the margin while the interval reaches above it
        (pr.Interval(0.015, 0.005, 0.025), 0.02, 50, "inconclusive", "both sides"),
        # too few queries for any verdict
        (pr.Interval(0.5, 0.4, 0.6), 0.02, 9, "inconclusive", "only 9 labelled queries"),
        (None, 0.02, 0, "inconclusive", "no query has relevance labels"),
    ],
)
def test_the_verdict_rule(
    gain: pr.Interval | None, margin: float, labelled: int, expected: str, said: str
) -> None:
    verdict, reason = pr.verdict(gain, margin, labelled=labelled, k=10, source=0.5, target=0.6)
    assert verdict == expected and said in reason
    assert verdict in pr.VERDICTS
    if gain is not None:
        assert gain.text(signed=True) in reason


# --------------------------------------------------------------------------- numbers on constructed cases


def brute_force(queries: list[str], texts: list[str], embedder: HashEmbedder) -> Any:
    """The scores the target search must rank by: cosine over unit vectors is the dot product."""
    return embedder.embed(queries).astype(np.float64) @ embedder.embed(texts).astype(np.float64).T


def test_a_clearly_better_target_says_migrate_with_the_right_numbers(
    qdrant: QdrantClient, names: Any, deranged: str, texts: list[str]
) -> None:
    session = session_for(qdrant, names)
    report = commands.probe(session, deranged, target="good", source="old")

    assert report.verdict == "migrate" and report.total == report.searched == N
    assert (report.source, report.target) == (OLD.spec("old").qualified_id, GOOD.spec("good").qualified_id)
    # every sampled point is a known-item query made of its first sentence
    assert len(report.outcomes) == report.labelled == N
    for outcome in report.outcomes:
        (pid,) = outcome.query.relevant or ()
        assert outcome.query.text == query_from_text(texts[int(pid)])
    # the target's results are the brute force's; the source finds the point before (its vector is of
    # this text), never the point itself, at rank 1
    queries = [o.query.text for o in report.outcomes]
    scores = brute_force(queries, texts, GOOD)
    for outcome, row in zip(report.outcomes, scores, strict=True):
        (pid,) = outcome.query.relevant or ()
        # the best 20 by the brute force's scores, in order (ties in any order)
        ranked = row[list(outcome.results["target"])]
        assert np.all(np.diff(ranked) <= 1e-6)
        assert ranked == pytest.approx(np.sort(row)[::-1][:20], abs=1e-6)
        assert outcome.results["target"][0] == pid
        assert outcome.results["source"][0] == (int(pid) - 1) % N
    one = report.row(1)
    assert one.recall["target"] == pr.Interval(1.0, 1.0, 1.0)
    assert one.recall["source"] == pr.Interval(0.0, 0.0, 0.0)
    assert one.recall_gain == pr.Interval(1.0, 1.0, 1.0)
    assert one.overlap == pr.Interval(0.0, 0.0, 0.0)
    ten = report.row(10)
    by_hand = np.mean(
        [recall_at_k(o.results["source"], o.query.relevant or set(), 10) for o in report.outcomes]
    )
    assert ten.recall["source"].value == pytest.approx(by_hand)
    assert ten.recall_gain is not None and ten.recall_gain.low > 0
    assert ten.recall_gain.text(signed=True) in report.reason
    # every interval holds its estimate
    for row in report.at_k:
        for est in [row.overlap, *row.recall.values(), *row.ndcg.values(), row.recall_gain, row.ndcg_gain]:
            assert est is not None and est.low <= est.value <= est.high
    # the target's top-1 scores, from the brute force
    top1 = report.scores["target"]["top1"]
    assert top1 is not None and top1["count"] == N
    assert top1["p50"] == pytest.approx(float(np.median(scores.max(axis=1))), abs=1e-5)
    assert report.scores["target"]["relevant"] == report.scores["target"]["top1"]
    topk = report.scores["source"]["topk"]
    assert topk is not None and topk["count"] == N * 10
    # the cost: every point, at the rate measured on the sample
    cost = report.cost
    assert (cost.points, cost.calibrated_on, cost.dimension) == (N, N, 256)
    assert cost.storage_bytes == N * vector_bytes(256)
    assert cost.tokens == round(sum(estimate_tokens(t) for t in texts))
    assert cost.points_per_second > 0 and cost.seconds == pytest.approx(N / cost.points_per_second)
    # the stored vectors are not the old model's embedding of their text: said
    assert any("only 0 of 16 stored source vectors" in note for note in report.notes)


def test_identical_models_are_not_worth_it(qdrant: QdrantClient, names: Any, faithful: str) -> None:
    session = session_for(qdrant, names)
    report = commands.probe(session, faithful, target="old", source="old")
    assert report.verdict == "not worth it", report.reason
    row = report.row(10)
    assert row.recall["source"].value == pytest.approx(row.recall["target"].value)
    assert row.recall_gain is not None and abs(row.recall_gain.value) < 1e-9
    assert row.overlap.value > 0.95
    # the stored vectors are the model's: no warning
    assert not any("stored source vectors" in note for note in report.notes)
    # with no margin, a gain of exactly 0 is neither a gain nor a loss
    assert commands.probe(session, faithful, target="old", source="old", margin=0.0).verdict == "inconclusive"


def test_the_sample_is_seeded(qdrant: QdrantClient, names: Any, faithful: str) -> None:
    session = session_for(qdrant, names)

    def run(seed: int) -> Any:
        report = commands.probe(session, faithful, target="good", source="old", sample=20, seed=seed)
        data = report.to_dict()
        for key in ("created_at", "cost"):
            data.pop(key)
        data["calibration"].pop("measured_at")
        return data

    first = run(1)
    assert first["searched"] == 20 and first["total"] == N and first["queries"] == 20
    assert run(1) == first
    assert run(2)["per_query"] != first["per_query"]


def test_labelled_queries_bring_their_relevant_points_into_the_sample(
    qdrant: QdrantClient, names: Any, faithful: str, texts: list[str], tmp_path: Path
) -> None:
    session = session_for(qdrant, names)
    path = tmp_path / "queries.jsonl"
    lines = [json.dumps({"query": query_from_text(texts[i]), "relevant": [i]}) for i in range(40, 52)]
    path.write_text("\n".join([*lines, "an unlabelled query"]) + "\n", encoding="utf-8")
    report = commands.probe(session, faithful, target="good", source="old", queries_file=str(path), sample=5)
    assert report.labelled == 12 and len(report.outcomes) == 13
    assert report.origin == f"13 from {path}"
    # the five sampled points and the twelve relevant ones (unless drawn already)
    assert 12 <= report.searched <= 17
    assert report.row(20).recall["target"].value == 1.0
    # known-item queries on top, when asked for
    both = commands.probe(
        session, faithful, target="good", source="old", queries_file=str(path), sample=5, known_items=3
    )
    assert len(both.outcomes) == 16 and "3 known-item queries" in both.origin


def test_the_plan_names_the_source_when_there_is_one(qdrant: QdrantClient, names: Any, faithful: str) -> None:
    session = session_for(qdrant, names)
    session.client.plan(faithful, source=OLD.spec("old"), target=GOOD.spec("good"), source_vector="old")
    report = commands.probe(session, faithful, target="good")
    assert report.source == OLD.spec("old").qualified_id and report.source_vector == "old"
    assert any("come from the migration plan (planned/stable)" in note for note in report.notes)


# --------------------------------------------------------------------------- nothing written


def test_the_probe_writes_nothing(qdrant: QdrantClient, names: Any, deranged: str, tmp_path: Path) -> None:
    session = session_for(qdrant, names)
    control = names("control")
    before = snapshot(qdrant, deranged), snapshot(qdrant, control)
    assert before[1] is not None  # the registry lives there
    path = tmp_path / "queries.jsonl"
    path.write_text(json.dumps({"query": "w1 w2", "relevant": [3]}) + "\n", encoding="utf-8")
    commands.probe(session, deranged, target="good", source="old")
    commands.probe(session, deranged, target="good", source="old", queries_file=str(path), known_items=5)
    assert (snapshot(qdrant, deranged), snapshot(qdrant, control)) == before


def test_the_probe_creates_no_control_collection(qdrant: QdrantClient, names: Any, deranged: str) -> None:
    store = lq.Store(qdrant, control_collection=names("control"))
    before = snapshot(qdrant, deranged)
    report = pr.probe(
        store,
        deranged,
        source=OLD.spec("old"),
        target=GOOD.spec("good"),
        source_embedder=OLD,
        target_embedder=GOOD,
    )
    assert report.verdict == "migrate" and report.source_vector == "old"
    assert snapshot(qdrant, deranged) == before
    assert not qdrant.collection_exists(names("control"))


# --------------------------------------------------------------------------- reports


def test_the_reports(qdrant: QdrantClient, names: Any, deranged: str) -> None:
    session = session_for(qdrant, names)
    report = commands.probe(session, deranged, target="good", source="old", ks=(1, 10))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == "migrate" and data["k"] == 10 and data["ks"] == [1, 10]
    assert data["at_k"][0]["recall"]["target"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert set(data["scores"]["source"]) == {"top1", "topk", "relevant"}
    assert data["cost"]["points"] == N and len(data["per_query"]) == N
    assert data["per_query"][0]["results"]["target"][0] == data["per_query"][0]["relevant"][0]

    text = report.render_text()
    assert f"Probe of {deranged!r}" in text and "verdict  MIGRATE: recall@10" in text
    assert "Recall@k (mean over 60 labelled queries, 95% bootstrap interval)" in text
    assert "1.000 [1.000, 1.000]" in text and "target top-1" in text and "source top-10" in text
    assert f"Cost of migrating all {N} points" in text and "storage +" in text

    page = report.render_html()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "<strong>migrate</strong>" in page and "target - source" in page


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_clearly(
    qdrant: QdrantClient, names: Any, faithful: str, tmp_path: Path
) -> None:
    session = session_for(qdrant, names)

    def probe(**kwargs: Any) -> Any:
        return commands.probe(session, kwargs.pop("collection", faithful), **{"target": "good", **kwargs})

    with pytest.raises(lq.ConfigError, match=r"--sample\) must be at least 1, got 0"):
        probe(source="old", sample=0)
    empty = names("empty")
    qdrant.create_collection(empty, vectors_config={"old": models.VectorParams(size=64, distance="Cosine")})
    with pytest.raises(lq.ProbeError, match="has no points: there is nothing to probe"):
        probe(collection=empty, source="old")
    unknown = tmp_path / "unknown.jsonl"
    lines = [json.dumps({"query": "a", "relevant": [1, 999]}), json.dumps({"query": "b", "relevant": [1000]})]
    unknown.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(lq.ConfigError, match=r"name 2 relevant id\(s\) that .* does not hold: 999, 1000"):
        probe(source="old", queries_file=str(unknown))
    with pytest.raises(lq.TextFieldError, match=r"'body'.*payload fields: 'text'"):
        probe(source="old", text_field="body")
    with pytest.raises(lq.ModelNotFoundError, match=r"--target 'nosuch'.*registered: good:v1, old:v1"):
        probe(source="old", target="nosuch")
    with pytest.raises(lq.ModelNotFoundError, match="--source 'gone:v2'"):
        probe(source="gone:v2")
    with pytest.raises(lq.ConfigError, match="--source MODEL_REF"):
        probe()
    with pytest.raises(lq.ConfigError, match="is 64-d Cosine, but the source model good"):
        probe(source="good")
    with pytest.raises(lq.ConfigError, match="has no vector 'other'"):
        probe(source="old", source_vector="other")
    with pytest.raises(lq.ConfigError, match="no queries to probe with"):
        probe(source="old", known_items=0)
    with pytest.raises(lq.ConfigError, match="margin must be between 0 and 1"):
        probe(source="old", margin=1.5)
    with pytest.raises(lq.CollectionNotFoundError):
        probe(collection=names("missing"), source="old")


def test_points_without_text_or_source_vector_are_left_out(
    qdrant: QdrantClient, names: Any, faithful: str
) -> None:
    qdrant.upsert(faithful, [models.PointStruct(id=100, vector={}, payload={"text": "w1 w2 w3"})])
    qdrant.upsert(faithful, [models.PointStruct(id=101, vector={"old": OLD.embed(["x"])[0].tolist()})])
    report = commands.probe(session_for(qdrant, names), faithful, target="good", source="old")
    assert report.total == N + 2 and report.searched == N
    assert any("2 sampled point(s) are left out of both searches: 1 without text" in n for n in report.notes)


# --------------------------------------------------------------------------- the CLI


def test_probe_through_the_cli(cli: Any, tmp_path: Path, texts: list[str]) -> None:
    client = cli.qdrant()
    fill(client, cli.docs, texts, OLD.embed([texts[(i + 1) % N] for i in range(N)]))
    client.close()
    cli("models", "register", "old", "--name", OLD.name, "--dimension", "64")
    cli("models", "register", "good", "--name", GOOD.name, "--dimension", "256")
    client = cli.qdrant()
    before = snapshot(client, cli.docs), snapshot(client, cli.control)
    client.close()

    page = tmp_path / "probe.html"
    out = cli("probe", cli.docs, "--target", "good", "--source", "old", "--html", str(page)).output
    assert "verdict  MIGRATE" in out and f"wrote the HTML report to {page}" in out
    assert "<strong>migrate</strong>" in page.read_text(encoding="utf-8")
    args = ["--source-vector", "old", "--sample", "30", "--known-items", "12", "--k", "1,5",
            "--margin", "0.1", "--seed", "3", "--json"]  # fmt: skip
    data = json.loads(cli("probe", cli.docs, "--target", "good", "--source", "old", *args).stdout)
    assert (data["searched"], data["queries"], data["ks"], data["k"], data["margin"], data["seed"]) == (
        30, 12, [1, 5], 5, 0.1, 3,
    )  # fmt: skip

    assert "at least 1" in cli("probe", cli.docs, "--target", "good", "--source", "old", "--sample", "0",
                               code=2).output  # fmt: skip
    assert "'nosuch'" in cli("probe", cli.docs, "--target", "nosuch", "--source", "old", code=1).output
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"query": "a", "relevant": [999]}) + "\n", encoding="utf-8")
    assert "does not hold: 999" in cli("probe", cli.docs, "--target", "good", "--source", "old",
                                       "--queries", str(unknown), code=2).output  # fmt: skip

    client = cli.qdrant()
    assert (snapshot(client, cli.docs), snapshot(client, cli.control)) == before
    client.close()


# --------------------------------------------------------------------------- the real model


@pytest.mark.model
@pytest.mark.slow
def test_probe_with_the_real_model_registers_nothing(qdrant: QdrantClient, names: Any) -> None:
    """MiniLM against itself by name: no registration needed, so no control collection appears."""
    minilm = lq.SentenceTransformerEmbedder(MINILM)
    texts = [f"{sentence} This is note {i}." for i, sentence in enumerate(make_texts(12, seed=3))]
    docs = names("docs")
    fill(qdrant, docs, texts, minilm.embed(texts), vector="minilm")
    session = session_for(qdrant, names, register=False)
    report = commands.probe(session, docs, target=MINILM, source=MINILM, known_items=12)
    assert report.verdict == "not worth it", report.reason
    assert report.cost.dimension == 384 and report.row(1).recall_gain is not None
    assert abs(report.row(10).recall_gain.value) < 1e-9  # type: ignore[union-attr]
    assert not qdrant.collection_exists(names("control"))
