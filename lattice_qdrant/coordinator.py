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

from . import backups, bluegreen
from .errors import (
    CollectionNotFoundError,
    ConcurrentTransitionError,
    InvalidTransitionError,
    MigrationError,
    MigrationExistsError,
    MigrationNotFoundError,
    QualityGateError,
    StoreError,
    TextFieldError,
    TransientStoreError,
)
from .gates import RECORD_KIND as _COMPARISON
from .gates import check_reembed_cancel, check_reembed_finalize, quality_gate
from .plan import MigrationPlan, Strategy
from .registry import ModelRegistry
from .routing import Coverage, Routing, Snapshot, needs_coverage, route
from .spec import Distance
from .state import (
    Cancel,
    Cutover,
    Error,
    Event,
    Finalize,
    MigrationState,
    Pause,
    Phase,
    Progress,
    Reopen,
    Resume,
    Rollback,
    Start,
    Status,
    format_duration,
    rollback_window_left,
    transition,
)
from .store import Store, VectorInfo
from .strategies import MigrationStrategy, strategy_for

__all__ = ["DEFAULT_REFRESH_INTERVAL", "Migration", "Routing", "Snapshot", "find_migration", "plan_migration"]

log = logging.getLogger(__name__)

_KIND = "migration"
#: The reason recorded on a re-embed's backup.
_REEMBED_REASON = "reembed"
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
    entry = record.get(_LAST_EVENT)
    if isinstance(entry, dict) and entry.get("token"):
        store.append_event(collection, entry, event_id=str(entry["token"]))


def _source_vector(store: Store, plan: MigrationPlan) -> VectorInfo:
    """The collection's source vector as it is now.

    Raises:
        StoreError: the collection has no such vector (the message lists those it has).
    """
    vectors = store.vectors(plan.collection)
    found = vectors.get(plan.source_vector)
    if found is None:
        known = ", ".join(repr(n) for n in vectors) or "none"
        raise StoreError(
            f"the source vector does not exist (vectors: {known}; '' is the unnamed one)",
            collection=plan.collection,
            vector=plan.source_vector,
        )
    return found


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
    store.check_conditional_writes(plan.collection)
    if plan.strategy == Strategy.IN_PLACE:
        store.check_in_place(plan.collection, plan.source_vector)
    source = _source_vector(store, plan)
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
    if plan.blue_green:
        # the alias and the target collection name the same migration (the wrapper looks them up)
        for name in (plan.alias, plan.target_collection):
            if name:
                store.put_record(NAME_KIND, name, {"collection": plan.collection})
        bluegreen.forget_copy(store, plan)  # a copy recorded for an earlier plan is not this plan's
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
            if self._strategy is None or self._strategy.plan != snap.plan:
                self._strategy = strategy_for(snap.plan)
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

    def apply(self, event: Event, *, backup_id: str | None = None) -> MigrationState:
        """Apply one event with compare-and-set and return the new state.

        ``backup_id`` records a re-embed's backup in the same write (kept by every later event).

        A write whose reply was lost (it raised after its retries, yet took effect) is this call's success:
        the record read back holds its token. When even the read-back fails, ``TransientStoreError`` is
        raised, and the next call of the same event on this object returns the state that write made if it
        took effect (instead of a refusal such as "already cut over"), or applies the event if it did not.

        Each transition's history entry is recorded once: the record written carries it (so it is not lost
        if this process stops right after the write), it is appended under the write's token (appending it
        again changes nothing), and the next transition appends it before replacing the record.

        Raises:
            TransitionError: the event is not allowed (or a guard refused it).
            ConcurrentTransitionError: another process changed the state between our read and write.
            TransientStoreError: Qdrant kept failing; whether the state was written is not known.
        """
        snap = self.snapshot(refresh=True)
        done = self._settled(event.name, snap)
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
        entry: dict[str, Any] | None = None
        if not isinstance(event, Progress) or new_state.status != snap.state.status:
            # progress is recorded every few seconds by a backfill; only a change of status is history
            entry = _history_entry(event.name, snap.state, new_state, snap.epoch + 1, self.clock(), token)
            carried = snap.record.get(_LAST_EVENT)
            if not (isinstance(carried, dict) and carried.get("token") == self._appended):
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
        if entry is not None:
            self._append_history(entry)
        log.info("%s: %s -> %s (%s)", self.collection, snap.state.label, new_state.label, event.name)
        return new_state

    def _settled(self, name: str, snap: Snapshot) -> MigrationState | None:
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

    def _record_event(
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

        Creates the payload indexes and the target named vector (both idempotent, so a crash halfway is
        repaired by calling ``start`` again), then records the coverage counted from the data.

        Raises:
            TextFieldError: no sampled point holds text in the plan's ``text_field``; nothing was changed.
        """
        snap = self.snapshot(refresh=True)
        plan = snap.plan
        if snap.state.status == Status.PLANNED:
            _check_text_field(self.store, plan.collection, plan.text_field)
        if plan.blue_green:
            return self._start_blue_green(snap.state)
        if plan.reembed:
            return self._start_reembed(snap)
        self.store.check_in_place(self.collection, plan.source_vector)
        self.store.ensure_payload_indexes(self.collection)
        self.store.ensure_vector(self.collection, plan.target_vector, plan.target)
        cov = self.coverage()
        return self.apply(Start(processed=cov.covered, total=cov.total))

    def _start_blue_green(self, state: MigrationState) -> MigrationState:
        """Blue-green start: target collection, then dual-writes, then the copy (all resumable).

        Dual-writes begin before the copy so that no write made during the copy is missed; the copy
        inserts only points the wrapper has not written yet. Calling ``start`` again after a crash
        finishes the copy.
        """
        plan = self.plan
        if state.status == Status.PLANNED:
            bluegreen.prepare(self.store, plan)
            cov = self.coverage()
            state = self.apply(Start(processed=cov.covered, total=cov.total))
        elif state.phase == Phase.STABLE or state.terminal:
            raise InvalidTransitionError(state.label, "start")
        if not bluegreen.copy_complete(self.store, plan):
            bluegreen.copy_points(self.store, plan)
        return self.snapshot(refresh=True).state

    def _start_reembed(self, snap: Snapshot) -> MigrationState:
        """Re-embed start: back up every source vector, then dual-writes begin (Start).

        No point is overwritten before the backup is complete: the backfill and the wrapper's dual-writes
        only begin with the Start event, which records the backup. A start cut off during the backup is
        redone by calling ``start`` again (the incomplete backup is deleted); one cut off after the backup
        completed reuses it.
        """
        plan, state = snap.plan, snap.state
        if state.status != Status.PLANNED or state.phase != Phase.STABLE:
            done = self._settled("start", snap)  # a start of ours whose reply was lost
            if done is not None:
                return done
            raise InvalidTransitionError(state.label, "start", "it has already started")
        found = _source_vector(self.store, plan)
        if found.size != plan.target.dimension or found.distance != plan.target.distance:
            raise StoreError(
                f"the vector is {found.size}-d {found.distance.value}, but {plan.target.qualified_id} is "
                f"{plan.target.dimension}-d {plan.target.distance.value}: a re-embed cannot change the "
                "vector config; use the blue_green strategy",
                collection=self.collection,
                vector=plan.source_vector,
            )
        self.store.ensure_payload_indexes(self.collection)
        manifest = self._reembed_backup(plan)
        current = self.snapshot(refresh=True)
        self._record_event(f"backup {manifest.backup_id}", current.state, current.state, current.epoch)
        cov = self.coverage()
        return self.apply(Start(processed=cov.covered, total=cov.total), backup_id=manifest.backup_id)

    def _reembed_backup(self, plan: MigrationPlan) -> backups.Manifest:
        """The re-embed's backup: a complete one made for this plan by an earlier start, or a new one."""
        mine = [
            m
            for m in backups.list_backups(self.store, self.collection)
            if m.reason == _REEMBED_REASON
            and m.vector == plan.source_vector
            and m.model == plan.source.qualified_id
            and m.created_at >= plan.created_at
        ]
        complete = [m for m in mine if m.complete]
        if complete:
            return complete[0]
        for cut_off in mine:  # a start cut off during its backup
            backups.delete_backup(self.store, cut_off.backup_id, force=True)
        return self._back_up_source(plan, _REEMBED_REASON)

    def _back_up_source(self, plan: MigrationPlan, reason: str) -> backups.Manifest:
        """Back up every point's source vector (streaming) with ``reason``; return the manifest."""
        manifest = backups.create_backup(
            self.store,
            self.collection,
            plan.source_vector,
            model=plan.source.qualified_id,
            text_field=plan.text_field,
            reason=reason,
        )
        log.info("%s: backed up %d source vectors as %s", self.collection, manifest.count, manifest.backup_id)
        return manifest

    def sync_alias(self) -> bool:
        """Blue-green: put the alias where the recorded state says queries go; ``True`` if it moved."""
        snap = self.snapshot(refresh=True)
        return bluegreen.sync_alias(self.store, snap.plan, snap.state)

    def progress(self, coverage: Coverage | None = None) -> MigrationState:
        """Record the coverage counted from the data (completes the migration at 100%).

        Args:
            coverage: a count just made (``coverage()``), to save counting again.
        """
        cov = coverage if coverage is not None else self.coverage()
        return self.apply(Progress(processed=cov.covered, total=cov.total))

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
            MigrationError: a re-embed with points holding the target model: their source vectors were
                overwritten, so cancelling would leave two models under one name; :meth:`restore` writes
                them back from the backup and cancels (and, run again, finishes a restore cut off).
        """
        snap = self.snapshot(refresh=True)
        plan, state = snap.plan, snap.state
        cancelled = state.status == Status.CANCELLED
        if plan.reembed:
            check_reembed_cancel(state, self.collection, self.coverage().covered)
            return state if cancelled else self.apply(Cancel())
        if not cancelled:
            state = self.apply(Cancel())
        if plan.blue_green:
            bluegreen.clean_up_cancel(self.store, plan, state, drop_target=drop_target)
        elif drop_target:
            self.store.drop_vector(self.collection, plan.target_vector)
        return state

    def cutover(self, *, force: bool = False) -> MigrationState:
        """Switch queries to the target vector and open the rollback window.

        When the plan sets ``compare_margin``, the last recorded shadow comparison
        (``lattice-qdrant compare``) must show the target's recall at most that far below the source's.

        Raises:
            ThresholdNotMetError: coverage is below the plan's threshold and ``force`` is false.
            QualityGateError: the comparison gate refuses (or has no labelled comparison) and ``force``
                is false.
        """
        plan = self.plan
        if plan.blue_green:
            self.sync_alias()
            if not self.store.collection_exists(plan.data_collection):
                raise CollectionNotFoundError(
                    "cutover refused: the target collection does not exist", collection=plan.data_collection
                )
            if not bluegreen.copy_complete(self.store, plan) and not force:
                raise InvalidTransitionError(
                    self.state.label,
                    "cutover",
                    "the copy into the target collection is not complete; start again",
                )
        cov = self.coverage()
        event = Cutover(coverage=cov.fraction, at=self.clock(), force=force)
        if not force:
            self._check_quality_gate(event)
        state = self.apply(event)
        if plan.blue_green:
            bluegreen.sync_alias(self.store, plan, state)
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
        plan = self.plan
        if plan.blue_green:
            self.sync_alias()
        state = self.apply(Rollback(at=self.clock()))
        if plan.blue_green:
            bluegreen.sync_alias(self.store, plan, state)
        return state

    def finalize(self, *, force: bool = False) -> MigrationState:
        """Drop the source vector and leave a stable single-model collection.

        Refused inside the rollback window, or with partial coverage, unless ``force``. If a previous
        finalize recorded its state but was cut off before dropping the source vector, calling it again
        drops the vector.

        Raises:
            RollbackWindowOpenError: the window is open or coverage is partial, and ``force`` is false.
        """
        snap = self.snapshot(refresh=True)
        if snap.state.finalized:
            self._drop_source(snap.plan, snap.state)
            return snap.state
        # Refresh the counts from the data, so that the completeness check is current.
        # (A failed migration records no progress; only a forced finalize gets past it.)
        with contextlib.suppress(InvalidTransitionError):
            self.progress()
        event = Finalize(at=self.clock(), force=force)
        transition(self.snapshot(refresh=True).state, event, snap.plan.policy)  # refuse before backing up
        if snap.plan.reembed:
            self._check_reembed_complete()
        backup = self._backup_before_finalize(snap.plan)
        if backup is not None:
            current = self.snapshot(refresh=True)
            self._record_event(f"backup {backup}", current.state, current.state, current.epoch)
        state = self.apply(event)
        self._drop_source(snap.plan, state)
        return state

    def _check_reembed_complete(self) -> None:
        """A re-embed is finalized only with every point on the target: afterwards queries are plain target
        queries, and a point still holding the source vector would be compared across models."""
        check_reembed_finalize(self.collection, self.coverage().missing)

    def _backup_before_finalize(self, plan: MigrationPlan) -> str | None:
        """Back the source vectors up (policy ``always``); reuse a complete backup made since cutover.

        A re-embed made its backup at start and drops nothing: it needs none here.
        """
        if plan.backup_policy != "always" or plan.reembed:
            return None
        cutover_at = self.snapshot().state.cutover_at or 0.0
        for manifest in backups.list_backups(self.store, self.collection):
            if (
                manifest.complete
                and manifest.reason == "finalize"
                and manifest.vector == plan.source_vector
                and manifest.created_at >= cutover_at
            ):
                return manifest.backup_id
        return self._back_up_source(plan, "finalize").backup_id

    def restore(self, backup_id: str | None = None) -> backups.RestoreReport:
        """Undo a finalize: re-create the source vector from its backup and reopen the rollback window.

        Writes go to both vectors again as soon as the vector exists (before the old vectors are written
        back, so nothing written meanwhile is lost); queries stay on the target until ``rollback``. Points
        changed or inserted since the backup are reported and get no source vector from it: embed them
        (``lattice-qdrant restore`` does) before rolling back.

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
        the manifest. Points changed since are reported and keep the target's vector and stamp: embed them
        with the source model (``lattice-qdrant restore`` does). Resumable: run it again on the cancelled
        migration.

        Raises:
            MigrationError: no usable backup.
            CollectionNotFoundError: blue-green, and the target collection is gone.
        """
        snap = self.snapshot(refresh=True)
        plan = snap.plan
        if plan.reembed:
            return self._restore_reembed(snap, backup_id)
        manifest = self.finalize_backup(backup_id)
        if snap.state.finalized:
            shape = VectorInfo(plan.source_vector, manifest.dimension, Distance(manifest.distance))
            if plan.blue_green:
                bluegreen.recreate_source(self.store, plan, shape)
            else:
                self.store.ensure_vector_shape(self.collection, shape.name, shape.size, shape.distance)
            self.apply(Reopen(at=self.clock()))
        elif snap.state.phase != Phase.ROLLBACK_WINDOW:
            raise InvalidTransitionError(
                snap.state.label, "restore", "only a finalized migration is restored"
            )
        if plan.blue_green:
            # after Reopen, so that writes made while it runs reach the source collection too
            bluegreen.copy_back(self.store, plan)
        return backups.restore(self.store, manifest.backup_id)

    def _restore_reembed(self, snap: Snapshot, backup_id: str | None) -> backups.RestoreReport:
        state = snap.state
        if state.status == Status.PLANNED:
            raise InvalidTransitionError(
                state.label, "restore", "it has not started: nothing was overwritten"
            )
        manifest = self.finalize_backup(backup_id)
        if manifest.collection != self.collection or manifest.vector != snap.plan.source_vector:
            raise MigrationError(
                f"backup {manifest.backup_id!r} holds {manifest.collection!r} vector {manifest.vector!r}, "
                f"not this re-embed's ({self.collection!r} vector {snap.plan.source_vector!r})"
            )
        # Writes back to the source model first, or restored points would be overwritten again.
        if state.finalized:
            state = self.apply(Reopen(at=self.clock()))
        if state.phase == Phase.ROLLBACK_WINDOW:
            state = self.apply(Rollback(at=self.clock()))
        if state.status != Status.CANCELLED:
            state = self.apply(Cancel())
            # other processes route by a state at most refresh_interval old: let them see the cancel
            time.sleep(self.refresh_interval)
        current = self.snapshot(refresh=True)
        self._record_event(f"restore {manifest.backup_id}", current.state, current.state, current.epoch)
        return backups.restore(self.store, manifest.backup_id, force=True, restore_model_fields=True)

    def finalize_backup(self, backup_id: str | None = None) -> backups.Manifest:
        """The backup ``restore`` uses: ``backup_id``, or the newest complete backup of the source vector
        (for a re-embed: the backup its start made).

        Raises:
            MigrationError: there is no such backup.
        """
        if backup_id is not None:
            return backups.get_backup(self.store, backup_id)
        snap = self.snapshot(refresh=True)
        plan = snap.plan
        if plan.reembed:
            if snap.backup_id is None:
                raise MigrationError(f"the re-embed of {self.collection!r} has no backup: it has not started")
            manifest = backups.get_backup(self.store, snap.backup_id)
            if not manifest.complete:
                raise MigrationError(f"the re-embed's backup {manifest.backup_id!r} is incomplete")
            return manifest
        found = [
            m
            for m in backups.list_backups(self.store, self.collection)
            if m.complete and m.vector == plan.source_vector
        ]
        if not found:
            raise MigrationError(
                f"no complete backup of {plan.source_vector!r} for {self.collection!r}; "
                "lattice-qdrant backups list shows what there is"
            )
        return found[0]

    def protects(self, manifest: backups.Manifest) -> str | None:
        """Why the migration still needs a backup (its rollback window is open), or ``None``.

        A re-embed's backup is needed from start on: it holds the only copy of the overwritten source
        vectors, until the migration is cancelled with no point left on the target, or finalized and its
        rollback window has passed.
        """
        snap = self.snapshot(refresh=True)
        if manifest.collection != self.collection or manifest.vector != snap.plan.source_vector:
            return None
        state = snap.state
        if snap.plan.reembed:
            if manifest.backup_id != snap.backup_id:
                return None
            if state.status == Status.CANCELLED:
                held = self.coverage().covered
                if held:
                    return (
                        f"{held} point(s) of {self.collection!r} still hold the target model: "
                        "restore needs this backup"
                    )
                return None
            if not state.finalized:
                return (
                    f"{self.collection!r} is being re-embedded: this backup holds the only copy of its "
                    "source vectors"
                )
        if state.finalized and state.finalized_at is not None:
            left = state.finalized_at + snap.plan.rollback_window - self.clock()
            if left > 0:
                return (
                    f"{self.collection!r} was finalized {format_duration(self.clock() - state.finalized_at)} "
                    f"ago; its rollback window needs this backup for another {format_duration(left)}"
                )
            return None
        if state.phase == Phase.ROLLBACK_WINDOW:
            return f"{self.collection!r} is in its rollback window"
        return None

    def _drop_source(self, plan: MigrationPlan, state: MigrationState) -> None:
        """After finalize: drop the source named vector (in place) or the source collection (blue-green);
        a re-embed has nothing to drop (one vector, now the target's everywhere)."""
        if plan.reembed:
            return
        if plan.blue_green:
            bluegreen.sync_alias(self.store, plan, state)
            self.store.drop_collection(self.collection)
        else:
            self.store.drop_vector(self.collection, plan.source_vector)
