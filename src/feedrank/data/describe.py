"""Summary statistics of a canonical dataset: what `feedrank data describe` prints."""

from __future__ import annotations

from typing import Any

import polars as pl

from feedrank.data.dataset import Dataset

DWELL_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def describe(ds: Dataset) -> dict[str, Any]:
    """Rows, requests, users, items, engagement rates, dwell quantiles, time span, quarantine."""
    imp = ds.scan("impressions")
    stats = imp.select(
        pl.len().alias("rows"),
        pl.col("request_id").n_unique().alias("requests"),
        pl.col("user_id").n_unique().alias("users"),
        pl.col("item_id").n_unique().alias("items_shown"),
        pl.col("clicked").sum().alias("clicks"),
        pl.col("clicked").mean().alias("ctr"),
        pl.col("shared").mean().alias("share_rate"),
        pl.col("hidden").mean().alias("hide_rate"),
        pl.col("survey").is_not_null().sum().alias("survey_answers"),
        pl.col("propensity").is_not_null().mean().alias("propensity_coverage"),
        pl.col("ts").min().alias("ts_min"),
        pl.col("ts").max().alias("ts_max"),
    ).collect()
    row = stats.row(0, named=True)
    dwell = (
        imp.filter(pl.col("clicked") & pl.col("dwell_s").is_not_null())
        .select([pl.col("dwell_s").quantile(q).alias(f"p{int(q * 100)}") for q in DWELL_QUANTILES])
        .collect()
        .row(0, named=True)
    )
    quarantine = ds.manifest.get("quarantine") or {"count": 0, "by_reason": {}}
    return {
        "path": str(ds.path),
        "source": (ds.manifest.get("source") or {}).get("format"),
        "click_only": ds.click_only,
        "impressions": row["rows"],
        "requests": row["requests"],
        "users": row["users"],
        "items_shown": row["items_shown"],
        "items_in_catalog": ds.rows("items"),
        "users_in_table": ds.rows("users"),
        "history_rows": ds.rows("history"),
        "clicks": row["clicks"],
        "ctr": row["ctr"],
        "share_rate": row["share_rate"],
        "hide_rate": row["hide_rate"],
        "survey_answers": row["survey_answers"],
        "propensity_coverage": row["propensity_coverage"],
        "dwell_s_quantiles": dwell,
        "time_span": [_iso(row["ts_min"]), _iso(row["ts_max"])],
        "quarantined": quarantine.get("count", 0),
        "quarantined_by_reason": quarantine.get("by_reason", {}),
    }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
