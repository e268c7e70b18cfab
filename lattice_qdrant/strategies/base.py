"""The strategy interface: one class per way of storing the target vectors, chosen once from the plan.

The rows of the README's strategy table ("Choosing a strategy") are the methods of
:class:`MigrationStrategy`:

* where the target vectors go: :attr:`~MigrationStrategy.data_collection`;
* needs: :meth:`~MigrationStrategy.check_plan`, :attr:`~MigrationStrategy.min_server_version` (and
  ``doctor``'s :meth:`~MigrationStrategy.server_finding`, :meth:`~MigrationStrategy.doctor_layout`,
  :meth:`~MigrationStrategy.doctor_target`);
* which model a point holds: one filter for done (:meth:`~MigrationStrategy.done`), one for to do
  (:meth:`~MigrationStrategy.todo`), counted by :meth:`~MigrationStrategy.coverage`, and ``verify``'s
  :meth:`~MigrationStrategy.layout`;
* writes during the migration: :meth:`~MigrationStrategy.destinations`,
  :meth:`~MigrationStrategy.forwards`, the backup entries a write records first
  (:meth:`~MigrationStrategy.source_entries`), and the backfill's and read-repair's
  :meth:`~MigrationStrategy.write_target`;
* queries: :meth:`~MigrationStrategy.query_plan`, :meth:`~MigrationStrategy.side` (one model's points,
  for shadow comparison) and :meth:`~MigrationStrategy.mixed_searches`;
* start: :meth:`~MigrationStrategy.start`; cutover: :meth:`~MigrationStrategy.sync_alias`,
  :meth:`~MigrationStrategy.check_cutover`; cancel: :meth:`~MigrationStrategy.cancel`;
* extra storage: :meth:`~MigrationStrategy.bytes_per_point` (and ``doctor``'s
  :meth:`~MigrationStrategy.doctor_storage`);
* the way back: :meth:`~MigrationStrategy.restore` (with the embedding of what the backup cannot serve),
  :meth:`~MigrationStrategy.finalize_backup`, :meth:`~MigrationStrategy.protects`;
* finalize drops: :meth:`~MigrationStrategy.drop_source`, after :meth:`~MigrationStrategy.check_finalize`
  and :meth:`~MigrationStrategy.back_up_before_finalize`.

The rest of the package asks the strategy (``Migration.strategy``) instead of testing the plan's flags.
The methods here are the defaults of a target vector with a name of its own (in place, blue-green); each
strategy overrides what it does differently. The methods that plan a write or a query decide without I/O
(they return :mod:`lattice_qdrant.routing`'s data); the lifecycle methods act through the store, and reach
the migration record through :class:`Lifecycle` (the coordinator sits above this package).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .. import backups
from ..embedders import Embedder, embed_checked
from ..errors import ConfigError, InvalidTransitionError, MigrationError, StoreError
from ..plan import MigrationPlan, Strategy
from ..report import format_bytes
from ..routing import (
    Coverage,
    Destination,
    MixedQuery,
    MixedSearches,
    PassThrough,
    QueryPlan,
    Role,
    RoutedQuery,
    Search,
    Snapshot,
    needs_coverage,
    route,
)
from ..spec import Distance, ModelSpec
from ..state import (
    Cancel,
    Event,
    MigrationState,
    Phase,
    QueryRoute,
    Reopen,
    Status,
    WriteRoute,
    format_duration,
)
from ..store import (
    CONDITIONAL_WRITES_MIN_VERSION,
    MODEL_FIELD,
    VERSION_FIELD,
    Store,
    VectorInfo,
    holding_written,
    stamp_filter,
)

__all__ = [
    "Finding",
    "Lifecycle",
    "MigrationStrategy",
    "Stamp",
    "VectorLayout",
    "same_model",
    "vector_bytes",
]

log = logging.getLogger(__name__)

Finding = tuple[str, str, str]
"""A ``doctor`` finding: ``(check, verdict, detail)``, the verdict ``ok``, ``warn`` or ``fail``."""

Stamp = tuple[str, ModelSpec | str | None]
"""A point's model stamp as ``verify`` reads it: ``("none", None)``, ``("known", spec)`` or
``("unknown", "model_id:vN")``."""


def vector_bytes(dimension: int) -> int:
    """Storage one point's vector takes: float32 values, plus about ``2*m`` links of 4 bytes in the HNSW
    graph (``m=16`` by default)."""
    return dimension * 4 + 2 * 16 * 4


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs are the same model (id and version)."""
    return (a.model_id, a.version) == (b.model_id, b.version)


@dataclass(frozen=True)
class VectorLayout:
    """Which model each checked vector holds, and which model a point should be stamped with (``verify``).

    This is the layout of vectors that say by their name which model they hold: ``vectors`` maps each
    checked name to its model; with ``plan`` (in place), which vectors a point holds also tells what its
    stamp should be.
    """

    vectors: dict[str, ModelSpec]
    text_field: str
    plan: MigrationPlan | None = field(default=None)

    @property
    def stamps_checked(self) -> bool:
        """Whether a stamp can disagree with the vectors a point holds (it cannot where it alone tells)."""
        return True

    def model_of(self, name: str, stamp: Stamp) -> ModelSpec:
        """The model vector ``name`` of a point stamped ``stamp`` should hold."""
        return self.vectors[name]

    def expected_stamp(self, present: Iterable[str]) -> ModelSpec | None:
        """The model that last wrote a point holding the vectors ``present``, when it can be told."""
        held = [name for name in self.vectors if name in set(present)]
        if self.plan is not None:
            if self.plan.target_vector in held:
                return self.plan.target
            if self.plan.source_vector in held:
                return self.plan.source
            return None
        return self.vectors[held[0]] if len(held) == 1 else None

    def vectors_of(self, model_id: str, version: int) -> list[str]:
        """The checked vectors holding that model."""
        return [n for n, s in self.vectors.items() if (s.model_id, s.version) == (model_id, version)]

    def suspect(self, spec: ModelSpec, stamp: Stamp) -> ModelSpec | None:
        """The model a vector that is not ``spec``'s embedding may hold instead (``mixed_spaces``): the one
        its stamp names, when registered, another model and of the same dimension."""
        kind, other = stamp
        if (
            kind == "known"
            and isinstance(other, ModelSpec)
            and not same_model(other, spec)
            and other.dimension == spec.dimension
        ):
            return other
        return None


class Lifecycle(Protocol):
    """What a strategy needs of the migration it runs: :class:`~lattice_qdrant.coordinator.Migration` is
    one (the coordinator sits above the strategies, so they name it by this protocol)."""

    store: Store
    collection: str
    refresh_interval: float
    clock: Callable[[], float]

    def snapshot(self, *, refresh: bool = False) -> Snapshot:
        """The record (see ``Migration.snapshot``)."""
        ...

    def apply(self, event: Event, *, backup_id: str | None = None) -> MigrationState:
        """Apply one event with compare-and-set (see ``Migration.apply``)."""
        ...

    def coverage(self) -> Coverage:
        """Points holding the target model, counted now."""
        ...

    def record_event(
        self, name: str, before: MigrationState | None, after: MigrationState, epoch: int
    ) -> None:
        """Append an informative entry to the history (a failure is logged)."""
        ...

    def settled(self, name: str, snap: Snapshot) -> MigrationState | None:
        """The state an earlier ``name`` of this migration wrote, if its reply was lost and it took effect."""
        ...


class MigrationStrategy(ABC):
    """How a plan stores its target vectors; :func:`~lattice_qdrant.strategies.strategy_for` picks one.

    Args:
        plan: the migration plan (its ``strategy`` is this class's :attr:`kind`).
    """

    #: the plan's strategy this class implements
    kind: ClassVar[Strategy]

    def __init__(self, plan: MigrationPlan) -> None:
        self.plan = plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.plan.collection!r})"

    # ----------------------------------------------------------------- where the target vectors go

    @property
    def data_collection(self) -> str:
        """The collection holding the target vectors (the backfill's collection)."""
        return self.plan.collection

    # ----------------------------------------------------------------- which model a point holds

    def done(self) -> models.Filter:
        """The points of :attr:`data_collection` that hold the target model."""
        return models.Filter(must=[self._holds_target()])

    def todo(self, also: Sequence[models.Condition] = ()) -> models.Filter:
        """The points of :attr:`data_collection` still to do (not holding the target), and matching
        ``also``: the backfill's work, read in id order."""
        return models.Filter(must=list(also) or None, must_not=[self._holds_target()])

    def _holds_target(self) -> models.Condition:
        """The condition "holds the target model": here, having the target vector."""
        return models.HasVectorCondition(has_vector=self.plan.target_vector)

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """Which model each vector of the collection holds, for ``verify`` (``existing``: the collection's
        vectors by name); ``None`` when it holds neither of the plan's vectors."""
        plan = self.plan
        mapped = {plan.source_vector: plan.source, plan.target_vector: plan.target}
        vectors = {name: spec for name, spec in mapped.items() if name in existing}
        return VectorLayout(vectors, text_field, plan) if vectors else None

    # ----------------------------------------------------------------- where writes go

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """Where a routed write of the roles ``required`` goes (pure): here, one upsert with both named
        vectors into the collection written to (an upsert replaces the whole point), stamped with the
        newest model written."""
        plan = self.plan
        names = {"source": plan.source_vector, "target": plan.target_vector}

        def both(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
            out = dict(extra) if extra else {}
            for role, vector in roles.items():
                out[names[role]] = vector
            return out

        return [Destination(collection_name, both, plan.target if "target" in required else plan.source)]

    def forwards(self, write: WriteRoute) -> tuple[str, ...] | None:
        """The collections a delete or payload change reaches under ``write`` (pure); ``None``: the
        collection named, unchanged (one collection holds both models)."""
        return None

    def vector_deletions(
        self, collection_name: str, names: Sequence[str], required: tuple[Role, ...]
    ) -> list[tuple[str, list[str]]]:
        """Where a ``delete_vectors`` of the vectors ``names`` goes, and which names it deletes there
        (pure): ``[(collection, names)]``.

        The names are the application's: the source or the target vector's name means the point's
        embedding, so every vector the write route writes (``required``) is deleted, and neither model is
        left holding an embedding the application removed. Other names are deleted as given. Here: one
        collection holds them all.
        """
        plan = self.plan
        routed = {plan.source_vector, plan.target_vector}
        own = {"source": plan.source_vector, "target": plan.target_vector}
        out = [n for n in names if n not in routed]
        if any(n in routed for n in names):
            out += [own[r] for r in required]
        return [(collection_name, list(dict.fromkeys(out)))]

    def server_inference_refusal(self) -> str | None:
        """Why the wrapper cannot leave embedding to Qdrant's server-side inference for this strategy
        (``None``: it can; the writes here keep no copy of a vector they write)."""
        return None

    def ambiguity(self) -> str | None:
        """The problem to report for a plain vector that could be either model's (``None``: the default
        wording, naming the vectors)."""
        return None

    def source_entries(
        self,
        ids: Sequence[Any],
        roles: Sequence[dict[str, list[float]]],
        texts: Sequence[Any],
        required: tuple[Role, ...],
    ) -> dict[Any, tuple[list[float], str | None, tuple[str, int]]] | None:
        """The backup entries a write must record before it is written (pure): ``{id: (source vector,
        text, (model_id, version))}``, or ``None`` when the source vectors stay in the collection (here:
        the target vector has a name of its own)."""
        return None

    # ----------------------------------------------------------------- how queries run

    def query_needs_coverage(self, snap: Snapshot, using: str | None) -> bool:
        """Whether :meth:`query_plan` needs a coverage reading for ``snap`` (pure)."""
        return needs_coverage(snap)

    def query_plan(
        self,
        snap: Snapshot,
        coverage: Coverage | None,
        collection_name: str,
        *,
        textual: bool,
        mode: Literal["routed", "mixed"] | None,
        using: str | None,
    ) -> QueryPlan:
        """How a query on ``collection_name`` runs (pure), from the snapshot and the coverage reading
        (``None`` when :meth:`query_needs_coverage` said none is needed).

        ``textual``: the query is text (a ``models.Document``); ``mode``: what the caller asked
        (``None``: the plan's ``query_mode``); ``using``: a vector name the caller chose.

        Here: mixed while writes are dual and queries routed to the source, for text (or when asked for:
        a vector then is refused by the executor); otherwise the vector the routing (or ``using``) names.
        """
        plan = snap.plan
        routing = route(snap, coverage.fraction if coverage is not None else 0.0)
        chosen = mode or plan.query_mode
        # A vector query cannot be mixed (it is in one model's space): by the plan's default it is routed;
        # asked for explicitly, mixed mode refuses it.
        if (
            chosen == "mixed"
            and (textual or mode == "mixed")
            and using is None
            and routing.write == WriteRoute.DUAL_WRITE
            and routing.query == QueryRoute.SOURCE
        ):
            return MixedQuery()
        name = using if using is not None else routing.query_vector
        target_side = routing.query == QueryRoute.TARGET if using is None else name == plan.target_vector
        if using is not None and plan.source_vector == plan.target_vector:
            target_side = routing.query == QueryRoute.TARGET  # same name in both: follow the routing
        if name not in (plan.source_vector, plan.target_vector):
            return PassThrough(collection_name, name)
        role: Role = "target" if target_side else "source"
        return RoutedQuery(self._queried(collection_name, role), name, role)

    def _queried(self, collection_name: str, role: Role) -> str:
        """The collection a query embedded with ``role``'s model searches: the one named, here."""
        return collection_name

    def side(self, role: Role) -> RoutedQuery:
        """A search of only the points holding ``role``'s model, whatever the routing (pure): what shadow
        comparison compares."""
        plan = self.plan
        if role == "target":
            return RoutedQuery(self.data_collection, plan.target_vector, role)
        return RoutedQuery(plan.collection, plan.source_vector, role)

    def mixed_searches(self, query_filter: models.Filter | None) -> MixedSearches:
        """The two searches of a mixed query (pure): here both in the collection, the source search
        fetching its hits' target and source vectors, the target search their source vectors (its hits'
        target scores are Qdrant's)."""
        plan = self.plan
        names = [plan.target_vector, plan.source_vector]
        vectors: bool | list[str] = names if all(names) else True
        sources: bool | list[str] = [plan.source_vector] if all(names) else True
        return MixedSearches(
            source=Search(plan.collection, plan.source_vector or None, query_filter, vectors),
            target=Search(self.data_collection, plan.target_vector or None, query_filter, sources),
            target_vector=plan.target_vector,
            source_vector=plan.source_vector,
            source_vectors_from=("source", "target"),
        )

    # ----------------------------------------------------------------- coverage and cost

    def coverage(self, store: Store) -> Coverage:
        """Points holding the target model, counted from the data now (read-only)."""
        return store.coverage(self.plan.collection, self.plan.target_vector)

    #: the target write stamps through a payload filter on the text field (one request per batch on a
    #: server), which a strict mode refusing unindexed filters on updates turns into a stamp by ids
    stamp_filters_text: ClassVar[bool] = False

    def bytes_per_point(self) -> int:
        """Storage the target model adds per point (the dry run's estimate)."""
        return self.target_bytes(self.plan.target)

    @classmethod
    def target_bytes(cls, target: ModelSpec) -> int:
        """Storage a point's target vector adds: float32 values and HNSW links (a vector of its own)."""
        return vector_bytes(target.dimension)

    # ----------------------------------------------------------------- the target write

    def check_backfill(self, store: Store) -> None:
        """Refuse a backfill the collection is not ready for (read-only); nothing to check here.

        Raises:
            MigrationError: the collection is not ready (the message says what to run).
        """
        return None

    def write_target(
        self,
        store: Store,
        pending: Mapping[Any, tuple[str, NDArray[np.float32]]],
        *,
        landed: Callable[[], None] | None = None,
    ) -> list[Any]:
        """Write target vectors without ever overwriting a fresher one; return the ids written.

        Each point is written only if it still lacks the target vector and still holds the text its vector
        was embedded from (:meth:`~lattice_qdrant.store.Store.update_if_unchanged`), so a write the
        application made meanwhile wins. The points holding the target vector afterwards are stamped with
        the target model. Used by the backfill and by mixed mode's read-repair.

        ``landed`` is called once the store holds what this call writes, before the read-back that tells
        which points hold the vectors written (the backfill counts the coverage meanwhile).
        """
        plan, collection = self.plan, self.data_collection
        ids = store.update_if_unchanged(
            collection,
            plan.text_field,
            {pid: (text, {plan.target_vector: vector}) for pid, (text, vector) in pending.items()},
            lacking=plan.target_vector,
            stamp=(plan.target.model_id, plan.target.version),
        )
        if landed is not None:
            landed()
        if not ids:
            return []
        # Ours took effect where the stored vector is the one we wrote (as a server stores it).
        records = store.retrieve(collection, ids, with_payload=False, with_vectors=[plan.target_vector])
        ours = holding_written(records, plan.target_vector, pending, plan.target.distance)
        return [pid for pid in ids if pid in ours]

    def rewrite_target(self, store: Store, text: str, ids: Sequence[Any], vector: Any) -> None:
        """After the application changed the points' text to ``text``: write ``vector`` (its target
        embedding, or a ``models.Document`` for the server to embed) as their target vector, over the one
        they hold, only where a point still holds ``text`` (a later write wins), and stamp the target model.

        The write the wrapper makes for a text change (``set_payload``, ``overwrite_payload`` and their
        operations in ``batch_update_points``), before or after cutover. Points missing here (a blue-green
        copy not done yet) are skipped: the copy brings their text and the backfill their vector.
        """
        plan = self.plan
        store.update_if_unchanged(
            self.data_collection,
            plan.text_field,
            {pid: (text, {plan.target_vector: vector}) for pid in ids},
            stamp=(plan.target.model_id, plan.target.version),
        )

    def repair_stamps(self, store: Store) -> None:
        """Stamp the target model on points holding the target vector but not the stamp.

        The stamp is a second write after the vector (on a server the second operation of the same
        request, which is not a transaction); a run killed in between leaves a point with the vector and an
        old stamp, which no later run would otherwise read again (it has the vector).

        Raises:
            StoreError: the write failed.
        """
        target = self.plan.target
        store.set_payload(
            self.data_collection,
            {MODEL_FIELD: target.model_id, VERSION_FIELD: target.version},
            models.Filter(
                must=[self._holds_target()], must_not=[stamp_filter(target.model_id, target.version)]
            ),
        )

    # ----------------------------------------------------------------- plan and start

    #: plan options only this strategy takes
    own_options: ClassVar[tuple[str, ...]] = ()
    #: plan options that belong to one strategy, and which one
    _OWNED: ClassVar[dict[str, str]] = {
        "target_collection": "blue_green",
        "alias": "blue_green",
        "copy_source_vector": "blue_green",
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse plan options (set to a true value) that belong to another strategy.

        Raises:
            ConfigError: such an option is set (key ``strategy``).
        """
        foreign = [name for name in cls._OWNED if name not in cls.own_options and options.get(name)]
        if foreign:
            owner = cls._OWNED[foreign[0]]
            flags = [f"--{name.replace('_', '-')}" for name, of in cls._OWNED.items() if of == owner]
            listed = ", ".join(flags[:-1]) + f" and {flags[-1]}" if len(flags) > 1 else flags[0]
            raise ConfigError(f"{listed} belong to the {owner} strategy", key="strategy")

    @classmethod
    def plan_defaults(
        cls,
        collection: str,
        source_vector: str,
        target: ModelSpec,
        target_vector: str | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The plan fields this strategy derives when they are not given: here, the target vector's name
        (the target spec's :attr:`~lattice_qdrant.spec.ModelSpec.vector_name`)."""
        return {"target_vector": target.vector_name if target_vector is None else target_vector}

    def source_info(self, store: Store) -> VectorInfo:
        """The collection's source vector as it is now (read-only).

        Raises:
            StoreError: the collection has no such vector (the message lists those it has).
        """
        plan = self.plan
        vectors = store.vectors(plan.collection)
        found = vectors.get(plan.source_vector)
        if found is None:
            known = ", ".join(repr(n) for n in vectors) or "none"
            raise StoreError(
                f"the source vector does not exist (vectors: {known}; '' is the unnamed one)",
                collection=plan.collection,
                vector=plan.source_vector,
            )
        return found

    def check_plan(self, store: Store) -> None:
        """Refuse, before anything is recorded, a collection this strategy cannot migrate (read-only);
        nothing to check here beyond what every strategy checks.

        Raises:
            StoreError: the collection does not fit the strategy.
        """
        return None

    def other_names(self) -> tuple[str, ...]:
        """Other names under which the wrapper finds this migration (none here)."""
        return ()

    def planned(self, store: Store) -> None:
        """After the plan is recorded: forget what an earlier plan of the collection left (nothing here)."""
        return None

    @abstractmethod
    def start(self, lifecycle: Lifecycle, snap: Snapshot) -> MigrationState:
        """Prepare the collection and start migrating: dual-writes begin (resumable: a start cut off is
        finished by calling it again).

        Raises:
            TransitionError: the migration cannot start in its state.
        """

    # ----------------------------------------------------------------- cutover, rollback, finalize

    def sync_alias(self, store: Store, state: MigrationState) -> bool:
        """Put the alias readers use where ``state`` says queries go; ``True`` if it moved (no alias here:
        the wrapper switches ``using``)."""
        return False

    def check_cutover(self, store: Store, state: MigrationState, *, force: bool) -> None:
        """Refuse a cutover the collection is not ready for (read-only); nothing to check here beyond the
        lifecycle's own refusals.

        Raises:
            TransitionError: the collection is not ready.
        """
        return None

    def check_finalize(self, lifecycle: Lifecycle) -> None:
        """Refuse a finalize the lifecycle allows but the data does not (read-only); nothing here: the
        rollback window and coverage are the lifecycle's checks, which ``force`` overrides.

        Raises:
            TransitionError: the data is not ready (``force`` does not override this).
        """
        return None

    def back_up_before_finalize(self, lifecycle: Lifecycle) -> str | None:
        """Back the source vectors up before finalize drops them (policy ``always``), reusing a complete
        backup made since cutover; the backup's id, or ``None`` when the policy is ``never``."""
        plan = self.plan
        if plan.backup_policy != "always":
            return None
        cutover_at = lifecycle.snapshot().state.cutover_at or 0.0
        for manifest in backups.list_backups(lifecycle.store, plan.collection):
            if (
                manifest.complete
                and manifest.reason == "finalize"
                and manifest.vector == plan.source_vector
                and manifest.created_at >= cutover_at
            ):
                return manifest.backup_id
        return self.back_up_source(lifecycle.store, "finalize").backup_id

    def back_up_source(self, store: Store, reason: str) -> backups.Manifest:
        """Back up every point's source vector (streaming) with ``reason``; return the manifest."""
        plan = self.plan
        manifest = backups.create_backup(
            store,
            plan.collection,
            plan.source_vector,
            model=plan.source.qualified_id,
            text_field=plan.text_field,
            reason=reason,
        )
        log.info("%s: backed up %d source vectors as %s", plan.collection, manifest.count, manifest.backup_id)
        return manifest

    def drop_source(self, store: Store, state: MigrationState) -> None:
        """After finalize: drop what held the source model (here the source named vector); idempotent, so
        a finalize cut off after recording its state is finished by calling it again."""
        store.drop_vector(self.plan.collection, self.plan.source_vector)

    # ----------------------------------------------------------------- cancel

    def cancel(self, lifecycle: Lifecycle, *, drop_target: bool) -> MigrationState:
        """Abandon the migration (writes back to the source only), then clean up; on a migration already
        cancelled only the clean-up is done, so a cancel cut off is finished by calling it again.

        Raises:
            TransitionError: the migration cannot be cancelled in its state.
        """
        state = lifecycle.snapshot(refresh=True).state
        if state.status != Status.CANCELLED:
            state = lifecycle.apply(Cancel())
        self.clean_up_cancel(lifecycle.store, state, drop_target=drop_target)
        return state

    def clean_up_cancel(self, store: Store, state: MigrationState, *, drop_target: bool) -> None:
        """After cancel: drop the target named vector unless kept (idempotent)."""
        if drop_target:
            store.drop_vector(self.plan.collection, self.plan.target_vector)

    # ----------------------------------------------------------------- backups and restore

    def finalize_backup(self, lifecycle: Lifecycle, backup_id: str | None = None) -> backups.Manifest:
        """The backup ``restore`` uses: ``backup_id``, or the newest complete backup of the source vector.

        Raises:
            MigrationError: there is no such backup.
        """
        store, plan = lifecycle.store, self.plan
        if backup_id is not None:
            return backups.get_backup(store, backup_id)
        found = [
            m
            for m in backups.list_backups(store, plan.collection)
            if m.complete and m.vector == plan.source_vector
        ]
        if not found:
            raise MigrationError(
                f"no complete backup of {plan.source_vector!r} for {plan.collection!r}; "
                "lattice-qdrant backups list shows what there is"
            )
        return found[0]

    def protects(self, lifecycle: Lifecycle, snap: Snapshot, manifest: backups.Manifest) -> str | None:
        """Why the migration still needs ``manifest`` (its rollback window is open), or ``None``."""
        plan, state = self.plan, snap.state
        if manifest.collection != plan.collection or manifest.vector != plan.source_vector:
            return None
        now = lifecycle.clock()
        if state.finalized and state.finalized_at is not None:
            left = state.finalized_at + plan.rollback_window - now
            if left > 0:
                return (
                    f"{plan.collection!r} was finalized {format_duration(now - state.finalized_at)} "
                    f"ago; its rollback window needs this backup for another {format_duration(left)}"
                )
            return None
        if state.phase == Phase.ROLLBACK_WINDOW:
            return f"{plan.collection!r} is in its rollback window"
        return None

    def restore(
        self, lifecycle: Lifecycle, backup_id: str | None = None, *, embedder: Embedder | None = None
    ) -> backups.RestoreReport:
        """Undo a finalize: the source vector back from its backup, the rollback window reopened.

        Writes go to both vectors again as soon as the source exists again (before the old vectors are
        written back, so nothing written meanwhile is lost); queries stay on the target until ``rollback``.
        With ``embedder`` (the source model's), the points the backup cannot serve (changed or inserted
        since) are embedded afresh; without, they are reported.

        Raises:
            MigrationError: no usable backup.
            InvalidTransitionError: the migration is neither finalized nor in its rollback window.
        """
        snap = lifecycle.snapshot(refresh=True)
        plan, store = self.plan, lifecycle.store
        manifest = self.finalize_backup(lifecycle, backup_id)
        if snap.state.finalized:
            self.recreate_source(
                store, VectorInfo(plan.source_vector, manifest.dimension, Distance(manifest.distance))
            )
            lifecycle.apply(Reopen(at=lifecycle.clock()))
        elif snap.state.phase != Phase.ROLLBACK_WINDOW:
            raise InvalidTransitionError(
                snap.state.label, "restore", "only a finalized migration is restored"
            )
        self.source_reopened(store)
        report = backups.restore(store, manifest.backup_id)
        return self._embedded(report, store, embedder)

    def recreate_source(self, store: Store, shape: VectorInfo) -> None:
        """Restore, after finalize: make what holds the source model exist again (the named vector)."""
        store.ensure_vector_shape(self.plan.collection, shape.name, shape.size, shape.distance)

    def source_reopened(self, store: Store) -> None:
        """Restore, once writes reach the source again: bring it up to date before the vectors are written
        back (nothing here: the points never left the collection)."""
        return None

    def embed_unserved(self, store: Store, embedder: Embedder, *, page_size: int = 128) -> int:
        """After a restore: embed with the source model the points the backup could not serve (here: the
        points without the source vector, changed or inserted since), conditional on their text; return
        how many."""
        plan = self.plan
        missing = models.Filter(must_not=[models.HasVectorCondition(has_vector=plan.source_vector)])
        done = 0
        for todo in self._source_embeddings(store, embedder, missing, page_size):
            store.update_if_unchanged(
                plan.collection,
                plan.text_field,
                {pid: (text, {plan.source_vector: vector}) for pid, (text, vector) in todo.items()},
            )
            done += len(todo)
        return done

    def _embedded(
        self, report: backups.RestoreReport, store: Store, embedder: Embedder | None
    ) -> backups.RestoreReport:
        if embedder is None:
            return report
        return replace(report, embedded=self.embed_unserved(store, embedder))

    def _source_embeddings(
        self, store: Store, embedder: Embedder, flt: models.Filter, page_size: int
    ) -> Iterator[dict[Any, tuple[str, NDArray[np.float32]]]]:
        """Pages of the points matching ``flt`` that have text, as ``{id: (text, source-model vector)}``."""
        plan = self.plan
        for page in store.iter_points(
            plan.collection, flt=flt, page_size=page_size, with_payload=[plan.text_field]
        ):
            todo = [
                (r.id, t)
                for r in page
                if isinstance(t := (r.payload or {}).get(plan.text_field), str) and t.strip()
            ]
            if todo:
                vectors = embed_checked(embedder, [t for _, t in todo], plan.source)
                yield {pid: (t, v) for (pid, t), v in zip(todo, vectors, strict=True)}

    # ----------------------------------------------------------------- what the operator is told

    #: the oldest server the strategy works on
    min_server_version: ClassVar[tuple[int, int, int]] = CONDITIONAL_WRITES_MIN_VERSION

    @classmethod
    def server_finding(cls, version: tuple[int, int, int]) -> tuple[str, str]:
        """``doctor``'s verdict and detail on a server of ``version``.

        Every strategy needs 1.17+: the migration records' compare-and-set and the backfill's stale-proof
        writes rely on ``update_mode``, which older servers drop silently.
        """
        found = ".".join(map(str, version))
        needed = ".".join(map(str, CONDITIONAL_WRITES_MIN_VERSION[:2]))
        if version < CONDITIONAL_WRITES_MIN_VERSION:
            return "fail", (
                f"Qdrant {found} found, {needed}+ needed by every strategy: older servers silently ignore "
                "update_mode, so the migration's compare-and-set and the backfill's stale-proof writes would "
                "not hold; upgrade the server" + cls._upgrade_note()
            )
        return "ok", f"Qdrant {found} ({cls.kind.value} needs {needed}+)"

    @classmethod
    def _upgrade_note(cls) -> str:
        return ""

    @classmethod
    def doctor_layout(cls, vectors: Mapping[str, VectorInfo]) -> list[Finding]:
        """``doctor``'s findings on the collection's vector layout (read-only): any layout works here."""
        return []

    @classmethod
    def doctor_target(
        cls,
        vectors: Mapping[str, VectorInfo],
        target: ModelSpec,
        target_vector: str,
        plan: MigrationPlan | None,
    ) -> list[Finding]:
        """``doctor``'s findings on where the target vectors would go (read-only): here, a new named vector
        beside the source's, so the name must be free or already of the target's shape."""
        found = vectors.get(target_vector)
        if found is None:
            return [("target vector", "ok", f"{target_vector!r} is free; start will add it")]
        if found.size == target.dimension and found.distance == target.distance:
            return [("target vector", "ok", f"{target_vector!r} exists with the right shape (resuming)")]
        return [
            (
                "target vector",
                "fail",
                f"{target_vector!r} exists as {found.size}-d {found.distance.value}; choose another name",
            )
        ]

    @classmethod
    def doctor_storage(cls, target: ModelSpec, total: int) -> Finding:
        """``doctor``'s finding on the storage and memory the target model adds to ``total`` points."""
        per_point = vector_bytes(target.dimension)
        return (
            "storage",
            "ok",
            f"the target vector adds about {format_bytes(total * per_point)} "
            f"({target.dimension} float32 values + HNSW links per point); as much RAM unless "
            "the vector is kept on disk",
        )

    def status_extras(self, store: Store, snap: Snapshot) -> dict[str, Any]:
        """What ``status`` shows of this strategy besides the common fields (read-only): its name, and a
        ``layout`` line when it has one."""
        return {"strategy": self.kind.value}

    def cancelled_next_step(self, covered: int) -> str | None:
        """``status``'s next step for a cancelled migration with ``covered`` points on the target, when it
        is not "plan a new migration"."""
        return None

    def start_summary(self) -> str:
        """What ``start`` changes, for ``migrate``'s question."""
        return f"adds vector {self.plan.target_vector!r}"
