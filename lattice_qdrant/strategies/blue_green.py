"""Blue-green: a new collection holds the target vectors, and an alias moves at cutover (Qdrant 1.17+).

Which model a point holds is its collection; writes go to both collections (two upserts, not atomic
together); cutover moves the alias; finalize drops the source collection. The collection copy and the alias
switch are :mod:`lattice_qdrant.bluegreen`'s (store operations); this class decides when they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import bluegreen
from ..errors import MigrationError
from ..plan import Strategy
from ..routing import Coverage, Destination, MixedSearches, Role, Search
from ..state import WriteRoute
from ..store import Store
from .base import MigrationStrategy, VectorLayout

__all__ = ["BlueGreenStrategy"]


class BlueGreenStrategy(MigrationStrategy):
    """A new collection for the target model, and an alias switch."""

    kind = Strategy.BLUE_GREEN

    @property
    def data_collection(self) -> str:
        """The target collection."""
        return self.plan.target_collection or self.plan.collection

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """One upsert per collection (not atomic together): the source vector to the source collection,
        stamped with the source model, and the target vector (with the source vector, when the plan copies
        it) to the target collection, stamped with the target model."""
        plan = self.plan
        src, tgt = plan.source_vector, plan.target_vector
        out: list[Destination] = []
        if "source" in required:

            def old(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
                return {**extra, **({src: roles["source"]} if "source" in roles else {})}

            out.append(Destination(plan.collection, old, plan.source))
        if "target" in required:

            def new(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
                vectors = {tgt: roles["target"]} if "target" in roles else {}
                if plan.copy_source_vector and "source" in roles:
                    vectors[src] = roles["source"]
                return vectors

            out.append(Destination(self.data_collection, new, plan.target))
        return out

    def forwards(self, write: WriteRoute) -> tuple[str, ...] | None:
        """Deletes and payload changes reach the collections writes go to: both while writes are dual."""
        plan = self.plan
        return {
            WriteRoute.LEGACY: (plan.collection,),
            WriteRoute.DUAL_WRITE: (plan.collection, self.data_collection),
            WriteRoute.TARGET: (self.data_collection,),
        }[write]

    def _queried(self, collection_name: str, role: Role) -> str:
        """The physical collection of the model: the wrapper never depends on the alias."""
        return self.data_collection if role == "target" else self.plan.collection

    def mixed_searches(self, query_filter: Any) -> MixedSearches:
        """The source search runs on the source collection (which has no target vector), the target
        search on the target collection; the source's candidates get their target vectors from there."""
        found = super().mixed_searches(query_filter)
        plan = self.plan
        return MixedSearches(
            source=Search(plan.collection, plan.source_vector or None, query_filter, False),
            target=found.target,
            target_vector=found.target_vector,
            fetch_from=self.data_collection,
        )

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """The source collection holds the source vector (the target vectors live in the target
        collection, even under the same name); its stamps only name models."""
        plan = self.plan
        if plan.source_vector not in existing:
            return None
        return VectorLayout({plan.source_vector: plan.source}, text_field)

    def coverage(self, store: Store) -> Coverage:
        """Points of the source collection holding the target vector in the target collection (after
        finalize the source collection is gone, and the target one is the collection)."""
        plan, data = self.plan, self.data_collection
        total = store.count(plan.collection if store.collection_exists(plan.collection) else data)
        covered = store.coverage(data, plan.target_vector).covered if store.collection_exists(data) else 0
        return Coverage(covered=min(covered, total), total=total)

    def check_backfill(self, store: Store) -> None:
        """Refuse a backfill before the copy into the target collection is complete.

        Raises:
            MigrationError: the copy is not complete (run ``start`` again to finish it).
        """
        if not bluegreen.copy_complete(store, self.plan):
            raise MigrationError(
                f"cannot backfill {self.plan.collection!r}: the copy into {self.data_collection!r} is not "
                "complete; run start again to finish it"
            )
