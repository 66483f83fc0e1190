"""Baseline scorers printed beside every model: random and popularity (all-time and recent).

The interface, `Scorer`, is deliberately tiny:

    fit(events) -> self
        `events` is the canonical impressions table (data/schema.py IMPRESSIONS: request_id,
        user_id, item_id, ts, clicked, ...) of everything known. It may include the evaluation
        window: fitting only indexes events, it never aggregates across time.
    score(user_ids (N,), ts (N,), item_ids (N,)) -> (N,) float64
        The flat form, one row per (query, candidate) pair, so slates of any size concatenate
        into one call. `score_slates` wraps it for fixed-size (Q, C) candidate grids.

Leak-freedom: a row's score at query time t depends only on events with ts strictly before t.
A click is timed by its request's ts (logs carry no separate click time), so the clicks of the
slate being evaluated (same ts) never count. Consequently scoring against a table truncated at t
gives identical results, which tests/eval checks for every baseline.

Scores are counts (popularity) or uniform noise; ties are left to the metrics, which average
over tied orders. Co-visitation lives in eval/covisitation.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.data.features import to_us
from feedrank.data.timeline import EventIndex
from feedrank.errors import DataError
from feedrank.eval.arrays import sorted_unique

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
EVENT_COLUMNS = ("user_id", "item_id", "ts", "clicked")


class Scorer(Protocol):
    """Anything that scores (user, time, item) rows from the past of each row's time."""

    def fit(self, events: pl.DataFrame) -> Self: ...

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        """(N,) scores, higher is better, of (N,) user ids (str), times (datetime64) and item ids (str)."""
        ...


def score_slates(scorer: Scorer, user_ids: np.ndarray, ts: np.ndarray, candidates: np.ndarray) -> F64:
    """(Q, C) scores of a fixed-size candidate grid: (Q,) users, (Q,) times, (Q, C) item ids."""
    cand = np.asarray(candidates)
    if cand.ndim != 2 or cand.shape[0] != len(user_ids) or len(ts) != len(user_ids):
        raise ValueError(f"candidates {cand.shape} must be (Q, C) for Q = {len(user_ids)} users and times")
    num_cands = cand.shape[1]
    flat = scorer.score(np.repeat(user_ids, num_cands), np.repeat(ts, num_cands), cand.ravel())
    return flat.reshape(cand.shape)


@dataclass(frozen=True)
class IdCodes:
    """Sorted distinct string ids; `codes` maps ids to their index, unknown ids to -1."""

    ids: np.ndarray  # (V,) str, sorted, distinct

    @staticmethod
    def from_values(values: np.ndarray) -> IdCodes:
        return IdCodes(sorted_unique(np.asarray(values, dtype=np.str_)))

    def __len__(self) -> int:
        return int(self.ids.size)

    def codes(self, values: np.ndarray) -> I64:
        """(N,) int64 index of each id in `ids`, -1 where absent."""
        # Fixed-width unicode compares in C; object arrays would compare via Python, ~10x slower.
        v = np.asarray(values, dtype=np.str_)
        if self.ids.size == 0:
            return np.full(v.shape, -1, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self.ids, v), self.ids.size - 1)
        return np.where(self.ids[idx] == v, idx, -1).astype(np.int64)


@dataclass(frozen=True)
class Clicks:
    """The clicked rows of an impressions table, sorted by (user, ts, item); times in µs since the epoch."""

    user_ids: np.ndarray  # (E,) str
    item_ids: np.ndarray  # (E,) str
    ts_us: I64  # (E,)

    @staticmethod
    def of(events: pl.DataFrame) -> Clicks:
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise DataError(f"events table lacks column(s) {missing}; expected the canonical impressions")
        clicked = events.filter(pl.col("clicked")).sort("user_id", "ts", "item_id")
        return Clicks(
            user_ids=clicked.get_column("user_id").to_numpy().astype(np.str_),
            item_ids=clicked.get_column("item_id").to_numpy().astype(np.str_),
            ts_us=to_us(clicked.get_column("ts")),
        )


def query_micros(ts: np.ndarray) -> I64:
    """(N,) int64 µs since the epoch of (N,) UTC datetime64 query times of any unit."""
    return np.asarray(ts).astype("datetime64[us]").astype(np.int64)


def _check_rows(user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> None:
    if not (len(user_ids) == len(ts) == len(item_ids)):
        raise ValueError(
            f"user_ids ({len(user_ids)}), ts ({len(ts)}), item_ids ({len(item_ids)}) differ in length"
        )


class RandomScorer:
    """Uniform [0, 1) noise: the floor every model must beat.

    Each call draws from a fresh generator seeded with `seed`, so the same input gives the same
    scores; the past is never read, so it is leak-free by construction.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, events: pl.DataFrame) -> Self:
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        _check_rows(user_ids, ts, item_ids)
        return np.random.default_rng(self.seed).random(len(item_ids))


class GlobalPopularity:
    """Clicks on the candidate item over all events strictly before the query time."""

    window: timedelta | None = None
    items_: IdCodes
    clicks_: EventIndex

    def fit(self, events: pl.DataFrame) -> Self:
        clicks = Clicks.of(events)
        self.items_ = IdCodes.from_values(clicks.item_ids)
        self.clicks_ = EventIndex(self.items_.codes(clicks.item_ids), clicks.ts_us)
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        _check_rows(user_ids, ts, item_ids)
        if not hasattr(self, "clicks_"):
            raise RuntimeError(f"{type(self).__name__}.fit() must be called before score()")
        window_us = None if self.window is None else self.window // timedelta(microseconds=1)
        # Unknown items get code -1, which no event key equals: their count is 0.
        counts = self.clicks_.count_before(self.items_.codes(item_ids), query_micros(ts), window_us)
        return counts.astype(np.float64)


class RecentPopularity(GlobalPopularity):
    """Clicks on the candidate item in [t - window, t): trending news, the strongest simple baseline."""

    def __init__(self, window: timedelta = timedelta(hours=24)) -> None:
        if window <= timedelta(0):
            raise ValueError(f"window must be positive, got {window}")
        self.window = window
