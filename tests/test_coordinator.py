"""The coordinator: lifecycle on a real engine, durable shared state, compare-and-set transitions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import lattice_qdrant as lq
from lattice_qdrant.embedders import HashEmbedder
from lattice_qdrant.store import open_store
from lattice_qdrant.testing import Fail, FaultyStore, Meanwhile

from conftest import MakeMigration, fill_collection, fill_target, make_lattice


@pytest.fixture
def planned(make_migration: MakeMigration) -> lq.Migration:
    return make_migration(n=30, started=False, rollback_window=3600)


def test_plan_records_the_plan_and_registers_both_models(
    planned: lq.Migration,
    lattice: lq.LatticeClient,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    assert planned.state.status == lq.Status.PLANNED
    assert planned.plan.target_vector == target_spec.vector_name
    assert lattice.registry.list() == sorted([source_spec, target_spec], key=lambda s: s.model_id)
    routing = planned.routing()
    assert (routing.write, routing.query_vector) == (lq.WriteRoute.LEGACY, "legacy")
    # planning changes nothing in the collection
    assert set(lattice.client.get_collection(planned.collection).config.params.vectors) == {"legacy"}


def test_plan_refuses_a_source_vector_that_does_not_match(
    lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder, target_spec: lq.ModelSpec
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=3)
    wrong = HashEmbedder(32).spec("legacy", 1)
    with pytest.raises(lq.StoreError, match="32-d") as err:
        lattice.plan(docs, source=wrong, target=target_spec, source_vector="legacy")
    assert err.value.vector == "legacy"
    with pytest.raises(lq.StoreError, match="does not exist"):
        lattice.plan(docs, source=legacy.spec("legacy"), target=target_spec, source_vector="nope")
    # nothing was recorded
    with pytest.raises(lq.MigrationNotFoundError):
        lattice.migration(docs)


def test_a_second_plan_is_refused_until_the_first_is_finished(
    planned: lq.Migration,
    lattice: lq.LatticeClient,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    with pytest.raises(lq.MigrationExistsError, match="planned"):
        lattice.plan(planned.collection, source=source_spec, target=target_spec, source_vector="legacy")
    planned.cancel()
    again = lattice.plan(planned.collection, source=source_spec, target=target_spec, source_vector="legacy")
    assert again.state.status == lq.Status.PLANNED
    assert again.snapshot().epoch > 2


def control_records(lattice: lq.LatticeClient) -> dict[str, list[dict[str, Any]]]:
    """Every record of the control collection, by kind (what a refused plan must not leave behind)."""
    if not lattice.client.collection_exists(lattice.store.control_collection):
        return {}
    found, _ = lattice.client.scroll(lattice.store.control_collection, limit=1000, with_payload=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for record in found:
        out.setdefault(str((record.payload or {}).get("kind")), []).append(dict(record.payload or {}))
    return out


def test_a_plan_whose_target_conflicts_registers_neither_model(
    lattice: lq.LatticeClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> None:
    docs = names("docs")
    fill_collection(lattice.client, docs, legacy, n=4)
    other = HashEmbedder(32, salt="other").spec("modern", 1)  # another spec under the target's id and version
    lattice.registry.register(other)
    with pytest.raises(lq.ModelConflictError, match="'modern' version 1 is already registered"):
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy")
    assert lattice.registry.list() == [other]  # the source was not registered either
    assert set(control_records(lattice)) == {"model"}
    with pytest.raises(lq.MigrationNotFoundError):
        lattice.migration(docs)


def test_a_plan_refused_because_one_exists_registers_nothing(
    planned: lq.Migration, lattice: lq.LatticeClient, source_spec: lq.ModelSpec, modern: HashEmbedder
) -> None:
    newer = modern.spec("modern", 2)
    with pytest.raises(lq.MigrationExistsError):
        lattice.plan(planned.collection, source=source_spec, target=newer, source_vector="legacy")
    assert newer not in lattice.registry.list()


def test_an_in_place_plan_on_the_unnamed_vector_is_refused_at_plan(
    lattice: lq.LatticeClient, names: Any, legacy: HashEmbedder, source_spec: lq.ModelSpec, target_spec: Any
) -> None:
    docs = names("docs")
    qdrant = lattice.client
    qdrant.create_collection(
        docs, vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    qdrant.upsert(
        docs, [models.PointStruct(id=1, vector=legacy.embed(["a"])[0].tolist(), payload={"text": "a"})]
    )
    with pytest.raises(lq.UnnamedVectorError) as err:
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="")
    message = str(err.value)
    assert "--strategy blue_green" in message and "--strategy reembed" in message
    assert control_records(lattice) == {}  # nothing recorded, nothing registered
    assert qdrant.get_collection(docs).config.params.vectors.size == 64  # the layout is untouched


@pytest.mark.parametrize(
    ("payloads", "fields"),
    [
        ([{"text": f"t{i}", "title": "x"} for i in range(5)], ["text", "title"]),
        ([{"title": "only a title"}, {}, {"title": "x", "body": None}], ["body", "title"]),
        ([None, {}], []),
    ],
    ids=["wrong-name", "some-without-payload", "no-payload"],
)
def test_a_text_field_no_sampled_point_holds_is_refused_at_plan(
    lattice: lq.LatticeClient,
    names: Any,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
    payloads: list[Any],
    fields: list[str],
) -> None:
    docs = names("docs")
    qdrant = lattice.client
    qdrant.create_collection(
        docs, vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)}
    )
    qdrant.upsert(docs, [models.PointStruct(id=i, vector={"legacy": [0.1] * 64}, payload=p)
                         for i, p in enumerate(payloads)])  # fmt: skip
    with pytest.raises(lq.TextFieldError) as err:
        lattice.plan(docs, source=source_spec, target=target_spec, source_vector="legacy", text_field="body")
    assert isinstance(err.value, lq.PlanError) and err.value.key == "text_field"
    assert (err.value.field, err.value.fields, err.value.sampled) == ("body", fields, len(payloads))
    message = str(err.value)
    assert f"none of the {len(payloads)} sampled points" in message and "'body'" in message
    assert ", ".join(repr(f) for f in fields) in message if fields else "no payload" in message
    assert control_records(lattice) == {}  # nothing recorded, nothing registered


def test_a_text_field_some_points_hold_and_an_empty_collection_pass(
    lattice: lq.LatticeClient, names: Any, source_spec: lq.ModelSpec, target_spec: lq.ModelSpec
) -> None:
    some, empty = names("some"), names("empty")
    for coll in (some, empty):
        lattice.client.create_collection(
            coll, vectors_config={"legacy": models.VectorParams(size=64, distance=models.Distance.COSINE)}
        )
    payloads = [{"text": "has text"}, {"text": "  "}, {}, {"other": 1}]
    lattice.client.upsert(some, [models.PointStruct(id=i, vector={"legacy": [0.1] * 64}, payload=p)
                                 for i, p in enumerate(payloads)])  # fmt: skip
    for coll in (some, empty):
        migration = lattice.plan(coll, source=source_spec, target=target_spec, source_vector="legacy")
        assert migration.start().phase == lq.Phase.MIGRATING


def test_start_refuses_a_text_field_no_sampled_point_holds_and_changes_nothing(
    planned: lq.Migration, lattice: lq.LatticeClient
) -> None:
    docs = planned.collection
    # the text moved to another field after the plan (or the plan was recorded before plan checked it)
    lattice.client.overwrite_payload(docs, {"body": "moved"}, points=models.Filter())
    with pytest.raises(lq.TextFieldError, match=r"'text'.*'body'"):
        planned.start()
    assert planned.snapshot(refresh=True).state.status == lq.Status.PLANNED
    assert set(lattice.client.get_collection(docs).config.params.vectors) == {"legacy"}
    assert [e["event"] for e in planned.history()] == ["plan"]


class PosingServer:
    """The real client, posing as a Qdrant server of ``version`` (what ``info()`` reports)."""

    _client = None  # not qdrant-client's local mode

    def __init__(self, real: QdrantClient, version: str) -> None:
        self._real = real
        self.version = version

    def info(self) -> models.VersionInfo:
        return models.VersionInfo(title="qdrant - vector search engine", version=self.version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


STRATEGIES = ["in_place", "blue_green", "reembed"]


@pytest.fixture
def plan_on(
    qdrant: QdrantClient,
    names: Any,
    legacy: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
) -> Callable[[str, str], lq.Migration]:
    """``plan_on(version, strategy)``: a plan of ``strategy`` for a collection of 3 points
    (``names("docs")``), through a wrapper of a server of ``version`` (a re-embed keeps the source's
    shape: version 2 of it)."""
    docs = names("docs")
    fill_collection(qdrant, docs, legacy, n=3)

    def plan(version: str, strategy: str) -> lq.Migration:
        target = target_spec
        if strategy == "reembed":
            target = HashEmbedder(source_spec.dimension, salt="newer").spec(source_spec.model_id, 2)
        server = make_lattice(PosingServer(qdrant, version), names)
        return server.plan(docs, source=source_spec, target=target, source_vector="legacy", strategy=strategy)

    return plan


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("version", ["1.16.3", "1.15.4", "1.12.0"])
def test_every_strategy_is_refused_at_plan_on_a_server_older_than_1_17(
    plan_on: Any, qdrant: QdrantClient, names: Any, strategy: str, version: str
) -> None:
    # such a server drops update_mode: two planners would both win, the backfill would overwrite
    with pytest.raises(lq.ServerVersionError) as caught:
        plan_on(version, strategy)

    assert f"Qdrant {version} found, 1.17+ needed" in str(caught.value)
    assert caught.value.collection == names("docs")
    # nothing was written: no control collection, no model registered
    assert not qdrant.collection_exists(names("control"))
    with pytest.raises(lq.MigrationNotFoundError):
        make_lattice(qdrant, names).migration(names("docs"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_refused_at_plan_on_a_server_of_unknown_version(
    plan_on: Any, qdrant: QdrantClient, names: Any, strategy: str
) -> None:
    with pytest.raises(lq.ServerVersionError, match="no readable version"):
        plan_on("unknown", strategy)

    assert not qdrant.collection_exists(names("control"))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("version", ["1.17.0", "1.18.2"])
def test_every_strategy_plans_on_a_server_it_can_run_on(
    plan_on: Any, qdrant: QdrantClient, names: Any, strategy: str, version: str
) -> None:
    if strategy == "in_place" and version < "1.18":
        # in place also adds a named vector to the live collection: refused at plan, nothing recorded
        with pytest.raises(lq.InPlaceUnsupportedError, match=rf"Qdrant {version} found, 1.18\+ needed"):
            plan_on(version, strategy)
        with pytest.raises(lq.MigrationNotFoundError):
            make_lattice(qdrant, names).migration(names("docs"))
        return
    migration = plan_on(version, strategy)

    assert migration.state.status == lq.Status.PLANNED
    assert migration.plan.strategy == strategy


def test_finalize_after_the_window_needs_no_force(
    lattice: lq.LatticeClient, make_migration: MakeMigration, modern: HashEmbedder
) -> None:
    docs = make_migration(n=5, started=False, rollback_window=60).collection
    now = [1_000_000.0]
    migration = lq.Migration(lattice.store, docs, refresh_interval=0, clock=lambda: now[0])
    migration.start()
    fill_target(migration, modern)
    migration.cutover()
    now[0] += 59
    with pytest.raises(lq.RollbackWindowOpenError) as err:
        migration.finalize()
    assert err.value.seconds_left == pytest.approx(1.0)
    assert migration.rollback_window_left() == pytest.approx(1.0)
    now[0] += 1
    assert migration.finalize().finalized


def test_finalize_refuses_partial_coverage_even_after_the_window(
    planned: lq.Migration, lattice: lq.LatticeClient
) -> None:
    planned.start()
    planned.cutover(force=True)
    migration = lq.Migration(lattice.store, planned.collection, refresh_interval=0, clock=lambda: 10**12)
    with pytest.raises(lq.RollbackWindowOpenError, match="partial"):
        migration.finalize()
    # nothing was dropped
    assert "legacy" in lattice.client.get_collection(planned.collection).config.params.vectors


def test_cancel_goes_back_to_legacy_writes_and_drops_the_target(
    planned: lq.Migration, lattice: lq.LatticeClient
) -> None:
    planned.start()
    planned.cancel()
    assert planned.state.status == lq.Status.CANCELLED
    assert planned.routing().write == lq.WriteRoute.LEGACY
    assert set(lattice.client.get_collection(planned.collection).config.params.vectors) == {"legacy"}


def cut_off(migration: lq.Migration, method: str, **fault: Any) -> lq.Migration:
    """The migration as a process sees it that is killed at its first call of ``method``."""
    store = FaultyStore(migration.store, {method: Fail(KeyboardInterrupt(), on=1, **fault)})
    return lq.Migration(store, migration.collection, refresh_interval=0)


def test_finalize_cut_off_before_the_drop_is_repaired_by_calling_it_again(
    planned: lq.Migration, lattice: lq.LatticeClient
) -> None:
    planned.start()
    planned.cutover(force=True)
    with pytest.raises(KeyboardInterrupt):
        cut_off(planned, "drop_vector").finalize(force=True)
    assert planned.snapshot(refresh=True).state.finalized
    assert "legacy" in lattice.client.get_collection(planned.collection).config.params.vectors
    planned.finalize()
    assert "legacy" not in lattice.client.get_collection(planned.collection).config.params.vectors


def test_start_is_idempotent_on_the_schema_after_a_crash(
    planned: lq.Migration, lattice: lq.LatticeClient
) -> None:
    """A start cut off after adding the vector, before recording the state, can simply be rerun."""
    with pytest.raises(KeyboardInterrupt):
        cut_off(planned, "replace_record", when=lambda call: call.arguments["kind"] == "migration").start()
    assert planned.plan.target_vector in lattice.store.vectors(planned.collection)  # the vector was added
    assert planned.state.status == lq.Status.PLANNED
    assert planned.start().status == lq.Status.IN_PROGRESS


def test_state_survives_a_restart_including_the_cutover_time(
    tmp_path: Any,
    legacy: HashEmbedder,
    modern: HashEmbedder,
    source_spec: lq.ModelSpec,
    target_spec: lq.ModelSpec,
    names: Any,
) -> None:
    path = str(tmp_path / "qdrant")
    qdrant = QdrantClient(path=path)
    fill_collection(qdrant, "docs", legacy, n=10)
    first = make_lattice(qdrant, names)
    migration = first.plan(
        "docs", source=source_spec, target=target_spec, source_vector="legacy", rollback_window=7200
    )
    migration.start()
    fill_target(migration, modern)
    cut = migration.cutover()
    qdrant.close()

    reopened = QdrantClient(path=path)
    second = make_lattice(reopened, names)
    again = second.migration("docs")
    assert again.state == cut
    assert again.plan.rollback_window == 7200
    left = again.rollback_window_left()
    assert left is not None and 7000 < left <= 7200
    assert again.routing().query_vector == target_spec.vector_name
    assert second.registry.get("modern") == target_spec
    reopened.close()


def test_every_wrapper_routes_the_same_way_within_the_refresh_interval(
    planned: lq.Migration, qdrant: QdrantClient, names: Any
) -> None:
    fleet = [make_lattice(qdrant, names, refresh_interval=0.0) for _ in range(3)]
    planned.start()
    assert {w.migration(planned.collection).routing().write for w in fleet} == {lq.WriteRoute.DUAL_WRITE}
    planned.cutover(force=True)
    assert {w.migration(planned.collection).routing().query_vector for w in fleet} == {
        planned.plan.target_vector
    }


def test_a_cached_state_is_used_until_the_refresh_interval_passes(
    planned: lq.Migration, qdrant: QdrantClient, names: Any
) -> None:
    slow = make_lattice(qdrant, names, refresh_interval=3600.0)
    observer = slow.migration(planned.collection)
    assert observer.routing().write == lq.WriteRoute.LEGACY
    planned.start()
    assert observer.routing().write == lq.WriteRoute.LEGACY  # stale, within its bound
    assert observer.snapshot(refresh=True).state.phase == lq.Phase.MIGRATING
    assert observer.routing().write == lq.WriteRoute.DUAL_WRITE


def _racers(qdrant: QdrantClient, names: Any, collection: str) -> list[lq.Migration]:
    """Two processes' views of the migration whose writes of it wait for each other: both transitions
    read the same epoch before either writes."""
    barrier = threading.Barrier(2, timeout=10)
    gate = {"replace_record": Meanwhile(lambda call: barrier.wait())}
    stores = [FaultyStore(open_store(qdrant, control_collection=names("control")), gate) for _ in range(2)]
    return [lq.Migration(store, collection, refresh_interval=0) for store in stores]


def _race(first: Callable[[], Any], second: Callable[[], Any]) -> list[Any]:
    """Run two transitions at once."""
    results: list[Any] = [None, None]

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.parametrize(
    ("setup", "first", "second"),
    [
        ("rollback_window", "rollback", "finalize"),
        ("migrating", "cutover", "cancel"),
        ("migrating", "cutover", "cutover"),
        ("rolled_back", "cutover", "pause"),
    ],
)
def test_two_processes_racing_transitions_exactly_one_wins(
    planned: lq.Migration, qdrant: QdrantClient, names: Any, setup: str, first: str, second: str
) -> None:
    planned.start()
    if setup in ("rollback_window", "rolled_back"):
        planned.cutover(force=True)
    if setup == "rolled_back":
        planned.rollback()
    a, b = _racers(qdrant, names, planned.collection)
    calls = {
        "rollback": lambda m: m.rollback(),
        "finalize": lambda m: m.apply(lq.state.Finalize(at=0.0, force=True)),
        "cutover": lambda m: m.cutover(force=True),
        "cancel": lambda m: m.apply(lq.state.Cancel()),
        "pause": lambda m: m.pause("maintenance"),
    }
    epoch = planned.snapshot(refresh=True).epoch
    results = _race(lambda: calls[first](a), lambda: calls[second](b))
    winners = [r for r in results if isinstance(r, lq.MigrationState)]
    losers = [r for r in results if isinstance(r, lq.ConcurrentTransitionError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0].expected_epoch == epoch and losers[0].found_epoch == epoch + 1
    assert "lost a race" in str(losers[0])
    final = planned.snapshot(refresh=True)
    assert final.epoch == epoch + 1 and final.state == winners[0]


def test_an_optimistic_progress_skips_the_read_and_loses_to_a_write_it_has_not_seen(
    planned: lq.Migration, qdrant: QdrantClient, names: Any
) -> None:
    planned.start()
    a, b = (
        lq.Migration(
            open_store(qdrant, control_collection=names("control")), planned.collection, refresh_interval=0
        )
        for _ in range(2)
    )
    a.snapshot(refresh=True)
    reads = _count_record_reads(a)
    state = a.progress(lq.Coverage(covered=3, total=10), optimistic=True)
    assert (state.processed, state.total) == (3, 10)
    assert reads() == 1  # only the compare-and-set's read-back: not the read before it

    b.progress(lq.Coverage(covered=5, total=10))  # another worker moves the record on
    epoch = planned.snapshot(refresh=True).epoch
    with pytest.raises(lq.ConcurrentTransitionError):
        a.progress(lq.Coverage(covered=4, total=10), optimistic=True)
    after = planned.snapshot(refresh=True)
    assert after.epoch == epoch and after.state.processed == 5  # the stale write changed nothing
    assert a.progress(lq.Coverage(covered=6, total=10), optimistic=True).processed == 6  # it read it since


def _count_record_reads(migration: lq.Migration) -> Callable[[], int]:
    """How many times ``migration`` reads its record from now on."""
    store = migration.store
    real = store.get_record
    count = [0]

    def counted(kind: str, key: str) -> Any:
        count[0] += 1
        return real(kind, key)

    store.get_record = counted  # type: ignore[method-assign]
    return lambda: count[0]


def test_many_threads_racing_one_transition(planned: lq.Migration, qdrant: QdrantClient, names: Any) -> None:
    planned.start()
    fleet = [make_lattice(qdrant, names).migration(planned.collection) for _ in range(6)]
    barrier = threading.Barrier(len(fleet), timeout=10)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def go(m: lq.Migration) -> None:
        barrier.wait()
        try:
            result: Any = m.cutover(force=True)
        except lq.TransitionError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=go, args=(m,)) for m in fleet]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [o for o in outcomes if isinstance(o, lq.MigrationState)]
    assert len(winners) == 1
    # the others lost the race, or (reading after the winner) found the transition invalid
    assert all(
        isinstance(o, lq.ConcurrentTransitionError | lq.InvalidTransitionError)
        for o in outcomes
        if o not in winners
    )


def test_coverage_is_counted_from_the_data(
    planned: lq.Migration, lattice: lq.LatticeClient, modern: HashEmbedder
) -> None:
    planned.start()
    plan = planned.plan
    lattice.client.update_vectors(
        planned.collection,
        [models.PointVectors(id=i, vector={plan.target_vector: [0.1] * modern.dimension}) for i in range(6)],
    )
    cov = planned.coverage()
    assert (cov.covered, cov.total) == (6, 30)
    state = planned.progress()
    assert (state.processed, state.total) == (6, 30)
    # a writer outside the wrapper replaces a covered point with only its source vector
    lattice.client.upsert(
        planned.collection,
        [models.PointStruct(id=0, vector={"legacy": [0.2] * 64}, payload={"text": "x"})],
    )
    assert planned.coverage().covered == 5


def test_query_threshold_moves_queries_before_cutover(
    make_migration: MakeMigration, modern: HashEmbedder, target_spec: lq.ModelSpec
) -> None:
    migration = make_migration(n=10, query_threshold=0.5)
    assert migration.routing().query_vector == "legacy"
    fill_target(migration, modern)
    assert migration.routing().query_vector == target_spec.vector_name


RACER = """
import sys, lattice_qdrant as lq
from qdrant_client import QdrantClient
url, control, collection, event, barrier_file = sys.argv[1:6]
client = lq.wrap(QdrantClient(url=url), control_collection=control, refresh_interval=0)
migration = client.migration(collection)
migration.snapshot(refresh=True)
import os, time
open(barrier_file + "." + event, "w").close()
while not all(os.path.exists(barrier_file + "." + e) for e in ("cutover", "cancel")):
    time.sleep(0.001)
try:
    (migration.cutover(force=True) if event == "cutover" else migration.apply(lq.state.Cancel()))
    print("won")
except lq.TransitionError as exc:
    print("lost", type(exc).__name__)
"""


@pytest.mark.integration
def test_two_processes_racing_on_a_server_exactly_one_wins(
    backend: str, planned: lq.Migration, names: Any, tmp_path: Any
) -> None:
    """The same race as above, with two real processes (only a server can be shared by processes)."""
    if backend != "server":
        pytest.skip("two processes need a server (local mode lets one process open a path)")
    import subprocess
    import sys

    from conftest import QDRANT_URL

    planned.start()
    barrier = str(tmp_path / "go")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                str(QDRANT_URL),
                names("control"),
                planned.collection,
                event,
                barrier,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for event in ("cutover", "cancel")
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(o.split()[0] for o in outputs) == ["lost", "won"], outputs
    final = planned.snapshot(refresh=True).state
    assert final.status == lq.Status.CANCELLED or final.phase == lq.Phase.ROLLBACK_WINDOW


def test_the_strategy_is_kept_across_rereads_of_an_unchanged_plan_and_compared_once(
    planned: lq.Migration, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = planned.strategy_of(planned.snapshot())
    again = planned.snapshot(refresh=True)  # a new plan object, equal to the first
    plan_class = type(again.plan)
    compared: list[Any] = []
    original = plan_class.__eq__

    def counting(self: Any, other: Any) -> bool:
        compared.append(other)
        return bool(original(self, other))

    monkeypatch.setattr(plan_class, "__eq__", counting)
    assert planned.strategy_of(again) is first
    assert planned.strategy_of(again) is first  # a routed call of the refresh interval: no comparison
    assert len(compared) == 1
