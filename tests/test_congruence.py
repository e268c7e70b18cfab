"""Congruence: the operations the library relies on, on local mode and on Qdrant's own engine.

Every other test runs on qdrant-client's local mode, a Python re-implementation of the server. Here each
scenario runs on local mode **and** on ``qdrant-edge-py`` (the server's shard code in-process, see
``engines.py``), and the results are compared: ids, vectors (within float32 tolerance), payloads, counts,
errors. Where the two differ, the engine is the reference: the test pins both behaviours and says which way
local mode diverges, and where the library depends on the behaviour, the library's own code
(``Store``, the filters it builds) runs on both engines too. Through ``engines.EdgeClient`` the ``Store``
takes its *server* code paths on the engine, so those paths, which local mode never runs, are tested
against the real shard code.

The engine here is one shard: it has no collection layer (no aliases, no vectorless collections, one
operation per update), so blue-green, the control collection and multi-shard error texts stay with the
server tier (``QDRANT_URL``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from engines import COLLECTION, EdgeEngine, Engine, LocalEngine, Rec
from qdrant_client import models

from lattice_qdrant.backfill import shard_of
from lattice_qdrant.errors import PointNotFoundError
from lattice_qdrant.kernels import vectors_match
from lattice_qdrant.spec import Distance
from lattice_qdrant.store import MODEL_FIELD, PAYLOAD_INDEXES, VERSION_FIELD, same_text, stamp_filter
from lattice_qdrant.strategies import InPlaceStrategy, ReembedStrategy

Pair = tuple[LocalEngine, EdgeEngine]


@pytest.fixture
def engines(tmp_path: Any) -> Iterator[Pair]:
    """Local mode and a fresh edge shard in its own directory; both closed at the end."""
    local, edge = LocalEngine(), EdgeEngine(tmp_path / "shard")
    try:
        yield local, edge
    finally:
        local.close()
        edge.close()


def both(engines: Pair, scenario: Callable[[Engine], Any]) -> tuple[Any, Any]:
    """Run one scenario on each engine: ``(local result, edge result)``."""
    local, edge = engines
    return scenario(local), scenario(edge)


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """``("ok", "")`` or ``("raised", "<type>: <message>")``: errors compared as data."""
    try:
        call()
    except Exception as exc:
        return "raised", f"{type(exc).__name__}: {exc}"
    return "ok", ""


def assert_same_points(a: dict[Any, Rec], b: dict[Any, Rec]) -> None:
    """Same ids, payloads and vector names; vectors equal within float32 tolerance."""
    assert sorted(a, key=str) == sorted(b, key=str)
    for pid in a:
        assert a[pid].payload == b[pid].payload, pid
        assert set(a[pid].vectors) == set(b[pid].vectors), pid
        for name, vector in a[pid].vectors.items():
            np.testing.assert_allclose(vector, b[pid].vectors[name], atol=1e-6, err_msg=f"{pid} {name}")


def stamps(i: int) -> dict[str, Any]:
    """Odd points hold model ``m1``, even ``m2``; the version cycles 0, 1, 2."""
    return {MODEL_FIELD: "m1" if i % 2 else "m2", VERSION_FIELD: i % 3}


def corpus(e: Engine, n: int = 12, *, target: bool = False) -> None:
    """Vector ``src`` (3-d cosine) on points 1..n with text and stamps; with ``target``, an empty ``dst``
    (2-d dot) added afterwards, as ``start`` adds it to a live collection; payload indexes as the library
    creates them (local mode ignores them)."""
    e.create({"src": (3, "Cosine")})
    for field, schema in PAYLOAD_INDEXES.items():
        e.index(field, schema.value)
    e.upsert(
        [(i, {"src": [1.0, float(i), 0.5]}, {"text": f"text {i}", **stamps(i)}) for i in range(1, n + 1)]
    )
    if target:
        e.add_vector("dst", 2, "Dot")


def has(name: str) -> models.HasVectorCondition:
    return models.HasVectorCondition(has_vector=name)


def dst_of(e: Engine) -> dict[Any, list[float] | None]:
    return {pid: r.vectors.get("dst") for pid, r in e.retrieve([r.id for r in e.scroll_all()]).items()}


# ----------------------------------------------------------------------------- conditional update_vectors


def test_update_vectors_conditional_on_has_vector(engines: Pair) -> None:
    """The backfill's "still lacking the target" clause: points that have it keep what they hold."""

    def scenario(e: Engine) -> Any:
        corpus(e, 6, target=True)
        e.update_vectors([(2, {"dst": [9.0, 9.0]})])
        e.update_vectors(
            [(i, {"dst": [float(i), 0.0]}) for i in range(1, 7)],
            condition=models.Filter(must_not=[has("dst")]),
        )
        return dst_of(e)

    local, edge = both(engines, scenario)
    assert (
        local
        == edge
        == {1: [1.0, 0.0], 2: [9.0, 9.0], 3: [3.0, 0.0], 4: [4.0, 0.0], 5: [5.0, 0.0], 6: [6.0, 0.0]}
    )


def test_update_vectors_conditional_on_has_id(engines: Pair) -> None:
    """A ``has_id`` condition narrows the write to those ids; the other points of the batch are skipped."""

    def scenario(e: Engine) -> Any:
        corpus(e, 4, target=True)
        e.update_vectors(
            [(i, {"dst": [1.0, 1.0]}) for i in range(1, 5)],
            condition=models.Filter(must=[models.HasIdCondition(has_id=[2, 3])]),
        )
        return dst_of(e)

    local, edge = both(engines, scenario)
    assert local == edge == {1: None, 2: [1.0, 1.0], 3: [1.0, 1.0], 4: None}


def test_update_vectors_conditional_on_the_stamp_fields(engines: Pair) -> None:
    """``stamp_filter`` (keyword ``embedding_model_id``, integer ``embedding_version``, both indexed on the
    engine) selects exactly the points stamped with that model, as a condition and in ``must_not``."""

    def scenario(e: Engine) -> Any:
        corpus(e, 12, target=True)
        e.update_vectors([(i, {"dst": [1.0, 0.0]}) for i in range(1, 13)], condition=stamp_filter("m1", 1))
        e.update_vectors(
            [(i, {"dst": [0.0, 1.0]}) for i in range(1, 13)],
            condition=models.Filter(must_not=[stamp_filter("m1", 1), has("dst")]),
        )
        return dst_of(e), e.indexes()

    (local, local_indexes), (edge, edge_indexes) = both(engines, scenario)
    assert local == edge
    assert [pid for pid, v in edge.items() if v == [1.0, 0.0]] == [1, 7]
    assert all(v == [0.0, 1.0] for pid, v in edge.items() if pid not in (1, 7))
    # local mode keeps no payload index; the engine has both, typed as the library asked
    assert local_indexes == {}
    assert edge_indexes == {MODEL_FIELD: "keyword", VERSION_FIELD: "integer"}


@pytest.mark.parametrize("text_index", [False, True], ids=["no-index", "full-text-index"])
def test_update_vectors_conditional_on_the_text(engines: Pair, text_index: bool) -> None:
    """``same_text`` (the backfill's "still holds the text it was embedded from") matches the whole value
    exactly, also when the user has a full-text index on the field (a ``match: value`` is not a text
    match); ``None`` means the point has no text (missing, ``null`` or ``[]``, not ``""``)."""
    texts: dict[int, Any] = {
        1: "The cat sat on the mat",
        2: "the cat",
        3: "The cat sat on the mat too",
        4: None,
    }
    payloads: dict[int, dict[str, Any]] = {
        1: {"text": texts[1]},
        2: {"text": texts[2]},
        3: {"text": texts[3]},
        4: {"text": None},
        5: {},
        6: {"text": []},
        7: {"text": ""},
    }

    def scenario(e: Engine) -> Any:
        e.create({"src": (2, "Dot")})
        if text_index:
            e.index("text", "text")
        e.upsert([(i, {"src": [1.0, 1.0]}, payloads[i]) for i in payloads])
        e.add_vector("dst", 2, "Dot")
        asked = {1: texts[1], 2: texts[1], 3: texts[1], 4: None, 5: None, 6: None, 7: None}
        e.update_vectors(
            [(i, {"dst": [2.0, 2.0]}) for i in asked],
            condition=models.Filter(should=[same_text(i, "text", asked[i]) for i in asked]),
        )
        return sorted(pid for pid, v in dst_of(e).items() if v is not None)

    local, edge = both(engines, scenario)
    assert local == edge == [1, 4, 5, 6]


# ----------------------------------------------------------------------------- upserts with update_mode


def test_upsert_insert_only(engines: Pair) -> None:
    """``INSERT_ONLY`` (``insert_record``'s create-if-absent) writes new ids and leaves existing points
    whole; a filter does not change that."""

    def scenario(e: Engine) -> Any:
        corpus(e, 3)
        new = {"src": [0.0, 0.0, 1.0]}
        e.upsert([(1, new, {"x": 1}), (50, new, {"x": 1})], mode=models.UpdateMode.INSERT_ONLY)
        e.upsert(
            [(2, new, {"x": 2}), (51, new, {"x": 2})],
            mode=models.UpdateMode.INSERT_ONLY,
            condition=stamp_filter("m2", 2),  # point 2 matches it: still not overwritten
        )
        return e.retrieve([1, 2, 3, 50, 51])

    local, edge = both(engines, scenario)
    assert_same_points(local, edge)
    assert edge[1].payload == {"text": "text 1", **stamps(1)}
    assert edge[2].payload == {"text": "text 2", **stamps(2)}
    assert (edge[50].payload, edge[51].payload) == ({"x": 1}, {"x": 2})


def test_upsert_update_only(engines: Pair) -> None:
    """``UPDATE_ONLY`` never inserts; with a filter (``replace_record``'s compare-and-set on the epoch)
    it replaces only the existing points that match."""

    def scenario(e: Engine) -> Any:
        e.create({"v": (2, "Dot")})
        e.upsert([(i, {"v": [1.0, 0.0]}, {"epoch": 1, "who": "first"}) for i in (1, 2)])
        e.upsert([(2, {"v": [1.0, 0.0]}, {"epoch": 2, "who": "first"})])  # 2 moved on meanwhile
        e.upsert([(3, {"v": [0.0, 1.0]}, {"who": "nobody"})], mode=models.UpdateMode.UPDATE_ONLY)
        e.upsert(
            [(i, {"v": [0.0, 1.0]}, {"epoch": 2, "who": "second"}) for i in (1, 2, 4)],
            condition=models.Filter(
                must=[models.FieldCondition(key="epoch", match=models.MatchValue(value=1))]
            ),
            mode=models.UpdateMode.UPDATE_ONLY,
        )
        return e.retrieve([1, 2, 3, 4])

    local, edge = both(engines, scenario)
    assert_same_points(local, edge)
    assert sorted(edge) == [1, 2]
    assert edge[1].payload == {"epoch": 2, "who": "second"}
    assert edge[2].payload == {"epoch": 2, "who": "first"}


def test_conditional_upsert_without_a_mode_still_inserts_missing_ids(engines: Pair) -> None:
    """A filter alone skips existing points that do not match, but inserts ids that do not exist."""

    def scenario(e: Engine) -> Any:
        corpus(e, 3)
        new = {"src": [0.0, 0.0, 1.0]}
        e.upsert(
            [(1, new, {"x": 1}), (2, new, {"x": 2}), (50, new, {"x": 50})], condition=stamp_filter("m1", 1)
        )
        return e.retrieve([1, 2, 50])

    local, edge = both(engines, scenario)
    assert_same_points(local, edge)
    assert (edge[1].payload, edge[50].payload) == ({"x": 1}, {"x": 50})
    assert edge[2].payload == {"text": "text 2", **stamps(2)}


def test_upsert_replaces_the_whole_point(engines: Pair) -> None:
    """An upsert drops the vectors it does not carry, and a point upserted without payload loses it (why
    dual-writes send every named vector in the same upsert)."""

    def scenario(e: Engine) -> Any:
        corpus(e, 2, target=True)
        e.update_vectors([(1, {"dst": [1.0, 1.0]}), (2, {"dst": [1.0, 1.0]})])
        e.upsert([(1, {"src": [0.0, 1.0, 0.0]}, None), (2, {"src": [0.0, 1.0, 0.0], "dst": [3.0, 3.0]}, {})])
        return e.retrieve([1, 2])

    local, edge = both(engines, scenario)
    assert_same_points(local, edge)
    assert edge[1] == Rec(1, {"src": [0.0, 1.0, 0.0]}, {})
    assert edge[2].vectors["dst"] == [3.0, 3.0]


def test_a_batch_with_the_same_id_twice(engines: Pair) -> None:
    """The later value of a repeated id wins, for upserts and for the same named vector in
    ``update_vectors``; different vectors of one id in one batch are all written."""

    def scenario(e: Engine) -> Any:
        corpus(e, 3, target=True)
        e.update_vectors([(1, {"dst": [1.0, 1.0]}), (1, {"dst": [2.0, 2.0]}), (2, {"dst": [1.0, 1.0]})])
        e.update_vectors([(2, {"src": [0.0, 0.0, 1.0]})])
        e.upsert([(3, {"src": [0.0, 1.0, 0.0]}, {"x": 1}), (3, {"src": [1.0, 0.0, 0.0]}, {"x": 2})])
        return e.retrieve([1, 2, 3])

    local, edge = both(engines, scenario)
    assert_same_points(local, edge)
    assert edge[1].vectors["dst"] == [2.0, 2.0]
    assert edge[3] == Rec(3, {"src": [1.0, 0.0, 0.0]}, {"x": 2})


# ----------------------------------------------------------------------------- named vectors on a live shard


def test_adding_and_dropping_a_named_vector_on_a_shard_with_points(engines: Pair) -> None:
    """A new vector has no value on existing points until written (``has_vector`` count 0); dropping it
    removes every value, and adding it again starts empty. The same config again is a no-op, another
    config an error, dropping a missing name a no-op."""

    def scenario(e: Engine) -> Any:
        corpus(e, 5)
        out: dict[str, Any] = {"before": e.count(models.Filter(must=[has("dst")]))}
        e.add_vector("dst", 2, "Dot")
        out["added"] = (
            e.count(models.Filter(must=[has("dst")])),
            e.count(models.Filter(must_not=[has("dst")])),
        )
        out["values"] = dst_of(e)
        out["again"] = outcome(lambda: e.add_vector("dst", 2, "Dot"))
        out["other config"] = outcome(lambda: e.add_vector("dst", 3, "Dot"))[0]
        e.update_vectors([(1, {"dst": [1.0, 2.0]}), (2, {"dst": [3.0, 4.0]})])
        out["written"] = e.count(models.Filter(must=[has("dst")]))
        e.drop_vector("dst")
        out["dropped"] = (e.count(models.Filter(must=[has("dst")])), set(e.retrieve([1])[1].vectors))
        out["drop missing"] = outcome(lambda: e.drop_vector("never-there"))
        e.add_vector("dst", 2, "Dot")
        out["re-added"] = e.count(models.Filter(must=[has("dst")]))
        out["unknown name"] = outcome(lambda: e.update_vectors([(1, {"nope": [1.0, 2.0]})]))[0]
        out["wrong size"] = outcome(lambda: e.update_vectors([(1, {"dst": [1.0, 2.0, 3.0]})]))[0]
        return out

    local, edge = both(engines, scenario)
    assert local == edge
    assert edge["added"] == (0, 5)
    assert set(edge["values"].values()) == {None}
    assert edge["again"] == edge["drop missing"] == ("ok", "")
    assert edge["other config"] == edge["unknown name"] == edge["wrong size"] == "raised"
    assert (edge["written"], edge["dropped"], edge["re-added"]) == (2, (0, {"src"}), 0)


def test_has_vector_counts_are_exact(engines: Pair) -> None:
    """``has_vector`` and ``must_not has_vector`` counts add up to the total, on their own and combined
    with a payload condition; an unknown vector name matches nothing (so ``must_not`` matches all); the
    library's ``Store.coverage`` gives the same numbers on both."""

    def scenario(e: Engine) -> Any:
        corpus(e, 40, target=True)
        e.update_vectors([(i, {"dst": [1.0, 0.0]}) for i in range(1, 41, 3)])
        m1 = models.FieldCondition(key=MODEL_FIELD, match=models.MatchValue(value="m1"))
        coverage = e.store().coverage(COLLECTION, "dst")
        return (
            e.count(models.Filter(must=[has("dst")])),
            e.count(models.Filter(must_not=[has("dst")])),
            e.count(models.Filter(must=[m1], must_not=[has("dst")])),
            e.count(models.Filter(must=[has("unknown")])),
            e.count(models.Filter(must_not=[has("unknown")])),
            (coverage.covered, coverage.total),
        )

    local, edge = both(engines, scenario)
    assert local == edge == (14, 26, 13, 0, 40, (14, 40))


def test_the_unnamed_vector(engines: Pair) -> None:
    """``""`` is the unnamed vector's name in ``update_vectors``, ``has_vector`` and queries; adding a named
    vector beside it keeps its values under ``""`` (the library still refuses the in-place strategy on
    such a collection, by choice). A point with only ``""`` comes back as a plain list on both."""

    def scenario(e: Engine) -> Any:
        e.create({"": (2, "Cosine")})
        e.upsert([(1, {"": [3.0, 4.0]}, {"k": 1}), (2, {"": [1.0, 0.0]}, {"k": 2})])
        e.update_vectors([(2, {"": [0.0, 2.0]})])
        found = (e.count(models.Filter(must=[has("")])), e.query([0.0, 1.0], using="", limit=2))
        e.add_vector("named", 2, "Dot")
        e.update_vectors([(1, {"named": [1.0, 1.0]})])
        return found, e.retrieve([1, 2]), e.count(models.Filter(must=[has("")]))

    (local_found, local, local_count), (edge_found, edge, edge_count) = both(engines, scenario)
    assert_same_points(local, edge)
    assert local_found[0] == edge_found[0] == 2
    assert [pid for pid, _ in local_found[1]] == [pid for pid, _ in edge_found[1]] == [2, 1]
    np.testing.assert_allclose([s for _, s in local_found[1]], [s for _, s in edge_found[1]], atol=1e-6)
    assert set(edge[1].vectors) == {"", "named"} and set(edge[2].vectors) == {""}
    assert local_count == edge_count == 2


def test_cosine_vectors_are_stored_normalised(engines: Pair) -> None:
    """Cosine vectors come back normalised (a zero vector stays zero), Dot and Euclid as written; scores
    agree. The library's write check (``vectors_match`` as ``Store`` uses it) accepts the stored cosine
    vector as the one it wrote."""
    written = {1: [3.0, 4.0], 2: [1.0, 0.0], 3: [0.0, 0.0]}

    def scenario(e: Engine) -> Any:
        e.create({"c": (2, "Cosine"), "d": (2, "Dot"), "u": (2, "Euclid")})
        e.upsert([(i, {"c": v, "d": v, "u": v}, None) for i, v in written.items()])
        queries = {name: e.query([2.0, 0.5], using=name) for name in ("c", "d", "u")}
        return e.retrieve(list(written)), queries

    (local, local_q), (edge, edge_q) = both(engines, scenario)
    assert_same_points(local, edge)
    np.testing.assert_allclose(edge[1].vectors["c"], [0.6, 0.8], atol=1e-6)
    assert edge[3].vectors["c"] == [0.0, 0.0]
    assert all(edge[i].vectors[n] == written[i] for i in written for n in ("d", "u"))
    for name in ("c", "d", "u"):
        assert [pid for pid, _ in local_q[name]] == [pid for pid, _ in edge_q[name]]
        np.testing.assert_allclose([s for _, s in local_q[name]], [s for _, s in edge_q[name]], rtol=1e-5)
    for i in (1, 2):
        assert vectors_match(edge[i].vectors["c"], written[i], Distance.COSINE, 1e-5)[0]


def test_query_with_the_routing_filters(engines: Pair) -> None:
    """The queries the routed client sends during a re-embed: the same vector, restricted to the points
    holding the target model or to the others; same ids, same order, same scores."""
    held = stamp_filter("m1", 1)

    def scenario(e: Engine) -> Any:
        corpus(e, 30)
        return [
            e.query([1.0, 5.0, 0.5], using="src", limit=5, flt=flt)
            for flt in (None, held, models.Filter(must_not=[held]))
        ]

    local, edge = both(engines, scenario)
    for mine, theirs in zip(local, edge, strict=True):
        assert [pid for pid, _ in mine] == [pid for pid, _ in theirs]
        np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], rtol=1e-5)
    assert [pid for pid, _ in edge[0]] == [5, 6, 4, 7, 8]
    assert all(pid in (1, 7, 13, 19, 25) for pid, _ in edge[1])
    assert all(pid not in (1, 7, 13, 19, 25) for pid, _ in edge[2])


# ----------------------------------------------------------------------------- filters


def test_filters_the_library_builds(engines: Pair) -> None:
    """The stamp filters the library composes: ``stamp_filter``, its negation (points without any stamp
    match ``must_not``), a double negation (restore's ``unless``), the backfill's work filter for a
    re-embed and an in-place migration, and a filter on a missing stamp value."""
    reembed: Any = SimpleNamespace(target=SimpleNamespace(model_id="m1", version=1), target_vector="src")
    in_place: Any = SimpleNamespace(target=SimpleNamespace(model_id="m1", version=1), target_vector="dst")
    held = stamp_filter("m1", 1)
    filters = {
        "held": held,
        "not held": models.Filter(must_not=[held]),
        "not not held": models.Filter(must_not=[models.Filter(must_not=[held])]),
        "reembed work": ReembedStrategy(reembed).todo(),
        "in-place work": InPlaceStrategy(in_place).todo(),
        "in-place work, m2 first": InPlaceStrategy(in_place).todo(
            also=[models.FieldCondition(key=MODEL_FIELD, match=models.MatchValue(value="m2"))],
        ),
        "version 0": models.Filter(
            must=[models.FieldCondition(key=VERSION_FIELD, match=models.MatchValue(value=0))]
        ),
        "model m3": stamp_filter("m3", 1),
    }

    def scenario(e: Engine) -> Any:
        corpus(e, 12, target=True)
        e.upsert([(13, {"src": [1.0, 1.0, 1.0]}, {"text": "no stamp"})])
        e.update_vectors([(i, {"dst": [1.0, 0.0]}) for i in (1, 2, 3)])
        return {name: e.ids(flt) for name, flt in filters.items()}

    local, edge = both(engines, scenario)
    assert local == edge
    assert edge["held"] == edge["not not held"] == [1, 7]
    assert edge["not held"] == edge["reembed work"] == [i for i in range(1, 14) if i not in (1, 7)]
    assert edge["in-place work"] == list(range(4, 14))
    assert edge["in-place work, m2 first"] == [4, 6, 8, 10, 12]
    assert edge["version 0"] == [3, 6, 9, 12]
    assert edge["model m3"] == []


def test_has_id_with_a_malformed_id(engines: Pair) -> None:
    """Divergence: local mode lets an id that is neither an integer nor a UUID (``"7"`` as text) match
    nothing; the engine refuses the filter (a server answers 4xx). The CLI turns digit strings into ints."""

    def scenario(e: Engine) -> Any:
        corpus(e, 8)
        return outcome(lambda: e.count(models.Filter(must=[models.HasIdCondition(has_id=["7"])])))

    local, edge = both(engines, scenario)
    assert local == ("ok", "")
    assert edge[0] == "raised" and "UUID" in edge[1]


# ----------------------------------------------------------------------------- scroll and slices


def test_scroll_order_and_offsets(engines: Pair) -> None:
    """Scroll is in id order, integers before UUIDs (UUIDs by value, given back in canonical lower case);
    the next offset is the first id not returned, ``None`` when a page ends exactly at the last point."""
    uuids = [str(uuid.UUID(int=n * 0x9E3779B97F4A7C15 % 2**128)) for n in range(1, 6)]

    def scenario(e: Engine) -> Any:
        e.create({"v": (2, "Dot")})
        ids: list[Any] = [9, *uuids[:3], 1, uuids[3].upper(), 5, uuids[4], 3]
        e.upsert([(pid, {"v": [1.0, 0.0]}, None) for pid in ids])
        pages = []
        offset: Any = None
        while True:
            records, offset = e.scroll(limit=3, offset=offset, vectors=False)
            pages.append(([r.id for r in records], offset))
            if offset is None:
                return pages, e.scroll(limit=9, vectors=False)[1]

    local, edge = both(engines, scenario)
    assert local == edge
    everything = [1, 3, 5, 9, *sorted(uuids)]
    pages, end = edge
    assert [pid for page, _ in pages for pid in page] == everything
    assert [offset for _, offset in pages] == [everything[3], everything[6], None]
    assert end is None


def test_scroll_pages_while_writing_them(engines: Pair) -> None:
    """The backfill's reader: ``Store.iter_points`` over "still lacking the target" while each page gets
    written before the next is read. The offset is an id, so written points leaving the filter do not
    shift the pages: every point is read once, in id order, on both."""

    def scenario(e: Engine) -> Any:
        corpus(e, 30, target=True)
        store = e.store()
        seen: list[list[Any]] = []
        for page in store.iter_points(COLLECTION, flt=models.Filter(must_not=[has("dst")]), page_size=7):
            seen.append([r.id for r in page])
            e.update_vectors([(r.id, {"dst": [1.0, 1.0]}) for r in page])
        return seen, e.count(models.Filter(must_not=[has("dst")]))

    local, edge = both(engines, scenario)
    assert local == edge
    seen, left = edge
    assert [pid for page in seen for pid in page] == list(range(1, 31))
    assert [len(page) for page in seen] == [7, 7, 7, 7, 2]
    assert left == 0


def test_slices_split_the_points_the_same_way(engines: Pair) -> None:
    """``SliceCondition``: ``N`` slices are disjoint, their union is every point, and local mode's SipHash
    puts each id (integer or UUID) in the same slice as the engine, so the backfill's ``--shard I/N``
    reads the same share in local mode as from a server (1.19+). Against older servers it splits by
    ``shard_of``, its own hash: another partition, which is fine since all workers of a run use one
    method."""
    uuids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{n}")) for n in range(40)]

    def scenario(e: Engine) -> Any:
        e.create({"v": (2, "Dot")})
        e.upsert([(pid, {"v": [1.0, 0.0]}, None) for pid in [*range(1, 61), *uuids]])
        return [
            e.ids(models.Filter(must=[models.SliceCondition(slice=models.Slice(total=3, index=i))]))
            for i in range(3)
        ]

    local, edge = both(engines, scenario)
    assert local == edge
    everything = [*range(1, 61), *uuids]
    assert sorted(map(str, (pid for part in edge for pid in part))) == sorted(map(str, everything))
    assert all(len(part) > 10 for part in edge)
    ours = [[pid for pid in everything if shard_of(pid, 3) == i] for i in range(3)]
    assert sorted(map(str, (pid for part in ours for pid in part))) == sorted(map(str, everything))
    assert [set(map(str, p)) for p in ours] != [set(map(str, p)) for p in edge]  # a different hash


# ----------------------------------------------------------------------------- a batch with a missing point


def test_update_vectors_with_a_missing_point_in_a_small_batch(engines: Pair) -> None:
    """Up to 32 points: both write every existing point of the batch, then raise, also when the condition
    excludes the missing id. Local mode raises a bare
    ``KeyError(id)``; the engine ``Exception("No point with id N")`` (a server wraps it as HTTP 404
    ``Not found: No point with id N found``)."""

    def scenario(e: Engine) -> Any:
        corpus(e, 6, target=True)
        raised = outcome(lambda: e.update_vectors([(i, {"dst": [1.0, 1.0]}) for i in (1, 2, 999, 3)]))
        # a condition never removes a missing id, even one that excludes it
        excluded = outcome(
            lambda: e.update_vectors(
                [(i, {"dst": [2.0, 2.0]}) for i in (4, 999)],
                condition=models.Filter(must=[models.HasIdCondition(has_id=[4])]),
            )
        )
        return raised, excluded[0], sorted(pid for pid, v in dst_of(e).items() if v is not None)

    (local_raised, local_excluded, local), (edge_raised, edge_excluded, edge) = both(engines, scenario)
    assert local == edge == [1, 2, 3, 4]
    assert local_excluded == edge_excluded == "raised"
    assert local_raised == ("raised", "KeyError: 999")
    assert edge_raised == ("raised", "Exception: No point with id 999")


def test_update_vectors_with_a_missing_point_in_a_large_batch(engines: Pair) -> None:
    """Divergence: the engine writes a batch in chunks of 32 ids taken in hash order and stops at the
    chunk holding the missing id, so which points were written is not predictable (a whole number of
    chunks minus the missing one); local mode writes every other point. ``update_vectors`` is not atomic
    either way. The library's recovery (``Store.update_if_unchanged`` writes the batch again without the
    deleted ids) ends with every existing point written, on both."""

    def scenario(e: Engine) -> Any:
        corpus(e, 100, target=True)
        ids: list[Any] = list(range(1, 101))
        ids.insert(10, 999)
        raised = outcome(lambda: e.update_vectors([(i, {"dst": [1.0, 1.0]}) for i in ids]))
        written = e.count(models.Filter(must=[has("dst")]))
        e.drop_vector("dst")
        e.add_vector("dst", 2, "Dot")
        e.delete([50])
        pending = {i: (f"text {i}", {"dst": [float(i), 1.0]}) for i in range(1, 101)}
        kept = e.store().update_if_unchanged(COLLECTION, "text", pending, lacking="dst")
        return raised[0], written, sorted(kept), dst_of(e)

    local, edge = both(engines, scenario)
    assert local[0] == edge[0] == "raised"
    assert local[1] == 100
    assert edge[1] in (31, 63, 95, 100)  # chunks of 32 before and including the one that failed
    existing = [i for i in range(1, 101) if i != 50]
    assert local[2] == edge[2] == existing
    assert local[3] == edge[3] == {i: [float(i), 1.0] for i in existing}


def test_a_target_write_with_its_stamp_stamps_the_same_points_on_both(engines: Pair) -> None:
    """``Store.update_if_unchanged`` with a stamp: on the engine one ``batch_update_points`` (the
    conditional write, then a stamp filtered on the ids holding the vector), in local mode the local
    store's own check and a stamp by ids. The same points end written and stamped: those whose condition
    held, and a point holding the vector already (the application's); not a point whose text moved on,
    nor a missing one (the batch is written again without it)."""

    def scenario(e: Engine) -> Any:
        corpus(e, 8, target=True)
        e.update_vectors([(3, {"dst": [9.0, 9.0]})])  # the application's
        e.set_payload({"text": "moved on"}, ids=[5])
        pending = {i: (f"text {i}", {"dst": [float(i), 1.0]}) for i in (1, 2, 3, 4, 5, 6, 999)}
        kept = e.store().update_if_unchanged(COLLECTION, "text", pending, lacking="dst", stamp=("m9", 7))
        points = e.retrieve(list(range(1, 9)))
        return (
            sorted(kept),
            dst_of(e),
            {pid: (r.payload[MODEL_FIELD], r.payload[VERSION_FIELD]) for pid, r in points.items()},
        )

    local, edge = both(engines, scenario)
    assert local[0] == edge[0] == [1, 2, 3, 4, 5, 6]
    assert local[1] == edge[1]
    assert local[1] == {1: [1.0, 1.0], 2: [2.0, 1.0], 3: [9.0, 9.0], 4: [4.0, 1.0], 5: None, 6: [6.0, 1.0],
                        7: None, 8: None}  # fmt: skip
    assert local[2] == edge[2]
    assert local[2] == {
        i: ("m9", 7) if i in (1, 2, 3, 4, 6) else tuple(stamps(i).values()) for i in range(1, 9)
    }


def test_set_payload_by_ids_with_a_missing_point(engines: Pair) -> None:
    """A payload write by ids writes the existing points, then raises for the missing one (as
    ``update_vectors`` does); a filter selector skips nothing and raises nothing."""

    def scenario(e: Engine) -> Any:
        corpus(e, 4)
        raised = outcome(lambda: e.set_payload({"z": 1}, ids=[1, 999, 2]))[0]
        e.set_payload({"y": 1}, flt=models.Filter(must=[models.HasIdCondition(has_id=[3, 998])]))
        e.delete_payload(["text"], flt=stamp_filter("m2", 1))
        return raised, {pid: r.payload for pid, r in e.retrieve([1, 2, 3, 4]).items()}

    local, edge = both(engines, scenario)
    assert local == edge
    raised, payloads = edge
    assert raised == "raised"
    assert [pid for pid, p in payloads.items() if "z" in p] == [1, 2]
    assert [pid for pid, p in payloads.items() if "y" in p] == [3]
    assert payloads[4] == stamps(4)


def test_store_names_the_missing_point(engines: Pair) -> None:
    """``Store`` turns a missing point into ``PointNotFoundError`` with the caller's id, from local mode's
    ``KeyError`` and from the server's 404 text around the engine's message."""

    def scenario(e: Engine) -> Any:
        corpus(e, 3, target=True)
        points = [models.PointVectors(id=i, vector={"dst": [1.0, 1.0]}) for i in (1, 999, 2)]
        with pytest.raises(PointNotFoundError) as caught:
            e.store().update_vectors(COLLECTION, points)
        return caught.value.point_ids

    local, edge = both(engines, scenario)
    assert local == edge == [999]


# ----------------------------------------------------------------------------- the Store's write paths


def test_write_stamped_local_path_and_server_path_agree(engines: Pair) -> None:
    """``Store.write_stamped`` (re-embed: vector and model stamp together): its local-mode path on local
    mode and its server path (one ``batch_update_points``: conditional ``update_vectors``, then the stamp by
    a filter) on the engine write and stamp the same points: not the one whose text changed, not those the
    ``unless`` filter excludes, not a deleted one (the batch is written again without it)."""

    def scenario(e: Engine) -> Any:
        corpus(e, 40)
        e.set_payload({"text": "changed"}, ids=[4])
        e.delete([20])
        pending = {i: (f"text {i}", [0.5, 1.0, float(i)]) for i in range(1, 41)}
        store = e.store()
        written = store.write_stamped(
            COLLECTION,
            "src",
            "text",
            pending,
            ("m9", 3),
            distance=Distance.COSINE,
            unless=stamp_filter("m1", 1),
        )
        return sorted(written), e.retrieve(range(1, 41)), getattr(store.client, "requests", None)

    (local_written, local, _), (edge_written, edge, requests) = both(engines, scenario)
    assert_same_points(local, edge)
    assert (
        local_written
        == edge_written
        == [i for i in range(1, 41) if i not in (1, 4, 7, 13, 19, 20, 25, 31, 37)]
    )
    assert sorted(pid for pid, r in edge.items() if r.payload.get(MODEL_FIELD) == "m9") == edge_written
    # the server path: one batch per try, the first one failing on the deleted point
    batch = ("batch_update_points", ["UpdateVectorsOperation", "SetPayloadOperation"])
    assert [r for r in requests if r[0] != "set_payload"] == [batch, batch]


def test_write_stamped_when_the_stored_vector_already_is_ours(engines: Pair) -> None:
    """Divergence of the library's own two paths, not of the engines: the local path tells what it wrote by
    reading the vectors back, so a point the condition skipped whose stored vector already equals the new
    one is stamped and reported; the server path stamps by the condition and skips it. Harmless: such a
    point already holds that vector (the stamp is what it would get if it were written)."""

    def scenario(e: Engine) -> Any:
        corpus(e, 3)
        pending = {i: (f"text {i}", [1.0, float(i), 0.5]) for i in (1, 2, 3)}  # = what the points hold
        return sorted(
            e.store().write_stamped(
                COLLECTION,
                "src",
                "text",
                pending,
                ("m9", 3),
                distance=Distance.COSINE,
                unless=stamp_filter("m1", 1),
            )
        )

    local, edge = both(engines, scenario)
    assert local == [1, 2, 3]
    assert edge == [2, 3]


# ----------------------------------------------------------------------------- float16 storage


def _float16_scenario(e: Engine) -> Any:
    rng = np.random.default_rng(7)
    written = {i: rng.normal(size=8).tolist() for i in range(1, 6)}
    e.create({"v": (8, "Dot")}, datatype="float16")
    e.upsert([(i, {"v": v}, None) for i, v in written.items()])
    return written, e.retrieve(list(written))


def test_float16_vectors_are_stored_rounded(engines: Pair) -> None:
    """Divergence: a vector stored as ``float16`` comes back rounded to 11 significant bits on the engine
    (relative error up to 5e-4); local mode keeps float32 whatever the datatype."""
    (written, local), (_, edge) = both(engines, _float16_scenario)
    for i, v in written.items():
        np.testing.assert_allclose(local[i].vectors["v"], v, rtol=1e-6)
        assert edge[i].vectors["v"] == np.asarray(v, dtype=np.float16).astype(np.float64).tolist()
        assert not vectors_match(edge[i].vectors["v"], v, Distance.DOT, 1e-5)[0]  # float32's tolerance


def test_write_stamped_on_float16_vectors(engines: Pair) -> None:
    """A re-embed of a collection storing ``Dot`` vectors as ``float16``: the engine stores the written
    vectors rounded, and the ``Store`` still recognises them as its own (it reported none written there)."""

    def scenario(e: Engine) -> Any:
        rng = np.random.default_rng(3)
        e.create({"v": (8, "Dot")}, datatype="float16")
        e.upsert([(i, {"v": rng.normal(size=8).tolist()}, {"text": f"text {i}"}) for i in range(1, 6)])
        pending = {i: (f"text {i}", rng.normal(size=8).tolist()) for i in range(1, 6)}
        written = e.store().write_stamped(COLLECTION, "v", "text", pending, ("m9", 3), distance=Distance.DOT)
        return sorted(written), sorted(
            pid for pid, r in e.retrieve(range(1, 6)).items() if r.payload.get(MODEL_FIELD)
        )

    local, edge = both(engines, scenario)
    assert local == edge == ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])


def test_backfill_writes_on_a_float16_target_vector(engines: Pair) -> None:
    """The in-place backfill's write into a target vector stored as ``float16`` (one the user created
    beforehand): every point counts as written on the engine too."""
    target = SimpleNamespace(model_id="m9", version=3, distance=Distance.EUCLID)
    plan: Any = SimpleNamespace(collection=COLLECTION, target=target, target_vector="dst", text_field="text")

    def scenario(e: Engine) -> Any:
        rng = np.random.default_rng(5)
        e.create({"src": (8, "Dot"), "dst": (8, "Euclid")}, datatype="float16")
        e.upsert([(i, {"src": rng.normal(size=8).tolist()}, {"text": f"text {i}"}) for i in range(1, 6)])
        pending = {i: (f"text {i}", rng.normal(size=8).astype(np.float32)) for i in range(1, 6)}
        return sorted(InPlaceStrategy(plan).write_target(e.store(), pending))

    local, edge = both(engines, scenario)
    assert local == edge == [1, 2, 3, 4, 5]
