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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from ..plan import MigrationPlan, Strategy
from ..spec import ModelSpec
from ..store import Coverage, Store, stamp_filter
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
