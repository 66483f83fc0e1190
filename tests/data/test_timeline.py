"""EventIndex answers strictly-before queries exactly like a brute-force scan."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedrank.data.timeline import NO_TIME, SORT_QUERIES, EventIndex, search


def brute_count(keys: np.ndarray, times: np.ndarray, k: int, t: int, window: int | None) -> int:
    mask = (keys == k) & (times < t)
    if window is not None:
        mask &= times >= t - window
    return int(mask.sum())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    num_events=st.integers(0, 200),
    num_keys=st.integers(1, 8),
    window=st.one_of(st.none(), st.integers(1, 50)),
)
def test_counts_match_brute_force(seed: int, num_events: int, num_keys: int, window: int | None) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, num_keys, num_events)
    times = rng.integers(0, 100, num_events)
    index = EventIndex(keys, times)
    qk = rng.integers(-1, num_keys + 1, 50)
    qt = rng.integers(0, 110, 50)
    got = index.count_before(qk, qt, window)
    expected = [brute_count(keys, times, k, t, window) for k, t in zip(qk, qt, strict=True)]
    assert got.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6))
def test_last_n_is_the_latest_strictly_before(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 3, 60)
    times = rng.integers(0, 30, 60)
    times[rng.random(60) < 0.1] = NO_TIME  # undated history counts as before everything
    values = np.arange(1, 61)
    index = EventIndex(keys, times, values)
    qk = rng.integers(0, 3, 20)
    qt = rng.integers(0, 35, 20)
    got = index.last_n(qk, qt, n)
    for row, (k, t) in enumerate(zip(qk, qt, strict=True)):
        sel = np.flatnonzero((keys == k) & (times < t))
        sel = sel[np.argsort(times[sel], kind="stable")][-n:]
        expected = np.zeros(n, dtype=values.dtype)
        if sel.size:
            expected[n - sel.size :] = values[sel]
        assert got[row].tolist() == expected.tolist()


def test_an_event_at_exactly_t_is_not_seen() -> None:
    index = EventIndex(np.array([0, 0]), np.array([10, 20]), np.array([7, 8]))
    assert index.count_before(np.array([0]), np.array([20])).tolist() == [1]
    assert index.last_n(np.array([0]), np.array([20]), 2).tolist() == [[0, 7]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), window=st.one_of(st.none(), st.integers(1, 40)))
def test_sum_before_matches_brute_force(seed: int, window: int | None) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 4, 80)
    times = rng.integers(0, 60, 80)
    values = rng.random(80)
    index = EventIndex(keys, times, values)
    qk, qt = rng.integers(0, 4, 30), rng.integers(0, 70, 30)
    got = index.sum_before(qk, qt, window)
    for i, (k, t) in enumerate(zip(qk, qt, strict=True)):
        mask = (keys == k) & (times < t)
        if window is not None:
            mask &= times >= t - window
        assert got[i] == pytest.approx(values[mask].sum())


@pytest.mark.parametrize("side", ["left", "right"])
def test_search_in_sorted_order_is_searchsorted(side: Literal["left", "right"]) -> None:
    rng = np.random.default_rng(3)
    haystack = np.sort(rng.integers(0, 1000, 3000))
    needles = rng.integers(-5, 1005, 3 * SORT_QUERIES)  # enough to take the sorted path, with ties
    assert np.array_equal(search(haystack, needles, side), np.searchsorted(haystack, needles, side=side))


def test_queries_in_runs_of_one_time_count_like_brute_force() -> None:
    """Rows of one query (a pool of items at one t) share their time: the time is searched once
    per run; every window and the all-time count still match a scan, as do the bounds."""
    rng = np.random.default_rng(5)
    keys, times = rng.integers(0, 40, 5000), rng.integers(0, 10_000, 5000)
    index = EventIndex(keys, times)
    qt = np.repeat(rng.integers(0, 11_000, 30), 200)  # 30 queries x 200 keys, a run per query
    qk = rng.integers(-1, 41, qt.size)
    for window in (None, 1, 500, 20_000):
        expected = [
            brute_count(keys, times, k, t, window) for k, t in zip(qk.tolist(), qt.tolist(), strict=True)
        ]
        assert index.count_before(qk, qt, window).tolist() == expected
    assert np.array_equal(index.ends(qk, qt) - index.starts(qk), index.count_before(qk, qt))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), num_events=st.integers(0, 200))
def test_keys_and_times_derived_from_the_composite_are_the_stable_sort(seed: int, num_events: int) -> None:
    # keys and times are not held beside the composite key; derived on first read they must be
    # exactly the events stably sorted by (key, time), NO_TIME and ties included.
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 6, num_events)
    times = rng.choice(np.array([NO_TIME, 0, 5, 7, 10**15]), num_events)
    values = np.arange(num_events)
    index = EventIndex(keys, times, values)
    assert "keys" not in index.__dict__ and "times" not in index.__dict__
    order = np.lexsort((times, keys))  # lexsort is stable: ties keep input order
    np.testing.assert_array_equal(index.keys, keys[order])
    np.testing.assert_array_equal(index.times, times[order])
    np.testing.assert_array_equal(index.values, values[order])
    assert index.keys.dtype == np.int64 and index.times.dtype == np.int64 and len(index) == num_events
