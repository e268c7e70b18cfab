"""The store adapter: the only module that calls qdrant-client.

Everything that touches Qdrant goes through :class:`Store`: schema changes on the migrated collection
(payload indexes, the parallel named vector), point reads and writes, and the control collection that holds
the migration records and the model registry. Errors from qdrant-client (HTTP, gRPC and local mode alike)
are translated here into the library's error tree with the collection, vector name and point ids involved,
and transient failures (timeouts, connection errors, rate limits, HTTP 408/429/500/502/503/504) are retried
with exponential backoff and jitter. A server without room for writes (a full disk, a quota reached) is
not transient, though gRPC gives it the rate limit's code: it raises :class:`StorageFullError` at once.

Design notes, for a real server first (local mode is a convenience, not the reference):

* Payload indexes are requested even on local mode, which ignores them: a server in strict mode rejects
  filters on unindexed fields, and the tests record these requests.
* Strict mode (``strict_mode_config`` of a collection; local mode has none) is met where the library can
  meet it, and otherwise named: a refusal becomes :class:`StrictModeError` with the setting. A strict server
  checks a whole request before running any of it, so a refused request changed nothing and is sent again
  adapted: a re-embed stamps by ids instead of by a filter on the text field
  (``unindexed_filtering_update``), counts scroll the matching ids (``search_allow_exact``), scroll pages
  shrink to ``max_query_limit`` and writes are split to ``upsert_max_batchsize``. Each adaptation is
  remembered per collection for the Store's life.
* The control collection holds one point per record with an integer ``epoch``; a record is changed by a
  conditional upsert (``update_filter`` on the epoch it was read at, ``UPDATE_ONLY``) carrying a fresh
  ``token``, then read back: the write took effect exactly when the stored token is ours. This is a
  compare-and-set that works on every backend, because Qdrant does not say which points a conditional write
  skipped. The read-back also settles a write whose reply was lost (it raised, yet took effect).
* Servers before 1.17 drop ``update_mode`` silently (and before 1.15.4 ``update_filter``): an
  ``INSERT_ONLY`` becomes a plain upsert, so two writers would both win. Every conditional write, and
  planning, first checks the server's version (:meth:`Store.check_conditional_writes`); local mode
  implements both fields and has no version.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http import models as rest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from .errors import (
    CollectionNotFoundError,
    IndexConflictError,
    InPlaceUnsupportedError,
    PointNotFoundError,
    ServerVersionError,
    StorageFullError,
    StoreError,
    StrictModeError,
    TransientStoreError,
    UnnamedVectorError,
    VectorConflictError,
)
from .kernels import vectors_match
from .spec import Distance, ModelSpec

__all__ = [
    "CONTROL_COLLECTION",
    "COUNT_PAGE",
    "MODEL_FIELD",
    "PAYLOAD_INDEXES",
    "VERSION_FIELD",
    "Coverage",
    "RetryPolicy",
    "Store",
    "VectorInfo",
    "same_text",
    "stamp_filter",
    "stamp_selector",
    "stored_as_written",
    "vector_value",
]

log = logging.getLogger(__name__)
_R = TypeVar("_R")

MODEL_FIELD = "embedding_model_id"
VERSION_FIELD = "embedding_version"
#: The payload indexes every migrated collection gets, and their types.
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    MODEL_FIELD: models.PayloadSchemaType.KEYWORD,
    VERSION_FIELD: models.PayloadSchemaType.INTEGER,
}
#: Default name of the collection holding migration records and the model registry.
CONTROL_COLLECTION = "lattice_qdrant"
_CONTROL_INDEXES: dict[str, models.PayloadSchemaType] = {
    "kind": models.PayloadSchemaType.KEYWORD,
    "collection": models.PayloadSchemaType.KEYWORD,
    "epoch": models.PayloadSchemaType.INTEGER,
}
#: Named vectors can be added to a live collection from this server version on.
IN_PLACE_MIN_VERSION = (1, 18, 0)
#: Conditional writes hold from this server version on (``update_mode``; ``update_filter`` since 1.15.4):
#: older servers drop the fields silently, so every strategy needs it.
CONDITIONAL_WRITES_MIN_VERSION = (1, 17, 0)
_TOKEN_HISTORY = 256
_NAMESPACE = uuid.UUID("6f1d3c8e-2b7a-4c55-9a43-0c7f1b6a9e21")
_BLUE_GREEN = "use the blue-green strategy (a new collection and an alias switch) instead"


@dataclass(frozen=True)
class VectorInfo:
    """A dense vector of a collection: its size and distance (``name`` is ``""`` when unnamed)."""

    name: str
    size: int
    distance: Distance


@dataclass(frozen=True)
class Coverage:
    """How many points carry a named vector, counted exactly from the data."""

    covered: int
    total: int

    @property
    def fraction(self) -> float:
        """``covered / total``; 1.0 for an empty collection."""
        return 1.0 if self.total == 0 else min(1.0, self.covered / self.total)

    @property
    def missing(self) -> int:
        """Points still without the vector."""
        return max(0, self.total - self.covered)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` tries, exponential backoff with jitter."""

    attempts: int = 5
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.5


_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}
#: qdrant-client raises ResourceExhaustedResponse for a rate limit that names a Retry-After
_TRANSIENT_TYPES = (ResponseHandlingException, ResourceExhaustedResponse, TimeoutError, ConnectionError)
_POINT_ID = re.compile(r"[Pp]oint with id ([0-9a-fA-F-]+)")
#: What a server without room for writes says: ``No space left on device`` (a full disk, HTTP 500 or gRPC
#: INTERNAL), ``Insufficient storage: Disk usage is at 97% ...`` (the quota of 1.19+, HTTP 507 or gRPC
#: RESOURCE_EXHAUSTED, the rate limit's code, with the metadata key below), strict mode's disk usage limit;
#: local mode's SQLite says ``database or disk is full``.
_NO_ROOM = (
    "no space left on device",
    "insufficient storage",
    "disk usage",
    "max_disk_usage_percent",
    "resident memory usage is at",
    "max_resident_memory_percent",
    "database or disk is full",
)
_NO_ROOM_GRPC_KEY = "qdrant-insufficient-storage"
_INSUFFICIENT_STORAGE = 507


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code
    return None


def _grpc_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        with contextlib.suppress(Exception):
            return str(getattr(code(), "name", code()))
    return None


def _grpc_metadata_keys(exc: BaseException) -> set[str]:
    trailing = getattr(exc, "trailing_metadata", None)
    if not callable(trailing) or not type(exc).__module__.startswith("grpc"):
        return set()
    with contextlib.suppress(Exception):
        return {str(getattr(item, "key", None) or item[0]).lower() for item in trailing() or ()}
    return set()


def _version_text(version: Sequence[int]) -> str:
    """``(1, 17, 0)`` -> ``"1.17.0"``."""
    return ".".join(map(str, version))


def _no_room(exc: BaseException, lowered: str) -> bool:
    """Whether the server refused for lack of room (disk full, disk or memory quota): not transient."""
    return (
        _status_of(exc) == _INSUFFICIENT_STORAGE
        or _NO_ROOM_GRPC_KEY in _grpc_metadata_keys(exc)
        or any(marker in lowered for marker in _NO_ROOM)
    )


def _no_room_message(action: str, message: str, lowered: str) -> str:
    if "memory" in lowered and "disk" not in lowered and "space" not in lowered:
        cause = "Qdrant takes no more writes: its memory quota is reached"
        fix = (
            "free memory (delete points or collections, keep vectors on disk) or raise "
            "max_resident_memory_percent"
        )
    else:
        cause = "Qdrant takes no more writes: its disk is full, or at its disk usage limit"
        fix = (
            "free disk space (old backups: lattice-qdrant backups list / delete; unused "
            "collections), give it more disk, or raise max_disk_usage_percent"
        )
    return (
        f"{action} failed: {cause} (the server said: {message}); retrying does not help: {fix}, then run "
        "the command again (a backfill resumes where it stopped)"
    )


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, UnexpectedResponse):
        content = exc.content.decode("utf-8", "replace") if exc.content else ""
        return f"HTTP {exc.status_code}: {content or exc.reason_phrase}"
    details = getattr(exc, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):
            return str(details())
    return str(exc) or type(exc).__name__


#: Strict-mode settings that are booleans (a refusal means the setting is false).
_STRICT_FLAGS = ("unindexed_filtering_retrieve", "unindexed_filtering_update", "search_allow_exact")
#: What ``Limit exceeded N > M for "name"`` names, by setting.
_STRICT_LIMIT_NAMES = {
    "upsert limit": "upsert_max_batchsize",
    "update limit": "upsert_max_batchsize",
    "limit": "max_query_limit",
    "search batch size": "search_max_batchsize",
    "timeout": "max_timeout",
    "hnsw_ef": "search_max_hnsw_ef",
    "oversampling": "search_max_oversampling",
}
#: The server's other strict-mode refusals (Qdrant's wording, lower-cased) and the setting each names; the
#: group ``limit`` is the limit in the setting's own unit, where the message gives it.
_STRICT_TEXTS = (
    (re.compile(r"filter condition limit reached \(\d+ > (?P<limit>\d+)\)"), "filter_max_conditions"),
    (re.compile(r"condition size limit reached \(\d+ > (?P<limit>\d+)\)"), "condition_max_size"),
    (re.compile(r"max points count limit of (?P<limit>\d+)"), "max_points_count"),
    (re.compile(r"max vector storage size limit of"), "max_collection_vector_size_bytes"),
    (re.compile(r"max payload storage size limit of"), "max_collection_payload_size_bytes"),
    (re.compile(r"maximum number of payload indices \((?P<limit>\d+)\)"), "max_payload_index_count"),
    (re.compile(r"resident memory usage is at .*?limit of (?P<limit>\d+)%"), "max_resident_memory_percent"),
    (re.compile(r"disk usage is at .*?limit of (?P<limit>\d+)%"), "max_disk_usage_percent"),
)
_UNINDEXED = re.compile(r'index required but not found for \\?"(.+?)\\?"', re.IGNORECASE)
_LIMIT_EXCEEDED = re.compile(r'limit exceeded (\d+) > (\d+) for \\?"([^"\\]+)', re.IGNORECASE)
_STRICT_FIXES = {
    "upsert_max_batchsize": "send fewer points per request, or raise upsert_max_batchsize",
    "max_query_limit": "ask for fewer points per request, or raise max_query_limit",
    "search_max_batchsize": "send fewer searches per batch, or raise search_max_batchsize",
    "filter_max_conditions": "use a filter with fewer conditions, or raise filter_max_conditions",
    "condition_max_size": "select fewer ids or values per condition, or raise condition_max_size",
    "max_payload_index_count": "drop an unused payload index, or raise max_payload_index_count",
    "max_resident_memory_percent": "free memory on the node, or raise max_resident_memory_percent",
    "max_disk_usage_percent": "free disk space on the node, or raise max_disk_usage_percent",
}


def _strict_refusal(message: str, *, reading: bool) -> tuple[str, str | None, int | None] | None:
    """``(setting, field, limit)`` when ``message`` is a strict-mode refusal, else ``None``."""
    found = _UNINDEXED.search(message)
    if found:
        setting = "unindexed_filtering_retrieve" if reading else "unindexed_filtering_update"
        return setting, found.group(1), None
    lowered = message.lower()
    if "exact search disabled" in lowered:
        return "search_allow_exact", None, None
    found = _LIMIT_EXCEEDED.search(message)
    if found and found.group(3).lower() in _STRICT_LIMIT_NAMES:
        return _STRICT_LIMIT_NAMES[found.group(3).lower()], None, int(found.group(2))
    for pattern, setting in _STRICT_TEXTS:
        hit = pattern.search(lowered)
        if hit:
            limit = hit.groupdict().get("limit")
            return setting, None, int(limit) if limit else None
    return None


def _strict_error(
    action: str, message: str, refusal: tuple[str, str | None, int | None], context: dict[str, Any]
) -> StrictModeError:
    setting, field, limit = refusal
    if setting in _STRICT_FLAGS:
        named = f"{setting}=false"
        fix = (f"create a payload index on {field!r}, or " if field else "") + f"set {setting}=true"
    else:
        named, fix = setting, _STRICT_FIXES.get(setting, f"change {setting}")
    return StrictModeError(
        f"{action} failed: refused by the collection's strict mode ({named}): {message}; {fix} "
        "(update_collection(..., strict_mode_config=...))",
        setting=setting,
        field=field,
        limit=limit,
        **context,
    )


def translate(
    exc: BaseException,
    *,
    action: str,
    collection: str | None = None,
    vector: str | None = None,
    point_ids: Sequence[Any] | None = None,
    reading: bool = False,
) -> StoreError:
    """Turn an exception raised by qdrant-client into the library's error tree.

    ``reading`` says the request only reads (a strict-mode refusal of an unindexed filter then names
    ``unindexed_filtering_retrieve``, otherwise ``unindexed_filtering_update``).
    """
    message = _message_of(exc)
    lowered = message.lower()
    status = _status_of(exc)
    code = _grpc_code(exc)
    context: dict[str, Any] = {"collection": collection, "vector": vector, "point_ids": point_ids}
    text = f"{action} failed: {message}"
    if _no_room(exc, lowered):
        # before the transient codes: gRPC says RESOURCE_EXHAUSTED for a rate limit and a full disk alike
        quota = _strict_refusal(message, reading=reading)
        setting, _, limit = quota if quota is not None else (None, None, None)
        return StorageFullError(
            _no_room_message(action, message, lowered), setting=setting, limit=limit, **context
        )
    if code == "RESOURCE_EXHAUSTED" and "larger than max" in lowered:
        # gRPC's own message size limit: the same request fails again
        return StoreError(f"{text}; send smaller batches", **context)
    if (
        isinstance(exc, _TRANSIENT_TYPES)
        or status in _TRANSIENT_HTTP
        or code in _TRANSIENT_GRPC
        or type(exc).__module__.startswith("httpx")
        or type(exc).__module__.startswith("httpcore")
    ):
        return TransientStoreError(text, **context)
    refusal = _strict_refusal(message, reading=reading) if not isinstance(exc, KeyError) else None
    if refusal is not None:
        return _strict_error(action, message, refusal, context)
    if collection is not None and (
        ("collection" in lowered and "not found" in lowered) or "doesn't exist" in lowered
    ):
        return CollectionNotFoundError(f"{action} failed: collection does not exist", **context)
    if isinstance(exc, KeyError) or (
        ("no point with id" in lowered or "point with id" in lowered) and "not found" in lowered
    ):
        ids = list(point_ids or [])
        found = _POINT_ID.search(message)
        if isinstance(exc, KeyError) and exc.args:
            ids = [exc.args[0]]
        elif found:
            # the server names the id as text: give back the caller's own id (7, not "7")
            ids = [next((p for p in ids if str(p) == found.group(1)), found.group(1))]
        return PointNotFoundError(
            f"{action} failed: point does not exist",
            collection=collection,
            vector=vector,
            point_ids=ids,
        )
    return StoreError(text, **context)


#: strict-mode settings that can refuse the one-request stamp's filter (the by-ids stamp has none)
_STAMP_FILTER_SETTINGS = frozenset(
    {"unindexed_filtering_update", "filter_max_conditions", "condition_max_size"}
)
#: Ids per request when counting by scrolling (on a server whose strict mode refuses exact counts).
COUNT_PAGE = 10_000
#: points per conditional write in local mode (its cost grows with the square of a request's size)
_LOCAL_CONDITIONAL_CHUNK = 16

# qdrant-client's local mode is not thread-safe (a conditional write is a read then a write in Python), so
# every Store over the same local client takes the same lock; a server needs none.
_LOCAL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCAL_LOCKS_GUARD = threading.Lock()


def _local_lock(client: Any) -> threading.RLock:
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.get(client)
        if lock is None:
            lock = _LOCAL_LOCKS[client] = threading.RLock()
        return lock


def same_text(point_id: Any, text_field: str, text: str | None) -> models.Filter:
    """The condition "this point still holds this text" (``None``: no text), one clause of a conditional
    write."""
    holds: models.Condition = (
        models.IsEmptyCondition(is_empty=models.PayloadField(key=text_field))
        if text is None
        else models.FieldCondition(key=text_field, match=models.MatchValue(value=text))
    )
    return models.Filter(must=[models.HasIdCondition(has_id=[point_id]), holds])


def stamp_filter(model_id: str, version: int) -> models.Filter:
    """The condition "this point is stamped with this model" (``embedding_model_id`` and
    ``embedding_version``); a re-embed tells which model a point's vector holds by it."""
    return models.Filter(
        must=[
            models.FieldCondition(key=MODEL_FIELD, match=models.MatchValue(value=model_id)),
            models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=version)),
        ]
    )


def stamp_selector(ids: Sequence[Any], update_filter: models.Filter | None) -> models.Filter | list[Any]:
    """The points a stamp goes to after a write of ``ids`` made conditional by ``update_filter``.

    Without a filter, the ids themselves. With one, the filter "one of ``ids`` and matching
    ``update_filter``": a conditional write skips the points that do not match and does not say which, so
    the stamp must follow the same condition. Evaluated after the vector write, that is the condition the
    write saw as long as the filter does not read what the write changed (a ``has_vector`` of a vector it
    sets, negated; the wrapper refuses those). A payload operation with a filter on an unindexed field is
    refused by a server in strict mode (``unindexed_filtering_update=false``), unlike the ``update_filter``
    of the vector write.
    """
    if update_filter is None:
        return list(ids)
    return models.Filter(must=[models.HasIdCondition(has_id=list(ids)), update_filter])


def vector_value(record: Any, name: str) -> list[float] | None:
    """A record's (or scored point's) dense vector ``name`` (``""``: the unnamed one), or ``None``."""
    vectors = record.vector
    value = vectors.get(name) if isinstance(vectors, dict) else vectors if name == "" else None
    if isinstance(value, list) and value and not isinstance(value[0], list):
        return [float(x) for x in value]
    return None


def stored_as_written(stored: Any, written: Any, distance: Distance) -> bool:
    """Whether a vector read back is the one written, as a server stores it: cosine vectors normalised,
    and a collection storing ``float16`` rounds each value to 11 significant bits (a relative error up to
    5e-4, which local mode, keeping float32 whatever the datatype, never shows)."""
    return vectors_match(stored, written, distance, 1e-5 if distance == Distance.COSINE else 1e-3)[0]


def _ours(record: Any, name: str, todo: Mapping[Any, tuple[Any, list[float]]], distance: Distance) -> bool:
    """Whether the record's stored vector is the one we wrote."""
    stored = vector_value(record, name)
    mine = todo.get(record.id)
    return stored is not None and mine is not None and stored_as_written(stored, mine[1], distance)


def record_id(kind: str, key: str) -> str:
    """Stable point id of a control record (a UUID derived from its kind and key)."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


class Store:
    """Qdrant access for the migration: schema, points and control records.

    Args:
        client: the user's ``QdrantClient`` (server, ``path=`` or ``":memory:"``).
        control_collection: where migration records and the model registry live.
        retry: how transient failures are retried.
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        control_collection: str = CONTROL_COLLECTION,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.control_collection = control_collection
        self.retry = retry or RetryPolicy()
        self._control_ready = False
        self._conditional_writes_ok = False
        inner = getattr(client, "_client", None)
        self._local = type(inner).__name__ == "QdrantLocal"
        self._lock: contextlib.AbstractContextManager[Any] = (
            _local_lock(client) if self._local else contextlib.nullcontext()
        )
        # (collection, strict-mode setting) -> how this Store adapted to its refusal (a limit, or True)
        self._adapted: dict[tuple[str, str], int | bool] = {}

    # ----------------------------------------------------------------- plumbing

    def _call(
        self,
        action: str,
        fn: Any,
        *args: Any,
        collection: str | None = None,
        vector: str | None = None,
        point_ids: Sequence[Any] | None = None,
        retry: bool = True,
        reading: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call qdrant-client, translating errors and retrying the transient ones (``reading``: the
        request only reads, see :func:`translate`)."""

        def once() -> Any:
            try:
                with self._lock:
                    return fn(*args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:
                raise translate(
                    exc,
                    action=action,
                    collection=collection,
                    vector=vector,
                    point_ids=point_ids,
                    reading=reading,
                ) from exc

        if not retry or self.retry.attempts <= 1:
            return once()
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.initial, max=self.retry.maximum)
            + wait_random(0, self.retry.jitter),
            retry=retry_if_exception_type(TransientStoreError),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s: transient failure (attempt %d), retrying: %s",
                action,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
        )
        return retrying(once)

    @property
    def is_local(self) -> bool:
        """Whether the client runs qdrant-client's local mode (no server)."""
        return self._local

    def server_version(self) -> tuple[int, int, int] | None:
        """The server's version, or ``None`` in local mode (which follows the client's features).

        Raises:
            ServerVersionError: the server reports no version that can be read. That is refused rather
                than guessed: below 1.17 conditional writes would silently become plain ones.
        """
        if self.is_local:
            return None
        info = self._call("read the server version", self.client.info)
        reported = str(getattr(info, "version", "") or "")
        parts = re.findall(r"\d+", reported)
        if len(parts) < 2:
            raise ServerVersionError(
                f"the server reports no readable version ({reported!r}), so lattice-qdrant cannot tell "
                f"whether it is Qdrant {_version_text(CONDITIONAL_WRITES_MIN_VERSION[:2])}+, which every "
                "strategy needs (older servers silently ignore the conditional writes it relies on); "
                "point the client at the Qdrant server itself (GET / answers with its version), not at "
                "something in front of it that answers differently",
                found=None,
                needed=CONDITIONAL_WRITES_MIN_VERSION,
            )
        major, minor, *rest = (int(p) for p in parts[:3])
        return (major, minor, rest[0] if rest else 0)

    def check_conditional_writes(self, collection: str | None = None) -> None:
        """Refuse a server that would silently ignore conditional writes (older than 1.17).

        The migration records' compare-and-set (``INSERT_ONLY`` / ``UPDATE_ONLY``) and the backfill's
        stale-proof writes (``update_filter``) need them; local mode implements them. Read once per store
        when it passes.

        Raises:
            ServerVersionError: the server is older than 1.17, or reports no readable version.
        """
        if self._conditional_writes_ok:
            return
        version = self.server_version()
        if version is not None and version < CONDITIONAL_WRITES_MIN_VERSION:
            needed = _version_text(CONDITIONAL_WRITES_MIN_VERSION[:2])
            raise ServerVersionError(
                f"Qdrant {_version_text(version)} found, {needed}+ needed: servers before {needed} "
                "silently ignore update_mode (and before 1.15.4 update_filter), so the compare-and-set "
                "of the migration records would let two writers both win and the backfill could "
                f"overwrite fresher vectors; every strategy needs {needed}+ (in place: "
                f"{_version_text(IN_PLACE_MIN_VERSION[:2])}+): upgrade the server",
                found=version,
                needed=CONDITIONAL_WRITES_MIN_VERSION,
                collection=collection,
            )
        self._conditional_writes_ok = True

    # ----------------------------------------------------------------- collections

    def collection_exists(self, collection: str) -> bool:
        """Whether the collection exists (read-only)."""
        return bool(
            self._call(
                "check the collection",
                self.client.collection_exists,
                collection,
                collection=collection,
            )
        )

    def collection_info(self, collection: str) -> models.CollectionInfo:
        """The collection's configuration and counters (read-only)."""
        info: models.CollectionInfo = self._call(
            "read the collection", self.client.get_collection, collection, collection=collection
        )
        return info

    def strict_mode(self, collection: str) -> models.StrictModeConfigOutput | None:
        """The collection's strict-mode settings when strict mode is on, else ``None`` (always in local
        mode, which has no strict mode). Read-only."""
        if self.is_local:
            return None
        config = self.collection_info(collection).config.strict_mode_config
        return config if config is not None and config.enabled else None

    def _adapt(self, collection: str, setting: str, how: int | bool, what: str) -> None:
        """Remember an adaptation to a strict-mode refusal, and say so once."""
        if self._adapted.get((collection, setting)) != how:
            log.info("%s: strict mode (%s): %s", collection, setting, what)
        self._adapted[(collection, setting)] = how

    def vectors(self, collection: str) -> dict[str, VectorInfo]:
        """The collection's dense vectors by name; the unnamed default vector is keyed ``""``."""
        params = self.collection_info(collection).config.params.vectors
        if params is None:
            return {}
        if isinstance(params, models.VectorParams):
            return {"": VectorInfo("", params.size, Distance(params.distance.value))}
        return {name: VectorInfo(name, p.size, Distance(p.distance.value)) for name, p in params.items()}

    def payload_schema(self, collection: str) -> dict[str, str]:
        """Indexed payload fields and their types (empty on local mode, which keeps no indexes)."""
        schema = self.collection_info(collection).payload_schema or {}
        out: dict[str, str] = {}
        for field, info in schema.items():
            data_type = getattr(info, "data_type", None)
            out[field] = str(getattr(data_type, "value", data_type))
        return out

    def ensure_payload_indexes(
        self, collection: str, indexes: dict[str, models.PayloadSchemaType] | None = None
    ) -> list[str]:
        """Create the model payload indexes if missing; return the fields created.

        Idempotent: an index of the right type is left alone. An index of another type on the same field
        raises :class:`IndexConflictError` before anything is created.
        """
        wanted = PAYLOAD_INDEXES if indexes is None else indexes
        existing = self.payload_schema(collection)
        for field, schema in wanted.items():
            have = existing.get(field)
            if have is not None and have != schema.value:
                raise IndexConflictError(
                    f"payload field {field!r} is already indexed as {have!r}, but the migration needs "
                    f"a {schema.value!r} index; drop or rename that index first",
                    collection=collection,
                )
        created = []
        for field, schema in wanted.items():
            if field in existing:
                continue
            with self._local_index_warning_muted():
                self._call(
                    f"create the {schema.value} payload index on {field!r}",
                    self.client.create_payload_index,
                    collection,
                    field_name=field,
                    field_schema=schema,
                    wait=True,
                    collection=collection,
                )
            created.append(field)
        return created

    @contextlib.contextmanager
    def _local_index_warning_muted(self) -> Iterator[None]:
        """Local mode warns that payload indexes do nothing there (a server needs them): mute that.

        ``warnings.catch_warnings`` swaps the process's filters and is not thread-safe, so it only runs in
        local mode (a server never warns), under the local lock that serialises every Store over the client.
        """
        if not self.is_local:
            yield
            return
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            yield

    def check_in_place(self, collection: str, source_vector: str) -> VectorInfo:
        """Check the collection can take a parallel named vector; return the source vector.

        Raises:
            UnnamedVectorError: the collection has only the unnamed default vector.
            InPlaceUnsupportedError: the server is older than 1.18.
            ServerVersionError: the server reports no readable version.
            StoreError: the source vector does not exist.
        """
        vectors = self.vectors(collection)
        if "" in vectors:
            raise UnnamedVectorError(
                "the collection's only vector is the unnamed default vector, and adding a named vector "
                "beside it in place is not something lattice-qdrant relies on (servers convert the "
                "layout implicitly); use the blue-green strategy (--strategy blue_green: a new collection "
                "and an alias switch), or, for a target of the same dimension and distance, the re-embed "
                '(--strategy reembed --source-vector "": the vector overwritten point by point)',
                collection=collection,
            )
        if source_vector not in vectors:
            known = ", ".join(repr(n) for n in vectors) or "none"
            raise StoreError(
                f"the source vector does not exist (named vectors: {known})",
                collection=collection,
                vector=source_vector,
            )
        version = self.server_version()
        if version is not None and version < IN_PLACE_MIN_VERSION:
            raise InPlaceUnsupportedError(
                f"Qdrant {_version_text(version)} found, {_version_text(IN_PLACE_MIN_VERSION[:2])}+ needed: "
                f"adding a named vector to a live collection needs 1.18 or newer; upgrade the server or "
                f"{_BLUE_GREEN}",
                collection=collection,
            )
        return vectors[source_vector]

    def ensure_vector(self, collection: str, name: str, spec: ModelSpec) -> bool:
        """Add ``name`` as a dense named vector sized for ``spec``; return whether it was created.

        Idempotent: an existing vector with the same size and distance is left alone; one with another
        size or distance raises :class:`VectorConflictError`.
        """
        return self.ensure_vector_shape(
            collection, name, spec.dimension, spec.distance, needed_by=spec.qualified_id
        )

    def drop_vector(self, collection: str, name: str) -> bool:
        """Delete a named vector from the collection; return whether it existed."""
        if name not in self.vectors(collection):
            return False
        self._call(
            "delete the named vector",
            self.client.delete_vector_name,
            collection,
            name,
            wait=True,
            collection=collection,
            vector=name,
        )
        return True

    # ----------------------------------------------------------------- points

    def count(self, collection: str, flt: models.Filter | None = None) -> int:
        """Exact number of points matching ``flt`` (read-only).

        A server whose strict mode refuses exact counts (``search_allow_exact=false``) is counted by
        scrolling the ids of the matching points instead: the same exact number, but one request per
        10,000 matching points (:data:`COUNT_PAGE`, or ``max_query_limit`` if smaller) instead of one.
        Qdrant's approximate count (``exact=False``) is not used: it is estimated from index statistics,
        and for a conjunction such as the re-embed's model stamp it can be far off.
        """
        if (collection, "search_allow_exact") not in self._adapted:
            try:
                result = self._call(
                    "count points",
                    self.client.count,
                    collection,
                    count_filter=flt,
                    exact=True,
                    collection=collection,
                    reading=True,
                )
                return int(result.count)
            except StrictModeError as exc:
                if exc.setting != "search_allow_exact":
                    raise
                self._adapt(
                    collection,
                    "search_allow_exact",
                    True,
                    f"exact counts are refused; counting by scrolling ids ({COUNT_PAGE} per request)",
                )
        return sum(
            len(page)
            for page in self.iter_points(collection, flt=flt, page_size=COUNT_PAGE, with_payload=False)
        )

    def coverage(self, collection: str, vector: str) -> Coverage:
        """How many points have ``vector``, counted from the data (read-only)."""
        total = self.count(collection)
        missing = self.count(
            collection, models.Filter(must_not=[models.HasVectorCondition(has_vector=vector)])
        )
        return Coverage(covered=max(0, total - missing), total=total)

    def upsert(
        self,
        collection: str,
        points: Sequence[models.PointStruct],
        *,
        update_filter: models.Filter | None = None,
        update_mode: models.UpdateMode | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Upsert whole points (every named vector the point should keep must be in it); in requests of
        at most ``upsert_max_batchsize`` points on a server whose strict mode sets it.

        A conditional upsert (``update_filter``, ``update_mode``) is refused on a server older than 1.17,
        which would write it unconditionally.
        """
        extra = dict(kwargs)
        if update_filter is not None:
            extra["update_filter"] = update_filter
        if update_mode is not None:
            extra["update_mode"] = update_mode
        if update_filter is not None or update_mode is not None:
            self.check_conditional_writes(collection)

        def send(batch: list[models.PointStruct]) -> models.UpdateResult:
            result: models.UpdateResult = self._call(
                "upsert points",
                self.client.upsert,
                collection,
                points=batch,
                collection=collection,
                point_ids=[p.id for p in batch],
                **extra,
            )
            return result

        return self._in_batches(collection, list(points), send)[-1]

    def update_vectors(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """Write only the named vectors given, leaving payload and other vectors alone (in requests of at
        most ``upsert_max_batchsize`` points on a server whose strict mode sets it; conditionally with
        ``update_filter``: refused on a server older than 1.17)."""
        extra = dict(kwargs)
        if update_filter is not None:
            extra["update_filter"] = update_filter
            self.check_conditional_writes(collection)

        def send(batch: list[models.PointVectors]) -> models.UpdateResult:
            result: models.UpdateResult = self._call(
                "update vectors",
                self.client.update_vectors,
                collection,
                points=batch,
                collection=collection,
                point_ids=[p.id for p in batch],
                **extra,
            )
            return result

        return self._in_batches(collection, list(points), send)[-1]

    def _in_batches(self, collection: str, items: list[Any], send: Callable[[list[Any]], _R]) -> list[_R]:
        """``send`` the items in one request, or in requests of ``upsert_max_batchsize`` items once the
        collection's strict mode refused a bigger one (nothing of a refused request was written, so it is
        sent again, split). Returns each request's result (at least one: an empty list is sent too)."""
        if not items:
            return [send(items)]
        results: list[_R] = []
        at = 0
        while at < len(items):
            cap = self._adapted.get((collection, "upsert_max_batchsize"))
            size = int(cap) if cap else len(items)
            batch = items[at : at + size]
            try:
                results.append(send(batch))
            except StrictModeError as exc:
                if exc.setting != "upsert_max_batchsize" or not exc.limit or exc.limit >= len(batch):
                    raise
                self._adapt(
                    collection, "upsert_max_batchsize", exc.limit, f"writing {exc.limit} points per request"
                )
                continue
            at += len(batch)
        return results

    def update_vectors_stamped(
        self,
        collection: str,
        points: Sequence[models.PointVectors],
        stamp: tuple[str, int] | None,
        stamp_ids: Sequence[Any],
        *,
        update_filter: models.Filter | None = None,
        **kwargs: Any,
    ) -> models.UpdateResult:
        """``update_vectors`` and the model stamp of ``stamp_ids``, in one request on a server (in order, not
        one transaction); in local mode one after the other under the local lock.

        With ``update_filter`` the vector write is conditional, and Qdrant does not say which points it wrote:
        the stamp then goes to the points of ``stamp_ids`` that match the same filter
        (:func:`stamp_selector`), after the vector write, which changes nothing a payload filter reads.
        """
        if stamp is None or not stamp_ids:
            return self.update_vectors(collection, points, update_filter=update_filter, **kwargs)
        payload = {MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]}
        selector = stamp_selector(stamp_ids, update_filter)
        if self.is_local:
            with self._lock:
                result = self.update_vectors(collection, points, update_filter=update_filter, **kwargs)
                self.set_payload(collection, payload, selector)
                return result
        if update_filter is not None:
            self.check_conditional_writes(collection)
        written = {p.id for p in points}
        stamped = set(stamp_ids)
        unsent = [pid for pid in stamp_ids if pid not in written]  # stamped with the first request

        def send(batch: list[models.PointVectors]) -> models.UpdateResult:
            ids = [p.id for p in batch]
            operations: list[Any] = [
                models.UpdateVectorsOperation(
                    update_vectors=models.UpdateVectors(points=batch, update_filter=update_filter)
                )
            ]
            first = not batch or batch[0] is points[0]
            mine = [pid for pid in ids if pid in stamped] + (unsent if first else [])
            if mine:
                # the caller's update_filter decides which of them were written: the stamp follows it
                selector = stamp_selector(mine, update_filter)
                set_payload = (
                    models.SetPayload(payload=payload, filter=selector)
                    if isinstance(selector, models.Filter)
                    else models.SetPayload(payload=payload, points=selector)
                )
                operations.append(models.SetPayloadOperation(set_payload=set_payload))
            results = self._call(
                "update vectors and model stamps",
                self.client.batch_update_points,
                collection,
                update_operations=operations,
                collection=collection,
                point_ids=ids,
                **kwargs,
            )
            last: models.UpdateResult = results[-1]
            return last

        # a batch too big for upsert_max_batchsize is split (each request still carries its points' stamps)
        return self._in_batches(collection, list(points), send)[-1]

    def set_payload(
        self, collection: str, payload: dict[str, Any], points: models.Filter | Sequence[Any]
    ) -> models.UpdateResult:
        """Merge ``payload`` into the points selected by ids or a filter (other keys untouched)."""
        selector: Any = points if isinstance(points, models.Filter) else list(points)
        result: models.UpdateResult = self._call(
            "set payload",
            self.client.set_payload,
            collection,
            payload=payload,
            points=selector,
            collection=collection,
            point_ids=None if isinstance(points, models.Filter) else list(points),
        )
        return result

    def update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Mapping[str, Any]]],
        *,
        lacking: str | None = None,
    ) -> list[Any]:
        """Write named vectors to points that still hold the text they were embedded from.

        ``pending`` maps point ids to ``(text, {vector name: vector})`` (text ``None``: the point had none).
        One ``update_vectors`` conditional on each point still holding its text (and, with ``lacking``,
        still lacking that vector), so a write the application made meanwhile wins; payload and other
        vectors are left alone. Points deleted meanwhile are dropped: a server applies an
        ``update_vectors`` batch point by point and fails on the first missing id, so the batch is written
        again without it, which the conditions make harmless. Used by the backfill, read-repair, verify
        and restore.

        Returns:
            the ids that still exist (written, or skipped by the conditions: Qdrant does not say which).
        """
        if not self._local:
            return self._update_if_unchanged(collection, text_field, dict(pending), lacking)
        # Local mode checks each point against every clause of the condition (one per point), so a
        # request costs the square of its size: smaller requests cost less in all.
        items = list(pending.items())
        written: list[Any] = []
        for start in range(0, len(items), _LOCAL_CONDITIONAL_CHUNK):
            chunk = dict(items[start : start + _LOCAL_CONDITIONAL_CHUNK])
            written += self._update_if_unchanged(collection, text_field, chunk, lacking)
        return written

    def _update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        todo: dict[Any, tuple[str | None, Mapping[str, Any]]],
        lacking: str | None,
    ) -> list[Any]:
        def write(ids: list[Any]) -> list[Any]:
            condition = models.Filter(
                must_not=[models.HasVectorCondition(has_vector=lacking)] if lacking is not None else None,
                should=[same_text(pid, text_field, todo[pid][0]) for pid in ids],
            )
            self.update_vectors(
                collection,
                [
                    models.PointVectors(
                        id=pid,
                        vector={
                            name: np.asarray(v, dtype=np.float64).tolist() for name, v in todo[pid][1].items()
                        },
                    )
                    for pid in ids
                ],
                update_filter=condition,
            )
            return ids

        return self._skipping_deleted(collection, todo, write)

    def _skipping_deleted(
        self, collection: str, todo: dict[Any, Any], write: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """``write(ids)`` over the ids of ``todo``; points deleted meanwhile are dropped from ``todo``.

        A server applies an ``update_vectors`` batch point by point and fails on the first missing id, so
        the write is made again without the missing ones (the callers' conditions make that harmless).
        """
        while todo:
            ids = list(todo)
            try:
                return write(ids)
            except PointNotFoundError:
                existing = {r.id for r in self.retrieve(collection, ids, with_payload=False)}
                gone = [pid for pid in ids if pid not in existing]
                if not gone:
                    raise
                log.info("%s: %d point(s) deleted meanwhile, skipped", collection, len(gone))
                for pid in gone:
                    todo.pop(pid)
        return []

    def write_stamped(
        self,
        collection: str,
        name: str,
        text_field: str,
        pending: Mapping[Any, tuple[str | None, Any]],
        stamp: tuple[str, int] | None,
        *,
        distance: Distance,
        unless: models.Filter | None = None,
        one_request: bool | None = None,
    ) -> list[Any]:
        """Overwrite vector ``name`` and the model stamp together, on points that still hold their text.

        For a re-embed, where the vector name does not say which model a vector holds: the payload's
        ``embedding_model_id`` / ``embedding_version`` do, so vector and stamp must change together as far as
        Qdrant allows. ``pending`` maps point ids to ``(text, vector)``; ``stamp`` is ``(model_id, version)``,
        or ``None`` to remove the stamp (a point restored to how it was before it was ever stamped). A point
        is written only while it still holds the text its vector was embedded from and, with ``unless``,
        does not match ``unless`` (the backfill passes "already holds the target"). Points deleted meanwhile
        are skipped, never re-created.

        On a server (``one_request``, the default there) it is **one** ``batch_update_points`` request: a
        conditional ``update_vectors`` then a payload operation whose ``filter`` is the same conditions and
        the ids (a server ignores ``filter`` when ``points`` is given, so only ``filter`` is used). The two
        operations run in order, but not as one transaction.

        Otherwise it is the **by-ids** path: the conditional ``update_vectors``, a read-back of the vectors,
        and a stamp by ids (``points``, not a filter) of the points whose stored vector is ours, which are
        exactly the points where the conditional write took effect. Local mode takes it because a filter
        selector scans the whole collection there (and it runs under the local lock, so nothing else of this
        process runs in between). A server takes it when its strict mode refuses the one-request stamp
        (``unindexed_filtering_update=false`` with the text field not keyword-indexed: only
        ``update_filter`` is exempt from that check; or a filter over ``filter_max_conditions`` /
        ``condition_max_size``): the refused request changed nothing (a strict server checks every
        operation of a batch before running any), so it is sent again that way, and this Store keeps that
        path for the collection. Neither path is a transaction: a write made by someone else between the
        two operations of the request (keeping the text), or between the read-back and the stamp, gets
        this stamp. A write through the wrapper carries its own stamp, of the model this phase of the
        migration writes, which is this one.

        Returns:
            the ids where this write took effect: the stored vector is the one given and the stamp is
            ``stamp`` (read back, or written by ids after the read-back).
        """
        auto = one_request is None
        todo = {pid: (text, np.asarray(v, dtype=np.float64).tolist()) for pid, (text, v) in pending.items()}

        def write(ids: list[Any]) -> list[Any]:
            condition = models.Filter(
                must_not=[unless] if unless is not None else None,
                should=[same_text(pid, text_field, todo[pid][0]) for pid in ids],
            )
            points = [
                models.PointVectors(id=pid, vector=todo[pid][1] if name == "" else {name: todo[pid][1]})
                for pid in ids
            ]
            by_ids = (
                self.is_local or (collection, "stamp_by_ids") in self._adapted if auto else not one_request
            )
            if not by_ids:
                try:
                    with self._lock:
                        return self._stamped_one_request(
                            collection, name, points, condition, stamp, todo, distance
                        )
                except StrictModeError as exc:
                    if not auto or exc.setting not in _STAMP_FILTER_SETTINGS:
                        raise
                    self._adapt(
                        collection,
                        "stamp_by_ids",
                        True,
                        f"the stamp's filter is refused ({exc.setting}); stamping by ids after a read-back",
                    )
            with self._lock:
                return self._stamped_by_ids(collection, name, points, condition, stamp, todo, distance)

        if not todo:
            return []
        parts = self._in_batches(
            collection,
            list(todo),
            lambda ids: self._skipping_deleted(collection, {pid: todo[pid] for pid in ids}, write),
        )
        return [pid for part in parts for pid in part]

    def _stamp_operation(
        self, stamp: tuple[str, int] | None, selector: models.Filter
    ) -> models.SetPayloadOperation | models.DeletePayloadOperation:
        if stamp is None:
            return models.DeletePayloadOperation(
                delete_payload=models.DeletePayload(keys=[MODEL_FIELD, VERSION_FIELD], filter=selector)
            )
        return models.SetPayloadOperation(
            set_payload=models.SetPayload(
                payload={MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]}, filter=selector
            )
        )

    def _stamped_one_request(
        self,
        collection: str,
        name: str,
        points: list[models.PointVectors],
        condition: models.Filter,
        stamp: tuple[str, int] | None,
        todo: Mapping[Any, tuple[str | None, list[float]]],
        distance: Distance,
    ) -> list[Any]:
        ids = [p.id for p in points]
        selector = models.Filter(must=[models.HasIdCondition(has_id=ids), condition])
        self.check_conditional_writes(collection)
        self._call(
            "write vectors and model stamps",
            self.client.batch_update_points,
            collection,
            update_operations=[
                models.UpdateVectorsOperation(
                    update_vectors=models.UpdateVectors(points=points, update_filter=condition)
                ),
                self._stamp_operation(stamp, selector),
            ],
            collection=collection,
            vector=name,
            point_ids=ids,
        )
        records = self.retrieve(
            collection, ids, with_payload=[MODEL_FIELD, VERSION_FIELD], with_vectors=[name] if name else True
        )
        wanted = {MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]} if stamp else {}
        return [
            r.id
            for r in records
            if _ours(r, name, todo, distance)
            and {
                k: v
                for k, v in (r.payload or {}).items()
                if k in (MODEL_FIELD, VERSION_FIELD) and v is not None
            }
            == wanted
        ]

    def _stamped_by_ids(
        self,
        collection: str,
        name: str,
        points: list[models.PointVectors],
        condition: models.Filter,
        stamp: tuple[str, int] | None,
        todo: Mapping[Any, tuple[str | None, list[float]]],
        distance: Distance,
    ) -> list[Any]:
        ids = [p.id for p in points]
        try:
            self.update_vectors(collection, points, update_filter=condition)
        finally:
            # the points before a missing id were written: stamp them too before the caller retries
            records = self.retrieve(
                collection, ids, with_payload=False, with_vectors=[name] if name else True
            )
            ours = [r.id for r in records if _ours(r, name, todo, distance)]
            if ours:
                if stamp is None:
                    self._call(
                        "delete model stamps",
                        self.client.delete_payload,
                        collection,
                        keys=[MODEL_FIELD, VERSION_FIELD],
                        points=ours,
                        collection=collection,
                        point_ids=ours,
                    )
                else:
                    self.set_payload(collection, {MODEL_FIELD: stamp[0], VERSION_FIELD: stamp[1]}, ours)
        return ours

    def retrieve(
        self,
        collection: str,
        ids: Sequence[Any],
        *,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> list[models.Record]:
        """Points by id; missing ids are simply absent (read-only)."""
        records: list[models.Record] = self._call(
            "retrieve points",
            self.client.retrieve,
            collection,
            ids=list(ids),
            with_payload=with_payload if isinstance(with_payload, bool) else list(with_payload),
            with_vectors=with_vectors if isinstance(with_vectors, bool) else list(with_vectors),
            collection=collection,
            point_ids=list(ids),
        )
        return records

    def scroll(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        limit: int = 256,
        offset: Any = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> tuple[list[models.Record], Any]:
        """One page of points in id order and the offset of the next page (``None`` at the end).

        At most ``limit`` points: fewer on a server whose strict mode sets a smaller ``max_query_limit``
        (the page is cut to it; the next offset is right, so paging through works the same).
        """
        while True:
            cap = self._adapted.get((collection, "max_query_limit"))
            asked = min(limit, int(cap)) if cap else limit
            try:
                records, next_offset = self._call(
                    "scroll points",
                    self.client.scroll,
                    collection,
                    scroll_filter=flt,
                    limit=asked,
                    offset=offset,
                    with_payload=with_payload if isinstance(with_payload, bool) else list(with_payload),
                    with_vectors=with_vectors if isinstance(with_vectors, bool) else list(with_vectors),
                    collection=collection,
                    reading=True,
                )
                return list(records), next_offset
            except StrictModeError as exc:
                if exc.setting != "max_query_limit" or not exc.limit or exc.limit >= asked:
                    raise
                self._adapt(collection, "max_query_limit", exc.limit, f"pages of {exc.limit} points")

    def iter_points(
        self,
        collection: str,
        *,
        flt: models.Filter | None = None,
        page_size: int = 256,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool | Sequence[str] = False,
    ) -> Iterator[list[models.Record]]:
        """Pages of points matching ``flt``, streamed (memory stays one page)."""
        offset: Any = None
        while True:
            page, offset = self.scroll(
                collection,
                flt=flt,
                limit=page_size,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            if page:
                yield page
            if offset is None:
                return

    def query(self, collection: str, **kwargs: Any) -> rest.QueryResponse:
        """``query_points`` with errors translated (the routed client decides ``using``)."""
        if kwargs.get("using") == "":
            kwargs["using"] = None  # "" names the unnamed default vector
        response: rest.QueryResponse = self._call(
            "query points",
            self.client.query_points,
            collection,
            collection=collection,
            vector=kwargs.get("using"),
            reading=True,
            **kwargs,
        )
        return response

    # ----------------------------------------------------------------- control records

    def ensure_control(self) -> None:
        """Create the control collection (no vectors, indexed fields) if it does not exist."""
        if self._control_ready:
            return
        name = self.control_collection
        if not self.collection_exists(name):
            try:
                self._call(
                    "create the control collection",
                    self.client.create_collection,
                    name,
                    vectors_config={},
                    collection=name,
                )
            except StoreError:
                # Another process may have created it first.
                if not self.collection_exists(name):
                    raise
        self.ensure_payload_indexes(name, _CONTROL_INDEXES)
        self._control_ready = True

    def _control_exists(self) -> bool:
        """Whether the control collection exists; reads never create it."""
        return self._control_ready or self.collection_exists(self.control_collection)

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The payload of a control record, or ``None`` (read-only)."""
        if not self._control_exists():
            return None
        found = self.retrieve(self.control_collection, [record_id(kind, key)], with_payload=True)
        if not found:
            return None
        return dict(found[0].payload or {})

    def list_records(self, kind: str, *, collection: str | None = None) -> list[dict[str, Any]]:
        """Payloads of every control record of a kind (optionally for one collection). Read-only."""
        if not self._control_exists():
            return []
        must: list[models.Condition] = [
            models.FieldCondition(key="kind", match=models.MatchValue(value=kind))
        ]
        if collection is not None:
            must.append(models.FieldCondition(key="collection", match=models.MatchValue(value=collection)))
        out: list[dict[str, Any]] = []
        for page in self.iter_points(self.control_collection, flt=models.Filter(must=must)):
            out.extend(dict(r.payload or {}) for r in page)
        return out

    def insert_record(
        self, kind: str, key: str, payload: dict[str, Any], *, token: str | None = None
    ) -> bool:
        """Create a record if no record has that key; return whether ours was written.

        The payload gets ``kind``, ``key``, ``epoch`` 1 and ``token`` (a fresh one unless given). A write
        whose reply is lost (it raised after its retries) is told from the token read back.

        Raises:
            ServerVersionError: the server is older than 1.17 (checked before anything is created).
            TransientStoreError: the write failed and no record was found, or the read-back failed (the
                write may have taken effect: the record's ``token`` tells).
        """
        self.check_conditional_writes()
        self.ensure_control()
        token = token or uuid.uuid4().hex
        body = {
            **payload,
            "kind": kind,
            "key": key,
            "epoch": 1,
            "token": token,
            "tokens": [token],
            "updated_at": time.time(),
        }
        try:
            self.upsert(
                self.control_collection,
                [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
                update_mode=models.UpdateMode.INSERT_ONLY,
                ordering=models.WriteOrdering.STRONG,
            )
        except TransientStoreError:
            # its reply may be lost: the record read back says whether it took effect
            stored = self.get_record(kind, key)
            if stored is None:
                raise
            return stored.get("token") == token
        stored = self.get_record(kind, key)
        return stored is not None and stored.get("token") == token

    def replace_record(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        expected: dict[str, Any],
        token: str | None = None,
    ) -> dict[str, Any] | None:
        """Compare-and-set: replace the record if it is still the one read as ``expected``.

        The write is conditional on ``expected``'s epoch; the record keeps the tokens of its last writes,
        so a win is recognised even when another process has already moved the record on after us. The
        same holds for a write whose reply was lost: when the conditional upsert raises after its retries
        (the write may have taken effect, and a retry of one that did is skipped by the condition), the
        record is read back all the same, and the token says what happened.

        Args:
            kind: the record's kind.
            key: the record's key.
            payload: the new payload.
            expected: the record as read; the write only applies if it is still at this epoch.
            token: this write's token (a fresh one unless given); a caller that keeps it can tell later,
                from the record's ``tokens``, whether a write that raised took effect.

        Returns:
            the stored payload when this call's write took effect, or ``None`` when the record had moved
            on (or vanished) first; in that case nothing was changed by this call.

        Raises:
            ServerVersionError: the server is older than 1.17 (it would replace the record whatever its
                epoch).
            TransientStoreError: the write failed and the record is still at ``expected``'s epoch (nothing
                was changed, unless the request is still on its way), or the read-back failed (the outcome
                is unknown: the record's ``tokens`` tell, once it can be read).
        """
        self.check_conditional_writes()
        self.ensure_control()
        token = token or uuid.uuid4().hex
        expected_epoch = int(expected["epoch"])
        history = [str(t) for t in expected.get("tokens", [])][: _TOKEN_HISTORY - 1]
        body = {
            **payload,
            "kind": kind,
            "key": key,
            "epoch": expected_epoch + 1,
            "token": token,
            "tokens": [token, *history],
            "updated_at": time.time(),
        }
        # In local mode the write and its read-back happen under one lock, so nobody moves in between.
        failure: TransientStoreError | None = None
        with self._lock:
            try:
                self.upsert(
                    self.control_collection,
                    [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
                    update_filter=models.Filter(
                        must=[
                            models.FieldCondition(key="epoch", match=models.MatchValue(value=expected_epoch))
                        ]
                    ),
                    update_mode=models.UpdateMode.UPDATE_ONLY,
                    ordering=models.WriteOrdering.STRONG,
                )
            except TransientStoreError as exc:
                failure = exc  # the write may have taken effect with its reply lost: read back
            stored = self.get_record(kind, key)
        if stored is None:
            return None
        tokens = stored.get("tokens", [])
        if token in tokens:
            return stored if stored.get("token") == token else body
        if failure is not None and int(stored.get("epoch", 0)) == expected_epoch:
            raise failure  # not written (yet): nobody else moved the record either
        if int(stored.get("epoch", 0)) - expected_epoch >= len(tokens):
            raise StoreError(
                f"cannot tell whether the update of {kind} {key!r} took effect: "
                f"{int(stored.get('epoch', 0)) - expected_epoch} writes happened meanwhile; read it again",
                collection=self.control_collection,
            )
        return None

    def put_record(self, kind: str, key: str, payload: dict[str, Any]) -> None:
        """Write a record unconditionally (for records only one writer owns: heartbeats, failures)."""
        self.ensure_control()
        body = {**payload, "kind": kind, "key": key, "updated_at": time.time()}
        self.upsert(
            self.control_collection,
            [models.PointStruct(id=record_id(kind, key), vector={}, payload=body)],
        )

    def delete_record(self, kind: str, key: str) -> None:
        """Remove a control record (no-op if absent)."""
        self.delete_records(kind, [key])

    def delete_records(self, kind: str, keys: Sequence[str]) -> None:
        """Remove control records (absent ones are ignored)."""
        if not keys or not self._control_exists():
            return
        self._call(
            "delete control records",
            self.client.delete,
            self.control_collection,
            points_selector=models.PointIdsList(points=[record_id(kind, k) for k in keys]),
            collection=self.control_collection,
        )

    def append_event(self, collection: str, payload: dict[str, Any], *, event_id: str | None = None) -> None:
        """Append an entry to a collection's migration history (never overwritten by another entry).

        Args:
            collection: the migrated collection.
            payload: the entry.
            event_id: the entry's own id (a transition's token): appending it again writes the same point,
                so an entry is recorded once however often it is appended. A fresh id unless given.
        """
        self.ensure_control()
        self.upsert(
            self.control_collection,
            [
                models.PointStruct(
                    id=record_id("event", event_id) if event_id else str(uuid.uuid4()),
                    vector={},
                    payload={**payload, "kind": "event", "collection": collection},
                )
            ],
        )

    # ------------------------------------------------------------ whole collections (backups, blue-green)

    def ensure_collection(self, collection: str, vectors: dict[str, VectorInfo]) -> bool:
        """Create a collection with these dense vectors (``""``: the unnamed one) if it does not exist;
        return whether it was created.

        Idempotent: an existing collection with exactly these vectors (size and distance) is left alone;
        one with other vectors raises :class:`VectorConflictError` (nothing is changed).
        """
        if self.collection_exists(collection):
            have = self.vectors(collection)
            if have != vectors:
                raise VectorConflictError(
                    "the collection exists with other vectors ("
                    + ", ".join(f"{n!r}: {v.size}-d {v.distance.value}" for n, v in sorted(have.items()))
                    + ")",
                    collection=collection,
                )
            return False
        params = {
            name: models.VectorParams(size=info.size, distance=models.Distance(info.distance.value))
            for name, info in vectors.items()
        }
        config: Any = params[""] if list(params) == [""] else params  # "" is the unnamed default vector
        try:
            self._call(
                "create the collection",
                self.client.create_collection,
                collection,
                vectors_config=config,
                collection=collection,
            )
        except StoreError:
            # Another process may have created it first; the check above then applies.
            if not self.collection_exists(collection):
                raise
            return self.ensure_collection(collection, vectors)
        return True

    def drop_collection(self, collection: str) -> bool:
        """Delete a whole collection; return whether it existed."""
        if not self.collection_exists(collection):
            return False
        self._call("delete the collection", self.client.delete_collection, collection, collection=collection)
        return True

    def ensure_vector_shape(
        self, collection: str, name: str, size: int, distance: Distance, *, needed_by: str | None = None
    ) -> bool:
        """Add ``name`` as a dense named vector of this shape; return whether it was created.

        Idempotent; an existing vector of another size or distance raises :class:`VectorConflictError`
        (naming ``needed_by``, the model that needs the shape, when given). A client or server that cannot
        add a named vector to a live collection raises :class:`InPlaceUnsupportedError`, naming the
        blue-green strategy.
        """
        existing = self.vectors(collection).get(name)
        if existing is not None:
            if existing.size != size or existing.distance != distance:
                wanted = f"{size}-d {distance.value}"
                raise VectorConflictError(
                    f"the named vector exists as {existing.size}-d {existing.distance.value}, but "
                    + (
                        f"{needed_by} needs {wanted}; choose another vector name"
                        if needed_by
                        else f"{wanted} is needed"
                    ),
                    collection=collection,
                    vector=name,
                )
            return False
        create = getattr(self.client, "create_vector_name", None)
        if create is None:
            raise InPlaceUnsupportedError(
                "this qdrant-client has no create_vector_name (needs qdrant-client 1.18+); upgrade it "
                f"or {_BLUE_GREEN}",
                collection=collection,
                vector=name,
            )
        config = models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=size, distance=models.Distance(distance.value))
        )
        try:
            self._call(
                "add the named vector",
                create,
                collection,
                name,
                config,
                wait=True,
                collection=collection,
                vector=name,
            )
        except CollectionNotFoundError:
            raise
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, UnexpectedResponse) and cause.status_code in (404, 405):
                raise self._vector_endpoint_refused(collection, name, _message_of(cause)) from exc
            raise
        return True

    def _vector_endpoint_refused(self, collection: str, name: str, said: str) -> StoreError:
        """The error for a 404/405 to adding a named vector: "too old" only when the version says so.

        A server before 1.18 has no such endpoint; on a newer one the answer came from something else (a
        proxy or gateway in front of Qdrant, a URL with a wrong path prefix), which an upgrade would not
        fix.
        """
        needed = _version_text(IN_PLACE_MIN_VERSION[:2])
        endpoint = f"PUT /collections/{collection}/vectors/{name}"
        try:
            version = self.server_version()
        except StoreError as exc:
            why = (
                f"and the server's version cannot be read ({exc}), so whether it predates {needed} (which "
                f"added {endpoint}) is unknown"
            )
        else:
            if version is not None and version < IN_PLACE_MIN_VERSION:
                return InPlaceUnsupportedError(
                    f"the server does not support adding a named vector ({said}): Qdrant "
                    f"{_version_text(version)} found, {needed}+ needed; upgrade the server or {_BLUE_GREEN}",
                    collection=collection,
                    vector=name,
                )
            where = "local mode" if version is None else f"the server reports Qdrant {_version_text(version)}"
            why = f"but {where}, which has {endpoint}: this is not a missing feature"
        return StoreError(
            f"adding the named vector was refused ({said}), {why}; check the URL (a path prefix) and any "
            "proxy or gateway in front of Qdrant that may block or reroute that request",
            collection=collection,
            vector=name,
        )

    # ----------------------------------------------------------------- blue-green: collections and aliases

    def alias_target(self, alias: str) -> str | None:
        """The collection ``alias`` points to, or ``None`` when there is no such alias (read-only)."""
        response = self._call("read the aliases", self.client.get_aliases)
        for found in response.aliases:
            if found.alias_name == alias:
                return str(found.collection_name)
        return None

    def switch_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one action (creating an alias that exists moves it).

        The collection is checked first: a server applies alias actions one by one, so a failing action
        must not be the one after a deletion.
        """
        if not self.collection_exists(collection):
            raise CollectionNotFoundError(
                f"cannot point alias {alias!r} at a collection that does not exist", collection=collection
            )
        self._call(
            f"point alias {alias!r} at the collection",
            self.client.update_collection_aliases,
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
                )
            ],
            collection=collection,
        )

    def forward(self, method: str, collection: str, *args: Any, **kwargs: Any) -> Any:
        """Call a point operation of qdrant-client (``delete``, ``set_payload``, ...) on ``collection``,
        with the library's error translation and retries."""
        action = method.replace("_", " ")
        return self._call(
            action, getattr(self.client, method), collection, *args, collection=collection, **kwargs
        )
