"""Which queries an index must answer: the users and the last time `PastEvents.bound_queries` keeps.

A ranker trained on the latest rows of a large log asks for features of a few of the log's users
(its training rows', its validation sample's) at times up to its last validation query. Events
after that time are never read (a query at t reads events before t), and an index keyed by user
answers a user from that user's events alone. So, under `bound_queries` (data/history.py):

- every index reads the events up to the last query time, none after;
- the indexes keyed by user hold the events of the users asked for. Indexes keyed by item,
  category or demographic group, and the user click index, which the candidate sources read for
  every user's clicks, keep every user's events.

A query outside the bounds would get wrong counts, not an error, from the bounded indexes, so
`check_scope` raises on it instead.
"""

from __future__ import annotations

import numpy as np


def users_mask(user_rows: np.ndarray) -> np.ndarray:
    """(max row + 1,) bool: True at each user row of `user_rows` (rows < 0, unknown users, skipped)."""
    rows = np.asarray(user_rows, dtype=np.int64)
    rows = rows[rows >= 0]
    mask = np.zeros(int(rows.max(initial=-1)) + 1, dtype=bool)
    mask[rows] = True
    return mask


def user_scope(mask: np.ndarray | None, user_rows: np.ndarray) -> np.ndarray:
    """(N,) bool: each row's user is in `mask` (every row when mask is None; a row < 0 is not)."""
    rows = np.asarray(user_rows, dtype=np.int64)
    if mask is None:
        return np.ones(rows.shape, dtype=bool)
    inside = (rows >= 0) & (rows < mask.size)
    out: np.ndarray = inside & mask[np.where(inside, rows, 0)]
    return out


def check_scope(
    until_us: int | None, mask: np.ndarray | None, user_rows: np.ndarray | None, ts_us: np.ndarray
) -> None:
    """Raise if a query is later than `until_us` or asks for a known user (row >= 0) outside
    `mask`; unknown users (-1) read no user-keyed events, so they are always in bounds."""
    t = np.asarray(ts_us)
    if until_us is not None and t.size and int(t.max()) > until_us:
        raise ValueError(
            f"features asked at {int(t.max())} µs, after {until_us} µs, the last query time the "
            "indexes were bounded to (PastEvents.bound_queries)"
        )
    if mask is None or user_rows is None:
        return
    rows = np.asarray(user_rows, dtype=np.int64)
    outside = (rows >= 0) & ~user_scope(mask, rows)
    if outside.any():
        raise ValueError(
            f"features asked for user row {int(rows[outside][0])} ({int(outside.sum())} rows in all), "
            "which the user-keyed indexes do not hold (PastEvents.bound_queries)"
        )
