"""In place: the target model becomes a parallel named vector in the same collection (Qdrant 1.18+).

Which model a point holds is its vector name; a dual-write is one upsert with both vectors (atomic per
point); cutover switches the wrapper's ``using``; finalize drops the source named vector; the way back is a
rollback while the source vector is kept up to date. The defaults of :class:`~.base.MigrationStrategy` are
this strategy's; this class adds what only in place does.
"""

from __future__ import annotations

from ..plan import Strategy
from .base import MigrationStrategy

__all__ = ["InPlaceStrategy"]


class InPlaceStrategy(MigrationStrategy):
    """A parallel named vector in the same collection."""

    kind = Strategy.IN_PLACE
