"""Simulated online A/B tests on the tiny world (tests/integration/conftest.py): the statistics, the
simulation, and the acceptance checks — a better model wins significantly, a worse one loses
significantly, and A/A tests come out significant at about the nominal 5%."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from feedrank.bundle import load_bundle
from feedrank.errors import ConfigError
from feedrank.eval.offline import EvalOptions, evaluate_run
from feedrank.eval.report import to_json
from feedrank.eval.served_engagement import EngagementAsOf
from feedrank.experiments.online_ab import (
    ABConfig,
    ABResult,
    BundlePolicy,
    assign_arms,
    experiment_population,
    simulate_ab,
    world_of_bundle,
)
from feedrank.experiments.online_report import write_report
from feedrank.experiments.online_stats import (
    PRIMARY,
    agreement,
    analyze,
    mean_test,
    offline_metrics,
    ratio_test,
)
from feedrank.serve.catalog import _engagement_stats
from feedrank.sim import World
from feedrank.sim.tables import items_frame

SMALL = ABConfig(num_users=1_500, days=2, requests_per_user_day=3.0)


@pytest.fixture(scope="module")
def world(bundle_path: Path) -> World:
    return world_of_bundle(load_bundle(bundle_path))


def simulate(
    bundle: Path, world: World, control: str, treatment: str, config: ABConfig = SMALL, candidates: int = 40
) -> ABResult:
    arms = [BundlePolicy(bundle, v, candidates=candidates, seed=config.seed) for v in (control, treatment)]
    return simulate_ab(world, arms[0], arms[1], config)


# ----------------------------------------------------------------------------- statistics
def test_welch_test_matches_scipy_and_the_lift_interval_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    c, t = rng.exponential(10.0, 800), rng.exponential(11.0, 700)
    m = mean_test("x", c, t)
    assert m.p_value == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-9)
    assert m.lift == pytest.approx(t.mean() / c.mean() - 1)
    # 95% delta-method intervals of the lift cover the true lift (10%) about 95% of the time
    covered = [
        (test := mean_test("x", rng.exponential(10.0, 500), rng.exponential(11.0, 500))).ci_low
        <= 0.1
        <= test.ci_high
        for _ in range(600)
    ]
    assert 0.92 <= np.mean(covered) <= 0.98


def test_ratio_metric_variance_is_the_delta_method_and_mde_gives_80_percent_power() -> None:
    rng = np.random.default_rng(1)
    views = rng.poisson(8.0, (400, 2000)) + 1  # 400 experiments x 2,000 users
    clicks = rng.binomial(views, 0.05)
    ratios = clicks.sum(1) / views.sum(1)
    control = ratio_test("CTR", (clicks[0] * 1.0, views[0] * 1.0), (clicks[1] * 1.0, views[1] * 1.0))
    se_delta = (control.mde / (stats.norm.ppf(0.975) + stats.norm.ppf(0.8))) * control.control / np.sqrt(2)
    assert se_delta == pytest.approx(ratios.std(ddof=1), rel=0.15)  # delta method vs repeated experiments
    # a true lift equal to the MDE is detected in about 80% of experiments
    lift = control.mde
    hits = []
    for e in range(200):
        c_v, t_v = views[2 * e], views[2 * e + 1]
        t_c = rng.binomial(t_v, 0.05 * (1 + lift))
        hits.append(ratio_test("CTR", (clicks[2 * e] * 1.0, c_v * 1.0), (t_c * 1.0, t_v * 1.0)).significant)
    assert 0.7 <= np.mean(hits) <= 0.9


def test_agreement_is_spearman_over_the_variants_with_both_numbers() -> None:
    offline = {"a": {"auc": 0.5, "gauc": 0.1}, "b": {"auc": 0.6}, "c": {"auc": 0.7}, "d": {"auc": 0.8}}
    table = agreement(offline, {"a": -0.2, "b": 0.0, "c": 0.3, "d": 0.25})
    assert table["auc"]["spearman"] == pytest.approx(0.8) and table["auc"]["variants"] == 4
    assert "gauc" not in table  # one variant only


# ----------------------------------------------------------------------------- simulation
def test_population_tops_up_the_world_and_splits_users_by_a_stable_hash(world: World) -> None:
    pop = experiment_population(world, world.num_users + 300, seed=4)
    assert len(pop.user_ids) == world.num_users + 300 == pop.world.num_users
    assert set(pop.user_ids[-300:]).isdisjoint(world.user_ids().to_list())  # new users
    assert {"age_bucket", "gender", "country", "device"} == set(pop.demographics[-1])
    assert 0.45 < pop.treated.mean() < 0.55
    assert np.array_equal(pop.treated, assign_arms(pop.user_ids, 4))
    assert not np.array_equal(pop.treated, assign_arms(pop.user_ids, 5))


def test_responses_feed_back_and_new_items_reach_the_catalog(bundle_path: Path, world: World) -> None:
    config = ABConfig(num_users=300, days=1, requests_per_user_day=4.0)
    control = BundlePolicy(bundle_path, "two-tower", candidates=30)
    treatment = BundlePolicy(bundle_path, "ranker", candidates=30)
    result = simulate_ab(world, control, treatment, config)
    u = result.per_user
    for policy, arm in ((control, ~result.treated), (treatment, result.treated)):
        assert policy.recommender.online.counts["click"] == u["clicks"][arm].sum() > 0
        assert policy.recommender.online.counts["hide"] == u["hides"][arm].sum()
    assert u["impressions"].sum() == config.k * u["requests"].sum()
    assert result.stats["rows_ranked"] == u["requests"][result.treated].sum() * 30
    fresh = items_frame(world).tail(1).with_columns(pl.lit("i-brand-new").alias("item_id"))
    now = round(world.end_s * 1e6)
    catalog = treatment.recommender.catalog
    treatment.refresh(fresh, now)
    row = catalog.rows(["i-brand-new"])[0]
    assert row >= 0 and row in catalog.index.index.ids()  # in the catalog and searchable


def test_recent_popularity_is_served_through_the_recommender(bundle_path: Path, world: World) -> None:
    config = ABConfig(num_users=300, days=1, requests_per_user_day=4.0)
    control = BundlePolicy(bundle_path, "ranker", candidates=30)
    treatment = BundlePolicy(bundle_path, "popularity-served", candidates=30, rerank=False)
    result = simulate_ab(world, control, treatment, config)
    u = result.per_user
    assert treatment.recommender.online.counts["click"] == u["clicks"][result.treated].sum() > 0
    assert treatment.recommender.rows_ranked == 0  # the ranker never ran for this arm
    assert control.recommender.rows_ranked == u["requests"][~result.treated].sum() * 30
    # the feed is the candidate pool's most clicked items over the last 24 h, scores = those clicks
    rec, now = treatment.recommender, round(world.end_s * 1e6)
    user = str(experiment_population(world, 300).user_ids[0])
    feed = rec.recommend_batch([user], now, 10, deadline=False)[0]
    rows = rec.catalog.rows([item.item_id for item in feed.items])
    clicks = rec.score_by(rows[None, :], now)[0] if rec.score_by is not None else None
    assert clicks is not None and [item.score for item in feed.items] == clicks.tolist()
    assert clicks.tolist() == sorted(clicks.tolist(), reverse=True) and clicks[0] > 0


def test_each_arm_serves_with_its_own_serving_overrides(
    bundle_path: Path, world: World, tmp_path: Path
) -> None:
    old_order = 'rerank.order=["drop","freshness","clickbait","cap"]'
    control = BundlePolicy(bundle_path, "ranker", candidates=30, serve_set=[old_order, "sources.fresh=0"])
    treatment = BundlePolicy(bundle_path, "ranker", candidates=30)
    assert control.recommender.reranker.names == ("drop", "freshness", "clickbait", "cap")
    assert treatment.recommender.reranker.names == ("drop", "clickbait", "cap")
    assert control.recommender.settings.sources.fresh == 0 != treatment.recommender.settings.sources.fresh
    off = BundlePolicy(bundle_path, "ranker", candidates=30, rerank=False, serve_set=[old_order])
    assert off.recommender.reranker.names == ()  # --no-rerank wins over an order
    with pytest.raises(ConfigError, match=r"unknown key .ordr."):
        BundlePolicy(bundle_path, "ranker", serve_set=["rerank.ordr=[]"])
    # the report says how each arm served
    report = analyze(simulate_ab(world, control, treatment, ABConfig(num_users=200, days=1)))
    text = write_report(report, tmp_path / "ab")["md"].read_text()
    assert "re-ranking on (drop, freshness, clickbait, cap); serving overrides" in text
    assert "re-ranking on (drop, clickbait, cap))" in text
    # the clickbait guardrail reads the click rates of the bundle's events before the hour only
    earlier = round((world.end_s - 86_400) * 1e6)
    treatment.refresh(items_frame(world).head(0), earlier)
    cat = treatment.recommender.catalog
    past = EngagementAsOf(load_bundle(bundle_path)).at(earlier, len(cat.item_ids))[0]
    np.testing.assert_allclose(cat.click_rate, past, equal_nan=True)
    assert np.isfinite(_engagement_stats(load_bundle(bundle_path))[0]).sum() > np.isfinite(past).sum()


def test_a_better_model_wins_significantly_and_the_report_is_written(
    bundle_path: Path, world: World, tmp_path: Path
) -> None:
    report = analyze(simulate(bundle_path, world, "random", "ranker"))
    time_spent, ctr = report.metric(PRIMARY), report.metric("CTR")
    assert time_spent.significant and time_spent.lift > 0 and time_spent.ci_low > 0
    assert ctr.significant and ctr.lift > 0
    assert not report.metric("requests/user").significant  # traffic does not depend on the arm
    paths = write_report(report, tmp_path / "ab")
    data = json.loads(paths["json"].read_text())
    assert data["metrics"][0]["name"] == PRIMARY and data["arms"]["control"]["policy"].endswith(":random")
    assert "| **time spent (s/user)** |" in paths["md"].read_text()
    assert paths["daily"].stat().st_size > 0 and paths["lift"].stat().st_size > 0


def test_a_worse_model_loses_significantly(bundle_path: Path, world: World) -> None:
    report = analyze(simulate(bundle_path, world, "popularity", "random"))
    time_spent = report.metric(PRIMARY)
    assert time_spent.significant and time_spent.lift < 0 and time_spent.ci_high < 0


def test_aa_tests_are_significant_at_about_the_nominal_rate(bundle_path: Path, world: World) -> None:
    config = ABConfig(num_users=400, days=1, requests_per_user_day=3.0)
    significant = []
    for seed in range(30):
        arms = [BundlePolicy(bundle_path, "ranker", candidates=20, rerank=False) for _ in range(2)]
        report = analyze(simulate_ab(world, arms[0], arms[1], ABConfig(**{**config.__dict__, "seed": seed})))
        significant.append([m.significant for m in report.metrics])
    rate = np.mean(significant)  # over seeds and metrics
    primary = np.mean([row[0] for row in significant])
    assert 0.0 < rate <= 0.15 and primary <= 0.15, (rate, primary)


def test_offline_metrics_and_online_lifts_give_a_correlation_table(
    runs: tuple[Path, Path], bundle_path: Path, world: World
) -> None:
    offline = offline_metrics(
        to_json(
            evaluate_run(runs[1], options=EvalOptions(max_queries=100, rerank_queries=20, served_requests=0))
        )
    )
    assert {"ranker", "two-tower", "popularity", "random", "clicks-only"} <= set(offline)
    config = ABConfig(num_users=600, days=1, requests_per_user_day=3.0)
    lifts = {
        v: analyze(simulate(bundle_path, world, "popularity", v, config, candidates=30)).metric(PRIMARY).lift
        for v in ("ranker", "two-tower", "random", "clicks-only")
    }
    table = agreement(offline, lifts)
    assert {"auc", "gauc", "ndcg@10", "value_ndcg@10", "slate_value_share"} <= set(table)
    for metric, row in table.items():  # each row is Spearman's rho of that metric against the lifts
        names = [v for v in lifts if math.isfinite(offline.get(v, {}).get(metric, math.nan))]
        ranks_offline = stats.rankdata([offline[v][metric] for v in names])
        ranks_online = stats.rankdata([lifts[v] for v in names])
        expected = float(np.corrcoef(ranks_offline, ranks_online)[0, 1])
        assert row["variants"] == len(names) >= 3
        assert row["spearman"] == pytest.approx(expected, nan_ok=True), metric
