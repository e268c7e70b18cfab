"""The lifecycle's gates are pure: every refusal is decided from what was read, without a collection."""

from __future__ import annotations

import pytest

import lattice_qdrant as lq
from lattice_qdrant import gates
from lattice_qdrant.state import MigrationState, Phase, Status


def test_a_reembed_finalizes_only_with_every_point_on_the_target() -> None:
    gates.check_reembed_finalize("docs", 0)
    refusal = r"3 point\(s\) of 'docs' still hold the source"
    with pytest.raises(lq.ReembedIncompleteError, match=refusal) as info:
        gates.check_reembed_finalize("docs", 3)
    assert (info.value.collection, info.value.missing) == ("docs", 3)
    # callers that caught the refusal before it had its own class still do
    assert isinstance(info.value, lq.RollbackWindowOpenError) and info.value.seconds_left is None


@pytest.mark.parametrize(
    ("status", "phase", "tail"),
    [
        (Status.IN_PROGRESS, Phase.MIGRATING, "restore them from the backup first .*which also cancels"),
        (Status.CANCELLED, Phase.STABLE, r"from the backup \(lattice-qdrant.*finishes the cancel"),
    ],
)
def test_a_reembed_cancels_only_while_no_point_holds_the_target(
    status: Status, phase: Phase, tail: str
) -> None:
    state = MigrationState(status=status, phase=phase)
    gates.check_reembed_cancel(state, "docs", 0)
    with pytest.raises(lq.ReembedCancelRefusedError, match=f"8 point\\(s\\) hold the target.*{tail}") as info:
        gates.check_reembed_cancel(state, "docs", 8)
    assert (info.value.collection, info.value.held, info.value.event) == ("docs", 8, "cancel")
    assert isinstance(info.value, lq.InvalidTransitionError)


def test_the_quality_gate_lives_with_the_other_gates() -> None:
    from lattice_qdrant import compare

    assert compare.quality_gate is gates.quality_gate and compare.RECORD_KIND == gates.RECORD_KIND
    assert gates.quality_gate(None, None) is None
    assert "no shadow comparison" in (gates.quality_gate(None, 0.1) or "")
