"""A/B planning: cross-checks against statsmodels, inverses, CUPED, and power by simulation."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize

from feedrank.errors import ConfigError, DataError
from feedrank.experiments.ab_metrics import cuped_adjust, fit_cuped, metric_from_logs, user_values
from feedrank.experiments.ab_plan import (
    ContinuousMetric,
    Design,
    ProportionMetric,
    control_size,
    minimum_detectable_effect,
    plan,
    power_at,
)
from feedrank.experiments.ab_report import plot_power_curves, render_plan
from tests.conftest import assert_chart

ALPHAS, POWERS, BASELINES, LIFTS, RATIOS = (
    (0.01, 0.05, 0.1),
    (0.8, 0.9),
    (0.01, 0.05, 0.3),
    (0.005, 0.02, 0.1),
    (1, 2),
)
GRID = list(itertools.product(ALPHAS, POWERS, BASELINES, LIFTS, RATIOS))


def design_for(alpha: float, power: float, ratio: float, **kw: object) -> Design:
    return Design(alpha=alpha, power=power, treatment_fraction=ratio / (1 + ratio), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("alpha", "power", "base", "lift", "ratio"), GRID)
def test_pooled_proportion_plan_reaches_statsmodels_power(
    alpha: float, power: float, base: float, lift: float, ratio: float
) -> None:
    design = design_for(alpha, power, ratio)
    n_c = control_size(ProportionMetric(base), lift, design)
    n_t = ratio * n_c
    # statsmodels: sample 1 = treatment (p1 = p2 + diff), sample 2 = control (nobs2 = ratio * nobs1).
    theirs = power_proportions_2indep(
        base * lift, base, n_t, ratio=n_c / n_t, alpha=alpha, return_results=False
    )
    assert theirs == pytest.approx(power, abs=1e-7)
    # And the power function itself agrees away from the solution.
    assert power_at(ProportionMetric(base), lift, n_c / 3, design) == pytest.approx(
        power_proportions_2indep(
            base * lift, base, n_t / 3, ratio=1 / ratio, alpha=alpha, return_results=False
        ),
        abs=1e-10,
    )


@pytest.mark.parametrize(("alpha", "power", "base", "lift", "ratio"), GRID)
def test_arcsine_proportion_sample_size_equals_normal_ind_power(
    alpha: float, power: float, base: float, lift: float, ratio: float
) -> None:
    n_c = control_size(ProportionMetric(base, method="arcsine"), lift, design_for(alpha, power, ratio))
    h = abs(proportion_effectsize(base * (1 + lift), base))
    theirs = NormalIndPower().solve_power(effect_size=h, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    assert n_c == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize(
    ("alpha", "power", "lift", "ratio"), list(itertools.product(ALPHAS, POWERS, LIFTS, RATIOS))
)
def test_continuous_sample_size_equals_statsmodels(
    alpha: float, power: float, lift: float, ratio: float
) -> None:
    metric = ContinuousMetric(mean=40.0, sd=90.0, variance_reduction=0.3)
    n_c = control_size(metric, lift, design_for(alpha, power, ratio))
    effect_size = 40.0 * lift / (90.0 * math.sqrt(0.7))
    z_n = NormalIndPower().solve_power(
        effect_size=effect_size, nobs1=None, alpha=alpha, power=power, ratio=ratio
    )
    t_n = TTestIndPower().solve_power(
        effect_size=effect_size, nobs1=None, alpha=alpha, power=power, ratio=ratio
    )
    assert n_c == pytest.approx(z_n, rel=1e-6)
    assert 0 < t_n - n_c < 3  # the t-test needs about z²/4 more units (Guenther 1981)


def test_one_sided_matches_statsmodels_larger() -> None:
    design = Design(two_sided=False, alpha=0.05, power=0.9)
    n_c = control_size(ProportionMetric(0.05), 0.02, design)
    theirs = power_proportions_2indep(
        0.001, 0.05, n_c, alpha=0.05, alternative="larger", return_results=False
    )
    assert theirs == pytest.approx(0.9, abs=1e-7)


@pytest.mark.parametrize(
    "metric",
    [ProportionMetric(0.05), ProportionMetric(0.3, method="arcsine"), ContinuousMetric(10.0, 25.0, 0.2)],
)
@pytest.mark.parametrize("direction", [1, -1])
def test_mde_inverts_sample_size(metric: ProportionMetric | ContinuousMetric, direction: int) -> None:
    design = Design(alpha=0.05, power=0.8)
    n_c = control_size(metric, direction * 0.03, design)
    assert minimum_detectable_effect(metric, n_c, design, direction=direction) == pytest.approx(
        direction * 0.03
    )


def test_plan_answers_each_question_consistently() -> None:
    metric, design = (
        ProportionMetric(0.1),
        Design(units_per_day=20_000, traffic_share=0.5, treatment_fraction=0.5),
    )
    by_effect = plan(metric, design, effect=0.05)
    assert by_effect.solved_for == "sample_size" and by_effect.power >= 0.8
    assert by_effect.n_control == math.ceil(control_size(metric, 0.05, design))
    assert by_effect.days == pytest.approx(by_effect.n_total / 10_000)
    by_days = plan(metric, design, days=by_effect.days)
    assert by_days.solved_for == "mde" and by_days.effect_relative == pytest.approx(0.05, rel=1e-3)
    by_both = plan(metric, design, effect=0.05, n_control=by_effect.n_control // 2)
    assert by_both.solved_for == "power" and 0.3 < by_both.power < 0.6
    assert by_effect.effect_absolute == pytest.approx(0.005)


def test_unequal_split_needs_more_units_in_total() -> None:
    metric = ProportionMetric(0.05)
    even = plan(metric, Design(treatment_fraction=0.5), effect=0.1)
    uneven = plan(metric, Design(treatment_fraction=0.2), effect=0.1)
    assert uneven.n_treatment < uneven.n_control
    assert uneven.n_total > 1.4 * even.n_total  # 1/(f(1-f)): 6.25 vs 4


def test_issue_example_half_percent_lift() -> None:
    """0.5 % relative lift, 80 % power, 5 % two-sided: n = 2 (z_.975 + z_.8)² / (0.005 / cv)² per arm."""
    metric = ContinuousMetric(mean=20.0, sd=60.0)
    result = plan(metric, Design(units_per_day=50_000, traffic_share=0.5), effect=0.005)
    by_hand = 2 * (stats.norm.isf(0.025) + stats.norm.isf(0.2)) ** 2 * (60.0 / (0.005 * 20.0)) ** 2
    assert result.n_control == pytest.approx(by_hand, rel=1e-4)
    assert result.days == pytest.approx(2 * result.n_control / 25_000)


def test_cuped_plan_shrinks_by_one_minus_rho_squared() -> None:
    result = plan(
        ContinuousMetric(20.0, 60.0, variance_reduction=0.4), Design(units_per_day=1e5), effect=0.02
    )
    assert result.without_cuped is not None
    assert result.n_control / result.without_cuped.n_control == pytest.approx(0.6, rel=1e-4)
    text = render_plan(result)
    assert "with CUPED" in text and "without CUPED" in text and f"{result.n_control:,d}" in text


def test_bad_designs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        Design(alpha=1.5)
    with pytest.raises(ConfigError, match="units_per_day"):
        plan(ProportionMetric(0.1), Design(), days=7)
    with pytest.raises(ConfigError, match="outside"):
        plan(ProportionMetric(0.9), Design(relative=False), effect=0.2)
    with pytest.raises(ConfigError, match="baseline"):
        ProportionMetric(0.0)


@settings(max_examples=60, deadline=None)
@given(
    base=st.floats(0.005, 0.5),
    lift=st.floats(0.01, 0.5),
    n=st.floats(100, 1e6),
    method=st.sampled_from(["pooled", "arcsine"]),
)
def test_power_grows_with_n_and_effect_and_stays_in_range(
    base: float, lift: float, n: float, method: str
) -> None:
    metric, design = ProportionMetric(base, method=method), Design()  # type: ignore[arg-type]
    p = power_at(metric, lift, n, design)
    assert design.alpha / 2 < p <= 1.0
    assert power_at(metric, lift, 2 * n, design) >= p - 1e-12
    assert power_at(metric, 1.5 * lift, n, design) >= p - 1e-12


def test_planned_proportion_test_has_its_power_by_simulation() -> None:
    """2,000 simulated experiments at the planned n: the pooled z-test rejects about 80 % of the time
    (±3 points; the Monte Carlo sd is 0.9 points) and about 5 % under H0."""
    rng = np.random.default_rng(0)
    base, lift, design = 0.08, 0.05, Design(treatment_fraction=2 / 3)
    result = plan(ProportionMetric(base), design, effect=lift)

    def rejections(p_t: float) -> float:
        x_c = rng.binomial(result.n_control, base, 2000)
        x_t = rng.binomial(result.n_treatment, p_t, 2000)
        pooled = (x_c + x_t) / result.n_total
        se = np.sqrt(pooled * (1 - pooled) * (1 / result.n_control + 1 / result.n_treatment))
        z = (x_t / result.n_treatment - x_c / result.n_control) / se
        return float(np.mean(np.abs(z) > stats.norm.isf(0.025)))

    assert rejections(base * (1 + lift)) == pytest.approx(0.8, abs=0.03)
    assert rejections(base) == pytest.approx(0.05, abs=0.015)


def test_planned_cuped_test_has_its_power_by_simulation() -> None:
    """Correlated pre/post data (ρ = 0.7): planning with variance_reduction ρ² and analysing the CUPED
    adjusted outcome gives about 80 % power with about half the units of the raw plan."""
    rng = np.random.default_rng(1)
    rho, sd, delta = 0.7, 3.0, 0.25
    result = plan(ContinuousMetric(10.0, sd, rho**2), Design(relative=False), effect=delta)
    assert result.without_cuped is not None and result.n_control < 0.55 * result.without_cuped.n_control
    n, sims = result.n_control, 2000
    x = rng.standard_normal((sims, 2, n))
    y = 10.0 + sd * (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((sims, 2, n)))
    y[:, 1] += delta
    xf, yf = x.reshape(sims, -1), y.reshape(sims, -1)
    xc = xf - xf.mean(axis=1, keepdims=True)
    theta = (xc * (yf - yf.mean(axis=1, keepdims=True))).sum(axis=1) / (xc**2).sum(axis=1)
    adjusted = (yf - theta[:, None] * xc).reshape(sims, 2, n)
    diff = adjusted[:, 1].mean(axis=1) - adjusted[:, 0].mean(axis=1)
    se = np.sqrt(adjusted[:, 0].var(axis=1, ddof=1) / n + adjusted[:, 1].var(axis=1, ddof=1) / n)
    assert float(np.mean(np.abs(diff / se) > stats.norm.isf(0.025))) == pytest.approx(0.8, abs=0.03)


def test_cuped_reduction_is_rho_squared_on_synthetic_data() -> None:
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 10.0, 50_000)
    y = 0.8 * x + rng.normal(0.0, 12.0, x.size)
    rho = float(np.corrcoef(x, y)[0, 1])
    fit = fit_cuped(y, x)
    assert fit.variance_reduction == pytest.approx(rho**2, rel=1e-9)
    assert fit.theta == pytest.approx(0.8, abs=0.02)
    adjusted = cuped_adjust(y, x, fit.theta)
    assert adjusted.mean() == pytest.approx(y.mean())
    assert adjusted.var() / y.var() == pytest.approx(1 - rho**2, rel=1e-6)


def _log(rows: list[tuple[str, float, bool, float]]) -> pl.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "ts": [start + timedelta(days=r[1]) for r in rows],
            "clicked": [r[2] for r in rows],
            "dwell_s": [r[3] for r in rows],
        }
    )


def test_user_metrics_and_cuped_from_logs_by_hand() -> None:
    # The log ends at day 3.9: window = days [1.9, 3.9] (a, b, c), pre-period = [-0.1, 1.9) (a, b).
    rows = [("a", 0.5, True, 30.0), ("b", 1.0, True, 10.0), ("b", 1.5, False, 0.0)]
    rows += [("a", 2.5, True, 40.0), ("a", 3.0, False, 0.0), ("b", 3.5, True, 20.0), ("c", 3.9, False, 0.0)]
    log = _log(rows)
    assert user_values(log, "ctr", 1.0).get_column("value").to_list() == [2 / 3, 2 / 3, 0.0]
    metric, cuped = metric_from_logs(log, "dwell_per_day", post_days=2.0 - 1e-9, pre_days=2.0)
    y, x = np.array([20.0, 10.0, 0.0]), np.array([15.0, 5.0, 0.0])  # c: no pre-period rows -> X = 0
    assert metric.mean == pytest.approx(y.mean(), rel=1e-6) and metric.sd == pytest.approx(
        y.std(ddof=1), rel=1e-6
    )
    assert cuped is not None and cuped.num_units == 3 and cuped.num_with_pre == 2
    assert cuped.rho == pytest.approx(np.corrcoef(y, x)[0, 1], rel=1e-6)
    assert metric.variance_reduction == pytest.approx(min(cuped.variance_reduction, 0.999))
    with pytest.raises(DataError, match="unknown user metric"):
        user_values(log, "nope", 1.0)  # type: ignore[arg-type]


def test_power_curves_png(tmp_path: Path) -> None:
    design = Design(units_per_day=50_000, traffic_share=0.5)
    out = plot_power_curves(ContinuousMetric(20.0, 60.0, 0.2), design, tmp_path / "sub" / "power.png")
    assert_chart(out)
    with pytest.raises(ConfigError):
        plot_power_curves(ProportionMetric(0.05), Design(), tmp_path / "x.png")
