"""The migration state machine: every (state, event) pair, the routing tables and the guards.

Expected outcomes are written out by hand, never recomputed from the rules under test.
"""

from __future__ import annotations

import ast
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

import lattice_qdrant.state as state_module
from lattice_qdrant.errors import (
    InvalidTransitionError,
    RollbackWindowOpenError,
    ThresholdNotMetError,
    TransitionError,
)
from lattice_qdrant.state import (
    EVENT_TYPES,
    Cancel,
    Cutover,
    Error,
    Event,
    Finalize,
    MigrationState,
    Pause,
    Phase,
    Policy,
    Progress,
    QueryRoute,
    Reopen,
    Resume,
    Rollback,
    Start,
    Status,
    WriteRoute,
    allowed_events,
    query_route,
    rollback_window_left,
    transition,
    write_route,
)

M = MigrationState
IP, PA, CO, FA = Status.IN_PROGRESS, Status.PAUSED, Status.COMPLETED, Status.FAILED
PL, CA = Status.PLANNED, Status.CANCELLED
ST, MI, RW = Phase.STABLE, Phase.MIGRATING, Phase.ROLLBACK_WINDOW

WINDOW = 3600.0
T0 = 1_700_000_000.0  # cutover time of the representative window states
T1 = T0 + 10.0  # time carried by the table's cutover and rollback events
FIN = T0 + WINDOW  # the table's finalize: exactly when the window closes
T2 = FIN + 600.0  # time carried by the table's reopen: after the finalize
POLICY = Policy(cutover_threshold=0.99, query_threshold=None, rollback_window=WINDOW)

# One state for every reachable (status, phase, finalized, rolled_back) combination.
STATES: dict[str, MigrationState] = {
    "planned": M(),
    "in_progress": M(IP, MI, 40, 100),
    "in_progress_rb": M(IP, MI, 40, 100, rolled_back=True),
    "paused": M(PA, MI, 40, 100, reason="maintenance"),
    "paused_rb": M(PA, MI, 40, 100, reason="maintenance", rolled_back=True),
    "completed": M(CO, MI, 100, 100),
    "completed_rb": M(CO, MI, 100, 100, rolled_back=True),
    "failed": M(FA, MI, 40, 100, error="timeout"),
    "failed_rb": M(FA, MI, 40, 100, error="timeout", rolled_back=True),
    "in_progress_window": M(IP, RW, 40, 100, cutover_at=T0),
    "paused_window": M(PA, RW, 40, 100, reason="maintenance", cutover_at=T0),
    "completed_window": M(CO, RW, 100, 100, cutover_at=T0),
    "failed_window": M(FA, RW, 40, 100, error="timeout", cutover_at=T0),
    "cancelled": M(CA, ST, 40, 100),
    "finalized": M(CO, ST, 100, 100, cutover_at=T0, finalized_at=FIN),
}

# One instance of every event type, used for the full table.
EVENTS: dict[str, Event] = {
    "start": Start(processed=10, total=100),
    "progress": Progress(processed=50, total=100),
    "error": Error("disk full"),
    "pause": Pause("night"),
    "resume": Resume(),
    "cancel": Cancel(),
    "cutover": Cutover(coverage=1.0, at=T1),
    "rollback": Rollback(at=T1),
    "finalize": Finalize(at=FIN),
    "reopen": Reopen(at=T2),
}

X = InvalidTransitionError
W = RollbackWindowOpenError

# fmt: off
TABLE: dict[str, dict[str, MigrationState | type[Exception]]] = {
    "planned": {
        "start": M(IP, MI, 10, 100),
        "progress": X, "error": X, "pause": X, "resume": X,
        "cancel": M(CA, ST, 0, 0),
        "cutover": X, "rollback": X, "finalize": X,
        "reopen": X,
    },
    "in_progress": {
        "start": X,
        "progress": M(IP, MI, 50, 100),
        "error": M(FA, MI, 40, 100, error="disk full"),
        "pause": M(PA, MI, 40, 100, reason="night"),
        "resume": X,
        "cancel": M(CA, ST, 40, 100),
        "cutover": M(IP, RW, 40, 100, cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "in_progress_rb": {
        "start": X,
        "progress": M(IP, MI, 50, 100, rolled_back=True),
        "error": M(FA, MI, 40, 100, error="disk full", rolled_back=True),
        "pause": M(PA, MI, 40, 100, reason="night", rolled_back=True),
        "resume": X,
        "cancel": M(CA, ST, 40, 100),
        "cutover": M(IP, RW, 40, 100, cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "paused": {
        "start": X,
        "progress": M(PA, MI, 50, 100, reason="maintenance"),
        "error": M(FA, MI, 40, 100, error="disk full"),
        "pause": X,
        "resume": M(IP, MI, 40, 100),
        "cancel": M(CA, ST, 40, 100),
        "cutover": M(PA, RW, 40, 100, reason="maintenance", cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "paused_rb": {
        "start": X,
        "progress": M(PA, MI, 50, 100, reason="maintenance", rolled_back=True),
        "error": M(FA, MI, 40, 100, error="disk full", rolled_back=True),
        "pause": X,
        "resume": M(IP, MI, 40, 100, rolled_back=True),
        "cancel": M(CA, ST, 40, 100),
        "cutover": M(PA, RW, 40, 100, reason="maintenance", cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "completed": {
        "start": X,
        "progress": M(IP, MI, 50, 100),
        "error": X, "pause": X, "resume": X,
        "cancel": M(CA, ST, 100, 100),
        "cutover": M(CO, RW, 100, 100, cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "completed_rb": {
        "start": X,
        "progress": M(IP, MI, 50, 100, rolled_back=True),
        "error": X, "pause": X, "resume": X,
        "cancel": M(CA, ST, 100, 100),
        "cutover": M(CO, RW, 100, 100, cutover_at=T1),
        "rollback": X, "finalize": X,
        "reopen": X,
    },
    "failed": {
        "start": X, "progress": X, "error": X, "pause": X,
        "resume": M(IP, MI, 40, 100),
        "cancel": M(CA, ST, 40, 100),
        "cutover": X, "rollback": X, "finalize": X,
        "reopen": X,
    },
    "failed_rb": {
        "start": X, "progress": X, "error": X, "pause": X,
        "resume": M(IP, MI, 40, 100, rolled_back=True),
        "cancel": M(CA, ST, 40, 100),
        "cutover": X, "rollback": X, "finalize": X,
        "reopen": X,
    },
    "in_progress_window": {
        "start": X,
        "progress": M(IP, RW, 50, 100, cutover_at=T0),
        "error": M(FA, RW, 40, 100, error="disk full", cutover_at=T0),
        "pause": M(PA, RW, 40, 100, reason="night", cutover_at=T0),
        "resume": X, "cancel": X, "cutover": X,
        "rollback": M(IP, MI, 40, 100, rolled_back=True),
        "finalize": W,
        "reopen": X,
    },
    "paused_window": {
        "start": X,
        "progress": M(PA, RW, 50, 100, reason="maintenance", cutover_at=T0),
        "error": M(FA, RW, 40, 100, error="disk full", cutover_at=T0),
        "pause": X,
        "resume": M(IP, RW, 40, 100, cutover_at=T0),
        "cancel": X, "cutover": X,
        "rollback": M(PA, MI, 40, 100, reason="maintenance", rolled_back=True),
        "finalize": W,
        "reopen": X,
    },
    "completed_window": {
        "start": X,
        "progress": M(IP, RW, 50, 100, cutover_at=T0),
        "error": X, "pause": X, "resume": X, "cancel": X, "cutover": X,
        "rollback": M(CO, MI, 100, 100, rolled_back=True),
        "finalize": M(CO, ST, 100, 100, cutover_at=T0, finalized_at=FIN),
        "reopen": X,
    },
    "failed_window": {
        "start": X, "progress": X, "error": X, "pause": X,
        "resume": M(IP, RW, 40, 100, cutover_at=T0),
        "cancel": X, "cutover": X,
        "rollback": M(FA, MI, 40, 100, error="timeout", rolled_back=True),
        "finalize": W,
        "reopen": X,
    },
    "cancelled": {
        "start": X, "progress": X, "error": X, "pause": X, "resume": X,
        "cancel": X, "cutover": X, "rollback": X, "finalize": X,
        "reopen": X,
    },
    "finalized": {
        "start": X, "progress": X, "error": X, "pause": X, "resume": X,
        "cancel": X, "cutover": X, "rollback": X, "finalize": X,
        "reopen": M(CO, RW, 100, 100, cutover_at=T2),
    },
}

# The events each state accepts (InvalidTransitionError aside), in lifecycle order.
ALLOWED: dict[str, tuple[str, ...]] = {
    "planned": ("start", "cancel"),
    "in_progress": ("progress", "error", "pause", "cancel", "cutover"),
    "in_progress_rb": ("progress", "error", "pause", "cancel", "cutover"),
    "paused": ("progress", "error", "resume", "cancel", "cutover"),
    "paused_rb": ("progress", "error", "resume", "cancel", "cutover"),
    "completed": ("progress", "cancel", "cutover"),
    "completed_rb": ("progress", "cancel", "cutover"),
    "failed": ("resume", "cancel"),
    "failed_rb": ("resume", "cancel"),
    "in_progress_window": ("progress", "error", "pause", "rollback", "finalize"),
    "paused_window": ("progress", "error", "resume", "rollback", "finalize"),
    "completed_window": ("progress", "rollback", "finalize"),
    "failed_window": ("resume", "rollback", "finalize"),
    "cancelled": (),
    "finalized": ("reopen",),
}

# (write route, query route with coverage 0.5 and no query_threshold)
ROUTES: dict[str, tuple[WriteRoute, QueryRoute]] = {
    "planned": (WriteRoute.LEGACY, QueryRoute.SOURCE),
    "in_progress": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "in_progress_rb": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "paused": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "paused_rb": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "completed": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "completed_rb": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "failed": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "failed_rb": (WriteRoute.DUAL_WRITE, QueryRoute.SOURCE),
    "in_progress_window": (WriteRoute.DUAL_WRITE, QueryRoute.TARGET),
    "paused_window": (WriteRoute.DUAL_WRITE, QueryRoute.TARGET),
    "completed_window": (WriteRoute.DUAL_WRITE, QueryRoute.TARGET),
    "failed_window": (WriteRoute.DUAL_WRITE, QueryRoute.TARGET),
    "cancelled": (WriteRoute.LEGACY, QueryRoute.SOURCE),
    "finalized": (WriteRoute.TARGET, QueryRoute.TARGET),
}

# Query route with query_threshold=0.5: (coverage 0.49, coverage 0.5)
THRESHOLD_ROUTES: dict[str, tuple[QueryRoute, QueryRoute]] = {
    "planned": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "in_progress": (QueryRoute.SOURCE, QueryRoute.TARGET),
    "in_progress_rb": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "paused": (QueryRoute.SOURCE, QueryRoute.TARGET),
    "paused_rb": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "completed": (QueryRoute.SOURCE, QueryRoute.TARGET),
    "completed_rb": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "failed": (QueryRoute.SOURCE, QueryRoute.TARGET),
    "failed_rb": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "in_progress_window": (QueryRoute.TARGET, QueryRoute.TARGET),
    "paused_window": (QueryRoute.TARGET, QueryRoute.TARGET),
    "completed_window": (QueryRoute.TARGET, QueryRoute.TARGET),
    "failed_window": (QueryRoute.TARGET, QueryRoute.TARGET),
    "cancelled": (QueryRoute.SOURCE, QueryRoute.SOURCE),
    "finalized": (QueryRoute.TARGET, QueryRoute.TARGET),
}

LABELS: dict[str, str] = {
    "planned": "planned/stable",
    "in_progress": "in_progress/migrating",
    "in_progress_rb": "in_progress/migrating (rolled back)",
    "paused": "paused/migrating",
    "paused_rb": "paused/migrating (rolled back)",
    "completed": "completed/migrating",
    "completed_rb": "completed/migrating (rolled back)",
    "failed": "failed/migrating",
    "failed_rb": "failed/migrating (rolled back)",
    "in_progress_window": "in_progress/rollback_window",
    "paused_window": "paused/rollback_window",
    "completed_window": "completed/rollback_window",
    "failed_window": "failed/rollback_window",
    "cancelled": "cancelled/stable",
    "finalized": "completed/stable (finalized)",
}

# How each representative state is reached from PLANNED.
PATHS: dict[str, list[Event]] = {
    "planned": [],
    "in_progress": [Start(40, 100)],
    "in_progress_rb": [Start(40, 100), Cutover(0.4, T0, force=True), Rollback(T1)],
    "paused": [Start(40, 100), Pause("maintenance")],
    "paused_rb": [
        Start(40, 100), Cutover(0.4, T0, force=True), Rollback(T1), Pause("maintenance"),
    ],
    "completed": [Start(100, 100)],
    "completed_rb": [Start(100, 100), Cutover(1.0, T0), Rollback(T1)],
    "failed": [Start(40, 100), Error("timeout")],
    "failed_rb": [Start(40, 100), Cutover(0.4, T0, force=True), Rollback(T1), Error("timeout")],
    "in_progress_window": [Start(40, 100), Cutover(0.4, T0, force=True)],
    "paused_window": [Start(40, 100), Pause("maintenance"), Cutover(0.4, T0, force=True)],
    "completed_window": [Start(30, 100), Progress(100, 100), Cutover(1.0, T0)],
    "failed_window": [Start(40, 100), Cutover(0.4, T0, force=True), Error("timeout")],
    "cancelled": [Start(40, 100), Cancel()],
    "finalized": [Start(100, 100), Cutover(1.0, T0), Finalize(FIN)],
}
# fmt: on

PAIRS = [(s, e) for s in STATES for e in EVENTS]


def _combo(state: MigrationState) -> tuple[Status, Phase, bool, bool]:
    return (state.status, state.phase, state.finalized, state.rolled_back)


def _apply(events: list[Event], policy: Policy = POLICY) -> MigrationState:
    state = MigrationState()
    for event in events:
        state = transition(state, event, policy)
    return state


# --- the tables are complete and consistent ------------------------------------------------------


def test_table_covers_every_state_and_event_type() -> None:
    assert set(EVENTS) == {t.name for t in EVENT_TYPES}
    assert [type(e) for e in EVENTS.values()] == list(EVENT_TYPES)
    assert set(TABLE) == set(STATES)
    for name, row in TABLE.items():
        assert set(row) == set(EVENTS), name
    for table in (ALLOWED, ROUTES, THRESHOLD_ROUTES, LABELS, PATHS):
        assert set(table) == set(STATES)


def test_representative_states_are_distinct_combinations() -> None:
    combos = [_combo(s) for s in STATES.values()]
    assert len(set(combos)) == len(combos)


@pytest.mark.parametrize("name", list(STATES))
def test_representative_state_is_reachable(name: str) -> None:
    assert _apply(PATHS[name]) == STATES[name]


def test_event_type_names_in_lifecycle_order() -> None:
    names = tuple(t.name for t in EVENT_TYPES)
    assert names == (
        "start",
        "progress",
        "error",
        "pause",
        "resume",
        "cancel",
        "cutover",
        "rollback",
        "finalize",
        "reopen",
    )


# --- every (state, event) pair -------------------------------------------------------------------


@pytest.mark.parametrize(("state_name", "event_name"), PAIRS)
def test_transition_table(state_name: str, event_name: str) -> None:
    state, event = STATES[state_name], EVENTS[event_name]
    expected = TABLE[state_name][event_name]
    if isinstance(expected, MigrationState):
        assert transition(state, event, POLICY) == expected
        return
    with pytest.raises(expected) as info:
        transition(state, event, POLICY)
    assert type(info.value) is expected
    if expected is InvalidTransitionError:
        error = info.value
        assert isinstance(error, InvalidTransitionError)
        assert error.state == LABELS[state_name]
        assert error.event == event_name
        assert LABELS[state_name] in str(error)
        assert repr(event_name) in str(error)


@pytest.mark.parametrize(
    ("state_name", "why"),
    [
        ("cancelled", "the migration is cancelled; plan a new one"),
        ("finalized", "the migration is finalized; plan a new one (or restore a backup and reopen it)"),
    ],
)
@pytest.mark.parametrize(
    "event_name",
    ["start", "progress", "error", "pause", "resume", "cancel", "cutover", "rollback", "finalize"],
)
def test_terminal_states_reject_everything_but_reopen(state_name: str, why: str, event_name: str) -> None:
    state = STATES[state_name]
    assert state.terminal
    event = EVENTS[event_name]
    if isinstance(event, Finalize):
        event = Finalize(at=FIN, force=True)
    elif isinstance(event, Cutover):
        event = Cutover(coverage=1.0, at=T1, force=True)
    with pytest.raises(InvalidTransitionError) as info:
        transition(state, event, POLICY)
    assert str(info.value).endswith(why)


def test_cancelled_state_refuses_reopen() -> None:
    state = STATES["cancelled"]
    assert state.terminal
    with pytest.raises(InvalidTransitionError) as info:
        transition(state, Reopen(at=T2), POLICY)
    assert (
        str(info.value)
        == "cannot apply 'reopen' to a migration that is cancelled/stable: the migration is cancelled; "
        "plan a new one"
    )


def test_finalized_state_is_terminal_but_accepts_reopen() -> None:
    state = STATES["finalized"]
    assert state.terminal
    after = transition(state, Reopen(at=T2), POLICY)
    assert after == M(CO, RW, 100, 100, cutover_at=T2)
    assert not after.terminal


@pytest.mark.parametrize(
    ("state_name", "event_name", "why"),
    [
        ("failed", "progress", "resume first"),
        ("failed", "cutover", "resume first"),
        ("in_progress_window", "cancel", "roll back first"),
        ("planned", "progress", "start first"),
        ("in_progress", "start", "it has already started"),
        ("in_progress", "rollback", "it has not been cut over"),
        ("in_progress", "finalize", "cut over first"),
        ("completed_window", "cutover", "it is already cut over"),
        ("planned", "reopen", "it is not finalized"),
        ("in_progress", "reopen", "it is not finalized"),
        ("completed_window", "reopen", "it is not finalized"),
        ("completed_rb", "reopen", "it is not finalized"),
        ("cancelled", "reopen", "the migration is cancelled; plan a new one"),
        ("cancelled", "start", "the migration is cancelled; plan a new one"),
        (
            "finalized",
            "start",
            "the migration is finalized; plan a new one (or restore a backup and reopen it)",
        ),
        (
            "finalized",
            "finalize",
            "the migration is finalized; plan a new one (or restore a backup and reopen it)",
        ),
        (
            "finalized",
            "rollback",
            "the migration is finalized; plan a new one (or restore a backup and reopen it)",
        ),
    ],
)
def test_refusals_say_why(state_name: str, event_name: str, why: str) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        transition(STATES[state_name], EVENTS[event_name], POLICY)
    assert str(info.value) == (
        f"cannot apply {event_name!r} to a migration that is {LABELS[state_name]}: {why}"
    )


def test_terminal_property() -> None:
    terminal = {name for name, state in STATES.items() if state.terminal}
    assert terminal == {"cancelled", "finalized"}


@pytest.mark.parametrize("name", list(STATES))
def test_labels(name: str) -> None:
    assert STATES[name].label == LABELS[name]


# --- allowed_events ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STATES))
def test_allowed_events_table(name: str) -> None:
    assert allowed_events(STATES[name]) == ALLOWED[name]


@pytest.mark.parametrize("name", list(STATES))
def test_allowed_events_agrees_with_transition(name: str) -> None:
    accepted = []
    for event_name, event in EVENTS.items():
        try:
            transition(STATES[name], event, POLICY)
        except InvalidTransitionError:
            continue
        except TransitionError:
            pass  # a guard (threshold, window), not a refusal of the event itself
        accepted.append(event_name)
    assert allowed_events(STATES[name]) == tuple(accepted)


# --- auto-complete and coverage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Start(100, 100), M(CO, MI, 100, 100)),
        (Start(120, 100), M(CO, MI, 120, 100)),
        (Start(0, 0), M(CO, MI, 0, 0)),
        (Start(), M(CO, MI, 0, 0)),
        (Start(99, 100), M(IP, MI, 99, 100)),
    ],
)
def test_start_auto_completes(event: Start, expected: MigrationState) -> None:
    assert transition(M(), event, POLICY) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("in_progress", M(CO, MI, 100, 100)),
        ("paused", M(CO, MI, 100, 100)),  # the pause reason goes with the pause
        ("paused_rb", M(CO, MI, 100, 100, rolled_back=True)),
        ("completed", M(CO, MI, 100, 100)),
        ("in_progress_window", M(CO, RW, 100, 100, cutover_at=T0)),
        ("paused_window", M(CO, RW, 100, 100, cutover_at=T0)),
    ],
)
def test_progress_auto_completes(name: str, expected: MigrationState) -> None:
    assert transition(STATES[name], Progress(100, 100), POLICY) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (M(PA, MI, 100, 100, reason="x"), M(CO, MI, 100, 100)),
        (M(FA, MI, 100, 100, error="boom"), M(CO, MI, 100, 100)),
        (M(FA, RW, 5, 0, error="boom", cutover_at=T0), M(CO, RW, 5, 0, cutover_at=T0)),
        (M(PA, MI, 99, 100, reason="x"), M(IP, MI, 99, 100)),
    ],
)
def test_resume_auto_completes(state: MigrationState, expected: MigrationState) -> None:
    assert transition(state, Resume(), POLICY) == expected


@pytest.mark.parametrize(
    ("name", "event", "expected"),
    [
        # new source-only points arrived: a completed backfill has work again
        ("completed", Progress(100, 120), M(IP, MI, 100, 120)),
        ("completed_rb", Progress(100, 120), M(IP, MI, 100, 120, rolled_back=True)),
        ("completed_window", Progress(100, 120), M(IP, RW, 100, 120, cutover_at=T0)),
        ("in_progress", Progress(40, 200), M(IP, MI, 40, 200)),
        ("paused", Progress(40, 200), M(PA, MI, 40, 200, reason="maintenance")),
    ],
)
def test_progress_can_drop_coverage(name: str, event: Progress, expected: MigrationState) -> None:
    after = transition(STATES[name], event, POLICY)
    assert after == expected
    assert after.coverage < STATES[name].coverage


@pytest.mark.parametrize(
    ("processed", "total", "coverage"),
    [(0, 0, 1.0), (5, 0, 1.0), (0, 4, 0.0), (1, 4, 0.25), (4, 4, 1.0), (9, 4, 1.0), (-3, 4, 0.0)],
)
def test_coverage(processed: int, total: int, coverage: float) -> None:
    assert M(processed=processed, total=total).coverage == coverage


@pytest.mark.parametrize("make", [lambda: Start(-1, 0), lambda: Start(0, -1)])
def test_start_rejects_negative_counts(make: Any) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        make()


@pytest.mark.parametrize("make", [lambda: Progress(-1, 0), lambda: Progress(0, -1)])
def test_progress_rejects_negative_counts(make: Any) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        make()


def test_empty_pause_reason_is_none() -> None:
    assert transition(STATES["in_progress"], Pause(), POLICY).reason is None


def test_error_and_reason_are_cleared_by_cancel_and_finalize() -> None:
    assert transition(STATES["paused"], Cancel(), POLICY) == M(CA, ST, 40, 100)
    assert transition(STATES["failed"], Cancel(), POLICY) == M(CA, ST, 40, 100)
    forced = transition(STATES["failed_window"], Finalize(at=T1, force=True), POLICY)
    assert forced == M(CO, ST, 40, 100, cutover_at=T0, finalized_at=T1)


# --- cutover threshold ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["in_progress", "paused", "completed", "completed_rb"])
def test_cutover_at_exact_threshold_is_allowed(name: str) -> None:
    after = transition(STATES[name], Cutover(coverage=0.99, at=T1), POLICY)
    assert after.phase is RW
    assert after.cutover_at == T1
    assert after.rolled_back is False
    assert after.status is STATES[name].status


@pytest.mark.parametrize("coverage", [0.9899, 0.5, 0.0])
def test_cutover_below_threshold_is_refused(coverage: float) -> None:
    with pytest.raises(ThresholdNotMetError) as info:
        transition(STATES["in_progress"], Cutover(coverage=coverage, at=T1), POLICY)
    assert info.value.coverage == coverage
    assert info.value.threshold == 0.99
    assert "--force" in str(info.value)


@pytest.mark.parametrize("coverage", [0.9899, 0.0])
def test_cutover_below_threshold_with_force(coverage: float) -> None:
    after = transition(STATES["in_progress"], Cutover(coverage, at=T1, force=True), POLICY)
    assert after == M(IP, RW, 40, 100, cutover_at=T1)


def test_cutover_uses_the_event_coverage_not_the_counts() -> None:
    # the state says 40%, the event's fresh count says 99.5%: the event wins
    after = transition(STATES["in_progress"], Cutover(0.995, at=T1), POLICY)
    assert after.phase is RW


def test_cutover_threshold_zero_and_one() -> None:
    lenient = Policy(cutover_threshold=0.0)
    assert transition(STATES["in_progress"], Cutover(0.0, at=T1), lenient).phase is RW
    strict = Policy(cutover_threshold=1.0)
    with pytest.raises(ThresholdNotMetError):
        transition(STATES["completed"], Cutover(0.999999, at=T1), strict)
    assert transition(STATES["completed"], Cutover(1.0, at=T1), strict).phase is RW


def test_invalid_cutover_is_refused_before_the_threshold() -> None:
    with pytest.raises(InvalidTransitionError):
        transition(STATES["failed"], Cutover(0.0, at=T1), POLICY)


# --- rollback window -----------------------------------------------------------------------------


def test_finalize_exactly_when_window_closes() -> None:
    after = transition(STATES["completed_window"], Finalize(at=T0 + WINDOW), POLICY)
    assert after == M(CO, ST, 100, 100, cutover_at=T0, finalized_at=T0 + WINDOW)
    assert after.finalized and after.terminal


def test_finalize_one_second_early_is_refused() -> None:
    with pytest.raises(RollbackWindowOpenError) as info:
        transition(STATES["completed_window"], Finalize(at=T0 + WINDOW - 1), POLICY)
    assert info.value.seconds_left == 1.0
    message = str(info.value)
    assert "1s" in message
    assert "--force" in message
    assert "force=True" in message


@pytest.mark.parametrize(
    ("window", "elapsed", "left", "human"),
    [
        (3600.0, 1.0, 3599.0, "59m 59s"),
        (3600.0, 0.0, 3600.0, "1h 0m"),
        (86400.0, 0.0, 86400.0, "1d 0h"),
        (86400.0, 60.0, 86340.0, "23h 59m"),
        (3600.0, 3599.5, 0.5, "1s"),
        (3600.0, 3540.5, 59.5, "1m 0s"),  # rounded up: never reads shorter than it is
        (90.0, 0.0, 90.0, "1m 30s"),
    ],
)
def test_finalize_early_names_time_left(window: float, elapsed: float, left: float, human: str) -> None:
    policy = Policy(rollback_window=window)
    with pytest.raises(RollbackWindowOpenError) as info:
        transition(STATES["completed_window"], Finalize(at=T0 + elapsed), policy)
    assert info.value.seconds_left == left
    assert f"another {human};" in str(info.value)


def test_finalize_early_with_force() -> None:
    after = transition(STATES["completed_window"], Finalize(at=T0 + 1, force=True), POLICY)
    assert after == M(CO, ST, 100, 100, cutover_at=T0, finalized_at=T0 + 1)


@pytest.mark.parametrize("name", ["in_progress_window", "paused_window", "failed_window"])
def test_finalize_with_partial_coverage_is_refused_even_after_the_window(name: str) -> None:
    with pytest.raises(RollbackWindowOpenError) as info:
        transition(STATES[name], Finalize(at=T0 + 10 * WINDOW), POLICY)
    assert info.value.seconds_left is None
    message = str(info.value)
    assert "partial" in message
    assert "--force" in message
    assert "force=True" in message


@pytest.mark.parametrize("name", ["in_progress_window", "paused_window", "failed_window"])
def test_finalize_with_partial_coverage_and_force(name: str) -> None:
    after = transition(STATES[name], Finalize(at=T1, force=True), POLICY)
    assert after == M(CO, ST, 40, 100, cutover_at=T0, finalized_at=T1)


def test_zero_window_allows_finalize_at_cutover() -> None:
    policy = Policy(rollback_window=0.0)
    after = transition(STATES["completed_window"], Finalize(at=T0), policy)
    assert after.finalized


@pytest.mark.parametrize(
    ("name", "now", "left"),
    [
        ("completed_window", T0, 3600.0),
        ("completed_window", T0 + 1, 3599.0),
        ("completed_window", T0 + WINDOW - 1, 1.0),
        ("completed_window", T0 + WINDOW, 0.0),
        ("completed_window", T0 + 5 * WINDOW, 0.0),
        ("in_progress_window", T0 + 600, 3000.0),
        ("failed_window", T0 - 100, 3700.0),
        ("planned", T0, None),
        ("in_progress", T0, None),
        ("completed_rb", T0, None),
        ("cancelled", T0, None),
        ("finalized", T0, None),
    ],
)
def test_rollback_window_left(name: str, now: float, left: float | None) -> None:
    assert rollback_window_left(STATES[name], POLICY, now) == left


def test_rollback_window_left_without_cutover_time() -> None:
    assert rollback_window_left(M(CO, RW, 1, 1), POLICY, T0) is None


def test_rollback_then_cutover_again_reopens_the_window() -> None:
    state = transition(STATES["completed_window"], Rollback(at=T1), POLICY)
    assert state.rolled_back
    later = T0 + 2 * WINDOW
    state = transition(state, Cutover(1.0, at=later), POLICY)
    assert state == M(CO, RW, 100, 100, cutover_at=later)
    with pytest.raises(RollbackWindowOpenError):
        transition(state, Finalize(at=later + WINDOW - 1), POLICY)


# --- reopen --------------------------------------------------------------------------------------


def test_reopen_then_rollback_queries_the_source_with_dual_writes() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    after = transition(reopened, Rollback(at=T2 + 60), POLICY)
    assert after == M(CO, MI, 100, 100, rolled_back=True)
    assert not after.finalized
    assert write_route(after) is WriteRoute.DUAL_WRITE
    for policy in (POLICY, Policy(query_threshold=0.0)):
        for coverage in (0.0, 1.0):
            assert query_route(after, coverage, policy) is QueryRoute.SOURCE
    assert allowed_events(after) == ("progress", "cancel", "cutover")


@pytest.mark.parametrize(
    ("now", "left"),
    [
        (T2, 3600.0),
        (T2 + 1, 3599.0),
        (T2 + WINDOW - 1, 1.0),
        (T2 + WINDOW, 0.0),
        (T2 + 5 * WINDOW, 0.0),
    ],
)
def test_reopen_opens_a_new_full_window_from_its_time(now: float, left: float) -> None:
    # the first window (from T0) closed long ago; the reopened one starts at the reopen
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    assert reopened.cutover_at == T2
    assert rollback_window_left(reopened, POLICY, now) == left


def test_finalize_again_after_reopen_waits_for_the_new_window() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    with pytest.raises(RollbackWindowOpenError) as info:
        transition(reopened, Finalize(at=T2 + WINDOW - 1), POLICY)
    assert info.value.seconds_left == 1.0
    assert "another 1s;" in str(info.value)
    after = transition(reopened, Finalize(at=T2 + WINDOW), POLICY)
    assert after == M(CO, ST, 100, 100, cutover_at=T2, finalized_at=T2 + WINDOW)
    assert after.finalized and after.terminal


def test_finalize_again_after_reopen_with_force() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    after = transition(reopened, Finalize(at=T2 + 1, force=True), POLICY)
    assert after == M(CO, ST, 100, 100, cutover_at=T2, finalized_at=T2 + 1)


def test_reopen_of_a_forced_partial_finalize_keeps_the_counts() -> None:
    forced = transition(STATES["in_progress_window"], Finalize(at=T1, force=True), POLICY)
    assert forced == M(CO, ST, 40, 100, cutover_at=T0, finalized_at=T1)
    reopened = transition(forced, Reopen(at=T2), POLICY)
    # partial coverage is in progress again: finalize needs force (or the backfill) once more
    assert reopened == M(IP, RW, 40, 100, cutover_at=T2)
    assert reopened.coverage == 0.4
    after = transition(reopened, Progress(40, 100), POLICY)
    assert after == M(IP, RW, 40, 100, cutover_at=T2)
    with pytest.raises(RollbackWindowOpenError) as info:
        transition(after, Finalize(at=T2 + 10 * WINDOW), POLICY)
    assert info.value.seconds_left is None
    assert "partial" in str(info.value)


def test_reopened_state_round_trip() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    data = reopened.to_dict()
    assert data == {
        "status": "completed",
        "phase": "rollback_window",
        "processed": 100,
        "total": 100,
        "reason": None,
        "error": None,
        "cutover_at": T2,
        "finalized_at": None,
        "rolled_back": False,
    }
    assert MigrationState.from_dict(json.loads(json.dumps(data))) == reopened


def test_reopened_state_routing() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    assert reopened.label == "completed/rollback_window"
    assert write_route(reopened) is WriteRoute.DUAL_WRITE
    for policy in (POLICY, Policy(query_threshold=0.5)):
        for coverage in (0.0, 0.49, 0.5, 1.0):
            assert query_route(reopened, coverage, policy) is QueryRoute.TARGET
    assert allowed_events(reopened) == ("progress", "rollback", "finalize")


def test_reopen_twice_is_refused() -> None:
    reopened = transition(STATES["finalized"], Reopen(at=T2), POLICY)
    with pytest.raises(InvalidTransitionError) as info:
        transition(reopened, Reopen(at=T2 + 1), POLICY)
    assert str(info.value) == (
        "cannot apply 'reopen' to a migration that is completed/rollback_window: it is not finalized"
    )


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STATES))
def test_write_route(name: str) -> None:
    assert write_route(STATES[name]) is ROUTES[name][0]


@pytest.mark.parametrize("name", list(STATES))
def test_query_route_without_query_threshold(name: str) -> None:
    for coverage in (0.0, 0.5, 1.0):
        assert query_route(STATES[name], coverage, POLICY) is ROUTES[name][1]


@pytest.mark.parametrize("name", list(STATES))
def test_query_route_with_query_threshold(name: str) -> None:
    policy = Policy(query_threshold=0.5)
    below, at = THRESHOLD_ROUTES[name]
    assert query_route(STATES[name], 0.49, policy) is below
    assert query_route(STATES[name], 0.5, policy) is at


def test_query_route_uses_the_coverage_argument() -> None:
    # the state's own counts say 40%; the caller's fresher count decides
    policy = Policy(query_threshold=0.9)
    assert query_route(STATES["in_progress"], 0.95, policy) is QueryRoute.TARGET
    assert query_route(STATES["completed"], 0.5, policy) is QueryRoute.SOURCE


def test_query_threshold_zero_moves_queries_at_start() -> None:
    policy = Policy(query_threshold=0.0)
    started = transition(M(), Start(0, 100), policy)
    assert query_route(started, 0.0, policy) is QueryRoute.TARGET
    assert query_route(M(), 0.0, policy) is QueryRoute.SOURCE


# --- serialisation -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STATES))
def test_round_trip(name: str) -> None:
    data = STATES[name].to_dict()
    assert json.loads(json.dumps(data)) == data
    assert type(data["status"]) is str
    assert type(data["phase"]) is str
    assert MigrationState.from_dict(json.loads(json.dumps(data))) == STATES[name]


def test_to_dict_shape() -> None:
    assert STATES["paused_window"].to_dict() == {
        "status": "paused",
        "phase": "rollback_window",
        "processed": 40,
        "total": 100,
        "reason": "maintenance",
        "error": None,
        "cutover_at": T0,
        "finalized_at": None,
        "rolled_back": False,
    }


def test_from_dict_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    assert MigrationState.from_dict({}) == M()
    data = {"status": "in_progress", "phase": "migrating", "processed": 3, "total": 9, "epoch": 7}
    assert MigrationState.from_dict(data) == M(IP, MI, 3, 9)


def test_from_dict_accepts_integer_times() -> None:
    state = MigrationState.from_dict({"phase": "rollback_window", "cutover_at": 1700000000})
    assert state.cutover_at == 1_700_000_000.0
    assert type(state.cutover_at) is float


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("status", "bogus"),
        ("status", None),
        ("status", 3),
        ("phase", "migrated"),
        ("phase", None),
        ("processed", -1),
        ("processed", "3"),
        ("processed", True),
        ("processed", 1.5),
        ("total", -5),
        ("total", None),
        ("reason", 5),
        ("error", ["boom"]),
        ("cutover_at", "yesterday"),
        ("cutover_at", True),
        ("cutover_at", math.nan),
        ("finalized_at", math.inf),
        ("finalized_at", {}),
        ("rolled_back", "yes"),
        ("rolled_back", 1),
        ("rolled_back", None),
    ],
)
def test_from_dict_rejects_bad_values(key: str, value: Any) -> None:
    data = STATES["completed_window"].to_dict()
    data[key] = value
    with pytest.raises(ValueError, match=key):
        MigrationState.from_dict(data)


# --- policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cutover_threshold": -0.01}, "cutover_threshold"),
        ({"cutover_threshold": 1.01}, "cutover_threshold"),
        ({"cutover_threshold": math.nan}, "cutover_threshold"),
        ({"query_threshold": -0.5}, "query_threshold"),
        ({"query_threshold": 1.5}, "query_threshold"),
        ({"query_threshold": math.nan}, "query_threshold"),
        ({"rollback_window": -1.0}, "rollback_window"),
        ({"rollback_window": math.nan}, "rollback_window"),
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Policy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"cutover_threshold": 0.0, "query_threshold": 0.0, "rollback_window": 0.0},
        {"cutover_threshold": 1.0, "query_threshold": 1.0, "rollback_window": math.inf},
    ],
)
def test_policy_accepts_boundaries(kwargs: dict[str, float]) -> None:
    Policy(**kwargs)


def test_policy_defaults() -> None:
    assert Policy() == Policy(cutover_threshold=0.99, query_threshold=None, rollback_window=86400.0)


# --- random walk ---------------------------------------------------------------------------------


def _random_event(rng: random.Random, now: float) -> Event:
    kind = rng.choices(
        ["start", "progress", "error", "pause", "resume", "cancel", "cutover", "rollback", "final", "reopen"],
        weights=[3, 12, 3, 3, 4, 1, 4, 3, 2, 2],
    )[0]
    if kind in ("start", "progress"):
        total = rng.randint(0, 50)
        processed = rng.choice([0, total, rng.randint(0, total), total + rng.randint(0, 3)])
        return Start(processed, total) if kind == "start" else Progress(processed, total)
    if kind == "error":
        return Error(f"error at {now}")
    if kind == "pause":
        return Pause(rng.choice(["", "night", "quota"]))
    if kind == "resume":
        return Resume()
    if kind == "cancel":
        return Cancel()
    if kind == "cutover":
        return Cutover(rng.random(), at=now, force=rng.random() < 0.3)
    if kind == "rollback":
        return Rollback(at=now)
    if kind == "reopen":
        return Reopen(at=now)
    return Finalize(at=now, force=rng.random() < 0.2)


def _check_invariants(state: MigrationState, policy: Policy, now: float) -> None:
    assert 0.0 <= state.coverage <= 1.0
    if state.phase is not Phase.STABLE:
        assert write_route(state) is not WriteRoute.LEGACY
        assert not state.terminal
    if state.phase is Phase.ROLLBACK_WINDOW:
        for coverage in (0.0, 1.0):
            assert query_route(state, coverage, policy) is QueryRoute.TARGET
        assert state.cutover_at is not None
        assert not state.rolled_back
        left = rollback_window_left(state, policy, now)
        assert left is not None and left >= 0.0
    if state.finalized:
        assert state.status is Status.COMPLETED and state.phase is Phase.STABLE
        assert write_route(state) is WriteRoute.TARGET
        assert query_route(state, 0.0, policy) is QueryRoute.TARGET
    if state.status is Status.PAUSED:
        assert state.error is None
    if state.status is Status.FAILED:
        assert state.error is not None and state.reason is None
    if state.status is Status.COMPLETED:
        assert state.reason is None and state.error is None
    assert MigrationState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize("seed", range(40))
def test_random_walk(seed: int) -> None:
    rng = random.Random(seed)
    policy = Policy(
        cutover_threshold=rng.choice([0.0, 0.5, 0.99, 1.0]),
        query_threshold=rng.choice([None, 0.0, 0.5, 0.9]),
        rollback_window=rng.choice([0.0, 60.0, 3600.0]),
    )
    now = T0
    for _walk in range(5):
        state = MigrationState()
        cancelled = False
        for _step in range(400):
            now += rng.choice([0.0, 1.0, 30.0, 600.0])
            event = _random_event(rng, now)
            try:
                after = transition(state, event, policy)
            except InvalidTransitionError:
                assert event.name not in allowed_events(state)
                continue
            except (ThresholdNotMetError, RollbackWindowOpenError):
                assert event.name in allowed_events(state)
                continue
            assert state.status is not Status.CANCELLED, "a cancelled migration accepted an event"
            if state.finalized:
                # a finalized migration can only be reopened, into a new window from the reopen
                assert isinstance(event, Reopen), "a finalized migration accepted an event but reopen"
                assert after.phase is Phase.ROLLBACK_WINDOW
                assert after.cutover_at == event.at
                assert not after.finalized and not after.terminal
            assert event.name in allowed_events(state)
            state = after
            cancelled = cancelled or state.status is Status.CANCELLED
            assert state.status is Status.CANCELLED or not cancelled, "a cancelled migration came back"
            _check_invariants(state, policy, now)
        if state.status is Status.CANCELLED:
            assert allowed_events(state) == ()
        if state.finalized:
            assert allowed_events(state) == ("reopen",)


def test_random_walks_reach_every_representative_state() -> None:
    # With the walk above: every reachable combination is represented, and every represented one
    # is reachable.
    seen: set[tuple[Status, Phase, bool, bool]] = set()
    reopened = 0
    rng = random.Random(1234)
    now = T0
    for _walk in range(300):
        state = MigrationState()
        seen.add(_combo(state))
        for _step in range(60):
            now += rng.choice([0.0, 600.0, 5000.0])
            event = _random_event(rng, now)
            try:
                state = transition(state, event, POLICY)
            except TransitionError:
                continue
            reopened += isinstance(event, Reopen)
            seen.add(_combo(state))
    assert seen == {_combo(s) for s in STATES.values()}
    assert reopened > 0  # the walks do take the reopen edge


# --- the module is pure --------------------------------------------------------------------------


def test_state_module_imports_only_the_standard_library_and_errors() -> None:
    tree = ast.parse(Path(state_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    assert imported == {
        "__future__",
        "dataclasses",
        "enum",
        "math",
        "typing",
        "lattice_qdrant.errors",
    }


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(state_module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == state_module.__name__
    }
    assert public <= set(state_module.__all__)

    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert state_module.__all__ == sorted(state_module.__all__, key=kind)
    assert {"EVENT_TYPES", "Event"} <= set(state_module.__all__)
