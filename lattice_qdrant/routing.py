"""Routing decisions without I/O: where a write's vectors go and how a query runs.

Everything here is decided from a :class:`Snapshot` (the migration record as read) and, where it matters,
a :class:`Coverage` reading, and returns data: no store, no embedder, no request. The wrapping client
(:mod:`lattice_qdrant.client`) executes the decisions: it reads the snapshot and the coverage, embeds what
:func:`resolve` says is missing, and sends the requests the strategy's
:class:`Destination` list and :data:`QueryPlan` describe. An async client executes the same decisions.

* :func:`route`: the write and query routes of a snapshot (the state machine's routing tables plus the
  plan's vector names);
* :func:`roles` / :func:`split` / :func:`check_vector` / :func:`resolve`: which model's vector (role
  ``source`` or ``target``) a write must carry, what the caller gave for each point, whether it is valid,
  and which texts still need embedding with which model;
* :func:`check_update_filter`: whether the model stamp can follow a caller's ``update_filter``;
* :class:`Destination`, :data:`QueryPlan` and :class:`MixedSearches`: the plans the strategies
  (:mod:`lattice_qdrant.strategies`) return for writes, queries and mixed-mode searches.

``qdrant_client.models`` is used for its data classes only (filters, ``models.Document``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .errors import VectorValidationError
from .plan import MigrationPlan
from .spec import ModelSpec
from .state import MigrationState, Phase, QueryRoute, WriteRoute, query_route, write_route

__all__ = [
    "EMPTY_DOCUMENT",
    "TEXT_TYPES",
    "Coverage",
    "Destination",
    "MixedQuery",
    "MixedSearches",
    "PassThrough",
    "QueryPlan",
    "Resolution",
    "Role",
    "RoutedQuery",
    "Routing",
    "Search",
    "Snapshot",
    "Split",
    "VectorsOf",
    "as_point_structs",
    "blank",
    "check_update_filter",
    "check_vector",
    "id_key",
    "is_dense",
    "needs_coverage",
    "negated_vectors",
    "query_text",
    "resolve",
    "roles",
    "route",
    "schema_moved",
    "split",
]

Role = Literal["source", "target"]
"""Which model a vector belongs to: the plan's source or its target."""

TEXT_TYPES = (models.Document,)
"""What may stand for a vector and be embedded: qdrant-client's inference object."""

EMPTY_DOCUMENT = "models.Document has empty text"


# --------------------------------------------------------------------------- what was read


@dataclass(frozen=True)
class Coverage:
    """How many points hold the target model, counted exactly from the data."""

    covered: int
    total: int

    @property
    def fraction(self) -> float:
        """``covered / total``; 1.0 for an empty collection."""
        return 1.0 if self.total == 0 else min(1.0, self.covered / self.total)

    @property
    def missing(self) -> int:
        """Points still without it."""
        return max(0, self.total - self.covered)


@dataclass(frozen=True)
class Snapshot:
    """A migration record as read: plan, state and the epoch it was read at."""

    plan: MigrationPlan
    state: MigrationState
    epoch: int
    record: dict[str, Any]

    @property
    def backup_id(self) -> str | None:
        """A re-embed's backup of the source vectors, taken at start (``None`` before, or otherwise)."""
        value = self.record.get("backup_id")
        return str(value) if value else None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Snapshot:
        """The snapshot of a record read from the control collection."""
        return cls(
            plan=MigrationPlan.from_payload(record["plan"]),
            state=MigrationState.from_dict(record["state"]),
            epoch=int(record["epoch"]),
            record=record,
        )


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Routing:
    """Where writes and queries go, as decided from one snapshot and one coverage reading."""

    write: WriteRoute
    query: QueryRoute
    query_vector: str
    write_vectors: tuple[str, ...]


def needs_coverage(snap: Snapshot) -> bool:
    """Whether the query route depends on coverage now: a ``query_threshold`` while migrating, and not
    pinned to the source by a rollback."""
    return (
        snap.plan.query_threshold is not None
        and not snap.state.rolled_back
        and snap.state.phase == Phase.MIGRATING
    )


def route(snap: Snapshot, coverage: float) -> Routing:
    """The routes of ``snap`` at ``coverage`` (0-1), with the vector names they use."""
    plan, state = snap.plan, snap.state
    query = query_route(state, coverage, plan.policy)
    write = write_route(state)
    vectors = {
        WriteRoute.LEGACY: (plan.source_vector,),
        WriteRoute.DUAL_WRITE: (plan.source_vector, plan.target_vector),
        WriteRoute.TARGET: (plan.target_vector,),
    }[write]
    query_vector = plan.target_vector if query == QueryRoute.TARGET else plan.source_vector
    return Routing(write=write, query=query, query_vector=query_vector, write_vectors=vectors)


def roles(write: WriteRoute) -> tuple[Role, ...]:
    """The roles a write route writes: the source model's vector, the target's, or both."""
    found: dict[WriteRoute, tuple[Role, ...]] = {
        WriteRoute.LEGACY: ("source",),
        WriteRoute.DUAL_WRITE: ("source", "target"),
        WriteRoute.TARGET: ("target",),
    }
    return found[write]


# --------------------------------------------------------------------------- values


def blank(text: Any) -> bool:
    """Whether a text gives an embedder nothing to embed (empty, whitespace, or not a string)."""
    return not isinstance(text, str) or not text.strip()


def is_dense(value: Any) -> bool:
    """Whether ``value`` is one dense vector (a flat list of numbers, or a 1-d array)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(x, int | float | np.floating | np.integer) for x in value)
    )


def check_vector(value: Any, spec: ModelSpec, name: str) -> list[float] | str:
    """The vector as a list of floats, or a problem naming the vector and what is wrong."""
    try:
        array: NDArray[np.float64] = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"vector {name!r} is not a list of numbers"
    if array.ndim != 1:
        return f"vector {name!r} is not a flat list of numbers (shape {array.shape})"
    if array.shape[0] != spec.dimension:
        return (
            f"vector {name!r} has {array.shape[0]} dimensions, but {spec.qualified_id} has {spec.dimension}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        return f"vector {name!r} has a non-finite value at index {bad}"
    return [float(x) for x in array]


def query_text(query: Any) -> str | None:
    """A text query's text (a ``models.Document``, or a ``models.NearestQuery`` of one), else ``None``."""
    nearest = query.nearest if isinstance(query, models.NearestQuery) else query
    return nearest.text if isinstance(nearest, TEXT_TYPES) else None


def id_key(point_id: Any) -> Any:
    """An id as Qdrant gives it back (an int, or a UUID in canonical form), to compare ids."""
    if isinstance(point_id, int):
        return point_id
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError:
        return str(point_id)


def as_point_structs(points: models.Batch | Sequence[models.PointStruct]) -> list[models.PointStruct]:
    """An upsert's points one by one, whether given as structs or as a column ``models.Batch``."""
    if not isinstance(points, models.Batch):
        return list(points)
    ids = list(points.ids)
    payloads = list(points.payloads) if points.payloads is not None else [None] * len(ids)
    raw = points.vectors
    if isinstance(raw, dict):
        per_point: list[Any] = [{name: raw[name][i] for name in raw} for i in range(len(ids))]
    else:
        per_point = list(raw)
    return [
        models.PointStruct(id=pid, vector=vec, payload=payload)
        for pid, vec, payload in zip(ids, per_point, payloads, strict=True)
    ]


def schema_moved(message: str) -> bool:
    """Whether a refused request says a vector it named no longer exists (another process changed the
    schema: the routing is stale, and the write is worth one retry after a refresh)."""
    text = message.lower()
    return "not existing vector" in text or (
        "vector" in text and ("does not exist" in text or "not found" in text)
    )


# --------------------------------------------------------------------------- a write's vectors

Split = tuple[dict[str, Any], dict[str, Any]] | str
"""A point's vectors as ``(values by role, other named vectors)``, or the problem with them."""


def split(
    value: Any, plan: MigrationPlan, required: tuple[Role, ...], *, ambiguous: str | None = None
) -> Split:
    """A point's vector value as ``(values by role, other named vectors)``, or the problem with it.

    ``ambiguous`` is the problem to report when a plain vector could be either model's (the strategy's
    wording; by default it names the vectors).
    """
    names = {"source": plan.source_vector, "target": plan.target_vector}
    specs = {"source": plan.source, "target": plan.target}

    def by_dimension(vector: Any, among: Sequence[Role]) -> Role | None:
        fits = [r for r in among if specs[r].dimension == len(vector)]
        return fits[0] if len(fits) == 1 else None

    if value is None:
        return {}, {}
    if isinstance(value, TEXT_TYPES):
        return dict.fromkeys(required, value), {}
    if is_dense(value):
        role = required[0] if len(required) == 1 else by_dimension(value, required)
        if role is None:
            shown = " and ".join(repr(names[r]) for r in required)
            return ambiguous or (
                f"a plain vector is ambiguous while writes go to {shown}; give a dict of named vectors "
                "or a models.Document"
            )
        return {role: value}, {}
    if not isinstance(value, dict):
        return f"unsupported vector value of type {type(value).__name__}"
    given: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, item in value.items():
        owners: list[Role] = [r for r in ("source", "target") if names[r] == name]
        if not owners:
            extra[name] = item
            continue
        wanted = [r for r in owners if r in required]
        if not wanted:
            continue  # e.g. the source vector after finalize: it no longer exists
        if len(wanted) == 1:
            given[wanted[0]] = item
        elif isinstance(item, TEXT_TYPES):
            given.update(dict.fromkeys(wanted, item))
        elif is_dense(item) and (role := by_dimension(item, wanted)) is not None:
            given[role] = item
        else:
            return ambiguous or (
                f"vector {name!r} is written by both models during this migration; give a "
                "models.Document (or text) so each model embeds it"
            )
    return given, extra


@dataclass
class Resolution:
    """Every point's routed vectors by role, validated, and what is left to embed.

    Attributes:
        roles: per point, the vectors by role given (or, after :meth:`fill`, embedded).
        extras: per point, the named vectors outside the migration (passed through unchanged).
        pending: per role, ``(point index, text)`` to embed with that role's model.
    """

    roles: list[dict[str, list[float]]]
    extras: list[dict[str, Any]]
    pending: dict[Role, list[tuple[int, str]]] = field(default_factory=dict)

    def fill(self, role: Role, rows: Sequence[Sequence[float]] | NDArray[np.float32]) -> None:
        """Put the embeddings of ``pending[role]`` (in its order) into :attr:`roles`."""
        for (index, _), row in zip(self.pending.get(role, []), rows, strict=True):
            self.roles[index][role] = [float(x) for x in row]


def resolve(
    plan: MigrationPlan,
    ids: Sequence[Any],
    splits: Sequence[Split],
    required: tuple[Role, ...],
    texts: Sequence[Any],
    *,
    fill: Sequence[bool] | None = None,
    hint: str | None = None,
) -> Resolution:
    """Validate every point's routed vectors by role, and list what must be embedded.

    ``splits`` are the points' vector values as :func:`split` read them; ``texts`` the text each point
    can be embedded from when a routed vector is not given (``None``: no text). With ``fill``, only the
    points marked ``True`` need every routed vector.

    Raises:
        VectorValidationError: listing every bad point; nothing was written.
    """
    specs = {"source": plan.source, "target": plan.target}
    names = {"source": plan.source_vector, "target": plan.target_vector}
    problems: list[tuple[Any, str]] = []
    out = Resolution(roles=[], extras=[], pending={role: [] for role in required})
    for index, (pid, part) in enumerate(zip(ids, splits, strict=True)):
        if isinstance(part, str):
            problems.append((pid, part))
            out.roles.append({})
            out.extras.append({})
            continue
        given, extra = part
        vectors: dict[str, list[float]] = {}
        empty: list[str] = []
        must = fill[index] if fill is not None else True
        for role in required:
            spec, name = specs[role], names[role]
            found = given.get(role)
            if found is None:
                if not must:
                    continue
                text = texts[index]
                if isinstance(text, str) and text.strip():
                    out.pending[role].append((index, text))
                else:
                    problems.append(
                        (
                            pid,
                            f"missing vector {name!r} ({spec.qualified_id}): "
                            + (
                                hint
                                or "give it, a models.Document, or text in the payload field "
                                f"{plan.text_field!r}"
                            ),
                        )
                    )
            elif isinstance(found, TEXT_TYPES):
                if blank(found.text):
                    # like empty payload text: embedding nothing would write a meaningless vector
                    empty.append(name)
                else:
                    out.pending[role].append((index, found.text))
            else:
                checked = check_vector(found, spec, name)
                if isinstance(checked, str):
                    problems.append((pid, checked))
                else:
                    vectors[role] = checked
        if empty:  # one problem per point, though a Document may stand for both vectors
            shown = ", ".join(repr(n) for n in dict.fromkeys(empty))
            problems.append(
                (pid, f"{EMPTY_DOCUMENT} (vector {shown}); give the text to embed, or the vector")
            )
        out.roles.append(vectors)
        out.extras.append(extra)
    if problems:
        raise VectorValidationError(problems)
    return out


VectorsOf = Callable[[dict[str, list[float]], dict[str, Any]], Any]
"""A destination's vector value of a point, from its vectors by role and its other named vectors."""


@dataclass(frozen=True)
class Destination:
    """One collection a routed write goes to.

    Attributes:
        collection: where.
        vectors_of: the point's vector value there.
        stamp: the model the points written there are stamped with.
        stamp_with_vectors: an ``update_vectors`` there carries the stamp in the same request (the vector
            name alone does not say which model it holds).
    """

    collection: str
    vectors_of: VectorsOf
    stamp: ModelSpec
    stamp_with_vectors: bool = False


def negated_vectors(flt: models.Filter, negated: bool = False) -> set[str]:
    """Vector names whose ``has_vector`` the filter reads negated (under an odd number of ``must_not``)."""
    out: set[str] = set()

    def listed(value: Any) -> list[Any]:
        return [] if value is None else list(value) if isinstance(value, list) else [value]

    def walk(condition: Any, negated: bool) -> None:
        if isinstance(condition, models.Filter):
            positive = listed(condition.must) + listed(condition.should)
            if condition.min_should is not None:
                positive += condition.min_should.conditions
            for item in positive:
                walk(item, negated)
            for item in listed(condition.must_not):
                walk(item, not negated)
        elif isinstance(condition, models.NestedCondition):
            walk(condition.nested.filter, negated)
        elif isinstance(condition, models.HasVectorCondition) and negated:
            out.add(condition.has_vector)

    walk(flt, negated)
    return out


def check_update_filter(flt: models.Filter, written: set[str], stamp_fields: tuple[str, str]) -> None:
    """Refuse a caller's ``update_filter`` the model stamp cannot follow.

    The stamp goes, after the vector write, to the points matching the same filter; that is exactly the
    points written unless the filter reads a vector the write sets. Reading one as present (``must``) still
    holds after the write; reading one as missing (``must_not`` ``has_vector``) no longer does for the points
    just written, so they would keep the old model's stamp. ``stamp_fields`` are the payload fields to
    suggest filtering on instead.

    Raises:
        VectorValidationError: the filter reads a vector this write sets as missing.
    """
    clash = sorted(negated_vectors(flt) & written)
    if clash:
        shown = ", ".join(repr(n) for n in clash)
        raise VectorValidationError(
            [
                (
                    None,
                    f"the update_filter requires the vector {shown} to be missing, and this write sets it: "
                    "the model stamp of the points written could not follow the filter; filter on the "
                    f"payload instead (for instance {stamp_fields[0]!r} / {stamp_fields[1]!r})",
                )
            ]
        )


# --------------------------------------------------------------------------- query plans


@dataclass(frozen=True)
class PassThrough:
    """A query on a vector the migration does not route: sent as given."""

    collection: str
    using: str | None


@dataclass(frozen=True)
class MixedQuery:
    """A mixed-mode query: candidates of both models, rescored in the target space
    (:mod:`lattice_qdrant.mixed`)."""


@dataclass(frozen=True)
class RoutedQuery:
    """A query embedded (or checked) with one model and searched where that model's vectors are.

    Attributes:
        collection: the collection searched.
        using: the vector name searched.
        role: whose model embeds the query (and whose dimension a query vector must have).
        restriction: a filter combined with the caller's, when the vector name alone does not select the
            points holding that model (a re-embed: the stamp does).
    """

    collection: str
    using: str
    role: Role
    restriction: models.Filter | None = None


QueryPlan = PassThrough | MixedQuery | RoutedQuery
"""How a query runs, as a strategy decides it."""


@dataclass(frozen=True)
class Search:
    """One search of a mixed query."""

    collection: str
    using: str | None
    query_filter: models.Filter | None
    with_vectors: bool | list[str]


@dataclass(frozen=True)
class MixedSearches:
    """The two searches of a mixed query and where the candidates' target vectors are.

    Attributes:
        source: the source-embedding search.
        target: the target-embedding search.
        target_vector: the vector name holding target vectors in the hits (and in ``fetch_from``).
        vectors_from: which searches' hits hold target vectors under that name.
        fetch_from: a collection to fetch the other candidates' target vectors from, or ``None``.
    """

    source: Search
    target: Search
    target_vector: str
    vectors_from: tuple[Role, ...] = ("source", "target")
    fetch_from: str | None = None
