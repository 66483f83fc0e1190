"""Co-visitation baseline: "people who clicked what you just clicked also clicked this".

A co-click is a pair of clicks by the same user on two different items at most `window` apart;
it counts for both directions (h, c) and (c, h) and becomes known at the time of the later click.
The score of candidate c for a user at time t is

    sum over the user's last `num_recent` clicks h strictly before t of
        #co-clicks (h, c) known strictly before min(t, until)

(a click repeated in the recent list counts again). Both parts are leak-free: the recent clicks
and the pair counts are looked up "strictly before t" for every row, from all events given to
`fit`. `until` (optional) freezes the pair counts at a fit-window end, as a co-visitation table
built once at training time would be, while recent clicks still come from everything before t.

Pairs are found by comparing each click with the next `max_lag` clicks of the same user in time
order (`feedrank.candidates.covisitation.co_clicks`, shared with the served co-visitation source);
`max_lag` bounds the cost of bots that click hundreds of items an hour.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Self

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.candidates.covisitation import co_clicks as co_clicks  # re-exported for callers
from feedrank.data.timeline import EventIndex
from feedrank.eval.arrays import sorted_unique
from feedrank.eval.baselines import Clicks, IdCodes, query_micros

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CoVisitation:
    """Co-click counts between a user's recent clicks and each candidate (see the module docstring).

    Args:
        window: largest time between two clicks that still makes a co-click.
        num_recent: M, how many of the user's latest clicks vote for candidates.
        max_lag: compare each click with at most this many following clicks of the same user.
        until: if set, only co-clicks whose later click is strictly before `until` count.
    """

    items_: IdCodes
    users_: IdCodes
    pairs_: EventIndex  # key: item h * num_items + item c, time of the later click
    pair_keys_: I64  # (P,) sorted distinct pair keys, to skip lookups of pairs never seen
    recent_: EventIndex  # key: user, value: item clicked

    def __init__(
        self,
        window: timedelta = timedelta(hours=1),
        num_recent: int = 10,
        max_lag: int = 50,
        until: datetime | None = None,
    ) -> None:
        if window < timedelta(0) or num_recent < 1 or max_lag < 1:
            raise ValueError(
                f"need window >= 0, num_recent >= 1, max_lag >= 1; got {window}, {num_recent}, {max_lag}"
            )
        self.window = window
        self.num_recent = num_recent
        self.max_lag = max_lag
        self.until = until

    def fit(self, events: pl.DataFrame) -> Self:
        clicks = Clicks.of(events)  # sorted by (user, ts, item)
        self.items_ = IdCodes.from_values(clicks.item_ids)
        self.users_ = IdCodes.from_values(clicks.user_ids)
        user = self.users_.codes(clicks.user_ids)
        item = self.items_.codes(clicks.item_ids)
        first, second, ts = co_clicks(
            user, item, clicks.ts_us, self.window // timedelta(microseconds=1), self.max_lag
        )
        if self.until is not None:
            keep = ts < _micros(self.until)
            first, second, ts = first[keep], second[keep], ts[keep]
        num_items = len(self.items_)
        # Both directions: a co-click of (h, c) recommends c after h and h after c.
        keys = np.concatenate([first * num_items + second, second * num_items + first])
        self.pairs_ = EventIndex(keys, np.concatenate([ts, ts]))
        self.pair_keys_ = sorted_unique(keys)
        self.recent_ = EventIndex(user, clicks.ts_us, item)
        logger.info(
            "co-visitation: %d clicks, %d co-clicks, %d distinct pairs",
            user.size,
            ts.size,
            self.pair_keys_.size,
        )
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        """(N,) summed co-click counts for (N,) users (str), times (datetime64) and items (str)."""
        if not (len(user_ids) == len(ts) == len(item_ids)):
            raise ValueError("user_ids, ts and item_ids must have the same length")
        if not hasattr(self, "pairs_"):
            raise RuntimeError("CoVisitation.fit() must be called before score()")
        t = query_micros(ts)
        cand = self.items_.codes(item_ids)  # (N,)
        recent = self.recent_.last_n(self.users_.codes(user_ids), t, self.num_recent, pad=-1)  # (N, M)
        keys = recent * len(self.items_) + cand[:, None]  # (N, M)
        rows, cols = np.nonzero((recent >= 0) & (cand >= 0)[:, None])
        keys = keys[rows, cols]
        # Most (recent, candidate) pairs were never co-clicked: drop them before the time lookups.
        idx = np.minimum(np.searchsorted(self.pair_keys_, keys), max(self.pair_keys_.size - 1, 0))
        known = self.pair_keys_[idx] == keys if self.pair_keys_.size else np.zeros(keys.size, dtype=bool)
        rows, keys = rows[known], keys[known]
        cutoff = t[rows] if self.until is None else np.minimum(t[rows], _micros(self.until))
        counts = self.pairs_.count_before(keys, cutoff)
        return np.bincount(rows, weights=counts, minlength=len(item_ids)).astype(np.float64)


def _micros(when: datetime) -> int:
    """µs since the epoch of a datetime; a naive one is taken as UTC."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return (aware - EPOCH) // timedelta(microseconds=1)
