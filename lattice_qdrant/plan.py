"""The migration plan: what moves where, and the policy that governs the move.

A plan is written once when a migration is planned and stored with its state in the control collection;
every process routes by the same plan.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .spec import ModelSpec
from .state import Policy

__all__ = ["MigrationPlan", "Strategy"]


class Strategy(StrEnum):
    """How the target vectors are stored."""

    #: a parallel named vector in the same collection (Qdrant 1.18+)
    IN_PLACE = "in_place"
    #: a new collection and an alias switch (Qdrant 1.17+)
    BLUE_GREEN = "blue_green"
    #: the target vectors overwrite the source vectors under the same name, point by point, after a backup
    #: (Qdrant 1.17+, the unnamed vector too; same dimension and distance only)
    REEMBED = "reembed"


class MigrationPlan(BaseModel):
    """A collection's move from ``source`` to ``target``.

    Attributes:
        collection: the collection migrated.
        source: the model whose vectors the collection holds now.
        target: the model it moves to.
        source_vector: named vector holding the source vectors.
        target_vector: named vector the target vectors go to.
        text_field: payload field holding the text that is embedded.
        strategy: in place (parallel named vector), blue-green (new collection) or re-embed (the same
            vector name, overwritten point by point; ``embedding_version`` says which model a point holds).
        cutover_threshold: coverage (0-1) needed before cutover, unless forced.
        query_threshold: coverage (0-1) at which queries move to the target before cutover; ``None``
            keeps them on the source until cutover.
        rollback_window: seconds after cutover during which finalize is refused, unless forced.
        query_mode: ``routed`` (search one vector, chosen by the routing) or ``mixed`` (before cutover,
            rescore candidates of both vectors in the target space; see :mod:`lattice_qdrant.mixed`).
        missing_policy: in mixed mode, what to do with candidates lacking the target vector: ``embed``
            them on the fly, or keep their ``source_order``.
        read_repair: in mixed mode, write the vectors embedded on the fly back.
        oversample: in mixed mode, each search gathers ``limit * oversample`` candidates.
        compare_margin: if set, cutover is refused while the last shadow comparison shows the target's
            recall more than this below the source's (unless forced).
        target_collection: blue-green: the new collection holding the target vectors.
        alias: blue-green: the alias readers query through; cutover moves it to ``target_collection``,
            rollback moves it back.
        copy_source_vector: blue-green: also copy the source vector into ``target_collection``.
        backup_policy: ``always`` backs the source vectors up before finalize drops them (restorable with
            :meth:`~lattice_qdrant.coordinator.Migration.restore`); ``never`` does not. A re-embed always
            backs them up at start (the backup is its only way back), so it refuses ``never``.
        created_at: unix time the plan was made.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    collection: str = Field(min_length=1)
    source: ModelSpec
    target: ModelSpec
    source_vector: str
    target_vector: str
    text_field: str = Field(default="text", min_length=1)
    strategy: Strategy = Strategy.IN_PLACE
    cutover_threshold: float = Field(default=0.99, ge=0.0, le=1.0)
    query_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    rollback_window: float = Field(default=86400.0, ge=0.0)
    query_mode: Literal["routed", "mixed"] = "routed"
    missing_policy: Literal["embed", "source_order"] = "embed"
    read_repair: bool = False
    oversample: int = Field(default=4, ge=1, le=100)
    compare_margin: float | None = Field(default=None, ge=0.0, le=1.0)
    target_collection: str | None = None
    alias: str | None = None
    copy_source_vector: bool = False
    backup_policy: Literal["always", "never"] = "always"
    created_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _check(self) -> MigrationPlan:
        if self.strategy == Strategy.REEMBED:
            self._check_reembed()
        elif self.strategy == Strategy.BLUE_GREEN:
            if not self.target_collection or self.target_collection == self.collection:
                raise ValueError("a blue-green plan needs a target_collection other than the collection")
            if self.alias in (self.collection, self.target_collection):
                raise ValueError(f"the alias {self.alias!r} must not be a collection's own name")
            if self.copy_source_vector and self.source_vector == self.target_vector:
                raise ValueError(
                    "copy_source_vector needs distinct source and target vector names in the new collection"
                )
        elif not self.target_vector:
            raise ValueError("an in-place migration needs a name for the target vector")
        elif self.source_vector == self.target_vector:
            raise ValueError(
                f"source_vector and target_vector are both {self.source_vector!r}; an in-place "
                "migration needs a new vector name for the target"
            )
        if self.source.model_id == self.target.model_id and self.source.version == self.target.version:
            raise ValueError(
                f"source and target are the same model ({self.source.qualified_id}); "
                "register the target under a new version"
            )
        return self

    def _check_reembed(self) -> None:
        if self.target_vector != self.source_vector:
            raise ValueError(
                f"a re-embed overwrites the source vector under its own name: target_vector must be "
                f"{self.source_vector!r} (or left out), not {self.target_vector!r}; to keep both vectors "
                "use the in_place strategy"
            )
        source, target = self.source, self.target
        if source.dimension != target.dimension or source.distance != target.distance:
            raise ValueError(
                f"a re-embed keeps the collection's vector config, so the target must be "
                f"{source.dimension}-d {source.distance.value} like the source, but "
                f"{target.qualified_id} is {target.dimension}-d {target.distance.value}; use the "
                "blue_green strategy (a new collection) for another dimension or distance"
            )
        if self.backup_policy == "never":
            raise ValueError(
                "a re-embed overwrites the source vectors, and its backup is the only way back: "
                "backup_policy 'never' is refused for the reembed strategy"
            )
        if self.target_collection or self.alias or self.copy_source_vector:
            raise ValueError(
                "target_collection, alias and copy_source_vector belong to the blue_green strategy"
            )

    @property
    def reembed(self) -> bool:
        """Whether the target vectors overwrite the source vectors under the same name (a re-embed)."""
        return self.strategy == Strategy.REEMBED

    @property
    def blue_green(self) -> bool:
        """Whether the target vectors live in a new collection (blue-green) rather than in place."""
        return self.strategy == Strategy.BLUE_GREEN

    @property
    def data_collection(self) -> str:
        """The collection holding the target vectors (the backfill's collection)."""
        return self.target_collection if self.blue_green and self.target_collection else self.collection

    @property
    def policy(self) -> Policy:
        """The state machine's view of the plan's thresholds and window."""
        return Policy(
            cutover_threshold=self.cutover_threshold,
            query_threshold=self.query_threshold,
            rollback_window=self.rollback_window,
        )

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe form for the control collection."""
        return self.model_dump(mode="json")

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> MigrationPlan:
        """Inverse of :meth:`to_payload`."""
        data = dict(data)
        for side in ("source", "target"):
            if isinstance(data.get(side), dict):
                data[side] = ModelSpec.from_payload(data[side])
        return cls.model_validate(data)
