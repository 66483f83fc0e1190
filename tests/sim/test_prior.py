"""The ground truth for a brand-new user (sim/prior.py) against the world's own users."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.sim import World
from feedrank.sim import vocab as names
from feedrank.sim.prior import NewUserPrior
from tests.sim.conftest import tiny_config


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(tiny_config(num_initial_users=4_000, seed=5))


def test_given_demographics_are_kept_and_missing_ones_follow_the_population(world: World) -> None:
    prior = NewUserPrior(world, draws=4_000, seed=1)
    interests, device = prior.sample({"device": "tablet", "country": "nowhere"})
    assert interests.shape == (4_000, world.config.num_topics)
    assert np.allclose(interests.sum(axis=1), 1.0)
    assert (device == names.DEVICES.index("tablet")).all()
    _, anyone = prior.sample({})
    shares = np.bincount(anyone, minlength=len(names.DEVICES)) / anyone.size
    assert shares == pytest.approx(np.asarray(names.DEVICE_PROBS), abs=0.03)
    assert prior.codes({"country": "nowhere", "gender": "f"}) == {"gender": names.GENDERS.index("f")}


def test_interests_average_to_the_demographic_prior_of_the_generative_model(world: World) -> None:
    codes = {"age_bucket": "18-24", "gender": "m", "country": "JP", "device": "mobile"}
    interests, _ = NewUserPrior(world, draws=20_000, seed=2).sample(codes)
    logits = np.log(world.topic_popularity) + sum(
        world.demographic_shift[a][names.DEMOGRAPHICS[a][0].index(v)] for a, v in codes.items()
    )
    expected = np.exp(logits) / np.exp(logits).sum()
    assert interests.mean(axis=0) == pytest.approx(expected, abs=0.01)


def test_expected_utility_matches_the_worlds_users_with_those_demographics(world: World) -> None:
    t = world.start_s + 6 * 3600.0
    items = world.live_items(t)
    demo = {"device": "desktop", "country": "US"}
    users = np.flatnonzero(
        (world.users.device == names.DEVICES.index("desktop"))
        & (world.users.country == names.COUNTRIES.index("US"))
    )
    assert users.size > 150
    group = world.expected_utility(users[:, None], items[None, :], t).mean(axis=0)
    prior = NewUserPrior(world, draws=2_000, seed=3)
    guess = prior.expected_utility(demo, items, t)
    assert np.corrcoef(group, guess)[0, 1] > 0.97
    assert guess.mean() == pytest.approx(group.mean(), rel=0.1)
    # Someone else's group is further away: the demographics carry information.
    other = prior.expected_utility({"device": "mobile", "country": "IN"}, items, t)
    assert np.abs(other - group).mean() > np.abs(guess - group).mean()
    # Deterministic: the same demographics give the same values, call after call.
    assert np.array_equal(prior.expected_utility(demo, items, t), guess)
