"""Leak-free lookups over time-stamped events: "how many before t" and "the last n before t".

Every feature that looks at the past (user history, popularity, affinity) goes through
`EventIndex`, which answers for many (key, t) queries at once counting only events with time
strictly less than t. Events are sorted once by (key, time); a query is two binary searches on a
composite key, so a million queries take well under a second and nothing from time t or later can
reach a feature computed for time t.

Times are int64 microseconds since the epoch; keys are non-negative int64 (e.g. a user index).
An event without a time (the pre-window history of some sources) is given `NO_TIME`, which sorts
before every real time.
"""

from __future__ import annotations

import numpy as np

NO_TIME = np.iinfo(np.int64).min


class EventIndex:
    """Events (key, time, value) sorted for strictly-before queries.

    Args:
        keys: (E,) int64 event keys, >= 0.
        times: (E,) int64 microseconds; NO_TIME for "before everything".
        values: (E,) optional payload returned by `last_n` (e.g. item buckets); kept in event order
            within a key and time (a stable sort), so ties keep their input order.
    """

    def __init__(self, keys: np.ndarray, times: np.ndarray, values: np.ndarray | None = None) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        order = np.lexsort((times, keys))  # stable: ties keep input order
        self.keys = keys[order]
        self.times = times[order]
        self.values = None if values is None else np.asarray(values)[order]

    def __len__(self) -> int:
        return int(self.keys.size)

    def _position(self, query_keys: np.ndarray, query_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query: index range [start, end) of its key's events with time < t."""
        qk = np.asarray(query_keys, dtype=np.int64)
        qt = np.asarray(query_times, dtype=np.int64)
        start = np.searchsorted(self.keys, qk, side="left")
        stop = np.searchsorted(self.keys, qk, side="right")
        return start, _searchsorted_blocks(self.times, start, stop, qt)

    def count_before(
        self, query_keys: np.ndarray, query_times: np.ndarray, window_us: int | None = None
    ) -> np.ndarray:
        """(Q,) number of events of each query's key with time in [t - window, t) (or < t)."""
        start, end = self._position(query_keys, query_times)
        if window_us is None:
            counts: np.ndarray = end - start
            return counts
        qt = np.asarray(query_times, dtype=np.int64)
        stop = np.searchsorted(self.keys, np.asarray(query_keys, dtype=np.int64), side="right")
        lo = _searchsorted_blocks(self.times, start, stop, qt - window_us)
        in_window: np.ndarray = end - lo
        return in_window

    def last_n(self, query_keys: np.ndarray, query_times: np.ndarray, n: int, pad: int = 0) -> np.ndarray:
        """(Q, n) values of the latest n events strictly before t, oldest first, left-padded with `pad`."""
        if self.values is None:
            raise ValueError("this EventIndex holds no values")
        start, end = self._position(query_keys, query_times)
        cols = end[:, None] - n + np.arange(n)[None, :]  # (Q, n) candidate event indices
        valid = cols >= start[:, None]
        out = np.full(cols.shape, pad, dtype=self.values.dtype)
        out[valid] = self.values[cols[valid]]
        return out


def _searchsorted_blocks(times: np.ndarray, start: np.ndarray, stop: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Vectorized searchsorted(times[start:stop], t, 'left') + start for many blocks at once.

    A branch-free binary search run for all queries in lock-step: log2(max block) iterations of
    numpy operations, instead of one Python-level searchsorted per key.
    """
    lo = start.astype(np.int64).copy()
    hi = stop.astype(np.int64).copy()
    if times.size == 0:
        return lo
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        mid_safe = np.minimum(mid, times.size - 1)
        go_right = active & (times[mid_safe] < t)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
