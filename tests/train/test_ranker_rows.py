"""The ranker's training rows read lazily under a row budget: the same rows, the same examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.artifacts.config import AUTO_IMPRESSION_MAX_ROWS, RankerLossConfig
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, fit_feature_space, ranker_examples
from feedrank.data.history import RANKER_FEATURES
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.train.ranker_rows import RANKER_COLUMNS, latest_clicks, ranker_rows, recent_part
from tests.data.conftest import EXAMPLE_FEATURES, tiny_split


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Dataset], FeatureSpace]:
    parts = tiny_split(tmp_path_factory.mktemp("ranker-rows"))
    return parts, fit_feature_space(parts, EXAMPLE_FEATURES)


def _latest_requests(train: pl.DataFrame, n: int) -> pl.DataFrame:
    """The unbounded path's answer: the whole part read, then the rows at or after the n-th latest time."""
    cutoff = train.get_column("ts").sort(descending=True)[n - 1]
    return train.filter(pl.col("ts") >= cutoff).select(RANKER_COLUMNS)


def test_the_row_budget_keeps_whole_latest_requests(world: tuple[dict[str, Dataset], FeatureSpace]) -> None:
    train_part = world[0]["train"]
    train = train_part.read("impressions")
    n = train.height // 3
    kept = ranker_rows(train_part, RankerLossConfig(max_rows=n).resolved(click_only=False))
    assert kept.equals(_latest_requests(train, n))
    assert n <= kept.height < n + 50  # whole requests: at most one slate more than the budget
    requests = set(kept.get_column("request_id"))
    assert train.filter(pl.col("request_id").is_in(list(requests))).height == kept.height
    # no budget, or one above the part's rows: every row, in table order
    for loss in (RankerLossConfig(max_rows=0), RankerLossConfig(max_rows=train.height)):
        assert ranker_rows(train_part, loss.resolved(click_only=False)).equals(train.select(RANKER_COLUMNS))
    # the window applies first, then the budget within it
    windowed = recent_part(train, 6.0)
    loss = RankerLossConfig(train_window_h=6.0, max_rows=windowed.height // 2).resolved(click_only=False)
    assert ranker_rows(train_part, loss).equals(_latest_requests(windowed, windowed.height // 2))


def test_bounded_rows_build_the_same_examples(world: tuple[dict[str, Dataset], FeatureSpace]) -> None:
    parts, space = world
    train = parts["train"].read("impressions")
    n = train.height // 4
    lazy = ranker_rows(parts["train"], RankerLossConfig(max_rows=n).resolved(click_only=False))
    kwargs = {"counters": RANKER_FEATURES, "catalog_negatives": 5, "negative_rate": 0.5, "seed": 3}
    rows, requests = ranker_examples(space, lazy, **kwargs)  # type: ignore[arg-type]
    expected, expected_requests = ranker_examples(space, _latest_requests(train, n), **kwargs)  # type: ignore[arg-type]
    assert rows.keys() == expected.keys()
    for name in rows:
        np.testing.assert_array_equal(rows[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(requests.ts_us, expected_requests.ts_us)
    np.testing.assert_array_equal(requests.user_row, expected_requests.user_row)
    for name in requests.user:
        np.testing.assert_array_equal(requests.user[name], expected_requests.user[name], err_msg=name)


def test_the_auto_row_budget_bounds_logs_with_impressions_only() -> None:
    auto = RankerLossConfig()
    assert (
        auto.resolved(click_only=False).max_rows == AUTO_IMPRESSION_MAX_ROWS > 200_000
    )  # the demo's train rows
    assert auto.resolved(click_only=True).max_rows == 0  # max_clicks bounds a click-only log
    assert RankerLossConfig(max_rows=0).resolved(click_only=False).max_rows == 0
    assert RankerLossConfig(max_rows=9).resolved(click_only=False).max_rows == 9


def test_a_click_only_log_reads_its_latest_clicks(
    world: tuple[dict[str, Dataset], FeatureSpace], tmp_path: Path
) -> None:
    clicks = world[0]["train"].read("impressions").filter(pl.col("clicked"))
    (tmp_path / "log").mkdir()
    clicks.select("request_id", "user_id", "item_id", "ts").write_parquet(
        tmp_path / "log" / "impressions.parquet"
    )
    data = import_source(import_tabular, tmp_path / "log", tmp_path / "data", ImportOptions())
    train_part = open_split(split_dataset(data, tmp_path / "split", SplitSpec()))["train"]
    assert train_part.click_only
    whole = train_part.read("impressions")
    for loss in (RankerLossConfig(max_clicks=40), RankerLossConfig(train_window_h=12.0, max_clicks=0)):
        resolved = loss.resolved(click_only=True)
        expected = latest_clicks(recent_part(whole, resolved.train_window_h), resolved.max_clicks)
        assert ranker_rows(train_part, resolved).equals(expected)
