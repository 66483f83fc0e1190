"""The posterior oracle (sim/posterior.py) against the truth of a small seeded world: with no log
it is the new-user oracle, with a long log it approaches the true oracle."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.sim import World
from feedrank.sim import simplex_is as is_
from feedrank.sim import vocab as names
from feedrank.sim.posterior import PosteriorOracle, UserLog
from feedrank.sim.prior import NewUserPrior
from feedrank.sim.response import survey_loglik
from tests.sim.conftest import tiny_config


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(tiny_config(num_initial_users=300, seed=7))


def _demographics(world: World, user: int) -> dict[str, str]:
    u = world.users
    codes = {"age_bucket": u.age_bucket, "gender": u.gender, "country": u.country, "device": u.device}
    return {a: names.DEMOGRAPHICS[a][0][int(c[user])] for a, c in codes.items()}


def _simulated_log(world: World, user: int, requests: int, seed: int) -> UserLog:
    """What the log would show after `requests` random slates of 10 live items shown to `user`."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(world.start_s, world.start_s + 36 * 3600.0, requests))
    slates = np.stack([rng.choice(world.live_items(x), 10, replace=False) for x in t])
    resp = world.respond(np.full(requests, user), slates, t, rng)
    flat = slates.size
    survey = resp.survey.ravel().astype(np.float64)
    empty = UserLog.empty()
    return UserLog(
        items=slates.ravel(),
        t_s=np.repeat(t, 10),
        position=np.tile(np.arange(10, dtype=np.float64), requests),
        clicked=resp.clicked.ravel(),
        dwell_s=resp.dwell_s.ravel().astype(np.float64),
        shared=resp.shared.ravel(),
        hidden=resp.hidden.ravel(),
        survey=survey if survey.size == flat else np.full(flat, np.nan),
        click_items=empty.click_items,
        click_t_s=empty.click_t_s,
        click_dwell_s=empty.click_dwell_s,
    )


def _share(world: World, user: int, scores: np.ndarray, items: np.ndarray, t: float) -> float:
    """True utility@20 of the top 20 by `scores`, over the true oracle's utility@20."""
    true = world.expected_utility(np.array([user]), items[None, :], t)[0]
    return float(true[np.argsort(-scores)[:20]].mean() / np.sort(true)[::-1][:20].mean())


def test_with_no_log_the_feed_is_the_new_user_oracles(world: World) -> None:
    demo = _demographics(world, 3)
    t = world.start_s + 40 * 3600.0
    items = world.live_items(t)
    oracle = PosteriorOracle(world, draws=256, seed=4, prior_draws=300)
    post = oracle.fit(demo, UserLog.empty())
    assert post.ess == pytest.approx(300) and post.events == 0
    expected = NewUserPrior(world, 300, seed=4).expected_utility(demo, items, t)
    assert np.allclose(oracle.expected_utility(post, items, t), expected)


def test_a_long_log_approaches_the_true_oracle_and_beats_the_demographics(world: World) -> None:
    t = world.start_s + 40 * 3600.0
    items = world.live_items(t)
    oracle = PosteriorOracle(world, draws=256, seed=0, rounds=6, final_draws=1024)
    shares, priors, corrs = [], [], []
    for user in (5, 17, 42):
        demo = _demographics(world, user)
        # 3,000 impressions: about what the default world's heaviest readers have logged.
        log = _simulated_log(world, user, requests=300, seed=user)
        post = oracle.fit(demo, log, key=str(user))
        assert post.events == log.size == 3000
        assert post.ess > 40  # not degenerate on a heavy reader's log
        corrs.append(np.corrcoef(post.weights @ post.interests, world.users.interests[user])[0, 1])
        shares.append(_share(world, user, oracle.expected_utility(post, items, t), items, t))
        prior = oracle.fit(demo, UserLog.empty())
        priors.append(_share(world, user, oracle.expected_utility(prior, items, t), items, t))
    # A topic the log rarely showed stays uncertain (user 17's first topic: 3 clicks in 119
    # impressions against a prior weight of 0.04), so the bar is on the median.
    assert np.median(shares) > 0.97 and np.median(corrs) > 0.9
    assert np.mean(shares) > np.mean(priors) + 0.05


def test_a_short_log_moves_the_posterior_only_a_little(world: World) -> None:
    oracle = PosteriorOracle(world, draws=512, seed=1)
    log = _simulated_log(world, 9, requests=2, seed=9)
    post = oracle.fit(_demographics(world, 9), log, key="short")
    assert post.rounds == 0 and post.ess > 0.3 * 512  # the prior's draws serve as they are


def test_survey_answers_form_a_distribution() -> None:
    vgc = np.array([[0.05], [0.6], [3.0]])
    total = sum(
        np.exp(survey_loglik(vgc, np.array([r], dtype=np.float64), 1.5, 0.6, 0.5)) for r in range(1, 6)
    )
    assert total == pytest.approx(np.ones(3))


def test_the_weighted_dirichlet_fit_recovers_its_parameters() -> None:
    rng = np.random.default_rng(0)
    alpha = np.array([0.05, 0.3, 1.0, 2.5])
    log_theta = is_.dirichlet_log_draws(rng, alpha, 40_000)
    assert np.isfinite(log_theta).all() and np.allclose(np.exp(log_theta).sum(axis=1), 1.0)
    fitted = is_.dirichlet_mle(log_theta, np.full(40_000, 1 / 40_000))
    assert fitted == pytest.approx(alpha, rel=0.08)
    # Its density integrates the draws' own log likelihood better than a wrong one does.
    assert is_.dirichlet_logpdf(log_theta, alpha).mean() > is_.dirichlet_logpdf(log_theta, alpha * 2).mean()


def test_the_logistic_normal_density_integrates_to_one_on_the_simplex() -> None:
    rng = np.random.default_rng(1)
    q = is_.LogisticNormal(
        ref=2, mean=np.array([0.2, -0.3]), chol=np.linalg.cholesky(0.3 * np.eye(2)).astype(np.float64)
    )
    uniform = np.ones(3)
    draws = is_.dirichlet_log_draws(rng, uniform, 200_000)  # uniform on the simplex
    ratio = np.exp(is_.logistic_normal_logpdf(draws, q) - is_.dirichlet_logpdf(draws, uniform))
    assert ratio.mean() == pytest.approx(1.0, abs=0.03)
    own = is_.logistic_normal_log_draws(rng, q, 50_000)
    fitted = is_.fit_logistic_normal(own, np.full(50_000, 1 / 50_000), inflate=1.0)
    assert fitted.ref == int(np.argmax(np.exp(own).mean(axis=0)))
