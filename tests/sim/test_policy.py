"""The logging policy: sequential sampling without replacement and its logged propensities."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedrank.sim import LoggingPolicy, World, sample_slates, simulate
from feedrank.sim.policy import PopularityTracker, propensities
from tests.sim.conftest import tiny_config


def plackett_luce(p: npt.NDArray[np.float64], order: tuple[int, ...]) -> float:
    """Exact probability of drawing `order` first by sequential sampling without replacement."""
    prob, left = 1.0, 1.0
    for i in order:
        prob *= p[i] / left
        left -= p[i]
    return prob


@pytest.mark.parametrize(
    "p",
    [
        [0.4, 0.3, 0.2, 0.1],  # the i.i.d.-draws path nearly always completes
        [0.94, 0.03, 0.02, 0.01],  # rare items: most rows finish with the Gumbel fallback
    ],
)
def test_whole_slates_follow_plackett_luce(p: list[float]) -> None:
    probs = np.array(p)
    num = 200_000
    slates, _ = sample_slates(probs, num, 4, np.random.default_rng(0))
    codes, counts = np.unique(slates @ 4 ** np.arange(4), return_counts=True)
    observed = dict(zip(codes.tolist(), counts.tolist(), strict=True))
    for order in itertools.permutations(range(4)):
        expected = num * plackett_luce(probs, order)
        if expected >= 20:
            got = observed.get(int(np.array(order) @ 4 ** np.arange(4)), 0)
            assert abs(got - expected) < 5 * np.sqrt(expected), order


def test_logged_propensity_is_the_conditional_probability_of_the_slot() -> None:
    p = np.array([0.5, 0.2, 0.2, 0.1])
    slates, prop = sample_slates(p, 1_000, 3, np.random.default_rng(1))
    for row, pr in zip(slates, prop, strict=True):
        assert pr[0] == pytest.approx(p[row[0]])
        assert pr[1] == pytest.approx(p[row[1]] / (1 - p[row[0]]))
        assert pr[2] == pytest.approx(p[row[2]] / (1 - p[row[0]] - p[row[1]]))
    # The product of a slate's propensities is the probability of the ordered slate.
    assert np.prod(prop[0]) == pytest.approx(plackett_luce(p, tuple(slates[0])))


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=40),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_slates_hold_distinct_items_with_valid_propensities(weights: list[float], k: int, seed: int) -> None:
    p = np.array(weights) / sum(weights)
    slates, prop = sample_slates(p, 50, k, np.random.default_rng(seed))
    assert slates.shape == (50, min(k, p.size))
    assert all(len(set(row)) == len(row) for row in slates.tolist())
    assert np.all((prop > 0) & (prop <= 1))
    assert np.allclose(prop[:, 0], p[slates[:, 0]])
    assert np.allclose(prop, propensities(p, slates))


def test_full_slate_of_whole_catalog_ends_with_certainty() -> None:
    p = np.array([0.6, 0.3, 0.1])
    _, prop = sample_slates(p, 100, 3, np.random.default_rng(2))
    assert np.allclose(prop[:, -1], 1.0)


def test_policy_mixes_in_uniform_exploration() -> None:
    cfg = tiny_config(epsilon=0.2)
    published = np.arange(100, dtype=np.float64) * 60.0
    policy = LoggingPolicy(cfg, published)
    clicks = np.zeros(100)
    clicks[3] = 1_000.0
    p = policy.probabilities(0, 100, 100 * 60.0, clicks)
    assert p.sum() == pytest.approx(1.0)
    assert p.min() >= 0.2 / 100 * (1 - 1e-9)
    assert p.argmax() == 3


def test_popularity_decays_with_its_half_life() -> None:
    tracker = PopularityTracker(3, half_life_hours=2.0)
    tracker.decay_to(0.0, 0, 3)
    tracker.add(np.array([1, 1, 2]))
    tracker.decay_to(2 * 3600.0, 0, 3)
    assert tracker.clicks.tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_first_slot_propensity_matches_the_policy_end_to_end(tmp_path: Path) -> None:
    # Without popularity the policy is a function of time alone; with one chunk per hour it is
    # fixed at the hour's first request, so the test can recompute it from outside.
    cfg = tiny_config(popularity_weight=0.0, chunk_requests=100_000, num_impressions=20_000)
    ds = simulate(cfg, tmp_path / "ds")
    world = World.load(ds.path)
    policy = LoggingPolicy(cfg, world.items.published_s)
    imp = ds.read("impressions").with_columns(pl.col("ts").dt.truncate("1h").alias("hour"))
    first = imp.group_by("hour").agg(pl.col("ts").min().alias("t0"))
    top = imp.filter(pl.col("position") == 0).join(first, on="hour")
    checked = 0
    for (t0,), rows in top.group_by(["t0"]):
        t0_s = t0.timestamp()
        lo, hi = world.live_range(t0_s)
        p = policy.probabilities(lo, hi, t0_s, np.zeros(hi - lo))
        items = world.item_index(rows["item_id"])
        assert np.allclose(rows["propensity"].to_numpy(), p[items - lo], rtol=1e-12, atol=0)
        checked += rows.height
    assert checked == cfg.num_requests
