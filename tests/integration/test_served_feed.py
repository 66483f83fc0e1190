"""The served-feed evaluation on a tiny world's bundle: the feeds come from the service's own
Recommender, batching does not change them, and the oracle bounds what is served."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_path import RecommenderServer
from feedrank.eval.served_requests import sample_requests


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
    assert 0 <= served["new_user_overlap@10"] <= 1
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
    with pytest.raises(ConfigError, match="skip-session-first"):
        evaluate_next_click_served(runs[1], bundle_path, split_dir, NextClickOptions(skip_session_first=True))
