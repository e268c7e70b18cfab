"""Probe: would migrating a collection to another model pay? Measured on a sample, before anything is written.

:func:`probe` takes a seeded random sample of the collection's points (1,000 by default), embeds their text
with the target model, and searches that same sample both ways, by brute force in this process
(:mod:`lattice_qdrant.kernels`; nothing is sent to Qdrant but reads):

* **source**: the query embedded with the source model, against the points' stored source vectors;
* **target**: the query embedded with the target model, against the points' fresh target embeddings.

The queries are labelled ones from a file (compare's format, :func:`~lattice_qdrant.compare.load_queries`;
the points they name as relevant join the sample, so that both models can find them), or known-item queries
drawn from the sample (a point's first sentence, at most 12 words, whose one relevant result is that point:
:func:`~lattice_qdrant.compare.query_from_text`), or both.

For each ``k`` the report gives recall@k and nDCG@k of both models, their difference ``target - source``,
and overlap@k of the two result lists, each with a 95% confidence interval: a percentile bootstrap over the
queries (1,000 resamples, seeded), paired, so that each resample draws the same queries for both models
and the interval of the difference accounts for the queries both find hard. An interval always contains
its estimate. The report also gives the score distributions of both models (quantiles of the top-1 score,
of the top-``k`` scores, and of the relevant points' scores, for choosing a score threshold), what
migrating every point would cost (the embedding rate measured while embedding the sample, the tokens, and
the storage of the target vectors: :func:`~lattice_qdrant.backfill.vector_bytes`), and a verdict.

The verdict (:func:`verdict`) judges recall@k at ``k = 10`` (the largest ``k`` when 10 is not reported).
With the difference ``d = target - source``, its interval ``[lo, hi]`` and the margin ``m`` (0.02 by
default, the smallest gain worth a migration):

* ``migrate``: ``lo > 0`` and ``d >= m``: the target is better, and by at least the margin;
* ``not worth it``: ``hi < m``: the target gains less than the margin, or loses (identical models end
  here, with ``d = lo = hi = 0``, unless ``m`` is 0);
* ``inconclusive``: anything else (the interval reaches both sides of the margin), and always with fewer
  than 10 labelled queries. More queries or a larger sample narrow the interval.

Both models search the sample, not the whole collection, so their absolute recall is higher than it would
be on every point; the comparison between them is what the probe measures.

The report also holds the score calibration of the two models' top-``k`` scores
(:class:`~lattice_qdrant.calibration.ScoreCalibration`, for translating score thresholds after cutover).

Read-only: the probe reads the collection (one scroll of ids, then the sampled points) and, through its
caller, the control collection (the model registry, the migration record); it writes to neither and creates
nothing. ``lattice-qdrant probe --save-calibration`` (``commands.probe(..., save_calibration=True)``) stores
the calibration with the collection's migration afterwards, when asked.
"""

from __future__ import annotations

import html
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import kernels
from .backfill import estimate_tokens, vector_bytes
from .calibration import ScoreCalibration
from .compare import (
    DEFAULT_KS,
    PointId,
    QueryOutcome,
    QueryReport,
    QuerySpec,
    checked_ks,
    judged_k,
    normalize_id,
    query_from_text,
)
from .embedders import Embedder, embed_checked
from .errors import CalibrationError, ConfigError, ProbeError, TextFieldError
from .report import format_bytes, html_page, html_table, num, text_notes, text_table, timestamp
from .spec import Distance, ModelSpec
from .state import format_duration
from .store import Store, vector_value
from .verify import reservoir_sample

__all__ = [
    "DEFAULT_KNOWN_ITEMS",
    "DEFAULT_MARGIN",
    "DEFAULT_SAMPLE",
    "MIN_LABELLED",
    "QUANTILES",
    "SYSTEMS",
    "VERDICTS",
    "Interval",
    "MigrationCost",
    "ProbeAtK",
    "ProbeReport",
    "interval",
    "probe",
    "quantiles",
    "resample_indices",
    "verdict",
]

DEFAULT_SAMPLE = 1000
"""Points sampled by default."""

DEFAULT_KNOWN_ITEMS = 200
"""Known-item queries drawn from the sample by default, when no queries are given."""

DEFAULT_MARGIN = 0.02
"""The smallest recall gain worth migrating for, by default (two points of recall@10)."""

MIN_LABELLED = 10
"""Fewer labelled queries than this give an ``inconclusive`` verdict, whatever the numbers."""

SYSTEMS: tuple[str, ...] = ("source", "target")
"""The two searches, in report order."""

VERDICTS: tuple[str, ...] = ("migrate", "not worth it", "inconclusive")
"""The verdicts :func:`verdict` gives."""

QUANTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
"""The percentiles of the score distributions."""

LEVEL = 0.95
_RESAMPLES = 1000
_SOURCE_CHECK = 16
_EMBED_CHUNK = 1024


# --------------------------------------------------------------------------- statistics (pure)


@dataclass(frozen=True)
class Interval:
    """An estimate and its confidence interval: ``low <= value <= high``."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """JSON-safe form."""
        return {"value": self.value, "low": self.low, "high": self.high}

    def text(self, signed: bool = False) -> str:
        """``0.420 [0.350, 0.490]`` (``signed``: ``+0.120 [+0.050, +0.190]``)."""
        f = "{:+.3f}" if signed else "{:.3f}"
        # round first, and add 0.0 so that -0.0 is written 0.000
        low, value, high = (f.format(round(v, 3) + 0.0) for v in (self.low, self.value, self.high))
        return f"{value} [{low}, {high}]"


def resample_indices(n: int, resamples: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Bootstrap draws: ``resamples`` rows of ``n`` indices drawn with replacement from ``range(n)``.

    The same draws given to :func:`interval` for two metrics over the same queries pair them.
    """
    return rng.integers(0, n, size=(resamples, n)).astype(np.intp)


def interval(
    values: Sequence[float] | NDArray[np.float64], draws: NDArray[np.intp], level: float = LEVEL
) -> Interval:
    """The mean of ``values`` with its percentile-bootstrap interval at ``level``.

    Args:
        values: one number per query.
        draws: indices from :func:`resample_indices` over ``len(values)``.
        level: the confidence level, e.g. 0.95.

    Returns:
        The mean and the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means,
        widened to include the mean when resampling puts it outside (possible only with few queries).

    Raises:
        ConfigError: ``values`` is empty.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ConfigError("no values to estimate an interval from", key="queries")
    mean = float(array.mean())
    means = array[draws].mean(axis=1)
    low, high = (float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(mean, min(low, mean), max(high, mean))


def quantiles(values: Iterable[float]) -> dict[str, float | int] | None:
    """The :data:`QUANTILES` of ``values`` (``p5`` ... ``p95``) and their ``count``; ``None`` when empty."""
    array = np.fromiter(values, dtype=np.float64)
    if array.size == 0:
        return None
    points = np.percentile(array, QUANTILES)
    out: dict[str, float | int] = {f"p{p}": float(v) for p, v in zip(QUANTILES, points, strict=True)}
    out["count"] = int(array.size)
    return out


def verdict(
    gain: Interval | None,
    margin: float,
    *,
    labelled: int,
    k: int,
    source: float | None = None,
    target: float | None = None,
) -> tuple[str, str]:
    """Whether the migration pays, from the recall@k difference ``target - source`` (module docstring).

    Pure.

    Args:
        gain: the difference of the mean recall@k and its interval, or ``None`` without labelled queries.
        margin: the smallest gain worth migrating for (0 to 1).
        labelled: how many labelled queries the difference is measured on.
        k: the cut-off judged, for the message.
        source: the source's mean recall@k, for the message.
        target: the target's mean recall@k, for the message.

    Returns:
        ``(verdict, reason)``: one of :data:`VERDICTS` and a sentence with the numbers behind it.
    """
    if gain is None or labelled == 0:
        return "inconclusive", (
            "no query has relevance labels, so recall cannot be compared: give a queries file with "
            '"relevant" ids, or known-item queries drawn from the sample'
        )
    both = (
        f"recall@{k}: target {num(target)}, source {num(source)}; "
        if source is not None and target is not None
        else ""
    )
    diff = f"the difference {gain.text(signed=True)}"
    if labelled < MIN_LABELLED:
        return "inconclusive", (
            f"{both}{diff} is measured on only {labelled} labelled queries; a verdict needs at least "
            f"{MIN_LABELLED}"
        )
    if gain.low > 0 and gain.value >= margin:
        return "migrate", f"{both}{diff} is above 0 and at least the margin {margin:g}"
    if gain.high < margin:
        if gain.high < 0:
            return "not worth it", f"{both}{diff} is below 0: the target finds less"
        return "not worth it", f"{both}{diff} stays below the margin {margin:g}: too little gain"
    return "inconclusive", (
        f"{both}{diff} reaches both sides of the margin {margin:g}: more labelled queries or a larger "
        "sample would narrow it"
    )


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ProbeAtK:
    """The metrics at one cut-off ``k``, each with its interval.

    Attributes:
        k: the cut-off.
        overlap: mean overlap@k of the source's and the target's results, over every query.
        recall: mean recall@k per system, over the labelled queries (empty without labels).
        ndcg: mean nDCG@k per system, over the labelled queries (empty without labels).
        recall_gain: mean of the per-query difference ``target - source`` of recall@k (paired).
        ndcg_gain: the same for nDCG@k.
    """

    k: int
    overlap: Interval
    recall: Mapping[str, Interval] = field(default_factory=dict)
    ndcg: Mapping[str, Interval] = field(default_factory=dict)
    recall_gain: Interval | None = None
    ndcg_gain: Interval | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "k": self.k,
            "overlap": self.overlap.to_dict(),
            "recall": {s: v.to_dict() for s, v in self.recall.items()},
            "ndcg": {s: v.to_dict() for s, v in self.ndcg.items()},
            "recall_gain": self.recall_gain.to_dict() if self.recall_gain else None,
            "ndcg_gain": self.ndcg_gain.to_dict() if self.ndcg_gain else None,
        }


@dataclass(frozen=True)
class MigrationCost:
    """What migrating every point of the collection to the target would take, measured on the sample.

    Attributes:
        points: points in the collection (all need the target's embedding).
        tokens: estimated tokens to embed (the sample's mean, four characters a token, times ``points``).
        seconds: ``points / points_per_second``: the embedding alone, one process.
        points_per_second: the target's embedding rate, measured on the sample after a warm-up call.
        calibrated_on: how many texts the rate was measured on.
        storage_bytes: what the target vectors add (float32 values plus HNSW links per point); a re-embed
            overwrites the source vectors instead (after backing them up), a blue-green copy also holds the
            payloads.
        dimension: the target's vector size.
    """

    points: int
    tokens: int
    seconds: float
    points_per_second: float
    calibrated_on: int
    storage_bytes: int
    dimension: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "points": self.points,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "points_per_second": self.points_per_second,
            "calibrated_on": self.calibrated_on,
            "storage_bytes": self.storage_bytes,
            "dimension": self.dimension,
        }


@dataclass(frozen=True)
class ProbeReport(QueryReport[ProbeAtK]):
    """The probe of a migration: quality on a sample, cost, and the verdict.

    Attributes:
        collection: the collection probed.
        source: the source model's qualified id.
        target: the target model's qualified id.
        source_vector: the named vector holding the source vectors (``""``: the unnamed one).
        distances: the distance each system scores with.
        text_field: the payload field embedded.
        total: points in the collection (counted by the scroll of ids).
        sample: the sample size asked for.
        seed: the sample's seed.
        searched: points both models searched (the sample with text and a source vector, and the relevant
            points of the queries).
        origin: where the queries came from.
        ks: the cut-offs, ascending.
        outcomes: every query with the ids each system returned (best first, up to the largest ``k``).
        at_k: the metrics per cut-off, in the order of ``ks``.
        scores: per system, the :func:`quantiles` of the ``top1`` scores, of the ``topk`` scores (every
            score within the top :attr:`decision_k`) and of the ``relevant`` points' scores.
        cost: what migrating every point would take.
        verdict: one of :data:`VERDICTS`.
        reason: the numbers behind the verdict.
        margin: the margin the verdict used.
        notes: what a reader must know to read the numbers.
        level: the confidence level of the intervals.
        created_at: unix time of the probe.
        calibration: the score calibration of the two models' top-:attr:`decision_k` scores (for
            translating score thresholds, :mod:`lattice_qdrant.calibration`); ``None`` when there were too
            few scores (``calibration_problem`` says why).
        calibration_problem: why no calibration was made.
    """

    collection: str
    source: str
    target: str
    source_vector: str
    distances: Mapping[str, str]
    text_field: str
    total: int
    sample: int
    seed: int
    searched: int
    origin: str
    ks: tuple[int, ...]
    outcomes: tuple[QueryOutcome, ...]
    at_k: tuple[ProbeAtK, ...]
    scores: Mapping[str, Mapping[str, Mapping[str, float | int] | None]]
    cost: MigrationCost
    verdict: str
    reason: str
    margin: float
    notes: tuple[str, ...] = ()
    level: float = LEVEL
    created_at: float = field(default_factory=time.time)
    calibration: ScoreCalibration | None = None
    calibration_problem: str = ""

    @property
    def decision_k(self) -> int:
        """The cut-off the verdict judges: 10 when reported, otherwise the largest ``k``."""
        return judged_k(self.ks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``probe --json``): every number, and each query's results."""
        return {
            "collection": self.collection,
            "source": self.source,
            "target": self.target,
            "source_vector": self.source_vector,
            "distances": dict(self.distances),
            "text_field": self.text_field,
            "total": self.total,
            "sample": self.sample,
            "seed": self.seed,
            "searched": self.searched,
            "origin": self.origin,
            "queries": len(self.outcomes),
            "labelled": self.labelled,
            "ks": list(self.ks),
            "level": self.level,
            "verdict": self.verdict,
            "reason": self.reason,
            "margin": self.margin,
            "k": self.decision_k,
            "at_k": [row.to_dict() for row in self.at_k],
            "scores": {s: dict(d) for s, d in self.scores.items()},
            "cost": self.cost.to_dict(),
            "notes": list(self.notes),
            "created_at": self.created_at,
            "calibration": self.calibration.to_payload() if self.calibration is not None else None,
            "per_query": [o.to_dict() for o in self.outcomes],
        }

    # ------------------------------------------------------------------- shared pieces

    def _header(self) -> list[tuple[str, str]]:
        vector = repr(self.source_vector) if self.source_vector else "the unnamed vector"
        return [
            ("source", f"{self.source} (stored vector {vector}, {self.distances['source']})"),
            ("target", f"{self.target} (embedded now, {self.distances['target']})"),
            (
                "sample",
                f"{self.searched} points searched of {self.total} (seed {self.seed}, --sample {self.sample})",
            ),
            ("queries", f"{self.origin} ({self.labelled} of {len(self.outcomes)} with relevance labels)"),
        ]

    def _metric_rows(self, metric: str) -> list[list[str]]:
        rows = []
        for r in self.at_k:
            values: Mapping[str, Interval] = getattr(r, metric)
            gain: Interval | None = getattr(r, f"{metric}_gain")
            rows.append(
                [
                    str(r.k),
                    *(values[s].text() if s in values else "-" for s in SYSTEMS),
                    gain.text(signed=True) if gain else "-",
                ]
            )
        return rows

    def _score_rows(self) -> list[list[str]]:
        rows = []
        labels = {"top1": "top-1", "topk": f"top-{self.decision_k}", "relevant": "relevant"}
        for system in SYSTEMS:
            for key, label in labels.items():
                q = self.scores.get(system, {}).get(key)
                cells = ["-"] * len(QUANTILES) if q is None else [f"{q[f'p{p}']:.3f}" for p in QUANTILES]
                rows.append([f"{system} {label}", *cells, "0" if q is None else str(q["count"])])
        return rows

    def _cost_rows(self) -> list[tuple[str, str]]:
        c = self.cost
        took = format_duration(c.seconds) if c.points_per_second else "unknown"
        return [
            (
                "time",
                f"about {took} of embedding at {c.points_per_second:.1f} points/s "
                f"(calibrated on {c.calibrated_on} texts, one process)",
            ),
            ("tokens", f"about {c.tokens:,}"),
            (
                "storage",
                f"+{format_bytes(c.storage_bytes)} of target vectors ({c.dimension} float32 values and HNSW "
                "links per point)",
            ),
        ]

    def _calibration_line(self) -> str:
        if self.calibration is None:
            return f"none ({self.calibration_problem})"
        return "source -> target " + self.calibration.describe()

    # ------------------------------------------------------------------- text

    def render_text(self) -> str:
        """Aligned tables for a terminal: the verdict, recall, nDCG, overlap, scores, cost and notes."""
        pct = f"{self.level:.0%}"
        lines = [
            f"Probe of {self.collection!r}: {self.source} -> {self.target}",
            *(f"  {key:8}{value}" for key, value in self._header()),
            "",
            f"verdict  {self.verdict.upper()}: {self.reason}",
            "",
        ]
        if self.labelled:
            for title, metric in (("Recall@k", "recall"), ("nDCG@k", "ndcg")):
                lines.append(
                    f"{title} (mean over {self.labelled} labelled queries, {pct} bootstrap interval)"
                )
                lines += text_table(["k", *SYSTEMS, "target - source"], self._metric_rows(metric))
                lines.append("")
        lines.append(f"Overlap@k of source and target (mean over {len(self.outcomes)} queries)")
        lines += text_table(["k", "overlap@k"], [[str(r.k), r.overlap.text()] for r in self.at_k])
        lines.append("")
        lines.append("Scores (" + " / ".join(f"p{p}" for p in QUANTILES) + ")")
        lines += text_table(["", *(f"p{p}" for p in QUANTILES), "n"], self._score_rows())
        lines.append(f"  threshold calibration: {self._calibration_line()}")
        lines.append("")
        lines.append(f"Cost of migrating all {self.cost.points} points")
        lines += [f"  {key:8}{value}" for key, value in self._cost_rows()]
        lines += text_notes(self.notes, 200)
        return "\n".join(lines)

    # ------------------------------------------------------------------- html

    def render_html(self) -> str:
        """A self-contained HTML page with the same tables (nothing fetched: it opens offline)."""
        e = html.escape
        pct = f"{self.level:.0%}"
        parts = [
            f"<h1>Probe of <code>{e(self.collection)}</code>: {e(self.source)} &rarr; {e(self.target)}</h1>",
            f"<p>{e(timestamp(self.created_at))}.</p>",
            "<table><tbody>",
            *(f"<tr><th>{e(key)}</th><td>{e(value)}</td></tr>" for key, value in self._header()),
            f"<tr><th>verdict</th><td><strong>{e(self.verdict)}</strong>: {e(self.reason)}</td></tr>",
            "</tbody></table>",
        ]
        if self.labelled:
            for title, metric in (("Recall@k", "recall"), ("nDCG@k", "ndcg")):
                parts.append(f"<h2>{title} ({self.labelled} labelled queries, {pct} bootstrap interval)</h2>")
                parts.append(html_table(["k", *SYSTEMS, "target - source"], self._metric_rows(metric)))
        parts.append(f"<h2>Overlap@k of source and target ({len(self.outcomes)} queries)</h2>")
        parts.append(html_table(["k", "overlap@k"], [[str(r.k), r.overlap.text()] for r in self.at_k]))
        parts.append("<h2>Scores</h2>")
        parts.append(html_table(["", *(f"p{p}" for p in QUANTILES), "n"], self._score_rows()))
        parts.append(f"<h2>Cost of migrating all {self.cost.points} points</h2>")
        parts.append(html_table(["", ""], [list(row) for row in self._cost_rows()]))
        return html_page(f"Probe of {self.collection}", parts, self.notes)


# --------------------------------------------------------------------------- running it


@dataclass
class _Point:
    id: PointId
    text: str
    vector: list[float]
    sampled: bool


def probe(
    store: Store,
    collection: str,
    *,
    source: ModelSpec,
    target: ModelSpec,
    source_embedder: Embedder,
    target_embedder: Embedder,
    source_vector: str | None = None,
    queries: Sequence[QuerySpec] = (),
    origin: str | None = None,
    sample: int = DEFAULT_SAMPLE,
    known_items: int | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    seed: int = 0,
    margin: float = DEFAULT_MARGIN,
    text_field: str = "text",
    max_text_chars: int | None = 20_000,
    resamples: int = _RESAMPLES,
    page_size: int = 256,
    notes: Sequence[str] = (),
) -> ProbeReport:
    """Measure on a sample whether moving ``collection`` from ``source`` to ``target`` pays (see above).

    Read-only: reads the collection, writes nothing anywhere.

    Args:
        store: the store adapter.
        collection: the collection to probe.
        source: the model of the stored source vectors.
        target: the model to probe.
        source_embedder: embeds the queries for the source search.
        target_embedder: embeds the sample and the queries for the target search.
        source_vector: the named vector holding the source vectors (default: the collection's only one).
        queries: labelled (or plain) queries; their relevant points join the sample.
        origin: how to describe where ``queries`` came from (a file name).
        sample: how many points to sample (at least 1).
        known_items: known-item queries to draw from the sample (default: :data:`DEFAULT_KNOWN_ITEMS`
            without ``queries``, none with them).
        ks: the cut-offs (1 to 1000).
        seed: seed of the sample, of the known-item queries and of the bootstrap.
        margin: the smallest recall gain worth migrating for (0 to 1), for the verdict.
        text_field: the payload field holding the text.
        max_text_chars: texts are cut to this many characters before embedding, as the backfill does.
        resamples: bootstrap resamples per interval.
        page_size: points retrieved per request.
        notes: notes from the caller, added to the report's.

    Raises:
        ConfigError: a bad sample size, margin, ``k`` or vector; a queries file naming ids the collection
            does not hold; no queries.
        TextFieldError: no sampled point holds text in ``text_field``.
        ProbeError: the collection is empty, or no sampled point holds the source vector.
        CollectionNotFoundError: the collection does not exist.
        EmbedderError: a model cannot embed.
    """
    cutoffs = checked_ks(ks)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ConfigError(f"the sample size (--sample) must be at least 1, got {sample!r}", key="sample")
    if known_items is not None and known_items < 0:
        raise ConfigError(f"--known-items must be 0 or more, got {known_items}", key="known_items")
    if not 0.0 <= margin <= 1.0:
        raise ConfigError(f"the margin must be between 0 and 1, got {margin}", key="margin")
    if resamples < 1 or page_size < 1:
        raise ConfigError("resamples and page_size must be at least 1", key="resamples")
    vector = _source_vector(store, collection, source, source_vector)
    specs = list(queries)
    wanted = known_items if known_items is not None else (0 if specs else DEFAULT_KNOWN_ITEMS)
    report_notes = list(notes)

    relevant = list(dict.fromkeys(pid for q in specs if q.relevant for pid in sorted(q.relevant, key=str)))
    forced = _retrieve(store, collection, relevant, text_field, vector, page_size)
    unknown = [pid for pid in relevant if pid not in forced]
    if unknown:
        shown = ", ".join(str(pid) for pid in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(
            f"the queries {origin or 'given'} name {len(unknown)} relevant id(s) that {collection!r} "
            f"does not hold: {shown}; every relevant id must be a point of the collection",
            key="queries",
        )

    rng = random.Random(seed)
    total = 0

    def scrolled() -> Iterable[Any]:
        nonlocal total
        for page in store.iter_points(collection, page_size=max(page_size, 1024), with_payload=False):
            total += len(page)
            yield from (record.id for record in page)

    ids = reservoir_sample(scrolled(), sample, rng)
    if total == 0:
        raise ProbeError(f"{collection!r} has no points: there is nothing to probe")
    fresh = [pid for pid in (normalize_id(i) for i in ids) if pid not in forced]
    drawn = _retrieve(store, collection, fresh, text_field, vector, page_size)
    records = {**drawn, **forced}
    points, no_text, no_vector = _usable(records, drawn, max_text_chars)
    if no_text == len(records):
        raise TextFieldError(collection, text_field, len(records), _payload_fields(store, collection, ids))
    if not points:
        raise ProbeError(
            f"none of the {len(records)} sampled points of {collection!r} that hold text has the source "
            f"vector {vector!r}: is --source-vector right?"
        )
    if no_text or no_vector:
        report_notes.append(
            f"{no_text + no_vector} sampled point(s) are left out of both searches: {no_text} without text "
            f"in {text_field!r} (the target cannot embed them), {no_vector} without the source vector"
        )
    kept = {p.id for p in points}
    specs = _restricted(specs, kept, report_notes)
    pool = [p for p in points if p.sampled]
    picked = sorted(rng.sample(range(len(pool)), min(wanted, len(pool)))) if wanted else []
    items = [QuerySpec(q, frozenset({pool[i].id})) for i in picked if (q := query_from_text(pool[i].text))]
    sources = [f"{len(specs)} from {origin}" if origin else f"{len(specs)} given"] if specs else []
    if items:
        sources.append(f"{len(items)} known-item queries drawn from the sample")
    specs += items
    if not specs:
        raise ConfigError(
            "no queries to probe with: give a queries file (--queries FILE) or known-item queries "
            "(--known-items N, at least 1)",
            key="queries",
        )

    texts = [p.text for p in points]
    target_matrix, rate = _timed_embedding(target_embedder, texts, target)
    source_matrix, _ = kernels.to_matrix([p.vector for p in points], source.dimension)
    report_notes += _source_check(source_embedder, source, points, source_matrix)
    query_texts = [q.text for q in specs]
    limit = cutoffs[-1]
    decision_k = judged_k(cutoffs)
    point_ids = [p.id for p in points]
    results: dict[str, list[tuple[PointId, ...]]] = {}
    scores: dict[str, dict[str, dict[str, float | int] | None]] = {}
    top_scores: dict[str, list[float]] = {}
    for system, spec, embedder, matrix in (
        ("source", source, source_embedder, source_matrix),
        ("target", target, target_embedder, target_matrix),
    ):
        embedded = embed_checked(embedder, query_texts, spec)
        ranked, top1, topk, rel = _search(
            embedded, matrix, spec.distance, point_ids, specs, limit, decision_k
        )
        results[system] = ranked
        scores[system] = {"top1": quantiles(top1), "topk": quantiles(topk), "relevant": quantiles(rel)}
        top_scores[system] = topk
    calibration: ScoreCalibration | None = None
    calibration_problem = ""
    try:
        calibration = ScoreCalibration.measure(
            top_scores["source"],
            top_scores["target"],
            source=source,
            target=target,
            queries=len(specs),
            k=decision_k,
            method="probe",
        )
    except CalibrationError as exc:
        calibration_problem = str(exc)

    outcomes = tuple(QueryOutcome(q, {s: results[s][i] for s in SYSTEMS}) for i, q in enumerate(specs))
    at_k = _aggregate(outcomes, cutoffs, np.random.default_rng(rng.getrandbits(64)), resamples)
    labelled = sum(1 for o in outcomes if o.query.relevant)
    row = next(r for r in at_k if r.k == decision_k)
    said, reason = verdict(
        row.recall_gain,
        margin,
        labelled=labelled,
        k=decision_k,
        source=row.recall["source"].value if row.recall else None,
        target=row.recall["target"].value if row.recall else None,
    )
    if len(points) < total:
        report_notes.append(
            f"both models searched {len(points)} sampled points, not all {total}: absolute recall is higher "
            "than on the whole collection; the difference between the models is what the probe measures"
        )
    tokens_per_point = sum(estimate_tokens(t) for t in texts) / len(texts)
    cost = MigrationCost(
        points=total,
        tokens=round(tokens_per_point * total),
        seconds=total / rate if rate else 0.0,
        points_per_second=rate,
        calibrated_on=len(texts),
        storage_bytes=total * vector_bytes(target.dimension),
        dimension=target.dimension,
    )
    return ProbeReport(
        collection=collection,
        source=source.qualified_id,
        target=target.qualified_id,
        source_vector=vector,
        distances={"source": source.distance.value, "target": target.distance.value},
        text_field=text_field,
        total=total,
        sample=sample,
        seed=seed,
        searched=len(points),
        origin=" and ".join(sources),
        ks=cutoffs,
        outcomes=outcomes,
        at_k=at_k,
        scores=scores,
        cost=cost,
        verdict=said,
        reason=reason,
        margin=margin,
        notes=tuple(report_notes),
        calibration=calibration,
        calibration_problem=calibration_problem,
    )


def _source_vector(store: Store, collection: str, source: ModelSpec, name: str | None) -> str:
    """The vector holding the source vectors: ``name``, or the collection's only vector; checked to fit."""
    existing = store.vectors(collection)
    known = ", ".join(repr(n) for n in existing) or "none"
    if name is None:
        if len(existing) != 1:
            raise ConfigError(
                f"{collection!r} has {len(existing)} vectors ({known}): say which holds the source model's "
                "vectors (--source-vector NAME)",
                key="source_vector",
            )
        name = next(iter(existing))
    info = existing.get(name)
    if info is None:
        raise ConfigError(f"{collection!r} has no vector {name!r} (vectors: {known})", key="source_vector")
    if info.size != source.dimension or info.distance != source.distance:
        raise ConfigError(
            f"vector {name!r} of {collection!r} is {info.size}-d {info.distance.value}, but the source model "
            f"{source.qualified_id} is {source.dimension}-d {source.distance.value}: is --source right?",
            key="source",
        )
    return name


def _retrieve(
    store: Store, collection: str, ids: Sequence[PointId], text_field: str, vector: str, page_size: int
) -> dict[PointId, dict[str, Any]]:
    """``id -> {"text": ..., "vector": ...}`` of the points of ``ids`` that exist, in the order asked."""
    out: dict[PointId, dict[str, Any]] = {}
    for start in range(0, len(ids), page_size):
        chunk = list(ids[start : start + page_size])
        found = {
            normalize_id(r.id): r
            for r in store.retrieve(collection, chunk, with_payload=[text_field], with_vectors=[vector])
        }
        for pid in chunk:
            record = found.get(pid)
            if record is not None:
                out[pid] = {
                    "text": (record.payload or {}).get(text_field),
                    "vector": vector_value(record, vector),
                }
    return out


def _usable(
    records: Mapping[PointId, Mapping[str, Any]], drawn: Mapping[PointId, Any], max_text_chars: int | None
) -> tuple[list[_Point], int, int]:
    """The points both models can search (text and a source vector), and how many lack each."""
    points: list[_Point] = []
    no_text = no_vector = 0
    for pid, record in records.items():
        text, values = record.get("text"), record.get("vector")
        if not isinstance(text, str) or not text.strip():
            no_text += 1
        elif values is None:
            no_vector += 1
        else:
            cut = text if max_text_chars is None else text[:max_text_chars]
            points.append(_Point(pid, cut, values, pid in drawn))
    return points, no_text, no_vector


def _payload_fields(store: Store, collection: str, ids: Sequence[Any]) -> list[str]:
    """The payload fields of a few sampled points, for the error that names none holding text."""
    found = store.retrieve(collection, list(ids[:20]), with_payload=True)
    return sorted({key for r in found for key in (r.payload or {})})


def _restricted(specs: Sequence[QuerySpec], kept: set[PointId], notes: list[str]) -> list[QuerySpec]:
    """The queries with relevant sets cut to the points searched (a point without text is not searched)."""
    out: list[QuerySpec] = []
    dropped = emptied = 0
    for spec in specs:
        if spec.relevant is None:
            out.append(spec)
            continue
        relevant = spec.relevant & kept
        dropped += len(spec.relevant) - len(relevant)
        if not relevant:
            emptied += 1
        out.append(QuerySpec(spec.text, frozenset(relevant) or None))
    if dropped:
        notes.append(
            f"{dropped} relevant point(s) of the queries lack text or a source vector, so are not searched"
            + (f"; {emptied} query(ies) lost every label and count as unlabelled" if emptied else "")
        )
    return out


def _timed_embedding(
    embedder: Embedder, texts: Sequence[str], spec: ModelSpec
) -> tuple[NDArray[np.float32], float]:
    """The texts' embeddings and the rate they were made at (texts per second), after a warm-up call."""
    embed_checked(embedder, list(texts[:2]), spec)  # loads the model
    started = time.perf_counter()
    parts = [
        embed_checked(embedder, list(texts[i : i + _EMBED_CHUNK]), spec)
        for i in range(0, len(texts), _EMBED_CHUNK)
    ]
    elapsed = time.perf_counter() - started
    return np.ascontiguousarray(np.concatenate(parts)), len(texts) / max(elapsed, 1e-9)


def _source_check(
    embedder: Embedder, spec: ModelSpec, points: Sequence[_Point], stored: NDArray[np.float32]
) -> list[str]:
    """A note when the stored source vectors do not look like the source model's embeddings of the text."""
    n = min(_SOURCE_CHECK, len(points))
    fresh = embed_checked(embedder, [p.text for p in points[:n]], spec)
    matched = sum(1 for i in range(n) if kernels.vectors_match(stored[i], fresh[i], spec.distance, 1e-2)[0])
    if matched == n:
        return []
    return [
        f"only {matched} of {n} stored source vectors checked are {spec.qualified_id}'s embedding of their "
        "point's text: is --source the model that wrote them? (texts edited since embedding also do this)"
    ]


def _search(
    queries: NDArray[np.float32],
    matrix: NDArray[np.float32],
    distance: Distance,
    point_ids: Sequence[PointId],
    specs: Sequence[QuerySpec],
    limit: int,
    decision_k: int,
) -> tuple[list[tuple[PointId, ...]], list[float], list[float], list[float]]:
    """Brute-force search of each query among the sample: the ids ranked (up to ``limit``), the top-1
    scores, the scores within the top ``decision_k`` and the relevant points' scores."""
    position = {pid: i for i, pid in enumerate(point_ids)}
    ranked: list[tuple[PointId, ...]] = []
    top1: list[float] = []
    topk: list[float] = []
    relevant: list[float] = []
    for query, spec in zip(queries, specs, strict=True):
        order, ordered = kernels.rank(query, matrix, distance, check_finite=False)
        values = np.empty_like(ordered)
        values[order] = ordered
        best = ordered[:limit]
        ranked.append(tuple(point_ids[i] for i in order[:limit]))
        if best.size:
            top1.append(float(best[0]))
        topk += [float(v) for v in best[:decision_k]]
        relevant += [float(values[position[pid]]) for pid in spec.relevant or () if pid in position]
    return ranked, top1, topk, relevant


def _aggregate(
    outcomes: Sequence[QueryOutcome], ks: Sequence[int], rng: np.random.Generator, resamples: int
) -> tuple[ProbeAtK, ...]:
    """The means per ``k`` and their paired bootstrap intervals (one set of draws for every metric)."""
    labelled = [o for o in outcomes if o.query.relevant]
    all_draws = resample_indices(len(outcomes), resamples, rng)
    labelled_draws = resample_indices(len(labelled), resamples, rng) if labelled else None
    rows = []
    for k in ks:
        overlap = interval([o.at(k)["overlap"] for o in outcomes], all_draws)
        recall: dict[str, Interval] = {}
        ndcg: dict[str, Interval] = {}
        gains: dict[str, Interval] = {}
        if labelled_draws is not None:
            metrics = [o.at(k) for o in labelled]
            for name, out in (("recall", recall), ("ndcg", ndcg)):
                per = {s: np.array([m[name][s] for m in metrics], dtype=np.float64) for s in SYSTEMS}
                for s in SYSTEMS:
                    out[s] = interval(per[s], labelled_draws)
                gains[name] = interval(per["target"] - per["source"], labelled_draws)
        rows.append(
            ProbeAtK(
                k=k,
                overlap=overlap,
                recall=recall,
                ndcg=ndcg,
                recall_gain=gains.get("recall"),
                ndcg_gain=gains.get("ndcg"),
            )
        )
    return tuple(rows)
