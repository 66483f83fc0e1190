"""View indexes over part of the log: what queries at or after a time read, and no more.

`PastEvents.bound_views` (data/history.py) lets a ranker trained on the latest rows of a large
log index the impressions from a lower bound on (`lo`, 48 h before its first query) instead of
every impression. What the queries read from before the bound is kept in a compact form:

- the item view index: each item's first view (its age when it has no publication time);
- the category view counts (all-time, by category and by user x category): the count of the
  views before the bound per key, added to the index's count of those after it (`CountedIndex`).

Each is read a shard at a time, so no array over every impression is made.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from feedrank.data.event_log import Shown
from feedrank.data.query_scope import user_scope
from feedrank.data.timeline import EventIndex
from feedrank.memory import release_free_memory

MERGE_ROWS = 4_000_000  # partial per-key counts held before they are summed into one frame


class CountedIndex:
    """`count_before` of an index over the events at or after `lo`, plus each key's count of
    the events before it: every event's count for queries at t >= lo (the only method)."""

    def __init__(self, after: EventIndex, base_keys: np.ndarray, base_counts: np.ndarray) -> None:
        self.after = after
        order = np.argsort(base_keys)
        self.base_keys, self.base_counts = base_keys[order], base_counts[order]

    def __len__(self) -> int:
        return len(self.after) + int(self.base_counts.sum())

    def count_before(self, query_keys: np.ndarray, query_times: np.ndarray) -> np.ndarray:
        keys = np.asarray(query_keys, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.base_keys, keys), max(self.base_keys.size - 1, 0))
        found = (self.base_keys[at] == keys) if self.base_keys.size else np.zeros(keys.size, dtype=bool)
        base = np.where(found, self.base_counts[at] if self.base_keys.size else 0, 0)
        counts: np.ndarray = self.after.count_before(keys, query_times) + base
        return counts


def counted(keys: np.ndarray, times: np.ndarray, lo_us: int) -> CountedIndex:
    """A `CountedIndex` of events (key, time) for queries at or after `lo_us`."""
    late = times >= lo_us
    base_keys, base_counts = np.unique(keys[~late], return_counts=True)
    return CountedIndex(EventIndex(keys[late], times[late]), base_keys.astype(np.int64), base_counts)


def views_after(items: Iterable[Shown], num_items: int, lo_us: int) -> EventIndex:
    """The item views at or after `lo_us`, and the first view of every item first seen before it."""
    first = np.full(num_items, np.iinfo(np.int64).max, dtype=np.int64)
    rows, times = [], []
    for chunk in items:
        known = chunk.rows >= 0
        item, ts = chunk.rows[known], chunk.ts[known]
        mins = pl.DataFrame({"item": item, "ts": ts}).group_by("item").agg(pl.col("ts").min())
        np.minimum.at(first, mins.get_column("item").to_numpy(), mins.get_column("ts").to_numpy())
        late = ts >= lo_us
        rows.append(item[late])
        times.append(ts[late])
    early = np.flatnonzero(first < lo_us)
    index = EventIndex(np.concatenate([early, *rows]), np.concatenate([first[early], *times]))
    del rows, times
    release_free_memory()  # the shards' arrays, freed on the heap (feedrank/memory.py)
    return index


class _KeyCounts:
    """Events per int64 key, summed over chunks. Partial counts are merged once they hold more
    than MERGE_ROWS rows and twice the last merge's keys: merging whenever they passed MERGE_ROWS
    regrouped every key at every shard once the keys alone were more (10M+ user x category keys
    at 100M impressions), which ran for minutes."""

    def __init__(self) -> None:
        self.parts: list[pl.DataFrame] = []
        self.rows = 0
        self.merged = 0  # keys after the last merge

    def add(self, keys: np.ndarray) -> None:
        if keys.size:
            part = pl.DataFrame({"key": keys}).group_by("key").agg(pl.len().cast(pl.Int64).alias("n"))
            self.parts.append(part)
            self.rows += part.height
        if self.rows > max(MERGE_ROWS, 2 * self.merged):
            self.parts = [self.total()]
            self.rows = self.merged = self.parts[0].height

    def total(self) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame({"key": [], "n": []}, schema={"key": pl.Int64, "n": pl.Int64})
        return pl.concat(self.parts).group_by("key").agg(pl.col("n").sum())

    def index(self, keys: list[np.ndarray], times: list[np.ndarray]) -> CountedIndex:
        base = self.total()
        after = (
            EventIndex(np.concatenate(keys), np.concatenate(times))
            if keys
            else EventIndex(_empty(), _empty())
        )
        return CountedIndex(after, base.get_column("key").to_numpy(), base.get_column("n").to_numpy())


class KeyChunks:
    """`counted` over events given a chunk at a time: the same `CountedIndex` as on their
    concatenation, without holding the events before the bound."""

    def __init__(self, lo_us: int) -> None:
        self.lo_us = lo_us
        self.before = _KeyCounts()
        self.keys: list[np.ndarray] = []
        self.times: list[np.ndarray] = []

    def add(self, keys: np.ndarray, times: np.ndarray) -> None:
        late = times >= self.lo_us
        self.before.add(keys[~late])
        self.keys.append(keys[late])
        self.times.append(times[late])

    def index(self) -> CountedIndex:
        return self.before.index(self.keys, self.times)


def category_views_after(
    chunks: Iterable[tuple[Shown, Shown]],
    category: np.ndarray,
    num_categories: int,
    lo_us: int,
    query_users: np.ndarray | None = None,
) -> tuple[CountedIndex, CountedIndex]:
    """Impressions keyed by category bucket, and by user row * num_categories + category (as
    `PastEvents.category_views`), for queries at or after `lo_us`; `chunks` are (user, item)
    column pairs of the same impressions. `query_users` (data/query_scope.py): the by-user counts
    keep those users' views alone (every user's when None)."""
    by_category, by_user = _KeyCounts(), _KeyCounts()
    cats, keys, times, user_times = [], [], [], []
    for users, items in chunks:
        known = (users.rows >= 0) & (items.rows >= 0)
        cat = category[items.rows[known]]
        ts = users.ts[known]
        late = ts >= lo_us
        by_category.add(cat[~late])
        cats.append(cat[late])
        times.append(ts[late])
        asked = user_scope(query_users, users.rows[known])
        key = users.rows[known][asked] * num_categories + cat[asked]
        late = late[asked]
        by_user.add(key[~late])
        keys.append(key[late])
        user_times.append(ts[asked][late])
    indexes = by_category.index(cats, times), by_user.index(keys, user_times)
    del cats, keys, times, user_times
    release_free_memory()  # the shards' arrays, freed on the heap (feedrank/memory.py)
    return indexes


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)
