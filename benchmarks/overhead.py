"""Benchmark what the wrapper adds: the raw client and ``lattice_qdrant.wrap`` of it, side by side in one run.

Run it as ``scripts/bench overhead`` (or ``python -m benchmarks.overhead``); it is a measurement, not a test.
Each migration state gets a collection of its own in one local-mode client (``QdrantClient(":memory:")``, and
``AsyncQdrantClient(":memory:")`` for the async twin), of ``--points`` points with their vectors given (the
hash embedders only size the models: nothing is embedded while measuring). For each state it times

* a vector query: ``query_points(collection, query=<vector>, limit=10)`` through the wrapper, against the
  raw client's ``query_points`` with the ``using`` (and vector) the routing picks, given by hand;
* an upsert of ``--batches`` points (1 and 64 by default) whose vectors are all given (a dict of the named
  vectors the routing writes), against the raw client's upsert of **the points the wrapper writes**: the same
  named vectors and payload, with the ``embedding_model_id`` / ``embedding_version`` stamp the wrapper adds.

So the overhead is what the wrapper costs over doing the same work by hand. A dual-write writes both models'
vectors, which Qdrant has to store whoever sends them: the raw baseline writes both as well, and the
difference is the wrapper's routing, validation and stamping, less what it saves: with a migration the wrapper
hands the points it built from vectors it validated to qdrant-client's transport directly, while
``QdrantClient.upsert`` first scans every value of every vector for objects to embed (``models.Document`` and
the like), as the raw side's call does. So the split of the upserts' overhead below also prints the wrapper's
**own work** per point (the overhead plus that scan, measured on the same points). The states are: no
migration on the collection (the wrapper passes the call through), migrating with dual-write and queries
routed to the source, migrating with queries routed to the target (a ``query_threshold`` the coverage has met:
the routing reads the coverage, cached for ``refresh_interval``), after cutover (rollback window: dual-write,
queries on the target) and finalized (writes and queries on the target only). The wrapper runs with its
defaults: the migration record is read again every ``refresh_interval`` (2 s), as in production.

Repetitions of raw and wrapped are interleaved (alternating which goes first) so that drift in the machine's
load hits both alike; each sample loops enough calls to last ``--sample-ms``. The raw and wrapped columns are
the medians of each side's samples; the overhead is the median of the differences of the two samples of each
repetition (taken back to back, so a burst of load elsewhere falls mostly into one repetition), per query, and
per point for the upserts. It is checked against the targets: at most 50 µs per query and 15 µs per point
written. An upsert of one point pays the routing of the call as well as of the point: the upserts' overhead
is also split into a cost per call and one per point, through the smallest and largest batch. numpy's BLAS
runs on one thread (``--blas-threads``), since its threads made the raw searches slow and erratic on a busy
machine; ``--clock cpu`` times the process's CPU time instead of wall time (steadier there, but blind to
the waiting of a hand-over between threads).

Every call is measured twice (the ``against`` column): against local mode, as above, then against a client
that answers the benchmark collection's queries and upserts at once (no search, nothing written; the control
records are served as before), on both sides alike. A local-mode query takes a millisecond or more and moves
by tens of µs from sample to sample on a shared machine, which hides a difference of a few µs; against the
instant client the raw side costs only qdrant-client's own work before it hands a request over (tens of
µs, which both sides pay), so the difference is the wrapper's own time (its routing, validation and
stamping), steady to a few µs. The first tells that the wrapper does not make Qdrant's
work slower (it sends the same request); the second, what it adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http import models as rest

import lattice_qdrant as lq
from benchmarks.threads import blas_limit
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD

__all__ = ["AGAINST", "POINT_TARGET_US", "QUERY_TARGET_US", "STATES", "Row", "main", "run", "split_upserts"]

#: the targets: what the wrapper may add to a query, and to each point of an upsert
QUERY_TARGET_US = 50.0
POINT_TARGET_US = 15.0

#: migration states measured, in order, with how the table names them
STATES: dict[str, str] = {
    "none": "no migration",
    "source": "migrating, queries on source",
    "target": "migrating, queries on target",
    "cutover": "after cutover",
    "finalized": "finalized",
}

SOURCE, TARGET = "source", "target"  # the vector names in every benchmark collection

#: what answers the calls: local mode (the raw client as users run it), then a client that answers at once
#: (the difference is then the wrapper's own time, which local mode's run-to-run noise hides)
AGAINST = ("local", "instant")


@dataclass(frozen=True)
class Row:
    """One measured call; times are microseconds per call (medians), ``overhead_us`` per ``unit``."""

    api: str
    state: str
    call: str
    batch: int
    raw_us: float
    wrapped_us: float
    overhead_us: float
    unit: str
    target_us: float
    ok: bool
    against: str = "local"  # "local": local mode answers; "instant": a client that answers at once
    scan_us: float = (
        0.0  # upserts: qdrant-client's scan of the written points for objects to embed, per point
    )


@dataclass(frozen=True)
class _Case:
    """One state's collection, what the routing makes of it, and the calls that measure it."""

    state: str
    collection: str
    query_vector: str  # the vector the routing queries (given to the raw client as ``using``)
    write_roles: tuple[str, ...]  # the vector names a write carries
    stamp: dict[str, Any]  # the stamp the wrapper writes ({} without a migration)
    using: str | None = None  # the ``using`` the wrapper is given (without a migration, the caller's)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the raw client and the wrapper side by side, and print the overhead per query and per point.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit code (0; the table says which targets were missed).
    """
    parser = argparse.ArgumentParser(
        prog="scripts/bench overhead", description=(main.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--points", type=int, default=1000, help="points per collection (default 1000)")
    parser.add_argument(
        "--dims", type=int, nargs=2, default=(384, 768), metavar=("SOURCE", "TARGET"), help="dimensions"
    )
    parser.add_argument(
        "--batches", type=int, nargs="*", default=[1, 64], help="points per upsert (default 1 64)"
    )
    parser.add_argument(
        "--states", nargs="*", choices=list(STATES), default=list(STATES), help="states to measure (all)"
    )
    parser.add_argument("--reps", type=int, default=41, help="samples of each side (default 41)")
    parser.add_argument("--sample-ms", type=float, default=5.0, help="length of a sample (default 5 ms)")
    parser.add_argument("--no-sync", action="store_true", help="skip the sync client")
    parser.add_argument("--no-async", action="store_true", help="skip the async twin")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the vectors")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time (default), or the process's CPU time: steadier on a machine others load, but blind "
        "to waiting (the async twin's hand-over to its worker thread)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="numpy's BLAS threads (default 1: local mode's searches then cost the same on a busy machine)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)

    apis = [api for api, skip in (("sync", args.no_sync), ("async", args.no_async)) if not skip]
    _write(
        f"wrapper overhead on local mode, qdrant-client {metadata.version('qdrant-client')}, "
        f"python {platform.python_version()}: {args.points} points per collection, "
        f"vectors of {args.dims[0]} (source) and {args.dims[1]} (target) dimensions"
    )
    with blas_limit(args.blas_threads) as blas:
        _write(
            f"medians of {args.reps} interleaved samples of {args.sample_ms:g} ms each ({args.clock} time); "
            f"BLAS threads: {blas}"
        )
        _write(_format_row(None))
        rows = run(
            apis=apis,
            states=args.states,
            points=args.points,
            dims=(args.dims[0], args.dims[1]),
            batches=args.batches,
            reps=args.reps,
            sample_seconds=args.sample_ms / 1e3,
            seed=args.seed,
            clock=time.process_time if args.clock == "cpu" else time.perf_counter,
            on_row=lambda row: _write(_format_row(row)),
        )
    _write("overhead = median over the repetitions of wrapped - raw, per query or per point written.")
    _write(
        "raw does the same work by hand: the same using, the same vectors and stamp (a dual-write's raw "
        "upsert writes both vectors too)."
    )
    _write(
        "against local: local mode answers both sides; against instant: a client that answers at once (no "
        "search, no write), so the difference is the wrapper's own time."
    )
    for against in dict.fromkeys(row.against for row in rows):
        measured = [row for row in rows if row.against == against]
        lost = [row for row in measured if not row.ok]
        _write(
            f"targets ({against}): {QUERY_TARGET_US:g} µs per query, {POINT_TARGET_US:g} µs per point: "
            + ("all met" if not lost else f"{len(lost)} of {len(measured)} missed")
        )
    missed = [row for row in rows if not row.ok]
    if missed:
        _write(
            "  what a miss is made of: the routing of a call in Python (see the split below) and one pass "
            "over each vector given (sum(), in C, a few ns a value: a dual-written point has both vectors); "
            "rows whose raw call takes a millisecond or more vary by tens of µs from run to run on a busy "
            "machine (compare runs, or --clock cpu)"
        )
    splits = split_upserts(rows)
    if splits:
        small, large = min(args.batches), max(args.batches)
        _write(
            f"an upsert's overhead as a cost per call plus one per point (from the x{small} and x{large} "
            "rows; an upsert of one point pays both):"
        )
        for found in splits:
            _write(
                f"  {found['api']:<5} {found['against']:<8} {STATES[found['state']]:<28} "
                f"{found['per_call_us']:7.1f} µs per call + {found['per_point_us']:5.1f} µs per point; "
                f"own work {found['own_per_point_us']:5.1f} µs per point"
            )
        _write(
            "  own work: the wrapper's per point, without what it saves: with a migration it hands the "
            "points it built (vectors it validated) to qdrant-client's transport, skipping qdrant-client's "
            "scan of every value for objects to embed, which the raw side pays (measured on the same points: "
            + ", ".join(
                f"{STATES[found['state']]} {found['scan_us']:.1f} µs"
                for found in splits
                if found["api"] == splits[0]["api"]
                and found["against"] == splits[0]["against"]
                and found["state"] != "none"
            )
            + " per point)"
        )
    if args.json is not None:
        payload = {
            "points": args.points,
            "dims": list(args.dims),
            "reps": args.reps,
            "rows": [asdict(row) for row in rows],
            "upserts": splits,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        _write(f"wrote {args.json}")
    return 0


def split_upserts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Each (api, state)'s upsert overhead as ``per_call_us + per_point_us * points``, fitted through its
    smallest and largest batch (nothing for a state measured with one batch size)."""
    found: list[dict[str, Any]] = []
    keys = dict.fromkeys((row.api, row.state, row.against) for row in rows if row.call == "upsert")
    for api, state, against in keys:
        upserts = sorted(
            (
                row
                for row in rows
                if (row.api, row.state, row.against, row.call) == (api, state, against, "upsert")
            ),
            key=lambda row: row.batch,
        )
        small, large = upserts[0], upserts[-1]
        if small.batch == large.batch:
            continue
        total_small, total_large = small.overhead_us * small.batch, large.overhead_us * large.batch
        per_point = (total_large - total_small) / (large.batch - small.batch)
        found.append(
            {
                "api": api,
                "state": state,
                "against": against,
                "per_call_us": total_small - per_point * small.batch,
                "per_point_us": per_point,
                "scan_us": large.scan_us,
                "own_per_point_us": per_point + large.scan_us if state != "none" else per_point,
            }
        )
    return found


def run(
    *,
    apis: Sequence[str] = ("sync", "async"),
    states: Sequence[str] = tuple(STATES),
    points: int = 1000,
    dims: tuple[int, int] = (384, 768),
    batches: Sequence[int] = (1, 64),
    reps: int = 41,
    sample_seconds: float = 0.005,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Measure every (api, state, call) and return the rows (``on_row`` sees each as soon as it is measured).

    Args:
        apis: ``"sync"`` (``QdrantClient``) and/or ``"async"`` (``AsyncQdrantClient``).
        states: keys of :data:`STATES`.
        points: points per collection.
        dims: the source and target models' dimensions.
        batches: points per measured upsert.
        reps: samples of each side; the median is reported.
        sample_seconds: a sample loops calls until it lasts about this long.
        seed: random seed.
        clock: what a sample is timed with.
        on_row: called with each row as it is measured.
    """
    rows: list[Row] = []

    def keep(row: Row) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    for api in apis:
        rng = np.random.default_rng(seed)
        if api == "sync":
            _run_sync(states, points, dims, batches, reps, sample_seconds, clock, rng, keep)
        else:
            asyncio.run(_run_async(states, points, dims, batches, reps, sample_seconds, clock, rng, keep))
    return rows


# -- setting up ---------------------------------------------------------------------------------------------


def _embedders(dims: tuple[int, int]) -> tuple[dict[str, HashEmbedder], lq.ModelSpec, lq.ModelSpec]:
    legacy, modern = HashEmbedder(dims[0], salt="legacy"), HashEmbedder(dims[1], salt="modern")
    return {"legacy": legacy, "modern": modern}, legacy.spec("legacy", 1), modern.spec("modern", 1)


def _setup(
    client: Any, lattice: lq.LatticeClient, state: str, points: int, dims: tuple[int, int], rng: Any
) -> _Case:
    """A collection of ``points`` points brought to ``state`` through ``lattice`` (sync calls; ``client`` is
    the raw client, or the sync face of the async one)."""
    _, source_spec, target_spec = _embedders(dims)
    collection = f"bench_{state}"
    client.create_collection(
        collection,
        vectors_config={SOURCE: models.VectorParams(size=dims[0], distance=models.Distance.COSINE)},
    )
    vectors = rng.standard_normal((points, dims[0])).astype(np.float32)
    for at in range(0, points, 256):
        client.upsert(
            collection,
            [
                models.PointStruct(id=i, vector={SOURCE: vectors[i].tolist()}, payload={"text": f"note {i}"})
                for i in range(at, min(points, at + 256))
            ],
        )
    if state == "none":
        return _Case(state, collection, SOURCE, (SOURCE,), {}, using=SOURCE)
    options: dict[str, Any] = {"query_threshold": 0.5} if state == "target" else {}
    migration = lattice.plan(
        collection,
        source=source_spec,
        target=target_spec,
        source_vector=SOURCE,
        target_vector=TARGET,
        query_mode="routed",
        **options,
    )
    migration.start()
    stamp = {MODEL_FIELD: target_spec.model_id, VERSION_FIELD: target_spec.version}
    targets = rng.standard_normal((points, dims[1])).astype(np.float32)
    for at in range(0, points, 256):  # every point holds the target model, as the backfill leaves it
        page = range(at, min(points, at + 256))
        client.update_vectors(
            collection, [models.PointVectors(id=i, vector={TARGET: targets[i].tolist()}) for i in page]
        )
        client.set_payload(collection, stamp, points=list(page))
    migration.progress()
    if state in ("cutover", "finalized"):
        migration.cutover(force=True)
    if state == "finalized":
        migration.finalize(force=True)
        return _Case(state, collection, TARGET, (TARGET,), stamp)
    return _Case(state, collection, TARGET if state != "source" else SOURCE, (SOURCE, TARGET), stamp)


def _workload(
    case: _Case, dims: tuple[int, int], batch: int, rng: Any
) -> tuple[list[models.PointStruct], list[models.PointStruct]]:
    """An upsert of ``batch`` existing points: what the caller gives the wrapper, and what the wrapper writes
    (the raw baseline)."""
    size = {SOURCE: dims[0], TARGET: dims[1]}
    given, written = [], []
    for i in range(batch):
        vector = {
            name: rng.standard_normal(size[name]).astype(np.float32).tolist() for name in case.write_roles
        }
        payload = {"text": f"note {i}"}
        given.append(models.PointStruct(id=i, vector=vector, payload=payload))
        written.append(models.PointStruct(id=i, vector=vector, payload={**payload, **case.stamp}))
    return given, written


def _query(case: _Case, dims: tuple[int, int], rng: Any) -> list[float]:
    size = dims[1] if case.query_vector == TARGET else dims[0]
    return [float(x) for x in rng.standard_normal(size)]


def _run_sync(
    states: Sequence[str],
    points: int,
    dims: tuple[int, int],
    batches: Sequence[int],
    reps: int,
    sample_seconds: float,
    clock: Callable[[], float],
    rng: Any,
    keep: Callable[[Row], None],
) -> None:
    client = QdrantClient(":memory:")
    embedders, _, _ = _embedders(dims)
    lattice = lq.wrap(client, embedders=embedders, load_embedders=False)
    for state in states:
        case = _setup(client, lattice, state, points, dims, rng)
        query = _query(case, dims, rng)

        def raw_query(case: _Case = case, query: list[float] = query) -> Any:
            return client.query_points(case.collection, query=query, using=case.query_vector, limit=10)

        def wrapped_query(case: _Case = case, query: list[float] = query) -> Any:
            return lattice.query_points(case.collection, query=query, using=case.using, limit=10)

        workloads = {batch: _workload(case, dims, batch, rng) for batch in batches}
        for against in AGAINST:
            with _instant(client, case.collection) if against == "instant" else contextlib.nullcontext():
                times = _race(raw_query, wrapped_query, reps, sample_seconds, clock)
                keep(_row("sync", state, "query_points", 1, times, against))
                for batch, (given, written) in workloads.items():

                    def raw_upsert(case: _Case = case, written: list[models.PointStruct] = written) -> Any:
                        return client.upsert(case.collection, written)

                    def wrapped_upsert(case: _Case = case, given: list[models.PointStruct] = given) -> Any:
                        return lattice.upsert(case.collection, given)

                    times = _race(raw_upsert, wrapped_upsert, reps, sample_seconds, clock)
                    scan = _scan(client, written, reps, sample_seconds, clock)
                    keep(_row("sync", state, "upsert", batch, times, against, scan))
    client.close()


async def _run_async(
    states: Sequence[str],
    points: int,
    dims: tuple[int, int],
    batches: Sequence[int],
    reps: int,
    sample_seconds: float,
    clock: Callable[[], float],
    rng: Any,
    keep: Callable[[Row], None],
) -> None:
    client = AsyncQdrantClient(":memory:")
    embedders, _, _ = _embedders(dims)
    lattice = lq.wrap(client, embedders=embedders, load_embedders=False)
    for state in states:
        # set up through the twin's sync executor (its client is the sync face of the async one)
        case = _setup(lattice.sync.client, lattice.sync, state, points, dims, rng)
        query = _query(case, dims, rng)

        async def raw_query(case: _Case = case, query: list[float] = query) -> Any:
            return await client.query_points(case.collection, query=query, using=case.query_vector, limit=10)

        async def wrapped_query(case: _Case = case, query: list[float] = query) -> Any:
            return await lattice.query_points(case.collection, query=query, using=case.using, limit=10)

        workloads = {batch: _workload(case, dims, batch, rng) for batch in batches}
        for against in AGAINST:
            with _instant(client, case.collection) if against == "instant" else contextlib.nullcontext():
                times = await _race_async(raw_query, wrapped_query, reps, sample_seconds, clock)
                keep(_row("async", state, "query_points", 1, times, against))
                for batch, (given, written) in workloads.items():

                    async def raw_upsert(
                        case: _Case = case, written: list[models.PointStruct] = written
                    ) -> Any:
                        return await client.upsert(case.collection, written)

                    async def wrapped_upsert(
                        case: _Case = case, given: list[models.PointStruct] = given
                    ) -> Any:
                        return await lattice.upsert(case.collection, given)

                    times = await _race_async(raw_upsert, wrapped_upsert, reps, sample_seconds, clock)
                    scan = _scan(client, written, reps, sample_seconds, clock)
                    keep(_row("async", state, "upsert", batch, times, against, scan))
    await client.close()


def _row(
    api: str,
    state: str,
    call: str,
    batch: int,
    times: tuple[float, float, float],
    against: str = "local",
    scan: float = 0.0,
) -> Row:
    raw, wrapped, difference = times
    per = batch if call == "upsert" else 1
    overhead = difference / per * 1e6
    target = POINT_TARGET_US if call == "upsert" else QUERY_TARGET_US
    return Row(
        api=api,
        state=state,
        call=call,
        batch=batch,
        raw_us=raw * 1e6,
        wrapped_us=wrapped * 1e6,
        overhead_us=overhead,
        unit="point" if call == "upsert" else "query",
        target_us=target,
        ok=overhead <= target,
        against=against,
        scan_us=scan / per * 1e6,
    )


def _scan(
    client: QdrantClient | AsyncQdrantClient,
    points: list[models.PointStruct],
    reps: int,
    sample_seconds: float,
    clock: Callable[[], float],
) -> float:
    """Median seconds of qdrant-client's scan of ``points`` for objects to embed: what its ``upsert`` does
    before handing them to its transport, which the raw side pays and the wrapper skips for the points it
    built from vectors it validated (:class:`lattice_qdrant.store.NumericPoints`)."""
    inspector: Any = client._inference_inspector

    def scan() -> object:
        return inspector.inspect(points)

    n = _calls_for(scan, sample_seconds, clock)
    return statistics.median(_sample(scan, n, clock) for _ in range(max(5, reps // 4)))


@contextlib.contextmanager
def _instant(client: QdrantClient | AsyncQdrantClient, collection: str) -> Iterator[None]:
    """Within the block, local mode's engine under ``client`` answers ``query_points`` and ``upsert`` on
    ``collection`` at once (no search, nothing written; other collections, the control records among them,
    as before), for the raw side and the wrapper alike: the difference is then the wrapper's own time."""
    engine: Any = client._client  # QdrantLocal or AsyncQdrantLocal: what both sides' calls end in
    answer = rest.QueryResponse(points=[])
    done = models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)
    query, upsert = engine.query_points, engine.upsert
    instant: dict[str, Callable[..., Any]]
    if isinstance(client, AsyncQdrantClient):

        async def query_async(collection_name: str, *args: Any, **kwargs: Any) -> Any:
            return answer if collection_name == collection else await query(collection_name, *args, **kwargs)

        async def upsert_async(collection_name: str, *args: Any, **kwargs: Any) -> Any:
            return done if collection_name == collection else await upsert(collection_name, *args, **kwargs)

        instant = {"query_points": query_async, "upsert": upsert_async}
    else:

        def query_sync(collection_name: str, *args: Any, **kwargs: Any) -> Any:
            return answer if collection_name == collection else query(collection_name, *args, **kwargs)

        def upsert_sync(collection_name: str, *args: Any, **kwargs: Any) -> Any:
            return done if collection_name == collection else upsert(collection_name, *args, **kwargs)

        instant = {"query_points": query_sync, "upsert": upsert_sync}
    for name, method in instant.items():
        setattr(engine, name, method)
    try:
        yield
    finally:
        for name in instant:
            delattr(engine, name)  # the class's methods again


# -- measuring ----------------------------------------------------------------------------------------------


def _calls_per_sample(once: float, sample_seconds: float) -> int:
    return max(1, min(10_000, round(sample_seconds / max(once, 1e-7))))


def _race(
    raw: Callable[[], object],
    wrapped: Callable[[], object],
    reps: int,
    sample_seconds: float,
    clock: Callable[[], float],
) -> tuple[float, float, float]:
    """Median seconds per call of each side, and the median of their differences, rep by rep (a rep is one
    sample of each side, back to back, in alternating order)."""
    calls = (raw, wrapped)
    n = min(_calls_for(call, sample_seconds, clock) for call in calls)  # the same number on both sides
    samples: tuple[list[float], list[float]] = ([], [])
    for rep in range(reps):
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            samples[side].append(_sample(calls[side], n, clock))
    return _medians(samples)


def _calls_for(call: Callable[[], object], sample_seconds: float, clock: Callable[[], float]) -> int:
    """How many calls of ``call`` make a sample of about ``sample_seconds``, from one call timed after a
    warm-up (first-call costs, caches)."""
    call()
    start = clock()
    call()
    return _calls_per_sample(clock() - start, sample_seconds)


def _sample(call: Callable[[], object], n: int, clock: Callable[[], float]) -> float:
    """Seconds per call of ``n`` calls of ``call`` in a row."""
    start = clock()
    for _ in range(n):
        call()
    return (clock() - start) / n


async def _race_async(
    raw: Callable[[], Awaitable[object]],
    wrapped: Callable[[], Awaitable[object]],
    reps: int,
    sample_seconds: float,
    clock: Callable[[], float],
) -> tuple[float, float, float]:
    """:func:`_race` for coroutines, awaited one after the other on the running loop."""
    calls = (raw, wrapped)
    number = []
    for call in calls:
        await call()
        start = clock()
        await call()
        number.append(_calls_per_sample(clock() - start, sample_seconds))
    n = min(number)
    samples: tuple[list[float], list[float]] = ([], [])
    for rep in range(reps):
        for side in (0, 1) if rep % 2 == 0 else (1, 0):
            call = calls[side]
            start = clock()
            for _ in range(n):
                await call()
            samples[side].append((clock() - start) / n)
    return _medians(samples)


def _medians(samples: tuple[list[float], list[float]]) -> tuple[float, float, float]:
    raw, wrapped = samples
    differences = [w - r for r, w in zip(raw, wrapped, strict=True)]
    return statistics.median(raw), statistics.median(wrapped), statistics.median(differences)


# -- output -------------------------------------------------------------------------------------------------


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_COLUMNS = (
    ("api", -5),
    ("against", -8),
    ("state", -28),
    ("call", -15),
    ("raw µs", 9),
    ("wrapped µs", 11),
    ("overhead µs", 12),
    ("per", -6),
    ("target", 8),
)


def _format_row(row: Row | None) -> str:
    if row is None:
        cells: tuple[str, ...] = tuple(name for name, _ in _COLUMNS)
    else:
        call = row.call if row.call != "upsert" else f"upsert ×{row.batch}"
        cells = (
            row.api,
            row.against,
            STATES[row.state],
            call,
            f"{row.raw_us:.1f}",
            f"{row.wrapped_us:.1f}",
            f"{row.overhead_us:.1f}",
            row.unit,
            f"{'≤' if row.ok else '>'}{row.target_us:g} {'ok' if row.ok else 'MISS'}",
        )
    out = []
    for cell, (_, width) in zip(cells, _COLUMNS, strict=True):
        out.append(f"{cell:<{-width}}" if width < 0 else f"{cell:>{width}}")
    return " ".join(out).rstrip()


if __name__ == "__main__":
    sys.exit(main())
