"""Verify: re-embed points and check that each stored vector is what its model would write today.

A point's payload names the model that last wrote it (``embedding_model_id`` / ``embedding_version``), and
each named vector belongs to a model: with a migration, the plan says so (source vector: the source model,
target vector: the target model); without one, the caller maps vector names to registered models. Verify
reads points page by page (all of them, or a seeded random sample of ids), re-embeds their text with the
model of each vector they hold, and compares:

* ``Cosine``: cosine similarity of the stored and the fresh vector at least ``1 - tolerance``;
* ``Dot``, ``Euclid``, ``Manhattan``: the raw vectors, ``|stored - fresh| <= tolerance * |fresh|`` (L2).

What it reports (:class:`VerifyReport`), one :class:`Mismatch` per problem:

* ``vector``: a stored vector is not the re-embedding of the point's text (corruption, a changed model
  configuration, a vector written from another text);
* ``mixed_spaces``: the same, and the vector is the re-embedding by the model the payload names, which
  is not the vector's model (a write that put one model's vector under another model's name);
* ``stamp``: the payload's model fields disagree with the vectors the point holds (stamped with the
  target but without the target vector; holding the target vector but stamped with another model);
* ``unknown_model``: the payload names a model that is not registered.

Points without text cannot be verified: they are counted apart (``unverifiable``), never as mismatches.

With ``fix=True`` each mismatched vector is rewritten with its re-embedding and the model fields are
re-stamped, through conditional writes (the backfill's technique): a point is written only if it still
holds the text that was embedded, so a write the application made meanwhile wins. What was fixed is read
back, never assumed.

Memory stays bounded: points are read ``page_size`` at a time, and a sample keeps only its ``sample`` ids
(a reservoir sample over the ids in id order, so the same seed picks the same points).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .coordinator import Migration
from .embedders import Embedder, embed_checked, embedder_for
from .errors import ConfigError, LatticeError, MigrationNotFoundError, ModelNotFoundError
from .kernels import vectors_match
from .plan import MigrationPlan
from .registry import ModelRegistry
from .spec import ModelSpec
from .store import MODEL_FIELD, VERSION_FIELD, Store, same_text
from .strategies import VectorLayout, strategy_for
from .strategies.base import same_model

__all__ = [
    "REASONS",
    "Mismatch",
    "VerifyReport",
    "reservoir_sample",
    "vectors_match",
    "verify",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Every mismatch reason, with what it means.
REASONS: dict[str, str] = {
    "vector": "the stored vector is not the re-embedding of the point's text",
    "mixed_spaces": "the stored vector was embedded by the model the payload names, not the vector's model",
    "stamp": "the payload's model fields disagree with the vectors the point holds",
    "unknown_model": "the payload names a model that is not registered",
}


@dataclass(frozen=True)
class Mismatch:
    """One problem found on one point.

    Attributes:
        point_id: the point.
        vector: the named vector concerned (``None`` for ``unknown_model``).
        model: qualified id of the model the vector was checked against, if any.
        reason: a key of :data:`REASONS`.
        detail: what was found, for a person.
        similarity: cosine similarity of the stored vector and the re-embedding (vector checks only).
        error: ``|stored - fresh| / |fresh|`` (vector checks only).
        fixed: whether ``fix`` repaired it (read back after the write).
    """

    point_id: Any
    vector: str | None
    model: str | None
    reason: str
    detail: str
    similarity: float | None = None
    error: float | None = None
    fixed: bool = False


@dataclass(frozen=True)
class VerifyReport:
    """What a verification found (and fixed).

    ``checked == matched + points_mismatched + unverifiable``; ``mismatched`` counts problems (a point can
    have more than one), of which ``mismatches`` lists the first ``max_listed``.

    Attributes:
        collection: the collection verified.
        vectors: the vector names checked and the qualified id of each one's model.
        total: points in the collection when the run started.
        sample: the sample size asked for, or ``None`` when every point was checked.
        seed: the seed of the sample.
        checked: points read and examined.
        vectors_checked: stored vectors compared with a re-embedding.
        matched: points on which nothing was wrong.
        points_mismatched: points with at least one mismatch.
        mismatched: mismatches found.
        unverifiable: points without text (not compared).
        unknown_model: points whose payload names a model that is not registered.
        fixed: mismatches repaired by ``fix``.
        fix_skipped: mismatches ``fix`` left alone: the point changed (or vanished) meanwhile, or no model
            stamp can be decided for it.
        mismatches: the first ``max_listed`` mismatches, in the order found.
        unverifiable_ids: the first ``max_listed`` points without text.
    """

    collection: str
    vectors: dict[str, str]
    total: int
    sample: int | None
    seed: int
    checked: int
    vectors_checked: int
    matched: int
    points_mismatched: int
    mismatched: int
    unverifiable: int
    unknown_model: int
    fixed: int
    fix_skipped: int
    mismatches: list[Mismatch] = field(default_factory=list)
    unverifiable_ids: list[Any] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """Mismatches still there after the run (found and not fixed)."""
        return self.mismatched - self.fixed

    @property
    def clean(self) -> bool:
        """Whether no mismatch remains (the CLI's exit code 0)."""
        return self.remaining == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``verify --json``)."""
        data = asdict(self)
        data.update(remaining=self.remaining, clean=self.clean)
        return data


# --------------------------------------------------------------------------- pure helpers


def reservoir_sample(items: Iterable[T], k: int, rng: random.Random) -> list[T]:
    """A uniform random sample of ``k`` items (all of them when fewer), keeping only ``k`` in memory.

    The same items in the same order and the same ``rng`` state give the same sample. The result is in the
    order the items came in.

    Raises:
        ConfigError: ``k`` is below 1.
    """
    if k < 1:
        raise ConfigError(f"the sample size must be at least 1, got {k}", key="sample")
    reservoir: list[tuple[int, T]] = []
    for i, item in enumerate(items):
        if i < k:
            reservoir.append((i, item))
            continue
        j = rng.randint(0, i)
        if j < k:
            reservoir[j] = (i, item)
    return [item for _, item in sorted(reservoir, key=lambda pair: pair[0])]


# --------------------------------------------------------------------------- conditional writes


def _stamp_if_unchanged(
    store: Store, collection: str, text_field: str, stamps: Mapping[Any, tuple[str, ModelSpec]]
) -> None:
    """Set the model fields of points that still hold the given text (a filter selector: no error if gone)."""
    by_spec: dict[tuple[str, int], list[Any]] = {}
    specs: dict[tuple[str, int], ModelSpec] = {}
    for pid, (_, spec) in stamps.items():
        key = (spec.model_id, spec.version)
        by_spec.setdefault(key, []).append(pid)
        specs[key] = spec
    for key, ids in by_spec.items():
        spec = specs[key]
        store.set_payload(
            collection,
            {MODEL_FIELD: spec.model_id, VERSION_FIELD: spec.version},
            models.Filter(should=[same_text(pid, text_field, stamps[pid][0]) for pid in ids]),
        )


# --------------------------------------------------------------------------- the layout


def _load_plan(store: Store, collection: str) -> MigrationPlan | None:
    try:
        return Migration(store, collection, refresh_interval=0.0).snapshot(refresh=True).plan
    except MigrationNotFoundError:
        return None


def _layout(
    store: Store,
    collection: str,
    plan: MigrationPlan | None,
    vector_models: Mapping[str, ModelSpec] | None,
    text_field: str | None,
) -> VectorLayout:
    existing = store.vectors(collection)
    if vector_models:
        for name, spec in vector_models.items():
            info = existing.get(name)
            if info is None:
                known = ", ".join(repr(n) for n in existing) or "none"
                raise ConfigError(f"{collection!r} has no vector {name!r} (vectors: {known})", key="vector")
            if info.size != spec.dimension or info.distance != spec.distance:
                raise ConfigError(
                    f"vector {name!r} of {collection!r} is {info.size}-d {info.distance.value}, but "
                    f"{spec.qualified_id} is {spec.dimension}-d {spec.distance.value}",
                    key="vector",
                )
        return VectorLayout(dict(vector_models), text_field or "text")
    if plan is None:
        raise ConfigError(
            f"{collection!r} has no migration: say which model each vector holds "
            "(--vector NAME=MODEL_REF, or vector_models=)",
            key="vector",
        )
    layout = strategy_for(plan).layout(existing, text_field or plan.text_field)
    if layout is None:
        names = list(dict.fromkeys((plan.source_vector, plan.target_vector)))
        what = f"has no vector {names[0]!r}"
        if len(names) > 1:
            what = f"holds neither {names[0]!r} nor {names[1]!r}"
        raise ConfigError(f"{collection!r} {what}: nothing to verify", key="vector")
    return layout


# --------------------------------------------------------------------------- the run


@dataclass
class _Found:
    """A mismatch being built (mutable until the report)."""

    point_id: Any
    vector: str | None
    model: str | None
    reason: str
    detail: str
    similarity: float | None = None
    error: float | None = None
    fresh: NDArray[np.float32] | None = None
    fixed: bool = False

    def freeze(self) -> Mismatch:
        return Mismatch(
            point_id=self.point_id,
            vector=self.vector,
            model=self.model,
            reason=self.reason,
            detail=self.detail,
            similarity=None if self.similarity is None else round(self.similarity, 6),
            error=None if self.error is None else round(self.error, 6),
            fixed=self.fixed,
        )


@dataclass
class _Counts:
    checked: int = 0
    vectors_checked: int = 0
    matched: int = 0
    points_mismatched: int = 0
    mismatched: int = 0
    unverifiable: int = 0
    unknown_model: int = 0
    fixed: int = 0
    fix_skipped: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    unverifiable_ids: list[Any] = field(default_factory=list)


class _Verifier:
    def __init__(
        self,
        store: Store,
        registry: ModelRegistry,
        collection: str,
        layout: VectorLayout,
        *,
        tolerance: float,
        fix: bool,
        embedder_for_spec: Callable[[ModelSpec], Embedder],
        max_text_chars: int | None,
        max_listed: int,
    ) -> None:
        self.store = store
        self.registry = registry
        self.collection = collection
        self.layout = layout
        self.tolerance = tolerance
        self.fix = fix
        self.embedder_for_spec = embedder_for_spec
        self.max_text_chars = max_text_chars
        self.max_listed = max_listed
        self.counts = _Counts()
        self._embedders: dict[str, Embedder | None] = {}
        self._registered: dict[tuple[str, int], ModelSpec | None] = {}

    # ------------------------------------------------------------- lookups

    def embedder(self, spec: ModelSpec, *, required: bool = True) -> Embedder | None:
        key = spec.qualified_id
        if key not in self._embedders:
            try:
                self._embedders[key] = self.embedder_for_spec(spec)
            except LatticeError:
                if required:
                    raise
                self._embedders[key] = None
        return self._embedders[key]

    def embed(
        self, spec: ModelSpec, texts: Sequence[str], *, required: bool = True
    ) -> NDArray[np.float32] | None:
        embedder = self.embedder(spec, required=required)
        if embedder is None:
            return None
        try:
            return embed_checked(embedder, texts, spec)
        except LatticeError:
            if required:
                raise
            return None

    def stamp_of(self, payload: Mapping[str, Any]) -> tuple[str, ModelSpec | str | None]:
        """``("none", None)``, ``("known", spec)`` or ``("unknown", "model_id:vN")``."""
        model_id, version = payload.get(MODEL_FIELD), payload.get(VERSION_FIELD)
        if model_id is None and version is None:
            return "none", None
        ref = f"{model_id}:v{version}"
        if not isinstance(model_id, str) or isinstance(version, bool) or not isinstance(version, int):
            return "unknown", ref
        key = (model_id, version)
        if key not in self._registered:
            try:
                self._registered[key] = self.registry.get(model_id, version)
            except (ModelNotFoundError, ValueError):
                self._registered[key] = None
        spec = self._registered[key]
        return ("known", spec) if spec is not None else ("unknown", ref)

    # ------------------------------------------------------------- one page

    def page(self, records: Sequence[models.Record]) -> None:
        layout = self.layout
        found: dict[Any, list[_Found]] = {}
        texts: dict[Any, str] = {}
        stored: dict[Any, dict[str, Any]] = {}
        stamps: dict[Any, tuple[str, ModelSpec | str | None]] = {}
        for record in records:
            self.counts.checked += 1
            payload = record.payload or {}
            text = payload.get(layout.text_field)
            if not isinstance(text, str) or not text.strip():
                self.counts.unverifiable += 1
                if len(self.counts.unverifiable_ids) < self.max_listed:
                    self.counts.unverifiable_ids.append(record.id)
                continue
            vectors = record.vector if isinstance(record.vector, dict) else {"": record.vector}
            present = {n: v for n, v in vectors.items() if n in layout.vectors and isinstance(v, list)}
            texts[record.id], stored[record.id] = text, present
            found[record.id] = []
            stamps[record.id] = self.stamp_of(payload)
            problem = self._stamp_problem(record.id, stamps[record.id], present)
            if problem is not None:
                found[record.id].append(problem)

        groups: dict[tuple[str, str], tuple[str, ModelSpec, list[Any]]] = {}
        for name in layout.vectors:
            for pid in texts:
                if name in stored[pid]:
                    spec = layout.model_of(name, stamps[pid])
                    groups.setdefault((name, spec.qualified_id), (name, spec, []))[2].append(pid)
        for name, spec, ids in groups.values():
            fresh = self.embed(spec, [texts[pid] for pid in ids])
            rows = fresh if fresh is not None else np.zeros((0, spec.dimension), np.float32)
            bad: list[tuple[Any, NDArray[np.float32], float, float]] = []
            for pid, row in zip(ids, rows, strict=True):
                self.counts.vectors_checked += 1
                ok, similarity, error = vectors_match(stored[pid][name], row, spec.distance, self.tolerance)
                if not ok and self._matches_truncated(spec, texts[pid], stored[pid][name]):
                    ok = True
                if not ok:
                    bad.append((pid, row, similarity, error))
            mixed = self._mixed_spaces(name, spec, bad, texts, stored, stamps)
            for pid, row, similarity, error in bad:
                other = mixed.get(pid)
                reason, detail = (
                    ("mixed_spaces", f"{name!r} holds a vector of {other}, not of {spec.qualified_id}")
                    if other
                    else ("vector", f"{name!r} is not the {spec.qualified_id} embedding of the point's text")
                )
                found[pid].append(
                    _Found(pid, name, spec.qualified_id, reason, detail, similarity, error, fresh=row)
                )

        if self.fix:
            self._fix({pid: items for pid, items in found.items() if items}, texts, stored, stamps)
        for items in found.values():
            if not items:
                self.counts.matched += 1
                continue
            self.counts.points_mismatched += 1
            for item in items:
                self.counts.mismatched += 1
                self.counts.unknown_model += item.reason == "unknown_model"
                if item.fixed:
                    self.counts.fixed += 1
                elif self.fix:
                    self.counts.fix_skipped += 1
                if len(self.counts.mismatches) < self.max_listed:
                    self.counts.mismatches.append(item.freeze())

    def _stamp_problem(
        self, pid: Any, stamp: tuple[str, ModelSpec | str | None], present: Mapping[str, Any]
    ) -> _Found | None:
        layout = self.layout
        kind, value = stamp
        expected = layout.expected_stamp(present)
        if kind == "unknown":
            return _Found(pid, None, None, "unknown_model", f"stamped with {value}, which is not registered")
        if not layout.stamps_checked:
            return None  # the stamp is what says which model the vector holds: nothing to compare
        if kind == "none":
            plan = layout.plan
            if plan is not None and expected is not None and same_model(expected, plan.target):
                return _Found(
                    pid,
                    plan.target_vector,
                    plan.target.qualified_id,
                    "stamp",
                    f"holds {plan.target_vector!r} but has no model stamp",
                )
            return None
        if not isinstance(value, ModelSpec):  # pragma: no cover - "known" always carries a spec
            return None
        stamped = value
        own = layout.vectors_of(stamped.model_id, stamped.version)
        missing = [name for name in own if name not in present]
        if layout.plan is not None:
            if expected is None or same_model(stamped, expected):
                return None
            if own and missing:
                detail = f"stamped with {stamped.qualified_id} but has no {missing[0]!r} vector"
                return _Found(pid, missing[0], stamped.qualified_id, "stamp", detail)
            vector = next(n for n, s in layout.vectors.items() if same_model(s, expected))
            detail = f"holds {vector!r} of {expected.qualified_id} but is stamped with {stamped.qualified_id}"
            return _Found(pid, vector, expected.qualified_id, "stamp", detail)
        if own and len(missing) == len(own):
            return _Found(
                pid,
                missing[0],
                stamped.qualified_id,
                "stamp",
                f"stamped with {stamped.qualified_id} but has no {missing[0]!r} vector",
            )
        return None

    def _matches_truncated(self, spec: ModelSpec, text: str, vector: Any) -> bool:
        """A long text may have been embedded truncated (as the backfill does): accept that vector too."""
        if self.max_text_chars is None or len(text) <= self.max_text_chars:
            return False
        fresh = self.embed(spec, [text[: self.max_text_chars]])
        return fresh is not None and vectors_match(vector, fresh[0], spec.distance, self.tolerance)[0]

    def _mixed_spaces(
        self,
        name: str,
        spec: ModelSpec,
        bad: Sequence[tuple[Any, NDArray[np.float32], float, float]],
        texts: Mapping[Any, str],
        stored: Mapping[Any, Mapping[str, Any]],
        stamps: Mapping[Any, tuple[str, ModelSpec | str | None]],
    ) -> dict[Any, str]:
        """Of the mismatched points, those whose vector is the embedding by the model their payload names."""
        by_model: dict[str, tuple[ModelSpec, list[Any]]] = {}
        for pid, *_ in bad:
            other = self.layout.suspect(spec, stamps[pid])
            if other is not None:
                by_model.setdefault(other.qualified_id, (other, []))[1].append(pid)
        out: dict[Any, str] = {}
        for qualified, (other, ids) in by_model.items():
            fresh = self.embed(other, [texts[pid] for pid in ids], required=False)
            if fresh is None:
                continue
            for pid, row in zip(ids, fresh, strict=True):
                if vectors_match(stored[pid][name], row, other.distance, self.tolerance)[0]:
                    out[pid] = qualified
        return out

    # ------------------------------------------------------------- fix

    def _fix(
        self,
        found: Mapping[Any, list[_Found]],
        texts: Mapping[Any, str],
        stored: Mapping[Any, Mapping[str, Any]],
        current: Mapping[Any, tuple[str, ModelSpec | str | None]],
    ) -> None:
        if not found:
            return
        layout = self.layout
        writes: dict[Any, tuple[str, dict[str, NDArray[np.float32]]]] = {}
        stamps: dict[Any, tuple[str, ModelSpec]] = {}
        for pid, items in found.items():
            vectors = {
                item.vector: item.fresh
                for item in items
                if item.fresh is not None and item.vector is not None
            }
            if vectors:
                writes[pid] = (texts[pid], vectors)
            expected = layout.expected_stamp(stored[pid])
            kind, value = current[pid]
            if expected is None or (
                kind == "known" and isinstance(value, ModelSpec) and same_model(value, expected)
            ):
                continue
            stamps[pid] = (texts[pid], expected)
        if writes:
            self.store.update_if_unchanged(self.collection, layout.text_field, writes)
        if stamps:
            _stamp_if_unchanged(self.store, self.collection, layout.text_field, stamps)
        # Read back: only what is there now counts as fixed.
        ids = list(found)
        names = sorted({n for _, vectors in writes.values() for n in vectors})
        now = {
            r.id: r
            for r in self.store.retrieve(
                self.collection,
                ids,
                with_payload=[layout.text_field, MODEL_FIELD, VERSION_FIELD],
                with_vectors=names or False,
            )
        }
        for pid, items in found.items():
            record = now.get(pid)
            payload = (record.payload or {}) if record is not None else {}
            if record is None or payload.get(layout.text_field) != texts[pid]:
                continue
            held: dict[str, Any] = record.vector if isinstance(record.vector, dict) else {}
            expected = layout.expected_stamp(stored[pid])
            stamped = expected is not None and (
                (payload.get(MODEL_FIELD), payload.get(VERSION_FIELD))
                == (expected.model_id, expected.version)
            )
            for item in items:
                if item.fresh is not None and item.vector is not None:
                    spec = layout.vectors[item.vector]
                    written = held.get(item.vector)
                    item.fixed = (
                        written is not None
                        and vectors_match(written, item.fresh, spec.distance, self.tolerance)[0]
                    )
                else:
                    item.fixed = stamped


def verify(
    store: Store,
    registry: ModelRegistry,
    collection: str,
    *,
    vector_models: Mapping[str, ModelSpec] | None = None,
    plan: MigrationPlan | None = None,
    sample: int | None = 200,
    all_points: bool = False,
    text_field: str | None = None,
    tolerance: float = 1e-3,
    fix: bool = False,
    embedder_for_spec: Callable[[ModelSpec], Embedder] = embedder_for,
    seed: int = 0,
    page_size: int = 256,
    max_text_chars: int | None = 20_000,
    max_listed: int = 100,
) -> VerifyReport:
    """Re-embed points of ``collection`` and compare with their stored vectors (see the module docstring).

    Read-only unless ``fix``.

    Args:
        store: the store adapter.
        registry: the model registry (to resolve the models the payloads name).
        collection: the collection to verify.
        vector_models: which registered model each named vector holds; overrides the migration plan.
        plan: the collection's migration plan (read from the control collection when omitted).
        sample: check a seeded random sample of this many points; ``None`` checks every point.
        all_points: check every point, whatever ``sample`` says.
        text_field: payload field holding the text (default: the plan's, else ``text``).
        tolerance: how far a vector may be from its re-embedding (module docstring).
        fix: rewrite mismatched vectors and re-stamp the model fields, conditional on the text.
        embedder_for_spec: builds the embedder of a spec (cached per spec during the run).
        seed: the sample's seed.
        page_size: points read (and written) per request.
        max_text_chars: a text longer than this also matches its truncation to this many characters
            (the backfill embeds texts truncated so); ``None`` compares the full text only.
        max_listed: the report lists at most this many mismatches and unverifiable ids.

    Raises:
        ConfigError: no plan and no ``vector_models``, a vector that does not exist or does not fit its
            model, a sample below 1, or a tolerance outside ``[0, 1]``.
        EmbedderError: a model cannot embed the texts.
        StoreError: Qdrant failed.
    """
    if not 0.0 <= tolerance <= 1.0:
        raise ConfigError(f"the tolerance must be between 0 and 1, got {tolerance}", key="tolerance")
    if page_size < 1:
        raise ConfigError(f"page_size must be at least 1, got {page_size}", key="page_size")
    if sample is not None and sample < 1 and not all_points:
        raise ConfigError(f"the sample size must be at least 1, got {sample}", key="sample")
    if plan is None and not vector_models:
        plan = _load_plan(store, collection)
    layout = _layout(store, collection, plan, vector_models, text_field)
    total = store.count(collection)
    run = _Verifier(
        store,
        registry,
        collection,
        layout,
        tolerance=tolerance,
        fix=fix,
        embedder_for_spec=embedder_for_spec,
        max_text_chars=max_text_chars,
        max_listed=max_listed,
    )
    payload = [layout.text_field, MODEL_FIELD, VERSION_FIELD]
    names = list(layout.vectors)
    chosen = None if all_points else sample
    if chosen is None:
        for page in store.iter_points(
            collection, page_size=page_size, with_payload=payload, with_vectors=names
        ):
            run.page(page)
    else:
        ids = (
            record.id
            for page in store.iter_points(collection, page_size=page_size, with_payload=False)
            for record in page
        )
        picked = reservoir_sample(ids, chosen, random.Random(seed))
        for start in range(0, len(picked), page_size):
            chunk = picked[start : start + page_size]
            records = {
                r.id: r for r in store.retrieve(collection, chunk, with_payload=payload, with_vectors=names)
            }
            # deleted since the ids were read: not checked
            run.page([records[pid] for pid in chunk if pid in records])
    c = run.counts
    return VerifyReport(
        collection=collection,
        vectors={name: spec.qualified_id for name, spec in layout.vectors.items()},
        total=total,
        sample=chosen,
        seed=seed,
        checked=c.checked,
        vectors_checked=c.vectors_checked,
        matched=c.matched,
        points_mismatched=c.points_mismatched,
        mismatched=c.mismatched,
        unverifiable=c.unverifiable,
        unknown_model=c.unknown_model,
        fixed=c.fixed,
        fix_skipped=c.fix_skipped,
        mismatches=c.mismatches,
        unverifiable_ids=c.unverifiable_ids,
    )
