"""Sessions and co-visitation pairs, indexed for strictly-before lookups.

A user's *session* is a run of their activity (requests and clicks) with no gap longer than
`SESSION_GAP_US`; at time t the current session is the one the user's latest activity before t
belongs to, provided that activity is at most one gap old (otherwise t opens a new session).

A *co-visitation pair* (a, b) is "a user clicked a and then, as the next click of the same
session, b". The pair is stamped with the time of its second click, so a lookup at t counts only
pairs whose two clicks both happened before t: nothing about the click at t (or after) can reach
a feature computed for t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.data.timeline import NO_TIME, EventIndex, search

SESSION_GAP_US = 30 * 60 * 1_000_000  # 30 minutes of inactivity end a session


@dataclass(frozen=True)
class SessionState:
    """Each query's current session at t, from the activity strictly before t."""

    activities: np.ndarray  # (Q,) int64 requests/clicks in the session before t; 0 opens a new one
    start_us: np.ndarray  # (Q,) int64 time of the session's first activity; NO_TIME when none


class SessionIndex:
    """Per-user activity times with each activity's position in its session.

    Args:
        user_rows: (E,) int64 user of each activity (a request or a click), >= 0.
        times: (E,) int64 µs; activities without a time (NO_TIME) are ignored, and repeated
            (user, time) pairs (the rows of one request) count once.
        gap_us: inactivity that ends a session.
    """

    def __init__(self, user_rows: np.ndarray, times: np.ndarray, gap_us: int = SESSION_GAP_US) -> None:
        users = np.asarray(user_rows, dtype=np.int64)
        ts = np.asarray(times, dtype=np.int64)
        timed = ts != NO_TIME
        users, ts = users[timed], ts[timed]
        order = np.lexsort((ts, users))
        users, ts = users[order], ts[order]
        distinct = np.r_[True, (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])] if users.size else timed[:0]
        users, ts = users[distinct], ts[distinct]
        self.gap_us = gap_us
        self._index = EventIndex(users, ts)  # already sorted by (user, time): its order is ours
        opens = (
            np.r_[True, (users[1:] != users[:-1]) | (ts[1:] - ts[:-1] > gap_us)] if users.size else distinct
        )
        first = np.maximum.accumulate(np.where(opens, np.arange(users.size), 0))  # session's first event
        self._position = np.arange(users.size) - first + 1  # 1-based position within the session
        self._start_us = ts[first] if users.size else ts

    def state(self, user_rows: np.ndarray, ts_us: np.ndarray) -> SessionState:
        """The current session of each (user, t), from activities strictly before t."""
        t = np.asarray(ts_us, dtype=np.int64)
        latest = self._index.latest_before(user_rows, t)
        has = latest >= 0
        at = np.maximum(latest, 0)
        times = self._index.times
        live = has & (t - np.where(has, times[at] if times.size else 0, 0) <= self.gap_us)
        activities = np.where(live, self._position[at] if times.size else 0, 0).astype(np.int64)
        start = np.where(live, self._start_us[at] if times.size else 0, NO_TIME).astype(np.int64)
        return SessionState(activities=activities, start_us=start)


class PairIndex:
    """Counts of consecutive in-session click pairs (a → b), by the time of the second click.

    Args:
        user_rows, item_rows, times: (C,) int64 clicks; clicks without a time are ignored (their
            order relative to timed clicks is unknown).
        num_items: catalog size (pair codes are a * num_items + b).
        gap_us: a pair counts only when b followed a within one session gap.
    """

    def __init__(
        self,
        user_rows: np.ndarray,
        item_rows: np.ndarray,
        times: np.ndarray,
        num_items: int,
        gap_us: int = SESSION_GAP_US,
    ) -> None:
        users = np.asarray(user_rows, dtype=np.int64)
        items = np.asarray(item_rows, dtype=np.int64)
        ts = np.asarray(times, dtype=np.int64)
        timed = ts != NO_TIME
        users, items, ts = users[timed], items[timed], ts[timed]
        order = np.lexsort((ts, users))  # stable: same-time clicks keep their log order
        users, items, ts = users[order], items[order], ts[order]
        follows = (users[1:] == users[:-1]) & (ts[1:] - ts[:-1] <= gap_us) & (items[1:] != items[:-1])
        codes = items[:-1][follows] * num_items + items[1:][follows]
        self.num_items = num_items
        self._codes, keys = np.unique(codes, return_inverse=True)
        self._index = EventIndex(keys.reshape(-1), ts[1:][follows])
        self._from = EventIndex(items[:-1][follows], ts[1:][follows])  # pairs by their first item

    def __len__(self) -> int:
        return len(self._index)

    def count_before(
        self,
        first_rows: np.ndarray,
        second_rows: np.ndarray,
        ts_us: np.ndarray,
        window_us: int | None = None,
    ) -> np.ndarray:
        """(Q,) pairs (first → second) completed before t (within `window_us` before t when given);
        rows < 0 (padding, unknown) count 0."""
        first = np.asarray(first_rows, dtype=np.int64)
        second = np.asarray(second_rows, dtype=np.int64)
        out = np.zeros(first.shape, dtype=np.int64)
        if not self._codes.size:
            return out
        code = first * self.num_items + second
        at = search(self._codes, code)
        hit = (first >= 0) & (second >= 0) & (at < self._codes.size)
        hit &= self._codes[np.minimum(at, self._codes.size - 1)] == code
        out[hit] = self._index.count_before(at[hit], np.asarray(ts_us, dtype=np.int64)[hit], window_us)
        return out

    def count_from(self, first_rows: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """(Q,) pairs starting at `first` (to any item) completed before t; rows < 0 count 0."""
        first = np.asarray(first_rows, dtype=np.int64)
        out = np.zeros(first.shape, dtype=np.int64)
        known = first >= 0
        out[known] = self._from.count_before(first[known], np.asarray(ts_us, dtype=np.int64)[known])
        return out
