"""Per-user metrics from a canonical impressions table, and CUPED, for planning A/B tests.

A test randomizes users, so its unit is the user and its metric one value per user over the test
window (never one value per impression: impressions of one user are correlated, and treating them as
independent understates the variance). Metrics, over a window of D days:

    dwell_per_day   Σ dwell_s / D                       seconds per user per day
    clicks_per_day  Σ clicked / D                       clicks per user per day
    ctr             Σ clicked / impressions             per-user click-through rate

CUPED (Deng et al. 2013) with X = the same metric in a pre-period before the window:

    Y_cuped = Y - θ (X - mean X),   θ = cov(Y, X) / var(X),   var(Y_cuped) = var(Y) (1 - ρ²)

with ρ = corr(Y, X); the plan's `variance_reduction` is ρ². Users of the window with no pre-period
rows get X = 0 for the sums (they did nothing then) and X = mean X for `ctr` (it is undefined).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.data.split import SPLIT_MANIFEST, open_split
from feedrank.errors import DataError
from feedrank.experiments.ab_plan import ContinuousMetric

F64 = npt.NDArray[np.float64]
UserMetric = Literal["dwell_per_day", "clicks_per_day", "ctr"]
USER_METRICS: tuple[UserMetric, ...] = ("dwell_per_day", "clicks_per_day", "ctr")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class Cuped:
    """The CUPED fit: θ, ρ = corr(Y, X), the variance reduction ρ², and how many units had a
    pre-period value."""

    theta: float
    rho: float
    num_units: int
    num_with_pre: int

    @property
    def variance_reduction(self) -> float:
        return self.rho**2


def fit_cuped(y: npt.ArrayLike, x: npt.ArrayLike) -> Cuped:
    """θ and ρ of (N,) outcomes `y` and (N,) pre-period covariates `x` (N ≥ 3)."""
    yv, xv = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if yv.shape != xv.shape or yv.ndim != 1 or yv.size < 3:
        raise DataError(f"CUPED needs two equal 1-d arrays of at least 3 values, got {yv.shape}, {xv.shape}")
    var_x, var_y = float(xv.var(ddof=1)), float(yv.var(ddof=1))
    if var_x == 0 or var_y == 0:
        # A constant covariate explains nothing; a constant outcome has nothing left to explain.
        return Cuped(theta=0.0, rho=0.0, num_units=yv.size, num_with_pre=yv.size)
    cov = float(np.cov(yv, xv, ddof=1)[0, 1])
    return Cuped(
        theta=cov / var_x, rho=float(cov / np.sqrt(var_x * var_y)), num_units=yv.size, num_with_pre=yv.size
    )


def cuped_adjust(y: npt.ArrayLike, x: npt.ArrayLike, theta: float) -> F64:
    """Y - θ (X - mean X): same mean as Y, variance var(Y)(1 - ρ²) at the fitted θ."""
    xv = np.asarray(x, dtype=np.float64)
    out: F64 = np.asarray(y, dtype=np.float64) - theta * (xv - xv.mean())
    return out


def user_values(impressions: pl.DataFrame, metric: UserMetric, days: float) -> pl.DataFrame:
    """One row per user in `impressions` (already cut to the window): user_id, value (float).

    `days` is the window length, the denominator of the per-day metrics."""
    if metric not in USER_METRICS:
        raise DataError(f"unknown user metric {metric!r}; known: {', '.join(USER_METRICS)}")
    clicks = pl.col("clicked").cast(pl.Float64)
    value = {
        "dwell_per_day": pl.col("dwell_s").fill_null(0.0).cast(pl.Float64).sum() / days,
        "clicks_per_day": clicks.sum() / days,
        "ctr": clicks.mean(),
    }[metric]
    return impressions.group_by("user_id").agg(value.alias("value")).sort("user_id")


def metric_from_logs(
    impressions: pl.DataFrame,
    metric: UserMetric,
    *,
    post_days: float,
    pre_days: float = 0.0,
    name: str | None = None,
) -> tuple[ContinuousMetric, Cuped | None]:
    """The metric's mean and sd per user over the last `post_days` of the log, and, with
    `pre_days` > 0, the CUPED fit against the `pre_days` before them (None without a pre-period).

    The returned metric carries the CUPED variance reduction, ready for `ab_plan.plan`."""
    if post_days <= 0 or pre_days < 0:
        raise DataError(f"post_days must be positive and pre_days not negative, got {post_days}, {pre_days}")
    if impressions.height == 0:
        raise DataError("impressions: no rows to estimate a metric from")
    end = impressions.get_column("ts").max() + timedelta(microseconds=1)  # type: ignore[operator]
    split = end - timedelta(seconds=post_days * _DAY_S)
    post = impressions.filter(pl.col("ts") >= split)
    if post.height == 0:
        raise DataError(f"impressions: no rows in the last {post_days} days")
    y_frame = user_values(post, metric, post_days)
    y = y_frame.get_column("value").to_numpy().astype(np.float64)
    if y.size < 3:
        raise DataError(f"impressions: {y.size} users in the window; at least 3 are needed")
    cuped = None
    if pre_days > 0:
        start = split - timedelta(seconds=pre_days * _DAY_S)
        pre = user_values(
            impressions.filter((pl.col("ts") >= start) & (pl.col("ts") < split)), metric, pre_days
        )
        joined = y_frame.join(pre.rename({"value": "x"}), on="user_id", how="left")
        x_raw = joined.get_column("x").to_numpy().astype(np.float64)
        have = ~np.isnan(x_raw)
        fill = 0.0 if metric != "ctr" else (float(x_raw[have].mean()) if have.any() else 0.0)
        fit = fit_cuped(y, np.where(have, x_raw, fill))
        cuped = Cuped(fit.theta, fit.rho, fit.num_units, int(have.sum()))
    result = ContinuousMetric(
        mean=float(y.mean()),
        sd=float(y.std(ddof=1)),
        variance_reduction=min(cuped.variance_reduction, 0.999) if cuped else 0.0,
        name=name or metric,
    )
    return result, cuped


def read_impressions(path: Path | str) -> pl.DataFrame:
    """The impressions of a canonical dataset, or of all three parts of a split (the whole log:
    planning wants every day of it, not one part)."""
    path = Path(path)
    if (path / SPLIT_MANIFEST).is_file():
        return pl.concat([part.read("impressions") for part in open_split(path).values()]).sort("ts")
    return Dataset.open(path).read("impressions")
