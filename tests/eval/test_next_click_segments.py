"""Cold and warm by event time: an item first clicked before the train cut is warm, whichever part
its session landed in; one first seen at or after the cut is cold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from feedrank.eval.next_click_segments import paired_differences, segment_masks, summarize

CUT = datetime(2017, 10, 7, tzinfo=UTC)


def test_cold_and_warm_come_from_first_event_times() -> None:
    events = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3", "u3"],
            # i1: clicked before the cut by a session that spans it (the session is in valid)
            "item_id": ["i1", "i2", "i1", "i3", "i3"],
            "ts": [
                CUT - timedelta(minutes=5),
                CUT + timedelta(minutes=5),
                CUT + timedelta(hours=30),
                CUT,  # exactly at the cut: cold
                CUT + timedelta(hours=1),
            ],
        }
    )
    masks = segment_masks(
        np.array(["i1", "i2", "i3", "i1"], dtype=object),
        np.array(["u2", "u1", "u3", "u4"], dtype=object),
        events,
        history_users=pl.Series(["u4"], dtype=pl.String),  # pre-window history makes a user warm
        cut=CUT,
    )
    assert masks["warm items"].tolist() == [True, False, False, True]
    assert masks["cold items"].tolist() == [False, True, True, False]
    assert masks["warm users"].tolist() == [False, True, False, True]
    assert (masks["cold users"] == ~masks["warm users"]).all() and masks["all"].all()


def test_summaries_carry_standard_errors_and_counts() -> None:
    metrics = {"s": {"ndcg@10": np.array([0.0, 1.0, 0.5, 0.5])}}
    row = summarize(metrics, np.array([True, True, False, True]))["s"]
    assert row["ndcg@10"] == 0.5 and row["events"] == 3
    assert row["ndcg@10_se"] == np.std([0.0, 1.0, 0.5], ddof=1) / np.sqrt(3)


def test_paired_differences_are_per_click_and_their_error_is_the_differences_own() -> None:
    rng = np.random.default_rng(0)
    hard = rng.random(400)  # how easy each click is: both systems move with it
    blend = hard * 0.5
    ranker = blend + 0.05 + rng.normal(0, 0.01, 400)
    metrics = {
        "blend": {"ndcg@10": blend},
        "co-visitation (previous click)": {"ndcg@10": hard * 0.2},
        "ranker": {"ndcg@10": ranker},
    }
    mask = np.arange(400) >= 100
    out = paired_differences(metrics, mask)
    assert set(out) == {"ranker − blend", "ranker − co-visitation (previous click)"}
    row = out["ranker − blend"]
    d = (ranker - blend)[mask]
    assert row["diff"] == pytest.approx(d.mean()) and row["events"] == 300
    assert row["diff_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(300))
    assert row["relative"] == pytest.approx(d.mean() / blend[mask].mean())
    # the paired error is far below the unpaired one (the systems share each click's difficulty)
    unpaired = np.sqrt(ranker[mask].var(ddof=1) / 300 + blend[mask].var(ddof=1) / 300)
    assert row["diff_se"] < unpaired / 5
    # no model system: nothing to pair
    assert paired_differences({"blend": {"ndcg@10": blend}}, mask) == {}
