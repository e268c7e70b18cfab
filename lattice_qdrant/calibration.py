"""Score thresholds across models: a source-space ``score_threshold`` translated into the target space.

An application tunes ``score_threshold`` on the source model's scores. The target model scores on another
scale (MiniLM's cosine similarities are not a bag of words', a Euclidean distance is not a cosine), so the
same number cut at another place returns another number of results. A :class:`ScoreCalibration` holds the
two models' score distributions, measured over the same queries, and :meth:`ScoreCalibration.translate`
maps a threshold by **quantile matching**: the target threshold keeps the same fraction of results as the
source threshold did.

**Which scores are sampled.** For each query of a sample, the scores of its top ``k`` results in each
model's own space (the source query embedding against the source vectors, the target's against the target
vectors), pooled over the queries. Those are the scores a threshold is applied to: a query with ``limit=k``
and ``score_threshold=t`` returns the top ``k`` results that score at least ``t``. Matching the pooled
distributions keeps the expected count, ``k * P(score >= t)``, the same in both spaces. The scores of
other pairs (a query against a random document) would calibrate the bulk of the distribution, far below
where any threshold cuts.

**Direction.** Cosine and dot are similarities (higher is better), Euclid and Manhattan distances (lower is
better, and a threshold keeps the scores at most ``t``), as Qdrant scores them. Quantiles are matched in a
"goodness" order (the score, negated for a distance), so a source cosine threshold that keeps the best
20% becomes a target Euclidean distance that keeps the best 20%.

**Interpolation.** The distributions are kept as :data:`LEVELS` evenly spaced quantiles; a threshold
between two is mapped linearly between the matching pair (monotone, and the identity when both
distributions are the same). A threshold outside the sampled range is clamped to the target's sampled
extreme and flagged (:attr:`Translation.clamped`).

Pure: no I/O. The executors measure a calibration (:mod:`lattice_qdrant.probe`,
:mod:`lattice_qdrant.compare`), the coordinator stores it in the migration record, and the wrapping client
translates the thresholds of queries answered in the target space (:func:`target_threshold`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import CalibrationError, ScoreThresholdError
from .kernels import higher_is_better
from .spec import Distance, ModelSpec

__all__ = [
    "LEVELS",
    "MIN_SCORES",
    "RECORD_FIELD",
    "ScoreCalibration",
    "ScoreThresholdWarning",
    "ThresholdChoice",
    "Translation",
    "check_threshold",
    "passes",
    "score_range",
    "target_threshold",
]

LEVELS = 101
"""Quantiles kept of each model's distribution (every percentile, 0 to 100)."""

MIN_SCORES = 100
"""A calibration needs at least this many scores of each model (e.g. 10 queries x top 10)."""

RECORD_FIELD = "calibration"
"""The migration record's field holding its calibration (:meth:`ScoreCalibration.to_payload`); a record
without it (one written before calibrations existed, too) has none."""

#: How to make a calibration, for messages.
HOW_TO_CALIBRATE = (
    "run `lattice-qdrant calibrate {collection}` (or `probe`/`compare` with --save-calibration), or "
    "wrap(client, translate_thresholds=False) if the application's thresholds are already the target's"
)


class ScoreThresholdWarning(UserWarning):
    """A ``score_threshold`` answered in the target space was not translated (no calibration), or was
    clamped (it lies outside the sampled scores). Emitted once per process and migration."""


def score_range(distance: Distance | str) -> tuple[float, float]:
    """The scores Qdrant can return under ``distance``: ``[-1, 1]`` for cosine, ``[0, inf)`` for Euclid
    and Manhattan, any finite number for dot."""
    found = Distance(str(getattr(distance, "value", distance)))
    if found == Distance.COSINE:
        return -1.0, 1.0
    if found in (Distance.EUCLID, Distance.MANHATTAN):
        return 0.0, math.inf
    return -math.inf, math.inf


def check_threshold(threshold: Any, distance: Distance | str) -> float:
    """``threshold`` as a float, checked to be a score ``distance`` can give.

    Raises:
        ScoreThresholdError: not a number, NaN or infinite, or outside :func:`score_range`.
    """
    name = str(getattr(distance, "value", distance))
    low, high = score_range(distance)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise ScoreThresholdError(threshold, name, low, high, "is not a number")
    value = float(threshold)
    if not math.isfinite(value):
        raise ScoreThresholdError(threshold, name, low, high, "is not a finite number")
    if not low <= value <= high:
        raise ScoreThresholdError(threshold, name, low, high, "is outside the range of the distance's scores")
    return value


def passes(score: float, threshold: float, distance: Distance | str) -> bool:
    """Whether ``score`` is at least as good as ``threshold`` under ``distance`` (at least it for a
    similarity, at most it for a distance)."""
    return score >= threshold if higher_is_better(distance) else score <= threshold


def _goodness(quantiles: NDArray[np.float64], distance: Distance) -> NDArray[np.float64]:
    """Quantiles (ascending scores) as ascending goodness: index ``i`` is then the value that a fraction
    ``i / (n - 1)`` of the scores is worse than, whatever the direction."""
    return quantiles if higher_is_better(distance) else -quantiles[::-1]


@dataclass(frozen=True)
class Translation:
    """A threshold translated into the target space.

    Attributes:
        source: the threshold as given (source space).
        target: the threshold to send (target space).
        kept: the fraction of the sampled source scores at least as good as ``source``.
        clamped: ``source`` lies outside the sampled source scores, so ``target`` is the target's sampled
            extreme (the count it returns is a guess).
    """

    source: float
    target: float
    kept: float
    clamped: bool


@dataclass(frozen=True)
class ScoreCalibration:
    """Two models' top-``k`` score distributions over the same queries, for translating thresholds.

    Attributes:
        source: the source model's qualified id.
        target: the target model's qualified id.
        source_distance: the source vector's distance.
        target_distance: the target vector's distance.
        source_quantiles: :data:`LEVELS` quantiles of the source scores, ascending (level ``i / (n - 1)``).
        target_quantiles: the target's, at the same levels.
        source_count: source scores sampled.
        target_count: target scores sampled.
        queries: queries the scores came from.
        k: each query's top ``k`` results were scored.
        method: what measured it (``probe``, ``compare``, ``calibrate``).
        measured_at: unix time of the measurement.
        coverage: the fraction of points holding the target vector then (``None``: the probe, which embeds
            its sample).
    """

    source: str
    target: str
    source_distance: Distance
    target_distance: Distance
    source_quantiles: tuple[float, ...]
    target_quantiles: tuple[float, ...]
    source_count: int
    target_count: int
    queries: int
    k: int
    method: str
    measured_at: float = field(default_factory=time.time)
    coverage: float | None = None

    def __post_init__(self) -> None:
        n = len(self.source_quantiles)
        if n < 2 or len(self.target_quantiles) != n:
            raise CalibrationError(
                f"a calibration needs the same number (at least 2) of quantiles of each model, got "
                f"{len(self.source_quantiles)} and {len(self.target_quantiles)}"
            )
        for name, values in (("source", self.source_quantiles), ("target", self.target_quantiles)):
            array = np.asarray(values, dtype=np.float64)
            if not np.all(np.isfinite(array)) or np.any(np.diff(array) < 0):
                raise CalibrationError(f"the {name} quantiles of a calibration must be finite and ascending")

    # ----------------------------------------------------------------- building

    @classmethod
    def measure(
        cls,
        source_scores: Sequence[float] | NDArray[Any],
        target_scores: Sequence[float] | NDArray[Any],
        *,
        source: ModelSpec,
        target: ModelSpec,
        queries: int,
        k: int,
        method: str,
        coverage: float | None = None,
        levels: int = LEVELS,
        min_scores: int = MIN_SCORES,
        measured_at: float | None = None,
    ) -> ScoreCalibration:
        """A calibration from each model's top-``k`` scores over the same ``queries``.

        Raises:
            CalibrationError: fewer than ``min_scores`` scores of a model (the message says how many are
                needed and how to get them), or a score that is not finite.
        """
        if levels < 2:
            raise CalibrationError(f"a calibration needs at least 2 quantile levels, got {levels}")
        arrays = {}
        for name, values in (("source", source_scores), ("target", target_scores)):
            array = np.asarray(values, dtype=np.float64).ravel()
            if array.size < min_scores:
                raise CalibrationError(
                    f"a score calibration needs at least {min_scores} {name} scores, got {array.size} "
                    f"({queries} queries x top {k}): give more queries (--queries FILE, or a larger "
                    "--sample), or a larger --k"
                )
            if not np.all(np.isfinite(array)):
                bad = int(np.sum(~np.isfinite(array)))
                raise CalibrationError(f"the {name} scores hold {bad} non-finite value(s)")
            arrays[name] = array
        grid = np.linspace(0.0, 1.0, levels)
        return cls(
            source=source.qualified_id,
            target=target.qualified_id,
            source_distance=source.distance,
            target_distance=target.distance,
            source_quantiles=tuple(float(v) for v in np.quantile(arrays["source"], grid)),
            target_quantiles=tuple(float(v) for v in np.quantile(arrays["target"], grid)),
            source_count=int(arrays["source"].size),
            target_count=int(arrays["target"].size),
            queries=queries,
            k=k,
            method=method,
            measured_at=time.time() if measured_at is None else measured_at,
            coverage=coverage,
        )

    def inverse(self) -> ScoreCalibration:
        """The same calibration the other way round (target space to source space)."""
        return ScoreCalibration(
            source=self.target,
            target=self.source,
            source_distance=self.target_distance,
            target_distance=self.source_distance,
            source_quantiles=self.target_quantiles,
            target_quantiles=self.source_quantiles,
            source_count=self.target_count,
            target_count=self.source_count,
            queries=self.queries,
            k=self.k,
            method=self.method,
            measured_at=self.measured_at,
            coverage=self.coverage,
        )

    def fits(self, source: ModelSpec, target: ModelSpec) -> bool:
        """Whether it was measured for these two models (a calibration of other models is not used)."""
        return self.source == source.qualified_id and self.target == target.qualified_id

    # ----------------------------------------------------------------- using

    def translate(self, threshold: Any) -> Translation:
        """The target-space threshold that keeps the fraction of results ``threshold`` keeps in the source
        space (monotone piecewise-linear between matched quantiles; clamped, and flagged, outside them).

        Raises:
            ScoreThresholdError: ``threshold`` is not a score the source distance can give (NaN, or
                outside :func:`score_range`).
        """
        value = check_threshold(threshold, self.source_distance)
        good_source = _goodness(np.asarray(self.source_quantiles, dtype=np.float64), self.source_distance)
        good_target = _goodness(np.asarray(self.target_quantiles, dtype=np.float64), self.target_distance)
        # Tied source quantiles: a threshold at the tied score keeps every tie, so the fraction it keeps is
        # that of the tie's lowest level (the first occurrence).
        xs, first = np.unique(good_source, return_index=True)
        ys = good_target[first]
        g = value if higher_is_better(self.source_distance) else -value
        clamped = bool(g < xs[0] or g > xs[-1])
        if xs.size == 1:
            mapped, level = float(ys[0]), float(first[0])
        else:
            mapped = float(np.interp(g, xs, ys))
            level = float(np.interp(g, xs, first.astype(np.float64)))
        worse = level / (len(good_source) - 1)
        target = mapped if higher_is_better(self.target_distance) else -mapped
        return Translation(source=value, target=target + 0.0, kept=1.0 - worse, clamped=clamped)

    # ----------------------------------------------------------------- the record

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe form, as stored in the migration record."""
        return {
            "source": self.source,
            "target": self.target,
            "source_distance": self.source_distance.value,
            "target_distance": self.target_distance.value,
            "source_quantiles": list(self.source_quantiles),
            "target_quantiles": list(self.target_quantiles),
            "source_count": self.source_count,
            "target_count": self.target_count,
            "queries": self.queries,
            "k": self.k,
            "method": self.method,
            "measured_at": self.measured_at,
            "coverage": self.coverage,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ScoreCalibration:
        """The calibration of :meth:`to_payload` (unknown keys, from a newer version, are ignored).

        Raises:
            CalibrationError: a key is missing or a value does not fit.
        """
        try:
            return cls(
                source=str(payload["source"]),
                target=str(payload["target"]),
                source_distance=Distance(payload["source_distance"]),
                target_distance=Distance(payload["target_distance"]),
                source_quantiles=tuple(float(v) for v in payload["source_quantiles"]),
                target_quantiles=tuple(float(v) for v in payload["target_quantiles"]),
                source_count=int(payload["source_count"]),
                target_count=int(payload["target_count"]),
                queries=int(payload["queries"]),
                k=int(payload["k"]),
                method=str(payload["method"]),
                measured_at=float(payload["measured_at"]),
                coverage=None if payload.get("coverage") is None else float(payload["coverage"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"the stored score calibration is unreadable: {exc!r}") from None

    def describe(self) -> str:
        """One line for a person: what was measured, and a few matched quantiles."""
        n = len(self.source_quantiles) - 1
        pairs = []
        for p in (50, 75, 90, 95):
            i = round(p / 100 * n)
            pairs.append(f"p{p} {self.source_quantiles[i]:.3f} -> {self.target_quantiles[i]:.3f}")
        cov = "" if self.coverage is None else f", coverage {self.coverage:.0%}"
        return (
            f"{self.method}: {self.queries} queries x top {self.k} ({self.source_count} source, "
            f"{self.target_count} target scores{cov}); " + ", ".join(pairs)
        )


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold a query answered in the target space is sent with, and what to warn about.

    Attributes:
        value: the threshold to send.
        translation: the translation made, ``None`` when it was sent as given.
        warning: why the caller should be told (``uncalibrated`` or ``clamped``), or ``None``.
        message: the warning's text.
    """

    value: float
    translation: Translation | None = None
    warning: str | None = None
    message: str = ""


def target_threshold(
    threshold: Any,
    *,
    collection: str,
    source: ModelSpec,
    target: ModelSpec,
    calibration: ScoreCalibration | None,
    translate: bool = True,
) -> ThresholdChoice:
    """How a source-space ``threshold`` of a query answered in the target space is sent (pure).

    Translated with ``calibration`` when it fits the two models and ``translate`` is on; sent as given,
    with an ``uncalibrated`` warning, when there is no calibration; as given and silently when
    ``translate`` is off (the application's thresholds are the target's already).

    Raises:
        ScoreThresholdError: ``threshold`` is not a score of the source distance (or, with ``translate``
            off, of the target distance).
    """
    if not translate:
        return ThresholdChoice(check_threshold(threshold, target.distance))
    value = check_threshold(threshold, source.distance)
    if calibration is None or not calibration.fits(source, target):
        return ThresholdChoice(
            value,
            warning="uncalibrated",
            message=(
                f"{collection}: score_threshold {value:g} was tuned on {source.qualified_id}'s scores, but "
                f"the query is answered by {target.qualified_id}, whose scores lie elsewhere, and no score "
                "calibration is stored with the migration, so it is sent untranslated and may return "
                "another number of results; " + HOW_TO_CALIBRATE.format(collection=collection)
            ),
        )
    found = calibration.translate(value)
    if found.clamped:
        low, high = calibration.source_quantiles[0], calibration.source_quantiles[-1]
        return ThresholdChoice(
            found.target,
            found,
            "clamped",
            f"{collection}: score_threshold {value:g} lies outside the {calibration.source_count} source "
            f"scores sampled ([{low:.4g}, {high:.4g}]), so its translation to {found.target:.4g} is the "
            "target's sampled extreme; recalibrate with queries that reach it",
        )
    return ThresholdChoice(found.target, found)
