"""Errors from qdrant-client (HTTP, gRPC and local mode alike) turned into the library's error tree.

:func:`translate` names the collection, vector and point ids involved. Transient failures (timeouts,
connection errors, rate limits, HTTP 408/429/500/502/503/504) become :class:`TransientStoreError`, which the
store retries; a server without room for writes (a full disk, a quota reached) is not transient, though
gRPC gives it the rate limit's code: it becomes :class:`StorageFullError`. A strict-mode refusal becomes
:class:`StrictModeError` naming the setting.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import (
    CollectionNotFoundError,
    PointNotFoundError,
    StorageFullError,
    StoreError,
    StrictModeError,
    TransientStoreError,
    VectorNotFoundError,
)

__all__ = ["message_of", "translate"]

_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}
#: qdrant-client raises ResourceExhaustedResponse for a rate limit that names a Retry-After
_TRANSIENT_TYPES = (ResponseHandlingException, ResourceExhaustedResponse, TimeoutError, ConnectionError)
_POINT_ID = re.compile(r"[Pp]oint with id ([0-9a-fA-F-]+)")
#: a request naming a vector the collection lacks: the server's text (local mode's for writes) and local
#: mode's for queries ("Dense vector b is not found in the collection", which also says "collection")
_NO_VECTOR = re.compile(
    r"not existing vector name(?: error)?:\s*([^\s\"'`,}]+)"
    r"|(?:dense|sparse|multi) ?vector (\S+) is not found",
    re.IGNORECASE,
)
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


def message_of(exc: BaseException) -> str:
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
    message = message_of(exc)
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
    missing_vector = _NO_VECTOR.search(message)
    if missing_vector is not None:
        name = missing_vector.group(1) or missing_vector.group(2)
        return VectorNotFoundError(
            f"{action} failed: the collection has no vector named {name!r}",
            **{**context, "vector": vector if vector is not None else name},
        )
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
