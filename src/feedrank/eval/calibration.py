"""Calibration of predicted probabilities: are the click probabilities right, not only well ordered?

Inputs are (N,) predicted probabilities in [0, 1] and (N,) outcomes in [0, 1] (0/1 clicks; soft
labels are accepted). Definitions:

- Normalized entropy NE = mean cross-entropy of the predictions / entropy of the base rate p̄
  (He et al. 2014, "Practical lessons from predicting clicks on ads at Facebook"). 1 means no
  better than always predicting p̄; lower is better; it is >= 0 and unbounded above. NaN when
  the outcomes are all 0 or all 1 (zero base entropy).
- Calibration ratio = mean predicted / observed rate; 1 is calibrated, > 1 over-predicts. NaN
  without any positive outcome.
- Reliability table: predictions binned (uniform-width bins on [0, 1] or equal-count quantile
  bins); per non-empty bin the count, mean prediction and observed rate. The expected
  calibration error (ECE) is the count-weighted mean |mean predicted - observed rate| over bins.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] so a confident miss costs ~16 nats, not inf
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "count", "mean_predicted", "observed_rate")


def normalized_entropy(probs: npt.ArrayLike, labels: npt.ArrayLike, eps: float = EPS) -> float:
    """NE of (N,) probabilities against (N,) outcomes (natural logs; the ratio has no unit)."""
    p, y = _check(probs, labels)
    p = np.clip(p, eps, 1.0 - eps)
    cross_entropy = -np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    rate = float(y.mean())
    if rate <= 0.0 or rate >= 1.0:
        logger.warning("normalized entropy is undefined: the base rate is %s", rate)
        return np.nan
    base_entropy = -(rate * np.log(rate) + (1.0 - rate) * np.log1p(-rate))
    return float(cross_entropy / base_entropy)


def calibration_ratio(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean of (N,) predicted probabilities / mean of (N,) outcomes; NaN without positives."""
    p, y = _check(probs, labels)
    observed = float(y.mean())
    return float(p.mean() / observed) if observed > 0 else np.nan


def reliability_table(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    num_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> pl.DataFrame:
    """One row per non-empty bin: bin, lower, upper, count, mean_predicted, observed_rate.

    `uniform` cuts [0, 1] into `num_bins` equal widths; `quantile` uses the predictions' quantiles
    so bins hold about equal counts (repeated edges merge, so there may be fewer bins).
    """
    p, y = _check(probs, labels)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, num_bins + 1)
    elif strategy == "quantile":
        interior = np.quantile(p, np.linspace(0.0, 1.0, num_bins + 1))[1:-1]
        edges = np.unique(np.concatenate([[0.0], interior, [1.0]]))
    else:
        raise ValueError(f"unknown binning strategy {strategy!r} (uniform or quantile)")
    # Interior edges only: a prediction equal to an edge goes to the bin above it, 1.0 to the last.
    bins = np.searchsorted(edges[1:-1], p, side="right")
    size = edges.size - 1
    count = np.bincount(bins, minlength=size)
    pred_sum = np.bincount(bins, weights=p, minlength=size)
    pos_sum = np.bincount(bins, weights=y, minlength=size)
    keep = count > 0
    return pl.DataFrame(
        {
            "bin": np.flatnonzero(keep).astype(np.int64),
            "lower": edges[:-1][keep],
            "upper": edges[1:][keep],
            "count": count[keep].astype(np.int64),
            "mean_predicted": pred_sum[keep] / count[keep],
            "observed_rate": pos_sum[keep] / count[keep],
        }
    )


def expected_calibration_error(table: pl.DataFrame) -> float:
    """Count-weighted mean |mean_predicted - observed_rate| over the bins of a reliability table."""
    count = table.get_column("count").to_numpy().astype(np.float64)
    gap = np.abs(table.get_column("mean_predicted").to_numpy() - table.get_column("observed_rate").to_numpy())
    return float((count * gap).sum() / count.sum()) if count.sum() > 0 else np.nan


def calibration_metrics(probs: npt.ArrayLike, labels: npt.ArrayLike, num_bins: int = 10) -> dict[str, float]:
    """ne, calibration_ratio, ece (uniform bins), log_loss (nats) and base_rate of (N,) predictions."""
    p, y = _check(probs, labels)
    clipped = np.clip(p, EPS, 1.0 - EPS)
    return {
        "ne": normalized_entropy(p, y),
        "calibration_ratio": calibration_ratio(p, y),
        "ece": expected_calibration_error(reliability_table(p, y, num_bins)),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped))),
        "base_rate": float(y.mean()),
    }


def _check(probs: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[F64, F64]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"probs {p.shape} and labels {y.shape} must be 1-d of equal length")
    if p.size == 0:
        raise ValueError("no rows to evaluate")
    if not (np.all((p >= 0) & (p <= 1)) and np.all((y >= 0) & (y <= 1))):
        raise ValueError("probabilities and labels must lie in [0, 1] (no NaN)")
    return p, y
