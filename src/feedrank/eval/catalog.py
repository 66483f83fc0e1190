"""Retrieval over the full live catalog: for each test request with a click, rank every item
that was live at the request's time and check where the clicked items land.

News items live for hours, and a serving index holds the live catalog, not every item ever
published. An item is live at time t when it exists (published, or, when the source has no
publication time, first shown, at or before t) and is recent: published within the live window
(default 48 h) before t, or shown to anyone in that window. Items that did not exist yet are never
candidates, so no system can profit from the future. Every system ranks the same sampled queries
against the same live catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import torch

from feedrank.data.examples import FeatureSpace
from feedrank.data.features import US_PER_HOUR, to_us
from feedrank.data.timeline import NO_TIME, EventIndex
from feedrank.eval.baselines import Scorer
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.eval.retrieval import RelevantItems, retrieval_metrics
from feedrank.progress import advance

NEVER = np.iinfo(np.int64).max
_CHUNK_CELLS = 4_000_000  # (queries x items) scored at once


@dataclass(frozen=True)
class Queries:
    """Test requests with at least one clicked item in the catalog."""

    request_ids: np.ndarray  # (Q,) str
    user_ids: np.ndarray  # (Q,) str
    ts_us: np.ndarray  # (Q,) int64 µs
    relevant: RelevantItems  # clicked catalog rows per query

    def __len__(self) -> int:
        return int(self.user_ids.size)

    def span_us(self) -> tuple[int, int] | None:
        """(first, last) query time in µs; None without queries."""
        if not self.ts_us.size:
            return None
        return int(self.ts_us.min()), int(self.ts_us.max())


def click_queries(space: FeatureSpace, impressions: pl.DataFrame, max_queries: int, seed: int) -> Queries:
    """Requests with clicks, sampled (seeded) down to `max_queries`, in time order."""
    clicks = impressions.filter(pl.col("clicked")).with_columns(
        pl.Series("row", space.catalog.rows(impressions.filter(pl.col("clicked")).get_column("item_id")))
    )
    grouped = (
        clicks.filter(pl.col("row") >= 0)
        .group_by("request_id")
        .agg(pl.col("user_id").first(), pl.col("ts").min(), pl.col("row").unique())
        .sort("ts", "request_id")
    )
    if grouped.height > max_queries:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(grouped.height, size=max_queries, replace=False))
        grouped = grouped[pick]
    return Queries(
        request_ids=grouped.get_column("request_id").to_numpy().astype(object),
        user_ids=grouped.get_column("user_id").to_numpy().astype(object),
        ts_us=to_us(grouped.get_column("ts")),
        relevant=RelevantItems.from_lists(grouped.get_column("row").to_list()),
    )


class LiveCatalog:
    """Which catalog items are live at each query time (see the module docstring).

    Args:
        events: impressions known to the system (at least item_id and ts; a lazy frame is
            aggregated by the streaming engine): each item's first show.
        span_us: (first, last) query time the catalog will be asked about. With it, "shown in the
            window" is answered from the views between first - window - 1 h and last alone, as
            the latest view per item and hour (a few rows per live item); without it, or for a
            query outside it, from the feature space's index of every view.
    """

    def __init__(
        self,
        space: FeatureSpace,
        events: pl.DataFrame | pl.LazyFrame,
        window_h: float = 48.0,
        span_us: tuple[int, int] | None = None,
    ) -> None:
        first = events.lazy().group_by("item_id").agg(pl.col("ts").min()).collect(engine="streaming")
        rows = space.catalog.rows(first.get_column("item_id"))
        first_us = np.full(len(space.catalog), NEVER, dtype=np.int64)
        ok = rows >= 0
        first_us[rows[ok]] = to_us(first.get_column("ts"))[ok]
        published = space.catalog.published_us
        self.exists_us = np.where(published != NO_TIME, np.minimum(published, first_us), first_us)
        self.published_us = published
        self.window_us = int(window_h * US_PER_HOUR)
        self.past = space.past
        self._shown: dict[int, np.ndarray] = {}
        self._hours: tuple[int, int] | None = None  # query hours the hourly views answer
        self._hourly: EventIndex | None = None
        if span_us is not None:
            lo, hi = span_us[0] - self.window_us - US_PER_HOUR, span_us[1] + 1
            self._hourly = EventIndex(*space.past.latest_views(lo, hi))
            self._hours = (span_us[0] // US_PER_HOUR, span_us[1] // US_PER_HOUR)

    def __len__(self) -> int:
        return int(self.exists_us.size)

    def _shown_before(self, hour: int) -> np.ndarray:
        """(I,) items shown in the window before the start of `hour` (strictly before any query in it)."""
        if hour not in self._shown:
            items = np.arange(len(self))
            start = np.full(items.size, hour * US_PER_HOUR, dtype=np.int64)
            covered = self._hours is not None and self._hours[0] <= hour <= self._hours[1]
            # A view in [start - window, start) exists iff the latest view of its hour is in it.
            views = self._hourly if covered and self._hourly is not None else self.past.item_views
            self._shown[hour] = views.count_before(items, start, self.window_us) > 0
        return self._shown[hour]

    def mask(self, ts_us: np.ndarray) -> np.ndarray:
        """(Q, I) True where item i is live at query time ts_us[q]."""
        exists = self.exists_us[None, :] <= ts_us[:, None]
        fresh = (self.published_us[None, :] != NO_TIME) & (
            self.published_us[None, :] >= ts_us[:, None] - self.window_us
        )
        shown = np.stack([self._shown_before(int(h)) for h in ts_us // US_PER_HOUR])
        live: np.ndarray = exists & (fresh | shown)
        return live


class CatalogRanker(Protocol):
    name: str

    def scores(self, queries: Queries, rows: slice) -> np.ndarray:
        """(q, I) scores of every catalog item for queries[rows]; higher is better."""
        ...


class ScorerRanker:
    """A flat `Scorer` (baselines, oracle) asked about every (query, catalog item) pair."""

    def __init__(self, name: str, scorer: Scorer, space: FeatureSpace) -> None:
        self.name = name
        self.scorer = scorer
        self.space = space

    def scores(self, queries: Queries, rows: slice) -> np.ndarray:
        users = queries.user_ids[rows]
        ts = queries.ts_us[rows].astype("datetime64[us]")
        items = self.space.catalog.item_ids
        flat = self.scorer.score(
            np.repeat(users, items.size), np.repeat(ts, items.size), np.tile(items, users.size)
        )
        return flat.reshape(users.size, items.size)


class TwoTowerRanker:
    """Two-tower dot products; item embeddings are computed once per query hour (freshness)."""

    name = "two-tower"

    def __init__(self, scorer: TwoTowerScorer) -> None:
        self.scorer = scorer
        self._hour: int | None = None
        self._items: torch.Tensor | None = None

    def item_embeddings(self, hour: int) -> torch.Tensor:
        """(num catalog items, d) item vectors at the middle of `hour` (cached for the last hour)."""
        if self._hour != hour or self._items is None:
            self._items, self._hour = torch.from_numpy(self.scorer.item_vectors_at_hour(hour)), hour
        return self._items

    def scores(self, queries: Queries, rows: slice) -> np.ndarray:
        ts = queries.ts_us[rows]
        users = self.scorer.user_embeddings(queries.user_ids[rows], ts)
        out = np.empty((ts.size, len(self.scorer.space.catalog)), dtype=np.float64)
        hours = ts // US_PER_HOUR
        for hour in np.unique(hours):
            sel = np.flatnonzero(hours == hour)
            out[sel] = (users[torch.from_numpy(sel)] @ self.item_embeddings(int(hour)).T).double().numpy()
        return out


def top_k(ranker: CatalogRanker, queries: Queries, live: LiveCatalog, k: int, seed: int = 0) -> np.ndarray:
    """(Q, k) catalog rows, best first, among the items live at each query's time (-1 pads).

    Exact ties are broken at random (seeded) rather than by catalog order, which would favour
    whichever items happen to come first.
    """
    num_items = len(live)
    step = max(1, _CHUNK_CELLS // max(num_items, 1))
    rng = np.random.default_rng(seed)
    out = np.full((len(queries), min(k, num_items)), -1, dtype=np.int64)
    for lo in range(0, len(queries), step):
        rows = slice(lo, min(lo + step, len(queries)))
        scores = ranker.scores(queries, rows).astype(np.float64)
        exists = live.mask(queries.ts_us[rows])
        noise = rng.random(scores.shape) * 1e-9 * (np.abs(scores).max() + 1.0)
        scores = np.where(exists, scores + noise, -np.inf)
        part = np.argpartition(-scores, out.shape[1] - 1, axis=1)[:, : out.shape[1]]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        best = np.take_along_axis(part, order, axis=1)
        valid = np.isfinite(np.take_along_axis(scores, best, axis=1))
        out[rows] = np.where(valid, best, -1)
        advance(f"catalog retrieval: {ranker.name} (queries)", rows.stop, len(queries))
    return out


def evaluate_catalog(
    rankers: list[CatalogRanker],
    queries: Queries,
    live: LiveCatalog,
    ks: tuple[int, ...] = (10, 20, 50, 100, 500),
    ground_truth: Scorer | None = None,
    space: FeatureSpace | None = None,
) -> dict[str, dict[str, float]]:
    """Recall, NDCG, hit rate, MRR and coverage @K of each ranker, keyed by its name.

    With a `ground_truth` scorer (the simulator's expected utility) each ranker also gets
    `utility@K`: the mean true utility of its top K items, averaged over queries. Logged clicks
    reflect what the logging policy chose to show; utility@K does not, so it is the measure an
    oracle bounds.
    """
    width = min(max(ks), len(live))
    cutoffs = tuple(k for k in ks if k <= width)
    results: dict[str, dict[str, float]] = {}
    for ranker in rankers:
        lists = top_k(ranker, queries, live, width)
        summary = retrieval_metrics(lists, queries.relevant, len(live), cutoffs).summary()
        if ground_truth is not None and space is not None:
            summary |= _utility_at_k(lists, queries, ground_truth, space, cutoffs)
        results[ranker.name] = summary
    return results


def score_lists(lists: np.ndarray, queries: Queries, scorer: Scorer, space: FeatureSpace) -> np.ndarray:
    """(Q, N) scores of each query's listed catalog rows at the query's time; NaN where a list pads (-1)."""
    valid = lists >= 0
    users = np.repeat(queries.user_ids, lists.shape[1])[valid.ravel()]
    ts = np.repeat(queries.ts_us.astype("datetime64[us]"), lists.shape[1])[valid.ravel()]
    scores = np.full(lists.shape, np.nan)
    scores[valid] = scorer.score(users, ts, space.catalog.item_ids[lists[valid]])
    return scores


def _utility_at_k(
    lists: np.ndarray, queries: Queries, truth: Scorer, space: FeatureSpace, ks: tuple[int, ...]
) -> dict[str, float]:
    utility = score_lists(lists, queries, truth, space)
    return {f"utility@{k}": float(np.nanmean(np.nanmean(utility[:, :k], axis=1))) for k in ks}
