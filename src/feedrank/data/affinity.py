"""A user's affinity for an item's category, from few clicks: shrunk towards the user's groups.

Most users have only a couple of clicks, so the raw share of their clicks in a category
(`user_category_share`) is mostly noise: one click makes one category look like everything they
read, and a user without clicks looks like no one. Here each user's category share is a posterior
mean whose prior is what users of the same demographic groups click, and every value is read
relative to the category's overall share, so "this user reads sports more than people do" is one
number the ranker can use directly. All counts are of clicks strictly before t.

With K categories, N clicks before t (N_c in category c), and for each demographic attribute a
the clicks of users with this user's value of a (M_a, M_ac in c):

    overall share    g_c  = (N_c + 1) / (N + K)
    group share      s_ac = (M_ac + GROUP_PRIOR_CLICKS * g_c) / (M_a + GROUP_PRIOR_CLICKS)
    group lift       L_c  = sum over attributes of log(s_ac / g_c)            `demo_category_lift`
    prior share      p_c  = min(g_c * exp(L_c), 1)
    user share       q_c  = (n_c + USER_PRIOR_CLICKS * p_c) / (n + USER_PRIOR_CLICKS)
    user lift        log(q_c / g_c)                                       `user_category_affinity`

(n, n_c: the user's own clicks). Adding the attributes' log lifts treats them as independent
evidence, the way demographic groups combine in a log-linear model of interests. A user the
system does not know, or an attribute value of bucket 0 (missing), adds no lift: the prior is
then the overall share and the user lift is 0.
"""

from __future__ import annotations

import numpy as np

from feedrank.data.bounded_views import CountedIndex, KeyChunks, counted
from feedrank.data.event_log import Clicks
from feedrank.data.query_scope import user_scope
from feedrank.data.timeline import EventIndex

GROUP_PRIOR_CLICKS = 50.0  # pseudo-clicks that pull a small group's shares towards the overall ones
USER_PRIOR_CLICKS = 2.0  # pseudo-clicks of the prior in a user's own share: two clicks weigh as much
GROUP_BLOCK = 1_000_000  # clicks whose (click x attribute) keys are made at once


class CategoryAffinity:
    """Click counts by category, by (demographic value, category) and by (user, category).

    Args:
        clicks: every engagement (user row, item row, time) the past holds.
        category: (I,) category bucket of each catalog row (0 = missing).
        demographics: (U, D) demographic buckets of each user row (0 = missing); None: no groups.
        num_buckets: demographic buckets per attribute (keys of different attributes never meet).
    """

    def __init__(
        self,
        clicks: Clicks,
        category: np.ndarray,
        demographics: np.ndarray | None,
        num_buckets: int,
        counts_from_us: int | None = None,
        query_users: np.ndarray | None = None,
    ) -> None:
        """`counts_from_us`: every query is at or after it (PastEvents.bound_views); each index
        then holds the clicks from it on, and a count per key of those before (`CountedIndex`).
        `query_users` (data/query_scope.py): the user counts hold those users' clicks alone."""
        self.num_categories = int(category.max(initial=0)) + 1
        self.known_categories = max(int(np.unique(category[category > 0]).size), 1)
        cat = category[clicks.item]
        has = cat > 0

        def index(keys: np.ndarray, times: np.ndarray) -> EventIndex | CountedIndex:
            return EventIndex(keys, times) if counts_from_us is None else counted(keys, times, counts_from_us)

        self.by_category = index(cat[has], clicks.ts[has])
        self.all_clicks = index(np.zeros(int(has.sum()), dtype=np.int64), clicks.ts[has])
        mine = has & user_scope(query_users, clicks.user)
        self.user_category = index(clicks.user[mine] * self.num_categories + cat[mine], clicks.ts[mine])
        self.user_all = index(clicks.user[mine], clicks.ts[mine])
        self.demographics = demographics
        # attribute a's value v is key a * num_buckets + v: without a bucket count, the largest seen
        largest = int(demographics.max(initial=0)) if demographics is not None else 0
        self.num_buckets = num_buckets or largest + 1
        self.group_all: EventIndex | CountedIndex | None = None
        self.group_category: EventIndex | CountedIndex | None = None
        if demographics is None or not demographics.size:
            return
        if counts_from_us is None:
            group_all, group_category, times = self._group_keys(clicks.user[has], cat[has], clicks.ts[has])
            self.group_all, self.group_category = (
                EventIndex(group_all, times),
                EventIndex(group_category, times),
            )
            return
        # (clicks x attributes) keys, a block of clicks at a time: made for every click at once
        # they took 5.3 GB at 9.1M clicks (100M impressions) before the counts were taken.
        per_group, per_category = KeyChunks(counts_from_us), KeyChunks(counts_from_us)
        rows = np.flatnonzero(has)
        for lo in range(0, rows.size, GROUP_BLOCK):
            block = rows[lo : lo + GROUP_BLOCK]
            group_all, group_category, times = self._group_keys(
                clicks.user[block], cat[block], clicks.ts[block]
            )
            per_group.add(group_all, times)
            per_category.add(group_category, times)
        self.group_all, self.group_category = per_group.index(), per_category.index()

    def _group_keys(
        self, users: np.ndarray, cat: np.ndarray, ts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (click x attribute) keys of clicks with a valued attribute, click-major: attribute
        value, (attribute value, category), and their times."""
        assert self.demographics is not None
        num_attrs = self.demographics.shape[1]
        group = self.demographics[users]  # (C, D)
        keys = np.arange(num_attrs)[None, :] * self.num_buckets + group  # (C, D) attribute-value key
        times = np.repeat(ts, num_attrs)
        valued = (group > 0).reshape(-1)
        flat = keys.reshape(-1)
        by_category = (flat * self.num_categories + np.repeat(cat, num_attrs))[valued]
        return flat[valued], by_category, times[valued]

    def overall_share(self, category: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """(N,) g_c of the module docstring at each row's time."""
        n_c = self.by_category.count_before(category, ts_us)
        n = self.all_clicks.count_before(np.zeros_like(category), ts_us)
        out: np.ndarray = (n_c + 1.0) / (n + self.known_categories)
        return out

    def group_lift(
        self, user_demographics: np.ndarray, category: np.ndarray, ts_us: np.ndarray, overall: np.ndarray
    ) -> np.ndarray:
        """(N,) L_c: the summed log lifts of the category among the users' demographic groups.

        user_demographics: (N, D) buckets of each row's user (0 = unknown value, no lift)."""
        out = np.zeros(category.size)
        if self.group_all is None or self.group_category is None:
            return out
        for a in range(user_demographics.shape[1]):
            value = user_demographics[:, a]
            key = a * self.num_buckets + value
            m = self.group_all.count_before(key, ts_us)
            m_c = self.group_category.count_before(key * self.num_categories + category, ts_us)
            share = (m_c + GROUP_PRIOR_CLICKS * overall) / (m + GROUP_PRIOR_CLICKS)
            out += np.where(value > 0, np.log(share / overall), 0.0)
        return out

    def user_lift(
        self,
        user_rows: np.ndarray,
        category: np.ndarray,
        ts_us: np.ndarray,
        overall: np.ndarray,
        lift: np.ndarray,
    ) -> np.ndarray:
        """(N,) log(q_c / g_c): the user's posterior category share against the overall share."""
        known = user_rows >= 0
        users = np.maximum(user_rows, 0)
        n = np.where(known, self.user_all.count_before(users, ts_us), 0)
        keys = users * self.num_categories + category
        n_c = np.where(known, self.user_category.count_before(keys, ts_us), 0)
        prior = np.minimum(overall * np.exp(lift), 1.0)
        share = (n_c + USER_PRIOR_CLICKS * prior) / (n + USER_PRIOR_CLICKS)
        out: np.ndarray = np.log(share / overall)
        return out

    def user_demographics(self, user_rows: np.ndarray) -> np.ndarray:
        """(N, D) the directory's demographic buckets of user rows; zeros for unknown users (-1)."""
        if self.demographics is None:
            return np.zeros((user_rows.size, 0), dtype=np.int64)
        out = np.zeros((user_rows.size, self.demographics.shape[1]), dtype=np.int64)
        known = user_rows >= 0
        out[known] = self.demographics[user_rows[known]]
        return out


DWELL_PRIOR_CLICKS = 3.0  # pseudo-clicks at the category's mean log dwell in a user's own mean
# Log dwell is summed in fixed point (units of 1/DWELL_SCALE): integer sums are exact, so a sum
# before t does not depend on which later events the index also holds (the leakage test's check).
DWELL_SCALE = 4096.0


class CategoryDwell:
    """How long a user reads a category against how long everyone does (`user_category_dwell`).

    A click says the user opened an item; how long they stayed says how much it was theirs (read
    time rises with interest). With the log dwell of the user's n clicks in category c before t
    summing to S, and the category's mean log dwell m_c over every click before t:

        user_category_dwell = (S - n * m_c) / (n + DWELL_PRIOR_CLICKS)

    the user's mean excess log dwell in the category, shrunk towards 0 (no evidence: 0). Clicks
    without a dwell (NaN) and dwell under a second (read as one second) do not count / are floored.
    """

    def __init__(self, clicks: Clicks, category: np.ndarray) -> None:
        self.num_categories = int(category.max(initial=0)) + 1
        dwell = clicks.dwell_s if clicks.dwell_s is not None else np.full(clicks.ts.size, np.nan)
        cat = category[clicks.item]
        ok = (cat > 0) & np.isfinite(dwell)
        log_dwell = np.round(np.log(np.maximum(dwell[ok], 1.0)) * DWELL_SCALE)
        self.by_category = EventIndex(cat[ok], clicks.ts[ok], log_dwell)
        keys = clicks.user[ok] * self.num_categories + cat[ok]
        self.user_category = EventIndex(keys, clicks.ts[ok], log_dwell)

    def user_excess(self, user_rows: np.ndarray, category: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """(N,) the user's shrunk mean excess log dwell in each row's category (docstring)."""
        n_c = self.by_category.count_before(category, ts_us)
        sum_c = self.by_category.sum_before(category, ts_us) / DWELL_SCALE
        mean_c = np.where(n_c > 0, sum_c / np.maximum(n_c, 1), 0.0)
        known = (user_rows >= 0) & (category > 0)
        key = np.maximum(user_rows, 0) * self.num_categories + category
        n = np.where(known, self.user_category.count_before(key, ts_us), 0)
        total = np.where(known, self.user_category.sum_before(key, ts_us) / DWELL_SCALE, 0.0)
        out: np.ndarray = (total - n * mean_c) / (n + DWELL_PRIOR_CLICKS)
        return out


ITEM_GROUP_PRIOR_CLICKS = 5.0  # pseudo-clicks at the group's overall share in a group's item share


class GroupItemClicks:
    """How much an item is read by the user's demographic groups against everyone (`demo_item_lift`).

    The category lift (`CategoryAffinity.group_lift`) knows what a group reads by category; an
    item's own topics mix its category with others (the simulator's items: 0.56 of the main topic,
    the rest related topics and noise), and which groups click an item says how it reads to them.
    For each demographic attribute a with the user's value v, over clicks strictly before t (all of
    them, or those in the last `window_us`), of users whose value of a is known:

        group's share  s_v  = (m_v + 1) / (m + 2)                  (m_v of the m clicks are by v)
        item's share   r_iv = (n_iv + ITEM_GROUP_PRIOR_CLICKS * s_v) / (n_i + ITEM_GROUP_PRIOR_CLICKS)
        demo_item_lift = sum over attributes of log(r_iv / s_v)

    (n_iv of the item's n_i clicks are by v). An item without clicks, a user without a value (bucket
    0) or without demographics adds no lift.
    """

    def __init__(
        self, clicks: Clicks, demographics: np.ndarray | None, num_buckets: int, num_items: int
    ) -> None:
        self.num_items = max(num_items, 1)
        largest = int(demographics.max(initial=0)) if demographics is not None else 0
        self.num_buckets = num_buckets or largest + 1
        self.num_attrs = demographics.shape[1] if demographics is not None else 0
        if demographics is None or not self.num_attrs or not clicks.ts.size:
            self.num_attrs = 0
            return
        group = demographics[clicks.user]  # (C, D)
        attrs = np.broadcast_to(np.arange(self.num_attrs)[None, :], group.shape)
        valued = (group > 0).reshape(-1)
        attr = attrs.reshape(-1)[valued]
        key = (attrs * self.num_buckets + group).reshape(-1)[valued]
        item = np.repeat(clicks.item, self.num_attrs)[valued]
        times = np.repeat(clicks.ts, self.num_attrs)[valued]
        self.attr_all = EventIndex(attr, times)
        self.group_all = EventIndex(key, times)
        self.attr_item = EventIndex(attr * self.num_items + item, times)
        self.group_item = EventIndex(key * self.num_items + item, times)

    def lift(
        self, user_demographics: np.ndarray, item_rows: np.ndarray, ts_us: np.ndarray, window_us: int | None
    ) -> np.ndarray:
        """(N,) the summed log lifts of each row's item among its user's groups (class docstring)."""
        out = np.zeros(item_rows.size)
        items = np.maximum(item_rows, 0)
        for a in range(min(self.num_attrs, user_demographics.shape[1])):
            value = user_demographics[:, a]
            key = a * self.num_buckets + value
            attr = np.full(item_rows.size, a, dtype=np.int64)
            m = self.attr_all.count_before(attr, ts_us, window_us)
            m_v = self.group_all.count_before(key, ts_us, window_us)
            s = (m_v + 1.0) / (m + 2.0)
            n = self.attr_item.count_before(attr * self.num_items + items, ts_us, window_us)
            n_v = self.group_item.count_before(key * self.num_items + items, ts_us, window_us)
            r = (n_v + ITEM_GROUP_PRIOR_CLICKS * s) / (n + ITEM_GROUP_PRIOR_CLICKS)
            out += np.where((value > 0) & (item_rows >= 0), np.log(r / s), 0.0)
        return out
