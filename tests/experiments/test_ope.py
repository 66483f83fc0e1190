"""Off-policy evaluation: estimators by hand, policies, the simulator contexts, and coverage over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.errors import DataError
from feedrank.experiments.ope import (
    BanditData,
    ItemClickModel,
    SoftmaxPolicy,
    direct_method,
    doubly_robust,
    estimate_all,
    ips,
    snips,
)
from feedrank.experiments.ope_sim import evaluate_policies, logged_slot, world_policies
from feedrank.experiments.ope_validation import evaluate_log, summarize, validate
from feedrank.sim import LoggingPolicy, SimConfig, World, simulate
from feedrank.sim.simulate import hourly_requests


def hand_data() -> BanditData:
    return BanditData(
        reward=np.array([1.0, 0.0, 1.0, 0.0]),
        propensity=np.array([0.5, 0.25, 0.1, 0.2]),
        target_prob=np.array([0.25, 0.5, 0.3, 0.0]),
        model_value=np.array([0.3, 0.2, 0.4, 0.1]),
        model_logged=np.array([0.5, 0.1, 0.6, 0.2]),
    )


def test_estimators_by_hand() -> None:
    data = hand_data()
    w = np.array([0.5, 2.0, 3.0, 0.0])
    assert ips(data).value == pytest.approx(np.mean(w * data.reward))  # (0.5 + 3) / 4
    assert snips(data).value == pytest.approx(3.5 / 5.5)
    dr_terms = data.model_value + w * (data.reward - data.model_logged)  # type: ignore[operator]
    dr = doubly_robust(data)
    assert dr.value == pytest.approx(dr_terms.mean())
    assert dr.std_error == pytest.approx(dr_terms.std(ddof=1) / 2)
    assert dr.ci_high - dr.value == pytest.approx(1.959964 * dr.std_error, rel=1e-6)
    assert direct_method(data).value == pytest.approx(0.25)
    est = ips(data)
    assert est.effective_sample_size == pytest.approx(5.5**2 / (0.25 + 4 + 9))
    assert est.max_weight == pytest.approx(3.0) and est.mean_weight == pytest.approx(5.5 / 4)
    assert set(estimate_all(data)) == {"ips", "snips", "dr", "dm"}
    assert set(estimate_all(BanditData(data.reward, data.propensity, data.target_prob))) == {"ips", "snips"}


def test_on_policy_weights_are_one_and_ips_is_the_mean_reward() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 1.0, 500)
    reward = (rng.random(500) < 0.3).astype(np.float64)
    est = estimate_all(BanditData(reward, p, p.copy()))
    assert est["ips"].value == pytest.approx(reward.mean()) == est["snips"].value
    assert est["ips"].effective_sample_size == pytest.approx(500)


def test_bandit_data_refuses_bad_input() -> None:
    with pytest.raises(DataError, match="not positive"):
        BanditData(np.ones(2), np.array([0.5, 0.0]), np.ones(2))
    with pytest.raises(DataError, match="1-d"):
        BanditData(np.ones(2), np.ones(3), np.ones(2))
    with pytest.raises(DataError, match="model_value"):
        doubly_robust(BanditData(np.ones(2), np.ones(2), np.ones(2)))


def test_softmax_policy_probabilities() -> None:
    cand = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    scores = np.array([1.0, 2.0, 3.0, 10.0])
    policy = SoftmaxPolicy(lambda u, t, c: scores[c], temperature=0.5, epsilon=0.3)
    pi = policy.probabilities(np.zeros(2, dtype=np.int64), np.zeros(2), cand, mask)
    assert pi.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert pi[0, 3] == 0.0 and pi.min(where=mask, initial=1.0) >= 0.3 / 4
    soft = np.exp(scores[:3] / 0.5) / np.exp(scores[:3] / 0.5).sum()
    assert pi[0, :3] == pytest.approx(0.7 * soft + 0.1)
    greedy = SoftmaxPolicy(lambda u, t, c: scores[c], temperature=1e-3, epsilon=0.0)
    assert greedy.probabilities(np.zeros(2, dtype=np.int64), np.zeros(2), cand, mask)[1, 3] == pytest.approx(
        1.0
    )


def test_item_click_model_by_hand() -> None:
    # Position 0: 4 rows, 2 clicks (CTR 0.5); position 1: 4 rows, 1 click (CTR 0.25, gain 0.5).
    items = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    positions = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clicked = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    model = ItemClickModel(prior=2.0).fit(items, positions, clicked, num_items=3)
    assert model.base_rate_ == 0.5
    # item 0: 3 clicks over 2 + 0.5 slot-0 equivalents; item 2: never seen -> base rate
    assert model.rate_ == pytest.approx([(3 + 1) / (2.5 + 2), (0 + 1) / (2 + 1.5 + 2), 0.5])
    predicted = model(np.zeros(1, dtype=np.int64), np.zeros(1), np.array([[2, 0]]))
    assert predicted.ravel() == pytest.approx([0.5, 4 / 4.5])
    model.slot = 1  # at position 1 every rate is scaled by the position gain 0.5
    assert model(np.zeros(1, dtype=np.int64), np.zeros(1), np.array([[2]])).ravel() == pytest.approx([0.25])


@pytest.fixture(scope="module")
def fixed_policy_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, World]:
    """No popularity term, so the logging probabilities depend only on the live set and ages and
    can be recomputed exactly; small chunks, so the policy refreshes many times an hour."""
    config = SimConfig.preset("tiny", seed=3, num_impressions=4_000, popularity_weight=0.0, chunk_requests=7)
    ds = simulate(config, tmp_path_factory.mktemp("ope") / "log")
    return ds, World.load(ds.path)


@pytest.mark.parametrize("slot", [0, 2])
def test_logged_contexts_reproduce_the_logging_propensities(
    fixed_policy_log: tuple[Dataset, World], slot: int
) -> None:
    ds, world = fixed_policy_log
    logged = logged_slot(ds.read("impressions"), world, slot)
    assert logged.item.size == world.config.num_requests and logged.prefix.shape == (logged.item.size, slot)
    assert np.all(logged.policy_t_s <= logged.t_s)
    _, window, _ = hourly_requests(world.config)
    assert np.unique(logged.policy_t_s).size == sum(-(-int(n) // 7) for n in window)
    policy = LoggingPolicy(world.config, world.items.published_s)
    for row in range(0, logged.item.size, 37):
        lo, hi = world.live_range(float(logged.policy_t_s[row]))
        p = policy.probabilities(lo, hi, float(logged.policy_t_s[row]), np.zeros(hi - lo))
        placed = p[logged.prefix[row] - lo].sum()
        assert logged.propensity[row] == pytest.approx(p[logged.item[row] - lo] / (1 - placed), rel=1e-9)


def test_true_value_is_exact_for_the_uniform_policy(fixed_policy_log: tuple[Dataset, World]) -> None:
    ds, world = fixed_policy_log
    logged = logged_slot(ds.read("impressions"), world, 0).take(np.arange(40))
    values = evaluate_policies(world, logged, {"uniform": world_policies(world)["uniform"]})
    by_hand = []
    for u, t, t0 in zip(logged.user, logged.t_s, logged.policy_t_s, strict=True):
        pub = world.items.published_s
        cand = np.flatnonzero((pub > t - world.config.catalog_hours * 3600) & (pub <= t0))
        by_hand.append(world.click_prob(u, cand, t).mean())
    assert values["uniform"].truth == pytest.approx(np.mean(by_hand), rel=1e-12)
    # Every logged item is a candidate of the uniform policy unless it expired before the request.
    weights = values["uniform"].data.weights
    expired = world.items.published_s[logged.item] <= logged.t_s - world.config.catalog_hours * 3600
    assert np.all((weights > 0) == ~expired)


def test_a_better_policy_is_estimated_higher_on_one_log(fixed_policy_log: tuple[Dataset, World]) -> None:
    ds, world = fixed_policy_log
    found = evaluate_log(ds, world, world_policies(world, seed=3))
    truth = {name: t for name, (t, _) in found.items()}
    assert truth["personal"] > truth["popular"] > truth["uniform"]
    for estimator in ("ips", "snips", "dr[item]", "dr[world]"):
        assert found["personal"][1][estimator].value > found["uniform"][1][estimator].ci_high


@pytest.mark.slow
def test_intervals_cover_the_truth_over_seeds(tmp_path: Path) -> None:
    """24 seeds x 3 target policies of a 2,000-request log each: the 95 % intervals of IPS, SNIPS and
    DR cover the exact value 85-99 % of the time, DR with a decent reward model errs less than IPS,
    and the personal policy is estimated above the uniform one on every seed."""
    results = validate(range(24), tmp_path, overrides={"warmup_days": 0})
    summary = summarize(results)
    pooled = summary.group_by("estimator").agg(pl.col("coverage").mean())
    coverage = dict(zip(pooled.get_column("estimator"), pooled.get_column("coverage"), strict=True))
    for estimator in ("ips", "snips", "dr[item]", "dr[world]"):
        assert 0.85 <= coverage[estimator] <= 0.99, (estimator, coverage)
    assert coverage["dm[item]"] < 0.5  # the model alone is biased: the check can fail

    def error_sd(policy: str, estimator: str) -> float:
        row = summary.filter((pl.col("policy") == policy) & (pl.col("estimator") == estimator))
        return float(row.get_column("error_sd")[0])

    assert error_sd("personal", "dr[world]") < 0.9 * error_sd("personal", "ips")
    by_seed = {(r.seed, r.policy): r for r in results}
    for seed in range(24):
        better, worse = by_seed[seed, "personal"], by_seed[seed, "uniform"]
        assert better.truth > worse.truth
        for estimator in ("ips", "snips", "dr[world]"):
            assert better.estimates[estimator].value > worse.estimates[estimator].value
