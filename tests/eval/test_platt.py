"""Platt scaling recovers a known logit distortion and refuses one-class data."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.eval.calibrate import fit_platt
from feedrank.eval.calibration import calibration_ratio


def test_platt_recovers_the_distortion_of_sampled_negatives() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-3.0, 1.5, 200_000)
    labels = (rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(np.float64)
    seen = (true_logit + 1.2) / 0.8  # what a model trained on a different base rate would output
    a, b = fit_platt(seen, labels)
    assert a == pytest.approx(0.8, abs=0.03) and b == pytest.approx(-1.2, abs=0.08)
    calibrated = 1 / (1 + np.exp(-(a * seen + b)))
    assert calibration_ratio(calibrated, labels) == pytest.approx(1.0, abs=0.02)
    assert abs(calibration_ratio(1 / (1 + np.exp(-seen)), labels) - 1) > 0.3  # it was off before


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="both clicked and unclicked"):
        fit_platt(np.zeros(5), np.ones(5))
