"""Benchmark the rescoring kernels: simsimd against the numpy reference, side by side in one run.

Run it as ``scripts/bench kernels`` (or ``python -m benchmarks.kernels``); it is a measurement,
not a test. For every size ``k x d`` (candidates x dimension), normalised and raw vectors, and each
distance, it times :func:`lattice_qdrant.kernels.scores` with both backends and prints the medians and
their ratio (``numpy / simsimd``: above 1 means simsimd is faster). A second pair of columns times what a
query really pays before cutover: turning ``k`` qdrant-client ``ScoredPoint`` results (vectors as Python
lists) into a matrix with :func:`~lattice_qdrant.kernels.to_matrix`, then scoring it.

Repetitions of the two backends are interleaved (alternating which goes first) so that drift in the
machine's load hits both alike; each sample loops enough calls to last a few milliseconds, and the
reported time per call is the median over the samples. The header shows the SIMD targets simsimd
detected and the BLAS numpy uses, with its thread count when ``threadpoolctl`` is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from benchmarks.threads import blas_limit
from lattice_qdrant.kernels import BACKENDS, Backend, capabilities, scores, to_matrix
from lattice_qdrant.spec import Distance

__all__ = ["Row", "main", "run"]

FULL_SIZES: tuple[tuple[int, int], ...] = tuple((k, d) for k in (100, 1000, 10000) for d in (384, 768, 1024))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((100, 384), (1000, 384))
DTYPES = ("float32", "float16", "int8")


@dataclass(frozen=True)
class Row:
    """One measured configuration; times are seconds per call (medians)."""

    distance: str
    k: int
    d: int
    normalised: bool
    dtype: str
    numpy: float
    simsimd: float
    ratio: float
    e2e_numpy: float
    e2e_simsimd: float
    e2e_ratio: float


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark simsimd against numpy for rescoring, and print a table (``--json`` also writes one).

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit code (0).
    """
    parser = argparse.ArgumentParser(
        prog="scripts/bench kernels", description=(main.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (a smoke test)")
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="comma-separated KxD sizes (candidates x dimension), e.g. 100x384,1000x768",
    )
    parser.add_argument(
        "--distances",
        type=_parse_distances,
        default=(Distance.COSINE, Distance.DOT),
        help="comma-separated distances (default: Cosine,Dot; Euclid and Manhattan also work)",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="vector dtype (default float32)")
    parser.add_argument("--reps", type=int, default=None, help="samples per backend (default 9, quick 3)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the ScoredPoint -> matrix columns")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the vectors")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        metavar="N",
        help="limit numpy's BLAS to N threads (needs threadpoolctl); 1 compares one core with one core",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)

    sizes: Sequence[tuple[int, int]] = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    reps: int = args.reps or (3 if args.quick else 9)
    sample_seconds = 0.0005 if args.quick else 0.005
    with blas_limit(args.blas_threads, required=True):
        env = environment()
        _write_header(env)
        _write(_format_row(None))
        rows = run(
            sizes,
            args.distances,
            dtype=args.dtype,
            reps=reps,
            sample_seconds=sample_seconds,
            e2e=not args.no_e2e,
            seed=args.seed,
            on_row=lambda row: _write(_format_row(row)),
        )
    _write("ratio = numpy time / simsimd time (above 1: simsimd is faster); times are medians per call.")
    _write("e2e = to_matrix over k ScoredPoint results (vectors as lists) + scores.")
    if args.json is not None:
        payload = {"environment": env, "rows": [asdict(row) for row in rows]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        _write(f"wrote {args.json}")
    return 0


def run(
    sizes: Sequence[tuple[int, int]],
    distances: Sequence[Distance],
    *,
    dtype: str = "float32",
    reps: int = 9,
    sample_seconds: float = 0.005,
    e2e: bool = True,
    seed: int = 0,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Measure every configuration and return the rows (``on_row`` sees each as soon as it is measured).

    Args:
        sizes: ``(k, d)`` pairs: number of candidates and dimension.
        distances: distances to measure.
        dtype: ``float32``, ``float16`` or ``int8`` (``int8`` is measured raw only).
        reps: samples per backend; the median is reported.
        sample_seconds: a sample loops calls until it lasts about this long.
        e2e: also measure ``to_matrix`` over ``ScoredPoint`` results plus scoring.
        seed: random seed.
        on_row: called with each row as it is measured.

    Returns:
        One :class:`Row` per (size, normalised, distance).
    """
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for k, d in sizes:
        for normalised in (True, False) if dtype != "int8" else (False,):
            query, matrix = _data(rng, k, d, normalised, dtype)
            points = _scored_points(matrix) if e2e else []
            for distance in distances:
                kernel = {backend: _bind_scores(query, matrix, distance, backend) for backend in BACKENDS}
                kernel_times = _race(kernel, reps, sample_seconds)
                if e2e:
                    full = {
                        backend: _bind_e2e(query, points, d, dtype, distance, backend) for backend in BACKENDS
                    }
                    e2e_times = _race(full, reps, sample_seconds)
                else:
                    e2e_times = {backend: float("nan") for backend in BACKENDS}
                row = Row(
                    distance=str(distance),
                    k=k,
                    d=d,
                    normalised=normalised,
                    dtype=dtype,
                    numpy=kernel_times["numpy"],
                    simsimd=kernel_times["simsimd"],
                    ratio=kernel_times["numpy"] / kernel_times["simsimd"],
                    e2e_numpy=e2e_times["numpy"],
                    e2e_simsimd=e2e_times["simsimd"],
                    e2e_ratio=e2e_times["numpy"] / e2e_times["simsimd"],
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def environment() -> dict[str, Any]:
    """What the numbers were measured on: CPU, simsimd targets, numpy's BLAS and thread pools."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        **capabilities(),
        "thread_pools": _thread_pools(),
    }


# -- measuring ------------------------------------------------------------------------------------------


def _data(
    rng: np.random.Generator, k: int, d: int, normalised: bool, dtype: str
) -> tuple[NDArray[Any], NDArray[Any]]:
    if dtype == "int8":
        ints = rng.integers(-128, 128, size=(k + 1, d), dtype=np.int8)
        return ints[0], np.ascontiguousarray(ints[1:])
    values = rng.standard_normal((k + 1, d))
    if normalised:
        values /= np.linalg.norm(values, axis=1, keepdims=True)
    typed = values.astype(dtype)
    return typed[0], np.ascontiguousarray(typed[1:])


def _scored_points(matrix: NDArray[Any]) -> list[models.ScoredPoint]:
    # Built without validation, as fast as possible; qdrant-client hands back the same shape of object.
    return [
        models.ScoredPoint.model_construct(id=i, version=0, score=0.0, vector=row, payload=None)
        for i, row in enumerate(matrix.tolist())
    ]


def _bind_scores(
    query: NDArray[Any], matrix: NDArray[Any], distance: Distance, backend: Backend
) -> Callable[[], object]:
    return lambda: scores(query, matrix, distance, backend=backend)


def _bind_e2e(
    query: NDArray[Any],
    points: list[models.ScoredPoint],
    d: int,
    dtype: str,
    distance: Distance,
    backend: Backend,
) -> Callable[[], object]:
    def call() -> object:
        # ScoredPoint.vector is typed for every query shape (named, sparse, multi); these are dense lists.
        matrix, _ = to_matrix([p.vector for p in points], d, dtype)  # type: ignore[misc]
        return scores(query, matrix, distance, backend=backend)

    return call


def _race(
    calls: dict[Backend, Callable[[], object]], reps: int, sample_seconds: float
) -> dict[Backend, float]:
    """Median seconds per call of each function, their samples interleaved."""
    number: dict[Backend, int] = {}
    for name, call in calls.items():
        call()  # warm up (first-call costs, caches)
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-7)
        number[name] = max(1, min(10_000, round(sample_seconds / once)))
    samples: dict[Backend, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            call, n = calls[name], number[name]
            start = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(values) for name, values in samples.items()}


# -- output ---------------------------------------------------------------------------------------------


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _write_header(env: dict[str, Any]) -> None:
    _write(f"simsimd {env['simsimd_version']}: {', '.join(env['simsimd_capabilities'])}")
    blas = env.get("numpy_blas") or {}
    blas_text = " ".join(str(v) for v in blas.values()) or "unknown"
    _write(f"numpy {env['numpy_version']}, BLAS: {blas_text}")
    for pool in env["thread_pools"]:
        _write(
            f"  thread pool: {pool.get('internal_api')} {pool.get('version') or ''} "
            f"({pool.get('num_threads')} threads)"
        )
    if not env["thread_pools"]:
        _write("  thread pools: unknown (install threadpoolctl to see them)")
    _write(f"python {env['python']} on {env['machine']}; simsimd runs single-threaded")


_COLUMNS = (
    ("distance", 9),
    ("k", 6),
    ("d", 5),
    ("norm", 5),
    ("dtype", 7),
    ("numpy ms", 10),
    ("simsimd ms", 11),
    ("ratio", 7),
    ("e2e numpy ms", 13),
    ("e2e simsimd ms", 15),
    ("e2e ratio", 10),
)


def _format_row(row: Row | None) -> str:
    if row is None:
        return " ".join(f"{name:>{width}}" for name, width in _COLUMNS)
    cells = (
        row.distance,
        str(row.k),
        str(row.d),
        "yes" if row.normalised else "no",
        row.dtype,
        f"{row.numpy * 1e3:.4f}",
        f"{row.simsimd * 1e3:.4f}",
        f"{row.ratio:.2f}",
        _number(row.e2e_numpy * 1e3, 3),
        _number(row.e2e_simsimd * 1e3, 3),
        _number(row.e2e_ratio, 2),
    )
    return " ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, _COLUMNS, strict=True))


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _thread_pools() -> list[dict[str, Any]]:
    try:
        # Optional: not a dependency of the package.
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads")
    return [{key: pool.get(key) for key in keys} for pool in threadpoolctl.threadpool_info()]


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        k, sep, d = part.strip().lower().partition("x")
        if not sep or not k.isdigit() or not d.isdigit() or int(k) < 1 or int(d) < 1:
            raise argparse.ArgumentTypeError(f"size {part!r} is not KxD (e.g. 1000x768)")
        sizes.append((int(k), int(d)))
    return sizes


def _parse_distances(text: str) -> list[Distance]:
    by_name = {d.value.lower(): d for d in Distance}
    try:
        return [by_name[name.strip().lower()] for name in text.split(",")]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(
            f"unknown distance {exc.args[0]!r}; expected {', '.join(by_name)}"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
