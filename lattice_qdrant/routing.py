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
  (:mod:`lattice_qdrant.strategies`) return for writes, queries and mixed-mode searches;
* the shapes of qdrant-client's other routed calls, read into the single calls the wrapper routes:
  :func:`upload_rows` / :func:`upload_structs` / :func:`batched` (the bulk uploads, lazily),
  :func:`single_call` (an operation of ``batch_update_points`` as its single-call twin),
  :func:`request_options` / :func:`as_request` (a ``QueryRequest`` as ``query_points`` arguments),
  :func:`text_change` (whether a payload write changes the text the target vector is embedded from) and
  :func:`selected` (a points selector as ids or a filter);
* :func:`inference_mode`: where ``models.Document`` is embedded, as the caller chose it.

``qdrant_client.models`` is used for its data classes only (filters, ``models.Document``).
"""

from __future__ import annotations

import functools
import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel
from qdrant_client import models

from .calibration import RECORD_FIELD, ScoreCalibration
from .errors import CalibrationError, ConfigError, VectorValidationError
from .plan import MigrationPlan
from .spec import ModelSpec
from .state import MigrationState, Phase, QueryRoute, WriteRoute, query_route, write_route

_Model = TypeVar("_Model", bound=BaseModel)

__all__ = [
    "EMPTY_DOCUMENT",
    "TEXT_TYPES",
    "Coverage",
    "Destination",
    "Inference",
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
    "TextChange",
    "VectorsOf",
    "as_point_structs",
    "as_request",
    "batched",
    "blank",
    "check_update_filter",
    "check_vector",
    "dense_vector",
    "id_key",
    "in_memory",
    "inference_mode",
    "is_dense",
    "needs_coverage",
    "negated_vectors",
    "point_struct",
    "point_vectors",
    "query_text",
    "request_options",
    "resolve",
    "roles",
    "route",
    "schema_moved",
    "selected",
    "single_call",
    "split",
    "text_change",
    "unchecked",
    "upload_problem",
    "upload_rows",
    "upload_structs",
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
    #: :func:`route`'s answers by coverage (a snapshot never changes, and every routed call asks)
    _routes: dict[float, Routing] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def backup_id(self) -> str | None:
        """A re-embed's backup of the source vectors, taken at start (``None`` before, or otherwise)."""
        value = self.record.get("backup_id")
        return str(value) if value else None

    @functools.cached_property
    def calibration(self) -> ScoreCalibration | None:
        """The score calibration stored with the migration (``None``: none, as in records written before
        calibrations existed, or one this version cannot read)."""
        found = self.record.get(RECORD_FIELD)
        if not isinstance(found, dict):
            return None
        try:
            return ScoreCalibration.from_payload(found)
        except CalibrationError:
            return None

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
    known = snap._routes.get(coverage)
    if known is not None:
        return known
    plan, state = snap.plan, snap.state
    query = query_route(state, coverage, plan.policy)
    write = write_route(state)
    vectors = {
        WriteRoute.LEGACY: (plan.source_vector,),
        WriteRoute.DUAL_WRITE: (plan.source_vector, plan.target_vector),
        WriteRoute.TARGET: (plan.target_vector,),
    }[write]
    query_vector = plan.target_vector if query == QueryRoute.TARGET else plan.source_vector
    found = Routing(write=write, query=query, query_vector=query_vector, write_vectors=vectors)
    if len(snap._routes) < 64:  # coverage readings of one snapshot's life: a few
        snap._routes[coverage] = found
    return found


_ROLES: dict[WriteRoute, tuple[Role, ...]] = {
    WriteRoute.LEGACY: ("source",),
    WriteRoute.DUAL_WRITE: ("source", "target"),
    WriteRoute.TARGET: ("target",),
}


def roles(write: WriteRoute) -> tuple[Role, ...]:
    """The roles a write route writes: the source model's vector, the target's, or both."""
    return _ROLES[write]


# --------------------------------------------------------------------------- values


def blank(text: Any) -> bool:
    """Whether a text gives an embedder nothing to embed (empty, whitespace, or not a string)."""
    return not isinstance(text, str) or not text.strip()


#: what :func:`is_dense` counts as a number of a vector
_NUMBERS = (int, float, np.floating, np.integer)


def _total(values: list[Any] | tuple[Any, ...]) -> Any:
    """``sum(values)``, or ``None`` when they do not add up (an element is not a number).

    The validation's one pass over a vector's elements, in C: a Python loop over them costs more than a
    local-mode request. Anything a vector element cannot be (a list: a multivector; a string; ``None``; a
    model) raises ``TypeError`` in it, a NaN or an infinity makes the total non-finite.
    """
    try:
        return sum(values)
    except TypeError:
        return None


def is_dense(value: Any) -> bool:
    """Whether ``value`` is one dense vector (a flat list of numbers, or a 1-d array)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    if not isinstance(value, list | tuple) or not value or not isinstance(value[0], _NUMBERS):
        return False
    return isinstance(_total(value), _NUMBERS)


def check_vector(value: Any, spec: ModelSpec, name: str) -> list[float] | str:
    """The vector as a list of floats, or a problem naming the vector and what is wrong.

    A list (or tuple) of the model's dimension whose elements add up to a finite float holds finite
    numbers only, and is returned as it is (a tuple as a list); anything else is read by numpy, which
    names the problem.
    """
    valid = _valid_at_once(value, spec)
    if valid is not None:
        return valid
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
    found: list[float] = array.tolist()
    return found


def _valid_at_once(value: Any, spec: ModelSpec) -> list[float] | None:
    """``value`` as a list when one pass shows it a valid vector of ``spec`` (see :func:`check_vector`)."""
    if type(value) in (list, tuple) and len(value) == spec.dimension:
        total = _total(value)
        if type(total) is float and math.isfinite(total):
            return value if type(value) is list else list(value)
    return None


def dense_vector(value: Any, spec: ModelSpec, name: str) -> list[float] | str | None:
    """:func:`check_vector` of ``value`` if it is a dense vector (:func:`is_dense`), else ``None``; a valid
    list is told in one pass."""
    valid = _valid_at_once(value, spec)
    if valid is not None:
        return valid
    return check_vector(value, spec, name) if is_dense(value) else None


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
    source_name, target_name = plan.source_vector, plan.target_vector
    if type(value) is dict and source_name != target_name:
        # the common case, first and without the general machinery: a dict of named vectors, each name
        # belonging to at most one role (a name no longer written, e.g. the source after finalize, is left
        # out; a name outside the migration passes through)
        by_role: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for name, item in value.items():
            if name == source_name:
                if "source" in required:
                    by_role["source"] = item
            elif name == target_name:
                if "target" in required:
                    by_role["target"] = item
            else:
                others[name] = item
        return by_role, others
    names = {"source": source_name, "target": target_name}
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

    def defer(self, role: Role, model: str) -> None:
        """Leave the embedding of ``pending[role]`` to the server: each text as a ``models.Document`` of
        ``model`` (server-side inference, see :func:`inference_mode`)."""
        for index, text in self.pending.get(role, []):
            self.roles[index][role] = models.Document(text=text, model=model)  # type: ignore[assignment]


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
    routed = [(role, specs[role], names[role]) for role in required]
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
        for role, spec, name in routed:
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
        vectors_from: which searches' hits hold target vectors under that name (the target search's hits
            need none: their scores are their target scores).
        fetch_from: a collection to fetch the other candidates' target vectors from, or ``None``.
        source_vector: the vector name holding source vectors in the hits of ``source_vectors_from``.
        source_vectors_from: which searches' hits hold source vectors under that name (mixed mode places
            the candidates it does not embed by their source-space neighbours).
    """

    source: Search
    target: Search
    target_vector: str
    vectors_from: tuple[Role, ...] = ("source",)
    fetch_from: str | None = None
    source_vector: str = ""
    source_vectors_from: tuple[Role, ...] = ()


# --------------------------------------------------------------------------- where Documents are embedded

Inference = Literal["local", "server"]
"""Where the wrapper has a ``models.Document`` of a routed write or query embedded: in this process with
the routed model's embedder (``local``), or by Qdrant's inference (``server``)."""


def inference_mode(cloud_inference: bool, chosen: Inference | None) -> Inference:
    """The inference the wrapper uses for a client made with (or without) ``cloud_inference=True``.

    Never chosen silently: a client made for server-side inference needs an explicit choice, since
    embedding locally would not do what the client was made for and sending the Document would need the
    models to be the server's.

    Raises:
        ConfigError: a cloud-inference client and no choice, ``"server"`` for a client without cloud
            inference, or an unknown choice (key ``inference``).
    """
    if chosen is None:
        if cloud_inference:
            raise ConfigError(
                "the client was made with cloud_inference=True: say where the wrapper embeds the "
                "models.Document of routed writes and queries: wrap(client, inference='local') embeds them "
                "in this process with the routed model's embedder, inference='server' sends them to Qdrant "
                "with the routed model's model_id as the Document's model",
                key="inference",
            )
        return "local"
    if chosen not in ("local", "server"):
        raise ConfigError(f"inference must be 'local' or 'server', not {chosen!r}", key="inference")
    if chosen == "server" and not cloud_inference:
        raise ConfigError(
            "inference='server' sends models.Document to Qdrant to embed, which needs a client made with "
            "QdrantClient(..., cloud_inference=True); use inference='local' (the default) otherwise",
            key="inference",
        )
    return chosen


# --------------------------------------------------------------------------- bulk uploads


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily: one list in memory at a time."""
    if size < 1:
        raise VectorValidationError([(None, f"batch_size must be at least 1, not {size}")])
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _plain(value: Any) -> Any:
    """A vector value with numpy arrays as lists (a named-vector dict's values too)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


def _sized(value: Any) -> bool:
    return isinstance(value, Sequence | np.ndarray) and not isinstance(value, str)


def in_memory(vectors: Any, *columns: Any) -> bool:
    """Whether an upload's data is held in memory whole (lists, tuples or arrays; ``None`` columns), so it
    can be read twice: validated whole, then written. A generator or another iterator is read once."""
    if isinstance(vectors, dict):
        sized = all(_sized(column) for column in vectors.values())
    else:
        sized = _sized(vectors)
    return sized and all(column is None or _sized(column) for column in columns)


def _length(vectors: Any) -> int | None:
    if isinstance(vectors, dict):
        lengths = {len(column) for column in vectors.values() if _sized(column)}
        return lengths.pop() if len(lengths) == 1 else None
    return len(vectors) if _sized(vectors) else None


def upload_problem(vectors: Any, payload: Any, ids: Any) -> str | None:
    """What is wrong with ``upload_collection``'s columns as a whole (``None``: nothing): named columns
    of different lengths, or ids or payloads fewer than the vectors."""
    if isinstance(vectors, dict) and vectors:
        if not all(_sized(column) for column in vectors.values()):
            return "vectors as a dict must map each vector name to a list or an array of vectors"
        lengths = {name: len(column) for name, column in vectors.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name!r}: {n}" for name, n in lengths.items())
            return f"each named vector needs as many vectors ({shown})"
    count = _length(vectors)
    if count is None:
        return None
    for name, column in (("ids", ids), ("payload", payload)):
        if column is not None and _sized(column) and len(column) < count:
            return f"{name} has {len(column)} items for {count} vectors"
    return None


def unchecked(cls: type[_Model]) -> Callable[..., _Model]:
    """A constructor of ``cls`` from every one of its fields, unvalidated: what ``model_construct`` makes
    when every field is given, without its per-field work (about 1 µs against 3.6 for a point, which the
    wrapper pays for every point it writes). Checked once against ``model_construct``; where this pydantic
    builds models otherwise, it is ``model_construct`` itself.

    Only for values already validated (the routed vectors of a write, plain data of the caller's).
    """
    order = tuple(cls.model_fields)
    new, assign = object.__new__, object.__setattr__

    def build(**fields: Any) -> _Model:
        model = new(cls)
        assign(model, "__dict__", {name: fields[name] for name in order})
        assign(model, "__pydantic_fields_set__", set(order))
        assign(model, "__pydantic_extra__", None)
        assign(model, "__pydantic_private__", None)
        return model

    sample: dict[str, Any] = {name: [index] for index, name in enumerate(order)}
    try:
        made, expected = build(**sample), cls.model_construct(**sample)
        same = (
            made.__dict__ == expected.__dict__
            and list(made.__dict__) == list(expected.__dict__)
            and made.model_fields_set == expected.model_fields_set
            and made.__pydantic_extra__ == expected.__pydantic_extra__
            and made.__pydantic_private__ == expected.__pydantic_private__
            and made == expected
        )
    except Exception:  # any difference in how this pydantic builds models
        same = False
    return build if same else cls.model_construct


#: points and point vectors of a write, built from validated values (see :func:`unchecked`)
point_struct = unchecked(models.PointStruct)
point_vectors = unchecked(models.PointVectors)


def upload_rows(vectors: Any, payload: Iterable[Any] | None, ids: Iterable[Any] | None) -> Iterator[Any]:
    """``upload_collection``'s columns as points, one at a time (read lazily, as qdrant-client does).

    ``vectors`` is an iterable of vector values (lists, dicts of named vectors, ``models.Document``), a
    2-d array, or a dict of vector name -> 2-d array (or list of vectors); ``ids`` default to random UUIDs
    (qdrant-client's ``uuid4``), payloads to none. The points are built unchecked
    (:func:`unchecked`): the routing validates them and reports each bad one.
    """
    rows: Iterable[Any]
    if isinstance(vectors, dict):
        count = _length(vectors) or 0
        rows = ({name: _plain(column[i]) for name, column in vectors.items()} for i in range(count))
    else:
        rows = (_plain(row) for row in vectors)
    id_column: Iterable[Any] = (
        (str(uuid.uuid4()) for _ in itertools.count())
        if ids is None
        else (str(pid) if isinstance(pid, uuid.UUID) else pid for pid in ids)
    )
    payloads: Iterable[Any] = itertools.repeat(None) if payload is None else payload
    for pid, vector, body in zip(id_column, rows, payloads, strict=False):
        yield point_struct(id=pid, vector=vector if vector is not None else {}, payload=body or {})


def upload_structs(points: Iterable[Any]) -> Iterator[Any]:
    """``upload_points``' points (``PointStruct`` or ``Record``) as points to upsert, one at a time."""
    for point in points:
        if isinstance(point, models.PointStruct):
            yield point
        else:
            yield point_struct(id=point.id, vector=_plain(point.vector) or {}, payload=point.payload or {})


# --------------------------------------------------------------------------- batch_update_points


def single_call(operation: Any) -> tuple[str, dict[str, Any]] | str:
    """An operation of ``batch_update_points`` as its single-call twin: ``(method, arguments by
    parameter name)``, or the problem with it (an operation the wrapper does not know).

    A payload operation's ``points`` win over its ``filter`` (a server ignores the filter when points
    are given).
    """
    if isinstance(operation, models.UpsertOperation):
        found = operation.upsert
        points: Any = found.batch if isinstance(found, models.PointsBatch) else found.points
        return "upsert", {
            "points": points,
            "shard_key_selector": found.shard_key,
            "update_filter": found.update_filter,
            "update_mode": found.update_mode,
        }
    if isinstance(operation, models.DeleteOperation):
        return "delete", {"points_selector": operation.delete}
    if isinstance(operation, models.ClearPayloadOperation):
        return "clear_payload", {"points_selector": operation.clear_payload}
    if isinstance(operation, models.UpdateVectorsOperation):
        update = operation.update_vectors
        return "update_vectors", {
            "points": update.points,
            "shard_key_selector": update.shard_key,
            "update_filter": update.update_filter,
        }
    body: Any
    if isinstance(operation, models.SetPayloadOperation | models.OverwritePayloadOperation):
        overwrite = isinstance(operation, models.OverwritePayloadOperation)
        body = operation.overwrite_payload if overwrite else operation.set_payload  # type: ignore[union-attr]
        selector = body.points if body.points is not None else body.filter
        if selector is None:
            return "a payload operation selects no points (give points or filter)"
        arguments = {"payload": body.payload, "points": selector, "shard_key_selector": body.shard_key}
        if overwrite:
            if body.key is not None:
                return "an overwrite_payload operation with a key is not supported; use set_payload with key"
            return "overwrite_payload", arguments
        return "set_payload", {**arguments, "key": body.key}
    if isinstance(operation, models.DeletePayloadOperation):
        body = operation.delete_payload
        selector = body.points if body.points is not None else body.filter
        if selector is None:
            return "a delete_payload operation selects no points (give points or filter)"
        return "delete_payload", {"keys": body.keys, "points": selector, "shard_key_selector": body.shard_key}
    if isinstance(operation, models.DeleteVectorsOperation):
        body = operation.delete_vectors
        selector = body.points if body.points is not None else body.filter
        if selector is None:
            return "a delete_vectors operation selects no points (give points or filter)"
        return "delete_vectors", {
            "vectors": body.vector,
            "points": selector,
            "shard_key_selector": body.shard_key,
        }
    return f"unsupported operation {type(operation).__name__}"


# --------------------------------------------------------------------------- query_batch_points

#: ``QueryRequest`` fields and the ``query_points`` parameters they are.
_REQUEST_FIELDS: dict[str, str] = {
    "shard_key": "shard_key_selector",
    "prefetch": "prefetch",
    "query": "query",
    "using": "using",
    "filter": "query_filter",
    "params": "search_params",
    "score_threshold": "score_threshold",
    "limit": "limit",
    "offset": "offset",
    "with_vector": "with_vectors",
    "with_payload": "with_payload",
    "lookup_from": "lookup_from",
}


def request_options(request: models.QueryRequest) -> dict[str, Any]:
    """A ``QueryRequest`` as ``query_points`` arguments (the fields it sets)."""
    return {
        _REQUEST_FIELDS[name]: getattr(request, name)
        for name in _REQUEST_FIELDS
        if getattr(request, name) is not None
    }


def as_request(options: Mapping[str, Any]) -> models.QueryRequest:
    """``query_points`` arguments as a ``QueryRequest`` (the inverse of :func:`request_options`).

    Raises:
        VectorValidationError: an argument a ``QueryRequest`` has no field for.
    """
    fields = {parameter: name for name, parameter in _REQUEST_FIELDS.items()}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise VectorValidationError([(None, f"a QueryRequest has no field for {', '.join(unknown)}")])
    return models.QueryRequest(**{fields[k]: v for k, v in options.items()})


# --------------------------------------------------------------------------- payload writes


@dataclass(frozen=True)
class TextChange:
    """A payload write that changes the plan's text field: the new text, ``None`` when it removes it (or
    makes it something other than a string)."""

    text: str | None

    @property
    def embeddable(self) -> bool:
        """Whether the new text can be embedded (a string with something in it)."""
        return not blank(self.text)


def text_change(
    method: str,
    text_field: str,
    *,
    payload: Mapping[str, Any] | None = None,
    key: str | None = None,
    keys: Sequence[str] = (),
) -> TextChange | None:
    """Whether a payload write (``set_payload``, ``overwrite_payload``, ``delete_payload``,
    ``clear_payload``) changes the text field, and to what; ``None``: it leaves it alone."""

    def inside(path: str) -> bool:
        return path == text_field or path.startswith((f"{text_field}.", f"{text_field}["))

    if method == "clear_payload":
        return TextChange(None)
    if method == "delete_payload":
        return TextChange(None) if any(inside(k) for k in keys) else None
    payload = payload or {}
    if method == "overwrite_payload":
        value = payload.get(text_field)
        return TextChange(value if isinstance(value, str) else None)
    if key is not None:  # the payload goes under ``key``: the text becomes an object if it is the text's
        return TextChange(None) if inside(key) else None
    if text_field not in payload:
        return None
    value = payload[text_field]
    return TextChange(value if isinstance(value, str) else None)


def selected(points: Any) -> tuple[list[Any] | None, models.Filter | None]:
    """A REST points selector as ``(ids, None)`` or ``(None, filter)``.

    Raises:
        VectorValidationError: it is neither ids nor a filter.
    """
    if isinstance(points, models.PointIdsList):
        return list(points.points), None
    if isinstance(points, models.FilterSelector):
        return None, points.filter
    if isinstance(points, models.Filter):
        return None, points
    if isinstance(points, Sequence) and not isinstance(points, str):
        return list(points), None
    raise VectorValidationError([(None, f"unsupported points selector of type {type(points).__name__}")])
