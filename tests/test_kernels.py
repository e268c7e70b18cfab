"""Rescoring kernels: simsimd agrees with the numpy reference, and both agree with Qdrant's own scores.

Tolerances, relative to the size of the numbers involved (``scale``: ``|q|·|c|`` for Cosine and Dot,
``|q| + |c|`` for Euclid, ``Σ|q| + Σ|c|`` for Manhattan), per dtype:

* ``float32``: ``rtol=1e-4`` plus ``atol=1e-6·scale`` (observed: ~1e-8·scale).
* ``float16``: ``rtol=1e-4`` plus ``atol=1e-5·scale``. Both backends score the same half-precision
  numbers and accumulate in float32 (simsimd's F16C kernels do; where it would use its AVX512-FP16
  kernels, which accumulate in float16 and err by ~1e-3, float16 is converted to float32 first), so
  only a little looser than float32. The ``half_kernels`` fixture runs these cases with the
  ``sapphire`` capability on and off.
* ``int8`` / ``uint8``: the arithmetic is exact integers; only cosine's square roots and the float32
  result round, so the float32 tolerance applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import simsimd
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from benchmarks import kernels as bench_kernels
from lattice_qdrant import kernels
from lattice_qdrant.errors import ConfigError, VectorValidationError
from lattice_qdrant.kernels import higher_is_better, pairwise, rank, scores, to_matrix
from lattice_qdrant.spec import Distance

DISTANCES = list(Distance)
SIMSIMD_DISTANCES = [Distance.COSINE, Distance.DOT, Distance.EUCLID]
HAS_SAPPHIRE = bool(simsimd.get_capabilities().get("sapphire", False))


def _vectors(seed: int, k: int, d: int, dtype: str, normalised: bool) -> tuple[NDArray[Any], NDArray[Any]]:
    rng = np.random.default_rng(seed)
    if dtype == "int8":
        ints = rng.integers(-128, 128, size=(k + 1, d), dtype=np.int8)
        return ints[0], ints[1:]
    if dtype == "uint8":
        ints = rng.integers(0, 256, size=(k + 1, d), dtype=np.uint8)
        return ints[0], ints[1:]
    values = rng.standard_normal((k + 1, d)) * (1.0 if normalised else 3.0)
    if normalised:
        values /= np.linalg.norm(values, axis=1, keepdims=True)
    typed = values.astype(dtype)
    return typed[0], typed[1:]


def _scale(q: NDArray[Any], c: NDArray[Any], distance: Distance) -> NDArray[np.float64]:
    qf, cf = q.astype(np.float64), c.astype(np.float64)
    if distance is Distance.MANHATTAN:
        return np.asarray(np.abs(qf).sum() + np.abs(cf).sum(axis=1), dtype=np.float64)
    qn, cn = np.linalg.norm(qf), np.linalg.norm(cf, axis=1)
    if distance is Distance.COSINE:
        return np.ones_like(cn)
    return np.asarray(qn * cn if distance is Distance.DOT else qn + cn, dtype=np.float64)


def _reference64(q: NDArray[Any], c: NDArray[Any], distance: Distance) -> NDArray[np.float64]:
    """Scores in float64, written out the slow way: the reference for the reference."""
    qf, cf = q.astype(np.float64), c.astype(np.float64)
    if distance is Distance.DOT:
        return cf @ qf
    if distance is Distance.COSINE:
        norms = np.linalg.norm(cf, axis=1) * np.linalg.norm(qf)
        return np.where(norms > 0, (cf @ qf) / np.where(norms > 0, norms, 1.0), 0.0)
    if distance is Distance.EUCLID:
        return np.asarray(np.sqrt(((cf - qf) ** 2).sum(axis=1)), dtype=np.float64)
    return np.asarray(np.abs(cf - qf).sum(axis=1), dtype=np.float64)


TOLERANCE = {"float32": (1e-4, 1e-6), "float16": (1e-4, 1e-5), "int8": (1e-4, 1e-6), "uint8": (1e-4, 1e-6)}


def _assert_close(actual: NDArray[Any], expected: NDArray[Any], scale: NDArray[Any], dtype: str) -> None:
    rtol, atol = TOLERANCE[dtype]
    expected64 = np.asarray(expected, dtype=np.float64)
    allowed = atol * scale + rtol * np.abs(expected64)
    error = np.abs(actual.astype(np.float64) - expected64)
    assert (error <= allowed).all(), (
        f"max error {error.max():.3g}, worst excess {(error - allowed).max():.3g}"
    )


@pytest.fixture(params=["sapphire-on", "sapphire-off"] if HAS_SAPPHIRE else ["default"])
def half_kernels(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run float16 cases with simsimd's AVX512-FP16 kernels allowed and, where present, switched off."""
    if request.param == "sapphire-off":
        simsimd.disable_capability("sapphire")
        try:
            yield request.param
        finally:
            simsimd.enable_capability("sapphire")
    else:
        yield request.param


# -- agreement ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalised", [True, False], ids=["unit", "raw"])
@pytest.mark.parametrize("d", [3, 384, 768])
@pytest.mark.parametrize("k", [1, 7, 100])
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_float32_simsimd_matches_numpy(distance: Distance, k: int, d: int, normalised: bool) -> None:
    q, c = _vectors(k * 1000 + d, k, d, "float32", normalised)
    fast = scores(q, c, distance)
    ref = scores(q, c, distance, backend="numpy")
    assert fast.dtype == np.float32 and ref.dtype == np.float32
    assert fast.shape == ref.shape == (k,)
    scale = _scale(q, c, distance)
    _assert_close(fast, ref, scale, "float32")
    _assert_close(ref, _reference64(q, c, distance), scale, "float32")


@pytest.mark.parametrize("normalised", [True, False], ids=["unit", "raw"])
@pytest.mark.parametrize("d", [3, 384, 768])
@pytest.mark.parametrize("k", [1, 7, 100])
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_float16_simsimd_matches_numpy(
    distance: Distance, k: int, d: int, normalised: bool, half_kernels: str
) -> None:
    q, c = _vectors(k * 1000 + d, k, d, "float16", normalised)
    fast = scores(q, c, distance)
    ref = scores(q, c, distance, backend="numpy")
    scale = _scale(q, c, distance)
    _assert_close(fast, ref, scale, "float16")
    _assert_close(fast, _reference64(q, c, distance), scale, "float16")


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("d", [3, 384, 768])
@pytest.mark.parametrize("k", [1, 7, 100])
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_8bit_simsimd_matches_numpy(distance: Distance, k: int, d: int, dtype: str) -> None:
    q, c = _vectors(k * 1000 + d, k, d, dtype, False)
    fast = scores(q, c, distance)
    ref = scores(q, c, distance, backend="numpy")
    scale = _scale(q, c, distance)
    _assert_close(fast, ref, scale, dtype)
    if distance in (Distance.DOT, Distance.MANHATTAN):  # integer results: exact
        np.testing.assert_array_equal(fast, _reference64(q, c, distance).astype(np.float32))
        np.testing.assert_array_equal(ref, fast)


def test_half_precision_large_norms_do_not_overflow(half_kernels: str) -> None:
    # Squared norms of 76800 overflow float16 (max 65504): simsimd's AVX512-FP16 kernels would return
    # inf for Dot and Euclid, and score q against -q as identical under Cosine.
    q = np.full(768, 10.0, dtype=np.float16)
    c = np.stack([q, -q, np.full(768, 0.01, dtype=np.float16)])
    np.testing.assert_allclose(scores(q, c, Distance.COSINE), [1.0, -1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(scores(q, c, Distance.DOT), [76800.0, -76800.0, 76.8], rtol=1e-3)
    np.testing.assert_allclose(scores(q, c, Distance.EUCLID), [0.0, 2 * np.sqrt(76800.0), 277.0], rtol=1e-3)
    np.testing.assert_allclose(pairwise(c[:2], c[:2], Distance.COSINE), [[1.0, -1.0], [-1.0, 1.0]], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_other_dtypes_are_scored_in_float32(dtype: str) -> None:
    q, c = _vectors(5, 20, 16, "float32", False)
    q, c = q.astype(dtype), c.astype(dtype)  # int64 truncates: that is fine, both sides see it
    got = scores(q, c, Distance.DOT)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, scores(q.astype(np.float32), c.astype(np.float32), Distance.DOT))
    # Python lists and mixed dtypes work too.
    np.testing.assert_allclose(
        scores(q.tolist(), c.astype(np.float16), Distance.DOT),
        scores(q, c.astype(np.float16).astype(np.float32), Distance.DOT),
        rtol=1e-5,
        atol=1e-5,
    )


# -- ranking --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 100, None])
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_rank_agrees_with_numpy(distance: Distance, k: int | None) -> None:
    q, c = _vectors(11, 300, 384, "float32", False)
    idx_fast, score_fast = rank(q, c, distance, k=k)
    idx_ref, score_ref = rank(q, c, distance, k=k, backend="numpy")
    np.testing.assert_array_equal(score_ref, scores(q, c, distance, backend="numpy")[idx_ref])
    assert idx_fast.dtype == np.intp
    assert len(idx_fast) == len(idx_ref) == (k or 300)
    reference = _reference64(q, c, distance)
    # Near-ties may come out in either order: the chosen items must be equally good, position by position.
    scale = _scale(q, c, distance)
    _assert_close(reference[idx_fast], reference[idx_ref], scale[idx_fast], "float32")
    np.testing.assert_array_equal(score_fast, scores(q, c, distance)[idx_fast])
    steps = np.diff(score_fast.astype(np.float64))
    assert (steps <= 0).all() if higher_is_better(distance) else (steps >= 0).all()
    # This data has no near-ties at the top, so the best candidate is the same.
    assert (
        idx_fast[0]
        == idx_ref[0]
        == (np.argmax(reference) if higher_is_better(distance) else np.argmin(reference))
    )


def test_rank_breaks_ties_by_lower_index() -> None:
    c = np.array([[1.0, 0.0], [3.0, 0.0], [3.0, 0.0], [2.0, 0.0], [3.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    q = np.array([1.0, 0.0], dtype=np.float32)
    for kernel in kernels.BACKENDS:
        assert rank(q, c, Distance.DOT, backend=kernel)[0].tolist() == [1, 2, 4, 3, 5, 0]
        assert rank(q, c, Distance.DOT, k=2, backend=kernel)[0].tolist() == [1, 2]
        assert rank(q, c, Distance.DOT, k=4, backend=kernel)[0].tolist() == [1, 2, 4, 3]
        # Lower is better for Euclid: distances 0, 2, 2, 1, 2, 1.
        assert rank(q, c, Distance.EUCLID, k=3, backend=kernel)[0].tolist() == [0, 3, 5]


@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_rank_top_k_equals_prefix_of_full_sort(distance: Distance) -> None:
    # Small integers make many exact ties, which is where a partial sort can go wrong.
    rng = np.random.default_rng(3)
    c = rng.integers(-2, 3, size=(200, 4)).astype(np.int8)
    q = np.array([1, -1, 2, 0], dtype=np.int8)
    full, full_scores = rank(q, c, distance)
    for k in (0, 1, 2, 5, 17, 100, 199, 200, 250):
        top, top_scores = rank(q, c, distance, k=k)
        np.testing.assert_array_equal(top, full[:k])
        np.testing.assert_array_equal(top_scores, full_scores[:k])


def test_rank_rejects_negative_k() -> None:
    with pytest.raises(ConfigError) as info:
        rank([1.0], [[1.0]], Distance.DOT, k=-1)
    assert info.value.key == "k"


# -- Qdrant's semantics ---------------------------------------------------------------------------------


def test_higher_is_better() -> None:
    assert higher_is_better(Distance.COSINE) and higher_is_better(Distance.DOT)
    assert not higher_is_better(Distance.EUCLID) and not higher_is_better(Distance.MANHATTAN)
    assert higher_is_better(models.Distance.DOT) and not higher_is_better(models.Distance.EUCLID)
    assert higher_is_better("cosine") and not higher_is_better("Manhattan")
    with pytest.raises(ConfigError) as info:
        higher_is_better("Hamming")
    assert info.value.key == "distance"


@pytest.fixture(scope="module")
def qdrant() -> Iterator[QdrantClient]:
    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.mark.parametrize("normalised", [True, False], ids=["unit", "raw"])
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_matches_qdrant_local_mode(qdrant: QdrantClient, distance: Distance, normalised: bool) -> None:
    q, c = _vectors(21, 60, 16, "float32", normalised)
    name = f"kernels-{distance.value.lower()}-{normalised}"
    qdrant.create_collection(
        name, vectors_config=models.VectorParams(size=16, distance=models.Distance(distance.value))
    )
    qdrant.upsert(name, [models.PointStruct(id=i, vector=row.tolist()) for i, row in enumerate(c)])
    points = qdrant.query_points(name, query=q.tolist(), limit=len(c), with_vectors=True).points
    ids = [int(p.id) for p in points]
    qdrant_scores = np.array([p.score for p in points])
    atol = 1e-5 * float(_scale(q, c, distance).max())
    for kernel in kernels.BACKENDS:
        order, ours = rank(q, c, distance, backend=kernel)
        assert order.tolist() == ids, f"{kernel} orders the points differently from Qdrant"
        # Qdrant normalises stored vectors under Cosine; our cosine of the raw vectors is the same number.
        np.testing.assert_allclose(ours, qdrant_scores, rtol=1e-4, atol=atol)
        # Rescoring the vectors Qdrant hands back (normalised under Cosine) gives Qdrant's scores too.
        fetched, present = to_matrix([p.vector for p in points], 16)  # type: ignore[misc]
        assert present.all()
        np.testing.assert_allclose(
            scores(q, fetched, distance, backend=kernel), qdrant_scores, rtol=1e-4, atol=atol
        )


# -- zero vectors, empty input, errors ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("kernel", kernels.BACKENDS)
def test_cosine_of_zero_vectors_is_zero(kernel: kernels.Backend, dtype: str) -> None:
    c = np.array([[0, 0, 0], [1, 2, 3], [3, 2, 1]], dtype=dtype)
    zero = np.zeros(3, dtype=dtype)
    np.testing.assert_array_equal(scores(zero, c, Distance.COSINE, backend=kernel), [0.0, 0.0, 0.0])
    got = scores(np.array([1, 2, 3], dtype=dtype), c, Distance.COSINE, backend=kernel)
    np.testing.assert_allclose(got, [0.0, 1.0, 10 / 14], rtol=1e-3)
    assert pairwise(c, c, Distance.COSINE, backend=kernel)[0].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kernel", kernels.BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_empty_candidates(distance: Distance, kernel: kernels.Backend) -> None:
    empties: list[Any] = [[], np.empty((0, 4), dtype=np.float32), np.empty((0, 4), dtype=np.int8)]
    for empty in empties:
        out = scores([1.0, 2.0, 3.0, 4.0], empty, distance, backend=kernel)
        assert out.shape == (0,) and out.dtype == np.float32
        order, values = rank([1.0, 2.0, 3.0, 4.0], empty, distance, k=3, backend=kernel)
        assert order.shape == values.shape == (0,)
    assert pairwise(np.empty((0, 4)), np.ones((3, 4)), distance, backend=kernel).shape == (0, 3)
    assert pairwise(np.ones((2, 4)), [], distance, backend=kernel).shape == (2, 0)


@pytest.mark.parametrize("kernel", kernels.BACKENDS)
def test_dimension_mismatch_names_both_dimensions(kernel: kernels.Backend) -> None:
    with pytest.raises(VectorValidationError) as info:
        scores(np.ones(384), np.ones((5, 768)), Distance.COSINE, backend=kernel)
    [(point, problem)] = info.value.problems
    assert point is None
    assert "384" in problem and "768" in problem
    with pytest.raises(VectorValidationError, match=r"a has dimension 3 but b has dimension 4"):
        pairwise(np.ones((2, 3)), np.ones((2, 4)), Distance.DOT, backend=kernel)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kernel", kernels.BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_non_finite_candidates_are_rejected(
    distance: Distance, kernel: kernels.Backend, dtype: str, bad: float, half_kernels: str
) -> None:
    q, c = _vectors(8, 6, 16, dtype, False)
    c[4, 7] = bad
    for query in (q, np.zeros_like(q)):  # a zero query must not hide them (inf * 0, zero-norm cosine)
        with pytest.raises(VectorValidationError) as info:
            scores(query, c, distance, backend=kernel)
        assert [problem for _, problem in info.value.problems] == [
            "candidates row 4 has NaN or infinite values"
        ]
    with pytest.raises(VectorValidationError, match="row 4"):
        rank(q, c, distance, k=2, backend=kernel)
    with pytest.raises(VectorValidationError, match="b row 4"):
        pairwise(q[None, :], c, distance, backend=kernel)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("distance", SIMSIMD_DISTANCES, ids=str)
def test_non_finite_sweep(distance: Distance, dtype: str, half_kernels: str) -> None:
    # simsimd's cosine clamps the distance of a row holding NaN or inf to exactly 0 or 1, and the check
    # relies on that: sweep dimensions, positions, values and query shapes so a change in simsimd shows.
    rng = np.random.default_rng(99)
    for _ in range(200):
        d = int(rng.integers(1, 1100))
        q, c = _vectors(int(rng.integers(1 << 30)), 4, d, dtype, bool(rng.integers(2)))
        where = rng.integers(0, d, size=int(rng.integers(1, 4)))
        if rng.random() < 0.2:
            c[2] = 0
        c[2, where] = rng.choice([np.nan, np.inf, -np.inf], size=where.size)
        shape = rng.integers(3)
        if shape == 1:
            q[:] = 0
        elif shape == 2:
            q[where] = 0
        with pytest.raises(VectorValidationError, match="candidates row 2 "):
            scores(q, c, distance)


@pytest.mark.parametrize("kernel", kernels.BACKENDS)
def test_non_finite_query_is_rejected(kernel: kernels.Backend) -> None:
    with pytest.raises(VectorValidationError, match=r"query has NaN or infinite values at positions 1"):
        scores([0.0, np.nan, 1.0], np.ones((2, 3)), Distance.DOT, backend=kernel)
    # float64 beyond float32's range turns infinite on conversion.
    with pytest.raises(VectorValidationError, match="query has NaN or infinite"):
        scores([1e300, 0.0, 1.0], np.ones((2, 3)), Distance.DOT, backend=kernel)


def test_check_finite_false_skips_the_candidate_check() -> None:
    c = np.ones((3, 4), dtype=np.float32)
    c[1, 2] = np.nan
    out = scores(np.ones(4), c, Distance.DOT, check_finite=False)
    assert np.isnan(out[1]) and out[0] == out[2] == 4.0
    # The query is always checked.
    with pytest.raises(VectorValidationError):
        scores([np.nan, 1, 1, 1], np.ones((3, 4)), Distance.DOT, check_finite=False)


def test_bad_shapes_and_types_are_rejected() -> None:
    with pytest.raises(VectorValidationError, match=r"query must be a non-empty \(d,\) vector"):
        scores(np.ones((2, 3)), np.ones((2, 3)), Distance.DOT)
    with pytest.raises(VectorValidationError, match=r"candidates must be a \(k, d\) matrix"):
        scores(np.ones(3), np.ones(3), Distance.DOT)
    with pytest.raises(VectorValidationError, match="not numeric"):
        scores(["a", "b"], [["c", "d"]], Distance.DOT)
    with pytest.raises(VectorValidationError, match="not a numeric array"):
        scores([1.0, 2.0], [[1.0, 2.0], [1.0]], Distance.DOT)
    # A (1, d) query is accepted as a (d,) one.
    np.testing.assert_array_equal(scores([[1.0, 2.0]], [[3.0, 4.0]], Distance.DOT), [11.0])


def test_unknown_backend_and_distance() -> None:
    with pytest.raises(ConfigError) as info:
        scores([1.0], [[1.0]], Distance.DOT, backend="blas")  # type: ignore[arg-type]
    assert info.value.key == "backend"
    with pytest.raises(ConfigError) as info:
        scores([1.0], [[1.0]], "Jaccard")
    assert info.value.key == "distance"


# -- pairwise -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES, ids=str)
def test_pairwise_matches_scores_row_by_row(distance: Distance) -> None:
    _, a = _vectors(30, 5, 32, "float32", False)
    _, b = _vectors(31, 9, 32, "float32", False)
    fast = pairwise(a, b, distance)
    ref = pairwise(a, b, distance, backend="numpy")
    assert fast.shape == ref.shape == (5, 9) and fast.dtype == np.float32
    for i, row in enumerate(a):
        scale = _scale(row, b, distance)
        _assert_close(fast[i], scores(row, b, distance, backend="numpy"), scale, "float32")
        _assert_close(ref[i], _reference64(row, b, distance), scale, "float32")


# -- to_matrix ------------------------------------------------------------------------------------------


def test_to_matrix_with_missing_rows() -> None:
    vectors: list[Any] = [[1.0, 2.0, 3.0], None, np.array([4.0, 5.0, 6.0]), None]
    matrix, present = to_matrix(vectors, 3)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, [[1, 2, 3], [0, 0, 0], [4, 5, 6], [0, 0, 0]])
    assert present.tolist() == [True, False, True, False]
    # Rescore only the rows that are there.
    order, _ = rank([1.0, 1.0, 1.0], matrix[present], Distance.DOT)
    assert np.flatnonzero(present)[order].tolist() == [2, 0]


def test_to_matrix_all_present_none_present_and_empty() -> None:
    matrix, present = to_matrix([[1, 2], [3, 4]], 2, dtype=np.float16)
    assert matrix.dtype == np.float16 and present.all() and matrix.shape == (2, 2)
    matrix, present = to_matrix([None, None], 2)
    assert matrix.shape == (2, 2) and not present.any() and not matrix.any()
    matrix, present = to_matrix([], 5)
    assert matrix.shape == (0, 5) and present.shape == (0,)


def test_to_matrix_takes_qdrant_client_results() -> None:
    points = [
        models.ScoredPoint(id=i, version=0, score=0.0, vector=[float(i), 1.0] if i % 2 else None)
        for i in range(5)
    ]
    matrix, present = to_matrix([p.vector for p in points], 2)  # type: ignore[misc]
    assert present.tolist() == [False, True, False, True, False]
    np.testing.assert_array_equal(matrix[present], [[1, 1], [3, 1]])


def test_to_matrix_rejects_wrong_dimensions() -> None:
    with pytest.raises(VectorValidationError) as info:
        to_matrix([[1.0, 2.0], None, [1.0]], 2)
    assert [p for _, p in info.value.problems] == ["row 2 has dimension 1 but 2 was expected"]
    with pytest.raises(VectorValidationError) as info:
        to_matrix([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 2)
    assert len(info.value.problems) == 2
    with pytest.raises(VectorValidationError, match="do not convert to int8"):
        to_matrix([[300, 1]], 2, dtype=np.int8)


# -- capabilities and the benchmark ---------------------------------------------------------------------


def test_capabilities() -> None:
    caps = kernels.capabilities()
    assert caps["simsimd_version"] == getattr(simsimd, "__version__", None)
    assert "serial" in caps["simsimd_capabilities"]
    assert caps["simsimd_distances"] == ["Cosine", "Dot", "Euclid"]
    assert {"float32", "int8", "uint8"} <= set(caps["dtypes"])
    assert ("float16" in caps["dtypes"]) is not HAS_SAPPHIRE


def test_benchmark_runs(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    out = tmp_path / "bench.json"
    assert bench_kernels.main(["--quick", "--sizes", "10x8", "--reps", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "simsimd" in text and "BLAS" in text
    header = next(line for line in text.splitlines() if "distance" in line)
    assert re.search(r"numpy ms\s+simsimd ms\s+ratio\s+e2e numpy ms\s+e2e simsimd ms\s+e2e ratio", header)
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["Cosine"], ["Dot"])]
    assert len(rows) == 4  # two distances, normalised and not
    assert all(float(row[7]) > 0 and float(row[10]) > 0 for row in rows)
    assert out.exists() and '"ratio"' in out.read_text()


# --------------------------------------------------------------------------- a batch's read-back


def _pairs() -> list[tuple[Any, Any]]:
    """Stored and fresh vectors of every kind a read-back meets."""
    rng = np.random.default_rng(5)
    v = rng.standard_normal(8)
    return [
        (v.tolist(), v),  # as written
        ((v * 3.0).tolist(), v),  # the same direction (a cosine collection normalises)
        ((v / np.linalg.norm(v)).astype(np.float32).tolist(), v),  # stored normalised, in float32
        ((v + 1e-3).tolist(), v),  # close, not the same
        (rng.standard_normal(8).tolist(), v),  # another vector
        ((-v).tolist(), v),
        ([0.0] * 8, np.zeros(8)),  # two zero vectors match
        ([0.0] * 8, v),  # a zero vector and another do not
        (v.tolist(), np.zeros(8)),
        ([float("nan"), *v[1:].tolist()], v),  # a stored value that is not finite never matches
        ([float("inf"), *v[1:].tolist()], v),
    ]


@pytest.mark.parametrize("distance", list(Distance))
def test_vectors_match_rows_gives_each_pair_the_verdict_of_vectors_match(distance: Distance) -> None:
    pairs = _pairs()
    expected = [kernels.vectors_match(s, f, distance, 1e-5)[0] for s, f in pairs]
    assert True in expected and False in expected
    stored, fresh = [s for s, _ in pairs], [f for _, f in pairs]
    assert kernels.vectors_match_rows(stored, fresh, distance, 1e-5) == expected


def test_vectors_match_rows_compares_one_by_one_what_does_not_stack() -> None:
    v = [1.0, 2.0, 3.0]
    stored: list[Any] = [v, [1.0, 2.0], v]  # a shorter vector: it never matches
    fresh = [np.array(v)] * 3
    assert kernels.vectors_match_rows(stored, fresh, Distance.COSINE, 1e-5) == [True, False, True]
    with pytest.raises(ValueError, match="could not convert"):  # values that are no numbers: as vectors_match
        kernels.vectors_match_rows([v, ["a", "b", "c"]], fresh[:2], Distance.COSINE, 1e-5)
    assert kernels.vectors_match_rows([], [], Distance.DOT, 1e-5) == []
    with pytest.raises(ValueError, match="2 stored vectors against 1 fresh ones"):
        kernels.vectors_match_rows([v, v], [v], Distance.DOT, 1e-5)
