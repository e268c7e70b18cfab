"""The migration strategies, one class each, chosen once from the plan (as alembic picks one ``DefaultImpl``
per dialect).

:func:`strategy_for` returns the plan's strategy; :func:`strategy_class` the class of a :class:`Strategy`
(for what is asked before a plan exists). Nothing outside this package asks which strategy a plan has:
it asks the strategy. Where each one lives:

* :mod:`~lattice_qdrant.strategies.base`: the interface (:class:`MigrationStrategy`), the rows of the
  README's strategy table, with the defaults of a target vector that has a name of its own;
* :mod:`~lattice_qdrant.strategies.in_place`: a parallel named vector (:class:`InPlaceStrategy`);
* :mod:`~lattice_qdrant.strategies.blue_green`: a new collection and an alias (:class:`BlueGreenStrategy`;
  the copy and the alias switch are :mod:`lattice_qdrant.bluegreen`'s store operations);
* :mod:`~lattice_qdrant.strategies.reembed`: the source vector overwritten under its own name, the stamp
  telling the models apart (:class:`ReembedStrategy`).
"""

from __future__ import annotations

from ..plan import MigrationPlan, Strategy
from .base import MigrationStrategy, Stamp, VectorLayout, vector_bytes
from .blue_green import BlueGreenStrategy
from .in_place import InPlaceStrategy
from .reembed import ReembedStrategy, StampLayout

__all__ = [
    "BlueGreenStrategy",
    "InPlaceStrategy",
    "MigrationStrategy",
    "ReembedStrategy",
    "Stamp",
    "StampLayout",
    "VectorLayout",
    "strategy_class",
    "strategy_for",
    "vector_bytes",
]

_REGISTRY: dict[Strategy, type[MigrationStrategy]] = {
    cls.kind: cls for cls in (InPlaceStrategy, BlueGreenStrategy, ReembedStrategy)
}


def strategy_class(kind: Strategy | str) -> type[MigrationStrategy]:
    """The class implementing ``kind``.

    Raises:
        ValueError: ``kind`` is not a strategy.
    """
    return _REGISTRY[Strategy(kind)]


def strategy_for(plan: MigrationPlan) -> MigrationStrategy:
    """The strategy of ``plan``."""
    return strategy_class(plan.strategy)(plan)
