"""Trending: time-decayed click counts per item over several windows.

For windows w (e.g. 10 minutes, 1 hour, 24 hours) and a half-life h, the count of item i at t is

    c_w(i, t) = sum over clicks of i at times s with t - w <= s < t of 0.5 ** ((t - s) / h)

(h = None: plain counts), and the source's score is sum_w log(1 + c_w): an item climbs when it is
clicked now, on any of the time scales. Clicks live in one time-sorted log and a query reads only
the clicks of its largest window; `active` lists only the items among them, so the cost per request
is O(clicks in the last window), whatever the catalog's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.candidates.postings import F64, I64, Postings, compact

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
        rows, active = self.active(t_us, num_items)
        total = np.zeros(num_items)
        total[rows] = active
        return total

    def active(self, t_us: int, num_items: int) -> tuple[I64, F64]:
        """`scores` of the items clicked in the largest window only: (rows ascending, their scores).

        Serving asks this per request: its cost is the clicks in the window, not the catalog. Each
        item's sums add its clicks in the order `counts` adds them, so the scores are equal.
        """
        clicks = self._clicks.between(_ALL, t_us - int(self._windows_us.max()), t_us)
        known = clicks.values < num_items  # an item added after `num_items` was read
        age = (t_us - clicks.ts[known]).astype(np.float64)
        rows, at = compact(clicks.values[known], num_items)
        weight = _decay(age, self.config.half_life_min)
        counts = np.zeros((self._windows_us.size, rows.size))
        for k, window in enumerate(self._windows_us.tolist()):
            inside = age <= window
            counts[k] = np.bincount(at[inside], weights=weight[inside], minlength=rows.size)
        total: F64 = np.log1p(counts).sum(axis=0)
        return rows, total

    def prune(self, before_us: int) -> int:
        return self._clicks.prune(before_us)

    @property
    def horizon_us(self) -> int:
        return int(self._windows_us.max())

    def walk(self, num_items: int) -> TrendingWalk:
        """`scores` for queries in increasing time, kept up to date click by click (`TrendingWalk`)."""
        log = self._clicks.between(_ALL, None, np.iinfo(np.int64).max)
        return TrendingWalk(self.config, log.ts, log.values, num_items)


class TrendingWalk:
    """`Trending.scores` for queries at non-decreasing times over a fixed click log.

    A query at t reads the clicks in the largest window before t, O(clicks in 24 hours) each: a
    replay of every training click's candidate sources cannot afford that per click. The walk
    keeps each window's decayed counts as t moves forward instead, each click added once and
    removed once. A decayed weight 0.5 ** ((t - s) / h) is kept as 2 ** ((s - base) / h) and scaled
    by 2 ** ((base - t) / h) when read, the base moving with t so that no term overflows; an item
    whose window holds no click reads exactly 0 (integer counts are kept beside the sums), so the
    set of items with a positive score is the same as `Trending.scores`'s.
    """

    def __init__(self, config: TrendingConfig, ts_us: I64, items: I64, num_items: int) -> None:
        known = items < num_items
        self.ts, self.items = ts_us[known], items[known]  # time-sorted (the postings keep them so)
        self.num_items = num_items
        self.windows_us = [int(w * US_PER_MIN) for w in config.windows_min]
        self.half_life_us = None if config.half_life_min is None else config.half_life_min * US_PER_MIN
        self.sums = np.zeros((len(self.windows_us), num_items))
        self.counts = np.zeros((len(self.windows_us), num_items), dtype=np.int64)
        self.heads = np.zeros(len(self.windows_us), dtype=np.int64)  # first click not yet added
        self.tails = np.zeros(len(self.windows_us), dtype=np.int64)  # first click not yet removed
        self.base: int = np.iinfo(np.int64).min
        self._t = np.iinfo(np.int64).min

    def _weights(self, lo: int, hi: int) -> F64:
        if self.half_life_us is None:
            return np.ones(hi - lo)
        out: F64 = np.exp2((self.ts[lo:hi] - self.base) / self.half_life_us)
        return out

    def scores(self, t_us: int) -> F64:
        """(num_items,) what `Trending.scores(t_us, num_items)` returns; t must not go back."""
        if t_us < self._t:
            raise ValueError(f"TrendingWalk queried at {t_us} after {self._t}: time must not go back")
        self._t = t_us
        if self.half_life_us is not None and t_us - self.base > self.half_life_us:
            if self.base > np.iinfo(np.int64).min:  # re-express every sum relative to the new base
                self.sums *= np.exp2((self.base - t_us) / self.half_life_us)
            self.base = t_us
        head = int(np.searchsorted(self.ts, t_us, side="left"))  # clicks strictly before t
        total = np.zeros(self.num_items)
        scale = 1.0 if self.half_life_us is None else float(np.exp2((self.base - t_us) / self.half_life_us))
        for k, window in enumerate(self.windows_us):
            tail = int(np.searchsorted(self.ts, t_us - window, side="left"))  # age <= window
            start = max(int(self.heads[k]), tail)  # clicks that enter and stay
            if head > start:
                np.add.at(self.sums[k], self.items[start:head], self._weights(start, head))
                np.add.at(self.counts[k], self.items[start:head], 1)
            stop = min(tail, int(self.heads[k]))  # clicks added earlier that left the window
            if stop > self.tails[k]:
                lo = int(self.tails[k])
                np.subtract.at(self.sums[k], self.items[lo:stop], self._weights(lo, stop))
                np.subtract.at(self.counts[k], self.items[lo:stop], 1)
            self.heads[k], self.tails[k] = max(head, int(self.heads[k])), max(tail, int(self.tails[k]))
            counts = np.where(self.counts[k] > 0, np.maximum(self.sums[k], 0.0) * scale, 0.0)
            total += np.log1p(counts)
        return total


def _decay(age_us: F64, half_life_min: float | None) -> F64:
    if half_life_min is None:
        return np.ones_like(age_us)
    out: F64 = np.exp2(-age_us / (half_life_min * US_PER_MIN))
    return out
