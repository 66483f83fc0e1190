"""Time-stamped events per key, appended in any order and read "strictly before t".

The store behind every candidate source: trending keeps one key (all clicks), co-visitation one
key per first item (its co-click pairs) and one per user (their clicks). Appends are O(1) into a
pending buffer; the first read of a key afterwards merges the buffer into sorted arrays, so a
service that takes events one by one and answers requests in between pays one small sort per key
touched. Because every read filters on time, a store that has seen events at or after t answers a
query at t exactly as a store that never saw them: the leak-free property of every source.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class Slice:
    """The events of one key in a time range, oldest first."""

    ts: I64  # (n,) µs
    values: I64  # (n,) e.g. item rows
    weights: F64  # (n,)


@dataclass
class _Run:
    ts: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    values: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    weights: F64 = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    pending: list[tuple[int, int, float]] = field(default_factory=list)

    def settle(self) -> None:
        if not self.pending:
            return
        ts, values, weights = (np.array(c) for c in zip(*self.pending, strict=True))
        self.pending = []
        self.append(ts.astype(np.int64), values.astype(np.int64), weights.astype(np.float64))

    def append(self, ts: I64, values: I64, weights: F64) -> None:
        self.ts = np.concatenate([self.ts, ts])
        self.values = np.concatenate([self.values, values])
        self.weights = np.concatenate([self.weights, weights])
        if self.ts.size > 1 and bool((self.ts[1:] < self.ts[:-1]).any()):
            order = np.argsort(self.ts, kind="stable")  # late arrivals: keep arrival order on ties
            self.ts, self.values, self.weights = self.ts[order], self.values[order], self.weights[order]


class Postings:
    """Per-key (time, value, weight) events; thread-safe.

    `max_keys`: at most this many keys are kept; a new key beyond it drops the key written least
    recently with all its events (e.g. serving's per-user clicks under a stream of new users).
    """

    def __init__(self, max_keys: int | None = None) -> None:
        self._runs: dict[Hashable, _Run] = {}  # in order of the last write (with max_keys)
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self.evicted_keys = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(r.ts.size + len(r.pending) for r in self._runs.values())

    def add(self, key: Hashable, ts_us: int, value: int, weight: float = 1.0) -> None:
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                run = self._runs[key] = _Run()
            elif self.max_keys is not None:
                self._runs[key] = self._runs.pop(key)  # now the most recently written
            run.pending.append((int(ts_us), int(value), float(weight)))
            self._evict()

    def extend(self, keys: np.ndarray, ts_us: I64, values: I64, weights: F64 | None = None) -> None:
        """Bulk load: one sort for all events, then one array slice per key."""
        if keys.size == 0:
            return
        ts_us = np.asarray(ts_us, dtype=np.int64)
        values = np.asarray(values, dtype=np.int64)
        weights = np.ones(keys.size) if weights is None else np.asarray(weights, dtype=np.float64)
        order = np.argsort(ts_us, kind="stable")  # by key, then time, ties in input order
        order = order[np.argsort(keys[order], kind="stable")]  # (keys may be str: no lexsort)
        keys, ts_us, values, weights = keys[order], ts_us[order], values[order], weights[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], keys.size]
        if self.max_keys is not None:  # keys in order of their latest event: the latest are kept
            by_latest = np.argsort(ts_us[ends - 1], kind="stable")
            starts, ends = starts[by_latest], ends[by_latest]
        firsts = keys[starts].tolist()  # Python keys (ints for an int array), one conversion for all
        with self._lock:
            for key, s, e in zip(firsts, starts.tolist(), ends.tolist(), strict=True):
                run = self._runs.get(key)
                if run is None:
                    # A new key's events are its sorted slice as they are: no concatenation or
                    # order check per key (a bulk load of 500k keys spent 14 s in them).
                    self._runs[key] = _Run(ts_us[s:e], values[s:e], weights[s:e])
                    continue
                if self.max_keys is not None:
                    self._runs[key] = self._runs.pop(key)
                run.settle()
                run.append(ts_us[s:e], values[s:e], weights[s:e])
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently written keys beyond `max_keys` (the lock is held)."""
        if self.max_keys is None:
            return
        while len(self._runs) > self.max_keys:
            del self._runs[next(iter(self._runs))]
            self.evicted_keys += 1

    def between(self, key: Hashable, start_us: int | None, end_us: int) -> Slice:
        """Events of `key` with start <= time < end (no lower bound when start is None)."""
        return self._slice(key, end_us, start_us=start_us)

    def last(self, key: Hashable, end_us: int, n: int) -> Slice:
        """The latest n events of `key` strictly before end, oldest first."""
        return self._slice(key, end_us, n=n)

    def _slice(
        self, key: Hashable, end_us: int, *, start_us: int | None = None, n: int | None = None
    ) -> Slice:
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                empty = np.zeros(0, dtype=np.int64)
                return Slice(empty, empty, np.zeros(0))
            run.settle()
            hi = int(np.searchsorted(run.ts, end_us, side="left"))  # strictly before end
            lo = 0 if start_us is None else int(np.searchsorted(run.ts, start_us, side="left"))
            if n is not None:
                lo = max(lo, hi - n)
            return Slice(run.ts[lo:hi], run.values[lo:hi], run.weights[lo:hi])

    def prune(self, before_us: int) -> int:
        """Forget events older than `before_us` (bounded memory in the service); returns how many."""
        dropped = 0
        with self._lock:
            for key in list(self._runs):
                run = self._runs[key]
                run.settle()
                cut = int(np.searchsorted(run.ts, before_us, side="left"))
                if cut:
                    dropped += cut
                    run.ts, run.values, run.weights = run.ts[cut:], run.values[cut:], run.weights[cut:]
                if run.ts.size == 0:
                    del self._runs[key]
        return dropped


def compact(values: I64, num_values: int) -> tuple[I64, I64]:
    """The distinct values (ascending) and each value's position among them: `np.unique` with
    `return_inverse`. When the values are many for their range, a pass over the range is cheaper
    than sorting them; either way the cost is bounded by O(values · log values), not the range."""
    if num_values <= 8 * values.size:
        present = np.bincount(values, minlength=num_values) > 0
        slot = np.cumsum(present) - 1
        rows: I64 = np.flatnonzero(present).astype(np.int64)
        return rows, slot[values].astype(np.int64)
    rows, at = np.unique(values, return_inverse=True)
    return rows.astype(np.int64), at.astype(np.int64).reshape(-1)
