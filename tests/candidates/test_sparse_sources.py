"""The candidate sources score only the items they touch; their lists equal the dense computation.

Until session 6 every request built catalog-size arrays (trending over every window × every item,
fresh scores over every publication time, co-visitation per item, an eligibility mask per user)
and took the top n of them. `_dense_*` below are that computation, kept here as the reference:
the lists of `CandidateSources` (sparse, as serving asks them, and with a dense mask, as
evaluation asks them) must be equal to it, rows and scores, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.candidates import (
    CandidateSources,
    CoVisitation,
    Eligible,
    FreshConfig,
    FreshItems,
    SourceList,
    Trending,
    fresh_active,
    top_n,
)

US_PER_MIN = 60_000_000
NUM_ITEMS = 300


def _dense_trending(trending: Trending, t_us: int, num_items: int) -> npt.NDArray[np.float64]:
    clicks = trending._clicks.between(0, t_us - int(trending._windows_us.max()), t_us)
    known = clicks.values < num_items
    age = (t_us - clicks.ts[known]).astype(np.float64)
    items = clicks.values[known]
    half = trending.config.half_life_min
    weight = np.ones_like(age) if half is None else np.exp2(-age / (half * US_PER_MIN))
    out = np.zeros((trending._windows_us.size, num_items))
    for k, window in enumerate(trending._windows_us.tolist()):
        inside = age <= window
        out[k] = np.bincount(items[inside], weights=weight[inside], minlength=num_items)
    total: npt.NDArray[np.float64] = np.log1p(out).sum(axis=0)
    return total


def _dense_covis(covis: CoVisitation, user: Hashable, t_us: int, num_items: int) -> npt.NDArray[np.float64]:
    out = np.zeros(num_items)
    for h in covis.recent(user, t_us).values.tolist():
        votes = covis._votes.between(h, None, t_us)
        known = votes.values < num_items
        weight = votes.weights[known]
        if covis.config.half_life_h is not None:
            age_h = (t_us - votes.ts[known]) / (60 * US_PER_MIN)
            weight = weight * np.exp2(-age_h / covis.config.half_life_h)
        out += np.bincount(votes.values[known], weights=weight, minlength=num_items)
    return out


def _dense_fresh(
    published_us: npt.NDArray[np.int64], t_us: int, config: FreshConfig
) -> npt.NDArray[np.float64]:
    window = config.window_min * US_PER_MIN
    age = (t_us - published_us).astype(np.float64)
    out: npt.NDArray[np.float64] = np.where((age >= 0) & (age < window), 1.0 - age / window, 0.0)
    return out


def _member(mask: npt.NDArray[np.bool_]) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]:
    """Serving's question, asked only for the rows a source scores."""

    def test(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = mask[rows]
        return out

    return test


def _equal(got: SourceList, want: SourceList) -> None:
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.scores, want.scores)  # exact: the same sums in the same order


@pytest.fixture
def world() -> tuple[CandidateSources, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Clicks over 24 h on NUM_ITEMS + 20 items (the last 20 past the catalog a request reads),
    a few hot items (ties and repeats), publication times spread over the day, some unknown."""
    rng = np.random.default_rng(11)
    n = 6_000
    ts = np.sort(rng.integers(0, 24 * 60, n)) * US_PER_MIN + rng.integers(0, US_PER_MIN, n)
    items = np.where(rng.random(n) < 0.3, rng.integers(0, 5, n), rng.integers(0, NUM_ITEMS + 20, n))
    users = np.array([f"u{k}" for k in rng.integers(0, 40, n)], dtype=object)
    sources = CandidateSources().extend(users, items.astype(np.int64), ts.astype(np.int64))
    published = rng.integers(0, 24 * 60, NUM_ITEMS + 20) * US_PER_MIN
    published[::17] = np.iinfo(np.int64).min  # unknown publication time (NO_TIME)
    published[3:9] = published[2]  # equal times: ties broken by row
    return sources, ts.astype(np.int64), published.astype(np.int64)


def test_every_list_equals_the_dense_computation(
    world: tuple[CandidateSources, npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> None:
    sources, ts, published_all = world
    published = published_all[:NUM_ITEMS]  # the catalog the request reads
    fresh = FreshItems(sources.config.fresh_cfg)
    fresh.sync(published_all[:150])
    fresh.sync(published_all)  # grown in two steps, as a serving catalog grows; rows >= NUM_ITEMS too
    rng = np.random.default_rng(3)
    compared = {"trending": 0, "covis": 0, "fresh": 0}
    # Times on the edges: a click exactly as old as each trending window, an item published exactly
    # at t and exactly one fresh window before it.
    edges = [int(ts[2500]) + w * US_PER_MIN for w in (10, 60, 1440)] + [int(published[10])]
    edges += [int(published[20]) + int(sources.config.fresh_cfg.window_min * US_PER_MIN)]
    for q, t in enumerate([*ts[200::400].tolist(), int(ts[-1]) + 1, *edges]):
        np.testing.assert_array_equal(np.c_[fresh.active(t)], np.c_[fresh_active(published_all, t)])
        mask = rng.random(NUM_ITEMS) < (0.8 if q % 2 else 0.05)  # few eligible: the lookups widen
        banned = rng.choice(NUM_ITEMS, 10, replace=False).astype(np.int64)
        user_mask = mask.copy()
        user_mask[banned] = False
        sparse = Eligible(NUM_ITEMS, _member(mask))
        sparse_user = Eligible(NUM_ITEMS, _member(user_mask))
        for n in (5, 40, 1000):
            want = top_n(_dense_trending(sources.trending, t, NUM_ITEMS), n, mask)
            _equal(sources.trending_list(t, n, sparse), want)
            _equal(sources.trending_list(t, n, mask), want)
            compared["trending"] += want.rows.size
            for user in ("u1", "u7", "nobody"):
                want = top_n(_dense_covis(sources.covis, user, t, NUM_ITEMS), n, user_mask)
                _equal(sources.covis_list(user, t, n, sparse_user), want)
                _equal(sources.covis_list(user, t, n, user_mask), want)
                compared["covis"] += want.rows.size
            want = top_n(_dense_fresh(published, t, sources.config.fresh_cfg), n, mask)
            _equal(sources.fresh_list(fresh, t, n, sparse), want)
            _equal(sources.fresh_list(published, t, n, mask), want)
            compared["fresh"] += want.rows.size
    assert min(compared.values()) > 50  # every source listed items: the comparison has content


def test_dense_scores_and_counts_still_agree(
    world: tuple[CandidateSources, npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> None:
    sources, ts, _ = world
    t = int(ts[3000])
    np.testing.assert_array_equal(
        sources.trending.scores(t, NUM_ITEMS), _dense_trending(sources.trending, t, NUM_ITEMS)
    )
    np.testing.assert_array_equal(
        sources.covis.scores("u2", t, NUM_ITEMS), _dense_covis(sources.covis, "u2", t, NUM_ITEMS)
    )
    rows, _ = sources.trending.active(t, NUM_ITEMS)
    assert np.all(rows < NUM_ITEMS) and np.all(np.diff(rows) > 0)  # ascending, within the catalog


def test_fresh_items_follow_a_growing_catalog() -> None:
    config = FreshConfig(window_min=60.0)
    fresh = FreshItems(config)
    t = 10_000 * US_PER_MIN
    published = np.array([t - 30 * US_PER_MIN, t - 90 * US_PER_MIN], dtype=np.int64)
    fresh.sync(published)
    rows, scores = fresh.active(t)
    assert rows.tolist() == [0] and scores.tolist() == [0.5]
    grown = np.r_[published, t - 15 * US_PER_MIN, t + US_PER_MIN]  # one new item, one not yet out
    fresh.sync(grown)
    rows, scores = fresh.active(t)
    assert rows.tolist() == [0, 2] and scores.tolist() == [0.5, 0.75]
    assert len(fresh) == 4
