"""Transitions cut off midway or whose reply was lost: each is finished by running it again, a write that
took effect is its caller's success, and its history entry is recorded exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from qdrant_client import QdrantClient

import lattice_qdrant as lq
from lattice_qdrant import commands
from lattice_qdrant.backfill import BackfillOptions, run_backfill
from lattice_qdrant.compare import RECORD_KIND as COMPARISON
from lattice_qdrant.config import Settings
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import RetryPolicy, Store, open_store
from lattice_qdrant.testing import Call, Fail, FaultyStore, LoseReply, Resend

from conftest import MakeMigration, fill_collection, fill_target, make_lattice

#: no waiting between the store's retries
QUICK = RetryPolicy(attempts=3, initial=0.0, maximum=0.0, jitter=0.0)
LOST = lq.TransientStoreError("connection reset by peer (the reply was lost)")


class Faults(FaultyStore):
    """The migration's store, losing replies and failing calls on demand.

    ``lose_write()``: the next write of the migration record that changes its state (status or phase) takes
    effect, then raises as a lost reply does (after the store's retries); with ``resent``, it is delivered
    again instead, as the store's retry is, which the epoch condition skips; with ``read_back``, the read of
    the control collection right after it fails too. ``lose_append(event)``: the same for the append of
    ``event``'s history entry. ``lost``: how many writes were lost.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.control = store.control_collection

    @property
    def lost(self) -> int:
        return sum(1 for _, fault in self.fired if isinstance(fault, LoseReply | Resend))

    def lose_write(self, *, resent: bool = False, read_back: bool = False) -> None:
        self._lose(self._changes_state, resent=resent, read_back=read_back)

    def lose_append(self, event: str) -> None:
        def appends(call: Call) -> bool:
            return any(
                (p.payload or {}).get("kind") == "event" and (p.payload or {}).get("event") == event
                for p in call.arguments["points"]
            )

        self._lose(appends, resent=False, read_back=False)

    def _lose(self, targeted: Callable[[Call], bool], *, resent: bool, read_back: bool) -> None:
        def write(call: Call) -> bool:
            return call.collection == self.control and targeted(call)

        lost: LoseReply | Resend = Resend(on=1, when=write) if resent else LoseReply(LOST, on=1, when=write)
        self.inject("upsert", lost)
        if read_back:

            def after_it(call: Call) -> bool:
                return call.collection == self.control and any(f is lost for _, f in self.fired)

            self.inject("retrieve", Fail(LOST, on=1, when=after_it))

    def _label(self, point_id: Any) -> str | None:
        found = self.inner.retrieve(self.control, [point_id], with_payload=True)
        state = (found[0].payload or {}).get("state") if found else None
        return lq.MigrationState.from_dict(state).label if state else None

    def _changes_state(self, call: Call) -> bool:
        for point in call.arguments["points"]:
            payload = point.payload or {}
            state = payload.get("state") if payload.get("kind") == "migration" else None
            if state and lq.MigrationState.from_dict(state).label != self._label(point.id):
                return True
        return False


@pytest.fixture
def faults(qdrant: QdrantClient, names: Any) -> Faults:
    return Faults(open_store(qdrant, control_collection=names("control"), retry=QUICK))


@pytest.fixture
def lattice(qdrant: QdrantClient, names: Any, faults: Faults) -> lq.LatticeClient:
    """The wrapped client, over the store that fails on demand."""
    return make_lattice(qdrant, names, store=faults)


Make = Callable[..., lq.Migration]


@pytest.fixture
def make(make_migration: MakeMigration, names: Any, legacy: HashEmbedder) -> Make:
    """``make(strategy, **plan)``: a collection of 20 points and its planned migration."""

    def plan(strategy: str = "in_place", **kwargs: Any) -> lq.Migration:
        if strategy == "reembed":
            kwargs["target"] = HashEmbedder(legacy.dimension, ngrams=2, salt="newer").spec("newer", 1)
        if strategy == "blue_green":
            kwargs.setdefault("target_collection", names("docs_new"))
            kwargs.setdefault("alias", names("live"))
        return make_migration(20, started=False, strategy=strategy, rollback_window=3600, **kwargs)

    return plan


def record_comparison(migration: lq.Migration) -> None:
    """A labelled shadow comparison that opens the quality gate."""
    plan = migration.plan
    migration.store.put_record(
        COMPARISON,
        migration.collection,
        {
            "source": plan.source.qualified_id,
            "target": plan.target.qualified_id,
            "k": 10,
            "labelled": 20,
            "queries": 20,
            "source_recall": 0.8,
            "target_recall": 0.8,
        },
    )


def events(migration: lq.Migration) -> list[str]:
    return [str(e["event"]) for e in migration.history()]


def tokens_are_unique(migration: lq.Migration) -> bool:
    tokens = [e["token"] for e in migration.history() if "token" in e]
    return len(tokens) == len(set(tokens))


@dataclass(frozen=True)
class Case:
    strategy: str
    setup: tuple[str, ...]
    call: Callable[[lq.Migration], Any]
    event: str
    plan: tuple[tuple[str, Any], ...] = ()


CASES = {
    "start": Case("in_place", (), lambda m: m.start(), "start"),
    "start-blue-green": Case("blue_green", (), lambda m: m.start(), "start"),
    "start-reembed": Case("reembed", (), lambda m: m.start(), "start"),
    "pause": Case("in_place", ("start",), lambda m: m.pause("maintenance"), "pause"),
    "resume": Case("in_place", ("start", "pause"), lambda m: m.resume(), "resume"),
    "error": Case("in_place", ("start",), lambda m: m.fail("the embedder crashed"), "error"),
    "progress": Case("in_place", ("start", "fill"), lambda m: m.progress(), "progress"),
    "cutover": Case("in_place", ("start",), lambda m: m.cutover(force=True), "cutover"),
    "cutover-gated": Case(
        "in_place",
        ("start", "fill", "compare"),
        lambda m: m.cutover(),
        "cutover",
        (("compare_margin", 0.05),),
    ),
    "cutover-blue-green": Case("blue_green", ("start",), lambda m: m.cutover(force=True), "cutover"),
    "rollback": Case("in_place", ("start", "cutover"), lambda m: m.rollback(), "rollback"),
    "rollback-blue-green": Case("blue_green", ("start", "cutover"), lambda m: m.rollback(), "rollback"),
    "finalize": Case("in_place", ("start", "cutover"), lambda m: m.finalize(force=True), "finalize"),
    "reopen": Case("in_place", ("start", "cutover", "finalize"), lambda m: m.restore(), "reopen"),
    "cancel": Case("in_place", ("start",), lambda m: m.cancel(), "cancel"),
    "cancel-blue-green": Case("blue_green", ("start",), lambda m: m.cancel(), "cancel"),
    "cancel-reembed": Case("reembed", ("start",), lambda m: m.cancel(), "cancel"),
}


def prepared(case: Case, make: Make, modern: HashEmbedder) -> lq.Migration:
    migration = make(case.strategy, **dict(case.plan))
    steps: dict[str, Callable[[], Any]] = {
        "start": migration.start,
        "pause": lambda: migration.pause("maintenance"),
        "fill": lambda: fill_target(migration, modern),
        "compare": lambda: record_comparison(migration),
        "cutover": lambda: migration.cutover(force=True),
        "finalize": lambda: migration.finalize(force=True),
    }
    for step in case.setup:
        steps[step]()
    return migration


def check_done_once(migration: lq.Migration, case: Case, before: list[str], result: Any) -> None:
    """The transition took effect once, its caller got the state it wrote, and its history entry is there
    exactly once."""
    after = events(migration)
    assert after.count(case.event) == before.count(case.event) + 1, after
    assert tokens_are_unique(migration)
    entry = [e for e in migration.history() if e["event"] == case.event][-1]
    final = migration.snapshot(refresh=True)
    assert entry["to"] == final.state.label
    if isinstance(result, lq.MigrationState):
        assert result == final.state
    plan = final.plan
    if plan.blue_green:
        wanted = plan.collection if final.state.phase != lq.Phase.ROLLBACK_WINDOW else plan.data_collection
        assert migration.store.alias_target(plan.alias or "") == wanted
        if case.event == "cancel":
            assert not migration.store.collection_exists(plan.data_collection)
    elif case.event == "cancel" and not plan.reembed:
        assert plan.target_vector not in migration.store.vectors(migration.collection)


# --------------------------------------------------------------------------- lost replies


@pytest.mark.parametrize("retried", ["retries fail", "the retry is skipped"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_transition_whose_reply_is_lost_is_its_callers_success(
    name: str, retried: str, make: Make, modern: HashEmbedder, faults: Faults
) -> None:
    """The write took effect but the call raised: ``retries fail`` (every retry fails too, so the store's
    call raises after its retries) or ``the retry is skipped`` (the retry reaches Qdrant, whose condition on
    the epoch skips it as the write moved the record on). The caller still gets the new state."""
    case = CASES[name]
    migration = prepared(case, make, modern)
    before = events(migration)
    faults.lose_write(resent=retried == "the retry is skipped")

    result = case.call(migration)

    assert faults.lost == 1
    check_done_once(migration, case, before, result)


@pytest.mark.parametrize("name", list(CASES))
def test_a_transition_whose_read_back_is_lost_too_is_finished_by_calling_it_again(
    name: str, make: Make, modern: HashEmbedder, faults: Faults
) -> None:
    """The write took effect, its reply and the read-back after it failed: the call cannot know and says
    so; called again, it recognises its own write (or finds its work done) instead of refusing."""
    case = CASES[name]
    migration = prepared(case, make, modern)
    before = events(migration)
    epoch = migration.snapshot(refresh=True).epoch
    faults.lose_write(read_back=True)

    with pytest.raises(lq.TransientStoreError):
        case.call(migration)
    assert faults.lost == 1
    written = migration.snapshot(refresh=True)
    assert written.epoch > epoch
    assert events(migration).count(case.event) == before.count(case.event) + 1  # carried by the record

    result = case.call(migration)

    check_done_once(migration, case, before, result)
    assert migration.snapshot(refresh=True).epoch == written.epoch  # nothing was applied twice


def test_a_lost_write_is_not_taken_for_a_later_one(make: Make, faults: Faults) -> None:
    """The memory of an unknown outcome only stands for a retry: once settled, the event applies anew."""
    migration = make()
    migration.start()
    faults.lose_write(read_back=True)
    with pytest.raises(lq.TransientStoreError):
        migration.pause("first")
    assert migration.pause("first").reason == "first"  # the retry: the first pause took effect
    migration.resume()
    assert migration.pause("second").reason == "second"
    assert events(migration).count("pause") == 2


def test_a_write_that_did_not_take_effect_is_applied_by_the_retry(make: Make, faults: Faults) -> None:
    migration = make()
    migration.start()
    epoch = migration.snapshot(refresh=True).epoch
    faults.inject("upsert", Fail(lq.TransientStoreError("connection refused")))
    with pytest.raises(lq.TransientStoreError):
        migration.pause("maintenance")
    faults.clear("upsert")
    assert migration.snapshot(refresh=True).epoch == epoch

    assert migration.pause("maintenance").status == lq.Status.PAUSED
    assert migration.snapshot(refresh=True).epoch == epoch + 1
    assert events(migration).count("pause") == 1


def test_another_process_retrying_a_cutover_of_unknown_outcome_is_told_it_is_done(
    make: Make, lattice: lq.LatticeClient, faults: Faults
) -> None:
    """From another process (a second ``lattice-qdrant cutover``), the cutover that took effect is found in
    the state: the refusal names it, and the history has it once."""
    migration = make()
    migration.start()
    faults.lose_write(read_back=True)
    with pytest.raises(lq.TransientStoreError):
        migration.cutover(force=True)
    other = lq.Migration(lattice.store, migration.collection, refresh_interval=0)
    with pytest.raises(lq.InvalidTransitionError, match="already cut over"):
        other.cutover(force=True)
    assert events(other).count("cutover") == 1


@pytest.mark.parametrize("replanned", [False, True], ids=["plan", "plan again"])
def test_a_plan_whose_reply_is_lost_is_recorded_once(
    replanned: bool,
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
    faults: Faults,
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=5)
    if replanned:
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy").cancel()
    faults.lose_write()

    migration = lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")

    assert faults.lost == 1
    assert migration.snapshot(refresh=True).state.status == lq.Status.PLANNED
    assert events(migration) == (["plan", "cancel", "plan"] if replanned else ["plan"])
    assert tokens_are_unique(migration)


# --------------------------------------------------------------------------- the history, exactly once


def test_the_history_entry_of_a_process_killed_after_its_write_is_kept(
    make: Make, lattice: lq.LatticeClient, faults: Faults
) -> None:
    """Killed between the write of the state and the append of its history entry: the record carries the
    entry, so the history lists it, and the next transition appends it."""
    migration = make()
    migration.start()

    faults.inject("append_event", Fail(KeyboardInterrupt(), on=1))
    with pytest.raises(KeyboardInterrupt):
        migration.cutover(force=True)
    assert migration.snapshot(refresh=True).state.phase == lq.Phase.ROLLBACK_WINDOW
    assert events(migration).count("cutover") == 1

    other = lq.Migration(lattice.store, migration.collection, refresh_interval=0)
    other.rollback()
    appended = [e["event"] for e in lattice.store.list_records("event", collection=migration.collection)]
    assert appended.count("cutover") == 1 and appended.count("rollback") == 1
    assert events(migration).count("cutover") == 1


def test_a_history_entry_appended_twice_is_recorded_once(
    make: Make, lattice: lq.LatticeClient, faults: Faults
) -> None:
    """The append of an entry took effect but its reply was lost: the next transition appends it again,
    under the same id."""
    migration = make()
    migration.start()
    faults.lose_append("cutover")
    migration.cutover(force=True)  # the entry's append fails for the caller; the transition does not
    assert faults.lost == 1
    migration.rollback()
    appended = [e["event"] for e in lattice.store.list_records("event", collection=migration.collection)]
    assert appended.count("cutover") == 1
    assert events(migration).count("cutover") == 1
    assert tokens_are_unique(migration)


# --------------------------------------------------------------------------- cancel, cut off


def target_exists(migration: lq.Migration) -> bool:
    plan = migration.plan
    if plan.blue_green:
        return migration.store.collection_exists(plan.data_collection)
    return plan.target_vector in migration.store.vectors(migration.collection)


def cut_off_cancel(migration: lq.Migration, faults: Faults, fault: BaseException) -> None:
    """Run a cancel that records its state, then fails (or is killed) dropping the target."""
    drop = "drop_collection" if migration.plan.blue_green else "drop_vector"
    faults.inject(drop, Fail(fault))
    with pytest.raises(type(fault)):
        migration.cancel()
    faults.clear(drop)
    assert migration.snapshot(refresh=True).state.status == lq.Status.CANCELLED
    assert target_exists(migration)


@pytest.mark.parametrize(
    "fault", [lq.TransientStoreError("connection reset"), KeyboardInterrupt()], ids=lambda e: type(e).__name__
)
@pytest.mark.parametrize("strategy", ["in_place", "blue_green"])
def test_a_cancel_cut_off_after_recording_its_state_is_finished_by_running_it_again(
    strategy: str, fault: BaseException, make: Make, faults: Faults
) -> None:
    migration = make(strategy)
    migration.start()
    cut_off_cancel(migration, faults, fault)

    state = migration.cancel()

    assert state == migration.snapshot(refresh=True).state and state.status == lq.Status.CANCELLED
    assert not target_exists(migration)
    assert events(migration).count("cancel") == 1
    assert migration.routing().write == lq.WriteRoute.LEGACY
    if strategy == "blue_green":
        assert migration.store.alias_target(migration.plan.alias or "") == migration.collection
    # and again: nothing left to do
    assert migration.cancel() == state


@pytest.mark.parametrize("strategy", ["in_place", "blue_green"])
def test_finishing_a_cancel_with_keep_target_keeps_the_target(
    strategy: str, make: Make, faults: Faults
) -> None:
    """The clean-up follows the call that finishes it: ``drop_target=False`` leaves the target in place (and
    a later plain cancel drops it)."""
    migration = make(strategy)
    migration.start()
    cut_off_cancel(migration, faults, lq.TransientStoreError("connection reset"))

    assert migration.cancel(drop_target=False).status == lq.Status.CANCELLED
    assert target_exists(migration)
    migration.cancel()
    assert not target_exists(migration)
    assert events(migration).count("cancel") == 1


def test_a_cancel_cut_off_during_a_blue_green_copy_is_finished(make: Make, faults: Faults) -> None:
    """A start killed while copying into the target collection, then a cancel killed before the drop."""
    migration = make("blue_green")
    target = migration.plan.data_collection
    faults.inject("upsert", LoseReply(KeyboardInterrupt(), on=1, when=lambda call: call.collection == target))
    with pytest.raises(KeyboardInterrupt):
        migration.start()  # killed right after the copy's first page was written
    cut_off_cancel(migration, faults, KeyboardInterrupt())
    migration.cancel()
    assert not target_exists(migration)
    assert migration.store.alias_target(migration.plan.alias or "") == migration.collection


@pytest.mark.parametrize("finished", [True, False], ids=["cancel finished", "cancel cut off"])
def test_a_blue_green_planned_again_after_a_cancel_copies_again(
    finished: bool, make: Make, lattice: lq.LatticeClient, faults: Faults
) -> None:
    """The copy recorded for the cancelled plan is not the new plan's, even when the cancel that should have
    forgotten it was cut off before its clean-up."""
    migration = make("blue_green")
    migration.start()
    plan = migration.plan
    if finished:
        migration.cancel()
    else:
        faults.inject("append_event", Fail(KeyboardInterrupt(), on=1))  # right after the state is written
        with pytest.raises(KeyboardInterrupt):
            migration.cancel()
        lattice.client.delete_collection(plan.data_collection)  # by hand, instead of cancelling again
    again = lattice.plan(
        plan.collection,
        source=plan.source,
        target=plan.target,
        source_vector=plan.source_vector,
        strategy="blue_green",
        target_collection=plan.target_collection,
        alias=plan.alias,
    )
    again.start()
    assert lattice.client.count(plan.data_collection).count == 20


def test_a_cancelled_reembed_is_cancelled_again_without_a_refusal(make: Make, faults: Faults) -> None:
    migration = make("reembed")
    migration.start()
    faults.inject("append_event", Fail(KeyboardInterrupt(), on=1))
    with pytest.raises(KeyboardInterrupt):
        migration.cancel()
    state = migration.cancel()
    assert state.status == lq.Status.CANCELLED
    assert events(migration).count("cancel") == 1


def test_a_cancelled_reembed_whose_restore_was_cut_off_points_to_restore(make: Make, faults: Faults) -> None:
    migration = make("reembed")
    migration.start()
    newer = HashEmbedder(migration.plan.target.dimension, ngrams=2, salt="newer")
    run_backfill(migration, newer, BackfillOptions(max_points=8, batch_size=4))
    # killed as the restore of the vectors begins (after the cancel), before it wrote anything
    faults.inject("ensure_vector_shape", Fail(KeyboardInterrupt(), on=1))
    with pytest.raises(KeyboardInterrupt):
        migration.restore()
    assert migration.snapshot(refresh=True).state.status == lq.Status.CANCELLED
    with pytest.raises(lq.InvalidTransitionError, match=r"8 point\(s\).*lattice-qdrant restore.*finishes"):
        migration.cancel()
    assert migration.restore().verified
    assert migration.cancel().status == lq.Status.CANCELLED


def test_the_cli_finishes_a_cancel_cut_off(cli: Any, legacy: HashEmbedder) -> None:
    docs = cli.docs
    client = cli.qdrant()
    fill_collection(client, docs, legacy, n=10)
    client.close()
    cli("models", "register", "legacy", "--name", "hash:bow-1-legacy", "--dimension", "64")
    cli("models", "register", "modern", "--name", "hash:bow-2-modern", "--dimension", "96")
    cli("plan", docs, "--source", "legacy", "--target", "modern", "--source-vector", "legacy")
    cli("start", docs)

    # a cancel cut off dropping the target: from Python, through a store that loses the drop
    client = cli.qdrant()
    dropped_off = Fail(lq.TransientStoreError("delete the named vector failed: connection reset"))
    store = FaultyStore(open_store(client, control_collection=cli.control), {"drop_vector": dropped_off})
    session = commands.Session(settings=Settings(control_collection=cli.control), client=client, store=store)
    with session, pytest.raises(lq.TransientStoreError, match="connection reset"):
        commands.cancel(session, docs)
    client.close()

    def vectors() -> set[str]:
        client = cli.qdrant()
        try:
            return set(client.get_collection(docs).config.params.vectors or {})
        finally:
            client.close()

    assert vectors() == {"legacy", "modern-v1"}
    out = cli("cancel", docs, "--keep-target").output
    assert "cancelled/stable" in out and "writes: legacy" in out
    assert vectors() == {"legacy", "modern-v1"}
    assert "cancelled/stable" in cli("cancel", docs).output
    assert vectors() == {"legacy"}
