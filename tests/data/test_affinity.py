"""The category affinity columns against values computed by hand from the docstring's formulas."""

from __future__ import annotations

import math

import numpy as np

from feedrank.data.affinity import (
    DWELL_PRIOR_CLICKS,
    GROUP_PRIOR_CLICKS,
    ITEM_GROUP_PRIOR_CLICKS,
    USER_PRIOR_CLICKS,
    CategoryAffinity,
    CategoryDwell,
    GroupItemClicks,
)
from feedrank.data.event_log import Clicks

# Items 0-3: categories 1, 1, 2, 3. Users 0-2; one demographic attribute: users 0 and 1 are group
# 5, user 2 is group 7.
CATEGORY = np.array([1, 1, 2, 3])
DEMOGRAPHICS = np.array([[5], [5], [7]])


def _affinity() -> CategoryAffinity:
    # (user, item, time): user 0 reads category 1 twice, user 1 category 2 once, user 2 category 3
    # twice; one click at t=100 comes after every query below.
    user = np.array([0, 0, 1, 2, 2, 0])
    item = np.array([0, 1, 2, 3, 3, 2])
    ts = np.array([1, 2, 3, 4, 5, 100])
    return CategoryAffinity(Clicks(user, item, ts), CATEGORY, DEMOGRAPHICS, num_buckets=8)


def test_overall_and_group_shares_by_hand() -> None:
    aff = _affinity()
    t = np.array([50, 50, 50])
    cat = np.array([1, 2, 3])
    overall = aff.overall_share(cat, t)
    # 5 clicks before t=50 over 3 known categories: (2+1)/8, (1+1)/8, (2+1)/8
    assert np.allclose(overall, [3 / 8, 2 / 8, 3 / 8])
    lift = aff.group_lift(np.array([[5], [5], [5]]), cat, t, overall)
    # group 5 clicked 3 times before t: twice category 1, once category 2, never category 3
    for j, m_c in enumerate([2, 1, 0]):
        share = (m_c + GROUP_PRIOR_CLICKS * overall[j]) / (3 + GROUP_PRIOR_CLICKS)
        assert math.isclose(lift[j], math.log(share / overall[j]))
    assert lift[0] > 0 > lift[2]  # group 5 reads category 1 more than people do, category 3 less
    # a missing value (bucket 0) adds no lift
    assert np.allclose(aff.group_lift(np.zeros((3, 1), dtype=np.int64), cat, t, overall), 0.0)


def test_user_lift_shrinks_few_clicks_towards_the_group_and_ignores_later_clicks() -> None:
    aff = _affinity()
    users = np.array([0, 0, 1, -1])
    cat = np.array([1, 2, 2, 2])
    t = np.array([50, 50, 50, 50])
    overall = aff.overall_share(cat, t)
    lift = aff.group_lift(aff.user_demographics(users), cat, t, overall)
    got = aff.user_lift(users, cat, t, overall, lift)
    prior = np.minimum(overall * np.exp(lift), 1.0)
    n, n_c = np.array([2, 2, 1, 0]), np.array([2, 0, 1, 0])  # user 0's click on item 2 is at t=100
    want = np.log((n_c + USER_PRIOR_CLICKS * prior) / (n + USER_PRIOR_CLICKS) / overall)
    assert np.allclose(got, want)
    assert got[0] > 0 > got[1]
    assert got[3] == 0.0  # an unknown user: the prior is the overall share
    # after t=100 user 0's category-2 click counts
    later = aff.user_lift(np.array([0]), np.array([2]), np.array([101]), overall[1:2], lift[1:2])
    assert later[0] > got[1]


def test_without_demographics_the_prior_is_the_overall_share() -> None:
    clicks = Clicks(np.array([0, 1]), np.array([0, 2]), np.array([1, 2]))
    aff = CategoryAffinity(clicks, CATEGORY, None, num_buckets=0)
    t, cat = np.array([10]), np.array([1])
    overall = aff.overall_share(cat, t)
    lift = aff.group_lift(aff.user_demographics(np.array([0])), cat, t, overall)
    assert lift[0] == 0.0
    got = aff.user_lift(np.array([0]), cat, t, overall, lift)
    q = (1 + USER_PRIOR_CLICKS * overall[0]) / (1 + USER_PRIOR_CLICKS)
    assert math.isclose(got[0], math.log(q / overall[0]))


def test_category_dwell_is_the_users_shrunk_excess_log_dwell_before_t() -> None:
    # Category 1 (items 0, 1): user 0 reads it for 80 s twice, user 1 for 5 s once; a NaN dwell
    # (item 1, user 1) does not count; user 0's click at t=100 comes after the queries.
    user = np.array([0, 0, 1, 1, 0])
    item = np.array([0, 1, 0, 1, 0])
    ts = np.array([1, 2, 3, 4, 100])
    dwell = np.array([80.0, 80.0, 5.0, np.nan, 1000.0])
    cd = CategoryDwell(Clicks(user, item, ts, dwell), CATEGORY)
    got = cd.user_excess(np.array([0, 1, 2, -1, 0]), np.array([1, 1, 1, 1, 2]), np.full(5, 50))
    mean = (2 * math.log(80.0) + math.log(5.0)) / 3
    assert math.isclose(got[0], 2 * (math.log(80.0) - mean) / (2 + DWELL_PRIOR_CLICKS), rel_tol=1e-3)
    assert math.isclose(got[1], (math.log(5.0) - mean) / (1 + DWELL_PRIOR_CLICKS), rel_tol=1e-3)
    assert got[0] > 0 > got[1]
    assert got[2] == got[3] == got[4] == 0.0  # no clicks of theirs there, an unknown user, no dwell yet
    # without dwell in the log the column is 0 everywhere
    bare = CategoryDwell(Clicks(user, item, ts), CATEGORY)
    assert not bare.user_excess(np.array([0, 1]), np.array([1, 1]), np.full(2, 50)).any()


def test_group_item_lift_by_hand_counts_only_the_window_before_t() -> None:
    # The clicks of _affinity(): group 5 (users 0, 1) clicked items 0, 1, 2 at t=1..3 and item 2
    # again at t=100; group 7 (user 2) clicked item 3 at t=4 and t=5.
    user = np.array([0, 0, 1, 2, 2, 0])
    item = np.array([0, 1, 2, 3, 3, 2])
    ts = np.array([1, 2, 3, 4, 5, 100])
    groups = GroupItemClicks(Clicks(user, item, ts), DEMOGRAPHICS, num_buckets=8, num_items=4)
    demo = np.array([[5], [5], [7], [0]])
    items = np.array([2, 3, 3, 3])
    got = groups.lift(demo, items, np.array([100, 100, 100, 100]), window_us=None)
    # before t=100: 5 clicks, 3 by group 5 and 2 by group 7; the click at t=100 is not counted
    s5, s7 = (3 + 1) / (5 + 2), (2 + 1) / (5 + 2)
    p = ITEM_GROUP_PRIOR_CLICKS
    assert math.isclose(got[0], math.log((1 + p * s5) / (1 + p) / s5))  # item 2: its one click is 5's
    assert math.isclose(got[1], math.log((0 + p * s5) / (2 + p) / s5))  # item 3 is read by 7 alone
    assert math.isclose(got[2], math.log((2 + p * s7) / (2 + p) / s7))
    assert got[2] > 0 > got[1]
    assert got[3] == 0.0  # a user without a value adds no lift
    # a window of 96 µs before t=100 keeps the clicks at t=4 and t=5 only (both group 7's, item 3)
    win = groups.lift(demo[1:3], items[1:3], np.array([100, 100]), window_us=96)
    w5, w7 = (0 + 1) / (2 + 2), (2 + 1) / (2 + 2)
    assert np.allclose(win, [math.log(p * w5 / (2 + p) / w5), math.log((2 + p * w7) / (2 + p) / w7)])
    # no demographics: no lift
    none = GroupItemClicks(Clicks(user, item, ts), None, num_buckets=0, num_items=4)
    assert not none.lift(demo, items, np.full(4, 100), window_us=None).any()
