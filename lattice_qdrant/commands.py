"""The operator's commands as plain Python functions; the CLI is a thin layer over them.

Each command takes a :class:`Session` first (a connection to Qdrant plus the settings) and returns data
(:class:`StatusReport`, :class:`DoctorReport`, backfill reports) that the CLI renders as text or JSON::

    from lattice_qdrant import commands
    with commands.Session(commands.Connection(path="./qdrant")) as session:
        commands.start(session, "docs")
        print(commands.status(session, ["docs"])[0].to_dict())
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from qdrant_client import QdrantClient

from . import backfill as bf
from . import backups, traffic
from . import compare as comparison
from . import probe as probing
from . import verify as verification
from .calibration import ScoreCalibration
from .client import LatticeClient, wrap
from .config import Settings, load_settings
from .coordinator import Migration
from .embedders import Embedder, EmbedderSettings, check_embedder, embedder_for
from .errors import (
    CalibrationError,
    ConfigError,
    EmbedderError,
    LatticeError,
    MigrationNotFoundError,
    ModelNotFoundError,
    ServerVersionError,
)
from .metrics import NO_METRICS, BackfillMetrics
from .options import choices
from .plan import MigrationPlan, PlanOptions, PlanSettings
from .report import format_bytes
from .spec import ModelSpec
from .state import MigrationState, Phase, Status, format_duration
from .store import COUNT_PAGE, PAYLOAD_INDEXES, RetryPolicy, Store
from .strategies import MigrationStrategy, strategy_class

__all__ = [
    "Connection",
    "DoctorReport",
    "Finding",
    "RestoreOutcome",
    "Session",
    "StatusReport",
    "backfill",
    "backfill_options",
    "cancel",
    "compare",
    "cutover",
    "delete_backup",
    "doctor",
    "dry_run",
    "finalize",
    "format_bytes",
    "list_backups",
    "list_models",
    "migrate",
    "parse_vector_models",
    "pause",
    "plan",
    "probe",
    "register_model",
    "restore",
    "resume",
    "rollback",
    "show_backup",
    "show_model",
    "spec_from_options",
    "start",
    "status",
    "verify",
]


@dataclass(frozen=True)
class Connection:
    """Which Qdrant to use: a server (``url``) or local mode at ``path`` (``":memory:"`` too)."""

    url: str | None = None
    path: str | None = None
    api_key: str | None = field(default=None, repr=False)
    grpc: bool = False
    timeout: int = 60

    def describe(self) -> str:
        """Where we connect, never showing the API key."""
        if self.url:
            return f"{self.url}{' (gRPC)' if self.grpc else ''}{' with an API key' if self.api_key else ''}"
        return f"local mode at {self.path}"

    def open(self) -> QdrantClient:
        """A new ``QdrantClient``.

        Raises:
            ConfigError: neither or both of ``url`` and ``path`` are given.
        """
        if bool(self.url) == bool(self.path):
            raise ConfigError(
                "give exactly one of --url (a Qdrant server) or --path (local mode), "
                "or set LATTICE_QDRANT_URL / LATTICE_QDRANT_PATH",
                key="url",
            )
        if self.url:
            return QdrantClient(
                url=self.url, api_key=self.api_key, prefer_grpc=self.grpc, timeout=self.timeout
            )
        if self.path == ":memory:":
            return QdrantClient(":memory:")
        return QdrantClient(path=self.path)


class Session:
    """An open connection, the wrapped client and the settings, for a run of commands.

    Args:
        connection: where Qdrant is.
        settings: migration defaults (loaded from file and environment when omitted).
        embedders: embedders by model reference, used instead of building them from specs.
        client: an existing ``QdrantClient`` to use instead of opening one (it is not closed).
        store: the store to reach Qdrant through instead of the client's own (a fake of
            :mod:`lattice_qdrant.testing`, for instance); its control collection and retries are its own.
    """

    def __init__(
        self,
        connection: Connection | None = None,
        settings: Settings | None = None,
        *,
        embedders: dict[str, Embedder] | None = None,
        client: QdrantClient | None = None,
        store: Store | None = None,
    ) -> None:
        self.connection = connection or Connection()
        self.settings = settings or load_settings()
        self._owns = client is None
        self.qdrant = client if client is not None else self.connection.open()
        self.client: LatticeClient = wrap(
            self.qdrant,
            embedders=embedders,
            control_collection=self.settings.control_collection,
            refresh_interval=self.settings.refresh_interval,
            retry=RetryPolicy(attempts=self.settings.retries),
            store=store,
            embedder_settings=self.settings,
        )

    @property
    def store(self) -> Any:
        """The store adapter."""
        return self.client.store

    def migration(self, collection: str) -> Migration:
        """The collection's migration (raises ``MigrationNotFoundError``)."""
        return self.client.migration(collection)

    def close(self) -> None:
        """Close the client if this session opened it."""
        if self._owns:
            self.qdrant.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- models


def register_model(session: Session, spec: ModelSpec) -> bool:
    """Register a model spec in Qdrant (a no-op if the same spec is registered; an error if another is).

    Returns:
        ``True`` if new, ``False`` if already registered identically.
    """
    return session.client.registry.register(spec)


def list_models(session: Session) -> list[ModelSpec]:
    """List the registered model specs. Read-only."""
    return session.client.registry.list()


def show_model(session: Session, ref: str) -> ModelSpec:
    """Show one registered model spec with its checksum. Read-only.

    ``ref`` is ``MODEL_ID``, ``MODEL_ID:vN`` or the spec's qualified id.
    """
    return session.client.registry.resolve(ref)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class StatusReport:
    """A collection's migration as a person (or a script, via :meth:`to_dict`) wants to read it."""

    collection: str
    status: str
    phase: str
    label: str
    source: str
    target: str
    source_vector: str
    target_vector: str
    covered: int
    total: int
    failed: int
    failures: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    write_route: str
    query_route: str
    query_vector: str
    cutover_threshold: float
    rollback_window_left: float | None
    finalized: bool
    error: str | None
    reason: str | None
    next_step: str
    strategy: str = "in_place"
    layout: str | None = None
    target_collection: str | None = None
    alias: str | None = None
    alias_points_to: str | None = None
    backup_id: str | None = None
    #: how ``--shard I/N`` splits the points: the sharded workers' method while they run (``"mixed"`` if
    #: they disagree), else what a sharded run would use now (``"slice"`` or ``"hash"``)
    shard_method: str | None = None
    #: points that mixed queries met without the target vector, queued for the backfill to take first
    traffic_queued: int = 0
    #: the score calibration stored with the migration (what measured it, when, on how many queries and
    #: scores, at which coverage; ``None`` when none fits the plan's models), see :func:`calibrate`
    calibration: dict[str, Any] | None = None
    #: the command that stores one, when none is and queries are or will be answered by the target model
    calibration_hint: str | None = None

    @property
    def coverage(self) -> float:
        """Fraction of points with the target vector."""
        return 1.0 if self.total == 0 else self.covered / self.total

    @property
    def rate(self) -> float:
        """Points per second of the running backfill workers together."""
        return float(sum(float(w.get("rate") or 0.0) for w in self.workers))

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, while a backfill runs."""
        rate = self.rate
        return (self.total - self.covered) / rate if rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``status --json``)."""
        data = asdict(self)
        data.update(coverage=round(self.coverage, 6), rate=round(self.rate, 3), eta=self.eta)
        return data


def _next_step(state: MigrationState, strategy: MigrationStrategy, report: StatusReport) -> str:
    c, plan = report.collection, strategy.plan
    if state.finalized:
        return f"nothing to do: {c!r} is stable on {report.target}"
    if state.status == Status.CANCELLED:
        return strategy.cancelled_next_step(report.covered) or (
            f"plan a new migration: lattice-qdrant plan {c} --source ... --target ..."
        )
    if state.status == Status.PLANNED:
        return f"lattice-qdrant doctor {c}, then lattice-qdrant start {c}"
    if state.status == Status.PAUSED:
        return f"lattice-qdrant resume {c}"
    if state.status == Status.FAILED:
        return f"fix the cause ({state.error}), then lattice-qdrant resume {c}"
    if state.phase == Phase.ROLLBACK_WINDOW:
        left = report.rollback_window_left
        if left:
            return (
                f"check query quality; lattice-qdrant rollback {c} if it got worse, "
                f"lattice-qdrant finalize {c} in {format_duration(left)} (or now with --force)"
            )
        return f"lattice-qdrant finalize {c}"
    if report.coverage >= plan.cutover_threshold:
        return f"lattice-qdrant cutover {c}"
    if report.workers:
        return "wait for the running backfill"
    return f"lattice-qdrant backfill {c}"


def _shard_method_of(session: Session, workers: Sequence[Mapping[str, Any]]) -> str | None:
    """How ``--shard`` splits the points: the running sharded workers' method (a heartbeat without one is
    from a version that only had the id hash), else the one this server allows; ``None`` when its version
    cannot be read."""
    methods = {str(w.get("shard_method") or bf.SHARD_HASH) for w in workers if w.get("shard")}
    if methods:
        return methods.pop() if len(methods) == 1 else "mixed"
    try:
        return bf.shard_method(session.store.server_version())
    except LatticeError:
        return None


def _status_of(session: Session, collection: str) -> StatusReport:
    migration = session.migration(collection)
    snap = migration.snapshot(refresh=True)
    plan, state, strategy = snap.plan, snap.state, migration.strategy_of(snap)
    if state.finalized or state.status == Status.CANCELLED:
        # the target vector (or, blue-green, collection) may be gone after a cancel; the source
        # collection is gone after a blue-green finalize
        data = strategy.data_collection
        home = collection if session.store.collection_exists(collection) else data
        has_target = session.store.collection_exists(data) and plan.target_vector in session.store.vectors(
            data
        )
        total = session.store.count(home)
        covered = migration.coverage().covered if has_target else 0
    else:
        cov = migration.coverage()
        covered, total = cov.covered, cov.total
    routing = migration.routing(coverage=1.0 if total == 0 else covered / total)
    failures = bf.list_failures(session.store, collection)
    workers = bf.running(session.store, collection)
    report: dict[str, Any] = {
        "collection": collection,
        "status": state.status.value,
        "phase": state.phase.value,
        "label": state.label,
        "source": plan.source.qualified_id,
        "target": plan.target.qualified_id,
        "source_vector": plan.source_vector,
        "target_vector": plan.target_vector,
        "covered": covered,
        "total": total,
        "failed": len(failures),
        "failures": [{"point_id": f.point_id, "reason": f.reason} for f in failures[:20]],
        "workers": workers,
        "write_route": routing.write.value,
        "query_route": routing.query.value,
        "query_vector": routing.query_vector,
        "cutover_threshold": plan.cutover_threshold,
        "rollback_window_left": migration.rollback_window_left(),
        "finalized": state.finalized,
        "error": state.error,
        "reason": state.reason,
        "traffic_queued": traffic.queued(session.store, collection),
    }
    report.update(
        strategy.status_extras(session.store, snap), shard_method=_shard_method_of(session, workers)
    )
    report.update(_calibration_of(migration, state))
    status = StatusReport(**report, next_step="")
    return replace(status, next_step=_next_step(state, strategy, status))


def _calibration_of(migration: Migration, state: MigrationState) -> dict[str, Any]:
    """``status``'s calibration fields: the stored calibration's summary, or how to store one while a
    query's score_threshold is (or after cutover will be) answered by the target model and both vectors
    still exist to calibrate with."""
    found = migration.calibration
    if found is not None:
        keys = ("method", "measured_at", "queries", "k", "source_count", "target_count", "coverage")
        payload = found.to_payload()
        return {"calibration": {key: payload[key] for key in keys}}
    if state.finalized or state.status == Status.CANCELLED:
        return {}
    return {"calibration_hint": f"lattice-qdrant calibrate {migration.collection}"}


def status(session: Session, collections: Sequence[str] | None = None) -> list[StatusReport]:
    """Show phase, models, coverage, failures, backfill rate and ETA, routing, score calibration and the
    next step. Read-only.

    One report per collection named, or per migration when none is.
    """
    if not collections:
        records = session.store.list_records("migration")
        collections = sorted(str(r["collection"]) for r in records)
    return [_status_of(session, c) for c in collections]


# --------------------------------------------------------------------------- lifecycle


def plan(
    session: Session,
    collection: str,
    *,
    source: str,
    target: str,
    source_vector: str,
    target_vector: str | None = None,
    **options: Any,
) -> StatusReport:
    """Plan moving a collection from one registered model to another (nothing changes yet).

    Models are referenced as ``MODEL_ID``, ``MODEL_ID:vN`` or qualified ids. ``options`` are the
    :class:`~lattice_qdrant.plan.PlanOptions` fields; those left out or ``None`` that the settings hold (the
    :class:`~lattice_qdrant.plan.PlanSettings` fields: thresholds, window, text field, backup policy,
    compare margin) come from the settings, the others default as the plan does. ``query_mode``,
    ``missing_policy`` and ``read_repair`` set up mixed-coverage queries; ``compare_margin`` gates cutover on
    the last shadow comparison (:func:`compare`).
    """
    given = {name: value for name, value in options.items() if value is not None}
    for name, info in PlanOptions.model_fields.items():
        allowed = choices(info)
        if allowed is not None and name in given:
            _check_choice(name, str(given[name]), allowed)
    compare_margin = given.get("compare_margin")
    if compare_margin is not None and not 0.0 <= compare_margin <= 1.0:
        raise ConfigError(
            f"compare_margin must be between 0 and 1, got {compare_margin}", key="compare_margin"
        )
    strategy_class(given.get("strategy", PlanOptions.model_fields["strategy"].default)).check_options(given)
    defaults = {name: getattr(session.settings, name) for name in PlanSettings.model_fields}
    session.client.plan(
        collection,
        source=session.client.registry.resolve(source),
        target=session.client.registry.resolve(target),
        source_vector=source_vector,
        target_vector=target_vector,
        **(defaults | given),
    )
    return _status_of(session, collection)


def _check_choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}", key=key)


def start(session: Session, collection: str) -> StatusReport:
    """Add the target named vector and payload indexes, and start dual-writing (re-embed: back up first).

    A re-embed backs up every source vector first (streaming), then starts dual-writing.
    """
    session.migration(collection).start()
    return _status_of(session, collection)


def pause(session: Session, collection: str, reason: str = "") -> StatusReport:
    """Pause the backfill; running workers stop after their batch, writes stay dual."""
    session.migration(collection).pause(reason)
    return _status_of(session, collection)


def resume(session: Session, collection: str) -> StatusReport:
    """Resume a paused or failed migration."""
    session.migration(collection).resume()
    return _status_of(session, collection)


def cancel(session: Session, collection: str, *, keep_target: bool = False) -> StatusReport:
    """Abandon the migration: writes go back to the source vector only (a re-embed: use restore). Run
    again on a cancelled migration, it finishes a cancel that was cut off.

    The target vector is dropped unless ``keep_target``.

    A re-embed is refused while points hold the target model: :func:`restore` undoes it (and cancels).
    """
    session.migration(collection).cancel(drop_target=not keep_target)
    return _status_of(session, collection)


def cutover(session: Session, collection: str, *, force: bool = False) -> StatusReport:
    """Switch queries to the target vector and open the rollback window.

    Refused below the coverage threshold (or by the quality gate) unless ``force``.
    """
    session.migration(collection).cutover(force=force)
    return _status_of(session, collection)


def rollback(session: Session, collection: str) -> StatusReport:
    """Switch queries back to the source vector; writes keep going to both."""
    session.migration(collection).rollback()
    return _status_of(session, collection)


def finalize(session: Session, collection: str, *, force: bool = False) -> StatusReport:
    """Drop the source vector after the rollback window: a stable single-model collection.

    Refused inside the rollback window unless ``force``.
    """
    session.migration(collection).finalize(force=force)
    return _status_of(session, collection)


def backfill_options(session: Session, **overrides: Any) -> bf.BackfillOptions:
    """Backfill options: the :class:`~.backfill.BackfillSettings` fields from the settings, and
    ``overrides`` (any :class:`~.backfill.BackfillOptions` field; ``None`` values ignored).

    Raises:
        ValueError: an option is out of bounds (a ``pydantic.ValidationError``).
    """
    values: dict[str, Any] = {
        name: getattr(session.settings, name) for name in bf.BackfillSettings.model_fields
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return bf.BackfillOptions(**values)


def backfill(
    session: Session,
    collections: Sequence[str],
    options: bf.BackfillOptions | None = None,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[bf.BackfillProgress], None] | None = None,
    metrics: BackfillMetrics = NO_METRICS,
) -> list[bf.BackfillReport]:
    """Re-embed the points that lack the target vector; safe to kill and run again at any moment.

    Backfills each collection in turn (see :func:`~.backfill.run_backfill`).

    A stop (SIGTERM / Ctrl-C) ends the run after the batches in flight; later collections are not started.
    """
    options = options or backfill_options(session)
    stop = stop or threading.Event()
    reports = []
    for collection in collections:
        if stop.is_set():
            break
        migration = session.migration(collection)
        embedder = session.client.embedder(migration.plan.target)
        reports.append(
            bf.run_backfill(migration, embedder, options, stop=stop, on_progress=on_progress, metrics=metrics)
        )
    return reports


def dry_run(
    session: Session, collections: Sequence[str], options: bf.BackfillOptions | None = None
) -> list[bf.DryRunReport]:
    """What a backfill of each collection would take (points, tokens, time, storage). Writes nothing."""
    options = options or backfill_options(session)
    out = []
    for collection in collections:
        migration = session.migration(collection)
        out.append(bf.estimate(migration, session.client.embedder(migration.plan.target), options))
    return out


def migrate(
    session: Session,
    collection: str,
    *,
    source: str | None = None,
    target: str | None = None,
    source_vector: str | None = None,
    target_vector: str | None = None,
    confirm: Callable[[str], bool] = lambda _: True,
    options: bf.BackfillOptions | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[bf.BackfillProgress], None] | None = None,
    force: bool = False,
    **plan_options: Any,
) -> StatusReport:
    """Plan, start, backfill and cut over in one go, asking before each step.

    ``confirm`` is asked before each step. Each step is skipped when already done, so an interrupted
    ``migrate`` is simply run again. ``plan_options`` (the :class:`~lattice_qdrant.plan.PlanOptions` fields,
    as for :func:`plan`) apply when the collection has no plan yet; ``options`` run the backfill.
    """
    try:
        migration = session.migration(collection)
    except MigrationNotFoundError:
        if not (source and target and source_vector):
            raise ConfigError(
                f"{collection!r} has no migration yet: give --source, --target and --source-vector",
                key="source",
            ) from None
        if not confirm(f"plan {collection}: {source} -> {target}?"):
            # declined: MigrationNotFoundError, unless another process planned it meanwhile
            return _status_of(session, collection)
        plan(
            session,
            collection,
            source=source,
            target=target,
            source_vector=source_vector,
            target_vector=target_vector,
            **plan_options,
        )
        migration = session.migration(collection)
    state = migration.snapshot(refresh=True).state
    if state.status == Status.PLANNED:
        if not confirm(f"start {collection} ({migration.strategy.start_summary()})?"):
            return _status_of(session, collection)
        migration.start()
    state = migration.snapshot(refresh=True).state
    if state.phase == Phase.MIGRATING and state.status in (Status.IN_PROGRESS, Status.COMPLETED):
        stop = stop or threading.Event()
        backfill(session, [collection], options, stop=stop, on_progress=on_progress)
        if stop.is_set():
            return _status_of(session, collection)
        report = _status_of(session, collection)
        if not confirm(f"cut over {collection} at {report.coverage:.1%} coverage?"):
            return report
        migration.cutover(force=force)
    return _status_of(session, collection)


# --------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class Finding:
    """One preflight check: ``verdict`` is ``ok``, ``warn`` or ``fail``."""

    check: str
    verdict: str
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    """Preflight findings; ``safe`` when none failed."""

    collection: str
    findings: list[Finding]

    @property
    def safe(self) -> bool:
        """Whether it is safe to start."""
        return all(f.verdict != "fail" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``doctor --json``)."""
        return {
            "collection": self.collection,
            "safe": self.safe,
            "findings": [asdict(f) for f in self.findings],
        }


def _server_finding(
    version: tuple[int, int, int] | None,
    strategy: type[MigrationStrategy],
    unreadable: ServerVersionError | None,
) -> tuple[str, str]:
    """The doctor's verdict and detail on the server's version for ``strategy`` (the strategy judges a
    version it can read). A server whose version cannot be read fails, as planning does."""
    if unreadable is not None:
        return "fail", str(unreadable)
    if version is None:
        return "ok", "local mode (qdrant-client): conditional writes work; named vectors can be added"
    return strategy.server_finding(version)


def _strict_mode_findings(
    store: Store,
    collection: str,
    *,
    text_field: str,
    stamp_filters_text: bool,
    total: int,
    settings: Settings,
    added_bytes: int = 0,
    routes_by_coverage: bool = False,
) -> list[Finding]:
    """What the collection's strict mode would refuse of a migration, and what lattice-qdrant does about
    it: each finding names the setting, the step it touches and the fix. Read-only.

    ``stamp_filters_text``: the target write stamps through a payload filter on the text field (the
    strategy's :attr:`~lattice_qdrant.strategies.MigrationStrategy.stamp_filters_text`: a re-embed's);
    ``added_bytes`` is what the migration adds to the collection's vectors (the target vector in place);
    ``routes_by_coverage``: queries are routed by a coverage count (the plan has a ``query_threshold``).
    """
    check = "strict mode"
    if store.is_local:
        return [Finding(check, "ok", "local mode has no strict mode (a server may have it: doctor reads it)")]
    config = store.strict_mode(collection)
    if config is None:
        return [Finding(check, "ok", "off for this collection")]
    found: list[Finding] = []

    def add(verdict: str, detail: str) -> None:
        found.append(Finding(check, verdict, detail))

    schema = store.payload_schema(collection)
    text_index = schema.get(text_field)
    batch = settings.batch_size
    if config.unindexed_filtering_update is False:
        if not stamp_filters_text:
            add(
                "ok",
                "unindexed_filtering_update=false: the backfill's conditions are an update_filter (not "
                "checked) and stamps go by ids",
            )
        elif text_index == "keyword":
            add(
                "ok",
                f"unindexed_filtering_update=false: the re-embed's stamp filters on {text_field!r}, which "
                "has a keyword index: one request per batch",
            )
        else:
            add(
                "warn",
                f"unindexed_filtering_update=false refuses the re-embed's one-request stamp (it filters on "
                f"{text_field!r}, which has no keyword index): lattice-qdrant writes the vectors, reads them "
                f"back and stamps by ids (one more request per batch); a keyword index on {text_field!r} "
                "keeps the one request",
            )
    if config.unindexed_filtering_retrieve is False:
        detail = (
            "unindexed_filtering_retrieve=false: the migration's own filters use indexed fields (the model "
            "stamp, has_vector, the backup's entry and model); filters you give (backfill priorities, "
            "restore --filter) must use indexed fields too"
        )
        if text_index is None:
            add(
                "warn",
                f"{detail}; compare --sample cannot filter on {text_field!r} (no index), so it reads every "
                "point's text instead",
            )
        else:
            add("ok", detail)
    if config.search_allow_exact is False:
        requests = max(1, -(-total // COUNT_PAGE))
        add(
            "warn",
            "search_allow_exact=false refuses exact counts: coverage, status and restore count by scrolling "
            f"ids instead (still exact, but {requests} request(s) of up to {COUNT_PAGE} ids for this "
            f"collection's {total} points instead of one)"
            + (
                f"; queries route by coverage, counted again every {settings.refresh_interval:g}s"
                if routes_by_coverage
                else ""
            )
            + "; set search_allow_exact=true for one-request counts",
        )
    limit = config.upsert_max_batchsize
    if limit is not None:
        if limit < max(batch, 256):
            add(
                "warn",
                f"upsert_max_batchsize={limit} is below the backfill's batch_size ({batch}) or the backup's "
                f"pages (256): writes are split into requests of {limit} points; a batch_size of {limit} or "
                "less keeps one write per batch",
            )
        else:
            add("ok", f"upsert_max_batchsize={limit} fits the backfill's batch_size ({batch})")
    limit = config.max_query_limit
    if limit is not None:
        add(
            "warn" if limit < bf.read_page_size(bf.BackfillOptions(batch_size=batch)) else "ok",
            f"max_query_limit={limit}: scroll pages are cut to {limit} points where they ask for more "
            f"(more requests); compare --k and queries asking for more than {limit} results are refused",
        )
    if config.search_max_batchsize is not None:
        add(
            "ok",
            f"search_max_batchsize={config.search_max_batchsize}: lattice-qdrant sends no batch searches "
            "(it bounds your application's)",
        )
    conditions, size = config.filter_max_conditions, config.condition_max_size
    if stamp_filters_text and (
        (conditions is not None and conditions < 2 * batch + 3) or (size is not None and size < batch)
    ):
        limits = ", ".join(
            f"{name}={value}"
            for name, value in (("filter_max_conditions", conditions), ("condition_max_size", size))
            if value is not None
        )
        add(
            "warn",
            f"{limits}: the re-embed's one-request stamp filter has about {2 * batch + 3} conditions and "
            f"{batch} ids; it stamps by ids instead (one more request per batch)",
        )
    for setting in ("read_rate_limit", "write_rate_limit"):
        rate = getattr(config, setting, None)
        if rate is not None:
            add(
                "warn",
                f"{setting}={rate} per minute: beyond it the server answers HTTP 429, retried with backoff "
                f"({settings.retries} attempts); the backfill sends two to four requests per batch of "
                f"{batch} points: cap it with max_rate",
            )
    for setting, what in (("max_resident_memory_percent", "memory"), ("max_disk_usage_percent", "disk")):
        percent = getattr(config, setting, None)
        if percent is not None:
            add(
                "warn",
                f"{setting}={percent}: writes are refused once the node's {what} use passes {percent}%; "
                + (
                    f"the migration adds about {format_bytes(added_bytes)}: keep that much headroom"
                    if added_bytes
                    else "keep headroom for the backup collection"
                ),
            )
    cap = config.max_collection_vector_size_bytes
    if cap is not None and added_bytes:
        vectors = store.vectors(collection)
        held = total * sum(v.size for v in vectors.values()) * 4
        if held + added_bytes > cap:
            add(
                "fail",
                f"max_collection_vector_size_bytes={cap}: the collection's vectors (about "
                f"{format_bytes(held)}) and the target vector (about {format_bytes(added_bytes)}) exceed it; "
                "raise it, or use the blue-green strategy",
            )
    cap = config.max_payload_index_count
    missing = [name for name in PAYLOAD_INDEXES if name not in schema]
    if cap is not None and missing and len(schema) + len(missing) > cap:
        add(
            "fail",
            f"max_payload_index_count={cap}: the collection has {len(schema)} payload indexes and start "
            f"creates {len(missing)} more ({', '.join(missing)}); raise it, or drop an unused index",
        )
    if not found:
        add("ok", "on; none of its settings touches a migration step")
    return found


def doctor(
    session: Session,
    collection: str,
    *,
    source: str | None = None,
    target: str | None = None,
    source_vector: str | None = None,
    text_field: str | None = None,
    sample: int = 100,
) -> DoctorReport:
    """Check, before anything is written, that ``collection`` can be migrated (by its plan's strategy, in
    place otherwise). Read-only.

    Uses the collection's plan when there is one; otherwise ``source``, ``target`` and
    ``source_vector`` (registered model references) say what to check.
    """
    store = session.store
    findings: list[Finding] = []

    def add(check: str, verdict: str, detail: str) -> None:
        findings.append(Finding(check, verdict, detail))

    # the server
    unreadable: ServerVersionError | None = None
    try:
        version = store.server_version()
    except ServerVersionError as exc:
        version, unreadable = None, exc
    except LatticeError as exc:
        add("server", "fail", f"cannot reach Qdrant: {exc}")
        return DoctorReport(collection, findings)
    try:
        planned: MigrationPlan | None = session.migration(collection).plan
    except MigrationNotFoundError:
        planned = None
    # a future migration is checked for the default strategy
    judge = strategy_class(planned.strategy if planned else PlanOptions.model_fields["strategy"].default)
    add("server", *_server_finding(version, judge, unreadable))
    if unreadable is None:
        add("shards", "ok", bf.shard_method_detail(bf.shard_method(version)))

    # what to check against
    source_spec: ModelSpec | None = None
    target_spec: ModelSpec | None = None
    target_vector: str | None = None
    try:
        existing = session.migration(collection).plan
        source_spec, target_spec = existing.source, existing.target
        source_vector, target_vector = existing.source_vector, existing.target_vector
        text_field = existing.text_field
        add("plan", "ok", f"{existing.source.qualified_id} -> {existing.target.qualified_id}")
    except MigrationNotFoundError:
        try:
            source_spec = session.client.registry.resolve(source) if source else None
            target_spec = session.client.registry.resolve(target) if target else None
        except ModelNotFoundError as exc:
            add("models", "fail", str(exc))
        if target_spec is not None:
            target_vector = target_spec.vector_name
        if not (source_spec and target_spec and source_vector):
            add(
                "plan",
                "warn",
                "no migration planned; give --source, --target and --source-vector to check a future one",
            )
    text_field = text_field or session.settings.text_field

    # the collection and its vectors
    if not store.collection_exists(collection):
        add("collection", "fail", f"collection {collection!r} does not exist")
        return DoctorReport(collection, findings)
    vectors = store.vectors(collection)
    total = store.count(collection)
    add("collection", "ok", f"{total} points; vectors: {', '.join(repr(n) for n in vectors) or 'none'}")
    for finding in judge.doctor_layout(vectors):
        add(*finding)
    if source_vector is not None:
        found = vectors.get(source_vector)
        if found is None:
            add("source vector", "fail", f"{source_vector!r} does not exist")
        elif source_spec is not None and (
            found.size != source_spec.dimension or found.distance != source_spec.distance
        ):
            add(
                "source vector",
                "fail",
                f"{source_vector!r} is {found.size}-d {found.distance.value}, but "
                f"{source_spec.qualified_id} is {source_spec.dimension}-d {source_spec.distance.value}",
            )
        else:
            add("source vector", "ok", f"{source_vector!r}: {found.size}-d {found.distance.value}")
    if target_vector is not None and target_spec is not None:
        for finding in judge.doctor_target(vectors, target_spec, target_vector, planned):
            add(*finding)

    # the text
    page, _ = store.scroll(collection, limit=sample, with_payload=[text_field])
    if page:
        with_text = sum(
            1
            for r in page
            if isinstance((r.payload or {}).get(text_field), str) and r.payload[text_field].strip()
        )
        share = with_text / len(page)
        verdict = "ok" if share == 1 else "warn" if share > 0 else "fail"
        add(
            "text field",
            verdict,
            f"{text_field!r} holds text on {with_text} of {len(page)} sampled points"
            + ("" if share == 1 else "; points without text will be recorded as failures"),
        )
    else:
        add("text field", "ok", "the collection is empty")

    # the target model
    if target_spec is not None:
        try:
            embedder = session.client.embedder(target_spec)
            check_embedder(embedder, target_spec)
            started = time.perf_counter()
            embedder.embed(["lattice-qdrant doctor"])
            add(
                "target model",
                "ok",
                f"{target_spec.qualified_id} loads; {embedder.dimension}-d as registered "
                f"({time.perf_counter() - started:.2f}s for one text)",
            )
        except LatticeError as exc:
            add("target model", "fail", str(exc))

    # payload indexes
    if store.is_local:
        add("payload indexes", "ok", "local mode ignores payload indexes; start requests them anyway")
    else:
        schema = store.payload_schema(collection)
        for name, kind in PAYLOAD_INDEXES.items():
            have = schema.get(name)
            if have is None:
                add("payload indexes", "ok", f"{name!r} ({kind.value}) missing; start will create it")
            elif have != kind.value:
                add("payload indexes", "fail", f"{name!r} is indexed as {have}, needs {kind.value}")
            else:
                add("payload indexes", "ok", f"{name!r} ({kind.value}) present")

    # strict mode
    findings.extend(
        _strict_mode_findings(
            store,
            collection,
            text_field=text_field,
            stamp_filters_text=judge.stamp_filters_text,
            total=total,
            settings=session.settings,
            added_bytes=total * judge.target_bytes(target_spec) if target_spec is not None else 0,
            routes_by_coverage=planned is not None and planned.query_threshold is not None,
        )
    )

    # storage and memory
    if target_spec is not None:
        add(*judge.doctor_storage(target_spec, total))
    return DoctorReport(collection, findings)


def spec_from_options(
    model_id: str,
    *,
    name: str,
    version: int = 1,
    dimension: int | None = None,
    distance: str = "Cosine",
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int | None = None,
    prompt: str | None = None,
    revision: str | None = None,
    backend: str = "torch",
    quantization: str | None = None,
    settings: EmbedderSettings | None = None,
) -> ModelSpec:
    """A spec from CLI options; the dimension is read from the model when not given (loads it, on its
    backend, as ``settings`` say: an onnx or openvino model is exported then, if it is not cached)."""
    fields: dict[str, Any] = {
        "model_id": model_id,
        "version": version,
        "distance": distance,
        "name": name,
        "pooling": pooling,
        "normalize": normalize,
        "max_length": max_length,
        "prompt": prompt,
        "revision": revision,
        "backend": backend,
        "quantization": quantization,
    }
    if dimension is None:
        probe = ModelSpec.model_validate({**fields, "dimension": 1})
        if name.startswith("hash:"):
            raise ConfigError("a hash:bow model needs --dimension", key="dimension")
        dimension = embedder_for(probe, settings).dimension
    return ModelSpec.model_validate({**fields, "dimension": dimension})


# --------------------------------------------------------------------------- shadow comparison


def compare(
    session: Session,
    collection: str,
    *,
    queries_file: str | None = None,
    sample: int | None = None,
    ks: Sequence[int] = comparison.DEFAULT_KS,
    record: bool = True,
    seed: int = 0,
    save_calibration: bool = False,
) -> comparison.ComparisonReport:
    """Run queries through both models and report overlap@k, rank correlation, recall@k and nDCG@k.

    Queries come from ``queries_file`` (JSON lines ``{"query": ..., "relevant": [ids]}`` or plain text
    lines), from ``sample`` points' own text (known-item queries), or both. The source, the target and
    mixed mode are searched (see :mod:`lattice_qdrant.compare`). Read-only, except that the summary is
    recorded for the cutover gate (the plan's ``compare_margin``) unless ``record`` is false, and that
    ``save_calibration`` stores the score calibration of the source's and target's top-10 scores with
    the migration (see :func:`calibrate`).
    """
    queries = comparison.load_queries(queries_file) if queries_file else []
    if sample is not None and sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}", key="sample")
    report = comparison.compare(
        session.client, collection, queries, ks=ks, sample=sample, seed=seed, origin=queries_file
    )
    if record:
        comparison.record_comparison(session.store, report)
    if save_calibration:
        _save_calibration(session, collection, report.calibration, report.calibration_problem)
    return report


def _save_calibration(
    session: Session, collection: str, calibration: ScoreCalibration | None, problem: str
) -> None:
    """Store a probe's or comparison's calibration with the collection's migration.

    Raises:
        CalibrationError: none was made (``problem`` says why), or it is of other models than the plan's.
        ConfigError: the collection has no migration to store it with.
    """
    if calibration is None:
        raise CalibrationError(f"no score calibration to save: {problem}")
    try:
        migration = session.migration(collection)
    except MigrationNotFoundError:
        raise ConfigError(
            f"--save-calibration stores the score calibration with the migration of {collection!r}, which "
            "has none: plan it first (lattice-qdrant plan), then run this again",
            key="save_calibration",
        ) from None
    migration.save_calibration(calibration)


# --------------------------------------------------------------------------- score thresholds


def calibrate(
    session: Session,
    collection: str,
    *,
    queries_file: str | None = None,
    sample: int | None = None,
    k: int = comparison.GATE_K,
    seed: int = 0,
) -> ScoreCalibration:
    """Measure where the target model's scores lie against the source's, and store it with the migration,
    so that a query's score_threshold answered in the target space is translated.

    Each query is embedded by both models and searched on both sides (the points holding each model); the
    scores of every query's top ``k`` make each model's distribution, and a threshold is translated by
    matching their quantiles (see :mod:`lattice_qdrant.calibration`). Queries come from ``queries_file``
    (compare's format; real queries calibrate best) or are ``sample`` known-item queries drawn from the
    collection (200 by default without a file). Run it between the backfill's end and cutover; it writes
    only the migration record (its state unchanged), replacing a calibration stored before.
    """
    queries = comparison.load_queries(queries_file) if queries_file else []
    if sample is not None and sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}", key="sample")
    calibration = comparison.calibrate(
        session.client, collection, queries, sample=sample, k=k, seed=seed, origin=queries_file
    )
    session.migration(collection).save_calibration(calibration)
    return calibration


# --------------------------------------------------------------------------- probe


def probe(
    session: Session,
    collection: str,
    *,
    target: str,
    source: str | None = None,
    source_vector: str | None = None,
    queries_file: str | None = None,
    sample: int = probing.DEFAULT_SAMPLE,
    known_items: int | None = None,
    ks: Sequence[int] = comparison.DEFAULT_KS,
    seed: int = 0,
    margin: float = probing.DEFAULT_MARGIN,
    text_field: str | None = None,
    save_calibration: bool = False,
) -> probing.ProbeReport:
    """Tell on a sample, before anything is written, whether migrating to a model pays: recall, nDCG and
    overlap with confidence intervals, score distributions, time and storage, and a verdict. Read-only.

    The target embeds a seeded sample of ``sample`` points, and both models search that sample (the source
    among the stored source vectors, the target among the fresh embeddings) with labelled queries from
    ``queries_file`` (compare's format) or ``known_items`` known-item queries drawn from the sample (see
    :mod:`lattice_qdrant.probe`, which states the verdict's rule). Models are registered references
    (``MODEL_ID[:vN]``) or sentence-transformers model names (``org/name``), which need no registration.
    ``source`` and ``source_vector`` default to the collection's migration plan, when it has one whose
    source vector still exists; the vector also defaults to the collection's only vector. Nothing is
    written to the collection or the control collection, unless ``save_calibration`` asks to store the
    score calibration of the two models' top-10 scores with the collection's migration (which must exist
    and have these two models).
    """
    queries = comparison.load_queries(queries_file) if queries_file else []
    notes: list[str] = []
    plan: MigrationPlan | None = None
    if source is None:
        try:
            snap = session.migration(collection).snapshot(refresh=True)
        except MigrationNotFoundError:
            raise ConfigError(
                f"say which model {collection!r}'s vectors hold: --source MODEL_REF (a registered model, "
                "see lattice-qdrant models list); only a migration plan names it otherwise",
                key="source",
            ) from None
        plan = snap.plan
        if plan.source_vector not in session.store.vectors(collection):
            raise ConfigError(
                f"the migration of {collection!r} ({snap.state.label}) names the source model "
                f"{plan.source.qualified_id} in vector {plan.source_vector!r}, which no longer exists: "
                "give --source and --source-vector",
                key="source",
            )
        notes.append(
            f"the source model and vector come from the migration plan ({snap.state.label}): "
            f"{plan.source.qualified_id} in {plan.source_vector!r}"
        )
    source_spec, source_embedder = (
        (plan.source, session.client.embedder(plan.source))
        if plan is not None
        else _probe_model(session, source or "", "source")
    )
    target_spec, target_embedder = (
        (source_spec, source_embedder) if target == source else _probe_model(session, target, "target")
    )
    report = probing.probe(
        session.store,
        collection,
        source=source_spec,
        target=target_spec,
        source_embedder=source_embedder,
        target_embedder=target_embedder,
        source_vector=source_vector or (plan.source_vector if plan is not None else None),
        queries=queries,
        origin=queries_file,
        sample=sample,
        known_items=known_items,
        ks=ks,
        seed=seed,
        margin=margin,
        text_field=text_field or (plan.text_field if plan is not None else session.settings.text_field),
        max_text_chars=session.settings.max_text_chars,
        notes=notes,
    )
    if save_calibration:
        _save_calibration(session, collection, report.calibration, report.calibration_problem)
    return report


def _probe_model(session: Session, ref: str, role: str) -> tuple[ModelSpec, Embedder]:
    """A registered model (``MODEL_ID[:vN]``) or, for the target, a sentence-transformers name, and its
    embedder. Reads the registry only: an unregistered model stays unregistered."""
    try:
        spec = session.client.registry.resolve(ref)
    except ModelNotFoundError as exc:
        registered = ", ".join(f"{s.model_id}:v{s.version}" for s in session.client.registry.list()) or "none"
        if "/" not in ref:
            raise ModelNotFoundError(
                f"--{role} {ref!r}: {exc} (registered: {registered}); give a registered model or a "
                "sentence-transformers model name (org/name), or register it with lattice-qdrant models "
                "register"
            ) from None
        return _unregistered(ref, role)
    return spec, session.client.embedder(spec)


def _unregistered(name: str, role: str) -> tuple[ModelSpec, Embedder]:
    """A spec and embedder for a sentence-transformers model named on the command line (loads it)."""
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in name.rsplit("/", 1)[-1]).strip("._-")
    draft = ModelSpec(model_id=base or "model", version=1, dimension=1, name=name)
    embedder = embedder_for(draft)
    try:
        dimension = embedder.dimension
    except EmbedderError as exc:
        raise ModelNotFoundError(
            f"--{role} {name!r} is not a registered model and cannot be loaded as a sentence-transformers "
            f"model: {exc}"
        ) from exc
    return draft.model_copy(update={"dimension": dimension}), embedder


# --------------------------------------------------------------------------- verify


def parse_vector_models(session: Session, items: Sequence[str]) -> dict[str, ModelSpec]:
    """``["NAME=MODEL_REF", ...]`` -> the registered spec of each named vector.

    Raises:
        ConfigError: an item is not ``NAME=MODEL_REF``, or names a vector twice.
        ModelNotFoundError: a model is not registered.
    """
    out: dict[str, ModelSpec] = {}
    for item in items:
        name, sep, ref = item.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise ConfigError(f"invalid --vector {item!r}: expected NAME=MODEL_REF", key="vector")
        if name.strip() in out:
            raise ConfigError(f"--vector names {name.strip()!r} twice", key="vector")
        out[name.strip()] = session.client.registry.resolve(ref.strip())
    return out


def verify(
    session: Session,
    collection: str,
    *,
    vectors: Sequence[str] = (),
    sample: int | None = 200,
    all_points: bool = False,
    tolerance: float = 1e-3,
    fix: bool = False,
    seed: int = 0,
    text_field: str | None = None,
) -> verification.VerifyReport:
    """Re-embed points and report those whose vectors do not match their recorded model, or fix them.

    Checks a seeded sample of ``sample`` points, or every point with ``all_points``. Which model each
    vector holds comes from the collection's migration plan, or from ``vectors`` (``NAME=MODEL_REF`` items
    naming registered models), which take precedence. Read-only unless ``fix`` (see
    :mod:`lattice_qdrant.verify`).
    """
    vector_models = parse_vector_models(session, vectors) if vectors else None
    plan = None
    if vector_models is None:
        try:
            plan = session.migration(collection).snapshot(refresh=True).plan
        except MigrationNotFoundError:
            plan = None
    return verification.verify(
        session.store,
        session.client.registry,
        collection,
        vector_models=vector_models,
        plan=plan,
        sample=sample,
        all_points=all_points,
        text_field=text_field or (plan.text_field if plan is not None else session.settings.text_field),
        tolerance=tolerance,
        fix=fix,
        embedder_for_spec=session.client.embedder,
        seed=seed,
        max_text_chars=session.settings.max_text_chars,
    )


# --------------------------------------------------------------------------- backups


def list_backups(session: Session, collection: str | None = None) -> list[backups.Manifest]:
    """List vector backups, newest first (of one collection when named). Read-only."""
    return backups.list_backups(session.store, collection)


def show_backup(session: Session, backup_id: str) -> backups.Manifest:
    """Show a backup's manifest: counts, checksum, model, and whether it is complete. Read-only."""
    return backups.get_backup(session.store, backup_id)


def delete_backup(session: Session, backup_id: str, *, force: bool = False) -> None:
    """Delete a backup (refused while a rollback window still needs it, unless forced)."""
    manifest = backups.get_backup(session.store, backup_id)

    def protected(m: backups.Manifest) -> str | None:
        try:
            return session.migration(m.collection).protects(m)
        except MigrationNotFoundError:
            return None

    backups.delete_backup(session.store, manifest.backup_id, force=force, protected=protected)


@dataclass(frozen=True)
class RestoreOutcome:
    """What ``restore`` did: the backup's report, and the points embedded afresh with the source model."""

    report: backups.RestoreReport
    embedded: int
    status: StatusReport | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``restore --json``)."""
        return {
            "report": self.report.to_dict(),
            "embedded": self.embedded,
            "status": self.status.to_dict() if self.status else None,
        }


def restore(
    session: Session,
    collection: str,
    *,
    backup_id: str | None = None,
    ids: Sequence[Any] | None = None,
    flt: Any = None,
    force: bool = False,
) -> RestoreOutcome:
    """Undo a finalize or a whole re-embed from the backup (or roll back chosen points); resumable.

    Without ``ids`` or ``flt``: undo a finalize. The source vector is re-created, writes go to both vectors
    again, the backed-up vectors are written back (points changed since are reported, not clobbered), the
    points the backup cannot serve are embedded with the source model, and the rollback window reopens
    (queries stay on the target until ``rollback``). With ``ids`` or ``flt`` (on the backup's payload):
    roll back just those points' vectors (``force`` overwrites a vector they hold).

    A re-embed (at any point after start) is undone whole: the migration is cancelled (writes go to the
    source model only), every point gets back the source vector and model fields of its backup entry
    (entries of points written during the migration included), the count and checksum are verified against
    the manifest, and the points the backup cannot serve (changed since) are embedded with the source model.
    """
    store = session.store
    if ids is not None or flt is not None:
        manifest = (
            backups.get_backup(store, backup_id)
            if backup_id
            else session.migration(collection).finalize_backup()
        )
        report = backups.restore(store, manifest.backup_id, ids=ids, flt=flt, force=force)
        return RestoreOutcome(report=report, embedded=0, status=None)
    migration = session.migration(collection)
    report = migration.restore(backup_id, embedder=session.client.embedder(migration.plan.source))
    return RestoreOutcome(report=report, embedded=report.embedded, status=_status_of(session, collection))
