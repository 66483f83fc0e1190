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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.features import US_PER_HOUR, ItemCatalog, UserDirectory, to_us
from feedrank.data.sessions import SESSION_GAP_US, PairIndex, SessionIndex
from feedrank.data.timeline import NO_TIME, EventIndex

COUNTER_WINDOWS_H = (1, 6, 24)
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
FEATURE_NAMES = frozenset(RANKER_FEATURES)
CLICK_WINDOWS_US = {  # the item click counters, by window: online clicks top these up in serving
    "item_clicks_10m": 10 * 60_000_000,
    **{f"item_clicks_{w}h": w * US_PER_HOUR for w in COUNTER_WINDOWS_H},
}
CTR_PRIOR_VIEWS = 20.0  # pseudo-views that pull a new item's CTR towards the global rate
COVIS_CLICKS = 5  # the user's latest clicks that co-visitation looks back on
SESSION_COLUMNS = ("session_activities", "session_clicks", "since_session_click_log_s", "no_session_click")


@dataclass(frozen=True)
class RecentEvents:
    """What happened after the indexed snapshot (serving), aligned with the query rows.

    item_clicks: window µs → (N,) clicks each row's item received after the snapshot in [t - w, t).
    last_clicks: (N, COVIS_CLICKS) item rows + 1 of the user's latest engagements before t,
        snapshot and online merged, oldest first, 0 pads.
    session: (N, len(SESSION_COLUMNS)) the session columns with the online clicks counted.
    """

    item_clicks: Callable[[int], np.ndarray]
    last_clicks: np.ndarray
    session: np.ndarray


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
        columns = _Columns(
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
            return _f64(self.session_columns(np.array([user_row]), np.array([now_us]))[0])
        first = len(recent) - 1  # the online clicks chained to the latest one within session gaps
        while first > 0 and recent[first] - recent[first - 1] <= SESSION_GAP_US:
            first -= 1
        if now_us - recent[-1] > SESSION_GAP_US:
            return _f64(session_values(np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool), np.zeros(1))[0])
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
        return _f64(values[0])


def _f64(values: object) -> np.ndarray:
    """A float64 array (numpy's ufuncs are typed as returning Any)."""
    return np.asarray(values, dtype=np.float64)


def session_values(
    activities: np.ndarray, clicks: np.ndarray, has_click: np.ndarray, since_us: np.ndarray
) -> np.ndarray:
    """(N, len(SESSION_COLUMNS)) the session columns from raw counts (µs since the last click)."""
    since_s = np.where(has_click, np.maximum(since_us, 0) / 1e6, 0.0)
    return np.stack(
        [np.log1p(activities), np.log1p(clicks), np.log1p(since_s), (~has_click).astype(np.float64)], axis=1
    )


class _Columns:
    """Lazily computed feature columns for one set of query rows (shared pieces computed once)."""

    def __init__(
        self,
        past: PastEvents,
        user_rows: np.ndarray,
        item_rows: np.ndarray,
        ts_us: np.ndarray,
        catalog: ItemCatalog,
        recent: RecentEvents | None,
    ) -> None:
        self.past, self.u, self.i, self.catalog, self.recent = past, user_rows, item_rows, catalog, recent
        self.t = ts_us.astype(np.int64)
        self._cache: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = (
                getattr(self, "_" + name)() if not name.startswith("item_clicks_") else self._log_clicks(name)
            )
        return self._cache[name]

    def clicks(self, name: str) -> np.ndarray:
        """(N,) raw clicks of each row's item in the window of counter `name`, online ones added."""
        key = "raw_" + name
        if key not in self._cache:
            window = CLICK_WINDOWS_US.get(name)
            raw = self.past.item_clicks.count_before(self.i, self.t, window).astype(np.float64)
            if self.recent is not None and window is not None:
                raw = raw + self.recent.item_clicks(window)
            self._cache[key] = raw
        return self._cache[key]

    def _log_clicks(self, name: str) -> np.ndarray:
        return _f64(np.log1p(self.clicks(name)))

    def _item_views_24h(self) -> np.ndarray:
        return _f64(np.log1p(self.past.item_views.count_before(self.i, self.t, 24 * US_PER_HOUR)))

    def _item_ctr_24h(self) -> np.ndarray:
        # The snapshot's counts only: views after the snapshot are not tracked online.
        clicks = self.past.item_clicks.count_before(self.i, self.t, 24 * US_PER_HOUR)
        views = self.past.item_views.count_before(self.i, self.t, 24 * US_PER_HOUR)
        return (clicks + CTR_PRIOR_VIEWS * self.past.global_ctr) / (views + CTR_PRIOR_VIEWS)

    def _item_clicks_all(self) -> np.ndarray:
        return _f64(np.log1p(self.past.item_clicks.count_before(self.i, self.t)))

    def user_all(self) -> np.ndarray:
        if "raw_user_all" not in self._cache:
            self._cache["raw_user_all"] = self.past.user_clicks.count_before(self.u, self.t).astype(
                np.float64
            )
        return self._cache["raw_user_all"]

    def _user_clicks_all(self) -> np.ndarray:
        return _f64(np.log1p(self.user_all()))

    def _share(self, index: EventIndex, column: np.ndarray, buckets: int) -> np.ndarray:
        value = np.where(self.i >= 0, column[np.maximum(self.i, 0)], 0)
        clicks = index.count_before(self.u * buckets + value, self.t)
        return np.where(value > 0, (clicks + 0.1) / (self.user_all() + 1.0), 0.0)

    def _user_category_share(self) -> np.ndarray:
        return self._share(self.past.user_category_clicks, self.catalog.category, self.past.num_categories)

    def _user_publisher_share(self) -> np.ndarray:
        return self._share(self.past.user_publisher_clicks, self.catalog.publisher, self.past.num_publishers)

    def _item_velocity(self) -> np.ndarray:
        expected_10m = self.clicks("item_clicks_24h") * (10.0 / 1440.0)
        return np.log((self.clicks("item_clicks_10m") + 1.0) / (expected_10m + 1.0))

    def age_h(self) -> np.ndarray:
        """(N,) hours since publication (else since the item's first view before t); NaN if neither."""
        if "raw_age" not in self._cache:
            published = np.where(self.i >= 0, self.catalog.published_us[np.maximum(self.i, 0)], NO_TIME)
            first = self.past.item_views.earliest_before(self.i, self.t)
            first_us = np.where(first >= 0, self.past.item_views.times[np.maximum(first, 0)], NO_TIME)
            since = np.where(published != NO_TIME, published, first_us)
            known = (since != NO_TIME) & (self.i >= 0)
            hours = np.maximum(self.t - np.where(known, since, self.t), 0) / US_PER_HOUR
            self._cache["raw_age"] = np.where(known, hours, np.nan)
        return self._cache["raw_age"]

    def _item_age_log_h(self) -> np.ndarray:
        return _f64(np.nan_to_num(np.log1p(self.age_h()), nan=0.0))

    def _item_age_known(self) -> np.ndarray:
        return _f64((~np.isnan(self.age_h())).astype(np.float64))

    def covis(self) -> np.ndarray:
        """(N, COVIS_CLICKS) co-visits of each row's item after each of the user's latest clicks."""
        if "raw_covis" not in self._cache:
            if self.recent is not None:
                last = self.recent.last_clicks
            else:
                last = self.past.user_clicks.last_n(self.u, self.t, COVIS_CLICKS, pad=0)
            k = last.shape[1]
            counts = self.past.covisits.count_before(
                (last - 1).reshape(-1), np.repeat(self.i, k), np.repeat(self.t, k)
            )
            self._cache["raw_covis"] = counts.reshape(-1, k).astype(np.float64)
        return self._cache["raw_covis"]

    def _covis_last(self) -> np.ndarray:
        return np.log1p(self.covis()[:, -1]) if self.covis().shape[1] else np.zeros(self.t.size)

    def _covis_sum5(self) -> np.ndarray:
        return _f64(np.log1p(self.covis().sum(axis=1)))

    def _covis_max5(self) -> np.ndarray:
        return _f64(np.log1p(self.covis().max(axis=1, initial=0.0)))

    def session(self) -> np.ndarray:
        if "raw_session" not in self._cache:
            if self.recent is not None:
                self._cache["raw_session"] = self.recent.session
            else:
                self._cache["raw_session"] = self.past.session_columns(self.u, self.t)
        return self._cache["raw_session"]

    def _session_activities(self) -> np.ndarray:
        return self.session()[:, 0]

    def _session_clicks(self) -> np.ndarray:
        return self.session()[:, 1]

    def _since_session_click_log_s(self) -> np.ndarray:
        return self.session()[:, 2]

    def _no_session_click(self) -> np.ndarray:
        return self.session()[:, 3]


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
