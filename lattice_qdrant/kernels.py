"""Rescoring kernels: score candidate vectors against a query with SIMD (simsimd), numpy as the reference.

While the target vector covers only part of a collection, a query gathers candidates, fetches their
target vectors and rescores them here, in the target space, with the collection's distance. The same
kernels compare the two models' result sets (:func:`pairwise`).

Scores follow Qdrant's convention, so they can be mixed with scores Qdrant returns:

=============  ====================================  =============
distance       score                                 best
=============  ====================================  =============
``Cosine``     cosine similarity, in ``[-1, 1]``     highest first
``Dot``        dot product                           highest first
``Euclid``     Euclidean (L2) distance, not squared  lowest first
``Manhattan``  Manhattan (L1) distance               lowest first
=============  ====================================  =============

:func:`higher_is_better` tells which; :func:`rank` orders by it. Under ``Cosine`` a zero vector (query or
candidate) scores 0 against everything, as in Qdrant.

Backends:

* ``"simsimd"`` (default): simsimd's kernels, picked at run time for the CPU (:func:`capabilities`).
  simsimd has no Manhattan kernel, so ``Manhattan`` falls back to numpy under this backend too.
* ``"numpy"``: the reference, plain numpy (BLAS for the dot products).

Dtypes: when the query and the candidates share one of ``float32``, ``float16``, ``int8`` or ``uint8``,
simsimd works on that dtype directly (half the memory traffic for ``float16``, a quarter for the 8-bit
types; Qdrant stores ``float16`` and ``uint8`` vectors natively). Anything else (``float64``, Python lists,
mixed dtypes) is converted to ``float32``. The exception is ``float16`` on CPUs where simsimd uses
AVX512-FP16 (its ``sapphire`` capability): those kernels accumulate in half precision, overflow past
65504 (silently so under cosine) and err by ~1e-3, so there ``float16`` is converted to ``float32`` first,
which costs more than scoring ``float32`` directly; prefer ``float32`` matrices (:func:`to_matrix`'s
default). The numpy backend computes ``float16`` in ``float32`` and the 8-bit types in ``float64``
(exact). Scores always come back as ``float32``.

Validation: a dimension mismatch, a non-finite value or a non-numeric input raises
:class:`~lattice_qdrant.errors.VectorValidationError` (``float64`` values beyond ``float32``'s range
become infinite on conversion and are reported as such). The candidates are checked for non-finite values
through the scores themselves, as NaN and infinities propagate into them, so the check costs no extra pass
over the matrix (simsimd's cosine masks them to a distance of exactly 0 or 1: only the rows that score
exactly that are inspected). ``check_finite=False`` skips it for vectors known to be finite. Finite
inputs whose score overflows ``float32`` come back as ``±inf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np
import simsimd
from numpy.typing import ArrayLike, DTypeLike, NDArray

from lattice_qdrant.errors import ConfigError, VectorValidationError
from lattice_qdrant.spec import Distance

__all__ = [
    "BACKENDS",
    "Backend",
    "capabilities",
    "higher_is_better",
    "pairwise",
    "rank",
    "scores",
    "to_matrix",
    "vectors_match",
    "vectors_match_rows",
]

Backend = Literal["simsimd", "numpy"]
"""Name of a scoring backend."""

BACKENDS: tuple[Backend, ...] = ("simsimd", "numpy")
"""Every backend, the default first."""

_Metric = Literal["cosine", "dot", "euclidean"]
# simsimd metric per Qdrant distance; Manhattan has no simsimd kernel.
_SIMSIMD_METRIC: dict[Distance, _Metric] = {
    Distance.COSINE: "cosine",
    Distance.DOT: "dot",
    Distance.EUCLID: "euclidean",
}
# Dtypes simsimd scores natively (when query and candidates share one); everything else becomes float32.
_NATIVE_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype(np.float32),
    np.dtype(np.float16),
    np.dtype(np.int8),
    np.dtype(np.uint8),
)
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_MAX_SHOWN = 5


def higher_is_better(distance: Distance | str) -> bool:
    """Whether a higher score is a better match under ``distance``, as in Qdrant.

    Args:
        distance: a :class:`~lattice_qdrant.spec.Distance` or its Qdrant spelling (``"Cosine"``); a
            ``qdrant_client.models.Distance`` works too.

    Returns:
        ``True`` for ``Cosine`` and ``Dot`` (similarities), ``False`` for ``Euclid`` and ``Manhattan``
        (distances, best lowest).

    Raises:
        ConfigError: ``distance`` is not a Qdrant distance.
    """
    return _distance(distance) in (Distance.COSINE, Distance.DOT)


def scores(
    query: ArrayLike,
    candidates: ArrayLike,
    distance: Distance | str,
    *,
    backend: Backend = "simsimd",
    check_finite: bool = True,
) -> NDArray[np.float32]:
    """Score each candidate against the query, in Qdrant's convention (see the module docstring).

    Args:
        query: the query vector, shape ``(d,)`` (``(1, d)`` is accepted).
        candidates: the candidate vectors, shape ``(k, d)``; ``k`` may be 0.
        distance: the collection's distance.
        backend: ``"simsimd"`` (default) or ``"numpy"`` (the reference).
        check_finite: refuse candidates holding NaN or infinities (the query is always checked). It
            costs O(k) plus an ``isfinite`` over the rows under suspicion (module docstring); pass
            ``False`` for vectors known to be finite. Unchecked non-finite candidates get meaningless
            scores (NaN ranks last in :func:`rank`).

    Returns:
        ``float32`` scores, shape ``(k,)``: cosine similarity or dot product (higher is better), or the
        Euclidean or Manhattan distance (lower is better).

    Raises:
        VectorValidationError: the dimensions differ, an input is not a numeric vector / matrix, or a
            value is NaN or infinite.
        ConfigError: unknown ``distance`` or ``backend``.
    """
    dist = _distance(distance)
    _check_backend(backend)
    q, c = _prepare(query, candidates)
    if c.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    if backend == "simsimd" and dist in _SIMSIMD_METRIC:
        out = _simsimd_scores(q, c, dist, check_finite)
    else:
        out = _numpy_scores(q, c, dist, check_finite)
    if check_finite and not np.isfinite(out).all():
        # NaN or an infinity in a candidate makes its score non-finite; find it (raises), or else the
        # inputs were finite and the score overflowed float32, which is returned as it is.
        _check_finite(c, "candidates")
    return out


def rank(
    query: ArrayLike,
    candidates: ArrayLike,
    distance: Distance | str,
    *,
    k: int | None = None,
    backend: Backend = "simsimd",
    check_finite: bool = True,
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """The best ``k`` candidates for the query, best first.

    Ties are broken by the lower candidate index (the order is stable), so equal scores keep the order
    the candidates came in.

    Args:
        query: the query vector, shape ``(d,)``.
        candidates: the candidate vectors, shape ``(n, d)``.
        distance: the collection's distance; it decides the direction (:func:`higher_is_better`).
        k: how many to return; ``None`` (default) ranks all of them. More than ``n`` returns ``n``.
        backend: ``"simsimd"`` (default) or ``"numpy"``.
        check_finite: see :func:`scores`.

    Returns:
        ``(indices, scores)``: indices into ``candidates`` (``intp``), best first, and their scores as
        :func:`scores` computes them.

    Raises:
        VectorValidationError: see :func:`scores`.
        ConfigError: unknown ``distance`` or ``backend``, or a negative ``k``.
    """
    if k is not None and k < 0:
        raise ConfigError(f"k must be at least 0, got {k}", key="k")
    values = scores(query, candidates, distance, backend=backend, check_finite=check_finite)
    order = _top(values, higher_is_better(distance), k)
    return order, values[order]


def pairwise(
    a: ArrayLike,
    b: ArrayLike,
    distance: Distance | str,
    *,
    backend: Backend = "simsimd",
    check_finite: bool = True,
) -> NDArray[np.float32]:
    """Scores between every row of ``a`` and every row of ``b``: for comparing two result sets.

    Meant for result-set sized inputs (tens to thousands of rows), not for a whole collection.

    Args:
        a: vectors, shape ``(n, d)``.
        b: vectors, shape ``(m, d)``.
        distance: the distance to score with.
        backend: ``"simsimd"`` (default) or ``"numpy"``.
        check_finite: refuse inputs holding NaN or infinities (one ``isfinite`` pass over each).

    Returns:
        ``float32`` matrix of shape ``(n, m)``: ``out[i, j]`` is the score of ``b[j]`` for the query
        ``a[i]``, in the convention of :func:`scores`.

    Raises:
        VectorValidationError: the dimensions differ, an input is not a numeric matrix, or a value is
            NaN or infinite.
        ConfigError: unknown ``distance`` or ``backend``.
    """
    dist = _distance(distance)
    _check_backend(backend)
    x = _as_matrix(a, "a", None)
    y = _as_matrix(b, "b", None)
    if x.shape[1] != y.shape[1] and x.shape[0] and y.shape[0]:
        raise VectorValidationError(
            [(None, f"a has dimension {x.shape[1]} but b has dimension {y.shape[1]}")]
        )
    x, y = _common_dtype(x, y)
    if x.dtype == np.float16 and not _half_is_native():
        x, y = x.astype(np.float32), y.astype(np.float32)
    if check_finite:
        _check_finite(x, "a")
        _check_finite(y, "b")
    if x.shape[0] == 0 or y.shape[0] == 0:
        return np.empty((x.shape[0], y.shape[0]), dtype=np.float32)
    if backend == "simsimd" and dist in _SIMSIMD_METRIC:
        raw: NDArray[np.float64] = np.asarray(
            simsimd.cdist(x, y, metric=_SIMSIMD_METRIC[dist]), dtype=np.float64
        )
        if dist is Distance.COSINE:
            out = (1.0 - raw).astype(np.float32)
            # simsimd scores zero against zero as identical (distance 0); Qdrant scores it 0.
            out[~x.any(axis=1), :] = 0.0
            out[:, ~y.any(axis=1)] = 0.0
            return out
        return raw.astype(np.float32)
    return np.stack([_numpy_scores(row, y, dist, check_finite=False) for row in x])


def to_matrix(
    vectors: Sequence[Sequence[float] | NDArray[Any] | None],
    dimension: int,
    dtype: DTypeLike = np.float32,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Stack vectors as qdrant-client returns them (lists, some missing) into one matrix.

    A point fetched with ``with_vectors=[name]`` that has no vector under ``name`` yet (partial coverage)
    comes back without it; pass ``None`` for those. Their rows are zeros and ``present`` is ``False``.

    Args:
        vectors: one entry per point: a list of floats, a 1-D array, or ``None`` when missing.
        dimension: the expected vector size ``d``.
        dtype: dtype of the matrix (``float32`` by default).

    Returns:
        ``(matrix, present)``: a C-contiguous ``(len(vectors), dimension)`` matrix and a boolean mask of
        the rows that had a vector.

    Raises:
        VectorValidationError: a vector does not have ``dimension`` values, or is not numeric.
    """
    n = len(vectors)
    present = np.fromiter((v is not None for v in vectors), dtype=np.bool_, count=n)
    rows = [v for v in vectors if v is not None]
    try:
        stacked = np.asarray(rows, dtype=dtype) if rows else np.empty((0, dimension), dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        _raise_bad_rows(vectors, dimension)
        # Every row has the right size: the values themselves do not fit (e.g. 300 in an int8 matrix).
        raise VectorValidationError([(None, f"vectors do not convert to {np.dtype(dtype)}: {exc}")]) from None
    if stacked.shape != (len(rows), dimension):
        _raise_bad_rows(vectors, dimension)
    if len(rows) == n:
        return np.ascontiguousarray(stacked), present
    matrix = np.zeros((n, dimension), dtype=stacked.dtype)
    matrix[present] = stacked
    return matrix, present


def vectors_match(
    stored: Sequence[float] | NDArray[Any],
    fresh: Sequence[float] | NDArray[Any],
    distance: Distance,
    tolerance: float,
) -> tuple[bool, float, float]:
    """Compare a stored vector with a re-embedding.

    Returns:
        ``(match, similarity, error)``: cosine similarity and relative L2 error of ``stored`` against
        ``fresh``. Under ``Cosine`` only the direction counts (Qdrant may store cosine vectors normalised):
        a match is a similarity of at least ``1 - tolerance``. Under the other distances the raw values
        count: a match is a relative error of at most ``tolerance``. Two zero vectors match; a zero vector
        and another do not. A vector of another dimension never matches.
    """
    a = np.asarray(stored, dtype=np.float64).ravel()
    b = np.asarray(fresh, dtype=np.float64).ravel()
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False, float("nan"), float("inf")
    match, similarity, error = _compared(a[None, :], b[None, :], distance, tolerance)
    return bool(match[0]), float(similarity[0]), float(error[0])


def _compared(
    a: NDArray[np.float64], b: NDArray[np.float64], distance: Distance, tolerance: float
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    """:func:`vectors_match`'s rule, row by row over ``a`` and ``b`` (stacked, the same shape): each
    row's match, cosine similarity and relative L2 error (finite rows; others are the caller's)."""
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    zero = (norm_a == 0.0) | (norm_b == 0.0)
    same = norm_a == norm_b  # two zero vectors match; a zero vector and another do not
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.where(zero, np.where(same, 1.0, 0.0), np.einsum("ij,ij->i", a, b) / (norm_a * norm_b))
        error = np.where(zero, np.where(same, 0.0, 1.0), np.linalg.norm(a - b, axis=1) / norm_b)
    match = similarity >= 1.0 - tolerance if distance == Distance.COSINE else error <= tolerance
    return np.where(zero, same, match), similarity, error


def vectors_match_rows(
    stored: Sequence[Sequence[float] | NDArray[Any]],
    fresh: Sequence[Sequence[float] | NDArray[Any]],
    distance: Distance,
    tolerance: float,
) -> list[bool]:
    """:func:`vectors_match`'s verdict for each pair ``(stored[i], fresh[i])``, computed over all pairs at
    once (a writer's read-back checks a batch: one conversion of the batch, not one per vector).

    Pairs that do not stack (vectors of different sizes, values that are not numbers) are compared one by
    one, with the same verdicts.
    """
    if len(stored) != len(fresh):
        raise ValueError(f"{len(stored)} stored vectors against {len(fresh)} fresh ones")
    if not stored:
        return []
    try:
        a = np.asarray(stored, dtype=np.float64)
        b = np.asarray(fresh, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        a = b = np.empty(0)
    if a.ndim != 2 or a.shape != b.shape:
        return [vectors_match(s, f, distance, tolerance)[0] for s, f in zip(stored, fresh, strict=True)]
    match = _compared(a, b, distance, tolerance)[0] & np.isfinite(a).all(axis=1)
    return [bool(m) for m in match]


def capabilities() -> dict[str, Any]:
    """What the kernels run on: simsimd's version and the SIMD targets it detected, numpy and its BLAS.

    Read-only, and cheap enough for a ``doctor`` command.

    Returns:
        A JSON-safe dict: ``simsimd_version``, ``simsimd_capabilities`` (the enabled targets, e.g.
        ``["serial", "haswell", "skylake"]``), ``simsimd_distances`` (distances with a simsimd kernel),
        ``dtypes`` (dtypes scored natively), ``numpy_version`` and ``numpy_blas`` (name and version of the
        BLAS numpy was built with, when numpy reports it).
    """
    caps = simsimd.get_capabilities()
    return {
        "simsimd_version": str(getattr(simsimd, "__version__", "unknown")),
        "simsimd_capabilities": sorted(name for name, enabled in caps.items() if enabled),
        "simsimd_distances": [str(d) for d in _SIMSIMD_METRIC],
        "dtypes": [dt.name for dt in _NATIVE_DTYPES if dt != np.float16 or _half_is_native()],
        "numpy_version": np.__version__,
        "numpy_blas": _numpy_blas(),
    }


# -- internals ------------------------------------------------------------------------------------------


_DISTANCE_BY_NAME = {d.value.lower(): d for d in Distance}


def _distance(distance: Distance | str) -> Distance:
    found = _DISTANCE_BY_NAME.get(str(getattr(distance, "value", distance)).lower())
    if found is None:
        known = ", ".join(d.value for d in Distance)
        raise ConfigError(f"unknown distance {distance!r}; expected one of {known}", key="distance")
    return found


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}", key="backend"
        )


def _as_array(value: ArrayLike, name: str) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise VectorValidationError([(None, f"{name} is not a numeric array: {exc}")]) from None
    if array.dtype.kind not in "biuf":
        raise VectorValidationError([(None, f"{name} is not numeric (dtype {array.dtype})")])
    return array


def _as_matrix(value: ArrayLike, name: str, dimension: int | None) -> NDArray[Any]:
    array = _as_array(value, name)
    if array.size == 0 and array.ndim < 2:
        return np.empty((0, dimension or 0), dtype=np.float32)
    if array.ndim != 2:
        raise VectorValidationError([(None, f"{name} must be a (k, d) matrix, got shape {array.shape}")])
    return array


def _prepare(query: ArrayLike, candidates: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    q = _as_array(query, "query")
    if q.ndim == 2 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 1 or q.shape[0] == 0:
        raise VectorValidationError([(None, f"query must be a non-empty (d,) vector, got shape {q.shape}")])
    c = _as_matrix(candidates, "candidates", q.shape[0])
    if c.shape[1] != q.shape[0]:
        raise VectorValidationError(
            [(None, f"query has dimension {q.shape[0]} but candidates have dimension {c.shape[1]}")]
        )
    q, c = _common_dtype(q, c)
    _check_finite(q, "query")
    return q, c


def _common_dtype(a: NDArray[Any], b: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Both in one dtype simsimd scores natively: theirs if they share one, float32 otherwise."""
    if a.dtype == b.dtype and a.dtype in _NATIVE_DTYPES:
        return np.ascontiguousarray(a), np.ascontiguousarray(b)
    # float64 beyond float32's range becomes inf here, and is then reported as non-finite.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def _check_finite(array: NDArray[Any], name: str) -> None:
    if array.dtype not in _FLOAT_DTYPES:
        return  # integers are always finite
    finite = np.isfinite(array)
    if finite.all():
        return
    if array.ndim == 1:
        where = np.flatnonzero(~finite)
        shown = ", ".join(str(i) for i in where[:_MAX_SHOWN])
        more = f" and {where.size - _MAX_SHOWN} more" if where.size > _MAX_SHOWN else ""
        raise VectorValidationError([(None, f"{name} has NaN or infinite values at positions {shown}{more}")])
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    raise VectorValidationError([(None, f"{name} row {i} has NaN or infinite values") for i in bad_rows])


def _simsimd_scores(
    q: NDArray[Any], c: NDArray[Any], dist: Distance, check_finite: bool
) -> NDArray[np.float32]:
    if c.dtype == np.float16 and not _half_is_native():
        q, c = q.astype(np.float32), c.astype(np.float32)
    metric = _SIMSIMD_METRIC[dist]
    raw: NDArray[np.float64] = np.asarray(simsimd.cdist(q[None, :], c, metric=metric), dtype=np.float64)[0]
    if dist is not Distance.COSINE:
        return raw.astype(np.float32)
    if check_finite and c.dtype in _FLOAT_DTYPES:
        # simsimd's cosine does not propagate NaN and infinities: it clamps the distance of such a row
        # to exactly 0 or exactly 1 (so an infinite candidate could score 1). Only rows at exactly 0 or 1
        # can hide one (identical, orthogonal or zero vectors land there too), so only those are checked,
        # not the whole matrix. tests/test_kernels.py sweeps non-finite patterns to hold simsimd to this.
        suspicious = np.flatnonzero((raw == 0.0) | (raw == 1.0))
        if suspicious.size and not np.isfinite(c[suspicious]).all():
            _check_finite(c, "candidates")
    if not q.any():
        return np.zeros(c.shape[0], dtype=np.float32)  # simsimd would score zero against zero as 1
    # A zero candidate against a non-zero query: simsimd's distance is 1, so the score is already 0.
    return (1.0 - raw).astype(np.float32)


def _half_is_native() -> bool:
    """Whether simsimd's float16 kernels accumulate in float32 on this CPU.

    Its AVX512-FP16 kernels (the ``sapphire`` capability) accumulate in float16: sums past 65504 overflow
    (to inf, or silently under cosine) and the error reaches ~1e-3. There float16 is scored in float32.
    Checked per call (a few microseconds): capabilities can be switched at run time.
    """
    return not simsimd.get_capabilities().get("sapphire", False)


def _numpy_scores(
    q: NDArray[Any], c: NDArray[Any], dist: Distance, check_finite: bool
) -> NDArray[np.float32]:
    work = np.float64 if q.dtype.kind in "iu" else np.float32
    qw: NDArray[np.floating[Any]] = q.astype(work, copy=False)
    cw: NDArray[np.floating[Any]] = c.astype(work, copy=False)
    with np.errstate(all="ignore"):  # non-finite values are reported from the scores, not as warnings
        if dist is Distance.DOT:
            out = cw @ qw
        elif dist is Distance.COSINE:
            dots = cw @ qw
            norms = np.sqrt(np.einsum("ij,ij->i", cw, cw)) * np.sqrt(qw @ qw)
            if check_finite and not (np.isfinite(dots).all() and np.isfinite(norms).all()):
                _check_finite(c, "candidates")
            safe = np.where(norms > 0.0, norms, 1.0)
            out = np.where(norms > 0.0, dots / safe, 0.0)
        elif dist is Distance.EUCLID:
            diff = cw - qw
            out = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        else:
            out = np.abs(cw - qw).sum(axis=1)
        return cast("NDArray[np.float32]", np.asarray(out).astype(np.float32))


def _top(values: NDArray[np.float32], higher: bool, k: int | None) -> NDArray[np.intp]:
    """Indices of the ``k`` best values, best first, ties by lower index."""
    n = values.shape[0]
    key = -values if higher else values.copy()
    key[np.isnan(key)] = np.inf  # NaN (only from overflowing inputs) ranks last
    if k is None or k >= n:
        return np.argsort(key, kind="stable")
    if k == 0:
        return np.empty(0, dtype=np.intp)
    # Partition, then settle ties at the cut by index so the result matches a full stable sort.
    cut = key[np.argpartition(key, k - 1)[:k]].max()
    better = np.flatnonzero(key < cut)
    tied = np.flatnonzero(key == cut)[: k - better.size]
    chosen = np.sort(np.concatenate([better, tied]))
    return chosen[np.argsort(key[chosen], kind="stable")]


def _raise_bad_rows(vectors: Sequence[Sequence[float] | NDArray[Any] | None], dimension: int) -> None:
    problems: list[tuple[Any, str]] = []
    for i, vector in enumerate(vectors):
        if vector is None:
            continue
        try:
            row = np.asarray(vector, dtype=np.float64)
        except (ValueError, TypeError):
            problems.append((None, f"row {i} is not a numeric vector"))
            continue
        if row.shape != (dimension,):
            size = row.shape[0] if row.ndim == 1 else f"shape {row.shape}"
            problems.append((None, f"row {i} has dimension {size} but {dimension} was expected"))
    if problems:
        raise VectorValidationError(problems)


def _numpy_blas() -> dict[str, str] | None:
    try:
        # numpy >= 1.25 returns its build configuration as a dict instead of printing it.
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return {key: str(blas[key]) for key in ("name", "version") if key in blas}
    except (TypeError, KeyError, AttributeError):
        return None
