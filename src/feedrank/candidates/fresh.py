"""Fresh items: published in the last minutes, so that items nobody has clicked yet get seen.

Neither the ANN (whose item vectors a cold item shares with its look-alikes) nor trending and
co-visitation (which need clicks) can be counted on to propose an item in its first minutes; this
source does, newest first. The score falls linearly from 1 (published just now) to 0 (as old as
the window).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from feedrank.candidates.postings import F64, I64

US_PER_MIN = 60_000_000


@dataclass(frozen=True)
class FreshConfig:
    window_min: float = 120.0


def fresh_scores(published_us: I64, t_us: int, config: FreshConfig = FreshConfig()) -> F64:
    """(I,) score of each item at t: 1 - age / window for items published in (t - window, t]."""
    window = config.window_min * US_PER_MIN
    age = (t_us - published_us).astype(np.float64)
    out: F64 = np.where((age >= 0) & (age < window), 1.0 - age / window, 0.0)
    return out


def fresh_active(published_us: I64, t_us: int, config: FreshConfig = FreshConfig()) -> tuple[I64, F64]:
    """`fresh_scores` of the items in the window only: (rows ascending, their scores)."""
    scores = fresh_scores(published_us, t_us, config)
    rows = np.flatnonzero(scores > 0)
    return rows.astype(np.int64), scores[rows]


class FreshItems:
    """Publication times kept sorted, so the items of the fresh window are found by two binary
    searches: a request costs O(log catalog + items in the window) instead of a pass over the
    catalog. The catalog only grows: `sync` takes the rows appended since the last call. Thread-safe.
    """

    def __init__(self, config: FreshConfig = FreshConfig()) -> None:
        self.config = config
        self._sorted = np.zeros(0, dtype=np.int64)  # publication times, ascending
        self._rows = np.zeros(0, dtype=np.int64)  # the row of each, ties by row
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._rows.size)

    def sync(self, published_us: I64) -> None:
        """Take the rows of `published_us` (the whole catalog's, rows 0..) not taken yet."""
        with self._lock:
            start = self._rows.size
            if published_us.size <= start:
                return
            times = np.concatenate([self._sorted, published_us[start:]])
            rows = np.concatenate([self._rows, np.arange(start, published_us.size, dtype=np.int64)])
            order = np.lexsort((rows, times))
            self._sorted, self._rows = times[order], rows[order]

    def active(self, t_us: int) -> tuple[I64, F64]:
        """`fresh_active` over the rows taken so far (equal scores: the same formula per item)."""
        window = self.config.window_min * US_PER_MIN
        with self._lock:
            times, rows = self._sorted, self._rows
        # age in [0, window): published in (t - window, t]; the bounds only narrow the search
        lo = int(np.searchsorted(times, t_us - int(window), side="left"))
        hi = int(np.searchsorted(times, t_us, side="right"))
        order = np.argsort(rows[lo:hi])  # distinct rows: no stable sort needed (17 ms vs 0.4 ms for 28k)
        picked = rows[lo:hi][order]
        scores = fresh_scores(times[lo:hi][order], t_us, self.config)
        keep = scores > 0
        return picked[keep], scores[keep]
