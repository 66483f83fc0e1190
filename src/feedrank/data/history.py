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

Columns for click-only news logs (`NEWS_NAMES`; not in the default list, a run names them), where
the next click is mostly decided by the click before it and by what is being read right now:

    covis_last_2h              log(1 + co-visits after the user's latest click, last 2 hours only)
    covis_back_last            log(1 + co-visits the other way: the user's latest click after the candidate)
    covis_last_out             log(1 + every co-visit out of the user's latest click): how much
                               evidence covis_last rests on
    covis_last_share           co-visits after the latest click / (1 + all co-visits out of it)
    item_in_last5              1 when the candidate is one of the user's latest 5 clicks (re-reads are rare)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.features import ItemCatalog, UserDirectory, to_us
from feedrank.data.ranker_columns import COUNTER_WINDOWS_H as COUNTER_WINDOWS_H
from feedrank.data.ranker_columns import CTR_PRIOR_VIEWS as CTR_PRIOR_VIEWS
from feedrank.data.ranker_columns import FeatureColumns, f64
from feedrank.data.ranker_columns import RecentEvents as RecentEvents
from feedrank.data.sessions import SESSION_GAP_US, PairIndex, SessionIndex
from feedrank.data.timeline import NO_TIME, EventIndex

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
RANKER_FEATURES = COUNTER_NAMES + RECENCY_NAMES
NEWS_NAMES = ("covis_last_2h", "covis_back_last", "covis_last_out", "covis_last_share", "item_in_last5")
NEWS_FEATURES = RANKER_FEATURES + NEWS_NAMES
FEATURE_NAMES = frozenset(NEWS_FEATURES)
SESSION_COLUMNS = ("session_activities", "session_clicks", "since_session_click_log_s", "no_session_click")


@dataclass(frozen=True)
class PastEvents:
    """Indexes of engagements and views, keyed by user row or item row, for strictly-before lookups."""

    user_clicks: EventIndex  # key user row → value item row + 1 (0 is padding)
    item_clicks: EventIndex  # key item row
    item_views: EventIndex  # key item row
    user_category_clicks: EventIndex  # key user row * num_categories + category bucket
    user_publisher_clicks: EventIndex  # key user row * num_publishers + publisher bucket
    sessions: SessionIndex  # every user's requests and clicks
    covisits: PairIndex  # consecutive in-session click pairs
    num_categories: int
    num_publishers: int
    global_ctr: float

    def history(self, user_rows: np.ndarray, ts_us: np.ndarray, n: int) -> np.ndarray:
        """(N, n) item rows + 1 of each user's last n engagements before t, oldest first; 0 pads."""
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
        columns = FeatureColumns(
            self, np.asarray(user_rows), np.asarray(item_rows), np.asarray(ts_us), catalog, recent
        )
        out = np.empty((len(columns.t), len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            out[:, j] = columns.get(name)
        return out

    def session_columns(self, user_rows: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """(N, len(SESSION_COLUMNS)) float64 session features of each (user, t), before t."""
        t = np.asarray(ts_us, dtype=np.int64)
        state = self.sessions.state(user_rows, t)
        live = state.activities > 0
        clicks = self.user_clicks.count_before(user_rows, t)
        before_start = self.user_clicks.count_before(user_rows, np.where(live, state.start_us, t))
        latest = self.user_clicks.latest_before(user_rows, t)
        last_us = np.where(latest >= 0, self.user_clicks.times[np.maximum(latest, 0)], NO_TIME)
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
) -> PastEvents:
    """Index the pre-window history and the impressions' clicks and views.

    History rows without a time count as "before everything"; within a user they keep their
    `seq` order. `ctr_prior` (the base click rate that smooths a new item's CTR) is fitted on the
    training window by the caller: computing it here from all impressions would leak the future.
    """
    hist = history.sort("user_id", "seq")
    h_user = users.rows(hist.get_column("user_id"))
    h_item = catalog.rows(hist.get_column("item_id"))
    h_ts = to_us(hist.get_column("ts"))

    imp = impressions.select("user_id", "item_id", "ts", "clicked")
    i_user = users.rows(imp.get_column("user_id"))
    i_item = catalog.rows(imp.get_column("item_id"))
    i_ts = to_us(imp.get_column("ts"))
    clicked = imp.get_column("clicked").to_numpy().astype(bool)

    c_user = np.concatenate([h_user, i_user[clicked]])
    c_item = np.concatenate([h_item, i_item[clicked]])
    c_ts = np.concatenate([h_ts, i_ts[clicked]])
    known = (c_user >= 0) & (c_item >= 0)
    c_user, c_item, c_ts = c_user[known], c_item[known], c_ts[known]

    activity_user = np.concatenate([i_user, c_user])  # requests and clicks (history included)
    activity_ts = np.concatenate([i_ts, c_ts])
    num_categories = int(catalog.category.max(initial=0)) + 1
    num_publishers = int(catalog.publisher.max(initial=0)) + 1
    views_known = i_item >= 0
    return PastEvents(
        user_clicks=EventIndex(c_user, c_ts, c_item + 1),
        item_clicks=EventIndex(c_item, c_ts),
        item_views=EventIndex(i_item[views_known], i_ts[views_known]),
        user_category_clicks=EventIndex(c_user * num_categories + catalog.category[c_item], c_ts),
        user_publisher_clicks=EventIndex(c_user * num_publishers + catalog.publisher[c_item], c_ts),
        sessions=SessionIndex(activity_user[activity_user >= 0], activity_ts[activity_user >= 0]),
        covisits=PairIndex(c_user, c_item, c_ts, num_items=len(catalog)),
        num_categories=num_categories,
        num_publishers=num_publishers,
        global_ctr=ctr_prior,
    )
