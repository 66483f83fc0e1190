"""Trending: time-decayed click counts per item over several windows.

For windows w (e.g. 10 minutes, 1 hour, 24 hours) and a half-life h, the count of item i at t is

    c_w(i, t) = sum over clicks of i at times s with t - w <= s < t of 0.5 ** ((t - s) / h)

(h = None: plain counts), and the source's score is sum_w log(1 + c_w): an item climbs when it is
clicked now, on any of the time scales. Clicks live in one time-sorted log and a query reads only
the clicks of its largest window, so the cost per request is O(clicks in the last window + items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.candidates.postings import F64, I64, Postings

US_PER_MIN = 60_000_000
_ALL = 0  # the one key of the click log


@dataclass(frozen=True)
class TrendingConfig:
    windows_min: tuple[float, ...] = (10.0, 60.0, 1440.0)
    half_life_min: float | None = 120.0  # None: undecayed counts


class Trending:
    """Per-item decayed click counts, fed click by click (`add`) or in bulk (`extend`)."""

    def __init__(self, config: TrendingConfig = TrendingConfig()) -> None:
        if not config.windows_min or min(config.windows_min) <= 0:
            raise ValueError(f"trending windows must be positive minutes, got {config.windows_min}")
        self.config = config
        self._clicks = Postings()
        self._windows_us = np.array([int(w * US_PER_MIN) for w in config.windows_min], dtype=np.int64)

    def add(self, item_row: int, ts_us: int) -> None:
        self._clicks.add(_ALL, ts_us, item_row)

    def extend(self, item_rows: I64, ts_us: I64) -> None:
        self._clicks.extend(np.zeros(item_rows.size, dtype=np.int64), ts_us, item_rows)

    def counts(self, t_us: int, num_items: int) -> F64:
        """(W, num_items) decayed click counts per window from clicks strictly before t."""
        clicks = self._clicks.between(_ALL, t_us - int(self._windows_us.max()), t_us)
        known = clicks.values < num_items  # an item added after `num_items` was read
        age = (t_us - clicks.ts[known]).astype(np.float64)
        items = clicks.values[known]
        weight = _decay(age, self.config.half_life_min)
        out = np.zeros((self._windows_us.size, num_items))
        for k, window in enumerate(self._windows_us.tolist()):
            inside = age <= window
            out[k] = np.bincount(items[inside], weights=weight[inside], minlength=num_items)
        return out

    def scores(self, t_us: int, num_items: int) -> F64:
        """(num_items,) sum over windows of log(1 + decayed count); 0 for items with no recent click."""
        total: F64 = np.log1p(self.counts(t_us, num_items)).sum(axis=0)
        return total

    def prune(self, before_us: int) -> int:
        return self._clicks.prune(before_us)

    @property
    def horizon_us(self) -> int:
        return int(self._windows_us.max())


def _decay(age_us: F64, half_life_min: float | None) -> F64:
    if half_life_min is None:
        return np.ones_like(age_us)
    out: F64 = np.exp2(-age_us / (half_life_min * US_PER_MIN))
    return out
