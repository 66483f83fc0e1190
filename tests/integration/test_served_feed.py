"""The served-feed evaluation on a tiny world's bundle: the feeds come from the service's own
Recommender, batching does not change them, and the oracle bounds what is served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_engagement import EngagementAsOf
from feedrank.eval.served_path import RecommenderServer
from feedrank.eval.served_requests import sample_requests
from feedrank.serve.catalog import _engagement_stats


def test_served_feeds_come_from_the_recommender_whatever_the_batch(
    bundle_path: Path, split_dir: Path
) -> None:
    test = open_split(split_dir)["test"]
    requests = sample_requests(test.read("impressions"), test.read("users"), 5, seed=1)
    server = RecommenderServer(load_bundle(bundle_path))
    for user, now, demo in zip(
        requests.user_ids, requests.ts_us.tolist(), requests.demographics, strict=True
    ):
        together = server.feeds([user, "someone-new"], now, 20, [demo, demo])
        alone = server.feeds([user], now, 20, [demo]) + server.feeds(["someone-new"], now, 20, [demo])
        assert together == alone
        assert len(together[0]) == 20 and len(set(together[0])) == 20
        # what serving served existed at the request time
        cat = server.recommender.catalog
        assert (cat.exists_us[cat.rows(together[0])] <= now).all()


def test_served_feed_report_on_a_bundle(bundle_path: Path) -> None:
    options = ServedOptions(requests=120, panel_users=30, panel_times=2, seed=3)
    report = evaluate_served(bundle_path, options=options)
    assert report.requests == 120 and report.bundle == str(bundle_path)
    served, oracle = report.systems["served (ranker)"], report.systems["oracle"]
    for k in (10, 20):
        assert 0 < served[f"utility@{k}"] < oracle[f"utility@{k}"]
        assert served[f"utility_share@{k}"] == pytest.approx(served[f"utility@{k}"] / oracle[f"utility@{k}"])
        assert 0 < served[f"utility_share@{k}_se"] < 0.2
    assert 0 <= served["hr@10"] <= served["hr@20"] <= 1
    assert 0 <= served["new_user_overlap@10"] <= 1 and 0 <= served["anonymous_overlap@10"] <= 1
    # the oracle serves a brand-new user too: the items best in expectation for the demographics,
    # which are worth less to the known user than their own best feed
    assert 0 <= oracle["new_user_overlap@10"] < 1 and 0 <= oracle["anonymous_overlap@10"] < 1
    assert 0 < oracle["new_feed_share@20"] < 1
    panel = report.panel["served (ranker)"]
    assert panel["users"] == 30 and 0 <= panel["jaccard@10"] <= 1 and panel["distinct_items"] >= 10
    assert report.panel["oracle"]["distinct_items"] >= 10
    counted = sum(
        int(report.segments[s]["oracle"]["requests"])
        for s in ("new users", "returning users")
        if s in report.segments
    )
    assert counted == 120  # every request is new or returning


def test_next_click_served_rows_sit_beside_the_offline_ones(
    runs: tuple[Path, Path], bundle_path: Path, split_dir: Path
) -> None:
    from feedrank.errors import ConfigError
    from feedrank.eval.next_click import NextClickOptions
    from feedrank.eval.served_next_click import evaluate_next_click_served

    options = NextClickOptions(max_events=60, valid_events=30, ranker_candidates=100, candidate_ns=(50, 100))
    report = evaluate_next_click_served(runs[1], bundle_path, split_dir, options)
    served = report.overall["served (ranker)"]
    assert {"ranker", "ranker (feed score)", "served (no re-ranking)"} <= set(report.overall)
    assert served["events"] == report.num_events == 60
    for row in (served, report.overall["served (no re-ranking)"]):
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= row["hr@20"] <= 1 and row["mrr@20"] <= row["hr@20"]
    # each served row against each offline ranker row, paired over the same 60 clicks
    for name in ("served (ranker)", "served (no re-ranking)"):
        for base in ("ranker (feed score)", "ranker"):
            pair = report.served_paired[f"{name} − {base}"]
            assert pair["events"] == 60
            for m in ("hr@10", "ndcg@10"):
                assert pair[m] == pytest.approx(report.overall[name][m] - report.overall[base][m])
                assert pair[f"{m}_se"] >= 0
    with pytest.raises(ConfigError, match="skip-session-first"):
        evaluate_next_click_served(runs[1], bundle_path, split_dir, NextClickOptions(skip_session_first=True))


def test_served_differences_are_paired_click_by_click() -> None:
    from feedrank.eval.served_next_click import METRICS, served_differences

    rng = np.random.default_rng(4)
    offline = {m: rng.random(200) for m in METRICS}
    shift = rng.normal(0.05, 0.01, 200)  # served = offline + a small, steady per-click gain
    served = {m: offline[m] + shift for m in METRICS}
    rows = served_differences({"served (ranker)": served}, {"ranker": offline, "blend": offline})
    assert list(rows) == ["served (ranker) − ranker"]  # the offline rankers only, not baselines
    row = rows["served (ranker) − ranker"]
    assert row["ndcg@10"] == pytest.approx(shift.mean())
    assert row["ndcg@10_se"] == pytest.approx(shift.std(ddof=1) / np.sqrt(200))
    # pairing removes the clicks' own spread: the difference's SE is far below either row's
    assert row["ndcg@10_se"] < 0.1 * offline["ndcg@10"].std(ddof=1) / np.sqrt(200)
    with pytest.raises(ValueError, match="clicks"):
        served_differences({"served (ranker)": served}, {"ranker": {m: v[:100] for m, v in offline.items()}})


def _stats_before(bundle_path: Path, now_us: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The click rate and dwell of serve/catalog._engagement_stats over the events before now_us."""
    bundle = load_bundle(bundle_path)
    events = pl.read_parquet(bundle_path / "events.parquet").filter(pl.col("ts").dt.epoch("us") < now_us)
    stats = events.group_by("item_id").agg(
        pl.col("clicked").mean().alias("ctr"),
        pl.col("dwell_s").filter(pl.col("clicked")).mean().alias("dwell"),
    )
    rows = bundle.space.catalog.rows(stats.get_column("item_id"))
    ctr, dwell = np.full(size, np.nan), np.full(size, np.nan)
    ctr[rows] = stats.get_column("ctr").cast(pl.Float64).to_numpy()
    dwell[rows] = stats.get_column("dwell").cast(pl.Float64).fill_null(np.nan).to_numpy()
    return ctr, dwell


def test_engagement_as_of_counts_only_the_events_before_the_time(bundle_path: Path) -> None:
    bundle = load_bundle(bundle_path)
    stats = EngagementAsOf(bundle)
    n = len(bundle.space.catalog)
    times = np.quantile(stats.ts_us, [0.5, 0.9, 0.2]).astype(np.int64).tolist()  # forward, then back
    for now in [*times, int(stats.ts_us[-1]) + 1]:
        ctr, dwell = stats.at(now, n + 3)
        want_ctr, want_dwell = _stats_before(bundle_path, now, n + 3)
        np.testing.assert_allclose(ctr, want_ctr, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(dwell, want_dwell, rtol=1e-6, equal_nan=True)
        assert np.isnan(ctr[n:]).all()  # rows added after the bundle: no events yet
    # after the last event: what the service reads from the whole bundle
    live_ctr, live_dwell = _engagement_stats(bundle)
    np.testing.assert_allclose(stats.at(int(stats.ts_us[-1]) + 1)[0], live_ctr, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(stats.at(int(stats.ts_us[-1]) + 1)[1], live_dwell, rtol=1e-6, equal_nan=True)
    # at a time inside the log, items clicked only later have no click rate yet
    middle = times[0]
    assert np.isnan(stats.at(middle)[0]).sum() > np.isnan(live_ctr).sum()


def test_the_replayed_reranker_sees_only_past_engagement(bundle_path: Path, split_dir: Path) -> None:
    test = open_split(split_dir)["test"]
    requests = sample_requests(test.read("impressions"), test.read("users"), 3, seed=2)
    server = RecommenderServer(load_bundle(bundle_path))
    looking_ahead = RecommenderServer(load_bundle(bundle_path), past_engagement=False)
    everything = _engagement_stats(load_bundle(bundle_path))[0]
    for user, now, demo in zip(
        requests.user_ids, requests.ts_us.tolist(), requests.demographics, strict=True
    ):
        server.feeds([user], now, 20, [demo])
        looking_ahead.feeds([user], now, 20, [demo])
        cat = server.recommender.catalog
        n = len(cat.item_ids)
        np.testing.assert_allclose(cat.click_rate, _stats_before(bundle_path, now, n)[0], equal_nan=True)
        np.testing.assert_allclose(looking_ahead.recommender.catalog.click_rate, everything, equal_nan=True)
