"""The lifecycle's gates: pure decisions on whether cutover, finalize or cancel may go ahead.

Nothing here does I/O: each gate takes what was read (a recorded comparison, a coverage count, the state)
and returns a reason or raises the refusal, so every case is tested without a collection. The coordinator
(:class:`~lattice_qdrant.coordinator.Migration`) and the strategies read the data and ask the gates.

* :func:`quality_gate`: cutover against the last shadow comparison (the plan's ``compare_margin``); the
  comparison is recorded by :func:`lattice_qdrant.compare.record_comparison` under :data:`RECORD_KIND`.
* :func:`check_reembed_finalize`: a re-embed is finalized only with every point on the target
  (:class:`~lattice_qdrant.errors.ReembedIncompleteError`).
* :func:`check_reembed_cancel`: a re-embed is cancelled only while no point holds the target
  (:class:`~lattice_qdrant.errors.ReembedCancelRefusedError`); ``restore`` is its cancel otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import ReembedCancelRefusedError, ReembedIncompleteError
from .state import MigrationState, Status

__all__ = ["RECORD_KIND", "check_reembed_cancel", "check_reembed_finalize", "quality_gate"]

RECORD_KIND = "comparison"
"""Kind of the control record holding the latest comparison summary of a collection."""

_EPSILON = 1e-9


def quality_gate(
    summary: Mapping[str, Any] | None,
    margin: float | None,
    *,
    source: str | None = None,
    target: str | None = None,
) -> str | None:
    """Why cutover must be refused on the recorded comparison, or ``None`` when it may go ahead.

    Pure. The gate is off without a ``margin``. With one, cutover needs a recorded comparison of this
    migration's models (``source`` and ``target``, qualified ids, when given) with relevance labels, in
    which the target's recall is at most ``margin`` below the source's:
    ``target_recall >= source_recall - margin``.

    Args:
        summary: the recorded :meth:`~lattice_qdrant.compare.ComparisonReport.summary`, or ``None`` when
            none is recorded.
        margin: the plan's ``compare_margin`` (recall points, 0 to 1), or ``None``.
        source: the migration's source model, to reject a comparison of another migration.
        target: the migration's target model, likewise.

    Returns:
        ``None`` to allow cutover, otherwise the reason it is refused (a sentence naming what to run).
    """
    if margin is None:
        return None
    if summary is None:
        return "no shadow comparison is recorded: run lattice-qdrant compare first (with relevance labels)"
    ran = (summary.get("source"), summary.get("target"))
    if (source is not None and ran[0] != source) or (target is not None and ran[1] != target):
        return (
            f"the recorded comparison is of {ran[0]} -> {ran[1]}, not of this migration "
            f"({source} -> {target}): run lattice-qdrant compare again"
        )
    src, tgt = _number(summary.get("source_recall")), _number(summary.get("target_recall"))
    labelled = summary.get("labelled")
    if src is None or tgt is None or not isinstance(labelled, int) or labelled <= 0:
        return (
            "the comparison has no relevance labels, so it cannot judge recall: run "
            'lattice-qdrant compare with a queries file giving "relevant" ids, or with --sample N'
        )
    k = summary.get("k", "k")
    if tgt < src - margin - _EPSILON:
        return (
            f"in the comparison ({labelled} labelled queries) the target's recall@{k} is "
            f"{tgt:.3f}, {src - tgt:.3f} below the source's {src:.3f}, more than the margin of {margin:g}"
        )
    return None


def check_reembed_finalize(collection: str, missing: int) -> None:
    """Refuse to finalize a re-embed while ``missing`` points still hold the source model.

    Afterwards queries are plain target queries, and a point still holding the source vector would be
    compared across models; ``force`` does not override this.

    Raises:
        ReembedIncompleteError: ``missing`` is not zero.
    """
    if missing:
        raise ReembedIncompleteError(collection, missing)


def check_reembed_cancel(state: MigrationState, collection: str, held: int) -> None:
    """Refuse to cancel a re-embed while ``held`` points hold the target model (their source vectors are
    in the backup only).

    Raises:
        ReembedCancelRefusedError: ``held`` is not zero; the message names ``restore``.
    """
    if held:
        raise ReembedCancelRefusedError(
            state.label, collection, held, cancelled=state.status == Status.CANCELLED
        )


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
