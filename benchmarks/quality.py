"""Search quality through a migration, and what it costs, on a real corpus with the real model (not a test).

``scripts/bench quality`` runs it. The corpus is Python's own documentation (:mod:`benchmarks.corpus`),
the source model a bag-of-words hash embedder, the target all-MiniLM-L6-v2. Point ids are a seeded random
permutation, so a partial backfill covers a random share of every module. For each coverage it measures,
side by side (the systems interleaved query by query, ``--repeat`` rounds):

* the source vector alone (what queries get before cutover without mixed mode);
* the target vector alone at that coverage (what a premature cutover would give): a plain target query,
  one query embedding and one search, the cost every other row is compared with;
* mixed mode with its defaults (the plan's ``embed_budget``), with the other budgets of ``--budgets``,
  embedding every uncovered candidate (the old default) and with ``missing="source_order"``;
* the target vector at full coverage (the goal).

and reports recall@k and MRR@k over the questions, the p50 and p95 latency of a query (through the wrapping
client, query embeddings included), the median over the queries of each query's latency divided by the
plain target query's run right before or after it (``p50/target``: a ratio that a changing load on the
machine moves far less than the milliseconds), and how many
document texts a query embedded. A second table gives recall and MRR on known-item queries (the first
sentence of a sampled paragraph finds that paragraph), where the source model is strong: mixed mode must
not lose what the source finds. numpy's BLAS runs on one thread (``--blas-threads``): its threads spin
after each of local mode's brute-force searches and, on few cores, slow the next forward pass down
(:mod:`benchmarks.threads`), which a server's searches, in their own process, do not.

Relevance: a document is relevant to a question when its module is one the question names
(:data:`~benchmarks.corpus.QUERIES`); recall@k is the share of the top k that is relevant, over
``min(k, relevant)``; MRR@k the mean of 1 / the rank of the first relevant result in the top k (0 if none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from benchmarks.corpus import QUERIES, Document, python_docs
from benchmarks.threads import blas_limit
from lattice_qdrant.client import LatticeClient, wrap
from lattice_qdrant.compare import query_from_text
from lattice_qdrant.embedders import MINILM, Embedder, HashEmbedder, SentenceTransformerEmbedder
from lattice_qdrant.plan import EMBED_BUDGET
from lattice_qdrant.spec import ModelSpec

__all__ = ["main"]

#: a budget above every query's candidates: embed them all (the old default)
ALL = 10_000


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Counting:
    """An embedder that counts the texts it embeds (the query text included)."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.texts = 0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.texts += len(texts)
        return self.inner.embed(texts)

    def spec(self, name: str) -> ModelSpec:
        return self.inner.spec(name)


def _target_vectors(docs: Sequence[Document], embedder: Embedder, cache: Path) -> NDArray[np.float32]:
    digest = hashlib.sha256("\n".join(d.text for d in docs).encode()).hexdigest()[:16]
    path = cache / f"minilm-{digest}.npy"
    if path.exists():
        cached: NDArray[np.float32] = np.load(path).astype(np.float32)
        return cached
    vectors = np.concatenate(
        [embedder.embed([d.text for d in docs[i : i + 128]]) for i in range(0, len(docs), 128)]
    )
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _build(
    docs: Sequence[Document],
    ids: Sequence[int],
    source: HashEmbedder,
    target: Counting,
    target_vectors: NDArray[np.float32],
    coverage: float,
) -> LatticeClient:
    qdrant = QdrantClient(":memory:")
    qdrant.create_collection(
        "docs",
        vectors_config={"bow": models.VectorParams(size=source.dimension, distance=models.Distance.COSINE)},
    )
    src = source.embed([d.text for d in docs])
    for start in range(0, len(docs), 512):
        qdrant.upsert(
            "docs",
            [
                models.PointStruct(
                    id=ids[i], vector={"bow": src[i].tolist()}, payload={"text": d.text, "module": d.module}
                )
                for i, d in enumerate(docs[start : start + 512], start)
            ],
        )
    client = wrap(qdrant, embedders={"bow": source, "minilm": target}, refresh_interval=3600)
    migration = client.plan(
        "docs", source=source.spec("bow"), target=target.spec("minilm"), source_vector="bow"
    )
    migration.start()
    covered = sorted(range(len(docs)), key=lambda i: ids[i])[: round(coverage * len(docs))]
    for start in range(0, len(covered), 512):
        chunk = covered[start : start + 512]
        qdrant.update_vectors(
            "docs",
            [models.PointVectors(id=ids[i], vector={"minilm-v1": target_vectors[i].tolist()}) for i in chunk],
        )
    return client


@dataclass(frozen=True)
class Question:
    """A query text and the ids relevant to it."""

    text: str
    relevant: frozenset[int]


@dataclass(frozen=True)
class System:
    """One way of querying: a name for the table and the ``query_points`` options."""

    name: str
    options: dict[str, Any]
    full: bool = False


def _systems(budgets: Sequence[int]) -> list[System]:
    out = [
        System("source alone", {"mode": "routed"}),
        System("target alone at that coverage", {"using": "minilm-v1"}),
        System(f"mixed, defaults (budget {EMBED_BUDGET})", {"mode": "mixed"}),
    ]
    out += [System(f"mixed, budget {b}", {"mode": "mixed", "embed_budget": b}) for b in budgets]
    out += [
        System("mixed, embed every candidate", {"mode": "mixed", "embed_budget": ALL}),
        System("mixed, source order", {"mode": "mixed", "missing": "source_order"}),
        System("target at 100%", {}, full=True),
    ]
    return out


@dataclass
class Tally:
    """What one system got over the queries of one coverage."""

    recall: list[float]
    mrr: list[float]
    seconds: list[float]
    embedded: list[int]

    def row(self, baseline: Tally | None) -> dict[str, Any]:
        p50 = statistics.median(self.seconds) * 1000 if self.seconds else None
        p95 = float(np.percentile(self.seconds, 95)) * 1000 if self.seconds else None
        # each query against the plain target query run right next to it: robust to a changing load
        paired = (
            statistics.median(a / b for a, b in zip(self.seconds, baseline.seconds, strict=True))
            if baseline is not None and self.seconds
            else None
        )
        return {
            "recall": float(np.mean(self.recall)),
            "mrr": float(np.mean(self.mrr)),
            "p50_ms": p50,
            "p95_ms": p95,
            "p50_vs_target": paired,
            "embedded_per_query": float(np.mean(self.embedded)) if self.embedded else 0.0,
        }


def _score(points: Sequence[models.ScoredPoint], relevant: frozenset[int], k: int) -> tuple[float, float]:
    ranks = [i for i, p in enumerate(points[:k]) if p.id in relevant]
    recall = len(ranks) / max(1, min(k, len(relevant)))
    return recall, (1.0 / (ranks[0] + 1) if ranks else 0.0)


def _run(
    clients: dict[bool, LatticeClient],
    target: Counting,
    systems: Sequence[System],
    questions: Sequence[Question],
    k: int,
    repeat: int,
    timed: bool,
) -> dict[str, Tally]:
    tallies = {s.name: Tally([], [], [], []) for s in systems}
    for round_ in range(repeat):
        for n, q in enumerate(questions):
            shift = (n + round_) % len(systems)  # each system in every position in turn
            for system in [*systems[shift:], *systems[:shift]]:
                client = clients[system.full]
                document = models.Document(text=q.text, model="bench")
                before = target.texts
                started = time.perf_counter()
                found = client.query_points("docs", document, limit=k, **system.options).points
                elapsed = time.perf_counter() - started
                tally = tallies[system.name]
                if timed:
                    tally.seconds.append(elapsed)
                    queries = 1 if system.options.get("mode") != "routed" else 0
                    tally.embedded.append(target.texts - before - queries)
                if round_ == 0:
                    recall, mrr = _score(found, q.relevant, k)
                    tally.recall.append(recall)
                    tally.mrr.append(mrr)
    return tallies


def _questions(docs: Sequence[Document], ids: Sequence[int]) -> list[Question]:
    out = []
    for q in QUERIES:
        relevant = frozenset(ids[i] for i, d in enumerate(docs) if d.module in q.modules)
        out.append(Question(q.text, relevant))
    return out


def _known_items(docs: Sequence[Document], ids: Sequence[int], n: int, seed: int) -> list[Question]:
    picked = np.random.default_rng(seed + 1).choice(len(docs), size=min(n, len(docs)), replace=False)
    out = [Question(query_from_text(docs[i].text), frozenset({ids[i]})) for i in picked]
    return [q for q in out if q.text]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    """Print the quality and cost tables (``--json PATH`` saves them)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coverages", type=float, nargs="*", default=[0.25, 0.5, 0.75])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many documents")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the questions, for the latencies")
    parser.add_argument("--budgets", type=int, nargs="*", default=[1, 4], help="other budgets to measure")
    parser.add_argument("--known", type=int, default=60, help="known-item queries (0: none)")
    parser.add_argument("--cache", type=Path, default=Path(".bench"), help="where MiniLM vectors are cached")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="numpy's BLAS threads (default 1: spinning after local mode's searches, more of them slow the "
        "forward passes down; see benchmarks.threads)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with blas_limit(args.blas_threads) as blas:
        return _measure(args, blas)


def _measure(args: argparse.Namespace, blas: str) -> int:
    docs = python_docs(args.limit)
    ids = [int(x) for x in np.random.default_rng(args.seed).permutation(len(docs))]
    source = HashEmbedder(256, salt="pydocs")
    target = Counting(SentenceTransformerEmbedder(MINILM))
    k = args.k
    _out(
        f"search quality and cost: {len(docs)} paragraphs of Python's documentation, {len(QUERIES)} questions"
    )
    _out(f"(x{args.repeat} for latency), {args.known} known-item queries; source hash:bow (256-d),")
    _out(f"target {MINILM}")
    _out(
        f"k={k}; load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
        f"numpy's BLAS threads: {blas}"
    )
    vectors = _target_vectors(docs, target.inner, args.cache)
    systems = _systems(args.budgets)
    questions = _questions(docs, ids)
    known = _known_items(docs, ids, args.known, args.seed) if args.known else []
    full = _build(docs, ids, source, target, vectors, 1.0)
    full.migration("docs").cutover()
    result: dict[str, Any] = {"k": k, "documents": len(docs), "blas_threads": blas, "coverages": []}
    width = max(len(s.name) for s in systems)
    for coverage in args.coverages:
        client = _build(docs, ids, source, target, vectors, coverage)
        clients = {False: client, True: full}
        _run(clients, target, systems, questions[:3], k, 1, timed=False)  # warm-up
        tallies = _run(clients, target, systems, questions, k, args.repeat, timed=True)
        baseline = tallies["target alone at that coverage"]
        rows = {name: tally.row(baseline) for name, tally in tallies.items()}
        known_rows = {}
        if known:
            known_tallies = _run(clients, target, systems, known, k, 1, timed=False)
            known_rows = {name: tally.row(None) for name, tally in known_tallies.items()}
        covered = round(coverage * len(docs))
        _out()
        load = os.getloadavg()[0]
        _out(f"coverage {coverage:.0%} ({covered} of {len(docs)} points); load average {load:.2f}")
        _out(
            f"  {'system':<{width}}  recall@{k}  MRR@{k}  p50 ms  p95 ms  p50/target  embedded/query"
            + ("  known recall  known MRR" if known else "")
        )
        for system in systems:
            row = rows[system.name]
            line = (
                f"  {system.name:<{width}}  {row['recall']:>9.3f}  {row['mrr']:>6.3f}"
                f"  {_fmt(row['p50_ms'], '>6.1f')}  {_fmt(row['p95_ms'], '>6.1f')}"
                f"  {_fmt(row['p50_vs_target'], '>9.2f')}x"
                f"  {row['embedded_per_query']:>14.1f}"
            )
            if known:
                kr = known_rows[system.name]
                line += f"  {kr['recall']:>12.3f}  {kr['mrr']:>9.3f}"
            _out(line)
        result["coverages"].append({"coverage": coverage, "questions": rows, "known_items": known_rows})
    _out()
    _out(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
