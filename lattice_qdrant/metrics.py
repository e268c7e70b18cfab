"""Optional Prometheus metrics for the backfill (``pip install 'lattice-qdrant[metrics]'``).

:class:`BackfillMetrics` is what the backfill reports to; :data:`NO_METRICS` does nothing, and
:func:`prometheus_metrics` serves the same numbers on an HTTP port with prometheus-client:

* ``lattice_backfill_points_total{collection}``: points written
* ``lattice_backfill_failures_total{collection}``: points that failed permanently
* ``lattice_backfill_queue_depth{collection,stage}``: batches waiting before a stage (embed, write)
* ``lattice_backfill_active_workers{collection,stage}``: workers busy in a stage (read, embed, write)
* ``lattice_backfill_batch_seconds{collection,stage}``: time one batch spends in a stage
"""

from __future__ import annotations

from typing import Any

from .errors import MissingDependencyError

__all__ = ["NO_METRICS", "BackfillMetrics", "prometheus_metrics"]


class BackfillMetrics:
    """A sink for backfill metrics; this base class discards them."""

    def points(self, collection: str, n: int) -> None:
        """``n`` points were written."""

    def failures(self, collection: str, n: int) -> None:
        """``n`` points failed permanently."""

    def queue_depth(self, collection: str, stage: str, depth: int) -> None:
        """Batches waiting before ``stage``."""

    def active(self, collection: str, stage: str, delta: int) -> None:
        """A worker of ``stage`` became busy (+1) or idle (-1)."""

    def batch_seconds(self, collection: str, stage: str, seconds: float) -> None:
        """One batch spent ``seconds`` in ``stage``."""


NO_METRICS = BackfillMetrics()


class _Prometheus(BackfillMetrics):
    def __init__(self, registry: Any, prometheus: Any) -> None:
        labels = ["collection"]
        staged = ["collection", "stage"]
        kw = {"registry": registry}
        self._points = prometheus.Counter(
            "lattice_backfill_points", "Points written by the backfill", labels, **kw
        )
        self._failures = prometheus.Counter(
            "lattice_backfill_failures", "Points that failed permanently", labels, **kw
        )
        self._queue = prometheus.Gauge(
            "lattice_backfill_queue_depth", "Batches waiting before a stage", staged, **kw
        )
        self._active = prometheus.Gauge(
            "lattice_backfill_active_workers", "Workers busy in a stage", staged, **kw
        )
        self._latency = prometheus.Histogram(
            "lattice_backfill_batch_seconds", "Time a batch spends in a stage", staged, **kw
        )

    def points(self, collection: str, n: int) -> None:
        self._points.labels(collection).inc(n)

    def failures(self, collection: str, n: int) -> None:
        self._failures.labels(collection).inc(n)

    def queue_depth(self, collection: str, stage: str, depth: int) -> None:
        self._queue.labels(collection, stage).set(depth)

    def active(self, collection: str, stage: str, delta: int) -> None:
        self._active.labels(collection, stage).inc(delta)

    def batch_seconds(self, collection: str, stage: str, seconds: float) -> None:
        self._latency.labels(collection, stage).observe(seconds)


def prometheus_metrics(port: int | None = None, *, registry: Any = None) -> BackfillMetrics:
    """Metrics recorded with prometheus-client, served on ``port`` when given.

    Args:
        port: serve ``/metrics`` on this port (``None``: only record, e.g. in tests).
        registry: a ``CollectorRegistry``; a fresh one by default.

    Raises:
        MissingDependencyError: prometheus-client is not installed.
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingDependencyError("prometheus-client", "metrics") from exc
    registry = registry if registry is not None else prometheus_client.CollectorRegistry()
    metrics = _Prometheus(registry, prometheus_client)
    if port is not None:
        prometheus_client.start_http_server(port, registry=registry)
    return metrics
