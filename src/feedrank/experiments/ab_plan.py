"""A/B test planning: sample size, duration, minimum detectable effect (MDE) and power.

Two arms: control (n_c units) and treatment (n_t = r · n_c units, r = f / (1 - f) for a treatment
fraction f). An effect is the treatment minus control difference d, given relative to the baseline
(`Design.relative`, 0.005 = +0.5 %) or absolute. The test is a z-test; per control unit it has a
standard deviation s0 under H0 and s1 under H1, and with z = Φ⁻¹(1 - α/2) (two-sided) or
Φ⁻¹(1 - α) (one-sided, in the direction of the effect):

    power(n_c) = Φ((|d| √n_c - z s0) / s1) + Φ((-|d| √n_c - z s0) / s1)      (second term two-sided only)

Proportion metrics (CTR per user-day, a conversion rate), p_c = baseline, p_t = p_c + d:
- method "pooled" (default): the test as it is run, with the pooled rate p̄ = (p_c + r p_t)/(1 + r)
  under H0 and unpooled rates under H1: s0² = p̄(1 - p̄)(1 + 1/r), s1² = p_c(1 - p_c) + p_t(1 - p_t)/r.
  Identical to statsmodels `power_proportions_2indep` (treatment as its sample 1).
- method "arcsine": Cohen's h = 2 asin √p_t - 2 asin √p_c as d, s0² = s1² = 1 + 1/r. Identical to
  statsmodels `NormalIndPower` with `proportion_effectsize`.
Continuous metrics (seconds of dwell per user per day): s0² = s1² = σ² (1 - ρ²) (1 + 1/r), where
ρ² is the CUPED variance reduction (0 without CUPED); identical to `NormalIndPower` with effect size
d / (σ √(1 - ρ²)), and within one unit of `TTestIndPower` at planning sizes.

Sample size solves power(n_c) = target exactly (the closed form √n_c = (z s0 + z_β s1)/|d| ignores
the far tail and brackets the root); the MDE solves it for d. Duration = (n_c + n_t) /
(units_per_day · traffic_share) days, where units_per_day counts the randomization units that
reach the product per day (user-days for per-user-day metrics: see docs/experiments_planning.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from scipy import optimize, stats

from feedrank.errors import ConfigError

Method = Literal["pooled", "arcsine"]
SolvedFor = Literal["sample_size", "mde", "power"]


@dataclass(frozen=True)
class ProportionMetric:
    """A rate per unit: baseline = control rate in (0, 1)."""

    baseline: float
    method: Method = "pooled"
    name: str = "rate"

    def __post_init__(self) -> None:
        if not 0 < self.baseline < 1:
            raise ConfigError(f"{self.name}: baseline rate must be in (0, 1), got {self.baseline!r}")
        if self.method not in ("pooled", "arcsine"):
            raise ConfigError(f"{self.name}: method must be 'pooled' or 'arcsine', got {self.method!r}")


@dataclass(frozen=True)
class ContinuousMetric:
    """A mean per unit (e.g. dwell seconds per user per day): control mean, standard deviation per
    unit (same units), and the CUPED variance reduction ρ² in [0, 1) (0: no CUPED)."""

    mean: float
    sd: float
    variance_reduction: float = 0.0
    name: str = "metric"

    def __post_init__(self) -> None:
        if not self.sd > 0 or not math.isfinite(self.mean):
            raise ConfigError(f"{self.name}: needs a finite mean and sd > 0, got {self.mean!r}, {self.sd!r}")
        if not 0 <= self.variance_reduction < 1:
            raise ConfigError(
                f"{self.name}: variance_reduction must be in [0, 1), got {self.variance_reduction!r}"
            )

    @property
    def effective_sd(self) -> float:
        """Standard deviation of the (CUPED-adjusted) metric per unit."""
        return self.sd * math.sqrt(1.0 - self.variance_reduction)


Metric = ProportionMetric | ContinuousMetric


@dataclass(frozen=True)
class Design:
    """How the test is run. `treatment_fraction`: share of the experiment's units in treatment;
    `traffic_share`: share of all units that enter the experiment; `units_per_day`: randomization
    units reaching the product per day at 100 % (None: no durations)."""

    alpha: float = 0.05
    power: float = 0.8
    two_sided: bool = True
    relative: bool = True
    treatment_fraction: float = 0.5
    traffic_share: float = 1.0
    units_per_day: float | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "power", "treatment_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        if not 0 < self.traffic_share <= 1:
            raise ConfigError(f"traffic_share must be in (0, 1], got {self.traffic_share!r}")
        if self.units_per_day is not None and not self.units_per_day > 0:
            raise ConfigError(f"units_per_day must be positive, got {self.units_per_day!r}")

    @property
    def ratio(self) -> float:
        """n_treatment / n_control."""
        return self.treatment_fraction / (1.0 - self.treatment_fraction)

    @property
    def z_alpha(self) -> float:
        return float(stats.norm.isf(self.alpha / 2 if self.two_sided else self.alpha))

    def units_in_days(self, days: float) -> float:
        """Experiment units (both arms) collected in `days`."""
        if self.units_per_day is None:
            raise ConfigError("a duration needs units_per_day")
        return days * self.units_per_day * self.traffic_share


@dataclass(frozen=True)
class Plan:
    """One answered planning question; `without_cuped` answers it again with no variance reduction
    (continuous metrics with variance_reduction > 0 only)."""

    metric: Metric
    design: Design
    solved_for: SolvedFor
    effect_relative: float  # treatment vs control, fraction of the baseline
    effect_absolute: float  # metric units (rate points for proportions)
    power: float
    n_control: int
    n_treatment: int
    days: float | None
    without_cuped: Plan | None = None

    @property
    def n_total(self) -> int:
        return self.n_control + self.n_treatment


def _absolute(metric: Metric, effect: float, relative: bool) -> float:
    base = metric.baseline if isinstance(metric, ProportionMetric) else metric.mean
    return effect * base if relative else effect


def _stds(metric: Metric, diff: float, ratio: float) -> tuple[float, float, float]:
    """(effect on the test's scale, s0, s1) per control unit for an absolute difference `diff`."""
    if isinstance(metric, ContinuousMetric):
        s = metric.effective_sd * math.sqrt(1 + 1 / ratio)
        return diff, s, s
    pc, pt = metric.baseline, metric.baseline + diff
    if not 0 < pt < 1:
        raise ConfigError(f"{metric.name}: treatment rate {pt!r} is outside (0, 1)")
    if metric.method == "arcsine":
        h = 2 * math.asin(math.sqrt(pt)) - 2 * math.asin(math.sqrt(pc))
        return h, math.sqrt(1 + 1 / ratio), math.sqrt(1 + 1 / ratio)
    pooled = (pc + ratio * pt) / (1 + ratio)
    s0 = math.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio))
    return diff, s0, math.sqrt(pc * (1 - pc) + pt * (1 - pt) / ratio)


def power_at(metric: Metric, effect: float, n_control: float, design: Design) -> float:
    """Power of the test with n_control control units (and ratio · n_control treated) when the
    true effect is `effect` (relative or absolute as `design.relative` says)."""
    d, s0, s1 = _stds(metric, _absolute(metric, effect, design.relative), design.ratio)
    z, shift = design.z_alpha, abs(d) * math.sqrt(n_control)
    power = float(stats.norm.cdf((shift - z * s0) / s1))
    if design.two_sided:
        power += float(stats.norm.cdf((-shift - z * s0) / s1))
    return power


def control_size(metric: Metric, effect: float, design: Design) -> float:
    """Control units (not rounded) at which the test reaches `design.power` for `effect`."""
    d, s0, s1 = _stds(metric, _absolute(metric, effect, design.relative), design.ratio)
    if d == 0:
        raise ConfigError("the effect to detect must not be zero")
    closed = ((design.z_alpha * s0 + float(stats.norm.isf(1 - design.power)) * s1) / abs(d)) ** 2
    if not design.two_sided:
        return closed

    def gap(n: float) -> float:
        return power_at(metric, effect, n, design) - design.power

    # The far tail only adds power, so the root lies below the one-tail closed form.
    if gap(closed * 1e-6) >= 0:
        return closed * 1e-6
    return float(optimize.brentq(gap, closed * 1e-6, closed, xtol=1e-9 * closed, rtol=1e-13))


def minimum_detectable_effect(metric: Metric, n_control: float, design: Design, direction: int = 1) -> float:
    """Smallest effect (relative or absolute as `design.relative` says; sign = `direction`) that
    the test detects with `design.power` given n_control control units."""
    if direction not in (1, -1):
        raise ConfigError(f"direction must be 1 or -1, got {direction!r}")
    if isinstance(metric, ProportionMetric):
        room = 1 - metric.baseline if direction > 0 else metric.baseline  # p_t stays inside (0, 1)
        top = room / metric.baseline if design.relative else room
    else:
        top = 1e3 * metric.sd / (abs(metric.mean) if design.relative and metric.mean else 1.0)

    def gap(e: float) -> float:
        return power_at(metric, direction * e, n_control, design) - design.power

    top *= 1 - 1e-9
    if gap(top) < 0:
        raise ConfigError(f"{metric.name}: no effect is detectable with {n_control:.0f} control units")
    return direction * float(optimize.brentq(gap, top * 1e-12, top, xtol=1e-14, rtol=1e-12))


def plan(
    metric: Metric,
    design: Design,
    *,
    effect: float | None = None,
    n_control: int | None = None,
    days: float | None = None,
) -> Plan:
    """Answer one question: the sample size (give `effect`), the MDE (give `n_control` or `days`)
    or the power (give `effect` and `n_control` or `days`). Days need `design.units_per_day`."""
    if n_control is not None and days is not None:
        raise ConfigError("give n_control or days, not both")
    if days is not None:
        n_control = math.floor(design.units_in_days(days) * (1 - design.treatment_fraction))
    if n_control is not None and n_control < 2:
        raise ConfigError(f"n_control must be at least 2, got {n_control!r}")
    solved: SolvedFor
    if effect is None:
        if n_control is None:
            raise ConfigError("give the effect to detect, a sample size or a duration")
        solved, n_c, power = "mde", n_control, design.power
        effect = minimum_detectable_effect(metric, n_control, design)
    elif n_control is None:
        solved, n_c = "sample_size", math.ceil(control_size(metric, effect, design) - 1e-9)
        power = power_at(metric, effect, n_c, design)
    else:
        solved, n_c, power = "power", n_control, power_at(metric, effect, n_control, design)
    n_t = math.ceil(design.ratio * n_c - 1e-9)
    diff = _absolute(metric, effect, design.relative)
    base = metric.baseline if isinstance(metric, ProportionMetric) else metric.mean
    result = Plan(
        metric=metric,
        design=design,
        solved_for=solved,
        effect_relative=diff / base if base else math.nan,
        effect_absolute=diff,
        power=power,
        n_control=n_c,
        n_treatment=n_t,
        days=None if design.units_per_day is None else (n_c + n_t) / design.units_in_days(1.0),
    )
    if isinstance(metric, ContinuousMetric) and metric.variance_reduction > 0:
        raw = replace(metric, variance_reduction=0.0)
        given = None if solved == "mde" else effect
        again = plan(raw, design, effect=given, n_control=None if solved == "sample_size" else n_c)
        result = replace(result, without_cuped=again)
    return result
