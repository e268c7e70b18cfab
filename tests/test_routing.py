"""Routing is decided without I/O: from a snapshot and a coverage reading, every strategy says where a
write's vectors go and how a query runs. No collection is opened here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, PrivateAttr
from qdrant_client import models

import lattice_qdrant as lq
from lattice_qdrant import routing
from lattice_qdrant.plan import MigrationPlan, Strategy
from lattice_qdrant.routing import (
    Coverage,
    MixedQuery,
    PassThrough,
    RoutedQuery,
    Snapshot,
    point_struct,
    point_vectors,
    unchecked,
)
from lattice_qdrant.spec import ModelSpec
from lattice_qdrant.state import MigrationState, Phase, QueryRoute, Status, WriteRoute
from lattice_qdrant.store import stamp_filter
from lattice_qdrant.strategies import strategy_for

OLD = ModelSpec(model_id="old", version=1, dimension=4, distance="Cosine", name="hash:bow")
NEW = ModelSpec(model_id="new", version=1, dimension=4, distance="Cosine", name="hash:bow:2")
WIDE = ModelSpec(model_id="wide", version=1, dimension=6, distance="Cosine", name="hash:bow:3")

PLANNED = MigrationState()
MIGRATING = MigrationState(status=Status.IN_PROGRESS, phase=Phase.MIGRATING, total=10)
WINDOW = MigrationState(status=Status.COMPLETED, phase=Phase.ROLLBACK_WINDOW, cutover_at=1.0)
ROLLED_BACK = MigrationState(status=Status.COMPLETED, phase=Phase.MIGRATING, rolled_back=True)
FINALIZED = MigrationState(status=Status.COMPLETED, phase=Phase.STABLE, cutover_at=1.0, finalized_at=2.0)


def snap(strategy: Strategy, state: MigrationState = MIGRATING, **extra: Any) -> Snapshot:
    fields: dict[str, Any] = {
        Strategy.IN_PLACE: {"target": WIDE, "target_vector": "wide"},
        Strategy.BLUE_GREEN: {"target": WIDE, "target_vector": "src", "target_collection": "docs__wide"},
        Strategy.REEMBED: {"target": NEW, "target_vector": "src"},
    }[strategy]
    plan = MigrationPlan(
        collection="docs", source=OLD, source_vector="src", strategy=strategy, **(fields | extra)
    )
    return Snapshot(plan=plan, state=state, epoch=1, record={})


def test_routes_follow_the_state_machine_with_the_plans_vector_names() -> None:
    assert routing.route(snap(Strategy.IN_PLACE, PLANNED), 0.0) == routing.Routing(
        WriteRoute.LEGACY, QueryRoute.SOURCE, "src", ("src",)
    )
    assert routing.route(snap(Strategy.IN_PLACE), 0.0).write_vectors == ("src", "wide")
    assert routing.route(snap(Strategy.IN_PLACE, WINDOW), 0.0).query_vector == "wide"
    assert routing.route(snap(Strategy.IN_PLACE, FINALIZED), 0.0).write == WriteRoute.TARGET
    assert routing.roles(WriteRoute.DUAL_WRITE) == ("source", "target")
    # coverage only matters with a query_threshold, while migrating and not pinned by a rollback
    assert not routing.needs_coverage(snap(Strategy.IN_PLACE))
    assert routing.needs_coverage(snap(Strategy.IN_PLACE, query_threshold=0.5))
    assert not routing.needs_coverage(snap(Strategy.IN_PLACE, ROLLED_BACK, query_threshold=0.5))
    assert routing.route(snap(Strategy.IN_PLACE, query_threshold=0.5), 0.6).query == QueryRoute.TARGET


def test_a_writes_vectors_are_split_by_role_and_checked() -> None:
    plan = snap(Strategy.IN_PLACE).plan
    both = ("source", "target")
    doc = models.Document(text="a cat", model="any")
    assert routing.split(doc, plan, both) == ({"source": doc, "target": doc}, {})
    assert routing.split([0.1] * 6, plan, both) == ({"target": [0.1] * 6}, {})  # told apart by dimension
    assert routing.split({"src": [1.0] * 4, "other": [2.0]}, plan, both) == (
        {"source": [1.0] * 4},
        {"other": [2.0]},
    )
    same = snap(Strategy.REEMBED).plan
    assert "ambiguous" in str(routing.split([0.1] * 4, same, both))
    assert routing.split([0.1] * 4, same, both, ambiguous="say which") == "say which"
    assert routing.check_vector([1.0, float("nan"), 0, 0, 0, 0], WIDE, "wide") == (
        "vector 'wide' has a non-finite value at index 1"
    )


def test_a_dict_of_named_vectors_splits_by_name() -> None:
    plan = snap(Strategy.IN_PLACE).plan
    value = {"src": [1.0] * 4, "wide": [2.0] * 6, "other": [3.0]}
    assert routing.split(value, plan, ("source", "target")) == (
        {"source": [1.0] * 4, "target": [2.0] * 6},
        {"other": [3.0]},
    )
    # a name no longer written (the source vector after finalize) is left out, not passed through
    assert routing.split(value, plan, ("target",)) == ({"target": [2.0] * 6}, {"other": [3.0]})


def test_a_snapshot_routes_once_per_coverage() -> None:
    migrating = snap(Strategy.IN_PLACE)
    assert routing.route(migrating, 0.0) is routing.route(migrating, 0.0)
    assert routing.route(migrating, 0.5) == routing.route(migrating, 0.0)
    assert routing.route(snap(Strategy.IN_PLACE, WINDOW), 0.0).query == QueryRoute.TARGET


def test_a_valid_list_of_floats_is_passed_on_as_given_not_copied() -> None:
    vector = [0.5, -1.0, 2.0, 0.0, 1e-30, 3.0]
    assert routing.check_vector(vector, WIDE, "wide") is vector  # checked in one pass, not rebuilt
    assert routing.check_vector(tuple(vector), WIDE, "wide") == vector


@pytest.mark.parametrize(
    "value",
    [
        np.array([0.5, -1.0, 2.0, 0.0, 1.0, 3.0]),
        np.array([0.5, -1.0, 2.0, 0.0, 1.0, 3.0], dtype=np.float32),
        np.array([1, -1, 2, 0, 1, 3]),
        [1, -1, 2, 0, 1, 3],
        [np.float32(0.5), np.float64(-1.0), 2, 0, 1, 3],
        (1, -1, 2, 0, 1, 3),
    ],
    ids=["float64-array", "float32-array", "int-array", "ints", "numpy-scalars", "int-tuple"],
)
def test_arrays_ints_and_numpy_scalars_become_a_list_of_floats(value: Any) -> None:
    checked = routing.check_vector(value, WIDE, "wide")
    assert isinstance(checked, list) and all(type(x) is float for x in checked)
    assert checked == pytest.approx(
        [0.5 if isinstance(value[0], float | np.floating) else 1.0, -1, 2, 0, 1, 3]
    )
    assert routing.is_dense(value)


def test_finite_values_whose_sum_overflows_are_a_valid_vector() -> None:
    assert routing.check_vector([1e308] * 6, WIDE, "wide") == [1e308] * 6


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1.0, 2.0, float("inf"), 0.0, 0.0, 0.0], "non-finite value at index 2"),
        ([1.0, 2.0, float("-inf"), float("inf"), 0.0, 0.0], "non-finite value at index 2"),
        (np.array([1.0, 2.0, 3.0, np.nan, 0.0, 0.0]), "non-finite value at index 3"),
        ([0.1] * 5, "has 5 dimensions, but wide:v1"),
        (np.zeros(7, dtype=np.float32), "has 7 dimensions, but wide:v1"),
        ([[0.1] * 6], "not a flat list of numbers (shape (1, 6))"),
        ([0.1, 0.2, "x", 0.0, 0.0, 0.0], "not a list of numbers"),
        ([0.1, 0.2, None, 0.0, 0.0, 0.0], "non-finite value at index 2"),  # numpy reads None as NaN
        ("not numbers", "not a list of numbers"),
    ],
)
def test_a_bad_vector_is_named_with_its_problem(value: Any, problem: str) -> None:
    found = routing.check_vector(value, WIDE, "wide")
    assert isinstance(found, str) and found.startswith("vector 'wide' ") and problem in found


@pytest.mark.parametrize(
    "value",
    [
        [],
        [[0.1, 0.2], [0.3, 0.4]],  # a multivector
        [0.1, [0.2]],
        [0.1, "x"],
        [0.1, None],
        [models.Document(text="a", model="m")],
        np.zeros((2, 3)),
        models.SparseVector(indices=[1], values=[0.5]),
        "text",
    ],
    ids=["empty", "multivector", "nested", "str", "none", "document", "2-d", "sparse", "text"],
)
def test_what_is_not_a_dense_vector(value: Any) -> None:
    assert not routing.is_dense(value)


def test_resolve_lists_what_to_embed_and_refuses_a_bad_batch_whole() -> None:
    plan = snap(Strategy.IN_PLACE).plan
    both: tuple[routing.Role, ...] = ("source", "target")
    splits = [routing.split(v, plan, both) for v in ({"src": [1.0] * 4}, None)]
    resolved = routing.resolve(plan, [1, 2], splits, both, ["one", "two"])
    assert resolved.roles == [{"source": [1.0] * 4}, {}]
    assert resolved.pending == {"source": [(1, "two")], "target": [(0, "one"), (1, "two")]}
    resolved.fill("target", [[0.5] * 6, [0.25] * 6])
    assert resolved.roles[1] == {"target": [0.25] * 6}
    with pytest.raises(lq.VectorValidationError) as info:
        routing.resolve(plan, [1, 2], [*splits[:1], "broken"], both, [None, None])
    assert [pid for pid, _ in info.value.problems] == [1, 2]  # every bad point named


def test_where_each_strategy_writes() -> None:
    vectors = {"source": [1.0] * 4, "target": [2.0] * 6}
    (one,) = strategy_for(snap(Strategy.IN_PLACE).plan).destinations("docs", ("source", "target"))
    assert (one.collection, one.stamp, one.vectors_of(vectors, {"x": [3.0]})) == (
        "docs",
        WIDE,
        {"x": [3.0], "src": [1.0] * 4, "wide": [2.0] * 6},
    )
    blue = strategy_for(snap(Strategy.BLUE_GREEN).plan)
    old, new = blue.destinations("docs", ("source", "target"))
    assert (old.collection, old.stamp, old.vectors_of(vectors, {})) == ("docs", OLD, {"src": [1.0] * 4})
    assert (new.collection, new.stamp, new.vectors_of(vectors, {})) == (
        "docs__wide",
        WIDE,
        {"src": [2.0] * 6},
    )
    assert blue.forwards(WriteRoute.DUAL_WRITE) == ("docs", "docs__wide")
    assert strategy_for(snap(Strategy.IN_PLACE).plan).forwards(WriteRoute.DUAL_WRITE) is None
    reembed = strategy_for(snap(Strategy.REEMBED).plan)
    (shared,) = reembed.destinations("docs", ("source", "target"))
    assert shared.stamp == NEW and shared.stamp_with_vectors
    assert shared.vectors_of({"source": [1.0] * 4, "target": [2.0] * 4}, {}) == {"src": [2.0] * 4}
    entries = reembed.source_entries(
        [7], [{"source": [1.0] * 4, "target": [2.0] * 4}], ["t"], ("source", "target")
    )
    assert entries == {7: ([1.0] * 4, "t", ("old", 1))}  # the source vector goes to the backup first
    assert (
        strategy_for(snap(Strategy.IN_PLACE).plan).source_entries([7], [{}], ["t"], ("source", "target"))
        is None
    )


def plan_query(s: Snapshot, coverage: Coverage | None = None, **kwargs: Any) -> routing.QueryPlan:
    options: dict[str, Any] = {"textual": True, "mode": None, "using": None} | kwargs
    return strategy_for(s.plan).query_plan(s, coverage, "docs", **options)


def test_how_a_query_runs_with_a_vector_of_its_own() -> None:
    mixed = snap(Strategy.IN_PLACE, query_mode="mixed")
    assert plan_query(mixed) == MixedQuery()
    assert plan_query(mixed, textual=False) == RoutedQuery("docs", "src", "source")  # vectors are routed
    assert plan_query(mixed, textual=False, mode="mixed") == MixedQuery()  # refused by the executor
    assert plan_query(snap(Strategy.IN_PLACE)) == RoutedQuery("docs", "src", "source")
    assert plan_query(snap(Strategy.IN_PLACE, WINDOW, query_mode="mixed")) == RoutedQuery(
        "docs", "wide", "target"
    )
    assert plan_query(snap(Strategy.IN_PLACE), using="wide") == RoutedQuery("docs", "wide", "target")
    assert plan_query(snap(Strategy.IN_PLACE), using="other") == PassThrough("docs", "other")
    # blue-green: the physical collection of the model, never the alias
    assert plan_query(snap(Strategy.BLUE_GREEN, WINDOW)) == RoutedQuery("docs__wide", "src", "target")
    assert plan_query(snap(Strategy.BLUE_GREEN)) == RoutedQuery("docs", "src", "source")


def test_how_a_reembed_query_runs_by_the_stamp() -> None:
    held, others = stamp_filter("new", 1), models.Filter(must_not=[stamp_filter("new", 1)])
    s = snap(Strategy.REEMBED)
    strategy = strategy_for(s.plan)
    assert strategy.query_needs_coverage(s, None) and not strategy.query_needs_coverage(s, "other")
    assert plan_query(s, Coverage(3, 10)) == MixedQuery()  # text over partial coverage, whatever query_mode
    assert plan_query(s, Coverage(0, 10)) == RoutedQuery("docs", "src", "source", others)
    assert plan_query(s, Coverage(10, 10)) == RoutedQuery("docs", "src", "target", held)
    assert plan_query(s, Coverage(3, 10), textual=False) == RoutedQuery("docs", "src", "source", others)
    assert plan_query(snap(Strategy.REEMBED, WINDOW), Coverage(3, 10), mode="routed") == RoutedQuery(
        "docs", "src", "target", held
    )
    assert plan_query(snap(Strategy.REEMBED, FINALIZED)) == RoutedQuery("docs", "src", "target")
    assert plan_query(snap(Strategy.REEMBED, PLANNED)) == RoutedQuery("docs", "src", "source")
    with pytest.raises(lq.VectorValidationError, match=r"pass a models\.Document"):
        plan_query(s, Coverage(3, 10), textual=False, mode="mixed")


def test_the_two_searches_of_a_mixed_query() -> None:
    user = models.Filter(must=[models.HasIdCondition(has_id=[1, 2])])
    searches = strategy_for(snap(Strategy.IN_PLACE).plan).mixed_searches(user)
    assert (searches.source.collection, searches.source.using, searches.source.with_vectors) == (
        "docs",
        "src",
        ["wide", "src"],  # the target vectors to rescore, the source vectors to place the others
    )
    # the target search's hits are scored by Qdrant against the same embedding: only their source vectors
    assert (searches.target.using, searches.target.with_vectors) == ("wide", ["src"])
    assert searches.fetch_from is None and searches.vectors_from == ("source",)
    assert (searches.source_vector, searches.source_vectors_from) == ("src", ("source", "target"))
    blue = strategy_for(snap(Strategy.BLUE_GREEN).plan).mixed_searches(None)
    assert (blue.source.with_vectors, blue.target.collection, blue.fetch_from) == (
        ["src"],
        "docs__wide",
        "docs__wide",
    )
    # the source collection's vectors are source vectors, whatever their name
    assert (blue.vectors_from, blue.source_vectors_from, blue.target.with_vectors) == ((), ("source",), False)
    shared = strategy_for(snap(Strategy.REEMBED).plan).mixed_searches(user)
    assert shared.vectors_from == () and shared.source_vectors_from == ("source",)
    assert shared.target.with_vectors is False
    assert shared.target.query_filter == models.Filter(must=[user, stamp_filter("new", 1)])
    assert shared.source.query_filter == models.Filter(
        must=[user, models.Filter(must_not=[stamp_filter("new", 1)])]
    )


def test_a_schema_change_elsewhere_is_recognised_from_the_refusal() -> None:
    assert routing.schema_moved("Wrong input: Not existing vector name error: legacy")
    assert routing.schema_moved("Vector 'x' does not exist")
    assert not routing.schema_moved("timed out")


def test_dense_vector_checks_a_dense_vector_and_leaves_anything_else() -> None:
    vector = [0.5, -1.0, 2.0, 0.0, 1.0, 3.0]
    assert routing.dense_vector(vector, WIDE, "wide") is vector
    assert routing.dense_vector(np.ones(6, dtype=np.float32), WIDE, "wide") == [1.0] * 6
    assert "has 5 dimensions" in str(routing.dense_vector([0.1] * 5, WIDE, "wide"))
    assert "non-finite" in str(routing.dense_vector([float("nan")] * 6, WIDE, "wide"))
    for other in ([[0.1] * 6, [0.2] * 6], models.SparseVector(indices=[1], values=[0.5]), 7):
        assert routing.dense_vector(other, WIDE, "wide") is None


# --------------------------------------------------------------------------- points built from checked values


def test_points_built_unchecked_are_the_models_model_construct_makes() -> None:
    vector = {"legacy": [0.5, 1.0], "modern": [1.0, 0.0, 2.0]}
    built = point_struct(id=7, vector=vector, payload={"text": "a"})
    assert built == models.PointStruct(id=7, vector=vector, payload={"text": "a"})
    assert built == models.PointStruct.model_construct(id=7, vector=vector, payload={"text": "a"})
    assert built.model_fields_set == {"id", "vector", "payload"}
    assert built.model_dump() == {"id": 7, "vector": vector, "payload": {"text": "a"}}
    assert built.vector is vector  # nothing copied
    moved = point_vectors(id="0b6c3f5e-6a3e-4a7e-9f4b-6a0b8a1e2c3d", vector={"modern": [1.0]})
    assert moved == models.PointVectors(id="0b6c3f5e-6a3e-4a7e-9f4b-6a0b8a1e2c3d", vector={"modern": [1.0]})


def test_a_model_built_otherwise_is_left_to_model_construct() -> None:
    class Private(BaseModel):
        a: int
        _note: int = PrivateAttr(default=3)

    class Extra(BaseModel, extra="allow"):
        a: int

    for cls in (Private, Extra):
        assert unchecked(cls) == cls.model_construct  # the check against model_construct failed
    assert unchecked(models.PointStruct) != models.PointStruct.model_construct
