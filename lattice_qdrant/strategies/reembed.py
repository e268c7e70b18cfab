"""Re-embed: the target vectors overwrite the source vectors under the same name, point by point.

For a model change that keeps the shape (dimension and distance) where a second vector is impossible or
unwanted (a server older than 1.18, the unnamed vector, no room). **Which model a point holds is its payload
stamp** (``embedding_model_id`` / ``embedding_version``): a point holds the target exactly when it is
stamped with the target; anything else, unstamped legacy points included, holds the source. Every answer
of the strategy table follows from that: the work and coverage count by the stamp, the target write puts
vector and stamp together, queries are restricted by the stamp, and the only way back is the backup made at
start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from ..errors import VectorValidationError
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
    route,
)
from ..spec import ModelSpec
from ..state import QueryRoute, Status
from ..store import Store, stamp_filter
from .base import MigrationStrategy, Stamp, VectorLayout, same_model

__all__ = ["ReembedStrategy", "StampLayout"]


@dataclass(frozen=True)
class StampLayout(VectorLayout):
    """``verify``'s layout of a re-embed: one vector name, and the stamp says which model it holds."""

    reembed: MigrationPlan | None = None

    @property
    def stamps_checked(self) -> bool:
        """The stamp is what says which model the shared vector holds: nothing to compare it with."""
        return False

    def model_of(self, name: str, stamp: Stamp) -> ModelSpec:
        """The target model for a point stamped with it, the source model otherwise."""
        plan = self._plan
        kind, value = stamp
        held = kind == "known" and isinstance(value, ModelSpec) and same_model(value, plan.target)
        return plan.target if held else plan.source

    def expected_stamp(self, present: Iterable[str]) -> ModelSpec | None:
        """Only its stamp tells which model last wrote a point."""
        return None

    def suspect(self, spec: ModelSpec, stamp: Stamp) -> ModelSpec | None:
        """The plan's other model (a write cut off between vector and stamp)."""
        plan = self._plan
        return plan.source if same_model(spec, plan.target) else plan.target

    @property
    def _plan(self) -> MigrationPlan:
        if self.reembed is None:  # pragma: no cover - built by ReembedStrategy.layout with its plan
            raise TypeError("a StampLayout needs its re-embed plan")
        return self.reembed


class ReembedStrategy(MigrationStrategy):
    """The source vector overwritten by the target model under its own name, after a backup."""

    kind = Strategy.REEMBED

    def _holds_target(self) -> models.Condition:
        """Stamped with the target model."""
        return self.done()

    def done(self) -> models.Filter:
        """The points stamped with the target model."""
        target = self.plan.target
        return stamp_filter(target.model_id, target.version)

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """One name: the target's vector once writes reach it (the source's went to the backup first,
        :meth:`source_entries`), else the source's; the stamp says which, and an ``update_vectors`` carries
        it in the same request. The unnamed vector is written as a plain list."""
        plan = self.plan
        src = plan.source_vector
        role: Role = "target" if "target" in required else "source"

        def shared(roles: dict[str, list[float]], extra: dict[str, Any]) -> Any:
            vector = roles.get(role)
            if vector is None:
                return dict(extra)
            return vector if src == "" else {**extra, src: vector}

        stamp = plan.target if role == "target" else plan.source
        return [Destination(collection_name, shared, stamp, stamp_with_vectors=True)]

    def ambiguity(self) -> str | None:
        """Both models have the same dimension: a plain vector could be either's."""
        plan = self.plan
        return (
            f"a plain vector is ambiguous while a re-embed writes both models under {plan.source_vector!r} "
            f"(both are {plan.source.dimension}-d): give a models.Document, or leave the vector out and put "
            f"the text in the payload field {plan.text_field!r}, so each model embeds it"
        )

    def source_entries(
        self,
        ids: Sequence[Any],
        roles: Sequence[dict[str, list[float]]],
        texts: Sequence[Any],
        required: tuple[Role, ...],
    ) -> dict[Any, tuple[list[float], str | None, tuple[str, int]]] | None:
        """A dual-write keeps only the target vector under the shared name: the source vector goes into
        the migration's backup first, as the point's entry, so a restore gives it back."""
        if len(required) < 2:
            return None
        source = self.plan.source
        return {
            pid: (role["source"], text if isinstance(text, str) else None, (source.model_id, source.version))
            for pid, role, text in zip(ids, roles, texts, strict=True)
            if "source" in role
        }

    def query_needs_coverage(self, snap: Snapshot, using: str | None) -> bool:
        """Coverage decides the query from start until finalize (it is read from the stamps)."""
        if using is not None and using != self.plan.source_vector:
            return False
        return not (snap.state.finalized or snap.state.status == Status.PLANNED)

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
        """Never compares a query of one model with a vector of the other: the stamp says which model a
        point's vector holds.

        A text query over partial coverage is mixed (both versions' candidates, scored in the target
        space), whatever the plan's ``query_mode``; at coverage 0 it searches the source-holding points with
        the source embedding, at 100% the target-holding ones with the target embedding. A vector (or
        ``mode="routed"``) searches only the points holding the model the routing says. Before start every
        point holds the source, after finalize the target: plain queries.

        Raises:
            VectorValidationError: mixed mode asked for with a vector.
        """
        plan, state = snap.plan, snap.state
        name = plan.source_vector
        if using is not None and using != name:
            return PassThrough(collection_name, using)
        if state.finalized or state.status == Status.PLANNED:
            return RoutedQuery(collection_name, name, "target" if state.finalized else "source")
        if mode == "mixed" and not textual:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        cov = coverage if coverage is not None else Coverage(covered=0, total=0)
        if textual and mode != "routed":
            if 0 < cov.covered < cov.total:
                return MixedQuery()
            target_side = cov.total > 0 and cov.covered >= cov.total
            if cov.total == 0:
                target_side = route(snap, 1.0).query == QueryRoute.TARGET
        else:
            target_side = route(snap, cov.fraction).query == QueryRoute.TARGET
        role: Role = "target" if target_side else "source"
        return self.side(role)

    def side(self, role: Role) -> RoutedQuery:
        """The points stamped with the target, or the others, under the one name."""
        plan = self.plan
        restriction = self.done() if role == "target" else self.todo()
        return RoutedQuery(plan.collection, plan.source_vector, role, restriction)

    def mixed_searches(self, query_filter: Any) -> MixedSearches:
        """Both searches over the one name, each restricted by the stamp to the points holding its model
        (and the caller's filter); only the target search's hits hold target vectors."""
        plan = self.plan
        name = plan.source_vector

        def restricted(version: Any) -> Any:
            return version if query_filter is None else models.Filter(must=[query_filter, version])

        return MixedSearches(
            source=Search(plan.collection, name, restricted(self.todo()), False),
            target=Search(plan.collection, name, restricted(self.done()), [name] if name else True),
            target_vector=name,
            vectors_from=("target",),
        )

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """The shared vector, checked against the model each point's stamp names."""
        plan = self.plan
        if plan.source_vector not in existing:
            return None
        return StampLayout({plan.source_vector: plan.target}, text_field, reembed=plan)

    def coverage(self, store: Store) -> Coverage:
        """Points stamped with the target model (its vectors share one name with the source's)."""
        total = store.count(self.plan.collection)
        covered = store.count(self.plan.collection, self.done())
        return Coverage(covered=min(covered, total), total=total)

    def bytes_per_point(self) -> int:
        """None: the target overwrites the source in place (its backup was made at start)."""
        return 0

    def write_target(self, store: Store, pending: Mapping[Any, tuple[str, NDArray[np.float32]]]) -> list[Any]:
        """Overwrite vector and stamp together (:meth:`~lattice_qdrant.store.Store.write_stamped`: one
        request on a server), on points still holding their text and not yet the target.

        "Lacks the target vector" is "not stamped with the target model". A run killed between the vector
        and the stamp leaves a point with the new vector and the old stamp: it is still selected as to do,
        and the next run writes it again.
        """
        plan, target = self.plan, self.plan.target
        return store.write_stamped(
            self.data_collection,
            plan.target_vector,
            plan.text_field,
            pending,
            (target.model_id, target.version),
            distance=target.distance,
            unless=self.done(),
        )

    def repair_stamps(self, store: Store) -> None:
        """None needed: the stamp is what selects the work, so a point cut off is done again."""
