"""The migration state machine and the routing tables, as pure code.

Nothing here does I/O, reads a clock or imports qdrant-client: every function takes the state
(and the time, where time matters) and returns a decision. The store applies the decision and writes
the record.

A migration has a **status** (how far the backfill of the target vector has got) and a **phase**
(where reads go, and whether the source model can still come back). Each event is a frozen
dataclass; :func:`transition` applies one to a :class:`MigrationState` under a :class:`Policy`
and returns the next state, or raises a :class:`~lattice_qdrant.errors.TransitionError`.

Status, the backfill (the phase does not change)::

                  start                 ── pause ──►
      PLANNED ──────────► IN_PROGRESS                PAUSED
                            │     ▲     ◄── resume ──  │
                      error │     │ resume             │ error
                            ▼     │                    │
                           FAILED ◄────────────────────┘

      IN_PROGRESS, PAUSED ─── progress, processed >= total ──► COMPLETED
      COMPLETED ──────────── progress, processed < total ───► IN_PROGRESS  (PAUSED stays PAUSED)

    start and resume also lead to COMPLETED when processed >= total.

Phase, the reads::

      STABLE ──start──► MIGRATING ──cutover──► ROLLBACK_WINDOW ──finalize──► STABLE
      (planned)          │   ▲                      │  ▲                     (finalized)
                         │   └─────rollback─────────┘  └───────reopen────────────┘
                         └──cancel──► STABLE (cancelled)

    Cancelled and finalized migrations are terminal: no event applies any more, except ``reopen`` of a
    finalized one whose source vectors were restored from a backup (back to ROLLBACK_WINDOW).

Events (any other pair raises ``InvalidTransitionError``)::

    event     from status                          from phase             to
    --------  -----------------------------------  ---------------------  --------------------------
    start     PLANNED                              STABLE                 IN_PROGRESS | COMPLETED,
                                                                          MIGRATING
    progress  IN_PROGRESS, PAUSED, COMPLETED       MIGRATING, ROLLBACK_W  IN_PROGRESS | PAUSED |
                                                                          COMPLETED, same phase
    error     IN_PROGRESS, PAUSED                  MIGRATING, ROLLBACK_W  FAILED, same phase
    pause     IN_PROGRESS                          MIGRATING, ROLLBACK_W  PAUSED, same phase
    resume    PAUSED, FAILED                       MIGRATING, ROLLBACK_W  IN_PROGRESS | COMPLETED
    cancel    any                                  STABLE, MIGRATING      CANCELLED, STABLE
    cutover   IN_PROGRESS, PAUSED, COMPLETED       MIGRATING              same status, ROLLBACK_W
              (coverage >= cutover_threshold, or force)
    rollback  any                                  ROLLBACK_WINDOW        same status, MIGRATING
                                                                          (queries pinned to source)
    finalize  COMPLETED, window elapsed (or force) ROLLBACK_WINDOW        COMPLETED, STABLE (final)
    reopen    COMPLETED (finalized)                STABLE                 COMPLETED, ROLLBACK_W
                                                                          (a new window from `at`)

Routing, where writes and queries go::

    state                          writes       queries
    -----------------------------  -----------  ----------------------------------------------
    STABLE: planned, cancelled     LEGACY       SOURCE
    MIGRATING                      DUAL_WRITE   SOURCE; TARGET once coverage >= query_threshold
    MIGRATING after a rollback     DUAL_WRITE   SOURCE (pinned until the next cutover)
    ROLLBACK_WINDOW                DUAL_WRITE   TARGET
    STABLE: finalized              TARGET       TARGET

Writes go to both vectors from ``start`` until ``finalize``, so a rollback always finds the source
vector up to date (after a reopen, once the points written since finalize are embedded again), and a
cutover never finds the target vector missing a write made during the backfill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias, TypeVar

from lattice_qdrant.errors import (
    InvalidTransitionError,
    RollbackWindowOpenError,
    ThresholdNotMetError,
)

__all__ = [
    "EVENT_TYPES",
    "Cancel",
    "Cutover",
    "Error",
    "Event",
    "Finalize",
    "MigrationState",
    "Pause",
    "Phase",
    "Policy",
    "Progress",
    "QueryRoute",
    "Reopen",
    "Resume",
    "Rollback",
    "Start",
    "Status",
    "WriteRoute",
    "allowed_events",
    "format_duration",
    "query_route",
    "rollback_window_left",
    "transition",
    "write_route",
]


class Status(StrEnum):
    """How far the backfill of the target vector has got."""

    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    """Where queries go, and whether the source model can still come back."""

    STABLE = "stable"
    MIGRATING = "migrating"
    ROLLBACK_WINDOW = "rollback_window"


class WriteRoute(StrEnum):
    """Which vectors a write must carry."""

    LEGACY = "legacy"
    DUAL_WRITE = "dual_write"
    TARGET = "target"


class QueryRoute(StrEnum):
    """Which vector a query searches."""

    SOURCE = "source"
    TARGET = "target"


def _check_fraction(name: str, value: float) -> None:
    # ``not 0 <= x <= 1`` also rejects NaN.
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class Policy:
    """The thresholds that guard cutover, query routing and finalize.

    Attributes:
        cutover_threshold: fraction (0..1) of points that must have the target vector before a
            cutover is accepted without ``force``.
        query_threshold: if set, queries move to the target vector on their own once coverage
            reaches this fraction, before the cutover; ``None`` keeps them on the source until the
            cutover.
        rollback_window: seconds after the cutover during which finalize is refused (unless forced).

    Raises:
        ValueError: a threshold is outside [0, 1] or the window is negative; the message names the
            field.
    """

    cutover_threshold: float = 0.99
    query_threshold: float | None = None
    rollback_window: float = 86400.0

    def __post_init__(self) -> None:
        _check_fraction("cutover_threshold", self.cutover_threshold)
        if self.query_threshold is not None:
            _check_fraction("query_threshold", self.query_threshold)
        if not self.rollback_window >= 0.0:
            raise ValueError(f"rollback_window must be zero or more seconds, got {self.rollback_window!r}")


@dataclass(frozen=True)
class MigrationState:
    """The lifecycle record of one migration.

    Attributes:
        status: how far the backfill has got.
        phase: where queries go.
        processed: points that have the target vector.
        total: points in the collection.
        reason: why the migration is paused (``PAUSED`` only).
        error: the failure message (``FAILED`` only).
        cutover_at: unix seconds of the cutover that opened the rollback window.
        finalized_at: unix seconds of the finalize.
        rolled_back: queries are pinned to the source after a rollback, until the next cutover.
    """

    status: Status = Status.PLANNED
    phase: Phase = Phase.STABLE
    processed: int = 0
    total: int = 0
    reason: str | None = None
    error: str | None = None
    cutover_at: float | None = None
    finalized_at: float | None = None
    rolled_back: bool = False

    @property
    def coverage(self) -> float:
        """``processed / total``, clamped to [0, 1]; 1.0 for an empty collection."""
        if self.total <= 0:
            return 1.0
        return min(1.0, max(0.0, self.processed / self.total))

    @property
    def finalized(self) -> bool:
        """Whether the migration was finalized (the target model is the only one left)."""
        return self.finalized_at is not None

    @property
    def terminal(self) -> bool:
        """Whether the migration is over: cancelled, or finalized (only ``reopen`` applies then)."""
        return self.status is Status.CANCELLED or self.finalized

    @property
    def label(self) -> str:
        """Human label: ``in_progress/migrating``, ``completed/stable (finalized)``, ..."""
        label = f"{self.status.value}/{self.phase.value}"
        if self.finalized:
            label += " (finalized)"
        elif self.rolled_back:
            label += " (rolled back)"
        return label

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: enums become their string values."""
        return {
            "status": self.status.value,
            "phase": self.phase.value,
            "processed": self.processed,
            "total": self.total,
            "reason": self.reason,
            "error": self.error,
            "cutover_at": self.cutover_at,
            "finalized_at": self.finalized_at,
            "rolled_back": self.rolled_back,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationState:
        """Inverse of :meth:`to_dict`.

        Unknown keys are ignored (a newer writer may add some); missing keys take their defaults.

        Raises:
            ValueError: a value has the wrong type or is out of range; the message names the key.
        """
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        kwargs: dict[str, Any] = {}
        if "status" in values:
            kwargs["status"] = _enum_value(Status, "status", values["status"])
        if "phase" in values:
            kwargs["phase"] = _enum_value(Phase, "phase", values["phase"])
        for key in ("processed", "total"):
            if key in values:
                kwargs[key] = _count_value(key, values[key])
        for key in ("reason", "error"):
            if key in values:
                kwargs[key] = _optional_str_value(key, values[key])
        for key in ("cutover_at", "finalized_at"):
            if key in values:
                kwargs[key] = _optional_time_value(key, values[key])
        if "rolled_back" in values:
            if not isinstance(values["rolled_back"], bool):
                raise ValueError(f"rolled_back must be a boolean, got {values['rolled_back']!r}")
            kwargs["rolled_back"] = values["rolled_back"]
        return cls(**kwargs)


_E = TypeVar("_E", bound=StrEnum)


def _enum_value(enum: type[_E], key: str, value: Any) -> _E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ValueError(f"{key} must be one of {allowed}; got {value!r}") from None


def _count_value(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _optional_str_value(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null, got {value!r}")
    return value


def _optional_time_value(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be unix seconds (a finite number) or null, got {value!r}")
    return float(value)


def _check_counts(processed: int, total: int) -> None:
    if processed < 0:
        raise ValueError(f"processed must not be negative, got {processed}")
    if total < 0:
        raise ValueError(f"total must not be negative, got {total}")


@dataclass(frozen=True)
class Start:
    """Start the backfill with the counts found so far.

    Raises:
        ValueError: a count is negative.
    """

    name: ClassVar[str] = "start"
    processed: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        _check_counts(self.processed, self.total)


@dataclass(frozen=True)
class Progress:
    """New counts from the backfill; they replace the old ones.

    Raises:
        ValueError: a count is negative.
    """

    name: ClassVar[str] = "progress"
    processed: int
    total: int

    def __post_init__(self) -> None:
        _check_counts(self.processed, self.total)


@dataclass(frozen=True)
class Error:
    """The backfill failed."""

    name: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Pause:
    """Pause the backfill (an empty reason is stored as ``None``)."""

    name: ClassVar[str] = "pause"
    reason: str = ""


@dataclass(frozen=True)
class Resume:
    """Resume a paused or failed backfill."""

    name: ClassVar[str] = "resume"


@dataclass(frozen=True)
class Cancel:
    """Abandon the migration; the source model stays the only one read."""

    name: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Cutover:
    """Move queries to the target vector and open the rollback window.

    Attributes:
        coverage: fraction of points with the target vector, as counted just before the cutover.
        at: unix seconds of the cutover.
        force: cut over below the policy's threshold.
    """

    name: ClassVar[str] = "cutover"
    coverage: float
    at: float
    force: bool = False


@dataclass(frozen=True)
class Rollback:
    """Move queries back to the source vector (during the rollback window)."""

    name: ClassVar[str] = "rollback"
    at: float


@dataclass(frozen=True)
class Finalize:
    """Close the rollback window: the target model becomes the only one.

    Attributes:
        at: unix seconds of the finalize.
        force: finalize before the window has elapsed, or with partial coverage.
    """

    name: ClassVar[str] = "finalize"
    at: float
    force: bool = False


@dataclass(frozen=True)
class Reopen:
    """Undo a finalize after the source vectors were restored from a backup.

    The migration goes back to a rollback window (queries on the target, writes to both, a new window from
    ``at``; completed, or in progress if it was finalized by force with partial coverage), so ``rollback``
    can then return queries to the source. Points written between finalize and reopen hold no source
    vector until they are embedded again (``lattice-qdrant restore`` does it).

    Attributes:
        at: unix seconds of the reopening (the new window starts then).
    """

    name: ClassVar[str] = "reopen"
    at: float


Event: TypeAlias = Start | Progress | Error | Pause | Resume | Cancel | Cutover | Rollback | Finalize | Reopen
"""Any lifecycle event."""

EVENT_TYPES: tuple[type[Event], ...] = (
    Start,
    Progress,
    Error,
    Pause,
    Resume,
    Cancel,
    Cutover,
    Rollback,
    Finalize,
    Reopen,
)
"""All event classes, in lifecycle order."""

_BACKFILLING = frozenset({Status.IN_PROGRESS, Status.PAUSED, Status.COMPLETED})
_INTERRUPTIBLE = frozenset({Status.IN_PROGRESS, Status.PAUSED})
_STOPPED = frozenset({Status.PAUSED, Status.FAILED})
_ACTIVE_PHASES = frozenset({Phase.MIGRATING, Phase.ROLLBACK_WINDOW})


def _refusal(state: MigrationState, event: str) -> str | None:
    """Why ``event`` is not allowed in ``state`` at all, or ``None`` if it is (guards aside)."""
    if event == "reopen":
        if state.status is Status.CANCELLED:
            return "the migration is cancelled; plan a new one"
        return None if state.finalized else "it is not finalized"
    if state.finalized:
        return "the migration is finalized; plan a new one (or restore a backup and reopen it)"
    if state.status is Status.CANCELLED:
        return "the migration is cancelled; plan a new one"
    status, phase = state.status, state.phase
    if event == "start":
        if status is Status.PLANNED and phase is Phase.STABLE:
            return None
        return "it has already started"
    if event == "cancel":
        return "roll back first" if phase is Phase.ROLLBACK_WINDOW else None
    if status is Status.PLANNED:
        return "start first"
    if event == "rollback":
        return None if phase is Phase.ROLLBACK_WINDOW else "it has not been cut over"
    if event == "finalize":
        return None if phase is Phase.ROLLBACK_WINDOW else "cut over first"
    if event == "cutover":
        if phase is Phase.ROLLBACK_WINDOW:
            return "it is already cut over"
        if status is Status.FAILED:
            return "resume first"
        return None if status in _BACKFILLING and phase is Phase.MIGRATING else "start first"
    if phase not in _ACTIVE_PHASES:
        return "start first"
    if event == "progress":
        return None if status in _BACKFILLING else "resume first"
    if event == "error":
        if status in _INTERRUPTIBLE:
            return None
        return "it has already failed" if status is Status.FAILED else "the backfill is complete"
    if event == "pause":
        if status is Status.IN_PROGRESS:
            return None
        if status is Status.PAUSED:
            return "it is already paused"
        return "resume first" if status is Status.FAILED else "the backfill is complete"
    if event == "resume":
        return None if status in _STOPPED else "it is neither paused nor failed"
    return f"unknown event {event!r}"


def format_duration(seconds: float) -> str:
    """``3599`` -> ``59m 59s``; ``90000`` -> ``1d 1h``. Rounds up, so time left never reads as ``0s``."""
    total = max(1, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _backfill_status(processed: int, total: int, otherwise: Status) -> Status:
    return Status.COMPLETED if processed >= total else otherwise


def transition(state: MigrationState, event: Event, policy: Policy) -> MigrationState:
    """Apply one event to a state and return the next state.

    Pure: the state is not changed, and time comes only from the event.

    Args:
        state: the current state.
        event: the event to apply.
        policy: the thresholds that guard cutover and finalize.

    Returns:
        The next state.

    Raises:
        InvalidTransitionError: the event is not allowed in this state (the message names both).
        ThresholdNotMetError: cutover without ``force`` below ``policy.cutover_threshold``.
        RollbackWindowOpenError: finalize without ``force`` while coverage is partial or the
            rollback window is still open.
    """
    why = _refusal(state, event.name)
    if why is not None:
        raise InvalidTransitionError(state.label, event.name, why)
    match event:
        case Start(processed=processed, total=total):
            return replace(
                state,
                status=_backfill_status(processed, total, Status.IN_PROGRESS),
                phase=Phase.MIGRATING,
                processed=processed,
                total=total,
            )
        case Progress(processed=processed, total=total):
            if processed >= total:
                status, reason = Status.COMPLETED, None
            elif state.status is Status.PAUSED:
                status, reason = Status.PAUSED, state.reason
            else:
                status, reason = Status.IN_PROGRESS, None
            return replace(state, status=status, processed=processed, total=total, reason=reason)
        case Error(message=message):
            return replace(state, status=Status.FAILED, error=message, reason=None)
        case Pause(reason=reason):
            return replace(state, status=Status.PAUSED, reason=reason or None)
        case Resume():
            return replace(
                state,
                status=_backfill_status(state.processed, state.total, Status.IN_PROGRESS),
                reason=None,
                error=None,
            )
        case Cancel():
            return replace(
                state,
                status=Status.CANCELLED,
                phase=Phase.STABLE,
                reason=None,
                error=None,
                cutover_at=None,
                rolled_back=False,
            )
        case Cutover(coverage=coverage, at=at, force=force):
            if coverage < policy.cutover_threshold and not force:
                raise ThresholdNotMetError(coverage, policy.cutover_threshold)
            return replace(state, phase=Phase.ROLLBACK_WINDOW, cutover_at=at, rolled_back=False)
        case Rollback():
            return replace(state, phase=Phase.MIGRATING, cutover_at=None, rolled_back=True)
        case Reopen(at=at):
            return replace(
                state,
                # a forced finalize of a partial backfill stays partial: its counts decide
                status=_backfill_status(state.processed, state.total, Status.IN_PROGRESS),
                phase=Phase.ROLLBACK_WINDOW,
                finalized_at=None,
                cutover_at=at,
                rolled_back=False,
            )
        case Finalize(at=at, force=force):
            if not force:
                _check_finalize(state, policy, at)
            return replace(
                state,
                status=Status.COMPLETED,
                phase=Phase.STABLE,
                finalized_at=at,
                rolled_back=False,
                reason=None,
                error=None,
            )
    # Unreachable for the Event union; kept for callers that bypass the type checker.
    raise InvalidTransitionError(state.label, str(getattr(event, "name", event)), "unknown event")


def _check_finalize(state: MigrationState, policy: Policy, at: float) -> None:
    if state.status is not Status.COMPLETED:
        raise RollbackWindowOpenError(
            f"finalize refused: the backfill is {state.status.value} and only "
            f"{state.coverage:.2%} of points have the target vector ({state.processed} of "
            f"{state.total}), so coverage is partial; finish the backfill, or pass force=True "
            "(--force) to finalize anyway",
            seconds_left=None,
        )
    left = rollback_window_left(state, policy, at)
    if left is not None and left > 0:
        raise RollbackWindowOpenError(
            f"finalize refused: the rollback window is open for another {format_duration(left)}; "
            "wait, or pass force=True (--force) to finalize now",
            seconds_left=left,
        )


def write_route(state: MigrationState) -> WriteRoute:
    """Which vectors a write must carry in this state.

    Returns:
        ``TARGET`` once finalized; ``LEGACY`` while stable otherwise (planned, cancelled);
        ``DUAL_WRITE`` while migrating or in the rollback window.
    """
    if state.finalized:
        return WriteRoute.TARGET
    if state.phase is Phase.STABLE:
        return WriteRoute.LEGACY
    return WriteRoute.DUAL_WRITE


def query_route(state: MigrationState, coverage: float, policy: Policy) -> QueryRoute:
    """Which vector a query searches in this state.

    Args:
        state: the current state.
        coverage: the current fraction of points with the target vector (may be fresher than the
            state's own counts).
        policy: supplies ``query_threshold``.

    Returns:
        ``TARGET`` once finalized or during the rollback window; while migrating, ``TARGET`` once
        ``coverage >= policy.query_threshold`` (if set) unless a rollback pinned queries to the
        source; ``SOURCE`` otherwise.
    """
    if state.finalized or state.phase is Phase.ROLLBACK_WINDOW:
        return QueryRoute.TARGET
    if state.phase is Phase.STABLE or state.rolled_back:
        return QueryRoute.SOURCE
    if policy.query_threshold is not None and coverage >= policy.query_threshold:
        return QueryRoute.TARGET
    return QueryRoute.SOURCE


def rollback_window_left(state: MigrationState, policy: Policy, now: float) -> float | None:
    """Seconds left in the rollback window.

    Args:
        state: the current state.
        policy: supplies ``rollback_window``.
        now: the current unix time (passed in: this module reads no clock).

    Returns:
        Seconds left (0 once elapsed) while in ``ROLLBACK_WINDOW`` with ``cutover_at`` set, else
        ``None``.
    """
    if state.phase is not Phase.ROLLBACK_WINDOW or state.cutover_at is None:
        return None
    return max(0.0, state.cutover_at + policy.rollback_window - now)


def allowed_events(state: MigrationState) -> tuple[str, ...]:
    """Names of the events :func:`transition` accepts in this state, for status hints.

    Guards are not evaluated: ``cutover`` is listed even below the threshold, and ``finalize`` even
    while the window is open, since ``force`` gets past both.

    Returns:
        Event names in lifecycle order (see :data:`EVENT_TYPES`); empty for a cancelled migration,
        ``("reopen",)`` for a finalized one.
    """
    return tuple(t.name for t in EVENT_TYPES if _refusal(state, t.name) is None)
