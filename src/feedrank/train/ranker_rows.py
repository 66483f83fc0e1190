"""The ranker's training rows, read from the train part lazily: only the rows and columns it uses.

`train_ranker` (train/run.py) trains on the last `loss.train_window_h` hours of the train part;
on a click-only log on its latest `loss.max_clicks` clicks, on a log with impressions on the rows
of its latest requests, about `loss.max_rows` of them. Each is a filter on a Parquet scan, so the
train part is never held whole: on the large simulated world at 10M impressions, reading its 8M
training rows whole took 1.3 GB before anything was computed (BENCHMARKS.md, "Training memory
against rows on one world").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from feedrank.artifacts.config import RankerLossConfig
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace
from feedrank.data.features import to_us

log = logging.getLogger(__name__)

# What the ranker's examples of a log with impressions read (data/examples.ranker_examples).
RANKER_COLUMNS = (
    "request_id",
    "user_id",
    "item_id",
    "ts",
    "position",
    "clicked",
    "dwell_s",
    "shared",
    "hidden",
)


def ranker_rows(train: Dataset, loss: RankerLossConfig) -> pl.DataFrame:
    """The train part's rows the ranker trains on, in table order (`loss` resolved: no -1).

    A click-only log: its clicks of the window, the latest `max_clicks` of them, every column
    (as `latest_clicks(recent_part(read))` gives them). A log with impressions: the rows of the
    window whose time is at or after the `max_rows`-th latest row's, `RANKER_COLUMNS` only. A
    request's rows share its time, so whole requests are kept (a few rows more than `max_rows`).
    """
    scan = train.scan("impressions")
    window = _window_start(scan, loss.train_window_h)
    if window is not None:
        scan = scan.filter(pl.col("ts") > window)
    if train.click_only:
        return latest_clicks(scan.collect(), loss.max_clicks)
    scan = scan.select(RANKER_COLUMNS)
    cutoff = latest_rows_cutoff(scan, loss.max_rows)
    if cutoff is None:
        return scan.collect()
    rows = scan.filter(pl.col("ts") >= cutoff).collect()
    log.info(
        "ranker rows: the %d rows from %s on (loss.max_rows=%d; 0 = every row)",
        rows.height,
        cutoff,
        loss.max_rows,
    )
    return rows


def latest_rows_cutoff(scan: pl.LazyFrame, n: int) -> datetime | None:
    """The time of the `n`-th latest row of `scan` (None: n <= 0 or it has no more than n rows).
    Streams: only n timestamps are held, whatever the table's length."""
    if n <= 0:
        return None
    count = scan.select(pl.len()).collect(engine="streaming").item()
    if count <= n:
        return None
    cutoff: datetime = scan.select(pl.col("ts").top_k(n).min()).collect(engine="streaming").item()
    return cutoff


def _window_start(scan: pl.LazyFrame, window_h: float) -> datetime | None:
    """The time after which the last `window_h` hours before the latest row lie (None: all rows)."""
    if window_h <= 0:
        return None
    latest = scan.select(pl.col("ts").max()).collect(engine="streaming").item()
    if latest is None:
        return None
    start: datetime = pl.select(pl.lit(latest) - pl.duration(microseconds=int(window_h * 3.6e9))).item()
    return start


def recent_part(impressions: pl.DataFrame, window_h: float) -> pl.DataFrame:
    """The impressions of the last `window_h` hours before the latest one (all when window_h <= 0)."""
    if window_h <= 0 or impressions.height == 0:
        return impressions
    latest = impressions.get_column("ts").max()
    return impressions.filter(pl.col("ts") > pl.lit(latest) - pl.duration(microseconds=int(window_h * 3.6e9)))


def latest_clicks(impressions: pl.DataFrame, n: int) -> pl.DataFrame:
    """The rows of the latest `n` clicks of `impressions` (in time order; all when n <= 0)."""
    if n <= 0:
        return impressions
    clicks = impressions.filter(pl.col("clicked"))
    return clicks if clicks.height <= n else clicks.sort("ts", maintain_order=True).tail(n)


class ScopedEvaluate:
    """A validation (`Evaluate` of train/loop.py) that names the rows it asks features for: the
    users (ids) and times of its sample, so `bound_to_queries` can bound the indexes to them."""

    def __init__(
        self, evaluate: Callable[[Any], dict[str, float]], user_ids: pl.Series, ts: pl.Series
    ) -> None:
        self.evaluate = evaluate
        self.user_ids, self.ts = user_ids, ts

    def __call__(self, model: Any) -> dict[str, float]:
        return self.evaluate(model)


def bound_to_queries(space: FeatureSpace, rows: pl.DataFrame, evaluate: object | None) -> bool:
    """Bound `space`'s indexes to what the ranker asks of them (`PastEvents.bound_queries`): the
    users and times of its training rows and of its validation's sample. Only when the validation
    names its rows (`ScopedEvaluate`) or there is none; returns whether it bounded them.

    A ranker's example rows (catalog and pool negatives included) and its candidate-source replay
    are asked at its training rows' (user, time); its validation at the sample's. On the large
    simulated world at 100M impressions that is ~70,000 of 1.96M users and the days from the
    budget's first row to the end of the valid part (BENCHMARKS.md).
    """
    if rows.height == 0 or (evaluate is not None and not isinstance(evaluate, ScopedEvaluate)):
        return False
    users, times = [rows.get_column("user_id")], [to_us(rows.get_column("ts"))]
    if isinstance(evaluate, ScopedEvaluate):
        users.append(evaluate.user_ids)
        times.append(to_us(evaluate.ts))
    ts_us = np.concatenate(times)
    user_rows = space.users.rows(pl.concat(users).cast(pl.String))
    space.past.bound_queries(int(ts_us.min()), int(ts_us.max()), user_rows)
    return True
