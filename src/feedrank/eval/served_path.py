"""What the served-feed evaluation asks feeds from: the service's own Recommender on a bundle.

`RecommenderServer` builds the Recommender as the HTTP service does (`serve/service.py`: the
bundle, the serving settings, their re-ranker) and asks it for feeds with `recommend_batch`, the
call the service makes for every request, at the request's own time. No stage is re-implemented
here. Only two things differ from a request over HTTP, both because the evaluation replays past
times instead of living in the present:
- the deadline is off (`deadline=False`), as in the simulated A/B test: a loaded shared box would
  otherwise turn timing noise into skipped stages;
- the index's item vectors carry freshness, which the service refreshes by rebuilding the index
  every `index_max_age_s` of wall time, and new items reach it as they are published (POST
  /v1/items); here the index is rebuilt at the start of each request hour with the items that
  exist then and their vectors at that time, and an item that comes into existence later in the
  hour is added before the first request after it, since wall time does not pass between
  replayed requests.
And one thing is put back as a live service has it: the re-ranker's click rates and dwell (the
clickbait guardrail's inputs) come only from the bundle's events before the request's time
(served_engagement.py), where the service would read them from all the bundle's events, later
ones included (`past_engagement=False` keeps that look-ahead, for comparison).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from feedrank.bundle import Bundle
from feedrank.data.features import US_PER_HOUR
from feedrank.eval.baselines import Scorer
from feedrank.eval.catalog import LiveCatalog
from feedrank.eval.served_engagement import EngagementAsOf
from feedrank.index import AnnIndex
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.serve.settings import ServeSettings


class NewUserScorer(Protocol):
    """Ground-truth utility of items (C,) for a user the world does not know, from demographics."""

    def score(self, demographics: Mapping[str, str], now_us: int, item_ids: np.ndarray) -> np.ndarray: ...


class FeedServer(Protocol):
    """Anything that answers feed requests: item ids, best first, for users at one time."""

    name: str

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]: ...


SERVED = "served (ranker)"  # the name of the bundle's own feed in the reports


class RecommenderServer:
    """Feeds from `Recommender.recommend_batch` over a loaded bundle (see the module docstring).

    `settings`: the serving settings (default: the service's defaults); `weights`: head weights of
    the feed score (default: the bundle's)."""

    def __init__(
        self,
        bundle: Bundle,
        settings: ServeSettings | None = None,
        *,
        name: str = SERVED,
        weights: Mapping[str, float] | None = None,
        past_engagement: bool = True,
    ) -> None:
        settings = settings or ServeSettings()
        # Wall time does not pass between replayed requests; `_refresh` rebuilds at request times.
        self.settings = dataclasses.replace(settings, index_max_age_s=float("inf"))
        self.name = name
        self.recommender = Recommender(
            bundle, self.settings, build_reranker(self.settings.rerank), weights=weights
        )
        self.engagement = EngagementAsOf(bundle) if past_engagement else None
        self._hour: int | None = None
        self._indexed = np.zeros(0, dtype=bool)  # catalog rows in the index

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        self._refresh(now_us)
        served = self.recommender.recommend_batch(
            list(user_ids), now_us, k, demographics=list(demographics), deadline=False
        )
        return [[item.item_id for item in feed.items] for feed in served]

    def _refresh(self, now_us: int) -> None:
        """At a new request hour, rebuild the index with the vectors of the items that exist then;
        within the hour, add the items that came into existence since (as POST /v1/items does);
        the click rates and dwell of the events before now."""
        cat = self.recommender.catalog
        if self.engagement is not None:
            cat.click_rate, cat.mean_dwell_s = self.engagement.at(now_us, len(cat.item_ids))
        hour = now_us // US_PER_HOUR
        if hour != self._hour:
            at = int(hour * US_PER_HOUR)
            rows = np.flatnonzero(cat.exists_us <= at)
            cat.index.swap(AnnIndex.build(cat.index.index.spec, cat.item_vectors(rows, at), rows))
            self._indexed = np.zeros(cat.exists_us.size, dtype=bool)
            self._indexed[rows] = True
            self._hour = hour
        new = np.flatnonzero(~self._indexed & (cat.exists_us <= now_us))
        if new.size:
            cat.index.add(cat.item_vectors(new, now_us), new)
            self._indexed[new] = True


class OracleServer:
    """The best feed possible: the k items of highest ground-truth utility among the items live at
    the request's time (`eval/catalog.py`'s live catalog, as the retrieval table's oracle). A user
    the world does not know (a brand-new user) gets the items of highest utility expected from the
    demographics the request carries (`new_users`: eval/oracle.NewUserOracle, sim/prior.py), or
    an empty feed without it."""

    name = "oracle"

    def __init__(
        self,
        truth: Scorer,
        live: LiveCatalog,
        item_ids: np.ndarray,
        known_users: set[str],
        new_users: NewUserScorer | None = None,
    ):
        self.truth = truth
        self.live = live
        self.item_ids = item_ids
        self.known_users = known_users
        self.new_users = new_users

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        rows = np.flatnonzero(self.live.mask(np.array([now_us], dtype=np.int64))[0])
        items = self.item_ids[rows]
        ts = np.full(rows.size, now_us, dtype="datetime64[us]")
        out: list[list[str]] = []
        for user, demo in zip(user_ids, demographics, strict=True):
            if rows.size == 0 or (user not in self.known_users and self.new_users is None):
                out.append([])
                continue
            if user in self.known_users:
                utility = self.truth.score(np.full(rows.size, user, dtype=object), ts, items)
            else:
                assert self.new_users is not None
                utility = self.new_users.score(demo, now_us, items)
            top = np.argsort(-utility, kind="stable")[:k]
            out.append([str(i) for i in items[top]])
        return out
