from __future__ import annotations

import numpy as np
import pytest

from feedrank.candidates import Trending, TrendingConfig
from tests.candidates.conftest import NUM_ITEMS, US_PER_MIN, ClickLog


def test_decayed_counts_by_hand() -> None:
    trending = Trending(TrendingConfig(windows_min=(10.0, 60.0), half_life_min=10.0))
    t = 1_000 * US_PER_MIN
    for item, minutes_ago in [(0, 5), (0, 10), (0, 30), (1, 0), (2, 61)]:
        trending.add(item, t - minutes_ago * US_PER_MIN)
    counts = trending.counts(t, 3)
    # item 0: 2^-0.5 + 2^-1 inside 10 min, + 2^-3 inside 60; item 1 clicked at t: not yet seen
    assert counts[0] == pytest.approx([2**-0.5 + 0.5, 0.0, 0.0])
    assert counts[1] == pytest.approx([2**-0.5 + 0.5 + 2**-3, 0.0, 0.0])
    assert trending.scores(t, 3)[0] == pytest.approx(np.log1p(counts[:, 0]).sum())


def test_plain_counts_match_brute_force(clicks: ClickLog) -> None:
    trending = Trending(TrendingConfig(windows_min=(10.0, 60.0, 1440.0), half_life_min=None))
    trending.extend(clicks.items, clicks.ts)
    for t in clicks.ts[::97].tolist():
        got = trending.counts(t, NUM_ITEMS)
        for k, minutes in enumerate((10, 60, 1440)):
            inside = (clicks.ts < t) & (clicks.ts >= t - minutes * US_PER_MIN)
            assert np.array_equal(got[k], np.bincount(clicks.items[inside], minlength=NUM_ITEMS))


def test_one_by_one_equals_bulk(clicks: ClickLog) -> None:
    bulk, online = Trending(), Trending()
    bulk.extend(clicks.items, clicks.ts)
    for item, ts in zip(clicks.items.tolist(), clicks.ts.tolist(), strict=True):
        online.add(item, ts)
    t = int(clicks.ts[-1]) + 1
    assert np.allclose(bulk.scores(t, NUM_ITEMS), online.scores(t, NUM_ITEMS))
    assert bulk.scores(t, NUM_ITEMS).max() > 0


@pytest.mark.parametrize("half_life_min", [None, 120.0, 7.0])
def test_walk_equals_scores_at_every_query(clicks: ClickLog, half_life_min: float | None) -> None:
    trending = Trending(TrendingConfig(windows_min=(10.0, 60.0, 1440.0), half_life_min=half_life_min))
    trending.extend(clicks.items, clicks.ts)
    walk = trending.walk(NUM_ITEMS)
    # Queries in time order, some at equal times, some at click times, some between them.
    between = clicks.ts[::29] + 1
    queries = np.sort(np.r_[clicks.ts[::13], between, between, clicks.ts[-1] + 10**12])
    for t in queries.tolist():
        expected = trending.scores(t, NUM_ITEMS)
        got = walk.scores(t)
        assert np.allclose(got, expected, rtol=1e-9, atol=1e-12)
        assert np.array_equal(got > 0, expected > 0)  # the same items are trending at all


def test_walk_refuses_to_go_back(clicks: ClickLog) -> None:
    trending = Trending()
    trending.extend(clicks.items, clicks.ts)
    walk = trending.walk(NUM_ITEMS)
    walk.scores(int(clicks.ts[10]))
    with pytest.raises(ValueError, match="must not go back"):
        walk.scores(int(clicks.ts[5]))
