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

    Each event is sorted under one composite int64 `key * (T + 1) + rank(time)`, where rank is the
    time's position among the T distinct event times; "events of key k before t" is then the
    range between two `np.searchsorted` calls, for any number of queries at once.
    """

    def __init__(self, keys: np.ndarray, times: np.ndarray, values: np.ndarray | None = None) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        ordered = np.sort(times)  # np.unique is many times slower than a sort on numpy 2.4
        self._times = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered
        self._stride = np.int64(self._times.size + 1)
        if keys.size and int(keys.max()) >= (2**62) // int(self._stride):
            raise ValueError(
                f"event keys up to {int(keys.max())} with {self._times.size} distinct times overflow int64"
            )
        composite = keys * self._stride + np.searchsorted(self._times, times)
        order = np.argsort(composite, kind="stable")  # stable: ties keep input order
        self._composite = composite[order]
        self.keys = keys[order]
        self.times = times[order]
        self.values = None if values is None else np.asarray(values)[order]
        self._prefix: np.ndarray | None = None  # cumulative sums of values, built on first use

    def __len__(self) -> int:
        return int(self.keys.size)

    def _bound(self, query_keys: np.ndarray, query_times: np.ndarray) -> np.ndarray:
        """(Q,) index of the first event of each query's key with time >= t (events before it are < t)."""
        rank = np.searchsorted(self._times, np.asarray(query_times, dtype=np.int64), side="left")
        bound: np.ndarray = np.searchsorted(
            self._composite, np.asarray(query_keys, dtype=np.int64) * self._stride + rank, side="left"
        )
        return bound

    def _position(self, query_keys: np.ndarray, query_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query: index range [start, end) of its key's events with time < t."""
        qk = np.asarray(query_keys, dtype=np.int64)
        start: np.ndarray = np.searchsorted(self._composite, qk * self._stride, side="left")
        return start, self._bound(qk, query_times)

    def count_before(
        self, query_keys: np.ndarray, query_times: np.ndarray, window_us: int | None = None
    ) -> np.ndarray:
        """(Q,) number of events of each query's key with time in [t - window, t) (or < t)."""
        start, end = self._position(query_keys, query_times)
        if window_us is None:
            counts: np.ndarray = end - start
            return counts
        lo = self._bound(query_keys, np.asarray(query_times, dtype=np.int64) - window_us)
        in_window: np.ndarray = end - lo
        return in_window

    def sum_before(
        self, query_keys: np.ndarray, query_times: np.ndarray, window_us: int | None = None
    ) -> np.ndarray:
        """(Q,) sum of the (numeric) values of each query's key's events in [t - window, t) (or < t)."""
        if self.values is None:
            raise ValueError("this EventIndex holds no values")
        if self._prefix is None:
            self._prefix = np.concatenate([[0.0], np.cumsum(self.values, dtype=np.float64)])
        start, end = self._position(query_keys, query_times)
        if window_us is not None:
            start = self._bound(query_keys, np.asarray(query_times, dtype=np.int64) - window_us)
        total: np.ndarray = self._prefix[end] - self._prefix[start]
        return total

    def latest_before(self, query_keys: np.ndarray, query_times: np.ndarray) -> np.ndarray:
        """(Q,) index (into `keys`/`times`/`values`) of each key's latest event before t; -1 if none."""
        start, end = self._position(query_keys, query_times)
        latest: np.ndarray = np.where(end > start, end - 1, -1)
        return latest

    def earliest_before(self, query_keys: np.ndarray, query_times: np.ndarray) -> np.ndarray:
        """(Q,) index of each key's earliest event before t; -1 if none."""
        start, end = self._position(query_keys, query_times)
        earliest: np.ndarray = np.where(end > start, start, -1)
        return earliest

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
