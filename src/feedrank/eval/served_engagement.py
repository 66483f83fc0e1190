"""Item click rates and dwell as they stood at a replayed request's time, for the re-ranker.

The service reads each item's click rate and mean dwell of its clicked views from the bundle's
events once, when it loads the bundle (`serve/catalog._engagement_stats`); the clickbait
guardrail demotes items with a high click rate and a short dwell. A live service's bundle holds
only events from before its requests. A replay of past request times on a bundle built later
would hand it events from after each request too: a look-ahead. `EngagementAsOf` gives the same
two statistics over the bundle's events strictly before a given time, and `RecommenderServer`
(served_path.py) installs them on its catalog before each batch of requests.

Requests are mostly replayed in time order, so the counts move forward with the clock: each call
adds the events since the last one (a bincount over catalog rows); a call earlier than the last
starts the counts again from the first event.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.bundle import Bundle

F64 = npt.NDArray[np.float64]


class EngagementAsOf:
    """(I,) click rate and mean dwell (s) of clicked views over a bundle's events before a time.

    The same statistics as `serve/catalog._engagement_stats` (click rate: the share of an item's
    logged views that were clicked; dwell: the mean over its clicked views with a dwell), NaN for
    an item without views (or without a clicked view with a dwell) before that time."""

    def __init__(self, bundle: Bundle) -> None:
        columns = ["item_id", "ts", "clicked", "dwell_s"]
        events = pl.read_parquet(bundle.path / "events.parquet", columns=columns)
        events = events.with_columns(pl.col("ts").dt.epoch("us").alias("ts_us")).sort("ts_us")
        rows = bundle.space.catalog.rows(events.get_column("item_id"))
        keep = rows >= 0
        clicked = events.get_column("clicked").fill_null(False).to_numpy().astype(bool)
        dwell = events.get_column("dwell_s").cast(pl.Float64).fill_null(np.nan).to_numpy()
        with_dwell = clicked & ~np.isnan(dwell)
        self.ts_us = events.get_column("ts_us").to_numpy()[keep]
        self.rows = rows[keep]
        self.clicked = clicked[keep].astype(np.float64)
        self.with_dwell = with_dwell[keep].astype(np.float64)
        self.dwell = np.where(with_dwell, dwell, 0.0)[keep]
        self.num_items = len(bundle.space.catalog)
        self._restart()

    def _restart(self) -> None:
        n = self.num_items
        self.views, self.clicks = np.zeros(n), np.zeros(n)
        self.dwell_sum, self.dwell_n = np.zeros(n), np.zeros(n)
        self.applied = 0  # events [0, applied) are counted

    def at(self, now_us: int, size: int | None = None) -> tuple[F64, F64]:
        """(size,) click rate and mean dwell over the events before `now_us` (size: the catalog's
        current length, at least the bundle's; rows added since are NaN: no events yet)."""
        end = int(np.searchsorted(self.ts_us, now_us, side="left"))
        if end < self.applied:
            self._restart()
        if end > self.applied:
            part, n = slice(self.applied, end), self.num_items
            rows = self.rows[part]
            self.views += np.bincount(rows, minlength=n)
            self.clicks += np.bincount(rows, weights=self.clicked[part], minlength=n)
            self.dwell_n += np.bincount(rows, weights=self.with_dwell[part], minlength=n)
            self.dwell_sum += np.bincount(rows, weights=self.dwell[part], minlength=n)
            self.applied = end
        size = self.num_items if size is None else size
        ctr, dwell = np.full(size, np.nan), np.full(size, np.nan)
        seen, read = self.views > 0, self.dwell_n > 0
        ctr[: self.num_items][seen] = self.clicks[seen] / self.views[seen]
        dwell[: self.num_items][read] = self.dwell_sum[read] / self.dwell_n[read]
        return ctr, dwell
