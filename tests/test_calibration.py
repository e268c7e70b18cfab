"""The score calibration (pure): quantile matching of two models' score distributions, its direction, its
validation and its record."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lattice_qdrant.calibration import (
    LEVELS,
    MIN_SCORES,
    ScoreCalibration,
    check_threshold,
    passes,
    score_range,
    target_threshold,
)
from lattice_qdrant.errors import CalibrationError, LatticeError, ScoreThresholdError, VectorValidationError
from lattice_qdrant.spec import Distance, ModelSpec


def spec(model_id: str, distance: Distance = Distance.COSINE) -> ModelSpec:
    return ModelSpec(model_id=model_id, version=1, dimension=8, distance=distance, name=f"hash:{model_id}")


SOURCE, TARGET = spec("old"), spec("new")


def calibrate(
    source_scores: object,
    target_scores: object,
    source: ModelSpec = SOURCE,
    target: ModelSpec = TARGET,
    **kwargs: object,
) -> ScoreCalibration:
    return ScoreCalibration.measure(
        source_scores,  # type: ignore[arg-type]
        target_scores,  # type: ignore[arg-type]
        source=source,
        target=target,
        queries=50,
        k=10,
        method="test",
        **kwargs,  # type: ignore[arg-type]
    )


def kept(scores: np.ndarray, threshold: float, distance: Distance) -> float:
    return float(np.mean([passes(float(s), threshold, distance) for s in scores]))


RNG = np.random.default_rng(7)
COSINE_LOW = np.clip(RNG.normal(0.35, 0.08, 2000), -1, 1)  # a bag of words' top-10 cosines
COSINE_HIGH = np.clip(RNG.normal(0.62, 0.05, 2000), -1, 1)  # a sentence model's


# --------------------------------------------------------------------------- the translation


def test_a_threshold_keeps_the_same_fraction_of_results_in_the_target_space() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    for threshold in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        found = cal.translate(threshold)
        assert not found.clamped
        before = kept(COSINE_LOW, threshold, Distance.COSINE)
        assert kept(COSINE_HIGH, found.target, Distance.COSINE) == pytest.approx(before, abs=0.015)
        assert found.kept == pytest.approx(before, abs=0.015)
    # the untranslated threshold would keep almost everything on the target's scale
    assert kept(COSINE_HIGH, 0.45, Distance.COSINE) > 0.99
    assert kept(COSINE_LOW, 0.45, Distance.COSINE) < 0.15


def test_the_translation_is_monotone() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    grid = np.linspace(-1, 1, 801)
    mapped = [cal.translate(float(t)).target for t in grid]
    assert all(b >= a for a, b in itertools.pairwise(mapped))


@pytest.mark.parametrize("distance", list(Distance))
def test_the_same_distribution_translates_to_itself(distance: Distance) -> None:
    scores = np.abs(RNG.normal(0.4, 0.1, 500))
    cal = calibrate(scores, scores, spec("a", distance), spec("b", distance))
    for q in np.linspace(0.01, 0.99, 41):
        t = float(np.quantile(scores, q))
        assert cal.translate(t).target == pytest.approx(t, abs=1e-12)


def test_a_round_trip_through_the_inverse_returns_the_threshold() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    back = cal.inverse()
    assert (back.source, back.target) == (cal.target, cal.source)
    for t in np.linspace(float(COSINE_LOW.min()), float(COSINE_LOW.max()), 57):
        assert back.translate(cal.translate(float(t)).target).target == pytest.approx(float(t), abs=1e-9)


def test_a_similarity_maps_onto_a_distance_the_right_way_round() -> None:
    """Cosine keeps the scores above the threshold, Euclid the distances below it: the best 20% stay the
    best 20%."""
    euclid = np.sqrt(2 - 2 * COSINE_HIGH)  # the same vectors scored by distance (normalised)
    cal = calibrate(COSINE_LOW, euclid, SOURCE, spec("new", Distance.EUCLID))
    t = float(np.quantile(COSINE_LOW, 0.8))
    found = cal.translate(t)
    assert kept(euclid, found.target, Distance.EUCLID) == pytest.approx(0.2, abs=0.015)
    assert found.kept == pytest.approx(0.2, abs=0.015)
    # a stricter cosine threshold is a smaller distance
    assert cal.translate(t + 0.05).target < found.target
    # and back again
    assert cal.inverse().translate(found.target).target == pytest.approx(t, abs=1e-9)


def test_a_distance_maps_onto_a_distance() -> None:
    a, b = np.abs(RNG.normal(3.0, 0.5, 800)), np.abs(RNG.normal(10.0, 2.0, 800))
    cal = calibrate(a, b, spec("a", Distance.MANHATTAN), spec("b", Distance.EUCLID))
    t = float(np.quantile(a, 0.3))
    found = cal.translate(t)
    assert kept(b, found.target, Distance.EUCLID) == pytest.approx(0.3, abs=0.015)
    assert found.target == pytest.approx(float(np.quantile(b, 0.3)), rel=0.02)


def test_thresholds_beyond_the_sampled_scores_are_clamped_and_flagged() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    high, low = cal.translate(0.99), cal.translate(-0.9)
    assert high.clamped and high.target == cal.target_quantiles[-1] and high.kept == 0.0
    assert low.clamped and low.target == cal.target_quantiles[0] and low.kept == 1.0
    assert not cal.translate(float(np.median(COSINE_LOW))).clamped


def test_tied_scores_keep_every_tie() -> None:
    """A threshold at a score many results share keeps all of them, as Qdrant does; the translation keeps
    the same fraction."""
    source = np.array([0.2] * 60 + [0.5] * 40)  # 40% of the scores are exactly 0.5
    target = np.linspace(0.3, 0.9, 100)
    cal = calibrate(source, target)
    found = cal.translate(0.5)
    assert found.kept == pytest.approx(0.4, abs=0.011)
    assert kept(target, found.target, Distance.COSINE) == pytest.approx(0.4, abs=0.011)


def test_a_single_valued_distribution_still_translates() -> None:
    cal = calibrate(np.full(200, 0.5), np.linspace(0.1, 0.9, 200))
    assert cal.translate(0.5).target == pytest.approx(0.1)
    assert cal.translate(0.6).clamped


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("distance", "value"),
    [
        (Distance.COSINE, 1.5),
        (Distance.COSINE, -1.01),
        (Distance.EUCLID, -0.1),
        (Distance.MANHATTAN, -3),
        (Distance.DOT, math.inf),
        (Distance.COSINE, math.nan),
        (Distance.DOT, math.nan),
        (Distance.COSINE, "0.5"),
        (Distance.COSINE, True),
    ],
)
def test_a_threshold_no_distance_can_give_is_refused(distance: Distance, value: object) -> None:
    with pytest.raises(ScoreThresholdError) as caught:
        check_threshold(value, distance)
    message = str(caught.value)
    assert repr(value) in message and distance.value in message
    assert isinstance(caught.value, VectorValidationError) and isinstance(caught.value, ValueError)
    assert (caught.value.low, caught.value.high) == score_range(distance)


def test_the_ranges_of_the_distances() -> None:
    assert score_range(Distance.COSINE) == (-1.0, 1.0)
    assert score_range("Euclid") == (0.0, math.inf)
    assert score_range(Distance.MANHATTAN) == (0.0, math.inf)
    assert score_range(Distance.DOT) == (-math.inf, math.inf)
    with pytest.raises(ScoreThresholdError, match=r"Cosine scores lie in \[-1, 1\]"):
        check_threshold(2, "Cosine")
    with pytest.raises(ScoreThresholdError, match=r"Euclid scores lie in \[0, inf\)"):
        check_threshold(-2, "Euclid")
    valid = ((Distance.COSINE, 1), (Distance.COSINE, -1.0), (Distance.EUCLID, 0), (Distance.DOT, -7))
    for distance, value in valid:
        assert check_threshold(value, distance) == float(value)


def test_translate_checks_the_threshold_against_the_source_distance() -> None:
    cal = calibrate(COSINE_LOW, np.sqrt(2 - 2 * COSINE_HIGH), SOURCE, spec("new", Distance.EUCLID))
    with pytest.raises(ScoreThresholdError, match="Cosine"):
        cal.translate(1.2)
    with pytest.raises(ScoreThresholdError):
        cal.translate(float("nan"))


@pytest.mark.parametrize("n", [0, 1, MIN_SCORES - 1])
def test_too_few_scores_make_no_calibration(n: int) -> None:
    with pytest.raises(CalibrationError, match=f"at least {MIN_SCORES} source scores, got {n}") as caught:
        calibrate(COSINE_LOW[:n], COSINE_HIGH)
    assert "--sample" in str(caught.value) and isinstance(caught.value, LatticeError)
    with pytest.raises(CalibrationError, match=f"target scores, got {n}"):
        calibrate(COSINE_LOW, COSINE_HIGH[:n])
    assert calibrate(COSINE_LOW[:MIN_SCORES], COSINE_HIGH[:MIN_SCORES]).source_count == MIN_SCORES


def test_non_finite_scores_make_no_calibration() -> None:
    with pytest.raises(CalibrationError, match="non-finite"):
        calibrate(np.append(COSINE_LOW, np.nan), COSINE_HIGH)


def test_quantiles_must_be_ascending_and_matched() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    payload = cal.to_payload()
    with pytest.raises(CalibrationError, match="ascending"):
        ScoreCalibration.from_payload({**payload, "source_quantiles": payload["source_quantiles"][::-1]})
    with pytest.raises(CalibrationError, match="same number"):
        ScoreCalibration.from_payload({**payload, "target_quantiles": payload["target_quantiles"][:10]})


# --------------------------------------------------------------------------- the record


def test_the_record_round_trips_and_tolerates_new_keys() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH, coverage=0.5, measured_at=123.0)
    payload = cal.to_payload()
    assert len(payload["source_quantiles"]) == LEVELS
    assert ScoreCalibration.from_payload(payload) == cal
    assert ScoreCalibration.from_payload({**payload, "added_later": 1}) == cal
    assert ScoreCalibration.from_payload({**payload, "coverage": None}).coverage is None
    with pytest.raises(CalibrationError, match="unreadable"):
        ScoreCalibration.from_payload({k: v for k, v in payload.items() if k != "k"})
    assert "test: 50 queries x top 10" in cal.describe() and "coverage 50%" in cal.describe()


# --------------------------------------------------------------------------- the decision


def test_the_decision_without_a_calibration_sends_the_threshold_and_warns() -> None:
    found = target_threshold(0.4, collection="docs", source=SOURCE, target=TARGET, calibration=None)
    assert (found.value, found.translation, found.warning) == (0.4, None, "uncalibrated")
    assert "lattice-qdrant calibrate docs" in found.message and "translate_thresholds=False" in found.message


def test_the_decision_with_a_calibration_translates() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    found = target_threshold(0.4, collection="docs", source=SOURCE, target=TARGET, calibration=cal)
    assert found.warning is None and found.translation is not None
    assert found.value == cal.translate(0.4).target > 0.6
    clamped = target_threshold(0.99, collection="docs", source=SOURCE, target=TARGET, calibration=cal)
    assert clamped.warning == "clamped" and "outside" in clamped.message


def test_a_calibration_of_other_models_is_not_used() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH, spec("other"), TARGET)
    found = target_threshold(0.4, collection="docs", source=SOURCE, target=TARGET, calibration=cal)
    assert (found.value, found.warning) == (0.4, "uncalibrated")


def test_translation_off_sends_the_threshold_as_the_targets() -> None:
    cal = calibrate(COSINE_LOW, COSINE_HIGH)
    euclid = spec("new", Distance.EUCLID)
    found = target_threshold(
        0.4, collection="docs", source=SOURCE, target=euclid, calibration=cal, translate=False
    )
    assert (found.value, found.warning) == (0.4, None)
    with pytest.raises(ScoreThresholdError, match="Euclid"):
        target_threshold(
            -0.4, collection="d", source=SOURCE, target=euclid, calibration=None, translate=False
        )
    with pytest.raises(ScoreThresholdError, match="Cosine"):
        target_threshold(1.4, collection="d", source=SOURCE, target=euclid, calibration=None)


@pytest.mark.parametrize("seed", range(20))
def test_random_distributions_translate_monotonically_and_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    distances = list(Distance)
    a_distance, b_distance = distances[seed % 4], distances[(seed // 4) % 4]

    def draw(distance: Distance) -> np.ndarray:
        values = rng.gamma(rng.uniform(1, 5), rng.uniform(0.05, 0.5), int(rng.integers(MIN_SCORES, 3000)))
        # no ties: a clip to the cosine range would pile scores up at 1 (a tie is not invertible)
        return values / (1.01 * values.max()) if distance == Distance.COSINE else values

    a, b = draw(a_distance), draw(b_distance)
    cal = calibrate(a, b, spec("a", a_distance), spec("b", b_distance))
    grid = np.linspace(float(a.min()), float(a.max()), 97)
    mapped = np.array([cal.translate(float(t)).target for t in grid])
    steps = np.diff(mapped) if b_distance in (Distance.COSINE, Distance.DOT) else -np.diff(mapped)
    if a_distance in (Distance.EUCLID, Distance.MANHATTAN):
        steps = -steps  # a stricter source distance is a smaller one
    assert np.all(steps >= -1e-12)
    back = cal.inverse()
    for t in grid[1:-1]:
        assert back.translate(cal.translate(float(t)).target).target == pytest.approx(float(t), abs=1e-9)
