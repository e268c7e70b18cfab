"""One backfill run in its own process, for the crash-safety and scale-out tests of ``test_backfill.py``.

    python tests/backfill_child.py (--path DIR | --url URL) --collection docs --control CONTROL
        [--batch-size 50] [--writers 2] [--max-rate R] [--delay S] [--shard I/N] [--sigterm]
        [--strategy reembed] [--progress]

Opens a ``QdrantClient`` on the path or server, wraps it, plans and starts the migration of ``--collection``
if that was not done yet (the cheap hash models of ``conftest.py``: "legacy" to "modern"; a 64-d "modern"
overwriting "legacy" with ``--strategy reembed``), prints ``ready``, runs the backfill and prints its
report as one JSON line. With ``--progress`` it also prints ``written N`` each time the count of points
written grows (a parent can kill it once writes are landing). With ``--sigterm``, SIGTERM sets the
backfill's stop event, so the run finishes its in-flight batches and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from typing import Any

from qdrant_client import QdrantClient

import lattice_qdrant as lq
from lattice_qdrant.backfill import BackfillOptions, BackfillProgress, Shard, run_backfill
from lattice_qdrant.embedders import HashEmbedder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", help="local-mode storage folder")
    where.add_argument("--url", help="Qdrant server URL")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--control", required=True, help="control collection name")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--max-rate", type=float, default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--shard", default=None, help="I/N")
    parser.add_argument("--sigterm", action="store_true", help="SIGTERM stops the run cleanly")
    parser.add_argument("--progress", action="store_true", help="print 'written N' as writes land")
    parser.add_argument(
        "--strategy", default="in_place", help="in_place, or reembed (a 64-d target overwriting 'legacy')"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    legacy = HashEmbedder(64, salt="legacy")
    reembed = args.strategy == "reembed"
    modern = HashEmbedder(64 if reembed else 96, ngrams=2, salt="modern")
    stop = threading.Event()
    if args.sigterm:

        def on_sigterm(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_sigterm)
    client = QdrantClient(path=args.path) if args.path else QdrantClient(url=args.url, timeout=30)
    try:
        lattice = lq.wrap(
            client,
            control_collection=args.control,
            refresh_interval=0.0,
            embedders={"legacy": legacy, "modern": modern},
        )
        try:
            migration = lattice.migration(args.collection)
        except lq.MigrationNotFoundError:
            migration = lattice.plan(
                args.collection,
                source=legacy.spec("legacy", 1),
                target=modern.spec("modern", 1),
                source_vector="legacy",
                strategy=args.strategy,
            )
        if migration.snapshot(refresh=True).state.status == lq.Status.PLANNED:
            migration.start()
        options = BackfillOptions(
            batch_size=args.batch_size,
            writers=args.writers,
            max_rate=args.max_rate,
            delay=args.delay,
            shard=Shard.parse(args.shard) if args.shard else None,
            heartbeat_interval=0.5,
        )
        print("ready", flush=True)
        seen = [0]

        def on_progress(progress: BackfillProgress) -> None:
            if progress.written > seen[0]:
                seen[0] = progress.written
                print(f"written {progress.written}", flush=True)

        report = run_backfill(
            migration, modern, options, stop=stop, on_progress=on_progress if args.progress else None
        )
        print(json.dumps(dataclasses.asdict(report)), flush=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
