"""Backfill benchmark: ratios measured side by side in one run, on the same data (not a test).

``scripts/bench`` runs it. Four comparisons:

1. **Backfill vs the embedder alone**: points per second of ``run_backfill`` against the embedder's own
   ``encode`` on the same texts, called with the backfill's batch size (all-MiniLM-L6-v2 by default), and
   called with the backfill's embed window (the same grouping the backfill's embedder stage makes). The
   pipeline hides reading and writing behind embedding; the second ratio tells what the machinery costs.
2. **Backfill vs a naive loop** (scroll -> encode -> update_vectors, one batch after the other) on the same
   collection. At 0 ms both run on local mode as users run it (the embedded default). With
   ``--latency-ms`` they talk to a stand-in for a remote server, the same for both contenders: a store
   holding the collection's texts and "has the target vector" flags (``_SyntheticStore`` with
   ``remote``), whose requests each first spend that long on the network, concurrently, and are served
   one at a time (``lattice_qdrant.testing.DelayedStore``). The server's own work costs next to nothing
   there, as it runs on the server's machine; the client's share of each request (its body encoded as
   JSON from qdrant-client's models, the answer decoded into them, as the REST transport does) runs in the
   client's threads, as it would. Local mode behind the delay would run the server's work (its Python
   filters and writes) on the cores the model computes on, which a remote server does not.
3. **Forward passes** (a sentence-transformers model only): the embedder's fixed passes of ``batch_size``
   texts against its passes packed by tokens, on the same texts, in calls of a batch and of a window.
4. **Peak RSS for 20k vs 200k points** with the cheap hash embedder, each size in its own process, reading
   from a synthetic collection served by a store that holds no points (local mode keeps every point in the
   process's memory, which would measure Qdrant, not the backfill).
5. **Scale on local mode**: the backfill's rate with the hash embedder at 10k, 50k and 100k points of local
   mode, each run in its own process (sizes interleaved over the repetitions), and the time per point of the
   largest against the smallest: a pass must cost the collection's size, not its square. Also each run's
   peak RSS and the memory in use before it: local mode keeps the collection in the process, and the run
   adds the target vectors to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.response_parsing import parse_response
from qdrant_client.http.api.points_api import jsonable_encoder

from benchmarks.corpus import python_docs
from lattice_qdrant.backfill import BackfillOptions, run_backfill
from lattice_qdrant.client import wrap
from lattice_qdrant.embedders import MINILM, Embedder, HashEmbedder, SentenceTransformerEmbedder
from lattice_qdrant.spec import Distance
from lattice_qdrant.state import Start
from lattice_qdrant.store import Coverage, Store, VectorInfo, open_store
from lattice_qdrant.store.base import holding, lacking_vector, unchanged
from lattice_qdrant.store.server import named_vectors, write_then_stamp
from lattice_qdrant.testing import DelayedStore, StoreWrapper

__all__ = ["main"]

_T = TypeVar("_T")

SOURCE_DIM = 64
ROOT = Path(__file__).resolve().parent.parent


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _collection(texts: Sequence[str], name: str) -> QdrantClient:
    client = QdrantClient(":memory:")
    legacy = HashEmbedder(SOURCE_DIM, salt="bench")
    client.create_collection(
        name, vectors_config={"legacy": models.VectorParams(size=SOURCE_DIM, distance=models.Distance.COSINE)}
    )
    vectors = legacy.embed(list(texts))
    for start in range(0, len(texts), 512):
        client.upsert(
            name,
            [
                models.PointStruct(id=i, vector={"legacy": vectors[i].tolist()}, payload={"text": texts[i]})
                for i in range(start, min(len(texts), start + 512))
            ],
        )
    return client


def _planned(client: QdrantClient, store: Store, name: str, target: Embedder) -> Any:
    """The migration of ``name`` from the hash model's "legacy" vector to ``target``, planned."""
    lattice = wrap(client, embedders={"target": target}, refresh_interval=0, store=store)
    legacy = HashEmbedder(SOURCE_DIM, salt="bench")
    return lattice.plan(name, source=legacy.spec("legacy"), target=_spec(target), source_vector="legacy")


def _migrating(client: QdrantClient, store: Store, name: str, target: Embedder) -> Any:
    migration = _planned(client, store, name, target)
    migration.start()
    return migration


def _contender(
    texts: Sequence[str], embedder: Embedder, latency_ms: float
) -> tuple[QdrantClient, Store, Any]:
    """A fresh collection of ``texts`` for one contender, its store and a started migration.

    At 0 ms, local mode as users run it (the embedded default). With a latency, a stand-in for a remote
    server (:class:`_SyntheticStore` with ``remote``) behind :class:`~lattice_qdrant.testing.DelayedStore`:
    every request first spends that long on the network, concurrently, and is served one at a time. Local
    mode behind the delay would run the server's work (its Python filters over the collection) in the
    client's own process, on the cores the model computes on, which a remote server does not.
    """
    if not latency_ms:
        client = _collection(texts, "bench")
        store = open_store(client)
        return client, store, _migrating(client, store, "bench", embedder)
    stand_in = _SyntheticStore(len(texts), embedder.dimension, texts=texts, remote=True)
    delayed = DelayedStore(stand_in, latency_ms / 1000)
    migration = _planned(stand_in.control, delayed, "synthetic", embedder)
    migration.apply(Start(processed=0, total=len(texts)))  # nothing to prepare on the stand-in
    return stand_in.control, delayed, migration


def _spec(target: Embedder) -> Any:
    if isinstance(target, HashEmbedder | SentenceTransformerEmbedder):
        return target.spec("target")
    raise SystemExit(f"unsupported embedder {target!r}")


def _naive(store: Store, name: str, vector: str, embedder: Embedder, batch: int) -> int:
    """The loop people write first: scroll a page, encode it, write it, repeat."""
    done = 0
    offset = None
    flt = models.Filter(must_not=[models.HasVectorCondition(has_vector=vector)])
    while True:
        page, offset = store.scroll(name, flt=flt, limit=batch, offset=offset, with_payload=["text"])
        if page:
            vecs = embedder.embed([str((r.payload or {})["text"]) for r in page])
            store.update_vectors(
                name,
                [
                    models.PointVectors(id=r.id, vector={vector: v.tolist()})
                    for r, v in zip(page, vecs, strict=True)
                ],
            )
            done += len(page)
        if offset is None:
            return done


def _embed_rate(embedder: Embedder, texts: Sequence[str], step: int) -> float:
    """Points per second of the embedder alone, called ``step`` texts at a time."""
    started = time.perf_counter()
    for i in range(0, len(texts), step):
        embedder.embed(texts[i : i + step])
    return len(texts) / (time.perf_counter() - started)


def _throughput(args: argparse.Namespace, embedder: Embedder, label: str) -> dict[str, Any]:
    texts = [d.text for d in python_docs(args.points)]
    n = len(texts)
    embedder.embed(texts[:8])  # load and warm up
    rows: dict[str, list[float]] = {"encode": [], "window": [], "backfill": [], "naive": []}
    spans: list[float] = []  # the backfill's rate over its forward passes' span (report.embedding)
    fixed: list[float] = []  # and the seconds of its run outside that span
    for rep in range(args.repeat):
        order = ["encode", "window", "backfill", "naive"]
        for what in order if rep % 2 == 0 else order[::-1]:
            if what in ("encode", "window"):
                step = args.batch_size if what == "encode" else args.embed_window
                rows[what].append(_embed_rate(embedder, texts, step))
                continue
            client, store, migration = _contender(texts, embedder, args.latency_ms)
            vector = migration.plan.target_vector
            started = time.perf_counter()
            if what == "backfill":
                report = run_backfill(
                    migration,
                    embedder,
                    BackfillOptions(
                        batch_size=args.batch_size, writers=args.writers, embed_window=args.embed_window
                    ),
                )
                written = report.written
                spans.append(written / max(report.embedding, 1e-9))
                fixed.append(time.perf_counter() - started - report.embedding)
            else:
                written = _naive(store, migration.collection, vector, embedder, args.batch_size)
            rows[what].append(written / (time.perf_counter() - started))
            if written != n:
                raise SystemExit(f"{what} wrote {written} of {n} points")
            client.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    runs = {**rows, "passes": spans}

    def paired(a: str, b: str) -> float:
        """The median over the repetitions of each one's ``a / b``: the two runs of a repetition are
        next to each other in time, so the machine's drift over the benchmark cancels out."""
        return statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))

    return {
        "model": label,
        "points": n,
        "latency_ms": args.latency_ms,
        "encode_pps": med["encode"],
        "encode_window_pps": med["window"],
        "backfill_pps": med["backfill"],
        "naive_pps": med["naive"],
        "backfill_vs_encode": paired("backfill", "encode"),
        "backfill_vs_encode_window": paired("backfill", "window"),
        "backfill_passes_pps": statistics.median(spans),
        "passes_vs_encode_window": paired("passes", "window"),
        "fixed_seconds": statistics.median(fixed),
        "backfill_vs_naive": paired("backfill", "naive"),
        "runs": {**runs, "fixed": fixed},
    }


def _passes(args: argparse.Namespace, packed: SentenceTransformerEmbedder) -> list[dict[str, Any]]:
    """The embedder alone: fixed passes of ``batch_size`` texts against passes packed by tokens, on the
    same texts, in calls of the backfill's batch size and of its embed window."""
    texts = [d.text for d in python_docs(args.points)]
    fixed = SentenceTransformerEmbedder(packed.name, tokens_per_pass=None, batch_size=packed.batch_size)
    fixed.embed(texts[:8])  # load and warm up
    packed.embed(texts[:8])
    steps = (args.batch_size, args.embed_window)
    runs: dict[tuple[int, str], list[float]] = {}
    for rep in range(args.repeat):
        order = [(step, name) for step in steps for name in ("fixed", "packed")]
        for step, name in order if rep % 2 == 0 else order[::-1]:
            embedder = fixed if name == "fixed" else packed
            runs.setdefault((step, name), []).append(_embed_rate(embedder, texts, step))
    rows = []
    for step in steps:
        fixed_pps = statistics.median(runs[(step, "fixed")])
        packed_pps = statistics.median(runs[(step, "packed")])
        rows.append(
            {"call": step, "fixed_pps": fixed_pps, "packed_pps": packed_pps, "ratio": packed_pps / fixed_pps}
        )
    return rows


# --------------------------------------------------------------------------- memory


class _SyntheticStore(StoreWrapper):
    """A store serving one collection held on the "server" side, not in local mode.

    Its points are ids ``0 .. n - 1`` with a text each (``texts``, or made from the id on demand); the only
    other per-point state is one "has the target vector" flag, as a server would keep on its own side.
    Everything else (the control collection) goes to the wrapped store, local mode's over an empty
    client.

    With ``remote``, it stands in for a remote server as the throughput rows with a latency use it: the
    server's own work (filters, conditions, stamps) costs next to nothing here, as it runs on the server's
    machine, while the client's share of each request is paid in the calling thread as qdrant-client's
    REST transport pays it: the request's body encoded as JSON from qdrant-client's own models, the answer
    decoded from JSON into them. The server keeps each point written as the JSON the client sent, which is
    also the record a read-back answers with. Without ``remote`` (the memory benchmark), it keeps only the
    last few thousand vectors, and nothing is encoded.
    """

    def __init__(
        self, n: int, target_dim: int, *, texts: Sequence[str] | None = None, remote: bool = False
    ) -> None:
        self.control = QdrantClient(":memory:")
        super().__init__(open_store(self.control))
        self.n = n
        self.texts = texts
        self.remote = remote
        self.covered = np.zeros(n, dtype=bool)
        self.recent: dict[int, Any] = {}  # arrays, or with ``remote`` the JSON of each vector
        self.target_dim = target_dim
        self.words = [
            "vector",
            "search",
            "migration",
            "embedding",
            "model",
            "qdrant",
            "point",
            "batch",
            "coverage",
            "writer",
        ]

    def _is_data(self, name: str) -> bool:
        return name == "synthetic"

    def text(self, i: int) -> str:
        if self.texts is not None:
            return self.texts[i]
        w = self.words
        return f"point {i}: " + " ".join(w[(i * k) % len(w)] for k in range(1, 24))

    def collection_exists(self, collection: str) -> bool:
        return True if self._is_data(collection) else super().collection_exists(collection)

    def vectors(self, collection: str) -> dict[str, VectorInfo]:
        if not self._is_data(collection):
            return super().vectors(collection)
        return {
            "legacy": VectorInfo("legacy", SOURCE_DIM, Distance.COSINE),
            "target-v1": VectorInfo("target-v1", self.target_dim, Distance.COSINE),
        }

    def check_in_place(self, collection: str, source_vector: str) -> VectorInfo:
        return self.vectors(collection)[source_vector]

    def payload_schema(self, collection: str) -> dict[str, str]:
        return {} if self._is_data(collection) else super().payload_schema(collection)

    def ensure_payload_indexes(
        self, collection: str, indexes: dict[str, models.PayloadSchemaType] | None = None
    ) -> list[str]:
        return [] if self._is_data(collection) else super().ensure_payload_indexes(collection, indexes)

    def count(self, collection: str, flt: models.Filter | None = None) -> int:
        if not self._is_data(collection):
            return super().count(collection, flt)
        return self.n if flt is None else self.n - int(self.covered.sum())  # the backfill's only filter

    def coverage(self, collection: str, vector: str) -> Coverage:
        if not self._is_data(collection):
            return super().coverage(collection, vector)
        return Coverage(covered=int(self.covered.sum()), total=self.n)

    def scroll(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        limit: int = 256,
        offset: Any = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> tuple[list[models.Record], Any]:
        """The points lacking the target vector from ``offset`` on (the backfill's and the naive loop's
        only filter)."""
        if not self._is_data(collection):
            return super().scroll(
                collection,
                flt=flt,
                limit=limit,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
        start = int(offset or 0)
        todo = np.flatnonzero(~self.covered[start:])[: limit + 1] + start
        following = int(todo[limit]) if len(todo) > limit else None
        if not self.remote:
            page = [models.Record(id=int(i), payload={"text": self.text(int(i))}) for i in todo[:limit]]
            return page, following
        self._sent(
            models.ScrollRequest(filter=flt, limit=limit, offset=offset, with_payload=_selector(with_payload))
        )
        points = [{"id": int(i), "payload": {"text": self.text(int(i))}} for i in todo[:limit]]
        answer = json.dumps({"points": points, "next_page_offset": following})
        result = _decoded(answer, models.ScrollResult)  # the client decodes the answer
        return result.points, result.next_page_offset

    def _sent(self, *body: Any) -> list[str]:
        """The client's share of sending ``body`` (qdrant-client's models): each encoded as JSON, as its
        REST transport encodes a request's body."""
        return [str(jsonable_encoder(part)) for part in body]

    def _sent_points(self, points: Sequence[models.PointVectors]) -> dict[int, str]:
        """The client's share of sending ``points``: each encoded as JSON, which the server keeps as it is
        (the JSON of a point and its vector is also that of the record a read-back answers with)."""
        return dict(zip((int(p.id) for p in points), self._sent(*points), strict=True))

    def _hold(self, pid: int, vector: Any, encoded: str | None = None) -> None:
        self.covered[pid] = True
        if encoded is not None:
            self.recent[pid] = encoded
            return
        # the last few thousand vectors only, for the writer's read-back (a server keeps them all)
        self.recent[pid] = np.asarray(vector, dtype=np.float32)
        if len(self.recent) > 2048:
            self.recent.pop(next(iter(self.recent)))

    def update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Mapping[str, Any]]],
        *,
        lacking: str | None = None,
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        """The server's conditional write (with the stamp in the same request): a point is written
        while it holds its text and lacks the vector."""
        if not self._is_data(collection):
            return super().update_if_unchanged(collection, text_field, pending, lacking=lacking, stamp=stamp)
        encoded: dict[int, str] = {}
        if self.remote:  # the request a server's store sends: one batch of the write and the stamp
            ids = list(pending)
            condition = unchanged(text_field, pending, ids, lacking_vector(lacking))
            encoded = self._sent_points(named_vectors(pending, ids))  # the points, each kept as sent
            names = sorted({name for pid in ids for name in pending[pid][1]})
            operations = write_then_stamp([], condition, stamp, holding(ids, names))
            self._sent(models.UpdateOperations(operations=operations))  # the rest of the request
        for pid, (text, vectors) in pending.items():
            i = int(pid)
            if (lacking is None or not self.covered[i]) and text == self.text(i):
                self._hold(i, vectors["target-v1"], encoded.get(i))
        return list(pending)

    def update_vectors(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """An unconditional write (the naive loop's)."""
        if not self._is_data(collection):
            return super().update_vectors(collection, points, update_filter=update_filter, **kwargs)
        encoded = self._sent_points(points) if self.remote else {}
        for point in points:
            self._hold(int(point.id), _target_of(point), encoded.get(int(point.id)))
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def retrieve(
        self,
        collection: str,
        ids: Sequence[Any],
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> list[models.Record]:
        if not self._is_data(collection):
            return super().retrieve(collection, ids, with_payload=with_payload, with_vectors=with_vectors)
        if not self.remote:
            return [
                models.Record(id=i, vector=self._stored(int(i)) if self.covered[int(i)] else {}) for i in ids
            ]
        self._sent(
            models.PointRequest(
                ids=list(ids), with_payload=_selector(with_payload), with_vector=_selector(with_vectors)
            )
        )
        parts = [
            self.recent[int(i)] if self.covered[int(i)] else f'{{"id": {int(i)}, "vector": {{}}}}'
            for i in ids
        ]
        return _decoded("[" + ", ".join(parts) + "]", list[models.Record])  # the client decodes the answer

    def _stored(self, i: int) -> dict[str, Any]:
        found = self.recent.get(i)
        return {"target-v1": found.tolist() if found is not None else [0.0]}

    def set_payload(
        self, collection: str, payload: dict[str, Any], points: models.Filter | Sequence[Any]
    ) -> models.UpdateResult:
        if not self._is_data(collection):
            return super().set_payload(collection, payload, points)
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


def _target_of(point: models.PointVectors) -> Any:
    """The target vector a write of the benchmark carries."""
    if not isinstance(point.vector, dict):
        raise SystemExit(f"a write without the target vector: {point!r}")
    return point.vector["target-v1"]


def _selector(chosen: bool | Sequence[str]) -> bool | list[str]:
    """A payload or vector selector as qdrant-client's models take it."""
    return chosen if isinstance(chosen, bool) else list(chosen)


def _decoded(answer: str, kind: type[_T]) -> _T:
    """``answer`` (JSON) decoded into ``kind`` by qdrant-client's own REST response parser (which trusts
    a server's answer: vectors and payloads are kept as the JSON decoder built them, not validated value by
    value)."""
    return parse_response(answer.encode(), kind)


def _peak_kib() -> int:
    """Peak resident memory of this process in KiB.

    Linux's ``VmHWM`` starts afresh at ``exec``; ``ru_maxrss`` would carry the parent's peak into a child
    (the parent of this benchmark has loaded the real model).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rss_kib() -> int:
    """Resident memory of this process now, in KiB (0 where ``/proc`` does not say)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Start the peak (``VmHWM``) afresh from the memory in use now (Linux); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_child(n: int) -> None:
    """Run one backfill of ``n`` synthetic points and print the peak RSS (run in a fresh process)."""
    embedder = HashEmbedder(384, salt="bench")
    store = _SyntheticStore(n, embedder.dimension)
    lattice = wrap(store.control, refresh_interval=0, store=store)
    legacy = HashEmbedder(SOURCE_DIM, salt="bench")
    migration = lattice.plan(
        "synthetic", source=legacy.spec("legacy"), target=embedder.spec("target"), source_vector="legacy"
    )
    migration.apply(Start(processed=0, total=n))
    before = _peak_kib()
    started = time.perf_counter()
    report = run_backfill(migration, embedder, BackfillOptions(batch_size=256, writers=2))
    elapsed = time.perf_counter() - started
    peak = _peak_kib()
    if report.written != n:
        raise SystemExit(f"wrote {report.written} of {n}")
    _out(json.dumps({"points": n, "peak_kib": peak, "before_kib": before, "seconds": elapsed}))


def _child(flag: str, n: int) -> dict[str, Any]:
    """Run this module with ``flag n`` in a fresh process; its last line of output, as JSON."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.backfill", flag, str(n)],
        cwd=ROOT,  # where ``benchmarks`` imports from, whatever the caller's directory
        check=True,
        capture_output=True,
        text=True,
    )
    row: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return row


def _rss(sizes: Sequence[int]) -> list[dict[str, Any]]:
    return [_child("--rss-child", n) for n in sizes]


def _scale_texts(n: int) -> list[str]:
    """``n`` distinct texts of the corpus's lengths (its paragraphs, numbered as they repeat)."""
    base = [d.text for d in python_docs()]
    return [f"{base[i % len(base)]} ({i // len(base)})" for i in range(n)]


def _scale_child(n: int) -> None:
    """Backfill ``n`` points of local mode with the hash embedder and print its rate (a fresh process)."""
    texts = _scale_texts(n)
    client = _collection(texts, "bench")
    embedder = HashEmbedder(384)
    migration = _migrating(client, open_store(client), "bench", embedder)
    # the peak of the run itself, not of filling the collection (where /proc allows)
    before = _rss_kib() if _reset_peak() else _peak_kib()
    started = time.perf_counter()
    report = run_backfill(migration, embedder, BackfillOptions())
    elapsed = time.perf_counter() - started
    if report.written != n:
        raise SystemExit(f"wrote {report.written} of {n}")
    _out(json.dumps({"points": n, "seconds": elapsed, "peak_kib": _peak_kib(), "before_kib": before}))


def _scale(sizes: Sequence[int], repeat: int) -> list[dict[str, Any]]:
    """One row per size: the median seconds of ``repeat`` runs (sizes interleaved), rate, time per point."""
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for rep in range(repeat):
        for n in sizes if rep % 2 == 0 else sizes[::-1]:
            runs[n].append(_child("--scale-child", n))
    rows = []
    for n in sizes:
        seconds = statistics.median(r["seconds"] for r in runs[n])
        rows.append(
            {
                "points": n,
                "seconds": seconds,
                "points_per_second": n / seconds,
                "us_per_point": seconds / n * 1e6,
                "peak_kib": max(r["peak_kib"] for r in runs[n]),
                "before_kib": max(r["before_kib"] for r in runs[n]),
            }
        )
    return rows


def _scale_table(sizes: Sequence[int], repeat: int) -> tuple[list[dict[str, Any]], float | None]:
    """Print and return the scale rows, and the time per point of the largest size over the smallest."""
    _out(
        "\nscale on local mode: backfill with the hash embedder (384-d), the library's defaults, each run "
        f"in its own process, median of {repeat} interleaved runs"
    )
    _out(f"{'points':>9} {'seconds':>8} {'points/s':>9} {'us/point':>9} {'peak RSS':>10} {'before':>10}")
    rows = _scale(sizes, repeat)
    for row in rows:
        _out(
            f"{row['points']:>9} {row['seconds']:>8.2f} {row['points_per_second']:>9.0f} "
            f"{row['us_per_point']:>9.1f} {row['peak_kib'] / 1024:>6.1f} MiB "
            f"{row['before_kib'] / 1024:>6.1f} MiB"
        )
    if len(rows) < 2:
        return rows, None
    ratio = float(rows[-1]["us_per_point"] / rows[0]["us_per_point"])
    _out(f"time per point {rows[-1]['points']} / {rows[0]['points']} points: {ratio:.2f}x")
    return rows, ratio


def _throughput_table(args: argparse.Namespace, embedder: Embedder, label: str) -> list[dict[str, Any]]:
    """Print and return one throughput row per latency."""
    _out(
        f"\nthroughput: {args.points} documents of Python's documentation, batch {args.batch_size}, "
        f"embed window {args.embed_window}, {args.writers} writers, {label}, "
        f"median of {args.repeat} interleaved runs (points/s; each ratio the median of the repetitions' own)"
    )
    _out(
        f"{'latency/request':>16} {'encode':>9} {'encode/window':>14} {'backfill':>9} {'naive':>9} "
        f"{'backfill/encode':>16} {'backfill/encode-window':>23} {'backfill/naive':>15} "
        f"{'passes/encode-window':>21} {'fixed s':>8}"
    )
    rows = []
    for latency in args.latency_ms:
        row = _throughput(argparse.Namespace(**{**vars(args), "latency_ms": latency}), embedder, label)
        rows.append(row)
        _out(
            f"{latency:>14.0f}ms {row['encode_pps']:>9.1f} {row['encode_window_pps']:>14.1f} "
            f"{row['backfill_pps']:>9.1f} {row['naive_pps']:>9.1f} "
            f"{row['backfill_vs_encode']:>15.2f}x {row['backfill_vs_encode_window']:>22.2f}x "
            f"{row['backfill_vs_naive']:>14.2f}x {row['passes_vs_encode_window']:>20.2f}x "
            f"{row['fixed_seconds']:>8.2f}"
        )
    if any(args.latency_ms):
        _out(
            "with a latency: a stand-in for a remote server (the server's work off this machine's cores, the "
            "client's JSON encoding of each request and decoding of each answer on them), every request that "
            "long on the network; at 0 ms: local mode, in this process"
        )
    _out(
        "passes/encode-window: the backfill's rate over the span of its forward passes (first pass start to "
        "last pass end) against encode/window, i.e. the pipeline's cost while it runs; fixed s: the seconds "
        "of the run outside that span (its first reads; its last batch's writes, the final count and the "
        "state record), a cost per run, not per point"
    )
    return rows


def _passes_table(args: argparse.Namespace, embedder: SentenceTransformerEmbedder) -> list[dict[str, Any]]:
    """Print and return the forward-pass comparison."""
    _out(
        f"\nforward passes of {embedder.name}: fixed passes of {embedder.batch_size} texts vs packed by "
        f"tokens ({embedder.tokens_per_pass} padded tokens per pass), same texts, "
        f"median of {args.repeat} interleaved runs (points/s)"
    )
    _out(f"{'texts per call':>16} {'fixed':>9} {'packed':>9} {'packed/fixed':>13}")
    rows = _passes(args, embedder)
    for row in rows:
        _out(f"{row['call']:>16} {row['fixed_pps']:>9.1f} {row['packed_pps']:>9.1f} {row['ratio']:>12.2f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the ratios (``--json PATH`` saves them)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=2000, help="documents for the throughput runs")
    parser.add_argument("--model", default=MINILM, help="sentence-transformers model, or 'hash'")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--writers", type=int, default=BackfillOptions().writers)
    parser.add_argument(
        "--embed-window", type=int, default=BackfillOptions().embed_window, help="the backfill's embed window"
    )
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (median kept)")
    parser.add_argument("--latency-ms", type=float, nargs="*", default=[0.0, 20.0, 50.0])
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument(
        "--scale-sizes", type=int, nargs="*", default=[10_000, 50_000, 100_000], help="points of local mode"
    )
    parser.add_argument("--scale-repeat", type=int, default=5, help="interleaved runs of each scale size")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child)
        return 0
    if args.scale_child:
        _scale_child(args.scale_child)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, Any] = {"throughput": [], "rss": [], "scale": []}
    _out(f"lattice-qdrant backfill benchmark  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")
    if not args.skip_throughput:
        models_run = [args.model] if args.model == "hash" else [args.model, "hash"]
        for model in models_run:
            embedder: Embedder = HashEmbedder(384) if model == "hash" else SentenceTransformerEmbedder(model)
            label = "hash:bow (384-d), the cheap embedder" if model == "hash" else model
            if args.latency_ms:
                results["throughput"] += _throughput_table(args, embedder, label)
            if isinstance(embedder, SentenceTransformerEmbedder):
                results["passes"] = _passes_table(args, embedder)
    if args.rss_sizes:
        _out("\npeak RSS of a backfill (hash embedder, 384-d, batch 256; synthetic server-side collection)")
        rows = _rss(args.rss_sizes)
        results["rss"] = rows
        for row in rows:
            _out(
                f"{row['points']:>9} points: peak {row['peak_kib'] / 1024:7.1f} MiB "
                f"(before the run {row['before_kib'] / 1024:.1f} MiB), {row['seconds']:.1f}s"
            )
        if len(rows) >= 2:
            ratio = rows[-1]["peak_kib"] / rows[0]["peak_kib"]
            results["rss_ratio"] = ratio
            _out(f"peak RSS {rows[-1]['points']} / {rows[0]['points']} points: {ratio:.2f}x")
    if args.scale_sizes:
        results["scale"], results["scale_ratio"] = _scale_table(args.scale_sizes, args.scale_repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
