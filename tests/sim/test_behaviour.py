"""The simulated behaviour agrees with the world's ground truth and with how news feeds behave."""

from __future__ import annotations

import numpy as np
import polars as pl

from feedrank.sim import World
from tests.sim.conftest import BEHAVIOUR_CONFIG, Simulated


def by_bins(df: pl.DataFrame, column: str, bins: int = 5) -> pl.DataFrame:
    """CTR and mean dwell of clicked rows per quantile bin of `column`, lowest bin first."""
    ranks = df[column].rank("ordinal").to_numpy()
    binned = df.with_columns(pl.Series("bin", ((ranks - 1) * bins // df.height).astype(np.int64)))
    return (
        binned.group_by("bin")
        .agg(
            pl.col("clicked").mean().alias("ctr"),
            pl.col("dwell_s").filter(pl.col("clicked")).mean().alias("dwell"),
        )
        .sort("bin")
    )


def test_ctr_and_dwell_rise_with_ground_truth_utility(behaviour: Simulated) -> None:
    stats = by_bins(behaviour.impressions, "utility")
    ctr, dwell = stats["ctr"].to_numpy(), stats["dwell"].to_numpy()
    assert np.all(np.diff(ctr) > 0), ctr
    assert np.all(np.diff(dwell) > 0), dwell
    assert ctr[-1] > 3 * ctr[0]


def test_click_probability_is_calibrated(behaviour: Simulated) -> None:
    # Observed CTR / (examination * P(click | examined)) is 1 on average in every utility bin.
    imp = behaviour.impressions
    expected = behaviour.world.examination(imp["position"].to_numpy()) * imp["click_prob"].to_numpy()
    ratio = imp["clicked"].sum() / expected.sum()
    assert 0.95 < ratio < 1.05


def test_clickbait_gets_more_clicks_but_shorter_dwell_at_similar_affinity(behaviour: Simulated) -> None:
    imp = behaviour.impressions
    ranks = imp["affinity"].rank("ordinal").to_numpy()
    imp = imp.with_columns(pl.Series("bin", (ranks - 1) * 4 // imp.height))
    stats = (
        imp.group_by("bin", "clickbait")
        .agg(
            pl.col("clicked").mean().alias("ctr"),
            pl.col("dwell_s").filter(pl.col("clicked")).mean().alias("dwell"),
        )
        .sort("bin", "clickbait")
    )
    bait, plain = stats.filter(pl.col("clickbait")), stats.filter(~pl.col("clickbait"))
    assert (bait["ctr"].to_numpy() > plain["ctr"].to_numpy()).all()
    assert (bait["dwell"].to_numpy() < 0.6 * plain["dwell"].to_numpy()).all()


def test_ctr_falls_with_position_as_examination_does(behaviour: Simulated) -> None:
    imp = behaviour.impressions
    per_pos = (
        imp.group_by("position").agg(pl.col("clicked").mean(), pl.col("click_prob").mean()).sort("position")
    )
    ctr = per_pos["clicked"].to_numpy()
    assert ctr[0] > 2 * ctr[-1]
    assert np.corrcoef(np.arange(ctr.size), ctr)[0, 1] < -0.8
    # Correcting for what was shown where leaves the examination curve.
    exam = ctr / per_pos["click_prob"].to_numpy()
    truth = behaviour.world.examination(np.arange(ctr.size))
    assert np.allclose(exam, truth, rtol=0.15)


def test_new_users_arrive_during_the_window(behaviour: Simulated) -> None:
    world = behaviour.world
    imp = behaviour.impressions
    first = imp.group_by("u").agg(pl.col("t_s").min())
    arrival = world.users.arrival_s[first["u"].to_numpy()]
    newcomers = arrival >= world.start_s
    assert newcomers.sum() >= 20
    assert (first["t_s"].to_numpy() >= arrival).all()  # nobody requests before arriving
    hist_users = set(world.user_index(behaviour.dataset.read("history")["user_id"]).tolist())
    assert not hist_users & set(first["u"].to_numpy()[newcomers].tolist())  # cold start: no history


def test_item_clicks_peak_within_hours_of_publication(behaviour: Simulated) -> None:
    clicks = behaviour.impressions.filter(pl.col("clicked"))
    per_hour = np.bincount(clicks["age_h"].floor().cast(pl.Int64).to_numpy(), minlength=48)
    assert per_hour.argmax() < 6
    assert per_hour[:6].sum() > 2 * per_hour[24:30].sum()
    # Not only because the policy shows fresh items more: the same exposure earns fewer clicks later.
    shown = behaviour.impressions
    fresh = shown.filter(pl.col("age_h") < 6)["clicked"].mean()
    stale = shown.filter(pl.col("age_h") > 24)["clicked"].mean()
    assert isinstance(fresh, float) and isinstance(stale, float) and fresh > 2 * stale


def test_a_few_users_make_many_requests(behaviour: Simulated) -> None:
    per_user = behaviour.impressions.group_by("u").agg(pl.col("request_id").n_unique().alias("n"))
    requests = np.sort(per_user["n"].to_numpy())[::-1]
    assert requests[: requests.size // 10].sum() > 0.35 * requests.sum()


def test_traffic_follows_a_daily_cycle(behaviour: Simulated) -> None:
    per_hour = behaviour.impressions.group_by(pl.col("ts").dt.hour()).len()["len"].to_numpy()
    assert per_hour.max() > 2 * per_hour.min()


def test_demographics_predict_interests(behaviour: Simulated) -> None:
    world = behaviour.world
    u = world.users
    logits = np.log(world.topic_popularity) + sum(
        world.demographic_shift[a][getattr(u, a)] for a in world.vocab.demographics
    )
    prior = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    interests = u.interests.astype(np.float64)
    personal = (prior * interests).sum(axis=1).mean()
    generic = (prior.mean(axis=0) * interests).sum(axis=1).mean()
    assert personal > 1.2 * generic


def test_surveys_are_rare_and_follow_utility(behaviour: Simulated) -> None:
    clicks = behaviour.impressions.filter(pl.col("clicked"))
    surveyed = clicks.filter(pl.col("survey").is_not_null())
    assert 0.003 < surveyed.height / clicks.height < 0.03
    assert np.corrcoef(surveyed["survey"].to_numpy(), surveyed["dwell_s"].to_numpy())[0, 1] > 0.2


def test_oracle_slates_beat_random_slates(behaviour: Simulated) -> None:
    world: World = behaviour.world
    rng = np.random.default_rng(0)
    t = world.start_s + 30 * 3600.0
    users = world.sample_users(np.full(3_000, t), rng)
    live = world.live_items(t)
    oracle = world.oracle_ranking(users, t, BEHAVIOUR_CONFIG.slate_size)
    random = np.stack([rng.choice(live, BEHAVIOUR_CONFIG.slate_size, replace=False) for _ in users])
    assert np.isin(oracle, live).all()
    util = world.expected_utility(users[:, None], oracle, t)
    assert np.all(np.diff(util, axis=1) <= 0)  # best first
    assert world.slate_utility(users, oracle, t).mean() > 3 * world.slate_utility(users, random, t).mean()
    clicks_oracle = world.respond(users, oracle, t, rng).clicked.mean()
    clicks_random = world.respond(users, random, t, rng).clicked.mean()
    assert clicks_oracle > 3 * clicks_random


def test_respond_is_reproducible_and_shaped_like_the_slate(behaviour: Simulated) -> None:
    world = behaviour.world
    t = np.full(4, world.start_s + 3600.0)
    users = np.array([0, 1, 2, 3])
    slates = world.oracle_ranking(users, float(t[0]), 5)
    a = world.respond(users, slates, t, np.random.default_rng(5))
    b = world.respond(users, slates, t, np.random.default_rng(5))
    assert a.clicked.shape == a.dwell_s.shape == (4, 5)
    assert np.array_equal(a.clicked, b.clicked) and np.array_equal(a.dwell_s, b.dwell_s)
