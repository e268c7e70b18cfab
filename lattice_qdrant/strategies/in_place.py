"""In place: the target model becomes a parallel named vector in the same collection (Qdrant 1.18+).

Which model a point holds is its vector name; a dual-write is one upsert with both vectors (atomic per
point); cutover switches the wrapper's ``using``; finalize drops the source named vector; the way back is a
rollback while the source vector is kept up to date. Most defaults of :class:`~.base.MigrationStrategy`
are this strategy's (a target vector with a name of its own); this class adds what only in place does:
the collection must take a new named vector.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..plan import Strategy
from ..routing import Snapshot
from ..state import MigrationState, Start
from ..store import IN_PLACE_MIN_VERSION, Store, VectorInfo
from .base import Finding, Lifecycle, MigrationStrategy

__all__ = ["InPlaceStrategy"]


class InPlaceStrategy(MigrationStrategy):
    """A parallel named vector in the same collection."""

    kind = Strategy.IN_PLACE
    min_server_version = IN_PLACE_MIN_VERSION

    def check_plan(self, store: Store) -> None:
        """The collection must take a parallel named vector
        (:meth:`~lattice_qdrant.store.Store.check_in_place`).

        Raises:
            InPlaceUnsupportedError: it cannot (the unnamed vector, a server older than 1.18); the message
                names the strategies that can.
        """
        store.check_in_place(self.plan.collection, self.plan.source_vector)

    def start(self, lifecycle: Lifecycle, snap: Snapshot) -> MigrationState:
        """Create the payload indexes and the target named vector (both idempotent, so a crash halfway is
        repaired by calling ``start`` again), then record the coverage counted from the data."""
        plan, store = self.plan, lifecycle.store
        store.check_in_place(plan.collection, plan.source_vector)
        store.ensure_payload_indexes(plan.collection)
        store.ensure_vector(plan.collection, plan.target_vector, plan.target)
        cov = lifecycle.coverage()
        return lifecycle.apply(Start(processed=cov.covered, total=cov.total))

    @classmethod
    def server_finding(cls, version: tuple[int, int, int]) -> tuple[str, str]:
        """A named vector is added to a live collection from 1.18 on."""
        verdict, detail = super().server_finding(version)
        if verdict != "ok":
            return verdict, detail
        found = ".".join(map(str, version))
        if version < cls.min_server_version:
            return "fail", (
                f"Qdrant {found} found, 1.18+ needed to add a named vector to a live collection: upgrade, or "
                "use the blue-green strategy"
            )
        return "ok", f"Qdrant {found} (in-place named vectors need 1.18+)"

    @classmethod
    def _upgrade_note(cls) -> str:
        return " (to 1.18+ for in place)"

    @classmethod
    def doctor_layout(cls, vectors: Mapping[str, VectorInfo]) -> list[Finding]:
        """A collection whose only vector is the unnamed one takes no parallel named vector."""
        if "" not in vectors:
            return []
        return [
            (
                "vectors",
                "fail",
                "the only vector is the unnamed default vector: in-place migration is refused; "
                "use the blue-green strategy, or the re-embed for a target of the same dimension and "
                "distance",
            )
        ]
