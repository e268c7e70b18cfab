"""The server backend: a store over a ``QdrantClient`` that talks to a Qdrant server.

:class:`ServerStore` is the reference implementation of the :class:`~lattice_qdrant.store.protocol.Store`
protocol (local mode, :class:`~lattice_qdrant.store.local.LocalStore`, overrides only what differs there).
Errors from qdrant-client are translated into the library's error tree (:mod:`.translate`), and transient
failures are retried with exponential backoff and jitter.

Design notes:

* Payload indexes are requested even on local mode, which ignores them: a server in strict mode rejects
  filters on unindexed fields, and the tests record these requests.
* Strict mode (``strict_mode_config`` of a collection; local mode has none) is met where the library can
  meet it, and otherwise named: a refusal becomes :class:`StrictModeError` with the setting. A strict server
  checks a whole request before running any of it, so a refused request changed nothing and is sent again
  adapted: a re-embed stamps by ids instead of by a filter on the text field
  (``unindexed_filtering_update``), counts scroll the matching ids (``search_allow_exact``), scroll pages
  shrink to ``max_query_limit`` and writes are split to ``upsert_max_batchsize``. Each adaptation is
  remembered per collection for the store's life.
* Servers before 1.17 drop ``update_mode`` silently (and before 1.15.4 ``update_filter``): an
  ``INSERT_ONLY`` becomes a plain upsert, so two writers would both win. Every conditional write, and
  planning, first checks the server's version (:meth:`ServerStore.check_conditional_writes`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http import models as rest
from qdrant_client.http.exceptions import UnexpectedResponse
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ..errors import (
    CollectionNotFoundError,
    IndexConflictError,
    InPlaceUnsupportedError,
    PointNotFoundError,
    ServerVersionError,
    StoreError,
    StrictModeError,
    TransientStoreError,
    UnnamedVectorError,
    VectorConflictError,
)
from ..spec import Distance, ModelSpec
from .base import (
    CONDITIONAL_WRITES_MIN_VERSION,
    CONTROL_COLLECTION,
    IN_PLACE_MIN_VERSION,
    MODEL_FIELD,
    PAYLOAD_INDEXES,
    VERSION_FIELD,
    Coverage,
    NumericPoints,
    RetryPolicy,
    VectorInfo,
    holding,
    holding_written,
    lacking_vector,
    pages,
    stamp_payload,
    stamp_selector,
    unchanged,
    version_text,
)
from .control import ControlRecords
from .translate import message_of, translate

__all__ = ["COUNT_PAGE", "ServerStore", "has_own", "named_vectors", "transport_method", "write_then_stamp"]

log = logging.getLogger("lattice_qdrant.store")
_R = TypeVar("_R")
_BLUE_GREEN = "use the blue-green strategy (a new collection and an alias switch) instead"

#: strict-mode settings that can refuse the one-request stamp's filter (the by-ids stamp has none)
_STAMP_FILTER_SETTINGS = frozenset(
    {"unindexed_filtering_update", "filter_max_conditions", "condition_max_size"}
)
#: Ids per request when counting by scrolling (on a server whose strict mode refuses exact counts).
COUNT_PAGE = 10_000


def named_vectors(
    todo: Mapping[Any, tuple[str | None, Mapping[str, Any]]], ids: Sequence[Any]
) -> list[models.PointVectors]:
    """The ``PointVectors`` of ``ids`` from ``todo`` (``(text, {vector name: vector})`` by id): arrays as
    lists of floats, a ``models.Document`` kept as one (the server embeds it: server-side inference).
    :class:`NumericPoints` when nothing is left to embed, so no scan looks for it. Built unvalidated: the
    ids are the store's own and the vectors arrays made lists here (validating a list element by element
    cost more per point than the local write itself)."""
    points = [
        models.PointVectors.model_construct(
            id=pid,
            vector={
                name: v if isinstance(v, models.Document) else np.asarray(v, dtype=np.float64).tolist()
                for name, v in todo[pid][1].items()
            },
        )
        for pid in ids
    ]
    if any(isinstance(v, models.Document) for pid in ids for v in todo[pid][1].values()):
        return points
    return NumericPoints(points)


def write_then_stamp(
    points: list[models.PointVectors],
    condition: models.Filter,
    stamp: tuple[str, int] | None,
    selector: models.Filter,
) -> list[models.UpdateOperation]:
    """The operations of one ``batch_update_points`` request: the vector write conditional on
    ``condition``, then the model stamp (``None``: its removal) of the points ``selector`` matches once the
    write ran (in order, not as one transaction)."""
    stamping: models.UpdateOperation = (
        models.DeletePayloadOperation(
            delete_payload=models.DeletePayload(keys=[MODEL_FIELD, VERSION_FIELD], filter=selector)
        )
        if stamp is None
        else models.SetPayloadOperation(
            set_payload=models.SetPayload(payload=stamp_payload(stamp), filter=selector)
        )
    )
    return [
        models.UpdateVectorsOperation(
            update_vectors=models.UpdateVectors(points=points, update_filter=condition)
        ),
        stamping,
    ]


def transport_method(client: Any, name: str) -> Callable[..., Any] | None:
    """The method ``name`` of the transport under ``client`` (its engine: the remote one, or local mode),
    which ``QdrantClient.<name>`` calls after its scan for objects to embed; ``None`` when that hand-over
    cannot be relied on: ``client`` is not a ``QdrantClient``, its class or the instance itself has its own
    ``name`` (a subclass, an instrumented client: the caller's method must run), or it has no such transport.

    A client may offer its own (the async twin's synchronous face of a local-mode ``AsyncQdrantClient``
    does): its ``transport(name)`` is asked instead. Only for :class:`NumericPoints`, in which the scan can
    find nothing.
    """
    own = getattr(type(client), "transport", None)
    if own is not None:
        found: Callable[..., Any] | None = own(client, name)
        return found
    if not isinstance(client, QdrantClient) or has_own(client, QdrantClient, name):
        return None
    return getattr(getattr(client, "_client", None), name, None)


def has_own(client: Any, base: type, name: str) -> bool:
    """Whether ``client`` (an instance of ``base``) has a ``name`` other than ``base``'s: set on the instance,
    or defined by its class."""
    return name in vars(client) or getattr(type(client), name, None) is not getattr(base, name, None)


class ServerStore(ControlRecords):
    """The store over a Qdrant server: schema, points, control records and aliases.

    :func:`~lattice_qdrant.store.open_store` picks this class for a client of a server (and
    :class:`~lattice_qdrant.store.local.LocalStore` for local mode).

    Args:
        client: the user's ``QdrantClient``.
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
        self._control_collection = control_collection
        self.retry = retry or RetryPolicy()
        self._control_ready = False
        self._conditional_writes_ok = False
        self._lock = self._make_lock()
        # (collection, strict-mode setting) -> how this store adapted to its refusal (a limit, or True)
        self._adapted: dict[tuple[str, str], int | bool] = {}

    def _make_lock(self) -> contextlib.AbstractContextManager[Any]:
        """What every request is made under: nothing on a server, which serves requests concurrently."""
        return contextlib.nullcontext()

    @property
    def control_collection(self) -> str:
        """Where migration records and the model registry live."""
        return self._control_collection

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
        # The first attempt runs here, outside tenacity: building and entering its machinery costs more
        # than a local-mode request, and most requests succeed at once. A transient failure of it becomes
        # tenacity's attempt 1 (replayed, not sent again), so the waits, the logs and the number of
        # attempts are the policy's, as if tenacity had run it.
        try:
            return once()
        except TransientStoreError as exc:
            first: TransientStoreError | None = exc

        def attempt() -> Any:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
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
        return retrying(attempt)

    @property
    def is_local(self) -> bool:
        """``False``: a server (see :class:`~lattice_qdrant.store.local.LocalStore`)."""
        return False

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """Nothing to take on a server (a :class:`~lattice_qdrant.store.local.LocalStore` has a lock)."""
        return self._lock

    def server_version(self) -> tuple[int, int, int] | None:
        """The server's version (``None`` only in local mode, which follows the client's features).

        Raises:
            ServerVersionError: the server reports no version that can be read. That is refused rather
                than guessed: below 1.17 conditional writes would silently become plain ones.
        """
        info = self._call("read the server version", self.client.info)
        reported = str(getattr(info, "version", "") or "")
        parts = re.findall(r"\d+", reported)
        if len(parts) < 2:
            raise ServerVersionError(
                f"the server reports no readable version ({reported!r}), so lattice-qdrant cannot tell "
                f"whether it is Qdrant {version_text(CONDITIONAL_WRITES_MIN_VERSION[:2])}+, which every "
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
            needed = version_text(CONDITIONAL_WRITES_MIN_VERSION[:2])
            raise ServerVersionError(
                f"Qdrant {version_text(version)} found, {needed}+ needed: servers before {needed} "
                "silently ignore update_mode (and before 1.15.4 update_filter), so the compare-and-set "
                "of the migration records would let two writers both win and the backfill could "
                f"overwrite fresher vectors; every strategy needs {needed}+ (in place: "
                f"{version_text(IN_PLACE_MIN_VERSION[:2])}+): upgrade the server",
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
        """The collection's strict-mode settings when strict mode is on, else ``None``. Read-only."""
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
            with self._creating_index():
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

    def _creating_index(self) -> contextlib.AbstractContextManager[Any]:
        """What a payload index request is made under: nothing on a server (local mode mutes its warning)."""
        return contextlib.nullcontext()

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
                f"Qdrant {version_text(version)} found, {version_text(IN_PLACE_MIN_VERSION[:2])}+ needed: "
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

        numeric = isinstance(points, NumericPoints)

        def send(batch: list[models.PointStruct]) -> models.UpdateResult:
            result: models.UpdateResult = self._call(
                "upsert points",
                (numeric and transport_method(self.client, "upsert")) or self.client.upsert,
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

        numeric = isinstance(points, NumericPoints)

        def send(batch: list[models.PointVectors]) -> models.UpdateResult:
            result: models.UpdateResult = self._call(
                "update vectors",
                (numeric and transport_method(self.client, "update_vectors")) or self.client.update_vectors,
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
        """``update_vectors`` and the model stamp of ``stamp_ids``, in one request (in order, not one
        transaction; local mode makes them one after the other under its lock).

        With ``update_filter`` the vector write is conditional, and Qdrant does not say which points it wrote:
        the stamp then goes to the points of ``stamp_ids`` that match the same filter
        (:func:`stamp_selector`), after the vector write, which changes nothing a payload filter reads.
        """
        if stamp is None or not stamp_ids:
            return self.update_vectors(collection, points, update_filter=update_filter, **kwargs)
        payload = stamp_payload(stamp)
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
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        """Write named vectors to points that still hold the text they were embedded from.

        ``pending`` maps point ids to ``(text, {vector name: vector})`` (text ``None``: the point had none;
        a vector may be a ``models.Document`` for the server to embed).
        One ``update_vectors`` conditional on each point still holding its text (and, with ``lacking``,
        still lacking that vector), so a write the application made meanwhile wins; payload and other
        vectors are left alone. Points deleted meanwhile are dropped: a server applies an
        ``update_vectors`` batch point by point and fails on the first missing id, so the batch is written
        again without it, which the conditions make harmless. Used by the backfill, read-repair, verify
        and restore.

        With ``stamp`` (``(model_id, version)``), the points of ``pending`` holding the vectors written,
        once written (this call's, or the application's written meanwhile), are stamped with that model:
        in the **same** ``batch_update_points`` request on a server (a payload operation whose filter is
        those ids holding those vectors: ``has_id`` and ``has_vector`` need no payload index, so a strict
        mode's ``unindexed_filtering_update`` lets it through), in order, not as one transaction. A strict
        mode that refuses that filter (``filter_max_conditions``, ``condition_max_size``) refused the whole
        request, which changed nothing: it is sent again as the write, a read-back of which points hold
        the vectors and a stamp by ids, and this Store keeps that path for the collection.

        Returns:
            the ids that still exist (written, or skipped by the conditions: Qdrant does not say which).
        """
        todo = dict(pending)
        if stamp is None:
            return self._update_if_unchanged(collection, text_field, todo, lacking)
        parts = self._in_batches(
            collection,
            list(todo),
            lambda ids: self._update_if_unchanged(
                collection, text_field, {pid: todo[pid] for pid in ids}, lacking, stamp
            ),
        )
        return [pid for part in parts for pid in part]

    def _update_if_unchanged(
        self,
        collection: str,
        text_field: str,
        todo: dict[Any, tuple[str | None, Mapping[str, Any]]],
        lacking: str | None,
        stamp: tuple[str, int] | None = None,
    ) -> list[Any]:
        def write(ids: list[Any]) -> list[Any]:
            condition = unchanged(text_field, todo, ids, lacking_vector(lacking))
            points = named_vectors(todo, ids)
            if stamp is None:
                self.update_vectors(collection, points, update_filter=condition)
                return ids
            names = sorted({name for pid in ids for name in todo[pid][1]})
            if not self._stamps_by_ids(collection):
                try:
                    self._write_then_stamp(collection, points, condition, stamp, holding(ids, names))
                    return ids
                except StrictModeError as exc:
                    self._stamp_by_ids_from_now(collection, exc)
            try:
                self.update_vectors(collection, points, update_filter=condition)
            finally:
                # the points before a missing id were written: stamped too before the caller retries
                self._stamp_holders(collection, ids, stamp, names)
            return ids

        return self._skipping_deleted(collection, todo, write)

    def _write_then_stamp(
        self,
        collection: str,
        points: list[models.PointVectors],
        condition: models.Filter,
        stamp: tuple[str, int] | None,
        selector: models.Filter,
        *,
        vector: str | None = None,
    ) -> None:
        """One request: the conditional vector write, then the stamp (``None``: its removal) of the points
        ``selector`` matches once it ran."""
        self.check_conditional_writes(collection)
        self._call(
            "write vectors and model stamps",
            self.client.batch_update_points,
            collection,
            update_operations=write_then_stamp(points, condition, stamp, selector),
            collection=collection,
            vector=vector,
            point_ids=[p.id for p in points],
        )

    def _stamp_holders(
        self, collection: str, ids: Sequence[Any], stamp: tuple[str, int], names: Sequence[str]
    ) -> None:
        """Stamp, by ids, those of ``ids`` that hold every vector of ``names`` (read back)."""
        records = self.retrieve(collection, ids, with_payload=False, with_vectors=list(names))
        holders = [r.id for r in records if isinstance(r.vector, dict) and all(n in r.vector for n in names)]
        if holders:
            self.set_payload(collection, stamp_payload(stamp), holders)

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
            condition = unchanged(text_field, todo, ids, unless)
            points = [
                models.PointVectors(id=pid, vector=todo[pid][1] if name == "" else {name: todo[pid][1]})
                for pid in ids
            ]
            by_ids = self._stamps_by_ids(collection) if auto else not one_request
            if not by_ids:
                try:
                    with self._lock:
                        return self._stamped_one_request(
                            collection, name, points, condition, stamp, todo, distance
                        )
                except StrictModeError as exc:
                    if not auto:
                        raise
                    self._stamp_by_ids_from_now(collection, exc)
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

    def _stamp_by_ids_from_now(self, collection: str, refused: StrictModeError) -> None:
        """After a strict mode refused a one-request stamp: stamp by ids after a read-back for this
        collection from now on, or raise the refusal when its setting is not one the stamp's filter meets.
        The refused request changed nothing (a strict server checks every operation of a batch first)."""
        if refused.setting not in _STAMP_FILTER_SETTINGS:
            raise refused
        self._adapt(
            collection,
            "stamp_by_ids",
            True,
            f"the stamp's filter is refused ({refused.setting}); stamping by ids after a read-back",
        )

    def _stamps_by_ids(self, collection: str) -> bool:
        """Whether :meth:`write_stamped` takes the by-ids path by default: once strict mode refused the
        one-request stamp for the collection."""
        return (collection, "stamp_by_ids") in self._adapted

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
        self._write_then_stamp(collection, points, condition, stamp, selector, vector=name)
        records = self.retrieve(
            collection, ids, with_payload=[MODEL_FIELD, VERSION_FIELD], with_vectors=[name] if name else True
        )
        wanted = stamp_payload(stamp) if stamp else {}
        ours = holding_written(records, name, todo, distance)
        return [
            r.id
            for r in records
            if r.id in ours
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
            mine = holding_written(records, name, todo, distance)
            ours = [r.id for r in records if r.id in mine]
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
                    self.set_payload(collection, stamp_payload(stamp), ours)
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
        return pages(
            self.scroll,
            collection,
            flt=flt,
            page_size=page_size,
            with_payload=with_payload,
            with_vectors=with_vectors,
        )

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
                raise self._vector_endpoint_refused(collection, name, message_of(cause)) from exc
            raise
        return True

    def _vector_endpoint_refused(self, collection: str, name: str, said: str) -> StoreError:
        """The error for a 404/405 to adding a named vector: "too old" only when the version says so.

        A server before 1.18 has no such endpoint; on a newer one the answer came from something else (a
        proxy or gateway in front of Qdrant, a URL with a wrong path prefix), which an upgrade would not
        fix.
        """
        needed = version_text(IN_PLACE_MIN_VERSION[:2])
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
                    f"{version_text(version)} found, {needed}+ needed; upgrade the server or {_BLUE_GREEN}",
                    collection=collection,
                    vector=name,
                )
            where = "local mode" if version is None else f"the server reports Qdrant {version_text(version)}"
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
