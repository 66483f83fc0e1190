"""Calibration metrics: NE by hand, calibrated synthetic data, reliability bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedrank.eval.calibration import (
    calibration_metrics,
    calibration_ratio,
    expected_calibration_error,
    normalized_entropy,
    reliability_table,
)


def test_normalized_entropy_matches_the_hand_formula() -> None:
    probs = [0.9, 0.2, 0.6, 0.1, 0.3]
    labels = [1, 0, 1, 0, 1]
    cross = -sum(math.log(p) if y else math.log(1 - p) for p, y in zip(probs, labels, strict=True)) / 5
    rate = 3 / 5
    base = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    assert normalized_entropy(probs, labels) == pytest.approx(cross / base, rel=1e-12)


def test_predicting_the_base_rate_gives_ne_one() -> None:
    labels = np.array([1, 0, 0, 0] * 25)
    assert normalized_entropy(np.full(100, 0.25), labels) == pytest.approx(1.0)
    assert calibration_ratio(np.full(100, 0.25), labels) == pytest.approx(1.0)


def test_perfectly_calibrated_synthetic_data() -> None:
    rng = np.random.default_rng(0)
    probs = rng.beta(1.0, 8.0, 400_000)  # click-like: mostly small probabilities
    labels = (rng.random(probs.size) < probs).astype(np.float64)
    out = calibration_metrics(probs, labels)
    assert out["calibration_ratio"] == pytest.approx(1.0, abs=0.01)
    assert out["ece"] < 0.005
    assert out["ne"] < 1.0  # informative predictions beat the base rate
    table = reliability_table(probs, labels, num_bins=10, strategy="quantile")
    big = table.filter(table["count"] > 10_000)
    np.testing.assert_allclose(big["observed_rate"], big["mean_predicted"], atol=0.01)
    # Doubling every prediction shows as a ratio of 2 and a large ECE.
    doubled = calibration_metrics(np.minimum(2 * probs, 1.0), labels)
    assert doubled["calibration_ratio"] > 1.8 and doubled["ece"] > 0.05


def test_reliability_table_by_hand() -> None:
    table = reliability_table([0.05, 0.15, 0.95, 1.0, 0.1], [0, 1, 1, 1, 0], num_bins=10)
    assert table["bin"].to_list() == [0, 1, 9]  # 0.1 sits on an edge: it goes to the bin above
    assert table["count"].to_list() == [1, 2, 2]
    np.testing.assert_allclose(table["mean_predicted"], [0.05, 0.125, 0.975])
    np.testing.assert_allclose(table["observed_rate"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(table["lower"], [0.0, 0.1, 0.9])
    gaps = [0.05, 0.375, 0.025]
    assert expected_calibration_error(table) == pytest.approx((gaps[0] + 2 * gaps[1] + 2 * gaps[2]) / 5)


def test_quantile_bins_hold_equal_counts_and_constant_predictions_one_bin() -> None:
    rng = np.random.default_rng(1)
    table = reliability_table(rng.random(10_000), rng.integers(0, 2, 10_000), num_bins=4, strategy="quantile")
    assert table.height == 4
    assert max(abs(c - 2500) for c in table["count"].to_list()) <= 1
    single = reliability_table(np.full(50, 0.3), np.zeros(50), num_bins=5, strategy="quantile")
    assert single["count"].to_list() == [50]


@settings(max_examples=100, deadline=None)
@given(
    probs=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=50),
    seed=st.integers(0, 2**31),
)
def test_ne_is_non_negative_and_ece_in_unit_interval(probs: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, len(probs))
    labels[:2] = [0, 1]  # both outcomes, so NE is defined
    out = calibration_metrics(np.array(probs), labels)
    assert out["ne"] >= 0.0
    assert 0.0 <= out["ece"] <= 1.0
    assert out["calibration_ratio"] >= 0.0


def test_undefined_cases_are_nan() -> None:
    assert math.isnan(normalized_entropy([0.2, 0.3], [0, 0]))
    assert math.isnan(calibration_ratio([0.2, 0.3], [0, 0]))


@pytest.mark.parametrize(
    ("probs", "labels"), [([1.2], [1]), ([np.nan], [0]), ([0.5], [2]), ([0.5, 0.1], [1])]
)
def test_bad_input_is_rejected(probs: list[float], labels: list[int]) -> None:
    with pytest.raises(ValueError):
        calibration_metrics(probs, labels)
