# Over 300 lines: FeatureColumns is one lazy cache of named columns whose pieces (the user's click
# count, category lifts, session state) several columns share; one method per column keeps it flat.
"""The ranker's dense feature columns for one set of (user, item, t) query rows.

`PastEvents.features` (data/history.py) names the columns it wants; `FeatureColumns` computes each
one lazily, sharing what several columns read (the user's click count, the co-visits with the
latest clicks, the session state), and adds `RecentEvents`, what serving saw after its snapshot.
Every lookup goes through the strictly-before-t indexes of `PastEvents`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from feedrank.data.features import US_PER_HOUR, ItemCatalog
from feedrank.data.timeline import NO_TIME, EventIndex

if TYPE_CHECKING:
    from feedrank.data.affinity import CategoryAffinity
    from feedrank.data.history import PastEvents

COUNTER_WINDOWS_H = (1, 6, 24)  # hours of the original item click counters
CLICK_WINDOWS_US = {  # the item click counters, by window: online clicks top these up in serving
    "item_clicks_2m": 2 * 60_000_000,
    "item_clicks_10m": 10 * 60_000_000,
    "item_clicks_30m": 30 * 60_000_000,
    **{f"item_clicks_{w}h": w * US_PER_HOUR for w in COUNTER_WINDOWS_H},
}
CTR_PRIOR_VIEWS = 20.0  # pseudo-views that pull a new item's CTR towards the global rate
USER_PRIOR_VIEWS = 10.0  # pseudo-views that pull a user's click rate on a category towards everyone's
COVIS_CLICKS = 5  # the user's latest clicks that co-visitation looks back on
COVIS_RECENT_US = 2 * US_PER_HOUR  # window of the recent co-visitation column
COVIS_NOW_US = 30 * 60_000_000  # window of the co-visitation column of the last half hour


@dataclass(frozen=True)
class RecentEvents:
    """What happened after the indexed snapshot (serving), aligned with the query rows.

    item_clicks: window µs → (N,) clicks each row's item received after the snapshot in [t - w, t).
    last_clicks: (N, COVIS_CLICKS) item rows + 1 of the user's latest engagements before t,
        snapshot and online merged, oldest first, 0 pads.
    session: (N, len(SESSION_COLUMNS)) the session columns with the online clicks counted.
    demographics: (N, D) demographic buckets of each row's user (a user the bundle does not know
        brings them with the request); None: the directory's.
    """

    item_clicks: Callable[[int], np.ndarray]
    last_clicks: np.ndarray
    session: np.ndarray
    demographics: np.ndarray | None = None


def f64(values: object) -> np.ndarray:
    """A float64 array (numpy's ufuncs are typed as returning Any)."""
    return np.asarray(values, dtype=np.float64)


class FeatureColumns:
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
        past.check_queries(user_rows, self.t)  # the indexes may hold only some users and times
        self._cache: dict[str, np.ndarray] = {}
        # Rows of one query (a user at one time: a slate, a candidate pool) usually come together:
        # the columns of the user alone are looked up once per such run of rows and repeated.
        change = (self.u[1:] != self.u[:-1]) | (self.t[1:] != self.t[:-1])
        self._run_first = np.flatnonzero(np.r_[True, change]) if self.t.size else np.zeros(0, np.int64)
        self._run_of = np.cumsum(np.r_[True, change]) - 1 if self.t.size else np.zeros(0, np.int64)

    def _per_user(self, lookup: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """`lookup(user_rows, ts_us)` of every row, asked once per run of rows of one (user, t)."""
        first = self._run_first
        out: np.ndarray = lookup(self.u[first], self.t[first])[self._run_of]
        return out

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
            raw = self.item_count("clicks", window).astype(np.float64)
            if self.recent is not None and window is not None:
                raw = raw + self.recent.item_clicks(window)
            self._cache[key] = raw
        return self._cache[key]

    def item_count(self, which: str, window_us: int | None = None) -> np.ndarray:
        """(N,) int64 `count_before` of each row's item in the "clicks" or "views" index, bounds shared."""
        key = f"count_{which}_{window_us}"
        if key not in self._cache:
            if which == "views":
                self.past.check_view_queries(self.t)
            index = self.past.item_clicks if which == "clicks" else self.past.item_views
            start, end = f"start_{which}", f"end_{which}"
            if end not in self._cache:
                self._cache[start], self._cache[end] = index.starts(self.i), index.ends(self.i, self.t)
            lo = self._cache[start] if window_us is None else index.ends(self.i, self.t - window_us)
            self._cache[key] = self._cache[end] - lo
        return self._cache[key]

    def _log_clicks(self, name: str) -> np.ndarray:
        return f64(np.log1p(self.clicks(name)))

    def _item_views_24h(self) -> np.ndarray:
        return f64(np.log1p(self.item_count("views", 24 * US_PER_HOUR)))

    def _item_ctr_24h(self) -> np.ndarray:
        # The snapshot's counts only: views after the snapshot are not tracked online.
        clicks = self.item_count("clicks", 24 * US_PER_HOUR)
        views = self.item_count("views", 24 * US_PER_HOUR)
        return (clicks + CTR_PRIOR_VIEWS * self.past.global_ctr) / (views + CTR_PRIOR_VIEWS)

    def _item_clicks_all(self) -> np.ndarray:
        return f64(np.log1p(self.item_count("clicks")))

    def user_all(self) -> np.ndarray:
        if "raw_user_all" not in self._cache:
            counts = self._per_user(self.past.user_clicks.count_before)
            self._cache["raw_user_all"] = counts.astype(np.float64)
        return self._cache["raw_user_all"]

    def _user_clicks_all(self) -> np.ndarray:
        return f64(np.log1p(self.user_all()))

    def _share(self, index: EventIndex, column: np.ndarray, buckets: int) -> np.ndarray:
        value = np.where(self.i >= 0, column[np.maximum(self.i, 0)], 0)
        clicks = index.count_before(self.u * buckets + value, self.t)
        return np.where(value > 0, (clicks + 0.1) / (self.user_all() + 1.0), 0.0)

    def item_category(self) -> np.ndarray:
        """(N,) category bucket of each row's item (0 for none)."""
        return np.where(self.i >= 0, self.catalog.category[np.maximum(self.i, 0)], 0)

    def category_lifts(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) overall share of each row's category and (N,) its demographic groups' log lift."""
        if "raw_overall" not in self._cache:
            self.past.check_view_queries(self.t)  # its click counts are bounded with the views
            affinity = self.past.affinity
            category = self.item_category()
            overall = affinity.overall_share(category, self.t)
            lift = affinity.group_lift(self.user_demographics(), category, self.t, overall)
            self._cache["raw_overall"], self._cache["raw_lift"] = overall, lift
        return self._cache["raw_overall"], self._cache["raw_lift"]

    def _demo_category_lift(self) -> np.ndarray:
        _, lift = self.category_lifts()
        return f64(np.where(self.item_category() > 0, lift, 0.0))

    def user_demographics(self) -> np.ndarray:
        """(N, D) each row's user's demographic buckets: the request's for a user the bundle does
        not know, else the directory's."""
        if self.recent is not None and self.recent.demographics is not None:
            return self.recent.demographics
        return self.past.affinity.user_demographics(self.u)

    def _group_lift(self, affinity: CategoryAffinity, column: np.ndarray) -> np.ndarray:
        value = np.where(self.i >= 0, column[np.maximum(self.i, 0)], 0)
        overall = affinity.overall_share(value, self.t)
        lift = affinity.group_lift(self.user_demographics(), value, self.t, overall)
        return f64(np.where(value > 0, lift, 0.0))

    def _demo_subcategory_lift(self) -> np.ndarray:
        return self._group_lift(self.past.subcategory_affinity, self.catalog.subcategory)

    def _demo_type_lift(self) -> np.ndarray:
        return self._group_lift(self.past.type_affinity, self.catalog.content_type)

    def _demo_item_lift_24h(self) -> np.ndarray:
        return f64(self.past.group_items.lift(self.user_demographics(), self.i, self.t, 24 * US_PER_HOUR))

    def _user_category_affinity(self) -> np.ndarray:
        overall, lift = self.category_lifts()
        category = self.item_category()
        out = self.past.affinity.user_lift(self.u, category, self.t, overall, lift)
        return f64(np.where(category > 0, out, 0.0))

    def _user_category_ctr_lift(self) -> np.ndarray:
        category = self.item_category()
        self.past.check_view_queries(self.t)  # the category view counts may be bounded too
        by_category, by_user = self.past.category_views
        clicks_c = self.past.affinity.by_category.count_before(category, self.t)
        rate = (clicks_c + CTR_PRIOR_VIEWS * self.past.global_ctr) / (
            by_category.count_before(category, self.t) + CTR_PRIOR_VIEWS
        )
        known = self.u >= 0
        key = np.maximum(self.u, 0) * self.past.num_categories + category
        clicks = np.where(known, self.past.affinity.user_category.count_before(key, self.t), 0)
        # clicks of the undated history were never shown as impressions: they count as views too
        views = np.maximum(np.where(known, by_user.count_before(key, self.t), 0), clicks)
        user_rate = (clicks + USER_PRIOR_VIEWS * rate) / (views + USER_PRIOR_VIEWS)
        return f64(np.where(category > 0, np.log(user_rate / rate), 0.0))

    def _user_category_dwell(self) -> np.ndarray:
        category = self.item_category()
        return f64(self.past.category_dwell.user_excess(self.u, category, self.t))

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
            views = self.item_count("views")  # its earliest view before t is at start_views
            first = np.where(views > 0, self._cache["start_views"], -1)
            first_us = np.where(first >= 0, self.past.item_views.times_at(np.maximum(first, 0)), NO_TIME)
            since = np.where(published != NO_TIME, published, first_us)
            known = (since != NO_TIME) & (self.i >= 0)
            hours = np.maximum(self.t - np.where(known, since, self.t), 0) / US_PER_HOUR
            self._cache["raw_age"] = np.where(known, hours, np.nan)
        return self._cache["raw_age"]

    def _item_age_log_h(self) -> np.ndarray:
        return f64(np.nan_to_num(np.log1p(self.age_h()), nan=0.0))

    def _item_age_known(self) -> np.ndarray:
        return f64((~np.isnan(self.age_h())).astype(np.float64))

    def last_clicks(self) -> np.ndarray:
        """(N, COVIS_CLICKS) item rows + 1 of the user's latest clicks before t, oldest first; 0 pads."""
        if "raw_last" not in self._cache:
            if self.recent is not None:
                self._cache["raw_last"] = self.recent.last_clicks
            else:
                self._cache["raw_last"] = self._per_user(
                    lambda u, t: self.past.user_clicks.last_n(u, t, COVIS_CLICKS, pad=0)
                )
        return self._cache["raw_last"]

    def covis(self) -> np.ndarray:
        """(N, COVIS_CLICKS) co-visits of each row's item after each of the user's latest clicks."""
        if "raw_covis" not in self._cache:
            last = self.last_clicks()
            k = last.shape[1]
            counts = self.past.covisits.count_before(
                (last - 1).reshape(-1), np.repeat(self.i, k), np.repeat(self.t, k)
            )
            self._cache["raw_covis"] = counts.reshape(-1, k).astype(np.float64)
        return self._cache["raw_covis"]

    def previous(self) -> np.ndarray:
        """(N,) catalog row of the user's latest click before t; -1 when none."""
        last = self.last_clicks()
        return last[:, -1] - 1 if last.shape[1] else np.full(self.t.size, -1, dtype=np.int64)

    def _covis_last_2h(self) -> np.ndarray:
        recent = self.past.covisits.count_before(self.previous(), self.i, self.t, COVIS_RECENT_US)
        return f64(np.log1p(recent))

    def _covis_last_30m(self) -> np.ndarray:
        recent = self.past.covisits.count_before(self.previous(), self.i, self.t, COVIS_NOW_US)
        return f64(np.log1p(recent))

    def _covis_prev2(self) -> np.ndarray:
        covis = self.covis()
        return f64(np.log1p(covis[:, -2])) if covis.shape[1] >= 2 else np.zeros(self.t.size)

    def _covis_back_last(self) -> np.ndarray:
        return f64(np.log1p(self.past.covisits.count_before(self.i, self.previous(), self.t)))

    def _covis_last_out(self) -> np.ndarray:
        return f64(np.log1p(self.past.covisits.count_from(self.previous(), self.t)))

    def _covis_last_share(self) -> np.ndarray:
        out = self.past.covisits.count_from(self.previous(), self.t)
        last = self.covis()[:, -1] if self.covis().shape[1] else np.zeros(self.t.size)
        return f64(last / (out + 1.0))

    def _item_in_last5(self) -> np.ndarray:
        last = self.last_clicks()
        return f64((last == (self.i + 1)[:, None]).any(axis=1) & (self.i >= 0))

    def _covis_last(self) -> np.ndarray:
        return np.log1p(self.covis()[:, -1]) if self.covis().shape[1] else np.zeros(self.t.size)

    def _covis_sum5(self) -> np.ndarray:
        return f64(np.log1p(self.covis().sum(axis=1)))

    def _covis_max5(self) -> np.ndarray:
        return f64(np.log1p(self.covis().max(axis=1, initial=0.0)))

    def session(self) -> np.ndarray:
        if "raw_session" not in self._cache:
            if self.recent is not None:
                self._cache["raw_session"] = self.recent.session
            else:
                self._cache["raw_session"] = self._per_user(self.past.session_columns)
        return self._cache["raw_session"]

    def _session_activities(self) -> np.ndarray:
        return self.session()[:, 0]

    def _session_clicks(self) -> np.ndarray:
        return self.session()[:, 1]

    def _since_session_click_log_s(self) -> np.ndarray:
        return self.session()[:, 2]

    def _no_session_click(self) -> np.ndarray:
        return self.session()[:, 3]
