"""Segments of the next-click report: cold and warm items and users, by event time.

A model trained on a split's train part has seen the events before the train cut (the split's
valid start). An item is *cold* when its first event in the log is at or after that cut; a user is
cold when they have no pre-window history and their first event is at or after it. Which part a
request landed in does not matter: a session that spans the cut lands in the later part, but its
earlier clicks still made its items and user known before the cut.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.data.split import SPLIT_MANIFEST

SEGMENTS = ("cold items", "warm items", "cold users", "warm users")


def train_cut_of(split_dir: Path) -> datetime:
    """The split's valid start: events before it are what a model trained on the train part saw."""
    manifest = json.loads((Path(split_dir) / SPLIT_MANIFEST).read_text(encoding="utf-8"))
    return datetime.fromisoformat(manifest["valid_start"])


def seen_before(events: pl.DataFrame, column: str, cut: datetime) -> pl.Series:
    """Ids of `column` whose first event is before `cut`: warm, by event time."""
    return events.filter(pl.col("ts") < cut).get_column(column).unique()


def _among(ids: np.ndarray, known: pl.Series) -> np.ndarray:
    # A hash join: np.isin over string arrays is a quadratic loop (minutes at 20k clicks).
    found: np.ndarray = pl.Series(ids, dtype=pl.String).is_in(known.implode()).to_numpy()
    return found


def segment_masks(
    item_ids: np.ndarray,
    user_ids: np.ndarray,
    events: pl.DataFrame,
    history_users: pl.Series,
    cut: datetime,
) -> dict[str, np.ndarray]:
    """(E,) bool masks of "all" and each of SEGMENTS for clicks on (E,) items by (E,) users."""
    item_warm = _among(item_ids, seen_before(events, "item_id", cut))
    user_warm = _among(user_ids, pl.concat([seen_before(events, "user_id", cut), history_users]))
    return {
        "all": np.ones(item_ids.size, dtype=bool),
        "cold items": ~item_warm,
        "warm items": item_warm,
        "cold users": ~user_warm,
        "warm users": user_warm,
    }


def summarize(metrics: dict[str, dict[str, np.ndarray]], mask: np.ndarray) -> dict[str, dict[str, float]]:
    """system → metric → mean, with `<metric>_se` (standard error) and `events`, over `mask`."""
    out: dict[str, dict[str, float]] = {}
    for system, values in metrics.items():
        row: dict[str, float] = {}
        for name, arr in values.items():
            x = arr[mask]
            row[name] = float(x.mean()) if x.size else float("nan")
            row[f"{name}_se"] = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
        row["events"] = float(mask.sum())
        out[system] = row
    return out


MODEL_SYSTEMS = ("ranker", "ranker (feed score)", "two-tower")


def paired_differences(
    metrics: dict[str, dict[str, np.ndarray]], mask: np.ndarray, metric: str = "ndcg@10"
) -> dict[str, dict[str, float]]:
    """ "model − baseline" → the mean difference of `metric` over the same clicks (`diff`), its
    paired standard error (`diff_se`), the difference relative to the baseline's mean
    (`relative`) and `events`, for every model system against every other system (the baselines).

    The two systems ranked the same clicks, so the standard error of the difference is that of
    the per-click differences, usually far below either system's own standard error.
    """
    out: dict[str, dict[str, float]] = {}
    models = [m for m in MODEL_SYSTEMS if m in metrics]
    for model in models:
        for base in (s for s in metrics if s not in MODEL_SYSTEMS):
            d = (metrics[model][metric] - metrics[base][metric])[mask]
            base_mean = float(metrics[base][metric][mask].mean()) if d.size else float("nan")
            out[f"{model} − {base}"] = {
                "diff": float(d.mean()) if d.size else float("nan"),
                "diff_se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan"),
                "relative": float(d.mean() / base_mean) if d.size and base_mean > 0 else float("nan"),
                "events": float(d.size),
            }
    return out
