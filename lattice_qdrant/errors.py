"""The library's errors: one tree, rooted at :class:`LatticeError`.

Every error the library raises on purpose is a ``LatticeError``; errors from qdrant-client are wrapped at
the store boundary with the collection, vector name and point ids involved, so a caller never has to
catch qdrant-client's own exceptions::

    LatticeError
    ├── ConfigError                   a configuration value is wrong (names the key)
    │   ├── PlanError                 a migration plan is inconsistent (also a ValueError)
    │   │   └── TextFieldError        no sampled point holds text in the plan's text field
    │   └── AsyncClientError          the async twin cannot run on this AsyncQdrantClient as it is
    ├── ModelError                    model specs and the model registry
    │   ├── ModelConflictError        another spec is registered under the same id and version
    │   └── ModelNotFoundError        no spec registered under that id / version
    ├── EmbedderError                 an embedder failed, or does not match its spec
    │   └── MissingDependencyError    an optional dependency is missing (names the install command)
    ├── VectorValidationError         a write or query was rejected before anything was sent
    │   ├── UploadRejectedError       an upload's batch was rejected after earlier batches were written
    │   └── ScoreThresholdError       a query's score_threshold is no score its distance gives
    ├── ProbeError                    the probe has nothing to measure (an empty collection or sample)
    ├── CalibrationError              a score calibration cannot be made (too few scores) or read
    ├── MigrationError                the migration record and its lifecycle
    │   ├── MigrationNotFoundError    the collection has no migration
    │   ├── MigrationExistsError      the collection already has an unfinished migration
    │   └── TransitionError           a lifecycle event cannot be applied
    │       ├── InvalidTransitionError    the event is not allowed in the current state
    │       │   └── ReembedCancelRefusedError cancel refused: points hold the target model (restore instead)
    │       ├── ThresholdNotMetError      cutover refused: coverage below the threshold
    │       ├── RollbackWindowOpenError   finalize refused: the rollback window is still open
    │       │   └── ReembedIncompleteError    finalize refused: points of a re-embed still hold the source
    │       ├── QualityGateError          cutover refused: the shadow comparison shows the target too weak
    │       └── ConcurrentTransitionError another process changed the state first
    ├── ShardMethodError              backfill workers of one run would split the points two ways
    └── StoreError                    Qdrant refused or failed a request
        ├── TransientStoreError       worth retrying (timeouts, connection errors, HTTP 408/429/5xx)
        ├── CollectionNotFoundError   the collection does not exist
        ├── PointNotFoundError        points named by a write do not exist
        ├── VectorNotFoundError       the collection has no vector of the name a request used
        ├── VectorConflictError       a named vector exists with another size or distance
        ├── IndexConflictError        a payload index exists with another type
        ├── ServerVersionError        the server is too old (or reports no readable version)
        ├── StorageFullError          the server has no room for writes (disk full, quota reached)
        ├── StrictModeError           the server's strict mode refused the request (names the setting)
        └── InPlaceUnsupportedError   the collection cannot take a parallel named vector
            └── UnnamedVectorError    the collection's only vector is the unnamed default one
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AsyncClientError",
    "CalibrationError",
    "CollectionNotFoundError",
    "ConcurrentTransitionError",
    "ConfigError",
    "EmbedderError",
    "InPlaceUnsupportedError",
    "IndexConflictError",
    "InvalidTransitionError",
    "LatticeError",
    "MigrationError",
    "MigrationExistsError",
    "MigrationNotFoundError",
    "MissingDependencyError",
    "ModelConflictError",
    "ModelError",
    "ModelNotFoundError",
    "PlanError",
    "PointNotFoundError",
    "ProbeError",
    "QualityGateError",
    "ReembedCancelRefusedError",
    "ReembedIncompleteError",
    "RollbackWindowOpenError",
    "ScoreThresholdError",
    "ServerVersionError",
    "ShardMethodError",
    "StorageFullError",
    "StoreError",
    "StrictModeError",
    "TextFieldError",
    "ThresholdNotMetError",
    "TransientStoreError",
    "TransitionError",
    "UnnamedVectorError",
    "UploadRejectedError",
    "VectorConflictError",
    "VectorNotFoundError",
    "VectorValidationError",
]


class LatticeError(Exception):
    """Root of every error lattice-qdrant raises on purpose."""


class ConfigError(LatticeError):
    """A configuration value is missing or invalid.

    Attributes:
        key: the configuration key at fault, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class PlanError(ConfigError, ValueError):
    """A migration plan is inconsistent (for instance a re-embed to another dimension); nothing was recorded.

    Also a ``ValueError``, as the plan's own validation error is.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, key="plan")


class TextFieldError(PlanError):
    """No sampled point of the collection holds text in the plan's ``text_field``.

    Raised by ``plan`` (nothing is recorded) and ``start`` (nothing is changed): the backfill embeds that
    field, so with the wrong name every point would become a failure record.

    Attributes:
        collection: the collection sampled.
        field: the ``text_field`` asked for.
        sampled: how many points were sampled.
        fields: the payload fields the sampled points have, sorted.
    """

    def __init__(self, collection: str, field: str, sampled: int, fields: Sequence[str]) -> None:
        found = ", ".join(repr(f) for f in fields) if fields else "none (the points have no payload)"
        super().__init__(
            f"none of the {sampled} sampled points of {collection!r} holds text in the payload field "
            f"{field!r}, which the backfill embeds; the sample's payload fields: {found}. Plan with "
            "text_field (--text-field) naming the field that holds the text"
        )
        self.key = "text_field"
        self.collection = collection
        self.field = field
        self.sampled = sampled
        self.fields = list(fields)


class AsyncClientError(ConfigError):
    """The async twin (:mod:`lattice_qdrant.aclient`) cannot run on this ``AsyncQdrantClient`` as it is.

    Routed calls run on a synchronous client of the same server, built from the async client's
    ``init_options``: an option with no synchronous twin (an async ``auth_token_provider``, an httpx async
    transport) is refused by name, and the message says to pass ``sync_client=`` to ``wrap``. Also raised
    when a coroutine of qdrant-client's local mode suspends, which the twin relies on it never doing.
    """


class ModelError(LatticeError):
    """Model specs and the model registry."""


class ModelConflictError(ModelError):
    """A different spec is already registered under the same model id and version."""

    def __init__(self, model_id: str, version: int, registered: str, offered: str) -> None:
        super().__init__(
            f"model {model_id!r} version {version} is already registered as {registered}; "
            f"refusing to overwrite it with {offered}. Register the new configuration under a new "
            "version (a changed configuration needs a re-embed)."
        )
        self.model_id = model_id
        self.version = version
        self.registered = registered
        self.offered = offered


class ModelNotFoundError(ModelError):
    """No spec is registered under the model id (and version) asked for."""


class EmbedderError(LatticeError):
    """An embedder failed, or produced vectors that do not fit its spec."""


class MissingDependencyError(EmbedderError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'lattice-qdrant[{extra}]'"
        )
        self.package = package
        self.extra = extra


class VectorValidationError(LatticeError):
    """A batch of points (or a query) was rejected before anything was written or searched.

    Attributes:
        problems: ``(point_id, problem)`` pairs, one per rejected point; ``point_id`` is ``None`` for a
            query.
    """

    def __init__(self, problems: Sequence[tuple[Any, str]]) -> None:
        self.problems = list(problems)
        shown = "; ".join(
            (f"point {pid!r}: {problem}" if pid is not None else problem)
            for pid, problem in self.problems[:5]
        )
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"rejected, nothing was written: {shown}{more}")


class UploadRejectedError(VectorValidationError):
    """A batch of an upload read from a generator was rejected whole, after earlier batches were written.

    Attributes:
        written: points of the earlier batches, written before this one was rejected.
    """

    def __init__(self, problems: Sequence[tuple[Any, str]], *, written: int) -> None:
        super().__init__(problems)
        self.written = written
        self.args = (
            str(self).replace("rejected, nothing was written", "batch rejected, nothing of it was written", 1)
            + f"; the {written} point(s) of the earlier batches were written",
        )


class ScoreThresholdError(VectorValidationError, ValueError):
    """A query's ``score_threshold`` is not a score its distance can give (NaN, or outside the range:
    cosine scores lie in ``[-1, 1]``, Euclid and Manhattan distances in ``[0, inf)``); nothing was searched.

    Attributes:
        threshold: the value given.
        distance: the distance it was checked against (Qdrant's spelling).
        low: the smallest score the distance gives.
        high: the largest.
    """

    def __init__(self, threshold: Any, distance: str, low: float, high: float, problem: str) -> None:
        self.threshold, self.distance, self.low, self.high = threshold, distance, low, high
        message = (
            f"score_threshold {threshold!r} {problem}: {distance} scores lie in "
            f"{'(' if low == -math.inf else '['}{low:g}, {high:g}{')' if high == math.inf else ']'}"
        )
        super().__init__([(None, message)])
        self.args = (message,)


class CalibrationError(LatticeError):
    """A score calibration cannot be made (fewer scores than it needs: the message says how many and how
    to get them) or the stored one cannot be read."""


class ProbeError(LatticeError):
    """The probe has nothing to measure: an empty collection, or no sampled point with a source vector."""


class MigrationError(LatticeError):
    """The migration record of a collection and its lifecycle."""


class MigrationNotFoundError(MigrationError):
    """The collection has no migration planned."""

    def __init__(self, collection: str) -> None:
        super().__init__(f"collection {collection!r} has no migration; plan one first")
        self.collection = collection


class MigrationExistsError(MigrationError):
    """The collection already has a migration that is not finished."""

    def __init__(self, collection: str, status: str) -> None:
        super().__init__(
            f"collection {collection!r} already has a migration ({status}); finish or cancel it first"
        )
        self.collection = collection
        self.status = status


class TransitionError(MigrationError):
    """A lifecycle event cannot be applied to the current state."""


class InvalidTransitionError(TransitionError):
    """The event is not allowed in the current state."""

    def __init__(self, state: str, event: str, why: str | None = None) -> None:
        tail = f": {why}" if why else ""
        super().__init__(f"cannot apply {event!r} to a migration that is {state}{tail}")
        self.state = state
        self.event = event


class ThresholdNotMetError(TransitionError):
    """Cutover refused because the target vector covers too few points."""

    def __init__(self, coverage: float, threshold: float) -> None:
        super().__init__(
            f"cutover refused: the target vector covers {coverage:.2%} of points, below the "
            f"threshold of {threshold:.2%}; finish the backfill, or pass force=True (--force)"
        )
        self.coverage = coverage
        self.threshold = threshold


class RollbackWindowOpenError(TransitionError):
    """Finalize refused because the rollback window is still open (or coverage is partial)."""

    def __init__(self, message: str, seconds_left: float | None = None) -> None:
        super().__init__(message)
        self.seconds_left = seconds_left


class ReembedCancelRefusedError(InvalidTransitionError):
    """Cancel of a re-embed refused: points hold the target model's vector in place of the source's.

    Their source vectors were overwritten under the shared name, so a cancel would leave two models under
    one name; ``restore`` writes them back from the backup and cancels (run again, it finishes a restore cut
    off). An ``InvalidTransitionError``, as this refusal was before it had a class of its own.

    Attributes:
        collection: the collection.
        held: how many points hold the target model.
    """

    def __init__(self, state: str, collection: str, held: int, *, cancelled: bool) -> None:
        super().__init__(
            state,
            "cancel",
            f"{held} point(s) hold the target model's vector in place of the source's; restore them "
            f"from the backup {'' if cancelled else 'first '}(lattice-qdrant restore "
            f"{collection}), which {'finishes the cancel' if cancelled else 'also cancels'}",
        )
        self.collection = collection
        self.held = held


class ReembedIncompleteError(RollbackWindowOpenError):
    """Finalize of a re-embed refused: points still hold the source model's vector under the shared name.

    After finalize queries no longer tell the two models apart, so ``force`` does not override this: finish
    the backfill. A ``RollbackWindowOpenError``, as this refusal was before it had a class of its own.

    Attributes:
        collection: the collection.
        missing: how many points still hold the source model.
    """

    def __init__(self, collection: str, missing: int) -> None:
        super().__init__(
            f"finalize refused: {missing} point(s) of {collection!r} still hold the source model's vector "
            "under the shared name, and after finalize queries no longer tell the models apart; finish the "
            "backfill (force does not override this for a re-embed)",
            seconds_left=None,
        )
        self.collection = collection
        self.missing = missing


class QualityGateError(TransitionError):
    """Cutover refused by the shadow-comparison gate (the plan's ``compare_margin``).

    The last recorded comparison shows the target's recall more than the margin below the source's, or
    no comparison with relevance labels is recorded for this migration.

    Attributes:
        collection: the collection.
        reason: why, naming the recalls and the margin or what to run.
        margin: the plan's ``compare_margin``.
    """

    def __init__(self, collection: str, reason: str, margin: float) -> None:
        super().__init__(
            f"cutover of {collection!r} refused by the quality gate (compare_margin {margin:g}): {reason}; "
            "or pass force=True (--force) to cut over anyway"
        )
        self.collection = collection
        self.reason = reason
        self.margin = margin


class ConcurrentTransitionError(TransitionError):
    """Another process changed the migration state between our read and our write."""

    def __init__(self, collection: str, event: str, expected_epoch: int, found_epoch: int) -> None:
        super().__init__(
            f"{event!r} on {collection!r} lost a race: the state moved from epoch {expected_epoch} "
            f"to {found_epoch} while it was being applied; nothing was changed by this call, read "
            "the status and retry if still wanted"
        )
        self.collection = collection
        self.event = event
        self.expected_epoch = expected_epoch
        self.found_epoch = found_epoch


class ShardMethodError(LatticeError):
    """A sharded backfill worker would split the points another way than the workers already running.

    ``--shard I/N`` splits by Qdrant's slices (server 1.19+, local mode) or by an id hash (older servers);
    workers of one run that split two ways would each leave points the other's split gives it.

    Attributes:
        collection: the collection being backfilled.
        ours: the method this worker can use.
        running: the methods of the workers running.
    """

    def __init__(self, message: str, *, collection: str, ours: str, running: Sequence[str]) -> None:
        super().__init__(message)
        self.collection = collection
        self.ours = ours
        self.running = list(running)


class StoreError(LatticeError):
    """Qdrant refused or failed a request.

    Attributes:
        collection: the collection the request was about.
        vector: the named vector involved, if any.
        point_ids: the points involved, if any (the first few are shown in the message).
    """

    def __init__(
        self,
        message: str,
        *,
        collection: str | None = None,
        vector: str | None = None,
        point_ids: Sequence[Any] | None = None,
    ) -> None:
        self.collection = collection
        self.vector = vector
        self.point_ids = list(point_ids) if point_ids is not None else []
        context = []
        if collection is not None:
            context.append(f"collection {collection!r}")
        if vector is not None:
            context.append(f"vector {vector!r}")
        if self.point_ids:
            shown = ", ".join(repr(p) for p in self.point_ids[:5])
            more = f" and {len(self.point_ids) - 5} more" if len(self.point_ids) > 5 else ""
            context.append(f"points {shown}{more}")
        super().__init__(f"{message} ({', '.join(context)})" if context else message)


class TransientStoreError(StoreError):
    """A failure worth retrying: timeout, connection error, rate limit, HTTP 408, 429, 500, 502, 503 or 504
    (a server without room for writes is :class:`StorageFullError` instead, whatever its code)."""


class CollectionNotFoundError(StoreError):
    """The collection does not exist."""


class PointNotFoundError(StoreError):
    """Points named by a write do not exist (deleted meanwhile, or never there)."""


class VectorConflictError(StoreError):
    """A named vector already exists with another size or distance."""


class VectorNotFoundError(StoreError):
    """The collection has no vector of the name a write or query used (``vector`` names it)."""


class IndexConflictError(StoreError):
    """A payload index already exists on the field with another type."""


class ServerVersionError(StoreError):
    """The Qdrant server is older than lattice-qdrant needs, or reports no version that can be read.

    Every strategy needs 1.17+: the compare-and-set of the migration records and the backfill's
    stale-proof writes rely on ``update_mode`` (and ``update_filter``), which older servers drop silently.

    Attributes:
        found: the version the server reports, ``None`` when none could be read.
        needed: the oldest version that works.
    """

    def __init__(
        self,
        message: str,
        *,
        found: tuple[int, int, int] | None,
        needed: tuple[int, int, int],
        collection: str | None = None,
    ) -> None:
        super().__init__(message, collection=collection)
        self.found = found
        self.needed = needed


class StorageFullError(StoreError):
    """The server refuses writes for lack of room: its disk is full, or its disk (or memory) quota is
    reached.

    Not transient, unlike a rate limit (gRPC gives both ``RESOURCE_EXHAUSTED``): retrying does not help
    until room is made. The message names the cause, what the server said, and the fix.

    Attributes:
        setting: the strict-mode quota that refused the write (``max_disk_usage_percent``,
            ``max_resident_memory_percent``), or ``None`` when the disk itself is full.
        limit: the quota's percentage, when the server names it.
    """

    def __init__(
        self,
        message: str,
        *,
        setting: str | None = None,
        limit: int | None = None,
        collection: str | None = None,
        vector: str | None = None,
        point_ids: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message, collection=collection, vector=vector, point_ids=point_ids)
        self.setting = setting
        self.limit = limit


class StrictModeError(StoreError):
    """The collection's strict mode refused the request; the message names the setting and the fix.

    A Qdrant server in strict mode checks every request against the collection's ``strict_mode_config``
    before running any of it, so a refused request changed nothing. lattice-qdrant adapts where it can (it
    stamps by ids, counts by scrolling, splits batches, indexes the fields it filters on); this error is what
    is left when it cannot.

    Attributes:
        setting: the strict-mode setting that refused it (``unindexed_filtering_retrieve``,
            ``search_allow_exact``, ``upsert_max_batchsize``, ...).
        field: the payload field an unindexed filter used, when the server names one.
        limit: the limit the request went over, when the server names one.
    """

    def __init__(
        self,
        message: str,
        *,
        setting: str,
        field: str | None = None,
        limit: int | None = None,
        collection: str | None = None,
        vector: str | None = None,
        point_ids: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message, collection=collection, vector=vector, point_ids=point_ids)
        self.setting = setting
        self.field = field
        self.limit = limit


class InPlaceUnsupportedError(StoreError):
    """The collection cannot take the target model as a parallel named vector.

    The message names the blue-green strategy (a new collection and an alias switch), which works on
    Qdrant 1.17+ and any vector layout.
    """


class UnnamedVectorError(InPlaceUnsupportedError):
    """The collection's only vector is the unnamed default vector."""
