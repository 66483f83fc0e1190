"""Ranking what was actually shown: every system re-orders the test slates and is judged by the
clicks (and the value of the engagement) they really got.

Labels: `clicked` for AUC, GAUC, MRR, nDCG and precision; the engagement value (click 1, long dwell
2, share 5 by default; a hide earns nothing) for `value_ndcg@k`, which rewards putting the items
people read long and shared on top, not only the clicked ones.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from feedrank.eval.baselines import Scorer
from feedrank.eval.calibration import calibration_metrics, reliability_table
from feedrank.eval.metrics import group_metrics, ranking_metrics
from feedrank.progress import advance

LONG_DWELL_S = 10.0


def engagement_value(impressions: pl.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """(N,) value of each shown row: weighted click, long dwell and share; a hidden row is worth 0."""
    clicked = impressions.get_column("clicked").to_numpy().astype(np.float64)
    dwell = impressions.get_column("dwell_s").fill_null(0.0).to_numpy()
    shared = impressions.get_column("shared").to_numpy().astype(np.float64)
    hidden = impressions.get_column("hidden").to_numpy().astype(bool)
    value = (
        weights.get("click", 1.0) * clicked
        + weights.get("long_dwell", 2.0) * clicked * (dwell > LONG_DWELL_S)
        + weights.get("share", 5.0) * shared
    )
    return np.where(hidden, 0.0, value)


def evaluate_impressions(
    impressions: pl.DataFrame, scorers: dict[str, Scorer], weights: dict[str, float]
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics per system (keyed like `scorers`) and each system's (N,) scores, row-aligned."""
    users = impressions.get_column("user_id").to_numpy().astype(object)
    items = impressions.get_column("item_id").to_numpy().astype(object)
    ts = impressions.get_column("ts").dt.replace_time_zone(None).to_numpy()
    groups = impressions.get_column("request_id").rank("dense").to_numpy()
    clicked = impressions.get_column("clicked").to_numpy().astype(np.float64)
    value = engagement_value(impressions, weights)
    results: dict[str, dict[str, float]] = {}
    all_scores: dict[str, np.ndarray] = {}
    for i, (name, scorer) in enumerate(scorers.items()):
        advance("impressions ranked (systems)", i, len(scorers))
        scores = scorer.score(users, ts, items)
        all_scores[name] = scores
        metrics = ranking_metrics(scores, clicked, groups, ks=(5, 10))
        graded = group_metrics(scores, value, groups, ks=(10,)).summary()
        metrics["value_ndcg@10"] = graded["ndcg@10"]
        results[name] = metrics
    advance("impressions ranked (systems)", len(scorers), len(scorers))
    return results, all_scores


def calibration_of(probs: np.ndarray, impressions: pl.DataFrame) -> tuple[dict[str, float], pl.DataFrame]:
    """Calibration metrics and reliability table of predicted click probabilities.

    Quantile bins: click probabilities crowd near zero, where uniform bins would leave a few
    points carrying all the rows."""
    clicked = impressions.get_column("clicked").to_numpy().astype(np.float64)
    return calibration_metrics(probs, clicked), reliability_table(
        probs, clicked, num_bins=10, strategy="quantile"
    )
