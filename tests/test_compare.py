"""Shadow comparison: the metrics against hand-computed values, query files and samples, the report in
text, HTML and JSON, the cutover gate (pure and through ``Migration.cutover``), and the CLI command."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant import compare as cmp
from lattice_qdrant.compare import QuerySpec
from lattice_qdrant.embedders import HashEmbedder

from conftest import CORPUS, MakeMigration, fill_collection, fill_target

N = 36  # three notes of each CORPUS sentence: ids i, i + 12, i + 24 share a sentence

# Queries in other words than the documents, each labelled with the ids of its sentence's notes.
LABELLED = [
    ("a cat sleeping on a mat near the fire", 0),
    ("loyal dogs on long walks", 1),
    ("a programming language with readable syntax", 2),
    ("search vectors by similarity", 3),
    ("the stock market fell", 4),
    ("bread baked at the bakery every morning", 5),
    ("nearest neighbour search over embeddings", 10),
    ("a recipe with eggs, flour and butter", 11),
]


def relevant_to(sentence: int) -> frozenset[int]:
    return frozenset(i for i in range(N) if i % len(CORPUS) == sentence)


def labelled_queries() -> list[QuerySpec]:
    return [QuerySpec(text, relevant_to(sentence)) for text, sentence in LABELLED]


@pytest.fixture
def started(make_migration: MakeMigration) -> lq.Migration:
    return make_migration(N)


# --------------------------------------------------------------------------- metrics


def test_overlap_at_k() -> None:
    a, b = [1, 2, 3, 4], [2, 1, 5, 6]
    assert cmp.overlap_at_k(a, b, 1) == 0.0
    assert cmp.overlap_at_k(a, b, 2) == 1.0
    assert cmp.overlap_at_k(a, b, 4) == 0.5
    # fewer than k results (a small collection): divided by the longer list
    assert cmp.overlap_at_k([1, 2, 3], [3, 2, 1], 20) == 1.0
    assert cmp.overlap_at_k([1, 2, 3, 4], [1, 2], 10) == 0.5
    assert cmp.overlap_at_k([], [], 5) == 1.0


@pytest.mark.parametrize(
    ("a", "b", "k", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], 3, 1.0),
        ([1, 2, 3], [3, 2, 1], 3, -1.0),
        # no ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 24
        ([1, 2, 3], [1, 3, 2], 3, 0.5),
        # 3 is missing from a and 2 from b: both ranked k + 1 = 3 there, so ranks (1,2,3) vs (1,3,2)
        ([1, 2], [1, 3], 2, 0.5),
        # disjoint: ranks (1,2,3,4,4,4) vs (4,4,4,1,2,3); deviations (-2,-1,0,1,1,1) and
        # (1,1,1,-2,-1,0): covariance -6, variances 8 and 8, rho = -6/8
        ([1, 2, 3], [4, 5, 6], 3, -0.75),
        # only the top k count
        ([1, 2, 9, 8], [1, 3, 7, 6], 2, 0.5),
        (["a"], ["b"], 1, -1.0),
        (["a"], ["a"], 1, 1.0),
    ],
)
def test_rank_correlation_by_hand(a: list[Any], b: list[Any], k: int, expected: float) -> None:
    assert cmp.rank_correlation(a, b, k) == pytest.approx(expected)


def test_rank_correlation_is_undefined_without_two_rankings() -> None:
    assert cmp.rank_correlation([], [], 5) is None
    assert cmp.rank_correlation([1], [], 5) is None
    assert cmp.rank_correlation([1, 2, 3], [], 3) is None  # the other list's ranks are all k + 1


def test_recall_at_k_by_hand() -> None:
    ranking, relevant = [1, 2, 3, 4], frozenset({2, 4, 9})
    assert cmp.recall_at_k(ranking, relevant, 1) == 0.0
    assert cmp.recall_at_k(ranking, relevant, 2) == pytest.approx(1 / 3)
    assert cmp.recall_at_k(ranking, relevant, 4) == pytest.approx(2 / 3)
    assert cmp.recall_at_k(ranking, relevant, 100) == pytest.approx(2 / 3)
    assert cmp.recall_at_k(ranking, frozenset(), 4) is None


def test_ndcg_at_k_by_hand() -> None:
    ranking, relevant = [1, 2, 3, 4], frozenset({2, 4})
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert cmp.ndcg_at_k(ranking, relevant, 4) == pytest.approx(dcg / ideal)
    assert cmp.ndcg_at_k(ranking, relevant, 4) == pytest.approx(0.6509209298)
    # at k = 2 only rank 2 is relevant; the ideal has both relevant ids at ranks 1 and 2
    assert cmp.ndcg_at_k(ranking, relevant, 2) == pytest.approx((1 / math.log2(3)) / ideal)
    # the ideal is cut at k: one relevant id at rank 1 is perfect at k = 1
    assert cmp.ndcg_at_k([2, 1], frozenset({2, 4, 6}), 1) == 1.0
    assert cmp.ndcg_at_k([4, 2], relevant, 2) == 1.0
    assert cmp.ndcg_at_k([7, 8], relevant, 2) == 0.0
    assert cmp.ndcg_at_k(ranking, frozenset(), 2) is None


def test_point_ids_are_normalised_as_qdrant_returns_them() -> None:
    some = uuid.uuid4()
    assert cmp.normalize_id(7) == 7
    assert cmp.normalize_id("7") == 7
    assert cmp.normalize_id(str(some).upper()) == str(some)
    assert cmp.normalize_id(some.hex) == str(some)
    for bad in (-1, True, 1.5, "doc-7", None, [1]):
        with pytest.raises(ValueError, match="not a point id"):
            cmp.normalize_id(bad)


# --------------------------------------------------------------------------- queries


def test_query_files_take_json_lines_and_plain_text(tmp_path: Path) -> None:
    some = uuid.uuid4()
    path = tmp_path / "queries.jsonl"
    path.write_text(
        '{"query": "a cat on a mat", "relevant": [0, "12", 24]}\n'
        "\n"
        "dogs   that love walks\n"
        f'{{"query": "vectors", "relevant": ["{str(some).upper()}"]}}\n'
        '{"query": "no labels here"}\n',
        encoding="utf-8",
    )
    assert cmp.load_queries(path) == [
        QuerySpec("a cat on a mat", frozenset({0, 12, 24})),
        QuerySpec("dogs that love walks"),
        QuerySpec("vectors", frozenset({str(some)})),
        QuerySpec("no labels here"),
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"query": "cat", "relevant": [1,}', "not valid JSON"),
        ('{"relevant": [1]}', "'query' must be a non-empty string"),
        ('{"query": 3}', "'query' must be a non-empty string"),
        ('{"query": "cat", "relevent": [1]}', "unknown key(s) 'relevent'"),
        ('{"query": "cat", "relevant": 1}', "'relevant' must be a non-empty list"),
        ('{"query": "cat", "relevant": []}', "'relevant' must be a non-empty list"),
        ('{"query": "cat", "relevant": ["doc-1"]}', "'doc-1' is not a point id"),
    ],
)
def test_a_bad_query_line_is_an_error_naming_the_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text(f'{{"query": "fine"}}\nplain text\n{line}\n', encoding="utf-8")
    with pytest.raises(lq.ConfigError, match="line 3: ") as err:
        cmp.load_queries(path)
    assert problem in str(err.value) and str(path) in str(err.value)
    assert err.value.key == "queries"


def test_a_missing_or_empty_queries_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(lq.ConfigError, match="cannot read the queries file"):
        cmp.load_queries(tmp_path / "nope.jsonl")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(lq.ConfigError, match="holds no query"):
        cmp.load_queries(tmp_path / "empty.txt")


def test_query_from_text_takes_the_first_sentence_or_twelve_words() -> None:
    assert cmp.query_from_text("The cat sat on the mat. It slept.") == "The cat sat on the mat."
    assert cmp.query_from_text("  Is it   raining?  Yes.") == "Is it raining?"
    long = " ".join(f"w{i}" for i in range(30))
    assert cmp.query_from_text(long) == " ".join(f"w{i}" for i in range(12))
    assert cmp.query_from_text("") == ""


def test_parse_ks() -> None:
    assert cmp.parse_ks("1,5,10,20") == (1, 5, 10, 20)
    assert cmp.parse_ks(" 10, 1,1 ") == (1, 10)
    for bad in ("", "a,b", "0,5", "5,2000", "1.5"):
        with pytest.raises(lq.ConfigError) as err:
            cmp.parse_ks(bad)
        assert err.value.key == "k"


def test_sampled_queries_are_known_item_searches(
    qdrant: QdrantClient, names: Any, legacy: HashEmbedder
) -> None:
    docs = names("docs")
    texts = fill_collection(qdrant, docs, legacy, n=N)
    # a point without text is never sampled
    qdrant.upsert(docs, [models.PointStruct(id=999, vector={"legacy": [0.1] * 64}, payload={"title": "x"})])
    store = lq.Store(qdrant, control_collection=names("control"))
    picked = cmp.sample_queries(store, docs, 5, seed=7)
    assert len(picked) == 5
    assert picked == cmp.sample_queries(store, docs, 5, seed=7)  # seeded
    assert picked != cmp.sample_queries(store, docs, 5, seed=8)
    for spec in picked:
        assert spec.relevant is not None and len(spec.relevant) == 1
        (pid,) = spec.relevant
        assert pid != 999
        assert spec.text == cmp.query_from_text(texts[pid])
    # more than the collection holds: every point with text, once
    everything = cmp.sample_queries(store, docs, 1000)
    assert sorted(next(iter(s.relevant or ())) for s in everything) == list(range(N))
    with pytest.raises(lq.ConfigError, match="at least 1"):
        cmp.sample_queries(store, docs, 0)


# --------------------------------------------------------------------------- the report


def test_a_report_on_a_backfilled_collection(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    docs = started.collection
    fill_target(started, modern)
    queries = [*labelled_queries(), QuerySpec("weather forecast for tomorrow")]
    report = cmp.compare(lattice, docs, queries, ks=(1, 3, 10), origin="labels.jsonl")

    assert report.systems == ("source", "target", "mixed")
    assert report.ks == (1, 3, 10) and [r.k for r in report.at_k] == [1, 3, 10]
    assert (report.covered, report.total, report.coverage) == (N, N, 1.0)
    assert len(report.outcomes) == 9 and report.labelled == 8
    assert report.origin == "labels.jsonl"
    assert report.state == started.state.label
    for outcome in report.outcomes:
        assert set(outcome.results) == {"source", "target", "mixed"}
        assert all(len(ids) == 10 for ids in outcome.results.values())

    # the means are the means of the per-query metrics (recall over the labelled queries only)
    for row in report.at_k:
        k = row.k
        pairs = [(o.results["source"], o.results["target"]) for o in report.outcomes]
        assert row.overlap == pytest.approx(sum(cmp.overlap_at_k(s, t, k) for s, t in pairs) / 9)
        rhos = [r for s, t in pairs if (r := cmp.rank_correlation(s, t, k)) is not None]
        assert row.rank_correlation == pytest.approx(sum(rhos) / len(rhos))
        for system in report.systems:
            labelled = [o for o in report.outcomes if o.query.relevant]
            expected = [
                # mixed mode's metrics at k are those of its query with k as the limit
                cmp.recall_at_k(o.ids(system, k), o.query.relevant or frozenset(), k)
                for o in labelled
            ]
            assert row.recall[system] == pytest.approx(sum(e or 0.0 for e in expected) / 8)
            assert 0.0 <= (row.ndcg[system] or 0.0) <= 1.0
    # both cheap models find the sentence's notes for most queries
    assert report.row(10).recall["source"] >= 0.5 and report.row(10).recall["target"] >= 0.5

    summary = report.summary()
    assert summary["k"] == 10 and summary["labelled"] == 8 and summary["queries"] == 9
    assert summary["source_recall"] == report.row(10).recall["source"]
    assert summary["target"] == started.plan.target.qualified_id
    assert not any("covers" in note for note in report.notes)

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["labelled"] == 8 and data["systems"] == ["source", "target", "mixed"]
    assert [row["k"] for row in data["at_k"]] == [1, 3, 10]
    assert data["per_query"][0]["relevant"] == sorted(relevant_to(0))
    assert data["per_query"][8]["relevant"] is None and data["per_query"][8]["at_k"][0]["recall"] == {}
    assert data["gate"] is None  # the plan sets no margin

    text = report.render_text()
    assert f"Shadow comparison of {docs!r}" in text
    assert "Agreement of source and target (mean over 9 queries)" in text
    assert "Recall@k (mean over 8 labelled queries)" in text and "nDCG@k" in text
    assert "the plan sets no compare_margin" in text
    recall_header = next(
        line for line in text.splitlines() if line.split() == ["k", "source", "target", "mixed"]
    )
    rows = text.splitlines()[
        text.splitlines().index(recall_header) : text.splitlines().index(recall_header) + 4
    ]
    assert len({len(line) for line in rows}) == 1, rows  # aligned columns


def test_the_html_report_is_self_contained(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    fill_target(started, modern)
    report = cmp.compare(lattice, started.collection, labelled_queries())
    page = report.render_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]
    assert "<script" not in page and "src=" not in page and "href=" not in page and "@import" not in page
    svg = page[page.index("<svg") : page.index("</svg>")]
    # overlap@k and recall@k of the three systems
    assert svg.count("<polyline") == 4
    for label in ("overlap@k source/target", "recall@k source", "recall@k target", "recall@k mixed"):
        assert label in svg
    for polyline in re.findall(r'<polyline [^>]*points="([^"]+)"', svg):
        assert len(polyline.split()) == len(report.ks)
    assert "<table>" in page and "Recall@k" in page


def test_a_probe_and_a_comparison_render_what_they_share_alike(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    from dataclasses import replace

    from lattice_qdrant import probe as pr

    fill_target(started, modern)
    docs, plan = started.collection, started.plan
    notes = ("the <target> covers 50% & more", "another note")
    at = 1_700_000_000.0
    compared = replace(cmp.compare(lattice, docs, labelled_queries(), ks=(1, 10)), notes=notes, created_at=at)
    probed = pr.probe(
        lattice.store,
        docs,
        source=plan.source,
        target=plan.target,
        source_embedder=lattice.embedder(plan.source),
        target_embedder=lattice.embedder(plan.target),
        source_vector=plan.source_vector,
        queries=labelled_queries(),
        ks=(1, 10),
        sample=N,
    )
    # the same queries and results, notes and time: what the two reports share must come out the same
    probed = replace(probed, outcomes=compared.outcomes, notes=notes, created_at=at)

    assert probed.labelled == compared.labelled == len(LABELLED)
    assert probed.decision_k == compared.gate_k == 10
    assert probed.row(10).k == compared.row(10).k == 10
    shared = ("query", "relevant", "results")
    assert probed.to_dict()["per_query"] == [
        {key: item[key] for key in shared} for item in compared.to_dict()["per_query"]
    ]
    # text: the notes section
    tail = ["notes", "  - the <target> covers 50% & more", "  - another note"]
    assert probed.render_text().splitlines()[-3:] == compared.render_text().splitlines()[-3:] == tail
    # html: the head (but the title), the time, the notes and the end
    pages = [r.render_html().splitlines() for r in (probed, compared)]
    assert [p[:2] + p[3:4] for p in pages] == [pages[1][:2] + pages[1][3:4]] * 2
    assert [p[2] for p in pages] == [
        f"<title>Probe of {docs}</title>",
        f"<title>Shadow comparison of {docs}</title>",
    ]
    assert all("2023-11-14 22:13:20 UTC" in "\n".join(p) for p in pages)
    end = [
        "<h2>Notes</h2><ul>",
        "<li>the &lt;target&gt; covers 50% &amp; more</li>",
        "<li>another note</li>",
        "</ul>",
        "</body></html>",
    ]
    assert pages[0][-5:] == pages[1][-5:] == end


def test_html_escapes_what_it_shows(started: lq.Migration, lattice: lq.LatticeClient) -> None:
    report = cmp.compare(lattice, started.collection, [QuerySpec("<b>bold</b> & cats")])
    page = report.render_html()
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; cats" in page


def test_partial_coverage_is_reported_and_only_covered_points_are_found(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    covered = set(range(0, N, 2))
    fill_target(started, modern, ids=covered)
    report = cmp.compare(lattice, started.collection, labelled_queries(), ks=(5, 20))
    assert (report.covered, report.total) == (N // 2, N)
    assert any("covers 50.0%" in note and "floor" in note for note in report.notes)
    for outcome in report.outcomes:
        assert set(outcome.results["target"]) <= covered
        assert len(outcome.results["target"]) == 18  # fewer covered points than k
    assert "covering 50.0% (18 of 36 points)" in report.render_text()
    # mixed mode finds uncovered points too (embedded on the fly), without writing them back
    assert any(set(o.results["mixed"]) - covered for o in report.outcomes)
    assert started.coverage().covered == N // 2


def test_without_labels_there_is_no_recall_and_the_gate_cannot_judge(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    fill_target(started, modern)
    report = cmp.compare(lattice, started.collection, [QuerySpec("cats"), QuerySpec("dogs")])
    assert report.labelled == 0
    assert all(row.recall == {} and row.ndcg == {} for row in report.at_k)
    assert report.summary()["source_recall"] is None and report.summary()["target_recall"] is None
    assert any("no query has relevance labels" in note for note in report.notes)
    assert "Recall@k" not in report.render_text()
    assert cmp.quality_gate(report.summary(), 0.1) is not None
    svg = report.render_html()
    assert svg.count("<polyline") == 1  # overlap only


def test_sampled_comparison(started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder) -> None:
    fill_target(started, modern)
    report = cmp.compare(lattice, started.collection, [], sample=6, seed=3)
    assert len(report.outcomes) == 6 and report.labelled == 6
    assert report.origin == "a sample of 6 points (known-item queries, seed 3)"
    # a point's own first sentence finds it among the top 10 with either model (near-duplicate notes aside)
    assert report.row(10).recall["source"] == 1.0
    assert report.row(10).recall["target"] == 1.0
    both = cmp.compare(lattice, started.collection, labelled_queries(), sample=2, origin="q.jsonl")
    assert len(both.outcomes) == len(LABELLED) + 2
    assert both.origin.startswith("q.jsonl and a sample of 2 points")


def test_compare_needs_queries_and_a_target_vector(
    lattice: lq.LatticeClient, make_migration: MakeMigration, names: Any
) -> None:
    planned = make_migration(N, started=False)
    with pytest.raises(lq.StoreError, match="lattice-qdrant start") as err:
        cmp.compare(lattice, planned.collection, labelled_queries())
    assert err.value.vector == planned.plan.target_vector
    planned.start()
    with pytest.raises(lq.ConfigError, match="no queries"):
        cmp.compare(lattice, planned.collection, [])
    with pytest.raises(lq.MigrationNotFoundError):
        cmp.compare(lattice, names("other"), labelled_queries())


def test_queries_naming_ids_the_collection_does_not_hold_are_refused(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    fill_target(started, modern)
    unknown = [*labelled_queries(), QuerySpec("somewhere else", frozenset({1, 9999, 123456}))]
    with pytest.raises(
        lq.ConfigError, match=r"name 2 relevant id\(s\) that .* does not hold: 123456, 9999"
    ) as err:
        cmp.compare(lattice, started.collection, unknown, origin="q.jsonl")
    assert "q.jsonl" in str(err.value) and err.value.key == "queries"
    # checked after finalize too, against the collection that is left
    started.cutover()
    started.finalize(force=True)
    with pytest.raises(lq.ConfigError, match=r"does not hold: 123456, 9999"):
        cmp.compare(lattice, started.collection, unknown, sample=2)
    assert cmp.compare(lattice, started.collection, labelled_queries()).labelled == len(LABELLED)


def test_after_cutover_mixed_is_the_target_and_after_finalize_only_the_target_is_searched(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    fill_target(started, modern)
    started.cutover()
    report = cmp.compare(lattice, started.collection, labelled_queries())
    assert report.systems == ("source", "target", "mixed")
    assert any("mixed mode is the target search" in note for note in report.notes)
    assert all(o.results["mixed"] == o.results["target"] for o in report.outcomes)

    started.finalize(force=True)
    report = cmp.compare(lattice, started.collection, labelled_queries())
    assert report.systems == ("target",)
    assert report.at_k[0].overlap is None and report.at_k[0].rank_correlation is None
    assert any("no longer exists" in note for note in report.notes)
    assert any("mixed mode is not evaluated" in note for note in report.notes)
    text = report.render_text()
    assert "Agreement of source and target" not in text and "Recall@k" in text
    assert report.render_html().count("<polyline") == 1  # recall of the target


# --------------------------------------------------------------------------- the gate


def summary(source_recall: Any = 0.8, target_recall: Any = 0.8, **extra: Any) -> dict[str, Any]:
    """A recorded comparison summary, as ``ComparisonReport.summary`` writes it."""
    return {
        "source": "legacy:v1:aaaaaaaa",
        "target": "modern:v1:bbbbbbbb",
        "k": 10,
        "labelled": 20,
        "queries": 20,
        "source_recall": source_recall,
        "target_recall": target_recall,
        **extra,
    }


@pytest.mark.parametrize(
    ("recorded", "margin", "refused"),
    [
        # no margin: never gated, whatever is recorded
        (None, None, None),
        (summary(0.9, 0.1), None, None),
        # a margin and nothing recorded
        (None, 0.05, "no shadow comparison is recorded"),
        # within the margin, at it, above the source
        (summary(0.80, 0.78), 0.05, None),
        (summary(0.80, 0.75), 0.05, None),
        (summary(0.80, 0.90), 0.0, None),
        (summary(0.80, 0.80), 0.0, None),
        # beyond it
        (summary(0.80, 0.74), 0.05, "recall@10 is 0.740, 0.060 below the source's 0.800"),
        (summary(0.80, 0.79), 0.0, "more than the margin of 0"),
        (summary(1.0, 0.0), 0.99, "more than the margin of 0.99"),
        # without labels it cannot judge
        (summary(None, None, labelled=0), 0.05, "no relevance labels"),
        (summary(0.8, None), 0.05, "no relevance labels"),
        (summary(0.8, 0.8, labelled=0), 0.05, "no relevance labels"),
        (summary("0.8", 0.8), 0.05, "no relevance labels"),
        (summary(0.8, float("nan")), 0.05, "no relevance labels"),
        # a comparison of another migration does not count
        (summary(0.8, 0.8, target="modern:v2:cccccccc"), 0.05, "not of this migration"),
        (summary(0.8, 0.8, source="bow:v1:dddddddd"), 0.05, "not of this migration"),
    ],
)
def test_quality_gate(recorded: dict[str, Any] | None, margin: float | None, refused: str | None) -> None:
    reason = cmp.quality_gate(recorded, margin, source="legacy:v1:aaaaaaaa", target="modern:v1:bbbbbbbb")
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason
        assert "lattice-qdrant compare" in reason or "margin" in reason


def test_quality_gate_without_models_to_check() -> None:
    assert cmp.quality_gate(summary(0.8, 0.8, target="other"), 0.1) is None


@pytest.fixture
def gated(make_migration: MakeMigration, modern: HashEmbedder) -> lq.Migration:
    migration = make_migration(N, started=False, compare_margin=0.05)
    assert migration.plan.compare_margin == 0.05
    migration.start()
    fill_target(migration, modern)
    return migration


def record(migration: lq.Migration, source: float | None, target: float | None, **extra: Any) -> None:
    plan = migration.plan
    migration.store.put_record(
        cmp.RECORD_KIND,
        migration.collection,
        summary(source, target, source=plan.source.qualified_id, target=plan.target.qualified_id, **extra),
    )


def test_cutover_is_refused_without_a_recorded_comparison(gated: lq.Migration) -> None:
    with pytest.raises(lq.QualityGateError, match="no shadow comparison is recorded") as err:
        gated.cutover()
    message = str(err.value)
    assert "lattice-qdrant compare" in message and "--force" in message and "compare_margin 0.05" in message
    assert isinstance(err.value, lq.TransitionError) and err.value.margin == 0.05
    assert gated.state.phase == lq.Phase.MIGRATING


def test_cutover_is_refused_when_the_target_falls_below_the_margin(gated: lq.Migration) -> None:
    record(gated, 0.80, 0.70)
    with pytest.raises(lq.QualityGateError) as err:
        gated.cutover()
    message = str(err.value)
    assert "0.700" in message and "0.800" in message and "margin of 0.05" in message and "--force" in message
    assert gated.state.phase == lq.Phase.MIGRATING
    state = gated.cutover(force=True)
    assert state.phase == lq.Phase.ROLLBACK_WINDOW


def test_cutover_is_allowed_within_the_margin(gated: lq.Migration) -> None:
    record(gated, 0.80, 0.76)
    assert gated.cutover().phase == lq.Phase.ROLLBACK_WINDOW


def test_cutover_is_refused_on_a_comparison_without_labels(gated: lq.Migration) -> None:
    record(gated, None, None, labelled=0)
    with pytest.raises(lq.QualityGateError, match="no relevance labels"):
        gated.cutover()


def test_the_lifecycle_refuses_before_the_gate(make_migration: MakeMigration) -> None:
    migration = make_migration(N, started=False, compare_margin=0.05)
    with pytest.raises(lq.InvalidTransitionError):
        migration.cutover()  # not started
    migration.start()
    with pytest.raises(lq.ThresholdNotMetError):
        migration.cutover()  # nothing backfilled


def test_a_recorded_comparison_opens_the_gate(gated: lq.Migration, lattice: lq.LatticeClient) -> None:
    report = cmp.compare(lattice, gated.collection, labelled_queries())
    assert report.compare_margin == 0.05 and report.gate() is None
    assert (
        "cutover allowed (compare_margin 0.05): target recall@10 1.000, source 1.000" in report.render_text()
    )
    stored = cmp.record_comparison(lattice.store, report)
    recorded = lattice.store.get_record(cmp.RECORD_KIND, gated.collection)
    assert recorded is not None and recorded["target_recall"] == stored["target_recall"] == 1.0
    assert gated.cutover().phase == lq.Phase.ROLLBACK_WINDOW


def test_a_recorded_comparison_at_low_coverage_closes_the_gate(
    lattice: lq.LatticeClient, make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    migration = make_migration(N, started=False, compare_margin=0.05, cutover_threshold=0.3)
    migration.start()
    fill_target(migration, modern, ids=set(range(0, N, 3)))
    report = cmp.compare(lattice, migration.collection, labelled_queries())
    cmp.record_comparison(lattice.store, report)
    assert report.row(10).recall["target"] == 0.25 and report.row(10).recall["source"] == 1.0
    assert "cutover would be refused" in report.render_text()
    with pytest.raises(lq.QualityGateError, match=r"recall@10 is 0\.250, 0\.750 below the source's 1\.000"):
        migration.cutover()
    assert migration.cutover(force=True).phase == lq.Phase.ROLLBACK_WINDOW


def test_a_plan_without_a_margin_is_not_gated(started: lq.Migration, modern: HashEmbedder) -> None:
    fill_target(started, modern)
    record(started, 0.9, 0.1)
    assert started.cutover().phase == lq.Phase.ROLLBACK_WINDOW


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(cli: Any, names: Any, legacy: HashEmbedder) -> Any:
    """The CLI against this test's Qdrant, with a filled collection and both models registered."""
    client = cli.qdrant()
    fill_collection(client, cli.docs, legacy, n=N)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    return cli


def write_queries(path: Path) -> Path:
    lines = [json.dumps({"query": text, "relevant": sorted(relevant_to(s))}) for text, s in LABELLED]
    path.write_text("\n".join([*lines, "weather tomorrow"]) + "\n", encoding="utf-8")
    return path


def test_compare_through_the_cli_gates_cutover(cli: Any, tmp_path: Path) -> None:
    docs = cli.docs
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--compare-margin", "1", "--query-mode", "mixed", "--missing-policy", "source_order",
        "--read-repair")  # fmt: skip
    client = cli.qdrant()
    plan = lq.Store(client, control_collection=cli.control).get_record("migration", docs)["plan"]
    client.close()
    assert (plan["compare_margin"], plan["query_mode"], plan["missing_policy"], plan["read_repair"]) == (
        1.0,
        "mixed",
        "source_order",
        True,
    )
    cli("start", docs)
    cli("backfill", docs)

    refused = cli("cutover", docs, code=3)
    assert "no shadow comparison is recorded" in refused.output and "--force" in refused.output

    queries = write_queries(tmp_path / "queries.jsonl")
    # --no-record leaves the gate closed
    cli("compare", docs, "--queries", str(queries), "--no-record")
    cli("cutover", docs, code=3)

    page = tmp_path / "report.html"
    out = cli("compare", docs, "--queries", str(queries), "--k", "1,5,10", "--html", str(page)).output
    assert f"Shadow comparison of {docs!r}" in out and "Recall@k (mean over 8 labelled queries)" in out
    assert "cutover allowed (compare_margin 1)" in out
    assert f"wrote the HTML report to {page}" in out  # the runner mixes stderr in
    assert "<svg" in page.read_text(encoding="utf-8")

    data = json.loads(cli("compare", docs, "--sample", "4", "--json", "--no-record").stdout)
    assert data["queries"] == 4 and data["labelled"] == 4 and data["ks"] == [1, 5, 10, 20]
    assert data["systems"] == ["source", "target", "mixed"]

    assert "rollback_window" in cli("cutover", docs).output


def test_compare_cli_errors(cli: Any, tmp_path: Path) -> None:
    docs = cli.docs
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--compare-margin", "0.1")  # fmt: skip
    assert "target vector does not exist" in cli("compare", docs, "--sample", "3", code=1).output
    cli("start", docs)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "cats", "relevant": [1]}\n{"query": "dogs", "relevant": [}\n', encoding="utf-8")
    assert "line 2: not valid JSON" in cli("compare", docs, "--queries", str(bad), code=2).output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert "holds no query" in cli("compare", docs, "--queries", str(empty), "--sample", "3", code=2).output
    assert (
        "cannot read the queries file"
        in cli("compare", docs, "--queries", str(tmp_path / "nope"), code=2).output
    )
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"query": "cats", "relevant": [1, 999]}) + "\n", encoding="utf-8")
    out = cli("compare", docs, "--queries", str(unknown), code=2).output
    assert f"the queries {unknown} name 1 relevant id(s) that {docs!r} does not hold: 999" in " ".join(
        out.split()
    )
    assert "--k" in cli("compare", docs, "--sample", "3", "--k", "1,x", code=2).output
    assert "no queries" in cli("compare", docs, code=2).output
    assert "at least 1" in cli("compare", docs, "--sample", "0", code=2).output
    assert "query_mode must be one of" in cli(
        "plan", cli.docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--query-mode", "fast", code=2,
    ).output  # fmt: skip
    assert "compare_margin must be between 0 and 1" in cli(
        "plan", cli.docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy",
        "--compare-margin", "2", code=2,
    ).output  # fmt: skip


def test_mixed_mode_is_queried_with_each_k_as_the_limit(
    started: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an application asking for k results gets: mixed mode's candidates (limit * oversample per
    search) and so its ranking depend on the limit, so each k is its own query."""
    fill_target(started, modern, ids=set(range(0, N, 3)))
    limits: list[int] = []
    real = cmp.mixed_query

    def spy(*args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs["limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cmp, "mixed_query", spy)
    queries = labelled_queries()
    report = cmp.compare(lattice, started.collection, queries, ks=(1, 5, 20))
    assert sorted(limits) == sorted([1, 5, 20] * len(queries))
    for outcome in report.outcomes:
        for k in (1, 5, 20):
            alone = real(
                lattice.store,
                started.plan,
                outcome.query.text,
                embed_source=lattice.embedder(started.plan.source).embed,
                embed_target=lattice.embedder(started.plan.target).embed,
                limit=k,
                embed_budget=started.plan.embed_budget,
                with_payload=False,
            )
            assert outcome.ids("mixed", k) == tuple(p.id for p in alone.points)
            assert outcome.at(k)["recall"]["mixed"] == cmp.recall_at_k(
                [p.id for p in alone.points], outcome.query.relevant or frozenset(), k
            )
        assert outcome.results["mixed"] == outcome.by_limit["mixed"][20]
    per_query = report.to_dict()["per_query"][0]
    assert set(per_query["by_limit"]["mixed"]) == {"1", "5", "20"}
