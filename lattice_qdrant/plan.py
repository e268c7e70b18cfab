"""The migration plan: what moves where, and the policy that governs the move.

A plan is written once when a migration is planned and stored with its state in the control collection;
every process routes by the same plan.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .options import Duration, documented
from .spec import ModelSpec
from .state import Policy

__all__ = ["EMBED_BUDGET", "TRAFFIC_QUEUE", "MigrationPlan", "PlanOptions", "PlanSettings", "Strategy"]

#: mixed mode's default embedding budget per query (``PlanSettings.embed_budget``)
EMBED_BUDGET = 0
#: the default bound of a collection's traffic queue (``PlanSettings.traffic_queue``)
TRAFFIC_QUEUE = 10_000


class Strategy(StrEnum):
    """How the target vectors are stored."""

    #: a parallel named vector in the same collection (Qdrant 1.18+)
    IN_PLACE = "in_place"
    #: a new collection and an alias switch (Qdrant 1.17+)
    BLUE_GREEN = "blue_green"
    #: the target vectors overwrite the source vectors under the same name, point by point, after a backup
    #: (Qdrant 1.17+, the unnamed vector too; same dimension and distance only)
    REEMBED = "reembed"


@documented
class PlanSettings(BaseModel):
    """The plan options whose defaults the configuration sets.

    :class:`~lattice_qdrant.config.Settings` inherits these fields, so each has a ``LATTICE_QDRANT_*``
    variable and a config-file key of its name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_field: str = Field(
        default="text", min_length=1, description="Payload field holding the text that is embedded."
    )
    cutover_threshold: float = Field(
        default=0.99, ge=0.0, le=1.0, description="Coverage (0-1) needed before cutover, unless forced."
    )
    query_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Coverage (0-1) at which queries move to the target before cutover (unset: they stay on "
        "the source until cutover).",
    )
    rollback_window: Duration = Field(
        default=86400.0,
        ge=0.0,
        description="Time after cutover during which finalize is refused, unless forced (seconds, or 90s, "
        "30m, 24h, 7d).",
    )
    compare_margin: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Refuse cutover (unless forced) while the last shadow comparison has the target's recall "
        "more than this (0-1) below the source's (unset: no gate).",
    )
    oversample: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Mixed mode: its source search gathers limit * oversample candidates, its target "
        "search the rest beyond the covered ones met, at least limit (deeper finds more of the points the "
        "target does not cover yet; each candidate adds its payload and vectors to the reply).",
    )
    embed_budget: int = Field(
        default=EMBED_BUDGET,
        ge=0,
        le=10_000,
        description="Mixed mode, missing_policy embed: how many candidates without the target vector a query "
        "embeds at most, the best by source rank first, in one pass with the query text (each costs about a "
        "query embedding of its length); the others are placed by the target scores of their source-space "
        "neighbours. A number above the candidates (2 * limit * oversample) embeds them all.",
    )
    traffic_queue: int = Field(
        default=TRAFFIC_QUEUE,
        ge=0,
        le=1_000_000,
        description="Mixed mode records, in the background, the candidates without the target vector its "
        "queries meet, up to this many per collection, in the control collection; the backfill embeds them "
        "first (0: record none).",
    )
    backup_policy: Literal["always", "never"] = Field(
        default="always",
        description="Whether finalize backs the source vectors up before dropping them (``always``; "
        "``restore`` puts them back) or not (``never``). A re-embed backs them up at start, its only way "
        "back, so it refuses ``never``.",
    )


@documented
class PlanOptions(PlanSettings):
    """Every option of a plan: what ``client.plan``, ``commands.plan`` and ``lattice-qdrant plan`` take
    besides the collection, the two models and the vector names."""

    strategy: Strategy = Field(
        default=Strategy.IN_PLACE,
        description="``in_place`` (a parallel named vector), ``blue_green`` (a new collection, an alias "
        "switch) or ``reembed`` (overwrite the same vector point by point after a backup; the payload stamp "
        "says which model a point holds).",
    )
    query_mode: Literal["routed", "mixed"] = Field(
        default="routed",
        description="``routed`` (search one vector, chosen by the routing) or ``mixed`` (before cutover, "
        "rescore candidates of both vectors in the target space).",
    )
    missing_policy: Literal["embed", "source_order"] = Field(
        default="embed",
        description="Mixed mode, candidates without the target vector: ``embed`` them on the fly, or keep "
        "their ``source_order``.",
    )
    read_repair: bool = Field(
        default=False, description="Mixed mode writes the vectors it embeds on the fly back."
    )
    target_collection: str | None = Field(
        default=None,
        description="blue_green: the new collection holding the target vectors (default: "
        "COLLECTION__TARGETVECTOR).",
    )
    alias: str | None = Field(
        default=None,
        description="blue_green: the alias readers query through; cutover moves it to the new collection, "
        "rollback moves it back.",
    )
    copy_source_vector: bool = Field(
        default=False, description="blue_green: keep the source vector in the new collection too."
    )


@documented
class MigrationPlan(PlanOptions):
    """A collection's move from ``source`` to ``target``: its :class:`PlanOptions` and what moves where."""

    collection: str = Field(min_length=1, description="The collection migrated.")
    source: ModelSpec = Field(description="The model whose vectors the collection holds now.")
    target: ModelSpec = Field(description="The model it moves to.")
    source_vector: str = Field(description="Named vector holding the source vectors.")
    target_vector: str = Field(description="Named vector the target vectors go to.")
    created_at: float = Field(default_factory=time.time, description="Unix time the plan was made.")

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
