"""Shadow comparison: run the same queries through both models and measure how their results differ.

Before cutover, :func:`compare` searches the collection with each query three ways:

* **source**: the source embedding against the source vector (what queries get today);
* **target**: the target embedding against the target vector. Only points that already have the
  target vector can be found, so while the backfill runs the target's recall is a floor; the report
  states the coverage;
* **mixed**: ``query_points(mode="mixed")`` (:mod:`lattice_qdrant.mixed`), candidates of both vectors
  rescored in the target space, without read-repair. Only while writes go to both vectors (between
  start and finalize) and the source vector exists. Its candidates, and so its ranking, depend on the
  limit (``limit * oversample`` from the source search, the rest from the target's), so it is queried
  once per ``k`` with ``k`` as the limit: what an application asking for ``k`` results gets.

and reports, for each ``k``:

* ``overlap@k``: how many of the source's top ``k`` the target also has in its top ``k``, divided by
  ``k`` (by the longer list's length when the collection has fewer than ``k`` points to return);
* rank correlation: Spearman's rho between the source and target rankings over the union of both top
  ``k`` lists. An item missing from one list is ranked ``k + 1`` in it (tied with the other missing
  items: "somewhere below the cut"), and rho is the Pearson correlation of the two rank vectors. It is
  undefined (``None``) when one list's ranks are all equal, e.g. the target found nothing;
* with relevance labels, ``recall@k`` (relevant ids in the top ``k`` / relevant ids) and ``nDCG@k``
  (binary relevance: gain 1 for a relevant id at rank ``i``, discounted by ``log2(i + 1)``, divided by
  the ideal ordering's) of the source, the target and mixed mode.

Queries come from a file (:func:`load_queries`: JSON lines ``{"query": "...", "relevant": [ids]}`` or
plain text lines) or are sampled from the collection (:func:`sample_queries`: a seeded choice of points,
whose first sentence, at most 12 words, is the query and whose own id the one relevant result: a
known-item search).

Score thresholds: the report holds the calibration of the source's and target's top-``k`` scores
(:mod:`lattice_qdrant.calibration`), and :func:`calibrate` measures one on its own, for the wrapper to
translate a query's ``score_threshold`` in the target space.

Gating cutover: :func:`record_comparison` stores the report's :meth:`~ComparisonReport.summary` in the
control collection. When the plan sets ``compare_margin``, ``Migration.cutover`` asks
:func:`~lattice_qdrant.gates.quality_gate` (pure, in :mod:`lattice_qdrant.gates`; also importable from here)
about that record and refuses (``QualityGateError``) unless forced.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .calibration import ScoreCalibration
from .coordinator import Migration, find_migration
from .embedders import Embedder, embed_checked
from .errors import CalibrationError, ConfigError, MigrationNotFoundError, StoreError, StrictModeError
from .gates import RECORD_KIND, quality_gate
from .mixed import mixed_query
from .plan import MigrationPlan
from .report import clip as _clip
from .report import html_page, text_notes, timestamp
from .report import html_table as _html_table
from .report import num as _num
from .report import text_table as _table
from .routing import RoutedQuery, Snapshot, route
from .spec import ModelSpec
from .state import QueryRoute, WriteRoute
from .store import Store

__all__ = [
    "DEFAULT_CALIBRATION_SAMPLE",
    "DEFAULT_KS",
    "RECORD_KIND",
    "SYSTEMS",
    "AtK",
    "ComparisonReport",
    "QueryOutcome",
    "QueryReport",
    "QuerySpec",
    "Searcher",
    "calibrate",
    "check_relevant_ids",
    "checked_ks",
    "compare",
    "judged_k",
    "load_queries",
    "ndcg_at_k",
    "normalize_id",
    "overlap_at_k",
    "parse_ks",
    "parse_queries",
    "quality_gate",
    "query_from_text",
    "rank_correlation",
    "recall_at_k",
    "record_comparison",
    "sample_queries",
]

PointId = int | str
"""A Qdrant point id: an unsigned integer or a UUID string (canonical form)."""

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
"""The cut-offs reported by default."""

SYSTEMS: tuple[str, ...] = ("source", "target", "mixed")
"""The three ways a query is run, in report order."""

GATE_K = 10
"""The cut-off the gate judges at, when reported; otherwise the largest one."""

MAX_K = 1000

DEFAULT_CALIBRATION_SAMPLE = 200
"""Known-item queries :func:`calibrate` samples when given no queries."""
_QUERY_WORDS = 12
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class QuerySpec:
    """A query text and, when known, the ids of the points relevant to it.

    Attributes:
        text: what a person would type.
        relevant: ids of the relevant points (normalised with :func:`normalize_id`); ``None`` when the
            query has no labels, in which case only overlap and rank correlation are computed for it.
    """

    text: str
    relevant: frozenset[PointId] | None = None


def normalize_id(value: Any) -> PointId:
    """A point id as Qdrant returns it, so ids from a file compare equal to ids from a search.

    Integers stay integers, a string of digits becomes an integer (Qdrant's only string ids are UUIDs),
    and a UUID in any spelling becomes its canonical lowercase form.

    Raises:
        ValueError: ``value`` is neither an unsigned integer nor a UUID.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a point id (an unsigned integer or a UUID)")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is not a point id (ids are unsigned)")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a point id (an unsigned integer or a UUID)")


def parse_queries(lines: Iterable[str], *, source: str = "queries") -> list[QuerySpec]:
    """Queries from lines of text: JSON objects or plain text, one query a line.

    A line starting with ``{`` must be a JSON object ``{"query": "...", "relevant": [ids]}``
    (``relevant`` optional: a non-empty list of integer or UUID ids); any other non-blank line is a
    query without labels. Blank lines are skipped.

    Args:
        lines: the lines (a file object works).
        source: how to name the input in errors (a file name).

    Raises:
        ConfigError: a line is not a valid query; the message names ``source`` and the line number.
    """
    out: list[QuerySpec] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("{"):
            out.append(QuerySpec(" ".join(line.split())))
            continue
        problem, spec = _json_query(line)
        if spec is None:
            raise ConfigError(f"{source} line {number}: {problem}", key="queries")
        out.append(spec)
    return out


def _json_query(line: str) -> tuple[str, QuerySpec | None]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})", None
    if not isinstance(data, dict):
        return "expected a JSON object with a 'query'", None
    unknown = sorted(set(data) - {"query", "relevant"})
    if unknown:
        return f"unknown key(s) {', '.join(repr(k) for k in unknown)}; expected 'query' and 'relevant'", None
    text = data.get("query")
    if not isinstance(text, str) or not text.strip():
        return "'query' must be a non-empty string", None
    relevant = data.get("relevant")
    if relevant is None:
        return "", QuerySpec(" ".join(text.split()))
    if not isinstance(relevant, list) or not relevant:
        return "'relevant' must be a non-empty list of point ids (or left out)", None
    try:
        ids = frozenset(normalize_id(v) for v in relevant)
    except ValueError as exc:
        return f"'relevant': {exc}", None
    return "", QuerySpec(" ".join(text.split()), ids)


def load_queries(path: str | Path) -> list[QuerySpec]:
    """Queries from a file (see :func:`parse_queries` for the format).

    Raises:
        ConfigError: the file cannot be read, holds no query, or has a bad line.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            queries = parse_queries(handle, source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the queries file {path}: {exc}", key="queries") from exc
    if not queries:
        raise ConfigError(f"the queries file {path} holds no query", key="queries")
    return queries


def query_from_text(text: str, *, max_words: int = _QUERY_WORDS) -> str:
    """A query made from a document: its first sentence, at most ``max_words`` words."""
    first = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    return " ".join(first.split()[:max_words])


def sample_queries(
    store: Store, collection: str, n: int, *, text_field: str = "text", seed: int = 0
) -> list[QuerySpec]:
    """Known-item queries sampled from the collection: each point's first sentence finds that point.

    Picks ``n`` points uniformly among those with a non-empty ``text_field`` (reservoir sampling over
    one scroll of ids, seeded, so the same collection and seed give the same queries); each query is
    :func:`query_from_text` of the point's text and its relevant set is the point itself. Read-only.

    The scroll filters on ``is_empty`` of the text field, which a server in strict mode refuses when the
    field has no payload index (``unindexed_filtering_retrieve=false``); the scroll then reads every
    point's text and tests it here instead (the same sample, one read of all the texts).

    Raises:
        ConfigError: ``n`` is below 1.
    """
    if n < 1:
        raise ConfigError(f"the sample size must be at least 1, got {n}", key="sample")
    rng = random.Random(seed)
    chosen: list[Any] = []
    for seen, point_id in enumerate(_ids_with_text(store, collection, text_field), start=1):
        if len(chosen) < n:
            chosen.append(point_id)
        else:
            slot = rng.randrange(seen)
            if slot < n:
                chosen[slot] = point_id
    if not chosen:
        return []
    texts = {
        normalize_id(r.id): (r.payload or {}).get(text_field)
        for r in store.retrieve(collection, chosen, with_payload=[text_field])
    }
    out: list[QuerySpec] = []
    for pid in (normalize_id(c) for c in chosen):
        text = texts.get(pid)
        query = query_from_text(text) if isinstance(text, str) else ""
        if query:
            out.append(QuerySpec(query, frozenset({pid})))
    return out


def _ids_with_text(store: Store, collection: str, text_field: str) -> Iterator[Any]:
    """Ids of the points whose ``text_field`` is not empty, in id order (see :func:`sample_queries`)."""
    has_text = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=text_field))])
    started = False
    try:
        for page in store.iter_points(collection, flt=has_text, page_size=1024, with_payload=False):
            started = True
            yield from (record.id for record in page)
        return
    except StrictModeError as exc:
        # a strict server refuses the filter before the first page
        if exc.setting != "unindexed_filtering_retrieve" or started:
            raise
    for page in store.iter_points(collection, page_size=1024, with_payload=[text_field]):
        # is_empty: the field is missing, null or an empty list
        yield from (r.id for r in page if (r.payload or {}).get(text_field) not in (None, []))


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,5,10,20"`` -> ``(1, 5, 10, 20)``.

    Raises:
        ConfigError: not a comma-separated list of integers between 1 and 1000.
    """
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--k {text!r}: expected comma-separated integers, e.g. 1,5,10,20", key="k"
        ) from None
    return checked_ks(values)


def checked_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """The cut-offs sorted, without repeats.

    Raises:
        ConfigError: none given, or one is not an integer from 1 to 1000.
    """
    values = sorted(set(ks))
    if not values:
        raise ConfigError("give at least one k", key="k")
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K]
    if bad:
        raise ConfigError(f"every k must be an integer from 1 to {MAX_K}, got {bad[0]!r}", key="k")
    return tuple(values)


# --------------------------------------------------------------------------- metrics


def overlap_at_k(a: Sequence[PointId], b: Sequence[PointId], k: int) -> float:
    """Share of ``a``'s top ``k`` also in ``b``'s top ``k``.

    Divided by ``k``, or by the longer of the two lists when both hold fewer than ``k`` ids (a small
    collection); two empty lists agree fully (1.0).
    """
    top_a, top_b = set(a[:k]), set(b[:k])
    size = max(len(top_a), len(top_b))
    return 1.0 if size == 0 else len(top_a & top_b) / size


def rank_correlation(a: Sequence[PointId], b: Sequence[PointId], k: int) -> float | None:
    """Spearman's rho between two rankings' top ``k``, over the union of both.

    An id missing from one list gets rank ``k + 1`` there (tied with the other missing ids); rho is
    the Pearson correlation of the two rank vectors, in ``[-1, 1]``.

    Returns:
        rho, 1.0 for two identical one-item lists, or ``None`` when it is undefined (fewer than two
        ids in the union otherwise, or all ranks equal in one list, e.g. it is empty).
    """
    top_a, top_b = list(a[:k]), list(b[:k])
    union = list(dict.fromkeys([*top_a, *top_b]))
    if len(union) < 2:
        return 1.0 if top_a and top_a == top_b else None
    ranks_a = _ranks(top_a, union, k)
    ranks_b = _ranks(top_b, union, k)
    da, db = ranks_a - ranks_a.mean(), ranks_b - ranks_b.mean()
    denominator = math.sqrt(float(da @ da) * float(db @ db))
    if denominator == 0.0:
        return None
    return float(np.clip(float(da @ db) / denominator, -1.0, 1.0))


def _ranks(ranking: Sequence[PointId], union: Sequence[PointId], k: int) -> NDArray[np.float64]:
    position: dict[PointId, int] = {}
    for i, pid in enumerate(ranking):
        position.setdefault(pid, i + 1)
    return np.array([position.get(pid, k + 1) for pid in union], dtype=np.float64)


def recall_at_k(
    ranking: Sequence[PointId], relevant: frozenset[PointId] | set[PointId], k: int
) -> float | None:
    """Share of the relevant ids found in the top ``k``; ``None`` without relevant ids."""
    if not relevant:
        return None
    hits = _hits(ranking, relevant, k)
    return float(np.count_nonzero(hits)) / len(relevant)


def ndcg_at_k(
    ranking: Sequence[PointId], relevant: frozenset[PointId] | set[PointId], k: int
) -> float | None:
    """Normalised discounted cumulative gain at ``k`` with binary relevance; ``None`` without labels.

    DCG sums ``1 / log2(i + 1)`` over the relevant ids at ranks ``i = 1..k``; it is divided by the DCG
    of the ideal ranking (every relevant id first, as many as fit in ``k``).
    """
    if not relevant:
        return None
    hits = _hits(ranking, relevant, k)
    dcg = float((_discounts(hits.size)[hits]).sum())
    ideal = float(_discounts(min(len(relevant), k)).sum())
    return dcg / ideal


def _hits(
    ranking: Sequence[PointId], relevant: frozenset[PointId] | set[PointId], k: int
) -> NDArray[np.bool_]:
    top = ranking[:k]
    return np.fromiter((pid in relevant for pid in top), dtype=np.bool_, count=len(top))


def _discounts(n: int) -> NDArray[np.float64]:
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class QueryOutcome:
    """One query and the ids each system returned for it, best first (up to the largest ``k``).

    Attributes:
        query: the query.
        results: each system's ids, queried with the largest ``k`` as the limit.
        by_limit: for a system queried once per ``k`` (mixed mode, whose ranking depends on the limit), its
            ids with each ``k`` as the limit; its metrics at ``k`` are those of that list.
    """

    query: QuerySpec
    results: Mapping[str, tuple[PointId, ...]]
    by_limit: Mapping[str, Mapping[int, tuple[PointId, ...]]] = field(default_factory=dict)

    def ids(self, system: str, k: int) -> tuple[PointId, ...]:
        """What ``system`` returned for a limit of ``k`` (its top ``k``)."""
        return self.by_limit.get(system, {}).get(k, self.results[system])[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form of the query, its labels and each system's ids (a report's ``per_query`` item)."""
        return {
            "query": self.query.text,
            "relevant": sorted(self.query.relevant, key=str) if self.query.relevant else None,
            "results": {s: list(ids) for s, ids in self.results.items()},
        }

    def at(self, k: int) -> dict[str, Any]:
        """This query's metrics at ``k`` (JSON-safe): overlap, rank correlation, recall and nDCG."""
        source, target = self.results.get("source"), self.results.get("target")
        relevant = self.query.relevant
        overlap: float | None = None
        rho: float | None = None
        if source is not None and target is not None:
            overlap, rho = overlap_at_k(source, target, k), rank_correlation(source, target, k)
        return {
            "k": k,
            "overlap": overlap,
            "rank_correlation": rho,
            "recall": {s: recall_at_k(self.ids(s, k), relevant, k) for s in self.results} if relevant else {},
            "ndcg": {s: ndcg_at_k(self.ids(s, k), relevant, k) for s in self.results} if relevant else {},
        }


@dataclass(frozen=True)
class AtK:
    """Means over the queries at one cut-off ``k``.

    Attributes:
        k: the cut-off.
        overlap: mean overlap@k of source and target (``None`` when one of them was not searched).
        rank_correlation: mean Spearman's rho where defined (``None`` when never defined).
        recall: mean recall@k per system, over the labelled queries (empty without labels).
        ndcg: mean nDCG@k per system, over the labelled queries (empty without labels).
    """

    k: int
    overlap: float | None
    rank_correlation: float | None
    recall: Mapping[str, float | None] = field(default_factory=dict)
    ndcg: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "k": self.k,
            "overlap": self.overlap,
            "rank_correlation": self.rank_correlation,
            "recall": dict(self.recall),
            "ndcg": dict(self.ndcg),
        }


def judged_k(ks: Sequence[int]) -> int:
    """The cut-off of ``ks`` (ascending) that the cutover gate and the probe's verdict judge at:
    :data:`GATE_K` when reported, otherwise the largest."""
    return GATE_K if GATE_K in ks else ks[-1]


class _AtCutoff(Protocol):
    @property
    def k(self) -> int: ...


_Row = TypeVar("_Row", bound=_AtCutoff)


class QueryReport(Generic[_Row]):
    """What a comparison's and a probe's report share: the queries with their results (``outcomes``), the
    cut-offs ``ks`` and one row of metrics a cut-off (``at_k``, in the order of ``ks``)."""

    ks: tuple[int, ...]
    outcomes: tuple[QueryOutcome, ...]
    at_k: tuple[_Row, ...]

    @property
    def labelled(self) -> int:
        """How many queries carry relevance labels."""
        return sum(1 for o in self.outcomes if o.query.relevant)

    def row(self, k: int) -> _Row:
        """The metrics at ``k``.

        Raises:
            KeyError: ``k`` was not reported.
        """
        for row in self.at_k:
            if row.k == k:
                return row
        raise KeyError(k)


@dataclass(frozen=True)
class ComparisonReport(QueryReport[AtK]):
    """A shadow comparison of a collection's source and target models, for a person and for the gate.

    Attributes:
        collection: the collection compared.
        source: the source model's qualified id.
        target: the target model's qualified id.
        source_vector: the source named vector.
        target_vector: the target named vector.
        state: the migration's state label when the comparison ran.
        covered: points with the target vector then.
        total: points in the collection then.
        ks: the cut-offs, ascending.
        systems: the systems searched (a subset of :data:`SYSTEMS`, in that order).
        origin: where the queries came from (a file, a sample, or both).
        outcomes: every query with its results.
        at_k: the means per cut-off, in the order of ``ks``.
        notes: what a reader must know to read the numbers (coverage, skipped systems, labels).
        compare_margin: the plan's margin, when it gates cutover.
        created_at: unix time of the comparison.
        calibration: the score calibration of the source's and the target's top-:attr:`gate_k` scores
            (:mod:`lattice_qdrant.calibration`); ``None`` when one was not searched or the scores were too
            few (``calibration_problem`` says why).
        calibration_problem: why no calibration was made.
    """

    collection: str
    source: str
    target: str
    source_vector: str
    target_vector: str
    state: str
    covered: int
    total: int
    ks: tuple[int, ...]
    systems: tuple[str, ...]
    origin: str
    outcomes: tuple[QueryOutcome, ...]
    at_k: tuple[AtK, ...]
    notes: tuple[str, ...] = ()
    compare_margin: float | None = None
    created_at: float = field(default_factory=time.time)
    calibration: ScoreCalibration | None = None
    calibration_problem: str = ""

    @property
    def coverage(self) -> float:
        """Fraction of points with the target vector when the comparison ran."""
        return 1.0 if self.total == 0 else self.covered / self.total

    @property
    def gate_k(self) -> int:
        """The cut-off the gate judges at: 10 when reported, otherwise the largest ``k``."""
        return judged_k(self.ks)

    def summary(self) -> dict[str, Any]:
        """What the cutover gate reads (stored by :func:`record_comparison`); JSON-safe."""
        row = self.row(self.gate_k)
        labelled = self.labelled
        return {
            "collection": self.collection,
            "source": self.source,
            "target": self.target,
            "at": self.created_at,
            "k": self.gate_k,
            "queries": len(self.outcomes),
            "labelled": labelled,
            "origin": self.origin,
            "coverage": round(self.coverage, 6),
            "overlap": row.overlap,
            "rank_correlation": row.rank_correlation,
            **{f"{s}_recall": row.recall.get(s) if labelled else None for s in SYSTEMS},
            **{f"{s}_ndcg": row.ndcg.get(s) if labelled else None for s in SYSTEMS},
        }

    def gate(self) -> str | None:
        """Why the plan's ``compare_margin`` would refuse cutover on this comparison (``None``: allowed)."""
        return quality_gate(self.summary(), self.compare_margin, source=self.source, target=self.target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``compare --json``): the means, the summary and every query's results."""
        return {
            "collection": self.collection,
            "source": self.source,
            "target": self.target,
            "source_vector": self.source_vector,
            "target_vector": self.target_vector,
            "state": self.state,
            "covered": self.covered,
            "total": self.total,
            "coverage": round(self.coverage, 6),
            "ks": list(self.ks),
            "systems": list(self.systems),
            "origin": self.origin,
            "queries": len(self.outcomes),
            "labelled": self.labelled,
            "at_k": [row.to_dict() for row in self.at_k],
            "notes": list(self.notes),
            "compare_margin": self.compare_margin,
            "gate": self.gate(),
            "summary": self.summary(),
            "created_at": self.created_at,
            "calibration": self.calibration.to_payload() if self.calibration is not None else None,
            "per_query": [
                {
                    **o.to_dict(),
                    "by_limit": {s: {str(k): list(v) for k, v in by.items()} for s, by in o.by_limit.items()},
                    "at_k": [o.at(k) for k in self.ks],
                }
                for o in self.outcomes
            ],
        }

    # ------------------------------------------------------------------- text

    def render_text(self, *, worst: int = 5) -> str:
        """Aligned tables for a terminal: agreement, recall and nDCG per ``k``, the gate's verdict, notes.

        Args:
            worst: how many queries with the least source/target agreement to list.
        """
        lines = [
            f"Shadow comparison of {self.collection!r} ({self.state}): {len(self.outcomes)} queries from "
            f"{self.origin}, {self.labelled} with relevance labels",
            f"  source  {self.source}  (vector {self.source_vector!r})",
            f"  target  {self.target}  (vector {self.target_vector!r}), covering {self.coverage:.1%} "
            f"({self.covered} of {self.total} points)",
            f"  systems {', '.join(self.systems)}",
            "",
        ]
        if "source" in self.systems and "target" in self.systems:
            lines.append(f"Agreement of source and target (mean over {len(self.outcomes)} queries)")
            lines += _table(
                ["k", "overlap@k", "spearman@k"],
                [[str(r.k), _num(r.overlap), _num(r.rank_correlation)] for r in self.at_k],
            )
            lines.append("")
        if self.labelled:
            for title, metric in (("Recall@k", "recall"), ("nDCG@k", "ndcg")):
                lines.append(f"{title} (mean over {self.labelled} labelled queries)")
                lines += _table(
                    ["k", *self.systems],
                    [[str(r.k), *(_num(getattr(r, metric).get(s)) for s in self.systems)] for r in self.at_k],
                )
                lines.append("")
        least = self._least_agreement(worst)
        if least:
            lines.append(f"Least agreement at k={self.gate_k}")
            lines += [f"  {_num(value)}  {_clip(text)}" for value, text in least]
            lines.append("")
        lines.append(f"gate    {self._gate_line()}")
        lines += text_notes(self.notes)
        return "\n".join(lines)

    def _least_agreement(self, n: int) -> list[tuple[float, str]]:
        if n <= 0 or not {"source", "target"} <= set(self.systems):
            return []
        scored = [
            (overlap_at_k(o.results["source"], o.results["target"], self.gate_k), o.query.text)
            for o in self.outcomes
        ]
        return sorted((s for s in scored if s[0] < 1.0), key=lambda s: (s[0], s[1]))[:n]

    def _gate_line(self) -> str:
        if self.compare_margin is None:
            return "cutover is not gated on comparisons (the plan sets no compare_margin)"
        reason = self.gate()
        if reason is not None:
            return f"cutover would be refused (compare_margin {self.compare_margin:g}): {reason}"
        summary = self.summary()
        return (
            f"cutover allowed (compare_margin {self.compare_margin:g}): target recall@{self.gate_k} "
            f"{summary['target_recall']:.3f}, source {summary['source_recall']:.3f}"
        )

    # ------------------------------------------------------------------- html

    def render_html(self) -> str:
        """A self-contained HTML page: the tables and an inline SVG chart of overlap and recall against k.

        No scripts, styles or fonts are fetched: the page opens offline and can be attached to a ticket.
        """
        e = html.escape
        parts = [
            f"<h1>Shadow comparison of <code>{e(self.collection)}</code></h1>",
            f"<p>{len(self.outcomes)} queries from {e(self.origin)}, {self.labelled} with relevance labels; "
            f"migration {e(self.state)}; {e(timestamp(self.created_at))}.</p>",
            "<table><tbody>",
            f"<tr><th>source</th><td><code>{e(self.source)}</code> "
            f"(vector <code>{e(self.source_vector)}</code>)</td></tr>",
            f"<tr><th>target</th><td><code>{e(self.target)}</code> "
            f"(vector <code>{e(self.target_vector)}</code>), "
            f"covering {self.coverage:.1%} ({self.covered} of {self.total} points)</td></tr>",
            f"<tr><th>gate</th><td>{e(self._gate_line())}</td></tr>",
            "</tbody></table>",
            "<h2>Overlap and recall against k</h2>",
            _svg_chart(self),
        ]
        if "source" in self.systems and "target" in self.systems:
            parts.append("<h2>Agreement of source and target</h2>")
            parts.append(
                _html_table(
                    ["k", "overlap@k", "spearman@k"],
                    [[str(r.k), _num(r.overlap), _num(r.rank_correlation)] for r in self.at_k],
                )
            )
        if self.labelled:
            for title, metric in (("Recall@k", "recall"), ("nDCG@k", "ndcg")):
                parts.append(f"<h2>{title} ({self.labelled} labelled queries)</h2>")
                parts.append(
                    _html_table(
                        ["k", *self.systems],
                        [
                            [str(r.k), *(_num(getattr(r, metric).get(s)) for s in self.systems)]
                            for r in self.at_k
                        ],
                    )
                )
        least = self._least_agreement(10)
        if least:
            parts.append(f"<h2>Least agreement at k={self.gate_k}</h2>")
            parts.append(_html_table(["overlap", "query"], [[_num(v), t] for v, t in least]))
        return html_page(f"Shadow comparison of {self.collection}", parts, self.notes)


# colour, dash pattern, width: wide solid lines under narrow dotted ones, so equal series stay visible.
_SERIES_STYLE = {
    "overlap": ("#555555", "6 4", 2.0),
    "source": ("#1f77b4", "", 5.0),
    "target": ("#d62728", "", 3.0),
    "mixed": ("#2ca02c", "2 3", 2.0),
}


def _svg_chart(report: ComparisonReport) -> str:
    """Overlap@k and recall@k per system against k, as an inline SVG drawn by hand."""
    width, height = 640, 320
    left, right, top, bottom = 50, 190, 20, 45
    plot_w, plot_h = width - left - right, height - top - bottom
    ks = report.ks
    lo, hi = ks[0], ks[-1]

    def x(k: int) -> float:
        return left + (plot_w / 2 if hi == lo else (k - lo) / (hi - lo) * plot_w)

    def y(value: float) -> float:
        return top + (1.0 - value) * plot_h

    series: list[tuple[str, str, list[tuple[int, float]]]] = []
    if {"source", "target"} <= set(report.systems):
        points = [(r.k, r.overlap) for r in report.at_k if r.overlap is not None]
        series.append(("overlap@k source/target", "overlap", points))
    if report.labelled:
        for system in report.systems:
            points = [(r.k, v) for r in report.at_k if (v := r.recall.get(system)) is not None]
            series.append((f"recall@k {system}", system, points))

    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="overlap and recall against k">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        out.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{ty + 4:.1f}" font-size="11" text-anchor="end">{tick:.2f}</text>'
        )
    for k in ks:
        tx = x(k)
        out.append(
            f'<line x1="{tx:.1f}" y1="{top + plot_h}" x2="{tx:.1f}" y2="{top + plot_h + 4}" stroke="#444"/>'
            f'<text x="{tx:.1f}" y="{top + plot_h + 17}" font-size="11" text-anchor="middle">{k}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="12" text-anchor="middle">k</text>'
    )
    for index, (label, style, points) in enumerate(series):
        color, dash, stroke = _SERIES_STYLE[style]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        coords = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in points)
        out.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="{stroke:g}"{dash_attr} points="{coords}"/>'
        )
        for k, v in points:
            out.append(
                f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                f"<title>{e(label)} at k={k}: {v:.3f}</title></circle>"
            )
        ly = top + 10 + index * 20
        lx = left + plot_w + 15
        out.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{color}" '
            f'stroke-width="{stroke:g}"{dash_attr}/>'
            f'<text x="{lx + 30}" y="{ly + 4}" font-size="12">{e(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


# --------------------------------------------------------------------------- running it


class Searcher(Protocol):
    """What a comparison needs: the store, and the embedder of each model (a ``LatticeClient`` is one)."""

    store: Store

    def embedder(self, spec: ModelSpec) -> Embedder:
        """The embedder of ``spec``."""
        ...


def compare(
    searcher: Searcher,
    collection: str,
    queries: Sequence[QuerySpec],
    *,
    ks: Iterable[int] = DEFAULT_KS,
    sample: int | None = None,
    seed: int = 0,
    origin: str | None = None,
) -> ComparisonReport:
    """Run ``queries`` through the source, the target and mixed mode, and measure the difference.

    Read-only: nothing is written (mixed mode runs without read-repair); :func:`record_comparison`
    stores the result for the cutover gate. The source and the target searches each see only the points
    holding their model (the strategy's :meth:`~lattice_qdrant.strategies.MigrationStrategy.side`); mixed
    mode runs as the wrapper's ``query_points(mode="mixed")`` would now.

    Args:
        searcher: the store and the embedders (a wrapped client is one).
        collection: a collection with a started migration.
        queries: the queries; may be empty when ``sample`` is given.
        ks: the cut-offs to report (1 to 1000).
        sample: also sample this many known-item queries from the collection (:func:`sample_queries`).
        seed: seed of the sample.
        origin: how to describe where ``queries`` came from (a file name), for the report.

    Raises:
        MigrationNotFoundError: the collection has no migration.
        ConfigError: no queries, a bad ``k``, or queries naming relevant ids the collection does not hold.
        StoreError: the target vector does not exist (the migration has not started, or was cancelled).
    """
    cutoffs = checked_ks(ks)
    store = searcher.store
    migration, snap = _migration_of(store, collection)
    strategy, plan = migration.strategy_of(snap), snap.plan
    specs = list(queries)
    sources = [origin or f"{len(specs)} given queries"] if specs else []
    if sample:
        sampled = sample_queries(store, collection, sample, text_field=plan.text_field, seed=seed)
        specs += sampled
        sources.append(f"a sample of {len(sampled)} points (known-item queries, seed {seed})")
    if not specs:
        raise ConfigError(
            "no queries to compare: give a queries file (--queries FILE) or a sample size (--sample N)",
            key="queries",
        )
    sides = {role: strategy.side(role) for role in ("source", "target")}
    if not _searchable(store, sides["target"]):
        raise StoreError(
            "the target vector does not exist, so there is nothing to compare: "
            f"run lattice-qdrant start {collection} (and a backfill) first",
            collection=sides["target"].collection,
            vector=plan.target_vector,
        )
    # the source collection holds every point until a blue-green finalize drops it for the target's
    home = sides["source"] if store.collection_exists(sides["source"].collection) else sides["target"]
    check_relevant_ids(store, home.collection, queries, origin)
    coverage = migration.coverage()
    routing = route(snap, coverage.fraction)
    texts = [q.text for q in specs]
    limit = cutoffs[-1]
    gate_k = judged_k(cutoffs)
    notes: list[str] = []
    results: dict[str, list[tuple[PointId, ...]]] = {}
    top_scores: dict[str, list[float]] = {}
    by_limit: dict[str, list[dict[int, tuple[PointId, ...]]]] = {}
    embedded: dict[str, NDArray[np.float32]] = {}

    def embed(role: str) -> NDArray[np.float32]:
        if role not in embedded:
            spec = plan.source if role == "source" else plan.target
            embedded[role] = embed_checked(searcher.embedder(spec), texts, spec)
        return embedded[role]

    if _searchable(store, sides["source"]):
        results["source"], top_scores["source"] = _searched(
            store, sides["source"], embed("source"), limit, gate_k
        )
    else:
        notes.append(
            f"the source vector {plan.source_vector!r} no longer exists (finalized): "
            "only the target is searched"
        )
    results["target"], top_scores["target"] = _searched(
        store, sides["target"], embed("target"), limit, gate_k
    )
    if coverage.covered < coverage.total:
        notes.append(
            f"the target vector covers {coverage.fraction:.1%} of points ({coverage.covered} of "
            f"{coverage.total}): the target search only finds covered points, so its recall is a floor "
            "until the backfill completes"
        )
    if "source" in results and routing.write == WriteRoute.DUAL_WRITE:
        decided = strategy.query_plan(snap, coverage, collection, textual=True, mode="mixed", using=None)
        if isinstance(decided, RoutedQuery):
            results["mixed"] = [_search(store, decided, v.tolist(), limit) for v in embed(decided.role)]
        else:
            by_limit["mixed"] = [{k: _mixed(searcher, plan, text, k) for k in cutoffs} for text in texts]
            results["mixed"] = [per_query[limit] for per_query in by_limit["mixed"]]
        if routing.query == QueryRoute.TARGET:
            notes.append("queries are routed to the target vector now, so mixed mode is the target search")
    else:
        notes.append("mixed mode is not evaluated: it applies only while writes go to both vectors")
    systems = tuple(s for s in SYSTEMS if s in results)
    outcomes = tuple(
        QueryOutcome(spec, {s: results[s][i] for s in systems}, {s: by[i] for s, by in by_limit.items()})
        for i, spec in enumerate(specs)
    )
    if not any(o.query.relevant for o in outcomes):
        notes.append(
            "no query has relevance labels: recall and nDCG are not computed, and the cutover gate "
            "cannot judge this comparison"
        )
    calibration, problem = None, "the source was not searched"
    if "source" in top_scores:
        try:
            calibration = ScoreCalibration.measure(
                top_scores["source"],
                top_scores["target"],
                source=plan.source,
                target=plan.target,
                queries=len(specs),
                k=gate_k,
                method="compare",
                coverage=coverage.fraction,
            )
            problem = ""
        except CalibrationError as exc:
            problem = str(exc)
    return ComparisonReport(
        collection=collection,
        source=plan.source.qualified_id,
        target=plan.target.qualified_id,
        source_vector=plan.source_vector,
        target_vector=plan.target_vector,
        state=snap.state.label,
        covered=coverage.covered,
        total=coverage.total,
        ks=cutoffs,
        systems=systems,
        origin=" and ".join(sources),
        outcomes=outcomes,
        at_k=tuple(_aggregate(outcomes, k, systems) for k in cutoffs),
        notes=tuple(notes),
        compare_margin=plan.compare_margin,
        calibration=calibration,
        calibration_problem=problem,
    )


def _searchable(store: Store, side: RoutedQuery) -> bool:
    """Whether the collection of ``side`` exists and has its vector (read-only)."""
    return store.collection_exists(side.collection) and side.using in store.vectors(side.collection)


def _search(store: Store, side: RoutedQuery, vector: list[float], limit: int) -> tuple[PointId, ...]:
    return _scored_search(store, side, vector, limit)[0]


def _scored_search(
    store: Store, side: RoutedQuery, vector: list[float], limit: int
) -> tuple[tuple[PointId, ...], list[float]]:
    """The ids found, best first, and their scores."""
    found = store.query(
        side.collection,
        query=vector,
        using=side.using,
        limit=limit,
        with_payload=False,
        query_filter=side.restriction,
    )
    return tuple(normalize_id(p.id) for p in found.points), [float(p.score) for p in found.points]


def _searched(
    store: Store, side: RoutedQuery, vectors: NDArray[np.float32], limit: int, k: int
) -> tuple[list[tuple[PointId, ...]], list[float]]:
    """Each query's ids (up to ``limit``), and the scores within every query's top ``k``, pooled."""
    ranked: list[tuple[PointId, ...]] = []
    pooled: list[float] = []
    for vector in vectors:
        ids, scores = _scored_search(store, side, vector.tolist(), limit)
        ranked.append(ids)
        pooled += scores[:k]
    return ranked, pooled


def check_relevant_ids(store: Store, collection: str, specs: Sequence[QuerySpec], origin: str | None) -> None:
    """Refuse queries naming relevant ids the collection does not hold (read-only).

    Raises:
        ConfigError: some relevant ids are not points of ``collection`` (the first few are named).
    """
    wanted = list(dict.fromkeys(pid for q in specs if q.relevant for pid in sorted(q.relevant, key=str)))
    found: set[PointId] = set()
    for start in range(0, len(wanted), 256):
        chunk = wanted[start : start + 256]
        found |= {normalize_id(r.id) for r in store.retrieve(collection, chunk, with_payload=False)}
    unknown = [pid for pid in wanted if pid not in found]
    if unknown:
        shown = ", ".join(str(pid) for pid in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(
            f"the queries {origin or 'given'} name {len(unknown)} relevant id(s) that {collection!r} "
            f"does not hold: {shown}; every relevant id must be a point of the collection",
            key="queries",
        )


def _migration_of(store: Store, collection: str) -> tuple[Migration, Snapshot]:
    """The collection's migration and its record, read once (``find_migration`` has just read it).

    Raises:
        MigrationNotFoundError: the collection has no migration.
    """
    migration = find_migration(store, collection)
    if migration is None:
        raise MigrationNotFoundError(collection)
    return migration, migration.snapshot()


def calibrate(
    searcher: Searcher,
    collection: str,
    queries: Sequence[QuerySpec] = (),
    *,
    sample: int | None = None,
    k: int = GATE_K,
    seed: int = 0,
    origin: str | None = None,
) -> ScoreCalibration:
    """Measure the score calibration of a migration's two models (read-only; the caller stores it with
    ``Migration.save_calibration``).

    Each query is embedded by both models and searched on each side, as :func:`compare` searches them
    (the source among the points holding the source model, the target among those holding the target);
    the scores of each query's top ``k`` are pooled per model (see :mod:`lattice_qdrant.calibration`).
    Queries are ``queries`` (real queries, phrased as users phrase them, calibrate best), plus ``sample``
    known-item queries sampled from the collection (:data:`DEFAULT_CALIBRATION_SAMPLE` when no queries
    are given). Best run at full coverage (before cutover): while the backfill runs, the target side
    holds fewer points, and its top scores are lower than they will be.

    Raises:
        MigrationNotFoundError: the collection has no migration.
        ConfigError: no queries, a bad ``k``, or queries naming relevant ids the collection does not hold.
        StoreError: the source or the target vector does not exist (before start, after finalize).
        CalibrationError: too few scores (an empty collection or sample: the message says how many).
    """
    (k,) = checked_ks([k])
    store = searcher.store
    migration, snap = _migration_of(store, collection)
    strategy, plan = migration.strategy_of(snap), snap.plan
    specs = list(queries)
    check_relevant_ids(store, collection, specs, origin)
    wanted = sample if sample is not None else (0 if specs else DEFAULT_CALIBRATION_SAMPLE)
    if wanted:
        specs += sample_queries(store, collection, wanted, text_field=plan.text_field, seed=seed)
    if not specs:
        raise CalibrationError(
            f"no queries to calibrate with: {collection!r} holds no point with text in "
            f"{plan.text_field!r} to sample, and no queries file was given (--queries FILE)"
        )
    scores: dict[str, list[float]] = {}
    for role in ("source", "target"):
        side = strategy.side(role)
        if not _searchable(store, side):
            raise StoreError(
                f"the {role} vector does not exist, so the two models' scores cannot be compared: calibrate "
                "between start (and a backfill) and finalize",
                collection=side.collection,
                vector=side.using,
            )
        spec = plan.source if role == "source" else plan.target
        vectors = embed_checked(searcher.embedder(spec), [q.text for q in specs], spec)
        scores[role] = _searched(store, side, vectors, k, k)[1]
    return ScoreCalibration.measure(
        scores["source"],
        scores["target"],
        source=plan.source,
        target=plan.target,
        queries=len(specs),
        k=k,
        method="calibrate",
        coverage=migration.coverage().fraction,
    )


def _mixed(searcher: Searcher, plan: MigrationPlan, text: str, limit: int) -> tuple[PointId, ...]:
    """A mixed query as the wrapper runs it (the plan's missing policy), without read-repair."""
    source, target = searcher.embedder(plan.source), searcher.embedder(plan.target)
    result = mixed_query(
        searcher.store,
        plan,
        text,
        embed_source=lambda texts: embed_checked(source, texts, plan.source),
        embed_target=lambda texts: embed_checked(target, texts, plan.target),
        limit=limit,
        missing=plan.missing_policy,
        read_repair=False,
        oversample=plan.oversample,
        embed_budget=plan.embed_budget,
        with_payload=False,
    )
    return tuple(normalize_id(p.id) for p in result.points)


def _aggregate(outcomes: Sequence[QueryOutcome], k: int, systems: Sequence[str]) -> AtK:
    per_query = [o.at(k) for o in outcomes]
    labelled = [m for m, o in zip(per_query, outcomes, strict=True) if o.query.relevant]
    return AtK(
        k=k,
        overlap=_mean(m["overlap"] for m in per_query) if {"source", "target"} <= set(systems) else None,
        rank_correlation=_mean(m["rank_correlation"] for m in per_query),
        recall={s: _mean(m["recall"][s] for m in labelled) for s in systems} if labelled else {},
        ndcg={s: _mean(m["ndcg"][s] for m in labelled) for s in systems} if labelled else {},
    )


def record_comparison(store: Store, report: ComparisonReport) -> dict[str, Any]:
    """Store ``report``'s summary as the collection's latest comparison (what the cutover gate reads)."""
    summary = report.summary()
    store.put_record(RECORD_KIND, report.collection, summary)
    return summary
