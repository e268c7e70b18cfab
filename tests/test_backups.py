"""Vector backups: backup, restore (full, per point, filtered, resumed), verification, deletion, memory.

Every scenario runs on local mode, and on a real server when ``QDRANT_URL`` is set. Interruptions are
simulated by a :class:`~lattice_qdrant.store.Store` subclass that raises ``KeyboardInterrupt`` from a
chosen call, the way Ctrl-C would land between two pages.
"""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from lattice_qdrant import backups
from lattice_qdrant.backups import Checksum, Manifest, canonical_vector
from lattice_qdrant.errors import MigrationError, RollbackWindowOpenError, StoreError
from lattice_qdrant.spec import Distance
from lattice_qdrant.store import MODEL_FIELD, VERSION_FIELD, Store, open_store
from lattice_qdrant.testing import Fail, FaultyStore, Meanwhile, StoreWrapper

from conftest import CORPUS, unit

DIM = 16
MODEL = "legacy:v1:0123abcd"


# --------------------------------------------------------------------------- helpers


def make_docs(
    client: QdrantClient,
    name: str,
    n: int = 40,
    *,
    lacking: Sequence[int] = (),
    ids: Sequence[Any] | None = None,
    seed: int = 0,
) -> dict[Any, NDArray[np.float64]]:
    """A collection with a Cosine ``legacy`` vector (left off the ``lacking`` points) and a ``modern``
    one, text, a ``module`` field and the model fields; returns each point's legacy vector, normalised."""
    client.create_collection(
        name,
        vectors_config={
            "legacy": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            "modern": models.VectorParams(size=DIM + 8, distance=models.Distance.COSINE),
        },
    )
    rng = np.random.default_rng(seed)
    point_ids = list(ids) if ids is not None else list(range(n))
    originals: dict[Any, NDArray[np.float64]] = {}
    points = []
    for i, pid in enumerate(point_ids):
        raw = rng.normal(size=DIM) * 3.0  # not normalised: the store and the backup normalise it
        vectors: dict[str, Any] = {"modern": rng.normal(size=DIM + 8).tolist()}
        if i not in lacking:
            vectors["legacy"] = raw.tolist()
            originals[pid] = unit(raw)
        points.append(
            models.PointStruct(
                id=pid,
                vector=vectors,
                payload={
                    "text": f"{CORPUS[i % len(CORPUS)]} ({i})",
                    "module": f"m{i % 3}",
                    MODEL_FIELD: "legacy",
                    VERSION_FIELD: 1,
                },
            )
        )
    client.upsert(name, points)
    return originals


def legacy_vectors(client: QdrantClient, name: str) -> dict[Any, NDArray[np.float64]]:
    """Every point's legacy vector (normalised), for points that hold one."""
    records, _ = client.scroll(name, limit=100_000, with_vectors=["legacy"])
    return {
        r.id: unit(r.vector["legacy"]) for r in records if isinstance(r.vector, dict) and "legacy" in r.vector
    }


def assert_same_vectors(got: dict[Any, NDArray[np.float64]], want: dict[Any, NDArray[np.float64]]) -> None:
    assert set(got) == set(want)
    for pid, vector in want.items():
        np.testing.assert_allclose(got[pid], vector, atol=1e-5, err_msg=f"point {pid!r}")


def interrupting(store: Store, method: str, *, after: int, where: str = "") -> FaultyStore:
    """``store``, raising ``KeyboardInterrupt`` from the ``after``-th call (1-based, then every later one)
    of ``method`` on collections whose name contains ``where``."""
    killed = Fail(
        KeyboardInterrupt(), on=range(after, 1 << 30), when=lambda call: where in str(call.collection)
    )
    return FaultyStore(store, {method: killed})


@pytest.fixture
def store(qdrant: QdrantClient, names: Any) -> Store:
    return Store(qdrant, control_collection=names("control"))


@pytest.fixture
def docs(qdrant: QdrantClient, names: Any) -> tuple[str, dict[Any, NDArray[np.float64]]]:
    name = names("docs")
    return name, make_docs(qdrant, name, 40, lacking=(5, 17))


# --------------------------------------------------------------------------- backup and full restore


def test_backup_drop_restore_gives_every_point_its_vector_back(
    store: Store, qdrant: QdrantClient, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, originals = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL, reason="finalize", page_size=7)

    assert manifest.complete and manifest.count == 38 and manifest.skipped == 2
    assert (manifest.vector, manifest.model, manifest.dimension) == ("legacy", MODEL, DIM)
    assert manifest.distance == Distance.COSINE and manifest.reason == "finalize"
    assert manifest.backup_collection == f"{name}__backup__{manifest.backup_id}"
    assert backups.get_backup(store, manifest.backup_id) == manifest
    assert backups.verify_backup(store, manifest.backup_id)
    # one named vector, normalised here and kept bit-exact under Dot; the point's text and model fields
    params = qdrant.get_collection(manifest.backup_collection).config.params.vectors
    assert isinstance(params, dict) and set(params) == {"vector"}
    assert params["vector"].size == DIM and params["vector"].distance == models.Distance.DOT
    (copy,) = qdrant.retrieve(manifest.backup_collection, [3], with_payload=True)
    assert copy.payload == {
        "text": f"{CORPUS[3]} (3)",
        MODEL_FIELD: "legacy",
        VERSION_FIELD: 1,
        "model": MODEL,
    }

    modern_before, _ = qdrant.scroll(name, limit=100, with_vectors=["modern"], with_payload=True)
    assert store.drop_vector(name, "legacy")
    assert legacy_vectors(qdrant, name) == {}

    report = backups.restore(store, manifest.backup_id, page_size=9)

    assert report.vector_created and report.verified and report.checksum_ok
    assert (report.expected, report.restored, report.already) == (38, 38, 0)
    assert report.skipped_changed.count == report.skipped_missing.count == report.unrestored.count == 0
    assert_same_vectors(legacy_vectors(qdrant, name), originals)
    # only the restored vector was written: payload and the other vector are as they were
    modern_after, _ = qdrant.scroll(name, limit=100, with_vectors=["modern"], with_payload=True)
    assert modern_after == modern_before
    assert report.to_dict()["skipped_changed"] == {"count": 0, "ids": []}


def test_restore_leaves_changed_points_alone_and_reports_deleted_ones(
    store: Store, qdrant: QdrantClient, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, originals = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL, page_size=10)
    store.drop_vector(name, "legacy")
    # Since the backup: two points got a new text, two were deleted
    qdrant.set_payload(name, {"text": "rewritten"}, [3, 4])
    qdrant.delete(name, [6, 30])

    report = backups.restore(store, manifest.backup_id, page_size=10)

    assert report.skipped_changed == backups.IdSample(2, (3, 4))
    assert report.skipped_missing == backups.IdSample(2, (6, 30))
    assert report.restored == 34 and report.verified
    want = {pid: v for pid, v in originals.items() if pid not in {3, 4, 6, 30}}
    assert_same_vectors(legacy_vectors(qdrant, name), want)


def test_a_point_deleted_during_the_restore_is_reported_not_fatal(
    store: Store, qdrant: QdrantClient, names: Any, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    """Between the page's read and its write: the batch fails on the missing id and is written again."""
    name, originals = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL)
    store.drop_vector(name, "legacy")

    deleting = Meanwhile(
        lambda call: qdrant.delete(name, [12]), when=lambda call: 12 in call.arguments["pending"]
    )
    report = backups.restore(FaultyStore(store, {"update_if_unchanged": deleting}), manifest.backup_id)

    assert report.skipped_missing == backups.IdSample(1, (12,))
    assert report.restored == 37 and report.verified
    assert_same_vectors(legacy_vectors(qdrant, name), {p: v for p, v in originals.items() if p != 12})


# --------------------------------------------------------------------------- partial restores


def test_restore_one_id_a_list_or_a_filtered_subset_touches_only_those(
    store: Store, qdrant: QdrantClient, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, originals = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL, fields=["module"])
    store.drop_vector(name, "legacy")

    one = backups.restore(store, manifest.backup_id, ids=[7])
    assert (one.expected, one.restored, one.checksum_ok, one.verified) == (1, 1, None, True)
    assert set(legacy_vectors(qdrant, name)) == {7}

    several = backups.restore(store, manifest.backup_id, ids=[1, 2, 5, 99])
    assert (several.expected, several.restored) == (2, 2)
    # 5 had no legacy vector at backup time, 99 never existed
    assert several.not_in_backup == backups.IdSample(2, (5, 99))
    assert set(legacy_vectors(qdrant, name)) == {1, 2, 7}

    module = models.Filter(must=[models.FieldCondition(key="module", match=models.MatchValue(value="m0"))])
    subset = backups.restore(store, manifest.backup_id, flt=module)
    m0 = {pid for pid in originals if pid % 3 == 0}
    assert (subset.expected, subset.restored, subset.already) == (len(m0), len(m0), 0)
    want = {pid: v for pid, v in originals.items() if pid in m0 | {1, 2, 7}}
    assert_same_vectors(legacy_vectors(qdrant, name), want)

    # ids and a filter together: the intersection, and what is already back is left alone
    both = backups.restore(store, manifest.backup_id, ids=[1, 3, 4], flt=module)
    assert (both.expected, both.restored, both.already) == (1, 0, 1)
    assert both.not_in_backup.ids == (1, 4)


def test_force_rolls_back_a_vector_that_still_exists_with_its_model_fields(
    store: Store, qdrant: QdrantClient, names: Any
) -> None:
    """A re-embed under the same vector name: the vector exists, so rolling back needs force."""
    name = names("docs")
    ids = [str(uuid.UUID(int=i + 1)) for i in range(12)]
    originals = make_docs(qdrant, name, ids=ids)
    manifest = backups.create_backup(store, name, "legacy", model=MODEL, reason="re-embed")
    rng = np.random.default_rng(9)
    qdrant.update_vectors(
        name, [models.PointVectors(id=pid, vector={"legacy": rng.normal(size=DIM).tolist()}) for pid in ids]
    )
    qdrant.set_payload(name, {MODEL_FIELD: "legacy", VERSION_FIELD: 2}, ids)
    chosen = [uuid.UUID(ids[0]), ids[4].upper()]  # ids as a caller may hold them

    kept = backups.restore(store, manifest.backup_id, ids=chosen)
    assert (kept.restored, kept.already, kept.vector_created) == (0, 2, False)

    rolled = backups.restore(store, manifest.backup_id, ids=chosen, force=True, restore_model_fields=True)
    assert (rolled.restored, rolled.already, rolled.verified) == (2, 0, True)
    now = legacy_vectors(qdrant, name)
    for pid in ids:
        if pid in (ids[0], ids[4]):
            np.testing.assert_allclose(now[pid], originals[pid], atol=1e-5)
        else:
            assert not np.allclose(now[pid], originals[pid], atol=1e-3)
    stamps = {r.id: r.payload[VERSION_FIELD] for r in qdrant.retrieve(name, ids, with_payload=True)}
    assert stamps == {pid: 1 if pid in (ids[0], ids[4]) else 2 for pid in ids}


# --------------------------------------------------------------------------- interruptions


def test_a_backup_cut_off_midway_is_listed_incomplete_and_refused(
    qdrant: QdrantClient, names: Any, store: Store, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, _ = docs
    killed = interrupting(store, "upsert", after=2, where="__backup__")
    with pytest.raises(KeyboardInterrupt):
        backups.create_backup(killed, name, "legacy", model=MODEL, page_size=10)

    (listed,) = backups.list_backups(store, name)
    assert not listed.complete and listed.count == 0
    assert qdrant.count(listed.backup_collection).count == 9  # the first page made it (5 has no vector)
    with pytest.raises(MigrationError, match=rf"backup '{listed.backup_id}' .* is incomplete"):
        backups.restore(store, listed.backup_id)
    assert not backups.verify_backup(store, listed.backup_id)
    backups.delete_backup(store, listed.backup_id)  # and it can be cleaned up
    assert backups.list_backups(store, name) == []
    assert not qdrant.collection_exists(listed.backup_collection)


def test_a_restore_killed_midway_resumes_where_it_stopped(
    qdrant: QdrantClient, names: Any, store: Store, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, originals = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL)
    store.drop_vector(name, "legacy")
    killed = interrupting(store, "update_if_unchanged", after=2)  # the restore's writes, a page each
    with pytest.raises(KeyboardInterrupt):
        backups.restore(killed, manifest.backup_id, page_size=10)
    assert len(legacy_vectors(qdrant, name)) == 10

    report = backups.restore(store, manifest.backup_id, page_size=10)

    assert (report.restored, report.already, report.vector_created) == (28, 10, False)
    assert report.verified and report.checksum_ok
    assert_same_vectors(legacy_vectors(qdrant, name), originals)
    again = backups.restore(store, manifest.backup_id)
    assert (again.restored, again.already) == (0, 38)


# --------------------------------------------------------------------------- verification


def test_a_damaged_backup_is_detected(
    store: Store, qdrant: QdrantClient, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, _ = docs
    manifest = backups.create_backup(store, name, "legacy", model=MODEL)
    qdrant.update_vectors(
        manifest.backup_collection, [models.PointVectors(id=8, vector={"vector": [0.25] * DIM})]
    )
    assert not backups.verify_backup(store, manifest.backup_id)
    store.drop_vector(name, "legacy")
    with pytest.raises(MigrationError, match="changed since it was made"):
        backups.restore(store, manifest.backup_id)

    qdrant.delete(manifest.backup_collection, [9])
    with pytest.raises(MigrationError, match="holds 37 points, its manifest says 38; nothing was restored"):
        backups.restore(store, manifest.backup_id)


def test_checksum_ignores_order_and_sees_one_changed_value(
    store: Store, qdrant: QdrantClient, names: Any
) -> None:
    rng = np.random.default_rng(3)
    pairs = [(i, canonical_vector(rng.normal(size=DIM).tolist(), Distance.COSINE)) for i in range(20)]
    forward, backward = Checksum(), Checksum()
    for pid, vector in pairs:
        forward.add(pid, vector)
    for pid, vector in reversed(pairs):
        backward.add(pid, vector)
    assert (forward.hexdigest, forward.count) == (backward.hexdigest, 20)
    assert len(forward.hexdigest) == 16 and Checksum().hexdigest == "0" * 16
    # a Cosine vector and any positive multiple of it are the same vector
    np.testing.assert_array_equal(
        canonical_vector(pairs[0][1] * 4.0, Distance.COSINE), canonical_vector(pairs[0][1], Distance.COSINE)
    )

    # Same points inserted in opposite orders: same checksum; one value changed: another one.
    def collection(order: Sequence[int], tweak: int | None = None) -> str:
        coll = names(f"c{len(qdrant.get_collections().collections)}")
        qdrant.create_collection(
            coll, vectors_config={"legacy": models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
        )
        for i in order:
            vector = pairs[i][1].copy()
            if i == tweak:
                vector[0] += 0.01
            qdrant.upsert(
                coll, [models.PointStruct(id=i, vector={"legacy": vector.tolist()}, payload={"text": str(i)})]
            )
        return coll

    a = backups.create_backup(store, collection(range(20)), "legacy", model=MODEL, page_size=6)
    b = backups.create_backup(store, collection(range(19, -1, -1)), "legacy", model=MODEL, page_size=4)
    c = backups.create_backup(store, collection(range(20), tweak=11), "legacy", model=MODEL)
    assert a.checksum == b.checksum and a.count == b.count == 20
    assert c.checksum != a.checksum


# --------------------------------------------------------------------------- listing and deletion


def test_list_get_and_delete_backups(store: Store, qdrant: QdrantClient, names: Any) -> None:
    first, second = names("first"), names("second")
    make_docs(qdrant, first, 5)
    make_docs(qdrant, second, 5)
    clock = iter([1000.0, 1001.0, 2000.0, 2001.0, 3000.0, 3001.0])
    old = backups.create_backup(store, first, "legacy", model=MODEL, clock=lambda: next(clock))
    other = backups.create_backup(store, second, "legacy", model=MODEL, clock=lambda: next(clock))
    new = backups.create_backup(store, first, "modern", model="modern:v1:feedbeef", clock=lambda: next(clock))

    assert [m.backup_id for m in backups.list_backups(store)] == [
        new.backup_id,
        other.backup_id,
        old.backup_id,
    ]
    assert backups.list_backups(store, first) == [new, old]
    assert old.backup_id.startswith("19700101T001640Z-") and old.created_at == 1000.0
    assert Manifest.from_payload(new.to_dict()) == new

    def window(manifest: Manifest) -> str | None:
        return "the rollback window of 'docs' is open for 3h more" if manifest.vector == "legacy" else None

    with pytest.raises(RollbackWindowOpenError, match=r"rollback window of 'docs' is open .*--force"):
        backups.delete_backup(store, old.backup_id, protected=window)
    assert backups.verify_backup(store, old.backup_id)  # refused: nothing was touched

    backups.delete_backup(store, new.backup_id, protected=window)  # not needed by the window
    backups.delete_backup(store, old.backup_id, protected=window, force=True)
    assert backups.list_backups(store) == [other]
    for gone in (old, new):
        assert not qdrant.collection_exists(gone.backup_collection)
        with pytest.raises(MigrationError, match=f"no backup '{gone.backup_id}'"):
            backups.get_backup(store, gone.backup_id)
    with pytest.raises(MigrationError, match="no backup 'nope'"):
        backups.delete_backup(store, "nope")


def test_create_backup_refuses_what_it_cannot_back_up(
    store: Store, docs: tuple[str, dict[Any, NDArray[np.float64]]]
) -> None:
    name, _ = docs
    with pytest.raises(StoreError, match="'legacy', 'modern'") as err:
        backups.create_backup(store, name, "missing", model=MODEL)
    assert err.value.vector == "missing"
    with pytest.raises(MigrationError, match="'model'"):
        backups.create_backup(store, name, "legacy", model=MODEL, fields=["module", "model"])
    assert backups.list_backups(store) == []


# --------------------------------------------------------------------------- memory


def test_backup_memory_stays_flat_whatever_the_collection_size(
    backend: str, qdrant: QdrantClient, names: Any
) -> None:
    """Peak traced memory while backing up 2,000 points is about that of 200 (pages of 100).

    What is measured is what ``create_backup`` holds; holding every point would make the ratio about 10.
    In local mode the Qdrant "server" lives in this process, so two of its costs are not ours: the backup
    collection's storage (writes to it are counted and dropped here; on a server they leave the process)
    and local mode's scroll, which sorts every id on each call (a few hundred bytes a point, transient).
    """
    dim, page = 128, 100
    rng = np.random.default_rng(0)

    class Sink(StoreWrapper):
        written = 0

        def upsert(self, collection: str, points: Sequence[models.PointStruct], **kwargs: Any) -> Any:
            if backend == "local" and "__backup__" in collection:
                self.written += len(points)
                return None
            return super().upsert(collection, points, **kwargs)

    def peak(n: int) -> int:
        name = names(f"big{n}")
        qdrant.create_collection(
            name, vectors_config={"legacy": models.VectorParams(size=dim, distance=models.Distance.COSINE)}
        )
        for start in range(0, n, 500):
            qdrant.upsert(
                name,
                [
                    models.PointStruct(
                        id=i, vector={"legacy": rng.normal(size=dim).tolist()}, payload={"text": f"text {i}"}
                    )
                    for i in range(start, min(n, start + 500))
                ],
            )
        store = Sink(open_store(qdrant, control_collection=names("control")))
        store.ensure_control()
        tracemalloc.start()
        try:
            manifest = backups.create_backup(store, name, "legacy", model=MODEL, page_size=page)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert manifest.count == n
        return top

    small, large = peak(200), peak(2000)
    assert large / small <= 1.5, f"peak {large} bytes for 2,000 points vs {small} for 200"
