"""Statistics and report of a simulated A/B test: lifts with CIs, p-values, MDE; offline/online agreement.

The user is the randomization unit, so every metric is a per-user value and the arms are compared
through user means, over users with at least one request (requests do not depend on the arm, so
this keeps the comparison unbiased):

- mean metrics (time spent, clicks, shares, hides, publishers seen, requests per user): Welch's
  t-test on m_T - m_C; lift = m_T / m_C - 1 with the delta-method CI of a ratio of independent
  means, se(lift) = sqrt(V_T / m_C² + m_T² V_C / m_C⁴), V = variance of an arm's mean (s² / n).
- ratio metrics (CTR = Σ clicks / Σ impressions of an arm): R = x̄ / ȳ over the arm's users has
  delta-method variance V = (s_x² - 2 R s_xy + R² s_y²) / (n ȳ²); a z-test on R_T - R_C and the
  same lift CI with these V.
- MDE: the relative lift detected with 80% power at α = 0.05 (two-sided), from the observed
  variances and user counts: (z_{1-α/2} + z_power) · sqrt(V_T + V_C) / m_C.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from feedrank.eval.diversity import gini
from feedrank.experiments.online_ab import ABResult

F64 = npt.NDArray[np.float64]
MEAN_METRICS = {  # report name -> per-user metric of ABResult
    "time spent (s/user)": "dwell_s",
    "clicks/user": "clicks",
    "shares/user": "shares",
    "hides/user": "hides",
    "publishers seen/user": "publishers",
    "requests/user": "requests",
}
PRIMARY = "time spent (s/user)"
Estimate = tuple[float, float, int]  # (estimate, variance of the estimate, users)


@dataclass(frozen=True)
class MetricTest:
    name: str
    control: float  # arm mean per user, or the arm's ratio for a ratio metric
    treatment: float
    lift: float  # treatment / control - 1
    ci_low: float  # (1 - alpha) CI of the lift
    ci_high: float
    p_value: float
    significant: bool
    mde: float  # relative lift detectable with `power` at `alpha`
    n_control: int
    n_treatment: int


def _mean(x: F64) -> Estimate:
    """(mean, variance of the mean, n) of per-user values (n,)."""
    return float(x.mean()), float(x.var(ddof=1)) / x.size, int(x.size)


def _ratio(x: F64, y: F64) -> Estimate:
    """(Σx / Σy, its delta-method variance, n) from per-user numerators and denominators (n,)."""
    r = float(x.sum() / y.sum())
    cov = np.cov(x, y, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (x.size * float(y.mean()) ** 2)
    return r, float(var), int(x.size)


def _compare(
    name: str, control: Estimate, treatment: Estimate, df: float | None, alpha: float, power: float
) -> MetricTest:
    """Test treatment against control from (estimate, variance of the estimate, users); df None: z-test."""
    (m_c, v_c, n_c), (m_t, v_t, n_t) = control, treatment
    se = math.sqrt(v_c + v_t)
    dist = stats.t(df) if df is not None and math.isfinite(df) else stats.norm
    p = float(2 * dist.sf(abs(m_t - m_c) / se)) if se > 0 else 1.0
    z = float(stats.norm.ppf(1 - alpha / 2))
    lift = se_lift = mde = math.nan
    if m_c != 0:
        lift = m_t / m_c - 1
        se_lift = math.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)
        mde = (z + float(stats.norm.ppf(power))) * se / abs(m_c)
    return MetricTest(
        name, m_c, m_t, lift, lift - z * se_lift, lift + z * se_lift, p, p < alpha, mde, n_c, n_t
    )


def mean_test(name: str, control: F64, treatment: F64, alpha: float = 0.05, power: float = 0.8) -> MetricTest:
    """Welch's t-test and the delta-method lift CI of per-user values (n,) of the two arms."""
    c, t = _mean(control), _mean(treatment)
    denom = c[1] ** 2 / (c[2] - 1) + t[1] ** 2 / (t[2] - 1)
    df = (c[1] + t[1]) ** 2 / denom if denom > 0 else None  # Welch-Satterthwaite
    return _compare(name, c, t, df, alpha, power)


def ratio_test(
    name: str, control: tuple[F64, F64], treatment: tuple[F64, F64], alpha: float = 0.05, power: float = 0.8
) -> MetricTest:
    """Σx / Σy per arm from per-user (numerator, denominator) arrays; delta-method variances, z-test."""
    return _compare(name, _ratio(*control), _ratio(*treatment), None, alpha, power)


@dataclass
class ABReport:
    arms: dict[str, dict[str, Any]]  # control / treatment -> policy name and settings
    setup: dict[str, Any]  # config, window, users per arm, run statistics
    metrics: list[MetricTest]  # the primary metric (time spent) first
    daily: dict[str, dict[str, list[list[float]]]]  # metric -> arm -> per day [value, CI low, CI high]
    diversity: dict[str, float]  # publisher exposure Gini per arm
    sample_ratio_p: float  # chi-square test of the 50/50 split: a tiny value flags a broken split

    def metric(self, name: str) -> MetricTest:
        return next(m for m in self.metrics if m.name == name)


def analyze(result: ABResult, alpha: float = 0.05, power: float = 0.8) -> ABReport:
    """Per-user tests of every metric between the arms of a simulated experiment."""
    u, d = result.per_user, result.per_day
    active = u["requests"] > 0
    arms = {"control": active & ~result.treated, "treatment": active & result.treated}
    c, t = arms["control"], arms["treatment"]
    clicks, views = u["clicks"], u["impressions"]
    tests = [ratio_test("CTR", (clicks[c], views[c]), (clicks[t], views[t]), alpha, power)]
    tests += [mean_test(name, u[key][c], u[key][t], alpha, power) for name, key in MEAN_METRICS.items()]
    tests.sort(key=lambda m: m.name != PRIMARY)
    z = float(stats.norm.ppf(1 - alpha / 2))
    daily: dict[str, dict[str, list[list[float]]]] = {PRIMARY: {}, "CTR": {}}
    for arm, users in arms.items():
        daily[PRIMARY][arm], daily["CTR"][arm] = [], []
        for day in range(d["impressions"].shape[1]):
            on = users & (d["impressions"][:, day] > 0)  # users with a request that day
            if on.sum() < 2:
                daily[PRIMARY][arm].append([math.nan] * 3)
                daily["CTR"][arm].append([math.nan] * 3)
                continue
            for name, (value, var, _) in (
                (PRIMARY, _mean(d["dwell_s"][on, day])),
                ("CTR", _ratio(d["clicks"][on, day], d["impressions"][on, day])),
            ):
                half = z * math.sqrt(var)
                daily[name][arm].append([value, value - half, value + half])
    n_c, n_t = int(c.sum()), int(t.sum())
    setup = {"config": asdict(result.config), "start_s": result.start_s, **result.stats}
    return ABReport(
        arms={"control": result.arms[0], "treatment": result.arms[1]},
        setup={**setup, "users_control": n_c, "users_treatment": n_t},
        metrics=tests,
        daily=daily,
        diversity={"control": gini(result.exposure[0]), "treatment": gini(result.exposure[1])},
        sample_ratio_p=float(stats.chisquare([n_c, n_t]).pvalue) if min(n_c, n_t) > 0 else math.nan,
    )


# ----------------------------------------------------------------- offline / online agreement
OFFLINE_SYSTEMS = {  # policy variant -> system name in a ranker run's eval/report.json
    "ranker": "ranker",
    "two-tower": "two-tower",
    "popularity": "recent popularity (24 h)",
    "random": "random",
}
OFFLINE_METRICS = ("auc", "gauc", "ndcg@10", "value_ndcg@10", "slate_value_share")


def offline_metrics(eval_report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Offline metrics per policy variant from a ranker run's eval/report.json: the impression
    metrics of the test part; `clicks-only` from the weighting sweep (validation part, two metrics)."""
    imp = eval_report.get("impressions", {})
    out = {
        variant: {k: float(v) for k, v in imp[system].items() if k in OFFLINE_METRICS}
        for variant, system in OFFLINE_SYSTEMS.items()
        if system in imp
    }
    for row in eval_report.get("weight_sweep", []):
        if row.get("weighting") == "clicks only":
            out["clicks-only"] = {k: float(row[k]) for k in OFFLINE_METRICS if k in row}
    return out


def agreement(
    offline: Mapping[str, Mapping[str, float]], online_lift: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Spearman's rank correlation between each offline metric and the online lift, over the
    variants that have both: metric -> {spearman, p_value, variants}; needs 3 variants or more."""
    out: dict[str, dict[str, float]] = {}
    for metric in OFFLINE_METRICS:
        names = [v for v in online_lift if math.isfinite(offline.get(v, {}).get(metric, math.nan))]
        if len(names) >= 3:
            rho, p = stats.spearmanr([offline[v][metric] for v in names], [online_lift[v] for v in names])
            out[metric] = {"spearman": float(rho), "p_value": float(p), "variants": float(len(names))}
    return out
