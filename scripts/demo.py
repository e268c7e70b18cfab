"""The end-to-end demo behind ``scripts/demo`` (run that; it builds the venv first).

An "application" owns a Qdrant collection of Python documentation paragraphs embedded with a cheap
bag-of-words model. lattice-qdrant moves it to all-MiniLM-L6-v2 while the application keeps writing and
searching, using the ``lattice-qdrant`` CLI the way an operator would.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.embedders import MINILM, HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
# The corpus lives with the benchmarks, outside the package (not in the wheel): import it from this checkout,
# so ``python scripts/demo.py`` works from any directory.
sys.path.insert(0, str(ROOT))
from benchmarks.corpus import QUERIES, python_docs  # noqa: E402

COLLECTION = "pydocs"
WINDOW = 5  # seconds of rollback window, so the demo can finalize without --force


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def cli(store: Path, *args: str, check: bool = True) -> int:
    """Run the lattice-qdrant CLI as an operator would, echoing the command."""
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ lattice-qdrant {shown}", flush=True)
    exe = Path(sys.executable).with_name("lattice-qdrant")
    code = subprocess.call([str(exe), "--path", str(store), *args])
    if check and code != 0:
        sys.exit(f"lattice-qdrant {shown} failed with exit code {code}")
    return code


def hit_rate(client: lq.LatticeClient, k: int = 5) -> tuple[float, list[tuple[str, list[str]]]]:
    """Share of the questions with a relevant document in the top k, and the top 3 of a few."""
    hits = 0
    shown = []
    for i, q in enumerate(QUERIES):
        res = client.query_points(COLLECTION, models.Document(text=q.text, model="routed"), limit=k)
        titles = [str(p.payload["title"]) for p in res.points]
        modules = [str(p.payload["module"]) for p in res.points]
        hits += any(m in q.modules for m in modules)
        if i in (0, 5, 10):
            shown.append((q.text, titles[:3]))
    return hits / len(QUERIES), shown


def show_queries(client: lq.LatticeClient, label: str) -> float:
    rate, shown = hit_rate(client)
    routing = client.migration(COLLECTION).routing()
    print(f"queries use vector {routing.query_vector!r} ({label})")
    for question, titles in shown:
        print(f"  {question!r}\n     -> {', '.join(titles)}")
    print(f"  hit@5 over {len(QUERIES)} questions: {rate:.0%}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many documents")
    parser.add_argument("--where", default=str(ROOT / ".demo"), help="folder for the local Qdrant")
    args = parser.parse_args()
    work = Path(args.where)
    store = work / "qdrant"
    if work.exists():
        shutil.rmtree(work)  # a fresh start every run
    work.mkdir(parents=True)

    say("1. The application's collection today: Python's documentation, bag-of-words vectors")
    docs = python_docs(args.limit)
    legacy = HashEmbedder(256, salt="pydocs")
    qdrant = QdrantClient(path=str(store))
    qdrant.create_collection(
        COLLECTION, vectors_config={"bow": models.VectorParams(size=256, distance=models.Distance.COSINE)}
    )
    vectors = legacy.embed([d.text for d in docs])
    qdrant.upsert(
        COLLECTION,
        [
            models.PointStruct(
                id=d.id,
                vector={"bow": v.tolist()},
                payload={"text": d.text, "module": d.module, "title": d.title},
            )
            for d, v in zip(docs, vectors, strict=True)
        ],
    )
    modules = len({d.module for d in docs})
    print(f"{len(docs)} paragraphs from {modules} standard-library modules, vector 'bow' (256-d)")
    qdrant.close()

    say("2. Register both models and check the collection before touching it")
    cli(store, "models", "register", "bow", "--name", legacy.name, "--dimension", "256")
    cli(store, "models", "register", "minilm", "--name", MINILM)
    cli(store, "doctor", COLLECTION, "--source", "bow", "--target", "minilm", "--source-vector", "bow")

    say("3. Plan and start: the target becomes a parallel named vector, writes go to both")
    cli(store, "plan", COLLECTION, "--source", "bow", "--target", "minilm", "--source-vector", "bow",
        "--rollback-window", f"{WINDOW}s")  # fmt: skip
    cli(store, "start", COLLECTION)

    say("4. The application keeps searching and writing through the wrapper")
    client = lq.wrap(QdrantClient(path=str(store)), embedders={"bow": legacy})
    before = show_queries(client, "the legacy model, until cutover")
    new_text = "lattice-qdrant moves collections between models"
    client.upsert(
        COLLECTION,
        [
            models.PointStruct(
                id=len(docs),
                vector=models.Document(text=new_text, model="routed"),
                payload={"text": new_text, "module": "demo", "title": "demo.write"},
            )
        ],
    )
    written = client.client.retrieve(COLLECTION, [len(docs)], with_vectors=True)[0]
    print(f"a new point written during the migration has vectors {sorted(written.vector)} "
          f"and payload model {written.payload['embedding_model_id']!r}")  # fmt: skip
    client.client.close()

    say("5. Backfill the old points with all-MiniLM-L6-v2 (resumable: kill it and run it again)")
    cli(store, "backfill", COLLECTION, "--dry-run")
    cli(store, "backfill", COLLECTION, "--until", "50")
    cli(store, "status", COLLECTION)
    cli(store, "backfill", COLLECTION)

    say("6. Calibrate score thresholds, cut over: queries move to the new vector, a rollback window opens")
    cli(store, "calibrate", COLLECTION)
    cli(store, "cutover", COLLECTION)
    client = lq.wrap(QdrantClient(path=str(store)), embedders={"bow": legacy})
    after = show_queries(client, "all-MiniLM-L6-v2 after cutover")
    client.client.close()

    say("7. Roll back and forward again: the source vector was kept up to date all along")
    cli(store, "rollback", COLLECTION)
    client = lq.wrap(QdrantClient(path=str(store)), embedders={"bow": legacy})
    show_queries(client, "back on the legacy model")
    client.client.close()
    cli(store, "cutover", COLLECTION)

    say("8. Finalize once the rollback window has passed: the legacy vectors are backed up, then dropped")
    cli(store, "finalize", COLLECTION, check=False)
    time.sleep(WINDOW)
    cli(store, "finalize", COLLECTION)
    cli(store, "backups", "list", COLLECTION)

    say("Summary")
    print(f"hit@5 with the legacy bag-of-words model: {before:.0%}")
    print(f"hit@5 with all-MiniLM-L6-v2:              {after:.0%}")
    print(f"the collection lives in {store}; try: .venv/bin/lattice-qdrant --path {store} status")


if __name__ == "__main__":
    main()
