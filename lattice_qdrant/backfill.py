"""The backfill: re-embed the points that lack the target vector, safely, in a bounded pipeline.

Guarantees, on a server as in local mode:

* **The data is the checkpoint.** The work is always "points without the target vector", the strategy's
  :meth:`~lattice_qdrant.strategies.MigrationStrategy.todo` (``has_vector`` in ``must_not``; for a
  same-name re-embed, points not stamped with the target model), read in id order, after the points that
  mixed queries met (the traffic queue, :mod:`lattice_qdrant.traffic`) and the priorities. A run killed at any
  moment (even SIGKILL) loses nothing: the next run finds exactly the points still missing and redoes at
  most the batches that were in flight. SIGTERM / Ctrl-C (a set ``stop`` event) stops reading and lets
  in-flight batches finish.
* **Never stale.** Every write is an ``update_vectors`` (only the target vector; payload and source vector
  untouched) conditional on the point still lacking the target vector *and* still holding the text that was
  embedded. A point that got its target vector from a dual-write meanwhile, or whose text was changed by a
  writer that does not use the wrapper, keeps what the application wrote; the latter is picked up again by
  the next pass, with its new text. Points deleted meanwhile are skipped (Qdrant applies an
  ``update_vectors`` batch point by point, so a missing id fails the call after earlier points were written:
  the batch is written again without the missing ids, which the conditions make harmless).
* **Bounded.** Reader, embedder and writers are threads joined by queues of ``queue_depth`` batches, so
  memory stays flat however large the collection is. ``writers`` concurrent writers, a points-per-second
  ceiling and a delay between batches are enforced.
* **Failures do not stop the run.** Missing or empty text and embedder errors on single points are
  recorded (point id and reason) in the control collection, skipped by later runs, and retried on request.
  Texts longer than ``max_text_chars`` are truncated before embedding (the model truncates further at its
  own token limit); the report counts them. Transient Qdrant errors are retried by the store (tenacity,
  exponential backoff with jitter).
* **Scale-out.** ``shard=(i, n)`` takes the points whose id hashes to ``i`` modulo ``n``; ``n`` workers on any
  number of machines split the work with nothing missed and nothing done twice. Qdrant has no range filter
  on point ids, and hashing balances integer and UUID ids alike. From server 1.19 (and in local mode) the
  reader asks for its slice (``SliceCondition``: Qdrant's own id hash), so each worker reads only its share;
  against older servers each worker reads every point still to do and keeps those whose id hashes
  (:func:`shard_of`) to its share. A worker records its method in its heartbeat and joins the method of
  the workers already running (:func:`joined_shard_method`): workers that split two ways would miss points.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from qdrant_client import models

from . import traffic
from .coordinator import Migration
from .embedders import Embedder, embed_checked, fixed_passes
from .errors import (
    ConcurrentTransitionError,
    EmbedderError,
    InvalidTransitionError,
    LatticeError,
    MigrationError,
    ShardMethodError,
)
from .metrics import NO_METRICS, BackfillMetrics
from .options import Duration, documented
from .plan import MigrationPlan
from .state import Status
from .store import SLICES_MIN_VERSION, Coverage, Store
from .store.base import version_text
from .strategies import MigrationStrategy, strategy_for, vector_bytes

__all__ = [
    "SHARD_HASH",
    "SHARD_SLICE",
    "BackfillOptions",
    "BackfillProgress",
    "BackfillReport",
    "BackfillSettings",
    "DryRunReport",
    "Failure",
    "Shard",
    "clear_failures",
    "embed_queue_size",
    "estimate",
    "frozen_heap",
    "joined_shard_method",
    "list_failures",
    "run_backfill",
    "shard_method",
    "shard_method_detail",
    "shard_of",
    "vector_bytes",
    "write_target_vectors",
]

log = logging.getLogger(__name__)

_FAILURE = "failure"
_HEARTBEAT = "backfill"
#: points the reader asks for in one request (whole batches; see :func:`read_page_size`)
_READ_PAGE = 512
#: points of the traffic queue a pass takes first, at most (the rest are done in id order)
_TRAFFIC_TAKE = 4096
#: A run stops making passes after this many (each pass only redoes points whose text changed under it).
_MAX_PASSES = 10


#: runs of this process holding the heap frozen (see :func:`frozen_heap`), under its lock
_frozen = 0
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While a run lasts, the objects the process held when it started are left out of Python's garbage
    collections (``gc.freeze``; ``gc.unfreeze`` when the last concurrent run ends).

    A full collection walks every object the process holds: with a model loaded, half a million of them,
    about a quarter of a second, during which the thread collecting holds the GIL and the model's forward
    pass waits for it. A run allocates enough long-lived objects (pages waiting for the embedder, batches
    waiting for a writer) to trigger one every few thousand points. Frozen, the objects older than the run
    are not walked, so a collection costs the run's own objects only; objects made during the run are
    collected as usual. A process that froze its heap itself (before forking workers, say) is left as it
    is: nothing is frozen or unfrozen then.
    """
    global _frozen
    with _frozen_lock:
        ours = _frozen > 0 or gc.get_freeze_count() == 0
        if ours:
            if _frozen == 0:
                gc.freeze()
            _frozen += 1
    try:
        yield
    finally:
        if ours:
            with _frozen_lock:
                _frozen -= 1
                if _frozen == 0:
                    gc.unfreeze()


def embed_queue_size(options: BackfillOptions) -> int:
    """Batches that can wait for the embedder: ``queue_depth``, or enough to fill an embed window."""
    return max(options.queue_depth, options.embed_window // options.batch_size - 1)


def read_page_size(options: BackfillOptions) -> int:
    """Points the reader asks for at once: whole batches, up to ``_READ_PAGE`` points (or one batch).

    Pages larger than a batch cost fewer requests on a server, and fewer whole-collection filter scans
    in local mode (which evaluates a scroll's filter on every point of the collection, whatever the page).
    """
    return options.batch_size * max(1, _READ_PAGE // options.batch_size)


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token for English subword vocabularies)."""
    return max(1, math.ceil(len(text) / 4))


#: ``--shard I/N`` by Qdrant's slices: the reader asks for its slice, and reads only its share.
SHARD_SLICE = "slice"
#: ``--shard I/N`` by id hash (servers before 1.19): the reader reads every point still to do and keeps its
#: share (:func:`shard_of`).
SHARD_HASH = "hash"


def shard_of(point_id: Any, count: int) -> int:
    """The shard (``0 .. count-1``) a point id belongs to by the id-hash method (:data:`SHARD_HASH`);
    stable across processes and machines."""
    digest = hashlib.blake2b(str(point_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_method(version: tuple[int, int, int] | None) -> str:
    """How ``--shard I/N`` splits the points against a server of ``version`` (``None``: local mode):
    :data:`SHARD_SLICE` from 1.19 on and in local mode, :data:`SHARD_HASH` before (pure)."""
    return SHARD_SLICE if version is None or version >= SLICES_MIN_VERSION else SHARD_HASH


def shard_method_detail(method: str) -> str:
    """What ``method`` costs, in a sentence (for ``doctor``)."""
    if method == SHARD_SLICE:
        return (
            "--shard I/N reads by Qdrant's slices (server 1.19+, local mode): each worker reads only its "
            "share of the points"
        )
    return (
        f"--shard I/N splits by id hash (Qdrant {version_text(SLICES_MIN_VERSION[:2])}+ has slices): each "
        "worker reads every point still to do and keeps its share, so N workers read the collection N times"
    )


def joined_shard_method(collection: str, ours: str, running: Sequence[str]) -> str:
    """The method a sharded worker uses, given the one its server allows (``ours``) and those of the
    sharded workers already running on ``collection`` (pure).

    Workers of one run must split the points the same way, or each would leave points the other's split
    gives it. A worker that could read by slices joins workers splitting by id hash (any server can), with a
    warning; one that cannot read by slices refuses to join workers that do.

    Raises:
        ShardMethodError: the running workers read by slices and this worker's server has none, or they
            already split two ways.
    """
    methods = sorted(set(running))
    if not methods or methods == [ours]:
        return ours
    if methods == [SHARD_HASH]:
        log.warning(
            "%s: the backfill workers running split the points by id hash; this worker does too (so that "
            "no point is missed), though the server has slices: once they stop, a new run reads by slices",
            collection,
        )
        return SHARD_HASH
    if methods == [SHARD_SLICE]:
        problem = (
            f"the backfill workers running on {collection!r} read by Qdrant's slices, but this worker's "
            f"server has none (they need Qdrant {version_text(SLICES_MIN_VERSION[:2])}+), so it would split "
            "the points another way and some would belong to no worker's share: point every worker at the "
            "same server, or stop them all and start every worker again"
        )
    else:
        problem = (
            f"the backfill workers running on {collection!r} split the points two ways "
            f"({' and '.join(methods)}), so some points belong to no worker's share: stop them all and "
            "start every worker again (they then split the same way)"
        )
    raise ShardMethodError(problem, collection=collection, ours=ours, running=methods)


class Shard(BaseModel):
    """Worker ``index`` of ``count`` (``--shard 0/3``)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _index_below_count(self) -> Shard:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} must be below the shard count {self.count}")
        return self

    def condition(self) -> models.SliceCondition:
        """This worker's slice, as Qdrant's filter condition (server 1.19+, local mode)."""
        return models.SliceCondition(slice=models.Slice(total=self.count, index=self.index))

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/N"`` -> ``Shard(index=i, count=N)``."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError as exc:
            raise ValueError(f"shard {text!r} must look like I/N, e.g. 0/3") from exc
        return cls(count=count, index=index)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@documented
class BackfillSettings(BaseModel):
    """How fast and in what sizes a backfill runs: the options the configuration also sets.

    :class:`~lattice_qdrant.config.Settings` inherits these fields, so each has a ``LATTICE_QDRANT_*``
    variable and a config-file key of its name; the CLI's ``backfill`` and ``migrate`` take them as options.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Points per backfill batch (read, embedded and written together).",
    )
    writers: int = Field(
        default=4, ge=1, le=64, description="Concurrent backfill writers (each holds one batch)."
    )
    queue_depth: int = Field(default=8, ge=1, le=1024, description="Batches waiting between backfill stages.")
    embed_window: int = Field(
        default=2048,
        ge=1,
        le=100_000,
        description="Most texts sorted by length and embedded together (waiting batches merged).",
    )
    max_rate: float | None = Field(
        default=None, gt=0, description="Backfill ceiling in points per second (unset: no ceiling)."
    )
    delay: Duration = Field(
        default=0.0,
        ge=0,
        description="Time to wait after reading each batch (seconds, or 90s, 30m, 24h, 7d).",
    )
    max_text_chars: int = Field(
        default=20_000,
        ge=1,
        description="Longer texts are truncated to this many characters before embedding.",
    )


@documented
class BackfillOptions(BackfillSettings):
    """How a backfill runs: :class:`BackfillSettings` and the bounds and scope of one run.

    ``queue_depth`` batches wait for the writers, and at least as many for the embedder (that queue holds a
    whole embed window). The embedder sorts together up to ``embed_window`` texts: whole batches already
    waiting are merged up to this many and embedded in the forward passes of one call over them all (longest
    texts first, packed by the model's ``tokens_per_pass``), so each pass holds texts of similar length and
    pads little; batches that arrive while a window is embedded join it. Writers still get ``batch_size``
    points at a time, pass by pass. A run killed redoes what is
    in flight: about two windows and ``queue_depth + writers`` batches.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    until: float | None = Field(
        default=None, gt=0, le=100, description="Stop once this percentage of points has the target vector."
    )
    max_points: int | None = Field(
        default=None, ge=1, description="Stop after this many points were read in this run."
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Stop once the estimated tokens embedded in this run reach this budget.",
    )
    shard: Shard | None = Field(default=None, description="Take only this worker's share of the points.")
    priorities: tuple[models.Filter, ...] = Field(
        default=(), description="Filters backfilled first, in order, before the rest."
    )
    retry_failed: bool = Field(default=False, description="Try again the points recorded as failed.")
    heartbeat_interval: float = Field(
        default=2.0, gt=0, description="Seconds between this worker's progress records (for ``status``)."
    )
    progress_interval: float = Field(
        default=30.0, gt=0, description="Seconds between coverage counts recorded in the shared state."
    )


@dataclass(frozen=True)
class Failure:
    """A point the backfill could not embed, and why."""

    collection: str
    point_id: Any
    reason: str
    at: float


@dataclass
class BackfillProgress:
    """Numbers of a running backfill, as shown by the progress bar and ``status``."""

    collection: str
    todo: int
    read: int = 0
    written: int = 0
    failed: int = 0
    truncated: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    queue_embed: int = 0
    queue_write: int = 0
    active: dict[str, int] = field(default_factory=lambda: {"read": 0, "embed": 0, "write": 0})

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return max(1e-9, time.monotonic() - self.started)

    @property
    def rate(self) -> float:
        """Points written per second so far."""
        return self.written / self.elapsed

    @property
    def remaining(self) -> int:
        """Points still to do in this run (estimated for a shard)."""
        return max(0, self.todo - self.written - self.failed)

    @property
    def eta(self) -> float | None:
        """Seconds until done at the current rate, or ``None`` before the first write."""
        return self.remaining / self.rate if self.written else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe numbers (for heartbeats, logs and ``--json``)."""
        return {
            "collection": self.collection,
            "todo": self.todo,
            "read": self.read,
            "written": self.written,
            "failed": self.failed,
            "truncated": self.truncated,
            "tokens": self.tokens,
            "remaining": self.remaining,
            "rate": round(self.rate, 3),
            "eta": None if self.eta is None else round(self.eta, 1),
            "elapsed": round(self.elapsed, 3),
            "queue_embed": self.queue_embed,
            "queue_write": self.queue_write,
        }


@dataclass(frozen=True)
class BackfillReport:
    """What a run did.

    Attributes:
        stopped_by: ``"done"`` (nothing left), ``"stop"`` (signal), ``"until"``, ``"max_points"``,
            ``"max_tokens"``, ``"paused"`` (paused or cancelled by another process) or ``"passes"``.
        shard_method: how a sharded run split the points (:data:`SHARD_SLICE` or :data:`SHARD_HASH`;
            ``None`` without a shard).
        embedding: seconds from the start of the run's first forward pass to the end of its last (0 when
            nothing was embedded): the span in which the pipeline hides reading and writing behind the
            model. ``elapsed`` minus it is what the run spent before its first pass and after its last
            (its first reads, then its last batch's writes, the final count and the state record).
    """

    collection: str
    written: int
    failed: int
    truncated: int
    tokens: int
    passes: int
    elapsed: float
    covered: int
    total: int
    stopped_by: str
    shard_method: str | None = None
    embedding: float = 0.0

    @property
    def coverage(self) -> float:
        """Fraction of points with the target vector at the end."""
        return 1.0 if self.total == 0 else self.covered / self.total


@dataclass(frozen=True)
class DryRunReport:
    """What a backfill would do, measured without writing."""

    collection: str
    todo: int
    total: int
    tokens: int
    seconds: float
    points_per_second: float
    storage_bytes: int
    sampled: int


@dataclass
class _Batch:
    ids: list[Any]
    texts: list[str]
    vectors: NDArray[np.float32] | None = None
    #: which of the run's scopes (priorities first) it was read from: windows never mix two
    scope: int = 0


_DONE = object()


class _Stop(Exception):
    """Internal: a stage saw the stop flag."""


def _failure_key(collection: str, point_id: Any) -> str:
    return f"{collection}:{point_id}"


def list_failures(store: Store, collection: str) -> list[Failure]:
    """Points of ``collection`` recorded as failed by a backfill (read-only)."""
    out = [
        Failure(
            collection=collection,
            point_id=r.get("point_id"),
            reason=str(r.get("reason", "")),
            at=float(r.get("at", 0.0)),
        )
        for r in store.list_records(_FAILURE, collection=collection)
    ]
    return sorted(out, key=lambda f: str(f.point_id))


def clear_failures(store: Store, collection: str, point_ids: Sequence[Any] | None = None) -> int:
    """Forget recorded failures (all of the collection's, or those of ``point_ids``); return how many."""
    failures = list_failures(store, collection)
    if point_ids is not None:
        wanted = {str(p) for p in point_ids}
        failures = [f for f in failures if str(f.point_id) in wanted]
    store.delete_records(_FAILURE, [_failure_key(collection, f.point_id) for f in failures])
    return len(failures)


def estimate(
    migration: Migration,
    embedder: Embedder,
    options: BackfillOptions | None = None,
    *,
    sample: int = 64,
) -> DryRunReport:
    """Measure what a backfill would do, without writing anything.

    Counts the points to do, estimates their tokens from a sample of their texts, times the embedder on
    that sample (after one warm-up call), and computes the storage the target vectors add (float32 values
    plus an allowance for the HNSW graph links).
    """
    options = options or BackfillOptions()
    strategy = migration.strategy
    plan = strategy.plan
    store = migration.store
    coverage = migration.coverage()
    todo, total = coverage.missing, coverage.total
    if not options.retry_failed:
        todo = max(0, todo - len(list_failures(store, migration.collection)))
    if options.shard is not None:
        todo = math.ceil(todo / options.shard.count)
    page, _ = store.scroll(
        strategy.data_collection,
        flt=strategy.todo(),
        limit=max(1, sample),
        with_payload=[plan.text_field],
    )
    texts = [t[: options.max_text_chars] for t in (_text_of(r, plan) for r in page) if t]
    tokens_per_point = (sum(estimate_tokens(t) for t in texts) / len(texts)) if texts else 0.0
    rate = 0.0
    if texts:
        embed_checked(embedder, texts[:2], plan.target)  # warm-up (loads the model)
        started = time.perf_counter()
        embed_checked(embedder, texts, plan.target)
        rate = len(texts) / max(1e-9, time.perf_counter() - started)
    per_point = strategy.bytes_per_point()
    return DryRunReport(
        collection=migration.collection,
        todo=todo,
        total=total,
        tokens=round(tokens_per_point * todo),
        seconds=(todo / rate) if rate else 0.0,
        points_per_second=rate,
        storage_bytes=todo * per_point,
        sampled=len(texts),
    )


def _text_of(record: models.Record, plan: MigrationPlan) -> str | None:
    value = (record.payload or {}).get(plan.text_field)
    return value if isinstance(value, str) and value.strip() else None


class _Run:
    """One backfill run: the pipeline's shared state."""

    def __init__(
        self,
        migration: Migration,
        strategy: MigrationStrategy,
        embedder: Embedder,
        options: BackfillOptions,
        stop: threading.Event,
        metrics: BackfillMetrics,
    ) -> None:
        self.migration = migration
        self.store = migration.store
        self.strategy = strategy
        self.plan = self.strategy.plan
        self.collection = migration.collection
        self.embedder = embedder
        self.options = options
        self.stop = stop
        self.metrics = metrics
        #: batches the embedder takes at once (whole batches, at most ``embed_window`` texts)
        self.window_batches = max(1, options.embed_window // options.batch_size)
        # the reader's queue holds a whole window, or the window could never fill
        self.embed_q: queue.Queue[Any] = queue.Queue(maxsize=embed_queue_size(options))
        self.write_q: queue.Queue[Any] = queue.Queue(maxsize=options.queue_depth)
        self.lock = threading.Lock()
        self.in_flight = 0
        #: batches in flight whose write landed and whose read-back is running
        self.confirming = 0
        #: notified when ``in_flight`` comes down to ``confirming`` (every write landed; both 0: drained)
        self.drained = threading.Condition(self.lock)
        self.error: BaseException | None = None
        self.stopped_by = "done"
        self.failed_ids: set[str] = set()
        self.worker = uuid.uuid4().hex[:12]
        self.progress = BackfillProgress(collection=self.collection, todo=0)
        #: how this worker's shard is read (``None`` without a shard); chosen when the run starts
        self.shard_method: str | None = None
        #: set once the recorded failures are known (loaded while the reader reads its first page)
        self.failures_loaded = threading.Event()
        #: set once the run's work is counted (the progress thread reports nothing before)
        self.counted = threading.Event()
        #: the traffic queue's points this pass takes first
        self.traffic_taken: list[Any] = []
        #: the first pass's look at the traffic queue, read while the run starts (see :func:`run_backfill`)
        self.traffic_ahead: Future[list[Any]] | None = None

    # ----------------------------------------------------------------- helpers

    def halt(self, why: str) -> None:
        with self.lock:
            if not self.stop.is_set():
                self.stopped_by = why
        self.stop.set()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.error is not None:
                    raise _Stop from None

    def _get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.error is not None:
                    raise _Stop from None

    def _batch_done(self, n: int = 1, *, landed: bool = False) -> None:
        with self.lock:
            self.in_flight -= n
            self.confirming -= landed
            if self.in_flight == self.confirming:
                self.drained.notify_all()

    def _landed(self) -> None:
        """A writer's batch was written (its read-back is still to come)."""
        with self.lock:
            self.confirming += 1
            if self.in_flight == self.confirming:
                self.drained.notify_all()

    def record_failures(self, items: Sequence[tuple[Any, str]]) -> None:
        if not items:
            return
        now = time.time()
        for pid, reason in items:
            self.store.put_record(
                _FAILURE,
                _failure_key(self.collection, pid),
                {"collection": self.collection, "point_id": pid, "reason": reason, "at": now},
            )
            log.warning("%s: point %r failed: %s", self.collection, pid, reason)
        with self.lock:
            self.failed_ids.update(str(pid) for pid, _ in items)
            self.progress.failed += len(items)
        self.metrics.failures(self.collection, len(items))

    # ----------------------------------------------------------------- reader

    def scopes(self) -> Iterator[models.Filter]:
        """The points queries met (the traffic queue), then the priority filters, then everything else
        still missing (this worker's slice of them when it reads by slices)."""
        shard = self.options.shard
        own = [shard.condition()] if shard is not None and self.shard_method == SHARD_SLICE else []
        done: list[models.Filter] = []
        for priority in [*self._traffic_scope(), *self.options.priorities]:
            yield self.strategy.todo(also=[priority, *[_not(d) for d in done], *own])
            done.append(priority)
        yield self.strategy.todo(also=[*[_not(d) for d in done], *own])

    def _traffic_scope(self) -> list[models.Filter]:
        """The oldest points of the traffic queue (:mod:`lattice_qdrant.traffic`), as a filter (the first
        pass's, read ahead while the run started)."""
        ahead, self.traffic_ahead = self.traffic_ahead, None
        self.traffic_taken = (
            ahead.result()
            if ahead is not None
            else traffic.queued_ids(self.store, self.collection, _TRAFFIC_TAKE)
        )
        if not self.traffic_taken:
            return []
        return [models.Filter(must=[models.HasIdCondition(has_id=self.traffic_taken)])]

    def _forget_traffic(self) -> None:
        """Delete the traffic records of the points taken that are no longer to do (or failed here);
        another shard's stay for it."""
        taken, self.traffic_taken = self.traffic_taken, []
        if not taken:
            return
        self._wait_failures()  # a pass that read no page has not waited for them
        try:
            left, _ = self.store.scroll(
                self.strategy.data_collection,
                flt=self.strategy.todo(also=[models.HasIdCondition(has_id=taken)]),
                limit=len(taken),
                with_payload=False,
            )
            missing = {str(r.id) for r in left} - self.failed_ids
            traffic.forget(self.store, self.collection, [pid for pid in taken if str(pid) not in missing])
        except LatticeError as exc:  # the queue is a hint; the next run clears it
            log.warning("%s: could not clear the traffic queue: %s", self.collection, exc)

    def read(self) -> None:
        """Reader thread: pages of missing points -> embed queue, pass after pass."""
        try:
            self.metrics.active(self.collection, "read", 1)
            passes = 0
            while not self.stop.is_set():
                passes += 1
                dispatched = self._read_pass()
                if passes == 1:
                    # while the last windows are embedded and written, not after them: off the run's tail
                    self._repair_stamps()
                count = self._count_once_landed() if dispatched and not self.stop.is_set() else None
                self._wait_drained()
                self._forget_traffic()
                if self.stop.is_set() or dispatched == 0 or self._nothing_left(count):
                    break
                if passes >= _MAX_PASSES:
                    self.halt("passes")
                    break
            self.passes = passes
        except _Stop:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.metrics.active(self.collection, "read", -1)
            self._put_done(self.embed_q)

    def _count_tells(self) -> bool:
        """Whether a count can tell that nothing is left to do: without a shard (the other shards' points
        are missing too), without failures known (failed points are missing too) and without an error."""
        return self.options.shard is None and not self.failed_ids and self.error is None

    def _count_once_landed(self) -> Coverage | None:
        """Once every write of a pass landed: the coverage counted, beside the writes' read-backs (one
        round trip off the run's tail); ``None`` where a count cannot tell (:meth:`_count_tells`).

        A count made after the writes reflects them whatever their read-backs find: a read-back tells which
        of the points hold the vector this run wrote, not whether they hold one.
        """
        if not self._count_tells():
            return None
        with self.drained:
            while self.in_flight > self.confirming and self.error is None:
                self.drained.wait(timeout=0.1)
        return self._coverage() if self._count_tells() else None

    def _nothing_left(self, count: Coverage | None) -> bool:
        """After a pass is written: whether ``count`` (:meth:`_count_once_landed`) shows nothing left to do,
        which makes it the run's final count and saves the next pass (whose reads would find nothing: two
        requests). Failures or an error met since the count leave it to the next pass to look."""
        if count is None or count.missing or not self._count_tells():
            return False
        self.final = count
        return True

    def load_failures(self) -> None:
        """Failures thread: the points recorded as failed, which the run skips (unless retried). Loaded
        while the reader reads its first page and the calling thread counts the coverage, not before."""
        try:
            if not self.options.retry_failed:
                failed = {str(f.point_id) for f in list_failures(self.store, self.collection)}
                with self.lock:
                    self.failed_ids |= failed
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.failures_loaded.set()

    def _wait_failures(self) -> None:
        """Wait until the recorded failures are known (the reader skips them)."""
        while not self.failures_loaded.wait(0.1):
            if self.error is not None:
                raise _Stop

    def _put_done(self, q: queue.Queue[Any]) -> None:
        with contextlib.suppress(_Stop):
            self._put(q, _DONE)

    def _wait_drained(self) -> None:
        with self.drained:
            while self.in_flight > 0 and self.error is None:
                self.drained.wait(timeout=0.1)

    def _read_pass(self) -> int:
        options = self.options
        dispatched = 0
        next_slot = time.monotonic()
        for index, scope in enumerate(self.scopes()):
            for page in self.store.iter_points(
                self.strategy.data_collection,
                flt=scope,
                page_size=read_page_size(options),
                with_payload=[self.plan.text_field],
            ):
                if self.stop.is_set():
                    return dispatched
                started = time.perf_counter()
                self._wait_failures()
                ids, texts = self._texts_of(page)
                for at in range(0, len(ids), options.batch_size):
                    batch_ids, batch_texts = self._apply_budgets(
                        ids[at : at + options.batch_size], texts[at : at + options.batch_size]
                    )
                    if not batch_ids:
                        return dispatched
                    with self.lock:
                        self.progress.read += len(batch_ids)
                        self.in_flight += 1
                    self.metrics.batch_seconds(self.collection, "read", time.perf_counter() - started)
                    self._put(self.embed_q, _Batch(ids=batch_ids, texts=batch_texts, scope=index))
                    started = time.perf_counter()
                    dispatched += len(batch_ids)
                    self.metrics.queue_depth(self.collection, "embed", self.embed_q.qsize())
                    if options.max_rate:
                        next_slot = max(next_slot, time.monotonic()) + len(batch_ids) / options.max_rate
                        self._sleep_until(next_slot)
                    if options.delay:
                        self._sleep_until(time.monotonic() + options.delay)
                    if self.stop.is_set():
                        return dispatched
        return dispatched

    def _texts_of(self, page: Sequence[models.Record]) -> tuple[list[Any], list[str]]:
        """The ids and texts of a page's points this worker embeds; a point without usable text is recorded
        as failed (and skipped by later passes)."""
        options = self.options
        ids: list[Any] = []
        texts: list[str] = []
        bad: list[tuple[Any, str]] = []
        by_hash = options.shard if self.shard_method == SHARD_HASH else None
        for record in page:
            if by_hash is not None and shard_of(record.id, by_hash.count) != by_hash.index:
                continue
            if str(record.id) in self.failed_ids:
                continue
            value = (record.payload or {}).get(self.plan.text_field)
            if not isinstance(value, str) or not value.strip():
                what = "missing" if value is None else "empty" if isinstance(value, str) else "not text"
                bad.append((record.id, f"text field {self.plan.text_field!r} is {what}"))
                continue
            ids.append(record.id)
            texts.append(value)
        self.record_failures(bad)
        return ids, texts

    def _sleep_until(self, when: float) -> None:
        while not self.stop.is_set():
            left = when - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 0.1))

    def _apply_budgets(self, ids: list[Any], texts: list[str]) -> tuple[list[Any], list[str]]:
        """Trim a batch to the run's budgets; set the stop reason when one is reached."""
        options = self.options
        with self.lock:
            read = self.progress.read
        tokens = self.tokens_read
        keep = len(ids)
        why = None
        if options.max_points is not None and read + keep >= options.max_points:
            keep = max(0, options.max_points - read)
            why = "max_points"
        if options.until is not None:
            goal = math.ceil(options.until / 100 * self.total)
            left = max(0, goal - self.covered_at_start - read)
            if keep >= left:
                keep, why = left, "until"
        if options.max_tokens is not None:
            spent = tokens
            for i, text in enumerate(texts[:keep]):
                spent += estimate_tokens(text[: options.max_text_chars])
                if spent > options.max_tokens:
                    keep, why = i, "max_tokens"
                    break
        self.tokens_read += sum(estimate_tokens(t[: options.max_text_chars]) for t in texts[:keep])
        if why is not None:
            self.halt(why)
        return ids[:keep], texts[:keep]

    # ----------------------------------------------------------------- embedder

    def embed(self) -> None:
        """Embedder stage: texts -> vectors, isolating the points that fail.

        Whole batches waiting (from the same priority scope) are embedded together as one window of
        up to ``embed_window`` texts (see :meth:`_embed_window`): a model pads each forward pass to its
        longest text, and a window sorted by length pads far less than the reader's pages would, while
        the writers still get work, and progress still moves, pass by pass.
        """
        done = False
        carry: _Batch | None = None  # the first batch of the next scope, met while filling a window
        try:
            while not done:
                item = carry if carry is not None else self._get(self.embed_q)
                if item is _DONE:
                    break
                done, carry = self._embed_window(item)
        except _Stop:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            for _ in range(self.options.writers):
                self._put_done(self.write_q)

    def _waiting(self, scope: int, room: int) -> tuple[list[_Batch], bool, _Batch | None]:
        """Up to ``room`` batches of ``scope`` already in the embedder's queue, without waiting for more.

        Returns the batches, whether the reader is done, and the first batch of another scope met on the
        way (priorities stay in order: it starts the next window)."""
        taken: list[_Batch] = []
        while len(taken) < room and not self.stop.is_set():
            try:
                more = self.embed_q.get_nowait()
            except queue.Empty:
                break
            if more is _DONE:
                return taken, True, None
            if more.scope != scope:
                return taken, False, more
            taken.append(more)
        return taken, False, None

    def _embed_window(self, first: _Batch) -> tuple[bool, _Batch | None]:
        """Embed a window's points in forward passes over all of them, and hand the writers batches.

        The window is ``first`` and the batches of its scope waiting behind it. Its points are sorted by
        length, longest first, and embedded one forward pass per call, with the passes the embedder
        would make of one call over the whole window (its ``passes`` method, if it has one; otherwise
        runs of ``batch_size``). The window fills while it is embedded: batches that arrive during a
        pass join it (up to ``embed_window`` texts in all), and the passes not yet run are planned
        again with them. The reader's first page is a fraction of a window, and a window of it alone
        would pad more and run more, smaller passes. Writers get ``batch_size`` points as soon as that
        many are embedded, so writes and progress move pass by pass.

        Returns whether the reader is done, and the first batch of the next scope, if one was met.
        """
        waiting, done, carry = self._waiting(first.scope, self.window_batches - 1)
        taken = 1 + len(waiting)
        plan = self._plan([first, *waiting], sort=taken > 1)  # one batch alone keeps the reader's order
        size = self.options.batch_size
        ids: list[Any] = []
        texts: list[str] = []
        rows: list[NDArray[np.float32]] = []
        while plan:
            batch = plan.pop(0)
            self.metrics.active(self.collection, "embed", 1)
            started = time.perf_counter()
            try:
                batch = self._embed_batch(batch)
            finally:
                self.metrics.active(self.collection, "embed", -1)
            ended = time.perf_counter()
            if self.first_pass is None:
                self.first_pass = started
            self.last_pass = ended
            self.metrics.batch_seconds(self.collection, "embed", ended - started)
            if batch.vectors is not None:
                ids += batch.ids
                texts += batch.texts
                rows += list(batch.vectors)
            while len(ids) >= size:
                self._hand_over(ids[:size], texts[:size], rows[:size])
                del ids[:size], texts[:size], rows[:size]
            if not done and carry is None and taken < self.window_batches:
                joined, done, carry = self._waiting(first.scope, self.window_batches - taken)
                if joined:
                    taken += len(joined)
                    plan = self._plan([*plan, *joined], sort=True)
        if ids:
            self._hand_over(ids, texts, rows)
        self._batch_done(taken)  # the window's batches are now the writers' batches
        return done, carry

    def _plan(self, batches: Sequence[_Batch], *, sort: bool) -> list[_Batch]:
        """The points of ``batches`` as the embed calls to make, one forward pass each."""
        points = [(pid, text) for batch in batches for pid, text in zip(batch.ids, batch.texts, strict=True)]
        if sort:
            points.sort(key=lambda point: -len(point[1]))
        return [
            _Batch(ids=[points[i][0] for i in group], texts=[points[i][1] for i in group])
            for group in self._passes([text for _, text in points])
        ]

    def _passes(self, texts: list[str]) -> list[list[int]]:
        """Indexes of ``texts`` (longest first) per embed call: the embedder's forward passes."""
        limit = self.options.max_text_chars
        plan = getattr(self.embedder, "passes", None)
        if callable(plan):
            try:
                passes: list[list[int]] = plan([t[:limit] for t in texts])
                return passes
            except EmbedderError as exc:  # embedding will fail too, point by point, and say why
                log.warning("%s: planning forward passes failed (%s)", self.collection, exc)
        return fixed_passes(len(texts), self.options.batch_size)

    def _hand_over(self, ids: list[Any], texts: list[str], rows: list[NDArray[np.float32]]) -> None:
        """Queue one batch of embedded points for the writers (counted in flight until written)."""
        with self.lock:
            self.in_flight += 1
        self._put(self.write_q, _Batch(ids=list(ids), texts=list(texts), vectors=np.stack(rows)))
        self.metrics.queue_depth(self.collection, "write", self.write_q.qsize())

    def _count_texts(self, texts: Sequence[str]) -> None:
        """Count the truncated texts and the tokens embedded."""
        limit = self.options.max_text_chars
        with self.lock:
            self.progress.truncated += sum(1 for t in texts if len(t) > limit)
            self.progress.tokens += sum(estimate_tokens(t[:limit]) for t in texts)

    def _embed_batch(self, batch: _Batch) -> _Batch:
        limit = self.options.max_text_chars
        cut = [t[:limit] for t in batch.texts]
        self._count_texts(batch.texts)
        try:
            vectors = embed_checked(self.embedder, cut, self.plan.target)
            return _Batch(ids=batch.ids, texts=batch.texts, vectors=vectors)
        except EmbedderError as exc:
            log.warning("%s: embedding a batch failed (%s); retrying point by point", self.collection, exc)
        ids: list[Any] = []
        texts: list[str] = []
        rows: list[NDArray[np.float32]] = []
        bad: list[tuple[Any, str]] = []
        for pid, text, short in zip(batch.ids, batch.texts, cut, strict=True):
            try:
                rows.append(embed_checked(self.embedder, [short], self.plan.target)[0])
                ids.append(pid)
                texts.append(text)
            except EmbedderError as exc:
                bad.append((pid, f"embedder error: {exc}"))
        if len(bad) == len(batch.ids) > 1:
            # Every point failed on its own too: the embedder is down, not the texts bad.
            raise EmbedderError(f"the embedder failed on every point of a batch: {bad[0][1]}")
        self.record_failures(bad)
        stacked: NDArray[np.float32] | None = np.stack(rows).astype(np.float32) if rows else None
        return _Batch(ids=ids, texts=texts, vectors=stacked)

    # ----------------------------------------------------------------- writers

    def write(self) -> None:
        """Writer thread (``writers`` of them): conditional ``update_vectors`` of one batch at a time."""
        try:
            while True:
                item = self._get(self.write_q)
                if item is _DONE:
                    break
                self.metrics.active(self.collection, "write", 1)
                started = time.perf_counter()
                landed: list[bool] = []

                def land(landed: list[bool] = landed) -> None:
                    landed.append(True)
                    self._landed()

                try:
                    self._write_batch(item, land)
                finally:
                    self.metrics.active(self.collection, "write", -1)
                    self._batch_done(landed=bool(landed))
                self.metrics.batch_seconds(self.collection, "write", time.perf_counter() - started)
        except _Stop:
            pass
        except BaseException as exc:
            self.fail(exc)

    def _write_batch(self, batch: _Batch, landed: Callable[[], None]) -> None:
        if batch.vectors is None:
            return
        ids = self.strategy.write_target(
            self.store,
            {pid: (text, vec) for pid, text, vec in zip(batch.ids, batch.texts, batch.vectors, strict=True)},
            landed=landed,
        )
        if not ids:
            return
        with self.lock:
            self.progress.written += len(ids)
        self.metrics.points(self.collection, len(ids))
        if self.options.retry_failed:
            self.store.delete_records(_FAILURE, [_failure_key(self.collection, pid) for pid in ids])

    # ----------------------------------------------------------------- driver

    passes = 0
    first_pass: float | None = None  # perf_counter at the start of the first forward pass
    last_pass = 0.0  # and at the end of the last
    covered_at_start = 0
    total = 0
    final: Coverage | None = None  # the count after the last pass, when the reader made it
    tokens_read = 0  # estimated tokens dispatched by the reader (the token budget counts these)

    def _choose_shard_method(self) -> str | None:
        """How this worker reads its shard: what its server allows, joined to the method of the sharded
        workers already running (their heartbeats; one without a method is from a version that only had
        the id hash)."""
        if self.options.shard is None:
            return None
        ours = shard_method(self.store.server_version())
        others = [
            str(beat.get("shard_method") or SHARD_HASH)
            for beat in running(self.store, self.collection)
            if beat.get("shard")
        ]
        return joined_shard_method(self.collection, ours, others)

    def _coverage(self) -> Coverage:
        """Coverage counted from the data now (by the run's strategy: no read of the migration record)."""
        return self.strategy.coverage(self.store)

    def _count_todo(self, coverage: Coverage | None) -> None:
        """Count the run's work: the coverage (unless counted already) and, once they are loaded, the
        recorded failures. The calling thread does this while the failures are loaded and the reader reads
        its first page, before it embeds: no write can happen before the count."""
        try:
            coverage = coverage or self._coverage()
            self.covered_at_start, self.total = coverage.covered, coverage.total
            while not self.failures_loaded.wait(0.1):
                if self.error is not None:
                    return
            with self.lock:
                todo = coverage.missing - len(self.failed_ids)
                if self.options.shard is not None:
                    todo = math.ceil(todo / self.options.shard.count)
                self.progress.todo = max(0, todo)
        finally:
            self.counted.set()

    def run(self, on_progress: Callable[[BackfillProgress], None] | None) -> BackfillReport:
        options = self.options
        self.shard_method = self._choose_shard_method()
        self.progress = BackfillProgress(collection=self.collection, todo=0)
        coverage: Coverage | None = None
        if options.until is not None:  # the coverage decides whether to run at all, and the budget
            coverage = self._coverage()
            self.covered_at_start, self.total = coverage.covered, coverage.total
            if coverage.fraction * 100 >= options.until:
                self.stopped_by = "until"
                self._record_progress()
                return self._report(coverage.covered, coverage.total)

        # The calling thread embeds: it made the embedder check (and, in most programs, every other use of
        # the model). PyTorch on CPU runs about a quarter slower in a thread other than the first one that
        # used it (each thread gets its own OpenMP team, and the teams compete for the cores).
        workers = [
            threading.Thread(target=self.read, name="backfill-read", daemon=True),
            threading.Thread(target=self.load_failures, name="backfill-failures", daemon=True),
        ]
        workers += [
            threading.Thread(target=self.write, name=f"backfill-write-{i}", daemon=True)
            for i in range(options.writers)
        ]
        done = threading.Event()
        monitor = threading.Thread(
            target=self.watch, args=(on_progress, done), name="backfill-progress", daemon=True
        )
        for thread in [*workers, monitor]:
            thread.start()
        try:
            self._count_todo(coverage)
            self.embed()
            for thread in workers:
                thread.join()
        except BaseException as exc:
            # Ctrl-C in the calling thread: never leave readers or writers running.
            self.fail(exc)
            for thread in workers:
                thread.join()
            done.set()
            monitor.join()
            self._heartbeat(final=True, count=False)
            raise
        done.set()
        monitor.join()
        if self.stopped_by == "done" and self.stop.is_set() and self.error is None:
            self.stopped_by = "stop"
        if on_progress is not None and self.error is None:
            on_progress(self.progress)
        # the heartbeat goes while the coverage is counted (unless the reader's last look counted it) and
        # recorded
        farewell = threading.Thread(
            target=self._heartbeat, kwargs={"final": True, "count": False}, name="backfill-farewell"
        )
        farewell.start()
        try:
            if self.error is not None:
                if isinstance(self.error, LatticeError):
                    with contextlib.suppress(LatticeError):
                        self.migration.fail(f"backfill: {self.error}")
                raise self.error
            final = self.final or self._coverage()
            self._record_progress(final)
        finally:
            farewell.join()
        return self._report(final.covered, final.total)

    def watch(self, on_progress: Callable[[BackfillProgress], None] | None, done: threading.Event) -> None:
        """Progress thread: the callback a few times a second, and this worker's heartbeats."""
        options = self.options
        try:
            while not self.counted.wait(0.1):  # report the run's numbers once they are counted
                if done.is_set():
                    return
            last_beat = last_count = time.monotonic()
            self._heartbeat(final=False, count=False)
            while not done.wait(0.1):
                with self.lock:
                    self.progress.queue_embed = self.embed_q.qsize()
                    self.progress.queue_write = self.write_q.qsize()
                if on_progress is not None:
                    on_progress(self.progress)
                now = time.monotonic()
                if now - last_beat >= options.heartbeat_interval:
                    count = now - last_count >= options.progress_interval
                    last_beat = now
                    last_count = now if count else last_count
                    self._heartbeat(final=False, count=count)
        except BaseException as exc:  # a failing progress callback stops the run
            self.fail(exc)

    def _record_progress(self, coverage: Coverage | None = None) -> None:
        """Record the coverage counted from the data; another worker's concurrent record is retried
        (with a fresh count: the other worker may have written meanwhile). The first attempt is against
        the record as this run last read it (its heartbeats read it): one round trip less when nobody else
        wrote it since, and a retry when somebody did."""
        for attempt in range(5):
            try:
                # a completion's history entry stays in the record, which carries it (the history lists
                # it, the next transition appends it): no request after the run's last write
                self.migration.progress(
                    coverage if attempt == 0 else None, optimistic=attempt == 0, append_history=False
                )
                return
            except ConcurrentTransitionError:
                continue
            except InvalidTransitionError:
                return

    def _repair_stamps(self) -> None:
        """Stamp the target model where the strategy finds a stamp cut off after its vector was written
        (informative only: the vectors, or for a re-embed the stamps, are what the work selects by)."""
        try:
            self.strategy.repair_stamps(self.store)
        except LatticeError as exc:
            log.warning("%s: could not repair model stamps: %s", self.collection, exc)

    def _heartbeat(self, *, final: bool, count: bool) -> None:
        """Record this worker's numbers for ``status`` and notice a pause; with ``count``, also record
        the coverage counted from the data in the shared state (counting scans in local mode)."""
        key = f"{self.collection}:{self.worker}"
        try:
            if final:
                self.store.delete_record(_HEARTBEAT, key)
            else:
                payload = self.progress.to_dict()
                payload.update(
                    shard=str(self.options.shard) if self.options.shard else None,
                    shard_method=self.shard_method,
                    at=time.time(),
                )
                self.store.put_record(_HEARTBEAT, key, payload)
                state = self.migration.snapshot(refresh=True).state
                if state.status in (Status.PAUSED, Status.CANCELLED) and not self.stop.is_set():
                    log.warning("%s: the migration is %s; stopping", self.collection, state.status.value)
                    self.halt("paused")
                if count:
                    with contextlib.suppress(ConcurrentTransitionError, InvalidTransitionError):
                        self.migration.progress()
        except LatticeError as exc:  # progress records are informative; the data is the checkpoint
            log.warning("%s: could not record progress: %s", self.collection, exc)

    def _report(self, covered: int, total: int) -> BackfillReport:
        return BackfillReport(
            collection=self.collection,
            written=self.progress.written,
            failed=self.progress.failed,
            truncated=self.progress.truncated,
            tokens=self.progress.tokens,
            passes=self.passes,
            elapsed=self.progress.elapsed,
            covered=covered,
            total=total,
            stopped_by=self.stopped_by,
            shard_method=self.shard_method,
            embedding=0.0 if self.first_pass is None else self.last_pass - self.first_pass,
        )


def write_target_vectors(
    store: Store, plan: MigrationPlan, pending: dict[Any, tuple[str, NDArray[np.float32]]]
) -> list[Any]:
    """Write target vectors without ever overwriting a fresher one; return the ids written.

    The plan's strategy writes them (:meth:`~lattice_qdrant.strategies.MigrationStrategy.write_target`):
    each point only if it still lacks the target and still holds the text its vector was embedded from, so a
    write the application made meanwhile wins, and stamped with the target model. Used by the backfill and
    by read-repair.
    """
    return strategy_for(plan).write_target(store, pending)


def _not(flt: models.Filter) -> models.Filter:
    return models.Filter(must_not=[flt])


def running(store: Store, collection: str, *, max_age: float = 30.0) -> list[dict[str, Any]]:
    """Heartbeats of backfill workers on ``collection`` seen in the last ``max_age`` seconds (read-only)."""
    now = time.time()
    return [
        r
        for r in store.list_records(_HEARTBEAT, collection=collection)
        if now - float(r.get("at", 0.0)) <= max_age
    ]


def run_backfill(
    migration: Migration,
    embedder: Embedder,
    options: BackfillOptions | None = None,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    metrics: BackfillMetrics = NO_METRICS,
) -> BackfillReport:
    """Fill the target vector of every point of ``migration.collection`` that lacks it.

    The migration must be started (in progress or completed). When the run ends with every point covered,
    the shared state records completion.

    Args:
        migration: the collection's migration.
        embedder: the target model's embedder (checked against the target spec).
        options: batch size, workers, throttle, budgets, shard and priorities.
        stop: set it (e.g. from a SIGTERM handler) to stop after the batches in flight.
        on_progress: called with the running numbers a few times a second.
        metrics: where metrics go (see :mod:`lattice_qdrant.metrics`).

    Raises:
        MigrationError: the migration is not started, is paused, failed or cancelled.
        StoreError: Qdrant failed after retries (the state records the failure; ``resume`` clears it).
    """
    options = options or BackfillOptions()
    # The first pass starts with the traffic queue: read it while the record is read and checked, one
    # round trip less before the first forward pass (read-only; dropped if the run does not start).
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-traffic")
    try:
        traffic_ahead = ahead.submit(traffic.queued_ids, migration.store, migration.collection, _TRAFFIC_TAKE)
        snap = migration.snapshot(refresh=True)  # the run's one read of the record before it starts
        # the history entry the record carries (the start's, written by another process) is appended
        # now, not by the run's closing write, which is then the run's last request
        ahead.submit(migration.keep_history)
    finally:
        ahead.shutdown(wait=False)
    state, strategy = snap.state, migration.strategy_of(snap)
    if state.status not in (Status.IN_PROGRESS, Status.COMPLETED) or state.finalized:
        hint = {
            Status.PLANNED: "start it first",
            Status.PAUSED: "resume it first",
            Status.FAILED: "resume it first (the last error was: " + str(state.error) + ")",
        }.get(state.status, "plan a new migration")
        raise MigrationError(
            f"cannot backfill {migration.collection!r}: the migration is {state.label}; {hint}"
        )
    strategy.check_backfill(migration.store)
    # the embedder must fit the target spec (fails fast, before any thread starts)
    embed_checked(embedder, ["lattice-qdrant"], snap.plan.target)
    run = _Run(migration, strategy, embedder, options, stop or threading.Event(), metrics)
    run.traffic_ahead = traffic_ahead
    with frozen_heap():
        return run.run(on_progress)
