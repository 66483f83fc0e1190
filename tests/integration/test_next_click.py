"""Next-click protocol: exact tie handling, a leak-free stream, and the end-to-end report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.candidates import Trending, TrendingConfig
from feedrank.data.dataset import conform
from feedrank.data.examples import build_feature_space
from feedrank.data.features import FeatureConfig, to_us
from feedrank.data.schema import HISTORY, IMPRESSIONS, ITEMS, USERS
from feedrank.eval.next_click_stream import POP_WINDOWS_MIN, ClickStream, ndcg10_of_rows, rank_metrics
from tests.conftest import assert_chart

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_rank_metrics_by_hand_and_with_ties() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert rank_metrics(scores, 2) == pytest.approx(
        {"hr@10": 1.0, "hr@20": 1.0, "ndcg@10": 1 / np.log2(4), "mrr@20": 1 / 3}
    )
    flat = np.zeros(40)  # all tied: the expected value over a uniform rank in 1..40
    got = rank_metrics(flat, 7)
    ranks = np.arange(1, 41)
    assert got["hr@10"] == pytest.approx(10 / 40)
    assert got["ndcg@10"] == pytest.approx(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean())
    assert got["mrr@20"] == pytest.approx(np.where(ranks <= 20, 1 / ranks, 0).mean())
    assert rank_metrics(scores, -1) == {"hr@10": 0.0, "hr@20": 0.0, "ndcg@10": 0.0, "mrr@20": 0.0}


def test_ndcg_of_many_rows_equals_rank_metrics_row_by_row() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((36, 300)) * 4, 1)  # many ties; some targets on top, some far down
    scores[5] = 0.0
    scores[7, 17], scores[8, 17], scores[8, :4] = 9.0, 8.0, 8.0  # first; tied with 4 others on top
    for target in (0, 17, 299):
        expected = [rank_metrics(row, target)["ndcg@10"] for row in scores]
        assert ndcg10_of_rows(scores, target).tolist() == expected
        assert target != 17 or (expected[7] == 1.0 and 0 < expected[8] < 1.0)
    assert ndcg10_of_rows(scores, -1).tolist() == [0.0] * 36


def _events(n: int = 600) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return conform(
        pl.DataFrame(
            {
                "request_id": [f"r{k}" for k in range(n)],
                "user_id": [f"u{rng.integers(12)}" for _ in range(n)],
                "item_id": [f"i{rng.integers(40)}" for _ in range(n)],
                "ts": [T0 + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 6000, n))],
                "clicked": rng.random(n) < 0.5,
                "shared": [False] * n,
                "hidden": [False] * n,
            }
        ),
        IMPRESSIONS,
    )


def test_the_stream_is_leak_free() -> None:
    events = _events()
    items = conform(pl.DataFrame({"item_id": [f"i{k}" for k in range(40)]}), ITEMS)
    users = conform(pl.DataFrame({"user_id": [f"u{k}" for k in range(12)]}), USERS)
    space = build_feature_space(
        FeatureConfig(), items=items, users=users, history=HISTORY.empty(), impressions=events, ctr_prior=0.5
    )
    targets = events.filter(pl.col("clicked")).tail(30)
    cut = targets.get_column("ts").min()
    full = ClickStream(space, events, live_window_h=48, session_gap_min=30)
    truncated = ClickStream(space, events.filter(pl.col("ts") < cut), live_window_h=48, session_gap_min=30)
    first = targets.filter(pl.col("ts") == cut)  # the clicks at exactly the cut see only earlier events
    for (_, a), (_, b) in zip(full.walk(first), truncated.walk(first), strict=True):
        assert np.array_equal(a.live_rows, b.live_rows) and a.target == b.target
        assert all(np.array_equal(a.pop[m], b.pop[m]) for m in a.pop)
        assert np.array_equal(a.covis, b.covis) and a.session_first == b.session_first
    later = targets.filter(pl.col("ts") > cut).head(5)
    differs = [
        any(not np.array_equal(a.pop[m], b.pop[m]) for m in a.pop)
        for (_, a), (_, b) in zip(full.walk(later), truncated.walk(later), strict=True)
    ]
    assert any(differs)  # the truncation really removed information


def test_sliding_popularity_counts_equal_trending_recounted_per_target() -> None:
    events = _events(2_000)
    items = conform(pl.DataFrame({"item_id": [f"i{k}" for k in range(40)]}), ITEMS)
    users = conform(pl.DataFrame({"user_id": [f"u{k}" for k in range(12)]}), USERS)
    space = build_feature_space(
        FeatureConfig(), items=items, users=users, history=HISTORY.empty(), impressions=events, ctr_prior=0.5
    )
    stream = ClickStream(space, events, live_window_h=48, session_gap_min=30)
    trending = Trending(TrendingConfig(windows_min=tuple(map(float, POP_WINDOWS_MIN)), half_life_min=None))
    trending.extend(stream.ck_item, stream.ck_ts)
    targets = events.filter(pl.col("clicked")).gather_every(7)  # ties of time and gaps > 24 h included
    ts = to_us(targets.get_column("ts"))
    seen = 0
    for e, state in stream.walk(targets):
        expected = trending.counts(int(ts[e]), len(space.catalog))[:, state.live_rows]
        assert all(np.array_equal(state.pop[m], expected[k]) for k, m in enumerate(POP_WINDOWS_MIN))
        seen += 1
    assert seen == targets.height > 100


def test_next_click_report_on_the_tiny_world(runs: tuple[Path, Path], tmp_path: Path) -> None:
    from feedrank.eval.next_click import NextClickOptions, evaluate_next_click
    from feedrank.eval.next_click_report import write_next_click_report

    heard: list[tuple[int, int]] = []
    report = evaluate_next_click(
        runs[1],
        options=NextClickOptions(max_events=300, valid_events=200),
        on_click=lambda done, total: heard.append((done, total)),
    )
    assert {"two-tower", "ranker", "blend", "recent popularity (60 min)"} <= set(report.overall)
    # progress: every click heard once, in order, then the end
    total = heard[-1][1]
    assert heard == [(i, total) for i in range(total)] + [(total, total)] and 0 < total <= 300
    for row in report.overall.values():
        assert all(0.0 <= row[m] <= 1.0 for m in ("hr@10", "hr@20", "ndcg@10", "mrr@20"))
        assert row["hr@10"] <= row["hr@20"]
    assert {"cold items", "warm items"} & set(report.segments)
    recall = report.candidate_recall["all"]
    for generator in ("ANN", "union"):
        values = [recall[generator][f"recall@{n}"] for n in (50, 100, 200, 500)]
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)  # more seats, more hits
    # Every source is on, so the union can only hold the same ANN seats when nothing else proposes.
    assert recall["union"]["recall@500"] >= recall["ANN"]["recall@50"]
    paired = report.paired["all"]["ranker − blend"]
    overall = report.overall
    assert paired["diff"] == pytest.approx(overall["ranker"]["ndcg@10"] - overall["blend"]["ndcg@10"])
    assert paired["diff_se"] > 0 and paired["events"] == report.num_events
    paths = write_next_click_report(report, tmp_path)
    text = paths["markdown"].read_text()
    assert "| ranker |" in text and "union of sources" in text
    assert "| ranker − blend |" in text
    assert_chart(paths["plot"])
    assert_chart(paths["candidates_plot"])


def test_ranker_scores_in_blocks_equal_one_block(
    runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring the ranker's candidates a block of clicks at a time (bounded memory) changes nothing."""
    from feedrank.eval import next_click
    from feedrank.eval.next_click import NextClickOptions, evaluate_next_click

    options = NextClickOptions(max_events=120, valid_events=60)
    one_block = evaluate_next_click(runs[1], options=options).overall["ranker"]
    monkeypatch.setattr(next_click, "_RANKER_BLOCK_ROWS", 450)  # a few clicks of 200 candidates per block
    blocks = evaluate_next_click(runs[1], options=options).overall["ranker"]
    assert blocks == pytest.approx(one_block, abs=1e-12)
    assert one_block["hr@20"] > 0  # the ranker finds something, so equality is not 0 == 0


def test_the_ranker_ranks_by_its_click_head_and_the_feed_score_is_reported_beside(
    runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedrank.eval import next_click
    from feedrank.eval.model_scorer import RankerScorer
    from feedrank.eval.next_click import NextClickOptions, evaluate_next_click

    options = NextClickOptions(max_events=120, valid_events=60)
    served = evaluate_next_click(runs[1], options=options).overall
    assert served["ranker"] != served["ranker (feed score)"]  # the served weights also count shares

    class ClickOnly(RankerScorer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.weights = {"click": 1.0}

    monkeypatch.setattr(next_click, "RankerScorer", ClickOnly)
    clicks = evaluate_next_click(runs[1], options=options).overall
    assert clicks["ranker (feed score)"] == pytest.approx(clicks["ranker"], abs=1e-12)
    assert clicks["ranker"] == pytest.approx(served["ranker"], abs=1e-12)


def test_a_target_outside_the_pool_ranks_after_it_in_two_tower_order() -> None:
    from feedrank.eval.next_click import _rank_after_pool
    from feedrank.eval.next_click_stream import TargetState

    live = np.array([3, 5, 8, 9, 12])
    two_tower = np.array([0.9, 0.1, 0.5, 0.7, 0.3])  # by live position
    state = TargetState(live, target=4, pop={}, covis=np.zeros(5), session_first=False)
    # the pool holds rows 3 and 9; outside it, row 8 (0.5) is ahead of the target (row 12, 0.3)
    assert _rank_after_pool(two_tower, state, np.array([3, 9])) == 2 + 1 + 1
    assert _rank_after_pool(two_tower, state, np.array([8])) == 1 + 2 + 1  # rows 3 and 9 ahead
