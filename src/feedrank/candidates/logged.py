"""Source membership and scores for logged rows: what serving's candidate set would have said.

A training row is an impression the logging policy chose, or an item drawn from the live catalog;
neither came out of feedrank's sources. To train the ranker on the columns serving hands it
(`CandidateSet.features()`), each request asks the sources at its own time t for their lists, as
serving would: the ANN is the two-tower's top `list_size` over the items live at t, trending,
co-visitation and fresh items as served. Each row's item is then looked up in those lists
(`source_features`). The sources are fed the log's dated clicks (as serving loads a bundle's) and
read only the clicks before t, so a row's columns do not depend on anything after it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.candidates.merge import SOURCE_FEATURES, SourceList, merged_rows, source_features
from feedrank.candidates.postings import I64
from feedrank.candidates.sources import CandidateSources, SourcesConfig
from feedrank.data.features import US_PER_HOUR, ItemCatalog, UserDirectory
from feedrank.data.history import VIEW_LOOKBACK_US, PastEvents
from feedrank.data.query_scope import user_scope
from feedrank.data.timeline import NO_TIME
from feedrank.progress import advance

LIST_SIZE = 500  # each source's list: serving merges 500 candidates (ServeSettings.candidates)
# The default sources of a bounded PastEvents, built once for its run (`LoggedSources.from_past`)
_SHARED: weakref.WeakKeyDictionary[PastEvents, tuple[tuple[int, int], LoggedSources]] = (
    weakref.WeakKeyDictionary()
)


def live_spans(item_rows: I64, ts_us: I64, window_us: int) -> tuple[I64, I64, I64]:
    """(item rows, first µs, last µs) of each item's runs of events with no gap over `window_us`,
    by first event: `LiveItems` given these answers as given every event, from far fewer rows (an
    item is live from just after a run's first event to `window_us` after its last; in between
    each event is within the window of the one before)."""
    order = np.lexsort((ts_us, item_rows))
    items, ts = item_rows[order], ts_us[order]
    opens = np.r_[True, (items[1:] != items[:-1]) | (ts[1:] - ts[:-1] > window_us)] if ts.size else ts > 0
    first = np.flatnonzero(opens)
    last = np.r_[first[1:], ts.size] - 1
    by_time = np.argsort(ts[first], kind="stable")
    return items[first][by_time], ts[first][by_time], ts[last][by_time]


class LiveItems:
    """Items with an event in the window before t, for queries in increasing t.

    Fed (item row, µs) events in any order; `at(t)` absorbs every event before t and returns the
    sorted rows whose latest such event is within `window_us` of t. `last_us`: the events are runs
    of `live_spans` (item, first µs in ts_us, last µs) instead.
    """

    def __init__(
        self, item_rows: I64, ts_us: I64, num_items: int, window_us: int, last_us: I64 | None = None
    ) -> None:
        order = np.argsort(ts_us, kind="stable")
        self.items, self.ts = item_rows[order], ts_us[order]
        self.ends = self.ts if last_us is None else last_us[order]
        self.window_us = window_us
        self.last = np.full(num_items, np.iinfo(np.int64).min, dtype=np.int64)
        self._next = 0
        self._t = np.iinfo(np.int64).min

    def at(self, t: int) -> I64:
        if t < self._t:
            raise ValueError(f"LiveItems queried at {t} after {self._t}: queries must not go back in time")
        self._t = t
        end = int(np.searchsorted(self.ts, t, side="left"))
        if end > self._next:
            np.maximum.at(self.last, self.items[self._next : end], self.ends[self._next : end])
            self._next = end
        live: I64 = np.flatnonzero(self.last >= t - self.window_us)
        return live


@dataclass(frozen=True)
class Requests:
    """Logged requests, one user at one time each, with what the ANN needs to search for them.

    users: (R,) user rows (-1: unknown, no co-visitation); ts_us: (R,) µs;
    vectors: (R, d) the two-tower user vector of each request;
    item_vectors: hour → (num catalog items, d) item vectors as of that hour.
    """

    users: np.ndarray
    ts_us: I64
    vectors: npt.NDArray[np.float32]
    item_vectors: Callable[[int], npt.NDArray[np.float32]]


@dataclass
class LoggedSources:
    """The candidate sources replayed over a log, to give logged rows their source columns."""

    sources: CandidateSources
    # (item rows, first µs, last µs) of the runs of views and clicks (`live_spans`): the live
    # catalog; every view and click, held here, took 16 bytes each (270 MB at 100M impressions)
    events: tuple[I64, I64, I64]
    live_window_us: int
    published_us: I64
    user_ids: np.ndarray  # user row → the key the sources keep its co-visitation under
    list_size: int = LIST_SIZE
    # The earliest request time the live catalog answers for: its views are bounded
    # (PastEvents.bound_views); None: every view.
    requests_from_us: int | None = None
    # The latest request time they answer for (PastEvents.bound_queries); None: any.
    requests_until_us: int | None = None

    @staticmethod
    def from_past(
        past: PastEvents,
        catalog: ItemCatalog,
        users: UserDirectory,
        config: SourcesConfig | None = None,
        live_window_h: float = 48.0,
        list_size: int = LIST_SIZE,
    ) -> LoggedSources:
        """Sources fed the dated clicks of `past`; the live catalog from its views and clicks.

        A `past` bounded to its queries (PastEvents.bound_queries) serves one run: its default
        sources are built once and shared (a ranker's replay, then its validation's scorer),
        instead of twice, each build's peak (every session's co-click votes sorted) on top of
        what the run holds (2.2 GB at 100M impressions, BENCHMARKS.md).
        """
        shared = (
            config is None and live_window_h == 48.0 and list_size == LIST_SIZE and past.until_us is not None
        )
        if shared and past in _SHARED and _SHARED[past][0] == (id(catalog), id(users)):
            return _SHARED[past][1]
        built = LoggedSources._build(past, catalog, users, config, live_window_h, list_size)
        if shared:
            _SHARED[past] = ((id(catalog), id(users)), built)
        return built

    @staticmethod
    def _build(
        past: PastEvents,
        catalog: ItemCatalog,
        users: UserDirectory,
        config: SourcesConfig | None,
        live_window_h: float,
        list_size: int,
    ) -> LoggedSources:
        clicks = past.user_clicks
        # keys and times decoded here, not cached on the indexes: held there they were 16 bytes
        # an event beside every view and click for as long as the indexes live
        click_users, click_times = clicks.decoded()
        dated = click_times != NO_TIME
        items = np.asarray(clicks.values, dtype=np.int64)[dated] - 1  # values are item row + 1
        # Co-visitation is keyed by user row, not by the id string serving uses: the same users and
        # lists, and the bulk load sorts integers (sorting 1.2M Python strings took most of it).
        config = config or SourcesConfig()
        users_dated, times_dated = np.asarray(click_users[dated], dtype=np.int64), click_times[dated]
        kept = _covis_kept(past, users_dated, items, times_dated, config.covis_cfg.num_recent)
        sources = CandidateSources(config).extend(users_dated, items, times_dated, *kept)
        del click_users, users_dated
        view_items, view_times = past.item_views.decoded()
        seen = view_times != NO_TIME
        window = int(live_window_h * US_PER_HOUR)
        events = live_spans(
            np.concatenate([view_items[seen], items]),
            np.concatenate([view_times[seen], click_times[dated]]),
            window,
        )
        rows = np.arange(len(users), dtype=np.int64)
        bound = None if past.views_from_us is None else past.views_from_us + VIEW_LOOKBACK_US
        if bound is not None and window > VIEW_LOOKBACK_US:
            raise ValueError(f"a live window of {live_window_h} h reads views before the bounded view index")
        return LoggedSources(
            sources, events, window, catalog.published_us, rows, list_size, bound, past.until_us
        )

    def features(self, requests: Requests, row_request: I64, row_items: I64) -> npt.NDArray[np.float32]:
        """(N, 8) `CandidateSet.features()` columns of each row's item in its request's lists.

        row_request: (N,) request of each row; row_items: (N,) catalog rows (-1: unknown).
        """
        out = np.zeros((row_items.size, len(SOURCE_FEATURES)), dtype=np.float32)
        by_request = np.argsort(row_request, kind="stable")
        bounds = np.searchsorted(row_request[by_request], np.arange(requests.ts_us.size + 1))
        wanted = np.flatnonzero(bounds[1:] > bounds[:-1])
        for r, lists in self.walk(requests, wanted, "candidate-source columns (requests replayed)"):
            rows = by_request[bounds[r] : bounds[r + 1]]
            out[rows] = source_features(lists, row_items[rows])
        return out

    def sample_pools(
        self,
        requests: Requests,
        which: I64,
        k: int,
        quotas: Mapping[str, int],
        pool_size: int,
        rng: np.random.Generator,
    ) -> I64:
        """(len(which), k) items drawn without replacement from the merged candidate pool of each
        request in `which` (the `pool_size` candidates serving would rank); -1 pads a small pool.

        Negatives from the pool are the items the ranker must tell apart from the click at
        serving time; the caller removes the clicked item itself.
        """
        out = np.full((which.size, k), -1, dtype=np.int64)
        slots: dict[int, list[int]] = {}
        for i, r in enumerate(which.tolist()):
            slots.setdefault(r, []).append(i)
        for r, lists in self.walk(requests, np.unique(which), "pool negatives (requests replayed)"):
            pool = merged_rows(lists, quotas, pool_size)
            for i in slots[r]:
                drawn = rng.choice(pool, size=min(k, pool.size), replace=False) if pool.size else pool
                out[i, : drawn.size] = drawn
        return out

    def walk(
        self, requests: Requests, wanted: I64, task: str = "candidate sources (requests replayed)"
    ) -> Iterator[tuple[int, dict[str, SourceList]]]:
        """(request, every source's list at its time) for the `wanted` requests, in time order;
        each request done is reported as an item of `task` (feedrank.progress).

        One pass forward in time: the live catalog and the trending counts are kept up to date
        as t moves (`LiveItems`, `TrendingWalk`) instead of recounted per request.
        """
        if self.requests_from_us is not None and wanted.size:
            earliest = int(requests.ts_us[wanted].min())
            if earliest < self.requests_from_us:
                raise ValueError(
                    f"sources asked at {earliest} µs, before {self.requests_from_us} µs from which "
                    "their live catalog (a bounded item view index) answers"
                )
        if self.requests_until_us is not None and wanted.size:
            latest = int(requests.ts_us[wanted].max())
            if latest > self.requests_until_us:
                raise ValueError(
                    f"sources asked at {latest} µs, after {self.requests_until_us} µs, the last time "
                    "their clicks and views were read for (PastEvents.bound_queries)"
                )
        items, first_us, last_us = self.events
        live_items = LiveItems(items, first_us, self.published_us.size, self.live_window_us, last_us)
        trending = self.sources.trending.walk(self.published_us.size)
        order = wanted[np.argsort(requests.ts_us[wanted], kind="stable")]
        hour, vectors = -1, np.zeros((0, 0), dtype=np.float32)
        # The live items' vectors, gathered again only when the hour or the live set changes:
        # consecutive requests mostly share both, and the gather was a third of the replay.
        gathered: I64 | None = None
        live_vectors = np.zeros((0, 0), dtype=np.float32)
        for i, r in enumerate(order.tolist()):
            t = int(requests.ts_us[r])
            live = live_items.at(t)
            if hour != t // US_PER_HOUR:
                hour = t // US_PER_HOUR
                vectors = requests.item_vectors(hour)
                gathered = None
            if gathered is None or not np.array_equal(live, gathered):
                gathered, live_vectors = live, vectors[live]
            user = int(self.user_ids[requests.users[r]]) if requests.users[r] >= 0 else None
            scores = live_vectors @ requests.vectors[r]
            lists = self.sources.lists_over_live(
                live, scores, user, t, self.list_size, self.published_us, trending.scores(t)
            )
            yield r, lists
            advance(task, i + 1, order.size)


def _covis_kept(
    past: PastEvents, users: I64, items: I64, ts_us: I64, num_recent: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What co-visitation must keep of these clicks (sorted by user, then time) for the queries
    `past` is bounded to (PastEvents.bound_queries): the asked users' clicks, and the items whose
    votes those users' recent clicks read. A query at t >= the first query time reads the user's
    `num_recent` latest clicks before t: among the clicks from the first query time on, and the
    `num_recent` latest before it. (None, None) when `past` is not bounded: everything.

    Every user's clicks per user, 1.96M users at 100M impressions, held 1-2 GB of small arrays
    (BENCHMARKS.md); the asked users are a few percent of them.
    """
    if past.query_users is None or past.views_from_us is None:
        return None, None
    asked = user_scope(past.query_users, users)
    first_query = past.views_from_us + VIEW_LOOKBACK_US
    u, t, i = users[asked], ts_us[asked], items[asked]
    early = t < first_query
    run_start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if u.size else np.zeros(0, np.int64)
    run = np.cumsum(np.r_[True, u[1:] != u[:-1]]) - 1 if u.size else np.zeros(0, np.int64)
    early_in_run = np.bincount(run, weights=early, minlength=run_start.size).astype(np.int64)
    position = np.arange(u.size) - run_start[run] if u.size else run
    readable = ~early | (position >= early_in_run[run] - num_recent)  # early clicks come first
    votes = np.zeros(max(int(items.max(initial=-1)) + 1, 1), dtype=bool)
    votes[i[readable]] = True
    return asked, votes
