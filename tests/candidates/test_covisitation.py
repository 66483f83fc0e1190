from __future__ import annotations

import numpy as np
import pytest

from feedrank.candidates import CoVisitation, CoVisitationConfig
from tests.candidates.conftest import NUM_ITEMS, US_PER_MIN, ClickLog

NO_DECAY = CoVisitationConfig(session_gap_min=30, max_lag=10, backward_weight=0.5, half_life_h=None)


def test_votes_by_hand_sessions_and_directions() -> None:
    covis = CoVisitation(NO_DECAY)
    m = US_PER_MIN
    # u1: 1 → 2 → 3 in one session, then 4 after a 2-hour gap (a new session)
    covis.extend(
        np.array(["u1"] * 4, dtype=object), np.array([1, 2, 3, 4]), np.array([0, 10 * m, 20 * m, 140 * m])
    )
    covis.add("u2", 5, 300 * m)  # a click of u2 voting for nothing yet
    covis.add("u3", 2, 400 * m)
    scores = covis.scores("u3", 401 * m, 6)  # after item 2: 3 came after it, 1 before it
    assert scores.tolist() == pytest.approx([0.0, 0.5, 0.0, 1.0, 0.0, 0.0])
    assert covis.scores("u2", 401 * m, 6).tolist() == [0.0] * 6


def test_decay_with_half_life() -> None:
    covis = CoVisitation(CoVisitationConfig(half_life_h=2.0, backward_weight=0.0))
    h = 60 * US_PER_MIN
    covis.extend(np.array(["a", "a"], dtype=object), np.array([1, 2]), np.array([0, US_PER_MIN]))
    covis.add("b", 1, 3 * h)
    assert covis.scores("b", 4 * h + US_PER_MIN, 3)[2] == pytest.approx(0.25)  # vote 4 h old


def test_one_by_one_equals_bulk(clicks: ClickLog) -> None:
    bulk, online = CoVisitation(), CoVisitation()
    bulk.extend(clicks.users, clicks.items, clicks.ts)
    for user, item, ts in zip(clicks.users.tolist(), clicks.items.tolist(), clicks.ts.tolist(), strict=True):
        online.add(user, item, ts)
    t = int(clicks.ts[-1]) + 1
    totals = 0.0
    for user in sorted(set(clicks.users.tolist())):
        a, b = bulk.scores(user, t, NUM_ITEMS), online.scores(user, t, NUM_ITEMS)
        assert np.allclose(a, b)
        totals += a.sum()
    assert totals > 0


def test_per_user_clicks_are_bounded_to_the_most_recently_active_users() -> None:
    bounded = CoVisitation(CoVisitationConfig(), max_users=2)
    bounded.extend(np.array(["a", "b", "c"]), np.array([1, 2, 3]), np.array([30, 10, 20]))
    assert bounded.recent("b", 100).values.size == 0  # the least recent of the bulk load went
    bounded.add("a", 4, 40)
    bounded.add("d", 5, 50)  # c is now the least recently written
    assert bounded.recent("c", 100).values.size == 0
    assert bounded.recent("a", 100).values.tolist() == [1, 4] and bounded.recent(
        "d", 100
    ).values.tolist() == [5]
    assert bounded._clicks.evicted_keys == 2
