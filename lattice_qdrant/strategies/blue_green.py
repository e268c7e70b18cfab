"""Blue-green: a new collection holds the target vectors, and an alias moves at cutover (Qdrant 1.17+).

Which model a point holds is its collection; writes go to both collections (two upserts, not atomic
together); cutover moves the alias; finalize drops the source collection. The collection copy and the alias
switch are :mod:`lattice_qdrant.bluegreen`'s (store operations); this class decides when they run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import bluegreen
from ..errors import CollectionNotFoundError, InvalidTransitionError, MigrationError
from ..plan import MigrationPlan, Strategy
from ..report import format_bytes
from ..routing import Coverage, Destination, MixedSearches, Role, Search, Snapshot
from ..spec import ModelSpec
from ..state import MigrationState, Phase, Start, Status, WriteRoute
from ..store import Store, VectorInfo
from .base import Finding, Lifecycle, MigrationStrategy, VectorLayout, vector_bytes

__all__ = ["BlueGreenStrategy"]


class BlueGreenStrategy(MigrationStrategy):
    """A new collection for the target model, and an alias switch."""

    kind = Strategy.BLUE_GREEN
    own_options = ("target_collection", "alias", "copy_source_vector")

    @classmethod
    def plan_defaults(
        cls,
        collection: str,
        source_vector: str,
        target: ModelSpec,
        target_vector: str | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The target collection is ``{collection}__{target vector name}``, and the target vector keeps the
        source vector's name (so readers of the alias need no change at cutover) unless
        ``copy_source_vector`` keeps both."""
        if target_vector is None:
            target_vector = target.vector_name if options.get("copy_source_vector") else source_vector
        return {
            "target_vector": target_vector,
            "target_collection": options.get("target_collection") or f"{collection}__{target.vector_name}",
        }

    @property
    def data_collection(self) -> str:
        """The target collection."""
        return self.plan.target_collection or self.plan.collection

    def destinations(self, collection_name: str, required: tuple[Role, ...]) -> list[Destination]:
        """One upsert per collection (not atomic together): the source vector to the source collection,
        stamped with the source model, and the target vector (with the source vector, when the plan copies
        it) to the target collection, stamped with the target model."""
        plan = self.plan
        src, tgt = plan.source_vector, plan.target_vector
        out: list[Destination] = []
        if "source" in required:

            def old(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
                return {**extra, **({src: roles["source"]} if "source" in roles else {})}

            out.append(Destination(plan.collection, old, plan.source))
        if "target" in required:

            def new(roles: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, Any]:
                vectors = {tgt: roles["target"]} if "target" in roles else {}
                if plan.copy_source_vector and "source" in roles:
                    vectors[src] = roles["source"]
                return vectors

            out.append(Destination(self.data_collection, new, plan.target))
        return out

    def vector_deletions(
        self, collection_name: str, names: Sequence[str], required: tuple[Role, ...]
    ) -> list[tuple[str, list[str]]]:
        """Each collection written to deletes the vectors it holds: the source collection the source
        vector and the other names, the target collection the target vector (and the copied source
        vector); a name of either model's vector stands for the point's embedding, deleted in both."""
        plan = self.plan
        src, tgt = plan.source_vector, plan.target_vector
        routed = any(n in (src, tgt) for n in names)
        others = [n for n in names if n not in (src, tgt)]
        out: list[tuple[str, list[str]]] = []
        if "source" in required:
            out.append((plan.collection, others + ([src] if routed else [])))
        if "target" in required:
            held = ([tgt] + ([src] if plan.copy_source_vector and src != tgt else [])) if routed else []
            # the other names live in the source collection; once it is the only one left, as given
            out.append((self.data_collection, held + ([] if "source" in required else others)))
        return [(collection, list(dict.fromkeys(found))) for collection, found in out if found]

    def forwards(self, write: WriteRoute) -> tuple[str, ...] | None:
        """Deletes and payload changes reach the collections writes go to: both while writes are dual."""
        plan = self.plan
        return {
            WriteRoute.LEGACY: (plan.collection,),
            WriteRoute.DUAL_WRITE: (plan.collection, self.data_collection),
            WriteRoute.TARGET: (self.data_collection,),
        }[write]

    def _queried(self, collection_name: str, role: Role) -> str:
        """The physical collection of the model: the wrapper never depends on the alias."""
        return self.data_collection if role == "target" else self.plan.collection

    def mixed_searches(self, query_filter: Any) -> MixedSearches:
        """The source search runs on the source collection (which has no target vector), the target
        search on the target collection (its hits' scores are their target scores: no vectors fetched);
        the source's candidates get their target vectors from there (the source collection's vector of
        that name, if any, is a source vector), and only they have their source vectors."""
        found = super().mixed_searches(query_filter)
        plan = self.plan
        return MixedSearches(
            source=Search(
                plan.collection,
                plan.source_vector or None,
                query_filter,
                [plan.source_vector] if plan.source_vector else True,
            ),
            target=Search(found.target.collection, found.target.using, query_filter, False),
            target_vector=found.target_vector,
            vectors_from=(),
            fetch_from=self.data_collection,
            source_vector=plan.source_vector,
            source_vectors_from=("source",),
        )

    def layout(self, existing: Mapping[str, Any], text_field: str) -> VectorLayout | None:
        """The source collection holds the source vector (the target vectors live in the target
        collection, even under the same name); its stamps only name models."""
        plan = self.plan
        if plan.source_vector not in existing:
            return None
        return VectorLayout({plan.source_vector: plan.source}, text_field)

    def coverage(self, store: Store) -> Coverage:
        """Points of the source collection holding the target vector in the target collection (after
        finalize the source collection is gone, and the target one is the collection)."""
        plan, data = self.plan, self.data_collection
        total = store.count(plan.collection if store.collection_exists(plan.collection) else data)
        covered = store.coverage(data, plan.target_vector).covered if store.collection_exists(data) else 0
        return Coverage(covered=min(covered, total), total=total)

    def check_backfill(self, store: Store) -> None:
        """Refuse a backfill before the copy into the target collection is complete.

        Raises:
            MigrationError: the copy is not complete (run ``start`` again to finish it).
        """
        if not bluegreen.copy_complete(store, self.plan):
            raise MigrationError(
                f"cannot backfill {self.plan.collection!r}: the copy into {self.data_collection!r} is not "
                "complete; run start again to finish it"
            )

    # ----------------------------------------------------------------- lifecycle

    def other_names(self) -> tuple[str, ...]:
        """The alias and the target collection name the same migration (the wrapper looks them up)."""
        return tuple(name for name in (self.plan.alias, self.plan.target_collection) if name)

    def planned(self, store: Store) -> None:
        """A copy recorded for an earlier plan of the collection is not this plan's."""
        bluegreen.forget_copy(store, self.plan)

    def start(self, lifecycle: Lifecycle, snap: Snapshot) -> MigrationState:
        """Target collection, then dual-writes, then the copy (all resumable).

        Dual-writes begin before the copy so that no write made during the copy is missed; the copy
        inserts only points the wrapper has not written yet. Calling ``start`` again after a crash
        finishes the copy.
        """
        plan, store, state = self.plan, lifecycle.store, snap.state
        if state.status == Status.PLANNED:
            bluegreen.prepare(store, plan)
            cov = lifecycle.coverage()
            state = lifecycle.apply(Start(processed=cov.covered, total=cov.total))
        elif state.phase == Phase.STABLE or state.terminal:
            raise InvalidTransitionError(state.label, "start")
        if not bluegreen.copy_complete(store, plan):
            bluegreen.copy_points(store, plan)
        return lifecycle.snapshot(refresh=True).state

    def sync_alias(self, store: Store, state: MigrationState) -> bool:
        """Every lifecycle call first puts the alias where the recorded state says, so a switch cut off
        halfway is repaired by the next call; cutover and rollback move it after recording their state."""
        return bluegreen.sync_alias(store, self.plan, state)

    def check_cutover(self, store: Store, state: MigrationState, *, force: bool) -> None:
        """The target collection must exist (a server applies alias actions one by one: check first), and
        the copy into it be complete (unless forced).

        Raises:
            CollectionNotFoundError: the target collection does not exist.
            InvalidTransitionError: the copy is not complete and ``force`` is false.
        """
        if not store.collection_exists(self.data_collection):
            raise CollectionNotFoundError(
                "cutover refused: the target collection does not exist", collection=self.data_collection
            )
        if not bluegreen.copy_complete(store, self.plan) and not force:
            raise InvalidTransitionError(
                state.label, "cutover", "the copy into the target collection is not complete; start again"
            )

    def drop_source(self, store: Store, state: MigrationState) -> None:
        """The alias stays on the target collection, and the source collection is dropped."""
        bluegreen.sync_alias(store, self.plan, state)
        store.drop_collection(self.plan.collection)

    def clean_up_cancel(self, store: Store, state: MigrationState, *, drop_target: bool) -> None:
        """The alias back on the source collection, the copy forgotten, the target collection dropped
        unless kept (:func:`lattice_qdrant.bluegreen.clean_up_cancel`)."""
        bluegreen.clean_up_cancel(store, self.plan, state, drop_target=drop_target)

    def recreate_source(self, store: Store, shape: VectorInfo) -> None:
        """The source collection again, with the backed-up source vector and the target collection's
        payload indexes.

        Raises:
            CollectionNotFoundError: the target collection is gone (nothing to rebuild from).
        """
        bluegreen.recreate_source(store, self.plan, shape)

    def source_reopened(self, store: Store) -> None:
        """Every point of the target collection is copied back (payload, stamped with the source model),
        after writes reach the source collection again so that none made meanwhile is missed."""
        bluegreen.copy_back(store, self.plan)

    # ----------------------------------------------------------------- what the operator is told

    @classmethod
    def doctor_target(
        cls,
        vectors: Mapping[str, VectorInfo],
        target: ModelSpec,
        target_vector: str,
        plan: MigrationPlan | None,
    ) -> list[Finding]:
        """The target vectors go to a collection of their own: the source collection's names are free."""
        where = (
            repr(plan.target_collection)
            if plan is not None and plan.target_collection
            else "a new collection"
        )
        return [
            (
                "target vector",
                "ok",
                f"blue-green: {target.qualified_id} goes to {target_vector!r} in {where} "
                f"({target.dimension}-d {target.distance.value}); start creates it and copies every point",
            )
        ]

    @classmethod
    def doctor_storage(cls, target: ModelSpec, total: int) -> Finding:
        """The new collection holds the target vector and a copy of every point's payload."""
        size = format_bytes(total * vector_bytes(target.dimension))
        return (
            "storage",
            "ok",
            f"the new collection holds the target vector, about {size} ({target.dimension} float32 values "
            "+ HNSW links per point; as much RAM unless kept on disk), and a copy of every point's payload",
        )

    def status_extras(self, store: Store, snap: Snapshot) -> dict[str, Any]:
        """The target collection and where the alias points."""
        plan = self.plan
        points_to = store.alias_target(plan.alias) if plan.alias else None
        alias = f"; alias {plan.alias!r} -> {points_to!r}" if plan.alias else ""
        return {
            "strategy": self.kind.value,
            "target_collection": self.data_collection,
            "alias": plan.alias,
            "alias_points_to": points_to,
            "layout": f"blue-green: target collection {self.data_collection!r}{alias}",
        }

    def start_summary(self) -> str:
        """The new collection, and the copy into it."""
        return f"creates collection {self.data_collection!r} and copies every point into it"
