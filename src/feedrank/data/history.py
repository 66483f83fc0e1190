# Over 300 lines: PastEvents is one leak-free index (every lookup takes t and sees only events before
# it); its counters, histories and per-(user, t) columns share the same sorted arrays.
"""Time-dependent features computed only from the past: user histories and engagement counters.

`PastEvents` indexes every engagement and view known to the system (the pre-window history plus
the impressions of the log); every lookup takes a query time t and sees only events strictly
before t, so the same code serves training (t = each impression's time), evaluation and the
service (t = now) without leakage. An engagement is a click (shares and long dwells are clicks).

The ranker's dense inputs are named columns (`FEATURE_NAMES`); a ranker records the names it was
trained with, so a model trained on the nine original counters (`COUNTER_NAMES`) keeps getting
exactly those while newer ones also get recency, co-visitation and session features
(`RANKER_FEATURES`):

    item_clicks_10m            log(1 + clicks in the last 10 minutes)
    item_velocity              log((clicks 10 min + 1) / (clicks 24 h · 10/1440 + 1)): rising vs fading
    item_age_log_h             log(1 + hours since publication; else since the first view before t)
    item_age_known             1 when either of those exists, else 0 (and the age reads 0)
    covis_last / _sum5 / _max5 log(1 + co-visits) of the candidate after the user's latest click, and
                               summed / max over the latest 5 clicks (data/sessions.PairIndex)
    session_activities         log(1 + requests and clicks of the user's current session before t)
    session_clicks             log(1 + clicks of the current session before t)
    since_session_click_log_s  log(1 + seconds since the session's previous click); 0 when none
    no_session_click           1 when the session has no click before t

A user's affinity for the candidate's category from few clicks (data/affinity.py):

    user_category_affinity     log(the user's category share, shrunk towards their demographic
                               groups' / the category's overall share of clicks)
    demo_category_lift         log lift of the category among the user's demographic groups
    user_category_ctr_lift     log(the user's click rate on the category's impressions, shrunk
                               towards the category's rate / the category's rate): what the user
                               was shown and skipped counts too
    user_category_dwell        the user's mean log dwell on the category's clicks above the
                               category's mean, shrunk towards 0 (`DWELL_NAMES`; how long a user
                               reads a category says how much it is theirs)

What the user's demographic groups read, beyond the category (`SEGMENT_NAMES`, data/affinity.py):

    demo_subcategory_lift      log lift of the item's subcategory among the user's groups
    demo_type_lift             log lift of the item's content type among the user's groups
    demo_item_lift_24h         log lift of the item itself among the user's groups' clicks of
                               the last 24 hours, shrunk towards the groups' overall share

Columns for click-only news logs (`NEWS_NAMES`; not in the default list, a run names them), where
the next click is mostly decided by the click before it and by what is being read right now:

    covis_last_2h              log(1 + co-visits after the user's latest click, last 2 hours only)
    covis_back_last            log(1 + co-visits the other way: the user's latest click after the candidate)
    covis_last_out             log(1 + every co-visit out of the user's latest click): how much
                               evidence covis_last rests on
    covis_last_share           co-visits after the latest click / (1 + all co-visits out of it)
    item_in_last5              1 when the candidate is one of the user's latest 5 clicks (re-reads are rare)

and, for the same logs, what is being read in the last minutes and after the clicks before the
latest (`NEWS_NOW_NAMES`, named by the Globo recipe of bench/real_news.py):

    item_clicks_2m / _30m      log(1 + clicks in the last 2 / 30 minutes)
    covis_last_30m             log(1 + co-visits after the user's latest click, last 30 minutes only)
    covis_prev2                log(1 + co-visits after the user's second-latest click)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from feedrank.data.affinity import CategoryAffinity, CategoryDwell, GroupItemClicks
from feedrank.data.bounded_views import CountedIndex, category_views_after, views_after
from feedrank.data.event_log import Clicks, EventLog, FrameEvents, Shown
from feedrank.data.event_log import shown as all_shown
from feedrank.data.features import US_PER_HOUR, ItemCatalog, UserDirectory
from feedrank.data.query_scope import check_scope, user_scope, users_mask
from feedrank.data.ranker_columns import COUNTER_WINDOWS_H as COUNTER_WINDOWS_H
from feedrank.data.ranker_columns import CTR_PRIOR_VIEWS as CTR_PRIOR_VIEWS
from feedrank.data.ranker_columns import FeatureColumns, f64
from feedrank.data.ranker_columns import RecentEvents as RecentEvents
from feedrank.data.sessions import SESSION_GAP_US, PairIndex, SessionIndex
from feedrank.data.timeline import NO_TIME, EventIndex
from feedrank.memory import release_free_memory

COUNTER_NAMES = (  # the original nine: what a ranker that records no names was trained with
    *(f"item_clicks_{w}h" for w in COUNTER_WINDOWS_H),
    "item_views_24h",
    "item_ctr_24h",
    "item_clicks_all",
    "user_clicks_all",
    "user_category_share",
    "user_publisher_share",
)
RECENCY_NAMES = (
    "item_clicks_10m",
    "item_velocity",
    "item_age_log_h",
    "item_age_known",
    "covis_last",
    "covis_sum5",
    "covis_max5",
    "session_activities",
    "session_clicks",
    "since_session_click_log_s",
    "no_session_click",
)
AFFINITY_NAMES = ("user_category_affinity", "demo_category_lift", "user_category_ctr_lift")
DWELL_NAMES = ("user_category_dwell",)
SEGMENT_NAMES = ("demo_subcategory_lift", "demo_type_lift", "demo_item_lift_24h")
RANKER_FEATURES = COUNTER_NAMES + RECENCY_NAMES + AFFINITY_NAMES
NEWS_NAMES = ("covis_last_2h", "covis_back_last", "covis_last_out", "covis_last_share", "item_in_last5")
# The Globo recipe's columns (bench/real_news.py), as its ranker was measured: without the affinity ones
NEWS_FEATURES = COUNTER_NAMES + RECENCY_NAMES + NEWS_NAMES
NEWS_NOW_NAMES = ("item_clicks_2m", "item_clicks_30m", "covis_last_30m", "covis_prev2")
FEATURE_NAMES = frozenset(NEWS_FEATURES + NEWS_NOW_NAMES + AFFINITY_NAMES + DWELL_NAMES + SEGMENT_NAMES)
INDEXES = (
    "user_clicks",
    "item_clicks",
    "item_views",
    "user_category_clicks",
    "user_publisher_clicks",
    "sessions",
    "covisits",
    "affinity",
    "category_views",
    "category_dwell",
    "subcategory_affinity",
    "type_affinity",
    "group_items",
)
# What a query at t reads of the item views before it: the 24 h view counters and the 48 h live
# catalog of the candidate sources (candidates/logged.py); `PastEvents.bound_views` keeps this much.
VIEW_LOOKBACK_US = 48 * US_PER_HOUR
FEATURE_BLOCK = 262_144  # query rows whose feature columns `PastEvents.features` computes at once
SESSION_COLUMNS = ("session_activities", "session_clicks", "since_session_click_log_s", "no_session_click")


class PastEvents:
    """Indexes of engagements and views, keyed by user row or item row, for strictly-before lookups.

    Each index is built from `events` (data/event_log.py) the first time it is asked for: the
    click indexes from the clicks the log holds, the view and session indexes by reading every
    impression then. A two-tower reads histories alone, so it never holds the impressions.
    """

    def __init__(
        self,
        events: EventLog,
        catalog: ItemCatalog,
        *,
        global_ctr: float,
        demographics: np.ndarray | None = None,
        demographic_buckets: int = 0,
    ) -> None:
        self._events: EventLog | None = events
        self.num_items = len(catalog)
        self.category, self.publisher = catalog.category, catalog.publisher
        self.subcategory, self.content_type = catalog.subcategory, catalog.content_type
        self.num_categories = int(catalog.category.max(initial=0)) + 1
        self.num_publishers = int(catalog.publisher.max(initial=0)) + 1
        self.global_ctr = global_ctr
        # (U, D) hashed demographic buckets of each user row, for the group priors of `affinity`
        self.demographics = demographics
        self.demographic_buckets = demographic_buckets
        self.views_from_us: int | None = None  # `bound_views`: the item view index's lower bound
        self.until_us: int | None = None  # `bound_queries`: no query is later; later events unread
        self.query_users: np.ndarray | None = None  # `bound_queries`: (rows,) bool, users asked for

    @property
    def events(self) -> EventLog:
        if self._events is None:
            raise RuntimeError("PastEvents.preload() built every index and let go of its events")
        return self._events

    @functools.cached_property
    def clicks(self) -> Clicks:
        clicks = self.events.clicks(self.until_us)
        release_free_memory()  # the shards' arrays, freed on the heap (feedrank/memory.py)
        return clicks

    def _upto(self) -> tuple[int, int] | None:
        """`shown_chunks`' bounds for `bound_queries`' upper end: events after it are never read."""
        return None if self.until_us is None else (NO_TIME, self.until_us + 1)

    def _asked(self, user_rows: np.ndarray) -> np.ndarray:
        """(N,) bool: the rows' users are ones `bound_queries` keeps (every user when unbounded)."""
        return user_scope(self.query_users, user_rows)

    def _user_clicks_asked(self) -> Clicks:
        """The clicks of the users `bound_queries` keeps: what the user-keyed click counts index."""
        c = self.clicks
        if self.query_users is None:
            return c
        keep = self._asked(c.user)
        dwell = None if c.dwell_s is None else c.dwell_s[keep]
        return Clicks(c.user[keep], c.item[keep], c.ts[keep], dwell)

    @functools.cached_property
    def user_clicks(self) -> EventIndex:
        """key user row → value item row + 1 (0 is padding)."""
        c = self.clicks
        return EventIndex(c.user, c.ts, c.item + 1)

    @functools.cached_property
    def item_clicks(self) -> EventIndex:
        return EventIndex(self.clicks.item, self.clicks.ts)

    @functools.cached_property
    def item_views(self) -> EventIndex:
        if self.views_from_us is not None:
            chunks = self.events.shown_chunks("item", self._upto())
            return views_after(chunks, self.num_items, self.views_from_us)
        shown = all_shown(self.events, "item")
        known = shown.rows >= 0
        return EventIndex(shown.rows[known], shown.ts[known])

    def bound_views(self, queries_from_us: int) -> None:
        """Let the item view index hold only what queries at or after `queries_from_us` read.

        Those read the views of the `VIEW_LOOKBACK_US` before them (the 24 h view counters, the
        48 h live catalog of the candidate sources) and each item's first view (its age when it
        has no publication time), so the index keeps the views from `queries_from_us -
        VIEW_LOOKBACK_US` on and one first view per item seen before, and the category view
        counts (all-time) count the views before that bound per key (data/bounded_views.py): the
        same answers, from a part of the log (a ranker trained on the latest rows of a large
        log). An earlier query raises (`check_view_queries`). No effect once the item view index
        is built.
        """
        if "item_views" not in self.__dict__:
            self.views_from_us = int(queries_from_us) - VIEW_LOOKBACK_US

    def bound_queries(self, from_us: int, until_us: int, user_rows: np.ndarray) -> None:
        """Let every index hold only what queries of `user_rows` at times in [from_us, until_us] read.

        `bound_views(from_us)`, and: no event after `until_us` is read (a query at t reads events
        before t), and the indexes keyed by user (sessions, the user x category and user x
        publisher click counts, the affinity's user counts, the user x category view counts) hold
        the events of `user_rows` alone (data/query_scope.py). The user click index (histories)
        keeps every user: the candidate sources' co-visitation and trending read everyone's
        clicks. The same answers for those queries; others raise (`check_queries`). A ranker
        trained on the latest rows of a large log asks for a few of its users over a few days.
        """
        built = [name for name in ("clicks", *INDEXES) if name in self.__dict__]
        if built:
            raise RuntimeError(f"PastEvents.bound_queries after {built} were built: bound them first")
        self.bound_views(from_us)
        self.until_us = int(until_us)
        self.query_users = users_mask(user_rows)

    def check_queries(self, user_rows: np.ndarray | None, ts_us: np.ndarray) -> None:
        """Raise if `bound_queries` left out what these (user, t) queries read (None: any user)."""
        check_scope(self.until_us, self.query_users, user_rows, ts_us)

    def check_view_queries(self, ts_us: np.ndarray) -> None:
        """Raise if the item view index is bounded (`bound_views`) after what these times read."""
        if self.views_from_us is None or np.size(ts_us) == 0:
            return
        earliest = int(np.min(ts_us))
        if earliest < self.views_from_us + VIEW_LOOKBACK_US:
            raise ValueError(
                f"view counters asked at {earliest} µs, before {self.views_from_us + VIEW_LOOKBACK_US} µs "
                "from which the bounded item view index (PastEvents.bound_views) answers"
            )

    @functools.cached_property
    def user_category_clicks(self) -> EventIndex:
        """key user row * num_categories + category bucket."""
        c = self._user_clicks_asked()
        return EventIndex(c.user * self.num_categories + self.category[c.item], c.ts)

    @functools.cached_property
    def user_publisher_clicks(self) -> EventIndex:
        """key user row * num_publishers + publisher bucket."""
        c = self._user_clicks_asked()
        return EventIndex(c.user * self.num_publishers + self.publisher[c.item], c.ts)

    @functools.cached_property
    def affinity(self) -> CategoryAffinity:
        """Category click counts overall, by demographic group and by user (data/affinity.py)."""
        return self._affinity_by(self.category)

    @functools.cached_property
    def subcategory_affinity(self) -> CategoryAffinity:
        """`affinity`'s counts with the subcategory in place of the category."""
        return self._affinity_by(self.subcategory)

    @functools.cached_property
    def type_affinity(self) -> CategoryAffinity:
        """`affinity`'s counts with the content type in place of the category."""
        return self._affinity_by(self.content_type)

    def _affinity_by(self, groups: np.ndarray) -> CategoryAffinity:
        """Click counts by the item grouping `groups` (catalog row → bucket), bounded as the views."""
        return CategoryAffinity(
            self.clicks,
            groups,
            self.demographics,
            self.demographic_buckets,
            self.views_from_us,
            self.query_users,
        )

    @functools.cached_property
    def group_items(self) -> GroupItemClicks:
        """Item clicks by demographic group (data/affinity.py)."""
        return GroupItemClicks(self.clicks, self.demographics, self.demographic_buckets, self.num_items)

    @functools.cached_property
    def category_dwell(self) -> CategoryDwell:
        """Log dwell of clicks by category and by (user, category) (data/affinity.py)."""
        return CategoryDwell(self.clicks, self.category)

    @functools.cached_property
    def category_views(self) -> tuple[EventIndex, EventIndex] | tuple[CountedIndex, CountedIndex]:
        """Impressions keyed by category bucket, and by user row * num_categories + category."""
        cats, keys, times = [], [], []
        upto = self._upto()
        by_user, by_item = self.events.shown_chunks("user", upto), self.events.shown_chunks("item", upto)
        if self.views_from_us is not None:  # bound_views: counts before the bound per key
            pairs = zip(by_user, by_item, strict=True)
            return category_views_after(
                pairs, self.category, self.num_categories, self.views_from_us, self.query_users
            )
        for users, items in zip(by_user, by_item, strict=True):  # both in log order, row-aligned
            known = (users.rows >= 0) & (items.rows >= 0)
            cat = self.category[items.rows[known]]
            cats.append(cat)
            keys.append(users.rows[known] * self.num_categories + cat)
            times.append(users.ts[known])
        if not cats:
            empty = np.zeros(0, dtype=np.int64)
            return EventIndex(empty, empty), EventIndex(empty, empty)
        ts = np.concatenate(times)
        return EventIndex(np.concatenate(cats), ts), EventIndex(np.concatenate(keys), ts)

    @functools.cached_property
    def sessions(self) -> SessionIndex:
        """Every user's requests and clicks (history included)."""
        # A request's rows share its (user, time), which the index counts once: deduplicated a
        # shard at a time, it is built from requests, not from every impression (10x fewer).
        # Under bound_queries, the requests and clicks of the users asked for, up to its end.
        users, times = [], []
        for chunk in self.events.shown_chunks("user", self._upto()):
            known = (chunk.rows >= 0) & self._asked(chunk.rows)
            pairs = pl.DataFrame({"user": chunk.rows[known], "ts": chunk.ts[known]}).unique()
            users.append(pairs.get_column("user").to_numpy())
            times.append(pairs.get_column("ts").to_numpy())
        c = self._user_clicks_asked()
        index = SessionIndex(np.concatenate([*users, c.user]), np.concatenate([*times, c.ts]))
        del users, times
        release_free_memory()  # the shards' arrays, freed on the heap (feedrank/memory.py)
        return index

    @functools.cached_property
    def covisits(self) -> PairIndex:
        """Consecutive in-session click pairs."""
        return PairIndex(self.clicks.user, self.clicks.item, self.clicks.ts, num_items=self.num_items)

    def latest_views(self, lo_us: int, hi_us: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, µs): each known item's latest view in each clock hour, of the views with
        lo <= time < hi; from the index when it is built, else read from the log for that stretch
        of time alone, a shard at a time (a few rows per live item and hour are ever held)."""
        if "item_views" in self.__dict__ and (self.views_from_us is None or lo_us >= self.views_from_us):
            views = self.item_views
            inside = (views.times >= lo_us) & (views.times < hi_us)
            return _latest_per_hour([Shown(views.keys[inside], views.times[inside])])
        return _latest_per_hour(self.events.shown_chunks("item", between=(lo_us, hi_us)))

    def keep_history_only(self) -> None:
        """Build the user click index (histories) and let go of the click arrays it came from.

        A two-tower reads histories alone: the (user, item, time, dwell) arrays, 32 bytes a
        click, would stay beside the index for nothing. Any other click index asked for later
        reads the clicks from the log again (same events, same order), so answers do not change.
        """
        _ = self.user_clicks
        self.release_clicks()

    def release_clicks(self) -> None:
        """Let go of the click arrays (32 bytes a click) once the indexes a run reads are built:
        any click index asked for later reads the clicks from the log again (same events, same
        order), so answers do not change."""
        if self._events is not None:  # after preload() the events are gone: keep what is built
            self.__dict__.pop("clicks", None)

    def preload(self) -> PastEvents:
        """Build every index now (a service must not pay for one on its first request)."""
        for name in INDEXES:
            getattr(self, name)
        self._events = None  # nothing reads them again: let the tables go
        return self

    def history(self, user_rows: np.ndarray, ts_us: np.ndarray, n: int) -> np.ndarray:
        """(N, n) item rows + 1 of each user's last n engagements before t, oldest first; 0 pads."""
        self.check_queries(None, ts_us)  # every user's clicks are kept, not every time's
        return self.user_clicks.last_n(user_rows, ts_us, n, pad=0)

    def counters(
        self, user_rows: np.ndarray, item_rows: np.ndarray, ts_us: np.ndarray, catalog: ItemCatalog
    ) -> np.ndarray:
        """(N, len(COUNTER_NAMES)) float32: the original nine counters (see `features`)."""
        return self.features(COUNTER_NAMES, user_rows, item_rows, ts_us, catalog)

    def features(
        self,
        names: Sequence[str],
        user_rows: np.ndarray,
        item_rows: np.ndarray,
        ts_us: np.ndarray,
        catalog: ItemCatalog,
        recent: RecentEvents | None = None,
    ) -> np.ndarray:
        """(N, len(names)) float32 columns named in `names` (module docstring) at each row's time t.

        Only events strictly before t are read; `recent` adds what serving saw after the snapshot.
        """
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown ranker features {unknown}; known: {sorted(FEATURE_NAMES)}")
        users, items, ts = np.asarray(user_rows), np.asarray(item_rows), np.asarray(ts_us)
        out = np.empty((ts.size, len(names)), dtype=np.float32)
        # A block of rows at a time: each row's columns are its own, and the float64 pieces the
        # columns share for every row at once took GBs for 2.9M rows (a ranker's examples at 100M
        # impressions). Serving's `recent` is aligned with all its (few) rows: one block.
        block = FEATURE_BLOCK if recent is None else max(ts.size, 1)
        for lo in range(0, max(ts.size, 1), block):
            part = slice(lo, lo + block)
            columns = FeatureColumns(self, users[part], items[part], ts[part], catalog, recent)
            for j, name in enumerate(names):
                out[part, j] = columns.get(name)
        if ts.size > block:
            release_free_memory()  # the blocks' pieces, freed on the heap (feedrank/memory.py)
        return out

    def session_columns(self, user_rows: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """(N, len(SESSION_COLUMNS)) float64 session features of each (user, t), before t."""
        t = np.asarray(ts_us, dtype=np.int64)
        state = self.sessions.state(user_rows, t)
        live = state.activities > 0
        clicks = self.user_clicks.count_before(user_rows, t)
        before_start = self.user_clicks.count_before(user_rows, np.where(live, state.start_us, t))
        latest = self.user_clicks.latest_before(user_rows, t)
        last_us = np.where(latest >= 0, self.user_clicks.times_at(np.maximum(latest, 0)), NO_TIME)
        return session_values(
            state.activities,
            np.where(live, clicks - before_start, 0),
            live & (last_us >= state.start_us),
            t - last_us,
        )

    def serving_session(self, user_row: int, now_us: int, online_us: Sequence[int]) -> np.ndarray:
        """(len(SESSION_COLUMNS),) one user's session at now with the engagements of `online_us`
        (µs, after the snapshot, oldest first) counted as activities and clicks."""
        recent = [ts for ts in online_us if ts < now_us]
        if not recent:
            return f64(self.session_columns(np.array([user_row]), np.array([now_us]))[0])
        first = len(recent) - 1  # the online clicks chained to the latest one within session gaps
        while first > 0 and recent[first] - recent[first - 1] <= SESSION_GAP_US:
            first -= 1
        if now_us - recent[-1] > SESSION_GAP_US:
            return f64(session_values(np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool), np.zeros(1))[0])
        chain = len(recent) - first
        at = np.array([recent[first]], dtype=np.int64)  # the snapshot session this chain continues
        state = self.sessions.state(np.array([user_row]), at)
        snap_clicks = 0
        if state.activities[0] > 0:
            snap_clicks = int(
                self.user_clicks.count_before(np.array([user_row]), at)[0]
                - self.user_clicks.count_before(np.array([user_row]), state.start_us)[0]
            )
        values = session_values(
            state.activities + chain,
            np.array([snap_clicks + chain]),
            np.ones(1, dtype=bool),
            np.array([now_us - recent[-1]]),
        )
        return f64(values[0])


def _latest_per_hour(chunks: Iterable[Shown]) -> tuple[np.ndarray, np.ndarray]:
    """(item rows, µs) of the latest view of each known item in each clock hour of `chunks`."""
    parts = []
    for chunk in chunks:
        known = chunk.rows >= 0
        frame = pl.DataFrame({"item": chunk.rows[known], "ts": chunk.ts[known]})
        hours = frame.with_columns(hour=pl.col("ts") // US_PER_HOUR)
        parts.append(hours.group_by("item", "hour").agg(pl.col("ts").max()))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    latest = pl.concat(parts).group_by("item", "hour").agg(pl.col("ts").max())
    return latest.get_column("item").to_numpy(), latest.get_column("ts").to_numpy()


def session_values(
    activities: np.ndarray, clicks: np.ndarray, has_click: np.ndarray, since_us: np.ndarray
) -> np.ndarray:
    """(N, len(SESSION_COLUMNS)) the session columns from raw counts (µs since the last click)."""
    since_s = np.where(has_click, np.maximum(since_us, 0) / 1e6, 0.0)
    return np.stack(
        [np.log1p(activities), np.log1p(clicks), np.log1p(since_s), (~has_click).astype(np.float64)], axis=1
    )


def build_past_events(
    history: pl.DataFrame,
    impressions: pl.DataFrame,
    catalog: ItemCatalog,
    users: UserDirectory,
    *,
    ctr_prior: float,
    demographic_buckets: int = 0,
) -> PastEvents:
    """Every index over the pre-window history and the impressions' clicks and views, built now.

    History rows without a time count as "before everything"; within a user they keep their
    `seq` order. `ctr_prior` (the base click rate that smooths a new item's CTR) is fitted on the
    training window by the caller: computing it here from all impressions would leak the future.
    """
    events = FrameEvents(history, impressions, catalog, users)
    past = PastEvents(
        events,
        catalog,
        global_ctr=ctr_prior,
        demographics=users.demographics,
        demographic_buckets=demographic_buckets,
    )
    return past.preload()
