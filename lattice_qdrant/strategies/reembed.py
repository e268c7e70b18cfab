"""Re-embed: the target vectors overwrite the source vectors under the same name, point by point.

For a model change that keeps the shape (dimension and distance) where a second vector is impossible or
unwanted (a server older than 1.18, the unnamed vector, no room). **Which model a point holds is its payload
stamp** (``embedding_model_id`` / ``embedding_version``): a point holds the target exactly when it is
stamped with the target; anything else, unstamped legacy points included, holds the source. Every answer
of the strategy table follows from that: the work and coverage count by the stamp, the target write puts
vector and stamp together, queries are restricted by the stamp, and the only way back is the backup made at
start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from .. import backups
from ..embedders import Embedder
from ..errors import InvalidTransitionError, MigrationError, StoreError, VectorValidationError
from ..gates import check_reembed_cancel, check_reembed_finalize
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
    route,
)
from ..spec import ModelSpec
from ..state import Cancel, MigrationState, Phase, QueryRoute, Reopen, Rollback, Start, Status
from ..store import Store, VectorInfo, stamp_filter
from .base import Finding, Lifecycle, MigrationStrategy, Stamp, VectorLayout, same_model

__all__ = ["REASON", "ReembedStrategy", "StampLayout"]

#: The reason recorded on a re-embed's backup.
REASON = "reembed"


@dataclass(frozen=True)
class StampLayout(VectorLayout):
    """``verify``'s layout of a re-embed: one vector name, and the stamp says which model it holds."""

    reembed: MigrationPlan | None = None

    @property
    def stamps_checked(self) -> bool:
        """The stamp is what says which model the shared vector holds: nothing to compare it with."""
        return False

    def model_of(self, name: str, stamp: Stamp) -> ModelSpec:
        """The target model for a point stamped with it, the source model otherwise."""
        plan = self._plan
        kind, value = stamp
        held = kind == "known" and isinstance(value, ModelSpec) and same_model(value, plan.target)
        return plan.target if held else plan.source

    def expected_stamp(self, present: Iterable[str]) -> ModelSpec | None:
        """Only its stamp tells which model last wrote a point."""
        return None

    def suspect(self, spec: ModelSpec, stamp: Stamp) -> ModelSpec | None:
        """The plan's other model (a write cut off between vector and stamp)."""
        plan = self._plan
        return plan.source if same_model(spec, plan.target) else plan.target

    @property
    def _plan(self) -> MigrationPlan:
        if self.reembed is None:  # pragma: no cover - built by ReembedStrategy.layout with its plan
            raise TypeError("a StampLayout needs its re-embed plan")
        return self.reembed


class ReembedStrategy(MigrationStrategy):
    """The source vector overwritten by the target model under its own name, after a backup."""

    kind = Strategy.REEMBED
    stamp_filters_text = True  # write_stamped's one request: vector, then a stamp filtered on the text

    @classmethod
    def plan_defaults(
        cls,
        collection: str,
        source_vector: str,
        target: ModelSpec,
        target_vector: str | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The target vector is the source vector (``""``: the unnamed one)."""
        return {"target_vector": source_vector if target_vector is None else target_vector}

    def _holds_target(self) -> models.Condition:
        """Stamped with the target model."""
        return self.done()

    def done(self) -> models.Filter:
        """The points stamped with the target model."""
        target = self.plan.target
        return stamp_filter(target.model_id, target.version)

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """One name: the target's vector once writes reach it (the source's went to the backup first,
        :meth:`source_entries`), else the source's; the stamp says which, and an ``update_vectors`` carries
        it in the same request. The unnamed vector is written as a plain list."""
        plan = self.plan
        src = plan.source_vector
        role: Role = "target" if "target" in required else "source"

        def shared(roles: dict[str, list[float]], extra: dict[str, Any]) -> Any:
            vector = roles.get(role)
            if vector is None:
                return dict(extra)
            return vector if src == "" else {**extra, src: vector}

        stamp = plan.target if role == "target" else plan.source
        return [Destination(collection_name, shared, stamp, stamp_with_vectors=True)]

    def ambiguity(self) -> str | None:
        """Both models have the same dimension: a plain vector could be either's."""
        plan = self.plan
        return (
            f"a plain vector is ambiguous while a re-embed writes both models under {plan.source_vector!r} "
            f"(both are {plan.source.dimension}-d): give a models.Document, or leave the vector out and put "
            f"the text in the payload field {plan.text_field!r}, so each model embeds it"
        )

    def source_entries(
        self,
        ids: Sequence[Any],
        roles: Sequence[dict[str, list[float]]],
        texts: Sequence[Any],
        required: tuple[Role, ...],
    ) -> dict[Any, tuple[list[float], str | None, tuple[str, int]]] | None:
        """A dual-write keeps only the target vector under the shared name: the source vector goes into
        the migration's backup first, as the point's entry, so a restore gives it back."""
        if len(required) < 2:
            return None
        source = self.plan.source
        return {
            pid: (role["source"], text if isinstance(text, str) else None, (source.model_id, source.version))
            for pid, role, text in zip(ids, roles, texts, strict=True)
            if "source" in role
        }

    def query_needs_coverage(self, snap: Snapshot, using: str | None) -> bool:
        """Coverage decides the query from start until finalize (it is read from the stamps)."""
        if using is not None and using != self.plan.source_vector:
            return False
        return not (snap.state.finalized or snap.state.status == Status.PLANNED)

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
        """Never compares a query of one model with a vector of the other: the stamp says which model a
        point's vector holds.

        A text query over partial coverage is mixed (both versions' candidates, scored in the target
        space), whatever the plan's ``query_mode``; at coverage 0 it searches the source-holding points with
        the source embedding, at 100% the target-holding ones with the target embedding. A vector (or
        ``mode="routed"``) searches only the points holding the model the routing says. Before start every
        point holds the source, after finalize the target: plain queries.

        Raises:
            VectorValidationError: mixed mode asked for with a vector.
        """
        plan, state = snap.plan, snap.state
        name = plan.source_vector
        if using is not None and using != name:
            return PassThrough(collection_name, using)
        if state.finalized or state.status == Status.PLANNED:
            return RoutedQuery(collection_name, name, "target" if state.finalized else "source")
        if mode == "mixed" and not textual:
            raise VectorValidationError(
                [(None, "mixed mode embeds the query with both models: pass a models.Document, not a vector")]
            )
        cov = coverage if coverage is not None else Coverage(covered=0, total=0)
        if textual and mode != "routed":
            if 0 < cov.covered < cov.total:
                return MixedQuery()
            target_side = cov.total > 0 and cov.covered >= cov.total
            if cov.total == 0:
                target_side = route(snap, 1.0).query == QueryRoute.TARGET
        else:
            target_side = route(snap, cov.fraction).query == QueryRoute.TARGET
        role: Role = "target" if target_side else "source"
        return self.side(role)

    def side(self, role: Role) -> RoutedQuery:
        """The points stamped with the target, or the others, under the one name."""
        plan = self.plan
        restriction = self.done() if role == "target" else self.todo()
        return RoutedQuery(plan.collection, plan.source_vector, role, restriction)

    def mixed_searches(self, query_filter: Any) -> MixedSearches:
        """Both searches over the one name, each restricted by the stamp to the points holding its model
        (and the caller's filter); only the target search's hits hold target vectors (their scores are
        their target scores: no vectors fetched), and only the source search's source vectors."""
        plan = self.plan
        name = plan.source_vector

        def restricted(version: Any) -> Any:
            return version if query_filter is None else models.Filter(must=[query_filter, version])

        vectors: bool | list[str] = [name] if name else True
        return MixedSearches(
            source=Search(plan.collection, name, restricted(self.todo()), vectors),
            target=Search(plan.collection, name, restricted(self.done()), False),
            target_vector=name,
            vectors_from=(),
            source_vector=name,
            source_vectors_from=("source",),
        )

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """The shared vector, checked against the model each point's stamp names."""
        plan = self.plan
        if plan.source_vector not in existing:
            return None
        return StampLayout({plan.source_vector: plan.target}, text_field, reembed=plan)

    def coverage(self, store: Store) -> Coverage:
        """Points stamped with the target model (its vectors share one name with the source's)."""
        total = store.count(self.plan.collection)
        covered = store.count(self.plan.collection, self.done())
        return Coverage(covered=min(covered, total), total=total)

    @classmethod
    def target_bytes(cls, target: ModelSpec) -> int:
        """None: the target overwrites the source in place (its backup was made at start)."""
        return 0

    def write_target(
        self,
        store: Store,
        pending: Mapping[Any, tuple[str, NDArray[np.float32]]],
        *,
        landed: Callable[[], None] | None = None,
    ) -> list[Any]:
        """Overwrite vector and stamp together (:meth:`~lattice_qdrant.store.Store.write_stamped`: one
        request on a server), on points still holding their text and not yet the target.

        "Lacks the target vector" is "not stamped with the target model". A run killed between the vector
        and the stamp leaves a point with the new vector and the old stamp: it is still selected as to do,
        and the next run writes it again. ``landed`` is called once the write and its read-back are done
        (the store makes both).
        """
        plan, target = self.plan, self.plan.target
        written = store.write_stamped(
            self.data_collection,
            plan.target_vector,
            plan.text_field,
            pending,
            (target.model_id, target.version),
            distance=target.distance,
            unless=self.done(),
        )
        if landed is not None:
            landed()
        return written

    def repair_stamps(self, store: Store) -> None:
        """None needed: the stamp is what selects the work, so a point cut off is done again."""

    def rewrite_target(self, store: Store, text: str, ids: Sequence[Any], vector: Any) -> None:
        """After a text change: the target embedding over the shared vector with the target stamp, vector
        and stamp together (:meth:`~lattice_qdrant.store.Store.write_stamped`), on points still holding
        ``text``, whichever model they held (a point still on the source moves to the target: its source
        vector was embedded from the old text, and its backup entry, made from that text, is not restored
        over the new one)."""
        plan, target = self.plan, self.plan.target
        store.write_stamped(
            self.data_collection,
            plan.target_vector,
            plan.text_field,
            dict.fromkeys(ids, (text, vector)),
            (target.model_id, target.version),
            distance=target.distance,
        )

    def server_inference_refusal(self) -> str | None:
        """A re-embed keeps each source vector it overwrites in its backup and checks what it wrote by
        reading it back: both need the embeddings in this process."""
        return (
            "a re-embed backs up each source vector it overwrites and reads back what it wrote, which needs "
            "the embeddings in this process: wrap the client with inference='local'"
        )

    # ----------------------------------------------------------------- lifecycle

    def start(self, lifecycle: Lifecycle, snap: Snapshot) -> MigrationState:
        """Back up every source vector, then dual-writes begin (Start).

        No point is overwritten before the backup is complete: the backfill and the wrapper's dual-writes
        only begin with the Start event, which records the backup. A start cut off during the backup is
        redone by calling ``start`` again (the incomplete backup is deleted); one cut off after the backup
        completed reuses it.

        Raises:
            InvalidTransitionError: it has already started.
            StoreError: the vector does not have the target's shape.
        """
        plan, state, store = self.plan, snap.state, lifecycle.store
        if state.status != Status.PLANNED or state.phase != Phase.STABLE:
            done = lifecycle.settled("start", snap)  # a start of ours whose reply was lost
            if done is not None:
                return done
            raise InvalidTransitionError(state.label, "start", "it has already started")
        found = self.source_info(store)
        if found.size != plan.target.dimension or found.distance != plan.target.distance:
            raise StoreError(
                f"the vector is {found.size}-d {found.distance.value}, but {plan.target.qualified_id} is "
                f"{plan.target.dimension}-d {plan.target.distance.value}: a re-embed cannot change the "
                "vector config; use the blue_green strategy",
                collection=plan.collection,
                vector=plan.source_vector,
            )
        store.ensure_payload_indexes(plan.collection)
        manifest = self._backup(store)
        current = lifecycle.snapshot(refresh=True)
        lifecycle.record_event(f"backup {manifest.backup_id}", current.state, current.state, current.epoch)
        cov = lifecycle.coverage()
        return lifecycle.apply(Start(processed=cov.covered, total=cov.total), backup_id=manifest.backup_id)

    def _backup(self, store: Store) -> backups.Manifest:
        """The re-embed's backup: a complete one made for this plan by an earlier start, or a new one."""
        plan = self.plan
        mine = [
            m
            for m in backups.list_backups(store, plan.collection)
            if m.reason == REASON
            and m.vector == plan.source_vector
            and m.model == plan.source.qualified_id
            and m.created_at >= plan.created_at
        ]
        complete = [m for m in mine if m.complete]
        if complete:
            return complete[0]
        for cut_off in mine:  # a start cut off during its backup
            backups.delete_backup(store, cut_off.backup_id, force=True)
        return self.back_up_source(store, REASON)

    def check_finalize(self, lifecycle: Lifecycle) -> None:
        """Every point must hold the target: afterwards queries are plain target queries, and a point still
        holding the source vector would be compared across models (``force`` does not override this).

        Raises:
            ReembedIncompleteError: points still hold the source model.
        """
        check_reembed_finalize(self.plan.collection, lifecycle.coverage().missing)

    def back_up_before_finalize(self, lifecycle: Lifecycle) -> str | None:
        """None: the backup was made at start, and finalize drops nothing."""
        return None

    def drop_source(self, store: Store, state: MigrationState) -> None:
        """Nothing to drop: one vector, now the target's everywhere."""
        return None

    def cancel(self, lifecycle: Lifecycle, *, drop_target: bool) -> MigrationState:
        """Refused while points hold the target (their source vectors are in the backup only): ``restore``
        is the re-embed's cancel then. There is no target vector to drop.

        Raises:
            ReembedCancelRefusedError: points hold the target model.
        """
        state = lifecycle.snapshot(refresh=True).state
        check_reembed_cancel(state, self.plan.collection, lifecycle.coverage().covered)
        return state if state.status == Status.CANCELLED else lifecycle.apply(Cancel())

    def finalize_backup(self, lifecycle: Lifecycle, backup_id: str | None = None) -> backups.Manifest:
        """``backup_id``, or the backup the re-embed's start made.

        Raises:
            MigrationError: it has not started, or its backup is incomplete.
        """
        if backup_id is not None:
            return backups.get_backup(lifecycle.store, backup_id)
        snap = lifecycle.snapshot(refresh=True)
        if snap.backup_id is None:
            raise MigrationError(
                f"the re-embed of {self.plan.collection!r} has no backup: it has not started"
            )
        manifest = backups.get_backup(lifecycle.store, snap.backup_id)
        if not manifest.complete:
            raise MigrationError(f"the re-embed's backup {manifest.backup_id!r} is incomplete")
        return manifest

    def protects(self, lifecycle: Lifecycle, snap: Snapshot, manifest: backups.Manifest) -> str | None:
        """The backup is needed from start on: it holds the only copy of the overwritten source vectors,
        until the migration is cancelled with no point left on the target, or finalized and its rollback
        window has passed."""
        plan, state = self.plan, snap.state
        if manifest.collection != plan.collection or manifest.vector != plan.source_vector:
            return None
        if manifest.backup_id != snap.backup_id:
            return None
        if state.status == Status.CANCELLED:
            held = lifecycle.coverage().covered
            if held:
                return (
                    f"{held} point(s) of {plan.collection!r} still hold the target model: "
                    "restore needs this backup"
                )
            return None
        if not state.finalized:
            return (
                f"{plan.collection!r} is being re-embedded: this backup holds the only copy of its "
                "source vectors"
            )
        return super().protects(lifecycle, snap, manifest)

    def restore(
        self, lifecycle: Lifecycle, backup_id: str | None = None, *, embedder: Embedder | None = None
    ) -> backups.RestoreReport:
        """Undo the re-embed (any time after start, finalized or not); its source vectors were overwritten
        under the same name.

        The migration is cancelled first (reopened and rolled back on the way when needed), so writes go
        to the source model only; after ``refresh_interval`` (every process then routes so) each backed-up
        source vector is written back with its model fields, only where the point still holds the text of
        its backup entry; the count and checksum are checked against the manifest. With ``embedder`` (the
        source model's), the points changed since are embedded with it, vector and stamp together; without,
        they are reported and keep the target's. Resumable: run it again on the cancelled migration.

        Raises:
            InvalidTransitionError: it has not started (nothing was overwritten).
            MigrationError: no usable backup, or a backup of another vector.
        """
        snap = lifecycle.snapshot(refresh=True)
        plan, state, store = self.plan, snap.state, lifecycle.store
        if state.status == Status.PLANNED:
            raise InvalidTransitionError(
                state.label, "restore", "it has not started: nothing was overwritten"
            )
        manifest = self.finalize_backup(lifecycle, backup_id)
        if manifest.collection != plan.collection or manifest.vector != plan.source_vector:
            raise MigrationError(
                f"backup {manifest.backup_id!r} holds {manifest.collection!r} vector {manifest.vector!r}, "
                f"not this re-embed's ({plan.collection!r} vector {plan.source_vector!r})"
            )
        # Writes back to the source model first, or restored points would be overwritten again.
        if state.finalized:
            state = lifecycle.apply(Reopen(at=lifecycle.clock()))
        if state.phase == Phase.ROLLBACK_WINDOW:
            state = lifecycle.apply(Rollback(at=lifecycle.clock()))
        if state.status != Status.CANCELLED:
            state = lifecycle.apply(Cancel())
            # other processes route by a state at most refresh_interval old: let them see the cancel
            time.sleep(lifecycle.refresh_interval)
        current = lifecycle.snapshot(refresh=True)
        lifecycle.record_event(f"restore {manifest.backup_id}", current.state, current.state, current.epoch)
        report = backups.restore(store, manifest.backup_id, force=True, restore_model_fields=True)
        if embedder is None:
            return report
        return replace(report, embedded=self.embed_unserved(store, embedder))

    def embed_unserved(self, store: Store, embedder: Embedder, *, page_size: int = 128) -> int:
        """The points still holding the target (changed since their backup entry), embedded with the source
        model, vector and stamp together, conditional on their text."""
        plan, source = self.plan, self.plan.source
        done = 0
        for todo in self._source_embeddings(store, embedder, self.done(), page_size):
            done += len(
                store.write_stamped(
                    plan.collection,
                    plan.source_vector,
                    plan.text_field,
                    todo,
                    (source.model_id, source.version),
                    distance=source.distance,
                    unless=self.todo(),
                )
            )
        return done

    # ----------------------------------------------------------------- what the operator is told

    @classmethod
    def doctor_target(
        cls,
        vectors: Mapping[str, VectorInfo],
        target: ModelSpec,
        target_vector: str,
        plan: MigrationPlan | None,
    ) -> list[Finding]:
        """The target overwrites the source vector, so it must have its shape."""
        found = vectors.get(target_vector)
        if found is None:
            return []
        if (found.size, found.distance) == (target.dimension, target.distance):
            return [
                (
                    "target vector",
                    "ok",
                    f"re-embed: {target.qualified_id} overwrites {target_vector!r} point by point "
                    "(same shape); start backs every source vector up first",
                )
            ]
        return [
            (
                "target vector",
                "fail",
                f"{target_vector!r} is {found.size}-d {found.distance.value}, the target "
                f"{target.dimension}-d {target.distance.value}: use the blue_green strategy",
            )
        ]

    @classmethod
    def doctor_storage(cls, target: ModelSpec, total: int) -> Finding:
        """No vector added; the backup holds a copy of every source vector."""
        return (
            "storage",
            "ok",
            "a re-embed adds no vector to the collection; its backup collection holds a copy of every "
            f"source vector and text (about {format_bytes(total * target.dimension * 4)} of vectors)",
        )

    def status_extras(self, store: Store, snap: Snapshot) -> dict[str, Any]:
        """The backup, and that the stamp tells the models apart."""
        return {
            "strategy": self.kind.value,
            "backup_id": snap.backup_id,
            "layout": f"re-embed: one vector, the payload stamp says which model; backup {snap.backup_id}",
        }

    def cancelled_next_step(self, covered: int) -> str | None:
        """Points still on the target after a cancel: a restore was cut off."""
        if not covered:
            return None
        return (
            f"lattice-qdrant restore {self.plan.collection}: {covered} point(s) still hold the target model "
            "(a restore was cut off?)"
        )

    def start_summary(self) -> str:
        """The backup, and the overwrite."""
        return f"backs up and overwrites vector {self.plan.target_vector!r}"
