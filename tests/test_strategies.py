"""The strategy classes: one per plan strategy, chosen once, answering the rows of the strategy table.

What a strategy decides without I/O is tested here on plans alone; what it does against Qdrant is tested
through the lifecycle, the backfill, the wrapper and verify, in their own test files.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

import lattice_qdrant
from lattice_qdrant import strategies
from lattice_qdrant.plan import MigrationPlan, Strategy
from lattice_qdrant.spec import ModelSpec
from lattice_qdrant.store import stamp_filter

OLD = ModelSpec(model_id="old", version=1, dimension=8, distance="Cosine", name="hash:bow")
NEW = ModelSpec(model_id="new", version=1, dimension=8, distance="Cosine", name="hash:bow:2")
WIDE = ModelSpec(model_id="wide", version=1, dimension=16, distance="Dot", name="hash:bow:3")


def plan_of(strategy: Strategy, **extra: Any) -> MigrationPlan:
    fields: dict[str, Any] = {
        Strategy.IN_PLACE: {"target": WIDE, "target_vector": "wide-v1"},
        Strategy.BLUE_GREEN: {"target": WIDE, "target_vector": "src", "target_collection": "docs__wide"},
        Strategy.REEMBED: {"target": NEW, "target_vector": "src"},
    }[strategy]
    return MigrationPlan(
        collection="docs", source=OLD, source_vector="src", strategy=strategy, **(fields | extra)
    )


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        (Strategy.IN_PLACE, strategies.InPlaceStrategy),
        (Strategy.BLUE_GREEN, strategies.BlueGreenStrategy),
        (Strategy.REEMBED, strategies.ReembedStrategy),
    ],
)
def test_each_plan_strategy_has_its_class(kind: Strategy, cls: type[strategies.MigrationStrategy]) -> None:
    chosen = strategies.strategy_for(plan_of(kind))
    assert type(chosen) is cls and chosen.kind == kind
    assert strategies.strategy_class(kind.value) is cls
    assert chosen.plan == plan_of(kind).model_copy(update={"created_at": chosen.plan.created_at})


def test_where_the_target_vectors_go() -> None:
    assert strategies.strategy_for(plan_of(Strategy.IN_PLACE)).data_collection == "docs"
    assert strategies.strategy_for(plan_of(Strategy.BLUE_GREEN)).data_collection == "docs__wide"
    assert strategies.strategy_for(plan_of(Strategy.REEMBED)).data_collection == "docs"


def test_which_model_a_point_holds_is_one_filter_for_done_and_one_for_to_do() -> None:
    extra = models.FieldCondition(key="tenant", match=models.MatchValue(value="acme"))
    named = strategies.strategy_for(plan_of(Strategy.IN_PLACE))
    has = models.HasVectorCondition(has_vector="wide-v1")
    assert named.done() == models.Filter(must=[has])
    assert named.todo() == models.Filter(must_not=[has])
    assert named.todo(also=[extra]) == models.Filter(must=[extra], must_not=[has])
    # a re-embed: the stamp, not the vector name, says it
    reembed = strategies.strategy_for(plan_of(Strategy.REEMBED))
    assert reembed.done() == stamp_filter("new", 1)
    assert reembed.todo(also=[extra]) == models.Filter(must=[extra], must_not=[stamp_filter("new", 1)])


def test_the_storage_a_target_vector_adds_per_point() -> None:
    assert strategies.strategy_for(plan_of(Strategy.IN_PLACE)).bytes_per_point() == 16 * 4 + 128
    assert strategies.strategy_for(plan_of(Strategy.BLUE_GREEN)).bytes_per_point() == 16 * 4 + 128
    assert strategies.strategy_for(plan_of(Strategy.REEMBED)).bytes_per_point() == 0


def test_verify_reads_which_model_a_vector_holds_from_the_strategy() -> None:
    existing = {"src": object(), "wide-v1": object()}
    in_place = strategies.strategy_for(plan_of(Strategy.IN_PLACE)).layout(existing, "text")
    assert in_place is not None and in_place.vectors == {"src": OLD, "wide-v1": WIDE}
    assert in_place.stamps_checked and in_place.expected_stamp(["wide-v1"]) == WIDE
    blue = strategies.strategy_for(plan_of(Strategy.BLUE_GREEN)).layout(existing, "text")
    # the target vectors live in the target collection, even under the source vector's name
    assert blue is not None and blue.vectors == {"src": OLD} and blue.expected_stamp(["src"]) == OLD
    shared = strategies.strategy_for(plan_of(Strategy.REEMBED)).layout(existing, "text")
    assert shared is not None and not shared.stamps_checked
    assert shared.model_of("src", ("known", NEW)) == NEW and shared.model_of("src", ("none", None)) == OLD
    assert shared.suspect(NEW, ("none", None)) == OLD and shared.suspect(OLD, ("none", None)) == NEW
    assert strategies.strategy_for(plan_of(Strategy.IN_PLACE)).layout({}, "text") is None


# --------------------------------------------------------------------------- nothing else branches on it

#: Strategy flag reads allowed outside ``lattice_qdrant/strategies/`` and ``plan.py`` (the plan's own
#: validation and the registry are where the strategy is chosen; everything else asks the strategy).
MAX_FLAG_READS = 2
STRATEGY_CLASSES = {"InPlaceStrategy", "BlueGreenStrategy", "ReembedStrategy"}


def flag_reads(source: str, where: str = "<source>") -> list[str]:
    """Where ``source`` branches on the plan's strategy: ``.reembed`` / ``.blue_green``, a ``Strategy``
    member, a comparison with a ``.strategy`` or a strategy's value, an ``isinstance`` of a strategy class."""
    members = {s.name for s in Strategy}
    values = {s.value for s in Strategy}
    found = []
    for node in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(node, ast.Attribute):
            hit = node.attr in ("reembed", "blue_green") or (
                isinstance(node.value, ast.Name) and node.value.id == "Strategy" and node.attr in members
            )
        elif isinstance(node, ast.Compare):
            hit = any(
                (isinstance(o, ast.Attribute) and o.attr == "strategy")
                or (isinstance(o, ast.Constant) and o.value in values)
                for o in [node.left, *node.comparators]
            )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
        ):
            hit = any(isinstance(n, ast.Name) and n.id in STRATEGY_CLASSES for n in ast.walk(node.args[-1]))
        if hit:
            found.append(f"{where}:{getattr(node, 'lineno', 0)}")
    return found


def test_nothing_outside_the_strategies_branches_on_the_plans_strategy() -> None:
    package = Path(lattice_qdrant.__file__).parent
    found = [
        read
        for path in sorted(package.rglob("*.py"))
        if "strategies" not in path.relative_to(package).parts and path.name != "plan.py"
        for read in flag_reads(path.read_text(), str(path.relative_to(package)))
    ]
    assert len(found) <= MAX_FLAG_READS, f"ask the strategy (lattice_qdrant.strategies) instead: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "if plan.reembed:\n    pass\n",
        "x = 0 if plan.blue_green else 1\n",
        "if plan.strategy == Strategy.IN_PLACE:\n    pass\n",
        "if report.strategy != 'reembed':\n    pass\n",
        "ok = isinstance(migration.strategy, ReembedStrategy)\n",
    ],
)
def test_the_count_sees_every_way_of_branching_on_the_strategy(source: str) -> None:
    assert flag_reads(source)
    assert flag_reads("judge = strategy_class(plan.strategy)\nstrategy.todo()\n") == []
