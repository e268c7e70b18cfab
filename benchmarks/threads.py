"""numpy's BLAS threads, limited for a measurement (shared by the benchmarks).

In one process with local mode, numpy's BLAS runs the brute-force searches; after each call its threads
spin for a while, waiting for more work. On a machine of few cores they then take the CPU from PyTorch's
threads and from the searches that follow: on 2 cores the forward pass of a query embedding that follows a
local-mode search measured 1.3 to 2.5 times slower than alone. A server runs its searches in its own
process, so the benchmarks run numpy's BLAS on one thread unless told otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

__all__ = ["blas_limit"]


@contextlib.contextmanager
def blas_limit(threads: int | None, *, required: bool = False) -> Iterator[str]:
    """numpy's BLAS limited to ``threads`` (``None``: as configured), and what it is.

    The limit needs ``threadpoolctl``; without it BLAS stays as it is, or, with ``required`` (the limit was
    asked for explicitly), the benchmark stops with a message naming the install command.
    """
    if threads is None:
        yield "as configured"
        return
    try:
        # Optional: not a dependency of the package.
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        if required:
            raise SystemExit("--blas-threads needs threadpoolctl: pip install threadpoolctl") from None
        yield "as configured (install threadpoolctl to limit them)"
        return
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        yield str(threads)
