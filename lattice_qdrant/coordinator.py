"""The coordinator: applies lifecycle events to a collection's migration record, shared by every process.

The record (plan, state, epoch) lives in the control collection; each transition reads it, computes the next
state with the pure :func:`~lattice_qdrant.state.transition`, and writes it back with a compare-and-set on the
epoch. Of two processes applying events at once, exactly one wins; the other gets
:class:`~lattice_qdrant.errors.ConcurrentTransitionError` and nothing of its event is applied. A write whose
reply is lost is recognised by its token, and each transition's history entry travels in the record it wrote,
so it is recorded exactly once (see :meth:`Migration.apply`).

Routing reads a cached copy of the record that is at most ``refresh_interval`` seconds old (2 s by
default): every process wrapping a client on the same Qdrant routes the same way within that bound. The
process that applies a transition sees it at once. Coverage is always counted from the data
(``has_vector``), never from a counter kept in memory.

What a lifecycle step does to the data is the plan's strategy's (:mod:`lattice_qdrant.strategies`, chosen
once per plan read: ``Migration.strategy``): this module records the transitions and asks the strategy what
start prepares, what cutover switches, what finalize drops, what cancel cleans up and how restore works.
The gates it asks before a transition are pure (:mod:`lattice_qdrant.gates`).

Why a control collection rather than collection metadata: metadata has no compare-and-set, and a
conditional upsert on a point's ``epoch`` is one; a control collection also holds the model registry and the
history of every transition, and survives the migrated collection being replaced (blue-green).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import backups
from .calibration import RECORD_FIELD as _CALIBRATION
from .calibration import ScoreCalibration
from .embedders import Embedder
from .errors import (
    CalibrationError,
    ConcurrentTransitionError,
    InvalidTransitionError,
    MigrationExistsError,
    MigrationNotFoundError,
    QualityGateError,
    StoreError,
    TextFieldError,
    TransientStoreError,
)
from .gates import RECORD_KIND as _COMPARISON
from .gates import quality_gate
from .plan import MigrationPlan
from .registry import ModelRegistry
from .routing import Coverage, Routing, Snapshot, needs_coverage, route
from .state import (
    Cutover,
    Error,
    Event,
    Finalize,
    MigrationState,
    Pause,
    Progress,
    Resume,
    Rollback,
    Status,
    rollback_window_left,
    transition,
)
from .store import Store
from .strategies import MigrationStrategy, strategy_for

__all__ = ["DEFAULT_REFRESH_INTERVAL", "Migration", "Routing", "Snapshot", "find_migration", "plan_migration"]

log = logging.getLogger(__name__)

_KIND = "migration"
#: Records mapping another name of a migrated collection (a blue-green alias or target) to its record.
NAME_KIND = "migration_name"
#: Seconds a process may route by a cached state before reading it again.
DEFAULT_REFRESH_INTERVAL = 2.0
#: The record's copy of the history entry of the transition that wrote it (see ``Migration.apply``).
_LAST_EVENT = "last_event"


@dataclass(frozen=True)
class _Unsettled:
    """A write of the state that raised before its outcome was known (its reply and read-back failed)."""

    event: str
    token: str
    state: MigrationState
    entry: dict[str, Any] | None


def _history_entry(
    name: str, before: MigrationState | None, after: MigrationState, epoch: int, at: float, token: str
) -> dict[str, Any]:
    """The history entry of a transition; its id is derived from the token of the write that made it."""
    return {
        "event": name,
        "from": before.label if before is not None else None,
        "to": after.label,
        "epoch": epoch,
        "at": at,
        "token": token,
    }


def _keep_history(store: Store, collection: str, record: dict[str, Any]) -> None:
    """Append the history entry a record carries, before a write replaces the record (idempotent).

    Raises:
        StoreError: the append failed; nothing was changed, and the entry is still in the record.
    """
    entry = _carried(record)
    if entry is not None:
        store.append_event(collection, entry, event_id=str(entry["token"]))


def _carried(record: dict[str, Any]) -> dict[str, Any] | None:
    """The history entry a record carries (its last transition's), or ``None``."""
    entry = record.get(_LAST_EVENT)
    return entry if isinstance(entry, dict) and entry.get("token") else None


#: Points ``plan`` and ``start`` sample for the text field.
_TEXT_SAMPLE = 64


def _check_text_field(store: Store, collection: str, text_field: str, sample: int = _TEXT_SAMPLE) -> None:
    """Refuse a ``text_field`` that no sampled point holds text in (read-only).

    The first ``sample`` points are read with their payload. An empty collection passes, and so does a
    sample where some points hold text and others do not (``doctor`` reports how many).

    Raises:
        TextFieldError: the sample is not empty and no point of it holds text in ``text_field``.
    """
    page, _ = store.scroll(collection, limit=sample, with_payload=True)
    if not page:
        return
    for record in page:
        text = (record.payload or {}).get(text_field)
        if isinstance(text, str) and text.strip():
            return
    fields = sorted({key for record in page for key in (record.payload or {})})
    raise TextFieldError(collection, text_field, len(page), fields)


def plan_migration(store: Store, plan: MigrationPlan) -> Migration:
    """Record a new migration for ``plan.collection`` and register both models.

    Checks before anything is written that the server honours conditional writes (Qdrant 1.17+, every
    strategy), that the collection exists and that its source vector matches the
    source spec, that an in-place plan can add its vector (:meth:`Store.check_in_place`), that a sample of
    points holds text in ``text_field``, that neither model conflicts with the registry and that no
    unfinished migration exists. A collection whose previous migration was cancelled or finalized can be
    planned again.

    Raises:
        ServerVersionError: the server is older than 1.17, or reports no readable version.
        MigrationExistsError: the collection has an unfinished migration.
        ModelConflictError: a model spec conflicts with the registry (neither model is registered).
        UnnamedVectorError: an in-place plan on a collection with only the unnamed vector.
        TextFieldError: no sampled point holds text in ``text_field``.
        StoreError: the collection or its source vector does not fit the plan.
    """
    strategy = strategy_for(plan)
    store.check_conditional_writes(plan.collection)
    strategy.check_plan(store)
    source = strategy.source_info(store)
    if source.size != plan.source.dimension or source.distance != plan.source.distance:
        raise StoreError(
            f"the source vector is {source.size}-d {source.distance.value}, but the source model "
            f"{plan.source.qualified_id} is {plan.source.dimension}-d {plan.source.distance.value}",
            collection=plan.collection,
            vector=plan.source_vector,
        )
    _check_text_field(store, plan.collection, plan.text_field)
    registry = ModelRegistry(store)
    # every refusal before the first write: a conflicting target must not leave the source registered
    registry.check(plan.source)
    registry.check(plan.target)
    existing = store.get_record(_KIND, plan.collection)
    if existing is not None and not Snapshot.from_record(existing).state.terminal:
        raise MigrationExistsError(plan.collection, Snapshot.from_record(existing).state.label)
    registry.register(plan.source)
    registry.register(plan.target)
    migration = Migration(store, plan.collection)
    token = uuid.uuid4().hex
    entry = _history_entry("plan", None, MigrationState(), 1, migration.clock(), token)
    body = {
        "collection": plan.collection,
        "plan": plan.to_payload(),
        "state": MigrationState().to_dict(),
        _LAST_EVENT: entry,
    }
    if not store.insert_record(_KIND, plan.collection, body, token=token):
        existing = store.get_record(_KIND, plan.collection)
        if existing is None:
            raise StoreError("the migration record vanished while planning", collection=plan.collection)
        snap = Snapshot.from_record(existing)
        if not snap.state.terminal:
            raise MigrationExistsError(plan.collection, snap.state.label)
        _keep_history(store, plan.collection, existing)
        entry = body[_LAST_EVENT] = {**entry, "epoch": snap.epoch + 1}
        if store.replace_record(_KIND, plan.collection, body, expected=existing, token=token) is None:
            raise ConcurrentTransitionError(plan.collection, "plan", snap.epoch, snap.epoch + 1)
    for name in strategy.other_names():  # the wrapper finds the migration under these names too
        store.put_record(NAME_KIND, name, {"collection": plan.collection})
    strategy.planned(store)
    migration._append_history(entry)
    return migration


def find_migration(
    store: Store, name: str, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL
) -> Migration | None:
    """The migration of ``name``: a migrated collection, or another name of one (a blue-green alias or
    target collection, recorded under the source's name); ``None`` when there is none (read-only)."""
    migration = Migration(store, name, refresh_interval=refresh_interval)
    try:
        migration.snapshot(refresh=True)
    except MigrationNotFoundError:
        other = store.get_record(NAME_KIND, name)
        if other is None:
            return None
        migration = Migration(store, str(other["collection"]), refresh_interval=refresh_interval)
        migration.snapshot(refresh=True)
    return migration


class Migration:
    """One collection's migration: its shared record, lifecycle commands and routing.

    Args:
        store: the store adapter.
        collection: the migrated collection.
        refresh_interval: seconds a cached record is trusted for routing.
        clock: source of unix time (tests pass a fake one).
    """

    def __init__(
        self,
        store: Store,
        collection: str,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.collection = collection
        self.refresh_interval = refresh_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._read_at = 0.0
        self._coverage: Coverage | None = None
        self._coverage_at = 0.0
        self._unsettled: _Unsettled | None = None
        self._appended: str | None = None  # the token of the last history entry this object appended
        self._strategy: MigrationStrategy | None = None
        self._strategy_seen: MigrationPlan | None = None  # a plan object known to equal the strategy's

    # ----------------------------------------------------------------- reading

    def snapshot(self, *, refresh: bool = False) -> Snapshot:
        """The record, from cache when younger than ``refresh_interval`` (read-only).

        Raises:
            MigrationNotFoundError: the collection has no migration.
        """
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.refresh_interval
            if self._cached is not None and fresh and not refresh:
                return self._cached
        record = self.store.get_record(_KIND, self.collection)
        if record is None:
            raise MigrationNotFoundError(self.collection)
        snap = Snapshot.from_record(record)
        self._remember(snap)
        return snap

    def cached_snapshot(self) -> Snapshot | None:
        """The record as this object last read or wrote it, without reading it (``None``: never read);
        the async twin's ``state`` and ``plan`` come from it, so reading them does no I/O on the loop."""
        with self._lock:
            return self._cached

    def _remember(self, snap: Snapshot) -> None:
        with self._lock:
            if self._cached is None or snap.epoch >= self._cached.epoch:
                self._cached = snap
            self._read_at = time.monotonic()

    @property
    def plan(self) -> MigrationPlan:
        """The plan (read-only)."""
        return self.snapshot().plan

    @property
    def state(self) -> MigrationState:
        """The state, at most ``refresh_interval`` old (read-only)."""
        return self.snapshot().state

    @property
    def strategy(self) -> MigrationStrategy:
        """The plan's strategy (read-only), chosen once per plan read."""
        return self.strategy_of(self.snapshot())

    def strategy_of(self, snap: Snapshot) -> MigrationStrategy:
        """The strategy of ``snap``'s plan (read-only)."""
        with self._lock:
            # the plan object last found to be the strategy's is the common case (one snapshot serves the
            # calls of a refresh interval): no comparison of the plans, field by field
            if self._strategy is None or (
                snap.plan is not self._strategy_seen and self._strategy.plan != snap.plan
            ):
                self._strategy = strategy_for(snap.plan)
            self._strategy_seen = snap.plan
            return self._strategy

    def coverage(self) -> Coverage:
        """Points holding the target model, counted from the data now (read-only).

        The strategy says what holding it means: the target vector (in place, blue-green), the target's
        stamp (a re-embed, whose vectors share one name).
        """
        cov = self.strategy.coverage(self.store)
        with self._lock:
            self._coverage, self._coverage_at = cov, time.monotonic()
        return cov

    def recent_coverage(self) -> Coverage:
        """Coverage counted at most ``refresh_interval`` ago, for routing queries (read-only)."""
        with self._lock:
            cached, age = self._coverage, time.monotonic() - self._coverage_at
        if cached is not None and age < self.refresh_interval:
            return cached
        return self.coverage()

    def routing(self, coverage: float | None = None) -> Routing:
        """Where writes and queries go now (read-only).

        ``coverage`` is only counted (two exact counts) when the plan has a ``query_threshold`` and the
        migration is in the phase where it matters.
        """
        snap = self.snapshot()
        if coverage is None:
            coverage = self.recent_coverage().fraction if needs_coverage(snap) else 0.0
        return route(snap, coverage)

    @property
    def calibration(self) -> ScoreCalibration | None:
        """The score calibration stored with the migration, if it is one of the plan's two models
        (read-only; see :mod:`lattice_qdrant.calibration`)."""
        snap = self.snapshot()
        found = snap.calibration
        return found if found is not None and found.fits(snap.plan.source, snap.plan.target) else None

    def save_calibration(self, calibration: ScoreCalibration, *, attempts: int = 5) -> None:
        """Store ``calibration`` in the migration record (replacing one stored before), by compare-and-set:
        the state is unchanged, and a transition made meanwhile by another process is kept (the write is
        tried again on the record as it then is).

        Raises:
            CalibrationError: it was measured for other models than the plan's.
            ConcurrentTransitionError: the record kept moving for ``attempts`` tries.
        """
        for _ in range(attempts):
            snap = self.snapshot(refresh=True)
            plan = snap.plan
            if not calibration.fits(plan.source, plan.target):
                raise CalibrationError(
                    f"the calibration was measured for {calibration.source} -> {calibration.target}, but the "
                    f"migration of {self.collection!r} is {plan.source.qualified_id} -> "
                    f"{plan.target.qualified_id}"
                )
            kept = {"collection", "plan", "state", "backup_id", _LAST_EVENT}
            body = {k: v for k, v in snap.record.items() if k in kept}
            body[_CALIBRATION] = calibration.to_payload()
            stored = self.store.replace_record(_KIND, self.collection, body, expected=snap.record)
            if stored is not None:
                self._remember(Snapshot.from_record(stored))
                log.info("%s: score calibration stored (%s)", self.collection, calibration.describe())
                return
        latest = self.snapshot(refresh=True)
        raise ConcurrentTransitionError(self.collection, "save calibration", latest.epoch, latest.epoch)

    def rollback_window_left(self) -> float | None:
        """Seconds until finalize is allowed without force, or ``None`` outside the window."""
        snap = self.snapshot()
        return rollback_window_left(snap.state, snap.plan.policy, self.clock())

    def history(self) -> list[dict[str, Any]]:
        """Every recorded transition of this collection, oldest first, each once (read-only).

        The last transition's entry is also read from the record, which carries it: it is listed even when
        its append was cut off.
        """
        events = self.store.list_records("event", collection=self.collection)
        record = self.store.get_record(_KIND, self.collection)
        carried = record.get(_LAST_EVENT) if record is not None else None
        if isinstance(carried, dict) and carried.get("token") not in {e.get("token") for e in events}:
            events.append({**carried, "kind": "event", "collection": self.collection})
        return sorted(events, key=lambda e: (e.get("epoch", 0), e.get("at", 0.0)))

    # ----------------------------------------------------------------- writing

    def apply(
        self,
        event: Event,
        *,
        backup_id: str | None = None,
        optimistic: bool = False,
        append_history: bool = True,
    ) -> MigrationState:
        """Apply one event with compare-and-set and return the new state.

        ``backup_id`` records a re-embed's backup in the same write (kept by every later event). With
        ``optimistic``, the compare-and-set is against the record as this object last read or wrote it,
        which saves reading it first: a record moved on meanwhile is a ``ConcurrentTransitionError``, as
        when another process writes between our read and our write.

        A write whose reply was lost (it raised after its retries, yet took effect) is this call's success:
        the record read back holds its token. When even the read-back fails, ``TransientStoreError`` is
        raised, and the next call of the same event on this object returns the state that write made if it
        took effect (instead of a refusal such as "already cut over"), or applies the event if it did not.

        Each transition's history entry is recorded once: the record written carries it (so it is not lost
        if this process stops right after the write), it is appended under the write's token (appending it
        again changes nothing; with ``append_history`` false, not now), and the next transition appends it
        before replacing the record.

        Raises:
            TransitionError: the event is not allowed (or a guard refused it).
            ConcurrentTransitionError: another process changed the state between our read and write.
            TransientStoreError: Qdrant kept failing; whether the state was written is not known.
        """
        cached = self.cached_snapshot() if optimistic else None
        snap = cached if cached is not None else self.snapshot(refresh=True)
        done = self.settled(event.name, snap)
        if done is not None:
            return done
        new_state = transition(snap.state, event, snap.plan.policy)
        token = uuid.uuid4().hex
        body: dict[str, Any] = {
            "collection": self.collection,
            "plan": snap.record["plan"],
            "state": new_state.to_dict(),
        }
        if backup_id or snap.backup_id:
            body["backup_id"] = backup_id or snap.backup_id
        if _CALIBRATION in snap.record:  # measured for this plan: every transition keeps it
            body[_CALIBRATION] = snap.record[_CALIBRATION]
        entry: dict[str, Any] | None = None
        if not isinstance(event, Progress) or new_state.status != snap.state.status:
            # progress is recorded every few seconds by a backfill; only a change of status is history
            entry = _history_entry(event.name, snap.state, new_state, snap.epoch + 1, self.clock(), token)
            if self._unappended(snap.record) is not None:
                _keep_history(self.store, self.collection, snap.record)
            body[_LAST_EVENT] = entry
        elif _LAST_EVENT in snap.record:
            body[_LAST_EVENT] = snap.record[_LAST_EVENT]
        try:
            stored = self.store.replace_record(
                _KIND, self.collection, body, expected=snap.record, token=token
            )
        except TransientStoreError:
            with self._lock:
                self._unsettled = _Unsettled(event.name, token, new_state, entry)
            raise
        if stored is None:
            latest = self.snapshot(refresh=True)
            raise ConcurrentTransitionError(self.collection, event.name, snap.epoch, latest.epoch)
        self._remember(Snapshot.from_record(stored))
        if entry is not None and append_history:
            self._append_history(entry)
        log.info("%s: %s -> %s (%s)", self.collection, snap.state.label, new_state.label, event.name)
        return new_state

    def settled(self, name: str, snap: Snapshot) -> MigrationState | None:
        """The state an earlier ``name`` of this object wrote, if it raised with its outcome unknown and
        the write took effect (``snap``'s tokens hold it); ``None`` otherwise.

        A call of ``name`` consumes that memory (whether or not the write took effect, the call is then the
        retry it stands for); calls of other events leave it.
        """
        with self._lock:
            pending = self._unsettled
            if pending is None or pending.event != name:
                return None
            self._unsettled = None
        if pending.token not in snap.record.get("tokens", []):
            return None
        log.info("%s: %s had taken effect (its reply was lost)", self.collection, name)
        if pending.entry is not None:
            self._append_history(pending.entry)
        return pending.state

    def _append_history(self, entry: dict[str, Any]) -> None:
        """Append a transition's history entry under its token; a failure is logged (the record carries
        the entry until the next transition appends it)."""
        try:
            self.store.append_event(self.collection, entry, event_id=str(entry["token"]))
        except StoreError as exc:
            log.warning("%s: could not record %s in the history: %s", self.collection, entry["event"], exc)
            return
        self._appended = str(entry["token"])

    def keep_history(self) -> None:
        """Append the history entry the record carries (as this object last read it) unless this object
        appended it: the next transition then need not, one request less before its write (a backfill does
        this while its run starts). Idempotent; a failure is logged (the next transition appends it).
        """
        snap = self.cached_snapshot()
        entry = self._unappended(snap.record) if snap is not None else None
        if entry is not None:
            self._append_history(entry)

    def _unappended(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The history entry ``record`` carries, unless this object appended it."""
        entry = _carried(record)
        return entry if entry is not None and entry["token"] != self._appended else None

    def record_event(
        self, name: str, before: MigrationState | None, after: MigrationState, epoch: int
    ) -> None:
        try:
            self.store.append_event(
                self.collection,
                {
                    "event": name,
                    "from": before.label if before is not None else None,
                    "to": after.label,
                    "epoch": epoch,
                    "at": self.clock(),
                },
            )
        except StoreError as exc:  # the history is informative; the transition already happened
            log.warning("%s: could not record %s in the history: %s", self.collection, name, exc)

    def start(self) -> MigrationState:
        """Prepare the collection and start migrating: dual-writes begin.

        What start prepares is the strategy's (:meth:`~lattice_qdrant.strategies.MigrationStrategy.start`):
        the payload indexes and the target named vector (in place), the target collection and the copy
        into it (blue-green), the backup of every source vector (a re-embed). Each is resumable: a start
        cut off is finished by calling ``start`` again. The coverage counted from the data is recorded.

        Raises:
            TextFieldError: no sampled point holds text in the plan's ``text_field``; nothing was changed.
        """
        snap = self.snapshot(refresh=True)
        plan = snap.plan
        if snap.state.status == Status.PLANNED:
            _check_text_field(self.store, plan.collection, plan.text_field)
        return self.strategy_of(snap).start(self, snap)

    def sync_alias(self) -> bool:
        """Blue-green: put the alias where the recorded state says queries go; ``True`` if it moved."""
        snap = self.snapshot(refresh=True)
        return self.strategy_of(snap).sync_alias(self.store, snap.state)

    def progress(
        self, coverage: Coverage | None = None, *, optimistic: bool = False, append_history: bool = True
    ) -> MigrationState:
        """Record the coverage counted from the data (completes the migration at 100%).

        Args:
            coverage: a count just made (``coverage()``), to save counting again.
            optimistic: compare-and-set against the record as last read or written here (see
                :meth:`apply`), for a caller that retries a ``ConcurrentTransitionError``.
            append_history: append the completion's history entry now (see :meth:`apply`); ``False``
                leaves it to the record, which carries it: the history lists it, and the next transition
                appends it (one request less for a caller that finishes with this write).
        """
        cov = coverage if coverage is not None else self.coverage()
        return self.apply(
            Progress(processed=cov.covered, total=cov.total),
            optimistic=optimistic,
            append_history=append_history,
        )

    def fail(self, message: str) -> MigrationState:
        """Record a failure (a backfill error); ``resume`` clears it."""
        return self.apply(Error(message=message))

    def pause(self, reason: str = "") -> MigrationState:
        """Pause the backfill; writes keep going to both vectors."""
        return self.apply(Pause(reason=reason))

    def resume(self) -> MigrationState:
        """Resume after a pause or a failure."""
        return self.apply(Resume())

    def cancel(self, *, drop_target: bool = True) -> MigrationState:
        """Abandon the migration: writes go back to the source only.

        On a migration already cancelled, only the clean-up is done, so a cancel cut off after recording
        its state (killed, or a failure while dropping the target) is finished by calling it again, with
        the ``drop_target`` of that call: the target vector (in place) or the target collection
        (blue-green) is dropped unless it is false, and the alias is put back on the source collection.

        Args:
            drop_target: also delete the target named vector, or blue-green the target collection (its
                vectors are lost); ``False`` keeps it, also when finishing a cancel.

        Raises:
            ReembedCancelRefusedError: a re-embed with points holding the target model: their source vectors
                were overwritten, so cancelling would leave two models under one name; :meth:`restore`
                writes them back from the backup and cancels (and, run again, finishes a restore cut off).
        """
        snap = self.snapshot(refresh=True)
        return self.strategy_of(snap).cancel(self, drop_target=drop_target)

    def cutover(self, *, force: bool = False) -> MigrationState:
        """Switch queries to the target vector and open the rollback window.

        When the plan sets ``compare_margin``, the last recorded shadow comparison
        (``lattice-qdrant compare``) must show the target's recall at most that far below the source's.
        Blue-green: the target collection must exist and the copy into it be complete (unless forced), and
        the alias moves once the state is recorded.

        Raises:
            ThresholdNotMetError: coverage is below the plan's threshold and ``force`` is false.
            QualityGateError: the comparison gate refuses (or has no labelled comparison) and ``force``
                is false.
        """
        strategy = self.strategy
        self.sync_alias()
        strategy.check_cutover(self.store, self.state, force=force)
        cov = self.coverage()
        event = Cutover(coverage=cov.fraction, at=self.clock(), force=force)
        if not force:
            self._check_quality_gate(event)
        state = self.apply(event)
        strategy.sync_alias(self.store, state)
        return state

    def _check_quality_gate(self, event: Cutover) -> None:
        snap = self.snapshot(refresh=True)
        plan = snap.plan
        if plan.compare_margin is None:
            return
        try:
            transition(snap.state, event, plan.policy)  # the lifecycle's own refusals come first
        except InvalidTransitionError:
            return  # apply refuses it the same way (or finds that a cutover of ours already took effect)
        reason = quality_gate(
            self.store.get_record(_COMPARISON, self.collection),
            plan.compare_margin,
            source=plan.source.qualified_id,
            target=plan.target.qualified_id,
        )
        if reason is not None:
            raise QualityGateError(self.collection, reason, plan.compare_margin)

    def rollback(self) -> MigrationState:
        """Switch queries back to the source vector; writes keep going to both."""
        strategy = self.strategy
        self.sync_alias()
        state = self.apply(Rollback(at=self.clock()))
        strategy.sync_alias(self.store, state)
        return state

    def finalize(self, *, force: bool = False) -> MigrationState:
        """Drop the source vector and leave a stable single-model collection.

        Refused inside the rollback window, or with partial coverage, unless ``force``. If a previous
        finalize recorded its state but was cut off before dropping the source vector, calling it again
        drops the vector. What is dropped is the strategy's: the source named vector (in place), the
        source collection (blue-green), nothing (a re-embed, which is refused, even forced, while a point
        still holds the source). The source vectors are backed up first (``backup_policy``).

        Raises:
            RollbackWindowOpenError: the window is open or coverage is partial, and ``force`` is false.
            ReembedIncompleteError: a re-embed's points still hold the source model.
        """
        snap = self.snapshot(refresh=True)
        strategy = self.strategy_of(snap)
        if snap.state.finalized:
            strategy.drop_source(self.store, snap.state)
            return snap.state
        # Refresh the counts from the data, so that the completeness check is current.
        # (A failed migration records no progress; only a forced finalize gets past it.)
        with contextlib.suppress(InvalidTransitionError):
            self.progress()
        event = Finalize(at=self.clock(), force=force)
        transition(self.snapshot(refresh=True).state, event, snap.plan.policy)  # refuse before backing up
        strategy.check_finalize(self)
        backup = strategy.back_up_before_finalize(self)
        if backup is not None:
            current = self.snapshot(refresh=True)
            self.record_event(f"backup {backup}", current.state, current.state, current.epoch)
        state = self.apply(event)
        strategy.drop_source(self.store, state)
        return state

    def restore(
        self, backup_id: str | None = None, *, embedder: Embedder | None = None
    ) -> backups.RestoreReport:
        """Undo a finalize: re-create the source vector from its backup and reopen the rollback window.

        Writes go to both vectors again as soon as the vector exists (before the old vectors are written
        back, so nothing written meanwhile is lost); queries stay on the target until ``rollback``. Points
        changed or inserted since the backup get no source vector from it: given ``embedder`` (the source
        model's; ``lattice-qdrant restore`` gives it), they are embedded afresh (the report's ``embedded``),
        otherwise they are reported; embed them before rolling back.

        Blue-green: the source collection is created again (the source vector and the target collection's
        payload indexes), writes reach both collections again, every point of the target collection is
        copied back (payload, stamped with the source model), then the backup's vectors are written. The
        alias stays on the target collection until ``rollback``. A restore cut off halfway is finished by
        calling it again.

        A re-embed (any time after start, finalized or not) is undone differently, since its source vectors
        were overwritten under the same name: the migration is cancelled first (reopened and rolled back on
        the way when needed), so writes go to the source model only; after ``refresh_interval`` (every
        process then routes so) each backed-up source vector is written back with its model fields, only
        where the point still holds the text of its backup entry; the count and checksum are checked against
        the manifest. Points changed since keep the target's vector and stamp unless ``embedder`` embeds them
        with the source model. Resumable: run it again on the cancelled migration.

        Raises:
            MigrationError: no usable backup.
            CollectionNotFoundError: blue-green, and the target collection is gone.
        """
        snap = self.snapshot(refresh=True)
        return self.strategy_of(snap).restore(self, backup_id, embedder=embedder)

    def finalize_backup(self, backup_id: str | None = None) -> backups.Manifest:
        """The backup ``restore`` uses: ``backup_id``, or the newest complete backup of the source vector
        (for a re-embed: the backup its start made).

        Raises:
            MigrationError: there is no such backup.
        """
        snap = self.snapshot(refresh=True)
        return self.strategy_of(snap).finalize_backup(self, backup_id)

    def protects(self, manifest: backups.Manifest) -> str | None:
        """Why the migration still needs a backup (its rollback window is open), or ``None``.

        A re-embed's backup is needed from start on: it holds the only copy of the overwritten source
        vectors, until the migration is cancelled with no point left on the target, or finalized and its
        rollback window has passed.
        """
        snap = self.snapshot(refresh=True)
        return self.strategy_of(snap).protects(self, snap, manifest)
