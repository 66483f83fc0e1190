"""The non-personal candidate sources together: their configuration, state and lists.

`CandidateSources` owns the trending and co-visitation counters (fed by `add_click` / `extend`)
and answers, for a user at time t, each source's ranked list over the eligible items. The ANN
list comes from the caller (serving's index, evaluation's exact two-tower scores); `merge` joins
them all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from feedrank.candidates.covisitation import CoVisitation, CoVisitationConfig
from feedrank.candidates.fresh import FreshConfig, FreshItems, fresh_active
from feedrank.candidates.merge import SourceList, top_order, top_rows
from feedrank.candidates.postings import F64, I64
from feedrank.candidates.trending import Trending, TrendingConfig


@dataclass(frozen=True)
class Eligible:
    """Which items a source may propose: rows below `num_items` (the catalog as the request read
    it) that `test` accepts, asked only for the rows a source scores, so that a request's cost
    does not grow with the catalog (serving: items that exist at t, minus the user's exclusions)."""

    num_items: int
    test: Callable[[I64], npt.NDArray[np.bool_]]

    @staticmethod
    def of(eligible: Eligibility) -> Eligible:
        """A dense (num_items,) mask as an `Eligible`; an `Eligible` as it is."""
        if isinstance(eligible, Eligible):
            return eligible
        mask = eligible
        return Eligible(mask.size, lambda rows: mask[rows])


Eligibility = npt.NDArray[np.bool_] | Eligible


@dataclass(frozen=True)
class SourcesConfig:
    """Relative quotas per source (scaled to the total number of candidates) and their settings.

    A quota of 0 turns a source off: ann=1 and the others 0 is the ANN-only candidate stage.
    """

    ann: int = 300
    trending: int = 100
    covis: int = 100
    fresh: int = 50
    history_h: float = 168.0  # clicks older than this are not loaded (serving prunes them as it goes)
    trending_cfg: TrendingConfig = field(default_factory=TrendingConfig)
    covis_cfg: CoVisitationConfig = field(default_factory=CoVisitationConfig)
    fresh_cfg: FreshConfig = field(default_factory=FreshConfig)

    def quotas(self) -> dict[str, int]:
        return {"ann": self.ann, "trending": self.trending, "covis": self.covis, "fresh": self.fresh}

    def enabled(self) -> list[str]:
        return [name for name, quota in self.quotas().items() if quota > 0]


class CandidateSources:
    """Trending, co-visitation and fresh items over one catalog; thread-safe."""

    def __init__(self, config: SourcesConfig = SourcesConfig(), max_users: int | None = None) -> None:
        """`max_users`: co-visitation keeps the recent clicks of at most this many users."""
        self.config = config
        self.trending = Trending(config.trending_cfg)
        self.covis = CoVisitation(config.covis_cfg, max_users=max_users)

    def extend(
        self,
        users: np.ndarray,
        item_rows: I64,
        ts_us: I64,
        recent_kept: np.ndarray | None = None,
        votes_kept: np.ndarray | None = None,
    ) -> CandidateSources:
        """Bulk load past clicks: (E,) user ids, catalog rows and µs times, in any order;
        `recent_kept`, `votes_kept`: what co-visitation keeps of them (`CoVisitation.extend`)."""
        self.trending.extend(item_rows, ts_us)
        self.covis.extend(users, item_rows, ts_us, recent_kept, votes_kept)
        return self

    def add_click(self, user: Hashable, item_row: int, ts_us: int) -> None:
        self.trending.add(item_row, ts_us)
        self.covis.add(user, item_row, ts_us)

    def prune(self, before_us: int) -> int:
        """Forget clicks no query at or after `before_us` + the horizon can see."""
        return self.trending.prune(before_us) + self.covis.prune(before_us)

    def trending_list(
        self, t_us: int, n: int, eligible: Eligibility, scores: F64 | None = None
    ) -> SourceList:
        """`scores`: the trending scores at t when the caller keeps them (a `TrendingWalk`)."""
        ok = Eligible.of(eligible)
        if scores is None:
            rows, active = self.trending.active(t_us, ok.num_items)
        else:
            rows = np.flatnonzero(scores[: ok.num_items] > 0)
            active = scores[rows]
        return top_rows(rows, active, n, ok.test)

    def covis_list(self, user: Hashable, t_us: int, n: int, eligible: Eligibility) -> SourceList:
        ok = Eligible.of(eligible)
        rows, active = self.covis.active(user, t_us, ok.num_items)
        return top_rows(rows, active, n, ok.test)

    def fresh_list(self, published: I64 | FreshItems, t_us: int, n: int, eligible: Eligibility) -> SourceList:
        """`published`: every item's publication time, or a `FreshItems` index of them (serving)."""
        ok = Eligible.of(eligible)
        if isinstance(published, FreshItems):
            rows, active = published.active(t_us)
        else:
            rows, active = fresh_active(published, t_us, self.config.fresh_cfg)
        known = rows < ok.num_items  # an item added after `num_items` was read
        rows, active = rows[known], active[known]
        return top_rows(rows, active, n, ok.test)

    def lists_over_live(
        self,
        live_rows: I64,
        ann_scores: npt.NDArray[np.floating],
        user: Hashable,
        t_us: int,
        n: int,
        published_us: I64,
        trending: F64 | None = None,
    ) -> dict[str, SourceList]:
        """`lists` over the live catalog, the ANN being an exact search: the top n of `ann_scores`
        (the two-tower's score of each live row). Offline evaluation and training replay ask this;
        when they walk forward in time they pass `trending`, a `TrendingWalk`'s scores at t."""
        top = top_order(ann_scores, n)
        ann = SourceList(live_rows[top], ann_scores[top].astype(np.float64))
        eligible = np.zeros(published_us.size, dtype=bool)
        eligible[live_rows] = True
        return self.lists(ann, user, t_us, n, eligible, published_us, trending)

    def lists(
        self,
        ann: SourceList,
        user: Hashable,
        t_us: int,
        n: int,
        eligible: Eligibility,
        published_us: I64 | FreshItems,
        trending: F64 | None = None,
    ) -> dict[str, SourceList]:
        """Every enabled source's top n over the eligible items at t; the ANN's list comes in
        (and the trending scores at t, when the caller keeps them).

        Offline callers (evaluation, training rows) ask this; serving asks each source on its own
        under a deadline (serve/candidate_stage.py) and gets the same lists when none is skipped.
        """
        quotas = self.config.quotas()
        lists = {"ann": ann}
        if quotas["trending"] > 0:
            lists["trending"] = self.trending_list(t_us, n, eligible, trending)
        if quotas["covis"] > 0:
            lists["covis"] = self.covis_list(user, t_us, n, eligible)
        if quotas["fresh"] > 0:
            lists["fresh"] = self.fresh_list(published_us, t_us, n, eligible)
        return lists
