"""Recent popularity as the feed score: the baseline served through the service's own path.

Candidates come from the same union (ANN, trending, co-visitation, fresh) and the same re-ranker
runs after; only the ranker's score is replaced by the item's clicks over the last `window_h`
hours before the request: the bundle's snapshot of past clicks plus the clicks the service took
since (`OnlineEvents.item_clicks`). Ties keep the candidate pool's order. Pass an instance as a
Recommender's `score_by`.
"""

from __future__ import annotations

import numpy as np

from feedrank.data.history import PastEvents
from feedrank.serve.online import US_PER_HOUR, OnlineEvents


class RecentPopularity:
    """(B, N) clicks of each candidate row in the window before now; NaN for padding (-1)."""

    def __init__(self, past: PastEvents, online: OnlineEvents, window_h: float = 24.0) -> None:
        self.past = past
        self.online = online
        self.window_us = int(window_h * US_PER_HOUR)

    def __call__(self, rows: np.ndarray, now_us: int) -> np.ndarray:
        out = np.full(rows.shape, np.nan)
        valid = rows >= 0
        items = rows[valid]
        times = np.full(items.size, now_us, dtype=np.int64)
        snapshot = self.past.item_clicks.count_before(items, times, self.window_us)
        out[valid] = snapshot + self.online.item_clicks(items, now_us, self.window_us)
        return out
