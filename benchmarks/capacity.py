"""Capacity plan: per-worker rates measured here, and the hours a backfill of 1M, 10M and 100M points takes.

``scripts/bench capacity`` runs it. Three measurements, then the plan:

1. **Embedding**: points per second of the real model (all-MiniLM-L6-v2) on the demo corpus, called with the
   backfill's embed window, with one CPU thread (the rate per core) and with every core of this machine;
   torch, and onnx when onnxruntime is installed.
2. **Writes**: Qdrant's own engine in-process (``qdrant_edge``, one shard of ``--points`` points) takes the
   backfill's write of each batch through the library's server code path: the in-place strategy's
   conditional ``update_vectors`` (only points still lacking the vector and holding the text embedded), the
   read-back that tells which took effect, and the model stamp. No HNSW graph is built meanwhile (edge runs
   its optimizers only when asked); then the shard's optimizer builds the new vector's graph, timed apart:
   the indexing rate.
3. **Reads**: the backfill's reader over that shard: pages of points still to do, with their text, without a
   slice (every point) and with one slice of four (``SliceCondition``, server 1.19+).

The plan: for each size and worker count, points per second = min(workers x embed rate per worker, write
rate, read bound) and hours = points / that rate, naming the binding constraint. Without slices each of N
workers reads every point still to do and keeps its share (N times the reads); with slices each point is
read once. The HNSW build is shown apart: a server indexes in the background, so it bounds when the new
vector searches fast, not the backfill (unless the optimizer is told to hold writes back).

Every rate can be given instead of measured (``--embed-rate``, ``--write-rate``, ``--index-rate``,
``--read-rate``, ``--slice-read-rate``): a team plugs in what it measured on its own machines and server;
what is given is not measured. The in-process engine pays no network and no HTTP: a real server's write and
read rates are lower per request, and higher in total with several shards (``--shards``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from benchmarks.corpus import python_docs
from lattice_qdrant.backfill import BackfillOptions, read_page_size
from lattice_qdrant.embedders import MINILM, Embedder, HashEmbedder, SentenceTransformerEmbedder
from lattice_qdrant.plan import MigrationPlan
from lattice_qdrant.store import RetryPolicy, Store, open_store
from lattice_qdrant.strategies import strategy_for

__all__ = ["main", "plan_rows"]

#: Qdrant's default update queue of a shard on a normal node (10,000 on a listener node):
#: ``DEFAULT_UPDATE_QUEUE_SIZE`` in ``lib/collection/src/shards/shared_storage_config.rs``, set by
#: ``storage.update_queue_size``. A full queue makes the next update wait for room; it does not fail.
UPDATE_QUEUE = 100
TARGET = "target-v1"
SOURCE = "legacy"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- embedding


def _window_rate(embedder: Embedder, texts: Sequence[str], window: int, repeat: int) -> float:
    """Median points per second of ``embed`` called with ``window`` texts at a time."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for at in range(0, len(texts), window):
            embedder.embed(texts[at : at + window])
        runs.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(runs)


def _threads(count: int | None) -> int:
    """Set torch's CPU threads (``None``: leave them); return the count before."""
    import torch

    before = int(torch.get_num_threads())
    if count is not None:
        torch.set_num_threads(count)
    return before


def measure_embed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per backend: points per second with one thread and with every core (the window call)."""
    texts = [d.text for d in python_docs(args.texts)]
    window = BackfillOptions().embed_window
    cores = os.cpu_count() or 1
    rows = []
    for backend in args.backends:
        if backend == "hash":
            embedder: Embedder = HashEmbedder(384)
        else:
            embedder = SentenceTransformerEmbedder(args.model, backend=backend, cache_dir=args.cache_dir)
        embedder.embed(texts[:8])  # load (onnx: export) and warm up
        row: dict[str, Any] = {"backend": backend, "cores": cores}
        if backend == "torch":
            before = _threads(1)
            try:
                row["per_core_pps"] = _window_rate(embedder, texts, window, args.repeat)
            finally:
                _threads(before)
        row["all_cores_pps"] = _window_rate(embedder, texts, window, args.repeat)
        if "per_core_pps" not in row:  # one thread is not set for onnx here: its rate spread over the cores
            row["per_core_pps"] = row["all_cores_pps"] / cores
            row["per_core_estimated"] = True
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the engine: writes and reads


def _plan(dim: int) -> MigrationPlan:
    return MigrationPlan(
        collection="c",
        source=HashEmbedder(8, salt="capacity").spec("legacy"),
        target=HashEmbedder(dim, salt="capacity").spec("target"),
        source_vector=SOURCE,
        target_vector=TARGET,
    )


def _shard(path: Path, n: int, dim: int) -> Any:
    """An edge shard of ``n`` points holding a small source vector (no HNSW graph) and their text, and
    the target vector configured but held by none."""
    import qdrant_edge as qe

    no_graph = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000)
    config = qe.EdgeConfig(
        vectors={
            SOURCE: qe.EdgeVectorParams(size=8, distance=qe.Distance.Cosine, hnsw_config=no_graph),
            TARGET: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
        },
        # the optimizer indexes every segment it touches (edge runs it only when asked: shard.optimize())
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1),
    )
    shard = qe.EdgeShard.create(str(path), config)
    rng = np.random.default_rng(0)
    source = rng.standard_normal((n, 8)).astype(np.float32)
    texts = _texts(n)
    for at in range(0, n, 1024):
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(i, {SOURCE: source[i].tolist()}, {"text": texts[i]})
                    for i in range(at, min(n, at + 1024))
                ]
            )
        )
    return shard


def _texts(n: int) -> list[str]:
    base = [d.text for d in python_docs()]
    return [f"{base[i % len(base)]} ({i // len(base)})" for i in range(n)]


def _store(shard: Any) -> Store:
    """The library's store over the shard, taking its server code paths (``tests/engines.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.engines import EdgeClient

    client: Any = EdgeClient(shard)  # just enough of a QdrantClient
    return open_store(client, retry=RetryPolicy(attempts=1))


def _read_rate(store: Store, flt: models.Filter, page: int) -> tuple[float, int]:
    """Points per second of the backfill's reader over ``flt``, and the points read."""
    read = 0
    started = time.perf_counter()
    for records in store.iter_points("c", flt=flt, page_size=page, with_payload=["text"]):
        read += len(records)
    return read / max(1e-9, time.perf_counter() - started), read


def measure_engine(args: argparse.Namespace) -> dict[str, Any]:
    """Write, indexing and read rates of Qdrant's engine in-process, one shard, the backfill's requests."""
    n, dim, batch = args.points, args.dim, args.batch_size
    plan = _plan(dim)
    strategy = strategy_for(plan)
    todo = strategy.todo()
    page = read_page_size(BackfillOptions(batch_size=batch))
    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
        shard = _shard(Path(tmp) / "shard", n, dim)
        try:
            store = _store(shard)
            sliced = models.Filter(
                must=[models.SliceCondition(slice=models.Slice(total=4, index=0))], must_not=todo.must_not
            )
            _read_rate(store, todo, page)  # warm up
            reads: dict[str, list[float]] = {"all": [], "slice": []}
            for _ in range(args.repeat):  # interleaved, median kept
                read_pps, read = _read_rate(store, todo, page)
                reads["all"].append(read_pps)
                slice_pps, slice_read = _read_rate(store, sliced, page)
                reads["slice"].append(slice_pps)
            read_pps, slice_pps = statistics.median(reads["all"]), statistics.median(reads["slice"])
            texts = _texts(n)
            rng = np.random.default_rng(1)
            written = 0
            started = time.perf_counter()
            for at in range(0, n, batch):
                ids = range(at, min(n, at + batch))
                vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                pending = {i: (texts[i], vectors[k]) for k, i in enumerate(ids)}
                written += len(strategy.write_target(store, pending))
            write_seconds = time.perf_counter() - started
            started = time.perf_counter()
            shard.optimize()  # builds the target vector's HNSW graph over every point
            index_seconds = time.perf_counter() - started
            indexed = int(shard.info().indexed_vectors_count)
        finally:
            shard.close()
    if written != n or read != n:
        raise SystemExit(f"the engine wrote {written} and read {read} of {n} points")
    return {
        "points": n,
        "dim": dim,
        "batch_size": batch,
        "write_pps": n / write_seconds,
        "index_pps": n / index_seconds,
        "indexed_vectors": indexed,
        "read_pps": read_pps,
        "slice_read_pps": slice_pps,
        "slice_points": slice_read,
    }


# --------------------------------------------------------------------------- the plan


def plan_rows(
    sizes: Sequence[int],
    workers: Sequence[int],
    *,
    embed_rate: float,
    write_rate: float,
    index_rate: float,
    read_rate: float,
    slice_read_rate: float,
    writers: int = BackfillOptions().writers,
    queue: int = UPDATE_QUEUE,
    shards: int = 1,
) -> list[dict[str, Any]]:
    """The plan (pure): for each size and worker count, the backfill's points per second and hours with and
    without slices, and the bound that sets each.

    Rates are points per second: ``embed_rate`` of one worker; ``write_rate``, ``index_rate`` and the read
    rates of one shard (multiplied by ``shards``). Without slices every worker reads every point still to
    do, so the reads bound at ``read_rate / workers``; with slices each point is read once.
    """
    rows = []
    for size in sizes:
        for count in workers:
            bounds_slices = {
                "embedding": count * embed_rate,
                "writes": write_rate * shards,
                "reads": slice_read_rate * shards,
            }
            bounds_all = {**bounds_slices, "reads": read_rate * shards / count}
            row: dict[str, Any] = {"points": size, "workers": count}
            for key, bounds in (("slices", bounds_slices), ("no_slices", bounds_all)):
                bound = min(bounds, key=lambda name: bounds[name])
                rate = bounds[bound]
                row[key] = {"pps": rate, "hours": size / rate / 3600, "bound": bound}
            row["index_hours"] = size / (index_rate * shards) / 3600
            row["in_flight"] = count * writers
            row["queue_full"] = count * writers > queue * shards
            rows.append(row)
    return rows


def _count(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == math.floor(value) else f"{value:.1f}{unit}"
    return f"{n:.0f}"


def _hours(h: float) -> str:
    return f"{h:.1f}" if h < 100 else f"{h:,.0f}"


def _print_plan(rows: Sequence[dict[str, Any]], queue: int) -> None:
    _out(
        f"{'points':>7} {'workers':>8} {'points/s':>9} {'hours':>8} {'bound':>10} "
        f"{'no slices: hours':>17} {'bound':>10} {'HNSW build h':>13} {'writes in flight':>17}"
    )
    for row in rows:
        s, a = row["slices"], row["no_slices"]
        full = f" > queue {queue}" if row["queue_full"] else ""
        _out(
            f"{_count(row['points']):>7} {row['workers']:>8} {s['pps']:>9,.0f} {_hours(s['hours']):>8} "
            f"{s['bound']:>10} {_hours(a['hours']):>17} {a['bound']:>10} {_hours(row['index_hours']):>13} "
            f"{row['in_flight']:>17}{full}"
        )


def main(argv: list[str] | None = None) -> int:
    """Measure the rates not given, print them and the plan (``--json PATH`` saves both)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=MINILM, help="sentence-transformers model")
    parser.add_argument(
        "--backends", nargs="*", help="embedding backends: torch, onnx (default: both, if installed)"
    )
    parser.add_argument("--cache-dir", help="ONNX export cache (default: the user's cache)")
    parser.add_argument("--texts", type=int, default=1000, help="corpus texts embedded per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="embedding measurements (median kept)")
    parser.add_argument("--points", type=int, default=20_000, help="points of the engine's shard")
    parser.add_argument("--dim", type=int, default=384, help="target vector size")
    parser.add_argument("--batch-size", type=int, default=BackfillOptions().batch_size)
    parser.add_argument(
        "--cores-per-worker", type=int, default=os.cpu_count() or 1, help="CPU cores of one worker"
    )
    parser.add_argument("--embed-rate", type=float, help="points/s of one worker (default: measured)")
    parser.add_argument("--write-rate", type=float, help="points/s one shard writes (default: measured)")
    parser.add_argument("--index-rate", type=float, help="points/s one shard indexes (default: measured)")
    parser.add_argument("--read-rate", type=float, help="points/s one shard scrolls (default: measured)")
    parser.add_argument("--slice-read-rate", type=float, help="the same, one slice's (default: measured)")
    parser.add_argument("--shards", type=int, default=1, help="shards of the collection (on separate cores)")
    parser.add_argument("--writers", type=int, default=BackfillOptions().writers, help="writers per worker")
    parser.add_argument("--queue", type=int, default=UPDATE_QUEUE, help="the server's update queue per shard")
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7, 1e8], help="points to backfill")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4, 16, 64], help="worker counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, Any] = {"embed": [], "engine": None}
    _out(f"lattice-qdrant capacity plan  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")

    embed_rate = args.embed_rate
    if embed_rate is None:
        if args.backends is None:
            args.backends = ["torch"] + (["onnx"] if _installed("onnxruntime") else [])
        _out(f"\nembedding: {args.model}, {args.texts} texts of the demo corpus, window calls (points/s)")
        _out(f"{'backend':>8} {'one thread':>11} {'all ' + str(os.cpu_count()) + ' cores':>12}")
        results["embed"] = measure_embed(args)
        for row in results["embed"]:
            one = f"{row['per_core_pps']:.1f}" + ("*" if row.get("per_core_estimated") else "")
            _out(f"{row['backend']:>8} {one:>11} {row['all_cores_pps']:>12.1f}")
        if any(row.get("per_core_estimated") for row in results["embed"]):
            _out("* all cores' rate divided by the cores (the thread count is not set for this backend)")
        best = results["embed"][0]  # the first backend listed (torch by default) sizes the plan
        # this machine's rate on all its cores, scaled to a worker's (cores share caches and memory: the
        # rate per core on one thread would overstate a worker of several)
        embed_rate = best["all_cores_pps"] * args.cores_per_worker / best["cores"]
        _out(
            f"one worker of {args.cores_per_worker} cores: {embed_rate:.1f} points/s "
            f"({best['backend']}, all {best['cores']} cores' rate scaled to the worker's)"
        )

    given = {
        "write_pps": args.write_rate,
        "index_pps": args.index_rate,
        "read_pps": args.read_rate,
        "slice_read_pps": args.slice_read_rate,
    }
    rates = dict(given)
    if any(value is None for value in given.values()):
        _out(
            f"\nQdrant's engine in-process (qdrant-edge, one shard): {args.points} points, "
            f"{args.dim}-d target, batches of {args.batch_size}, the backfill's requests (points/s)"
        )
        engine = measure_engine(args)
        results["engine"] = engine
        _out(
            f"write (conditional update, read-back, stamp) {engine['write_pps']:,.0f}   "
            f"HNSW build {engine['index_pps']:,.0f}   read {engine['read_pps']:,.0f}   "
            f"read one slice of 4 {engine['slice_read_pps']:,.0f}"
        )
        rates = {key: engine[key] if value is None else value for key, value in given.items()}

    rows = plan_rows(
        [int(size) for size in args.sizes],
        args.workers,
        embed_rate=embed_rate,
        write_rate=rates["write_pps"],
        index_rate=rates["index_pps"],
        read_rate=rates["read_pps"],
        slice_read_rate=rates["slice_read_pps"],
        writers=args.writers,
        queue=args.queue,
        shards=args.shards,
    )
    results["inputs"] = {"embed_pps_per_worker": embed_rate, **rates, "shards": args.shards}
    results["plan"] = rows
    _out(
        f"\nplan: one worker embeds {embed_rate:,.1f} points/s; {args.shards} shard(s) write "
        f"{rates['write_pps']:,.0f}, index {rates['index_pps']:,.0f}, read {rates['read_pps']:,.0f} "
        f"(a slice {rates['slice_read_pps']:,.0f}) points/s each"
    )
    _print_plan(rows, args.queue)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
