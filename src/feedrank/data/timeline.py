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

import functools
from typing import Literal

import numpy as np

NO_TIME = np.iinfo(np.int64).min
SORT_QUERIES = 4096  # from this many queries on, search them in sorted order


def search(haystack: np.ndarray, needles: np.ndarray, side: Literal["left", "right"] = "left") -> np.ndarray:
    """`np.searchsorted(haystack, needles, side)`, the same numbers: many needles are searched in
    sorted order (consecutive searches then walk the same cached part of a large haystack; on
    200k queries into 1.5M events, sorting first and searching took a fifth of the time)."""
    if needles.size < SORT_QUERIES:
        found: np.ndarray = np.searchsorted(haystack, needles, side=side)
        return found
    order = np.argsort(needles)
    out = np.empty(needles.size, dtype=np.int64)
    out[order] = np.searchsorted(haystack, needles[order], side=side)
    return out


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
        self.values = None if values is None else np.asarray(values)[order]
        self._prefix: np.ndarray | None = None  # cumulative sums of values, built on first use

    @functools.cached_property
    def keys(self) -> np.ndarray:
        """(E,) the events' keys in index order, derived from the composite key the first time
        they are read: the queries never need them, and held beside it they were 8 bytes an event
        more (a two-tower's history index never reads them)."""
        keys: np.ndarray = self._composite // self._stride
        return keys

    @functools.cached_property
    def times(self) -> np.ndarray:
        """(E,) the events' µs times in index order (the composite's time rank, looked up)."""
        times: np.ndarray = self._times[self._composite % self._stride]
        return times

    def times_at(self, positions: np.ndarray) -> np.ndarray:
        """(Q,) µs of the events at `positions` (index order), without building `times` for all:
        a lookup of a few positions need not hold 8 bytes for every event beside the index."""
        if "times" in self.__dict__:
            held: np.ndarray = self.times[positions]
            return held
        at: np.ndarray = self._times[self._composite[positions] % self._stride]
        return at

    def decoded(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, times) of every event in index order, made for the caller and not kept (the
        cached `keys` / `times` would stay beside the index for as long as it lives)."""
        keys = self.__dict__.get("keys")
        times = self.__dict__.get("times")
        return (
            keys if keys is not None else self._composite // self._stride,
            times if times is not None else self._times[self._composite % self._stride],
        )

    def __len__(self) -> int:
        return int(self._composite.size)

    def _ranks(self, query_times: np.ndarray) -> np.ndarray:
        """(Q,) position of each t among the distinct event times, searched once per run of equal
        times: the rows of one query (a click and its negatives, a candidate pool) share t."""
        t = np.asarray(query_times, dtype=np.int64)
        firsts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]]) if t.size else np.zeros(0, np.int64)
        if 2 * firsts.size > t.size:
            return search(self._times, t)
        found = search(self._times, t[firsts])
        return np.repeat(found, np.diff(np.r_[firsts, t.size]))

    def ends(self, query_keys: np.ndarray, query_times: np.ndarray) -> np.ndarray:
        """(Q,) index of the first event of each query's key with time >= t (events before it are < t)."""
        needles = np.asarray(query_keys, dtype=np.int64) * self._stride + self._ranks(query_times)
        return search(self._composite, needles)

    def starts(self, query_keys: np.ndarray) -> np.ndarray:
        """(Q,) index of the first event of each query's key (its events are [start, ends))."""
        return search(self._composite, np.asarray(query_keys, dtype=np.int64) * self._stride)

    def _position(self, query_keys: np.ndarray, query_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query: index range [start, end) of its key's events with time < t."""
        qk = np.asarray(query_keys, dtype=np.int64)
        return self.starts(qk), self.ends(qk, query_times)

    def count_before(
        self, query_keys: np.ndarray, query_times: np.ndarray, window_us: int | None = None
    ) -> np.ndarray:
        """(Q,) number of events of each query's key with time in [t - window, t) (or < t)."""
        qk = np.asarray(query_keys, dtype=np.int64)
        t = np.asarray(query_times, dtype=np.int64)
        lo = self.starts(qk) if window_us is None else self.ends(qk, t - window_us)
        counts: np.ndarray = self.ends(qk, t) - lo
        return counts

    def sum_before(
        self, query_keys: np.ndarray, query_times: np.ndarray, window_us: int | None = None
    ) -> np.ndarray:
        """(Q,) sum of the (numeric) values of each query's key's events in [t - window, t) (or < t)."""
        if self.values is None:
            raise ValueError("this EventIndex holds no values")
        if self._prefix is None:
            self._prefix = np.concatenate([[0.0], np.cumsum(self.values, dtype=np.float64)])
        qk = np.asarray(query_keys, dtype=np.int64)
        t = np.asarray(query_times, dtype=np.int64)
        start = self.starts(qk) if window_us is None else self.ends(qk, t - window_us)
        total: np.ndarray = self._prefix[self.ends(qk, t)] - self._prefix[start]
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
