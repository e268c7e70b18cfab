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
from ..store import Coverage, Store
from .base import MigrationStrategy, VectorLayout

__all__ = ["BlueGreenStrategy"]


class BlueGreenStrategy(MigrationStrategy):
    """A new collection for the target model, and an alias switch."""

    kind = Strategy.BLUE_GREEN

    @property
    def data_collection(self) -> str:
        """The target collection."""
        return self.plan.target_collection or self.plan.collection

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
