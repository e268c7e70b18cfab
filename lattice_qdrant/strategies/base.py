"""The strategy interface: one class per way of storing the target vectors, chosen once from the plan.

The rows of the README's strategy table ("Choosing a strategy") are the methods of
:class:`MigrationStrategy`: where the target vectors go (:attr:`~MigrationStrategy.data_collection`), which
model a point holds (:meth:`~MigrationStrategy.done` / :meth:`~MigrationStrategy.todo`, and for ``verify``
:meth:`~MigrationStrategy.layout`), what the target vectors cost (:meth:`~MigrationStrategy.bytes_per_point`),
how coverage is counted, and how the target vectors are written (:meth:`~MigrationStrategy.write_target`,
used by the backfill and by mixed mode's read-repair). The rest of the package asks the strategy
(``Migration.strategy``) instead of testing the plan's flags.

The methods here are the defaults of a target vector with a name of its own (in place, blue-green); the
re-embed, which overwrites the source vector under its own name, overrides them. This module may touch the
store (coverage counts, the target write); what it decides without I/O takes no store.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from ..plan import MigrationPlan, Strategy
from ..routing import (
    Coverage,
    Destination,
    MixedQuery,
    MixedSearches,
    PassThrough,
    QueryPlan,
    Role,
    RoutedQuery,
    Search,
    Snapshot,
    needs_coverage,
    route,
)
from ..spec import ModelSpec
from ..state import QueryRoute, WriteRoute
from ..store import MODEL_FIELD, VERSION_FIELD, Store, stamp_filter, stored_as_written

__all__ = ["MigrationStrategy", "Stamp", "VectorLayout", "same_model", "vector_bytes"]

Stamp = tuple[str, ModelSpec | str | None]
"""A point's model stamp as ``verify`` reads it: ``("none", None)``, ``("known", spec)`` or
``("unknown", "model_id:vN")``."""


def vector_bytes(dimension: int) -> int:
    """Storage one point's vector takes: float32 values, plus about ``2*m`` links of 4 bytes in the HNSW
    graph (``m=16`` by default)."""
    return dimension * 4 + 2 * 16 * 4


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs are the same model (id and version)."""
    return (a.model_id, a.version) == (b.model_id, b.version)


@dataclass(frozen=True)
class VectorLayout:
    """Which model each checked vector holds, and which model a point should be stamped with (``verify``).

    This is the layout of vectors that say by their name which model they hold: ``vectors`` maps each
    checked name to its model; with ``plan`` (in place), which vectors a point holds also tells what its
    stamp should be.
    """

    vectors: dict[str, ModelSpec]
    text_field: str
    plan: MigrationPlan | None = field(default=None)

    @property
    def stamps_checked(self) -> bool:
        """Whether a stamp can disagree with the vectors a point holds (it cannot where it alone tells)."""
        return True

    def model_of(self, name: str, stamp: Stamp) -> ModelSpec:
        """The model vector ``name`` of a point stamped ``stamp`` should hold."""
        return self.vectors[name]

    def expected_stamp(self, present: Iterable[str]) -> ModelSpec | None:
        """The model that last wrote a point holding the vectors ``present``, when it can be told."""
        held = [name for name in self.vectors if name in set(present)]
        if self.plan is not None:
            if self.plan.target_vector in held:
                return self.plan.target
            if self.plan.source_vector in held:
                return self.plan.source
            return None
        return self.vectors[held[0]] if len(held) == 1 else None

    def vectors_of(self, model_id: str, version: int) -> list[str]:
        """The checked vectors holding that model."""
        return [n for n, s in self.vectors.items() if (s.model_id, s.version) == (model_id, version)]

    def suspect(self, spec: ModelSpec, stamp: Stamp) -> ModelSpec | None:
        """The model a vector that is not ``spec``'s embedding may hold instead (``mixed_spaces``): the one
        its stamp names, when registered, another model and of the same dimension."""
        kind, other = stamp
        if (
            kind == "known"
            and isinstance(other, ModelSpec)
            and not same_model(other, spec)
            and other.dimension == spec.dimension
        ):
            return other
        return None


class MigrationStrategy(ABC):
    """How a plan stores its target vectors; :func:`~lattice_qdrant.strategies.strategy_for` picks one.

    Args:
        plan: the migration plan (its ``strategy`` is this class's :attr:`kind`).
    """

    #: the plan's strategy this class implements
    kind: ClassVar[Strategy]

    def __init__(self, plan: MigrationPlan) -> None:
        self.plan = plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.plan.collection!r})"

    # ----------------------------------------------------------------- where the target vectors go

    @property
    def data_collection(self) -> str:
        """The collection holding the target vectors (the backfill's collection)."""
        return self.plan.collection

    # ----------------------------------------------------------------- which model a point holds

    def done(self) -> models.Filter:
        """The points of :attr:`data_collection` that hold the target model."""
        return models.Filter(must=[self._holds_target()])

    def todo(self, also: Sequence[models.Condition] = ()) -> models.Filter:
        """The points of :attr:`data_collection` still to do (not holding the target), and matching
        ``also``: the backfill's work, read in id order."""
        return models.Filter(must=list(also) or None, must_not=[self._holds_target()])

    def _holds_target(self) -> models.Condition:
        """The condition "holds the target model": here, having the target vector."""
        return models.HasVectorCondition(has_vector=self.plan.target_vector)

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """Which model each vector of the collection holds, for ``verify`` (``existing``: the collection's
        vectors by name); ``None`` when it holds neither of the plan's vectors."""
        plan = self.plan
        mapped = {plan.source_vector: plan.source, plan.target_vector: plan.target}
        vectors = {name: spec for name, spec in mapped.items() if name in existing}
        return VectorLayout(vectors, text_field, plan) if vectors else None

    # ----------------------------------------------------------------- where writes go

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """Where a routed write of the roles ``required`` goes (pure): here, one upsert with both named
        vectors into the collection written to (an upsert replaces the whole point), stamped with the
        newest model written."""
        plan = self.plan
        names = {"source": plan.source_vector, "target": plan.target_vector}

        def both(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
            return {**extra, **{names[r]: v for r, v in roles.items()}}

        return [Destination(collection_name, both, plan.target if "target" in required else plan.source)]

    def forwards(self, write: WriteRoute) -> tuple[str, ...] | None:
        """The collections a delete or payload change reaches under ``write`` (pure); ``None``: the
        collection named, unchanged (one collection holds both models)."""
        return None

    def ambiguity(self) -> str | None:
        """The problem to report for a plain vector that could be either model's (``None``: the default
        wording, naming the vectors)."""
        return None

    def source_entries(
        self,
        ids: Sequence[Any],
        roles: Sequence[dict[str, list[float]]],
        texts: Sequence[Any],
        required: tuple[Role, ...],
    ) -> dict[Any, tuple[list[float], str | None, tuple[str, int]]] | None:
        """The backup entries a write must record before it is written (pure): ``{id: (source vector,
        text, (model_id, version))}``, or ``None`` when the source vectors stay in the collection (here:
        the target vector has a name of its own)."""
        return None

    # ----------------------------------------------------------------- how queries run

    def query_needs_coverage(self, snap: Snapshot, using: str | None) -> bool:
        """Whether :meth:`query_plan` needs a coverage reading for ``snap`` (pure)."""
        return needs_coverage(snap)

    def query_plan(
        self,
        snap: Snapshot,
        coverage: Coverage | None,
        collection_name: str,
        *,
        textual: bool,
        mode: Literal["routed", "mixed"] | None,
        using: str | None,
    ) -> QueryPlan:
        """How a query on ``collection_name`` runs (pure), from the snapshot and the coverage reading
        (``None`` when :meth:`query_needs_coverage` said none is needed).

        ``textual``: the query is text (a ``models.Document``); ``mode``: what the caller asked
        (``None``: the plan's ``query_mode``); ``using``: a vector name the caller chose.

        Here: mixed while writes are dual and queries routed to the source, for text (or when asked for:
        a vector then is refused by the executor); otherwise the vector the routing (or ``using``) names.
        """
        plan = snap.plan
        routing = route(snap, coverage.fraction if coverage is not None else 0.0)
        chosen = mode or plan.query_mode
        # A vector query cannot be mixed (it is in one model's space): by the plan's default it is routed;
        # asked for explicitly, mixed mode refuses it.
        if (
            chosen == "mixed"
            and (textual or mode == "mixed")
            and using is None
            and routing.write == WriteRoute.DUAL_WRITE
            and routing.query == QueryRoute.SOURCE
        ):
            return MixedQuery()
        name = using if using is not None else routing.query_vector
        target_side = routing.query == QueryRoute.TARGET if using is None else name == plan.target_vector
        if using is not None and plan.source_vector == plan.target_vector:
            target_side = routing.query == QueryRoute.TARGET  # same name in both: follow the routing
        if name not in (plan.source_vector, plan.target_vector):
            return PassThrough(collection_name, name)
        role: Role = "target" if target_side else "source"
        return RoutedQuery(self._queried(collection_name, role), name, role)

    def _queried(self, collection_name: str, role: Role) -> str:
        """The collection a query embedded with ``role``'s model searches: the one named, here."""
        return collection_name

    def side(self, role: Role) -> RoutedQuery:
        """A search of only the points holding ``role``'s model, whatever the routing (pure): what shadow
        comparison compares."""
        plan = self.plan
        if role == "target":
            return RoutedQuery(self.data_collection, plan.target_vector, role)
        return RoutedQuery(plan.collection, plan.source_vector, role)

    def mixed_searches(self, query_filter: models.Filter | None) -> MixedSearches:
        """The two searches of a mixed query (pure): here both in the collection, each fetching the
        candidates' target vectors."""
        plan = self.plan
        vectors: bool | list[str] = [plan.target_vector] if plan.target_vector else True
        return MixedSearches(
            source=Search(plan.collection, plan.source_vector or None, query_filter, vectors),
            target=Search(self.data_collection, plan.target_vector or None, query_filter, vectors),
            target_vector=plan.target_vector,
        )

    # ----------------------------------------------------------------- coverage and cost

    def coverage(self, store: Store) -> Coverage:
        """Points holding the target model, counted from the data now (read-only)."""
        return store.coverage(self.plan.collection, self.plan.target_vector)

    def bytes_per_point(self) -> int:
        """Storage the target model adds to the collection per point (the dry run's estimate)."""
        return vector_bytes(self.plan.target.dimension)

    # ----------------------------------------------------------------- the target write

    def check_backfill(self, store: Store) -> None:
        """Refuse a backfill the collection is not ready for (read-only); nothing to check here.

        Raises:
            MigrationError: the collection is not ready (the message says what to run).
        """
        return None

    def write_target(self, store: Store, pending: Mapping[Any, tuple[str, NDArray[np.float32]]]) -> list[Any]:
        """Write target vectors without ever overwriting a fresher one; return the ids written.

        Each point is written only if it still lacks the target vector and still holds the text its vector
        was embedded from (:meth:`~lattice_qdrant.store.Store.update_if_unchanged`), so a write the
        application made meanwhile wins. The points holding the target vector afterwards are stamped with
        the target model. Used by the backfill and by mixed mode's read-repair.
        """
        plan, collection = self.plan, self.data_collection
        ids = store.update_if_unchanged(
            collection,
            plan.text_field,
            {pid: (text, {plan.target_vector: vector}) for pid, (text, vector) in pending.items()},
            lacking=plan.target_vector,
        )
        if not ids:
            return []
        # Stamp the model on the points that now hold the target vector (ours, or the application's).
        # Selecting them by id keeps this O(batch) on every backend; a filter would scan in local mode.
        records = store.retrieve(collection, ids, with_payload=False, with_vectors=[plan.target_vector])
        stored: dict[Any, Any] = {
            r.id: r.vector[plan.target_vector]
            for r in records
            if isinstance(r.vector, dict) and plan.target_vector in r.vector
        }
        if stored:
            store.set_payload(
                collection,
                {MODEL_FIELD: plan.target.model_id, VERSION_FIELD: plan.target.version},
                list(stored),
            )
        # Ours took effect where the stored vector is the one we wrote (as a server stores it).
        distance = plan.target.distance
        return [
            pid for pid in ids if pid in stored and stored_as_written(stored[pid], pending[pid][1], distance)
        ]

    def repair_stamps(self, store: Store) -> None:
        """Stamp the target model on points holding the target vector but not the stamp.

        The stamp is a second write after the vector; a run killed in between leaves a point with the
        vector and an old stamp, which no later run would otherwise read again (it has the vector).

        Raises:
            StoreError: the write failed.
        """
        target = self.plan.target
        store.set_payload(
            self.data_collection,
            {MODEL_FIELD: target.model_id, VERSION_FIELD: target.version},
            models.Filter(
                must=[self._holds_target()], must_not=[stamp_filter(target.model_id, target.version)]
            ),
        )
