"""Search quality through a migration, measured on a real corpus with the real model (not a test).

``scripts/bench quality`` runs it. The corpus is Python's own documentation (:mod:`benchmarks.corpus`),
the source model a bag-of-words hash embedder, the target all-MiniLM-L6-v2. Point ids are a seeded random
permutation, so a partial backfill covers a random share of every module. For each coverage it reports
recall@k of:

* the source vector alone (what queries get before cutover without mixed mode);
* the target vector alone at that coverage (what a premature cutover would give);
* mixed mode, both missing policies (``embed`` and ``source_order``);
* the target vector at full coverage (the goal).

Relevance: a document is relevant to a question when its module is one the question names
(:data:`~benchmarks.corpus.QUERIES`); recall@k is the share of the top k that is relevant, over
``min(k, relevant)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from benchmarks.corpus import QUERIES, Document, python_docs
from lattice_qdrant.client import LatticeClient, wrap
from lattice_qdrant.embedders import MINILM, Embedder, HashEmbedder, SentenceTransformerEmbedder

__all__ = ["main"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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
    target: Embedder,
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
    target_spec = target.spec("minilm") if isinstance(target, SentenceTransformerEmbedder) else None
    if target_spec is None:
        raise SystemExit("the target must be a sentence-transformers model")
    migration = client.plan("docs", source=source.spec("bow"), target=target_spec, source_vector="bow")
    migration.start()
    covered = sorted(range(len(docs)), key=lambda i: ids[i])[: round(coverage * len(docs))]
    for start in range(0, len(covered), 512):
        chunk = covered[start : start + 512]
        qdrant.update_vectors(
            "docs",
            [models.PointVectors(id=ids[i], vector={"minilm-v1": target_vectors[i].tolist()}) for i in chunk],
        )
    return client


def _recall(client: LatticeClient, k: int, **query: Any) -> float:
    total = 0.0
    for q in QUERIES:
        relevant = client.client.count(
            "docs",
            count_filter=models.Filter(
                must=[models.FieldCondition(key="module", match=models.MatchAny(any=list(q.modules)))]
            ),
            exact=True,
        ).count
        res = client.query_points("docs", models.Document(text=q.text, model="routed"), limit=k, **query)
        hits = sum(1 for p in res.points if (p.payload or {}).get("module") in q.modules)
        total += hits / max(1, min(k, relevant))
    return total / len(QUERIES)


def main(argv: list[str] | None = None) -> int:
    """Print the recall table (``--json PATH`` saves it)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coverages", type=float, nargs="*", default=[0.25, 0.5, 0.75])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many documents")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path(".bench"), help="where MiniLM vectors are cached")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = python_docs(args.limit)
    ids = [int(x) for x in np.random.default_rng(args.seed).permutation(len(docs))]
    source = HashEmbedder(256, salt="pydocs")
    target = SentenceTransformerEmbedder(MINILM)
    _out(f"search quality: {len(docs)} paragraphs of Python's documentation, {len(QUERIES)} questions,")
    _out(f"source hash:bow (256-d), target {MINILM}; recall@{args.k}")
    vectors = _target_vectors(docs, target, args.cache)
    k = args.k
    rows: list[dict[str, Any]] = []
    full = _build(docs, ids, source, target, vectors, 1.0)
    full.migration("docs").cutover()
    target_full = _recall(full, k)
    header = (
        f"{'coverage':>9} {'source':>8} {'target@cov':>11} {'mixed embed':>12} {'mixed src-order':>16} "
        f"{'target@100%':>12}"
    )
    _out(header)
    for coverage in args.coverages:
        client = _build(docs, ids, source, target, vectors, coverage)
        row = {
            "coverage": coverage,
            "source": _recall(client, k, mode="routed"),
            "target_at_coverage": _recall(client, k, using="minilm-v1"),
            "mixed_embed": _recall(client, k, mode="mixed", missing="embed"),
            "mixed_source_order": _recall(client, k, mode="mixed", missing="source_order"),
            "target_full": target_full,
        }
        rows.append(row)
        _out(
            f"{coverage:>8.0%} {row['source']:>8.3f} {row['target_at_coverage']:>11.3f} "
            f"{row['mixed_embed']:>12.3f} {row['mixed_source_order']:>16.3f} {target_full:>12.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"k": k, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
