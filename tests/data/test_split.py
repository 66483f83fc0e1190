"""Time splits: deterministic, request-preserving, and nothing from the future in an earlier part."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.errors import ConfigError, DatasetError
from tests.conftest import tiny_impressions

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    src = tmp_path / "log"
    src.mkdir()
    tiny_impressions(num_requests=20, slate=3, start=START).write_parquet(src / "impressions.parquet")
    # item i<k> is published k hours after START, so items of late requests did not exist early on
    pl.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(25)],
            "published_ts": [START + timedelta(hours=k - 3) for k in range(25)],
        }
    ).write_parquet(src / "items.parquet")
    pl.DataFrame({"user_id": ["u0", "u1"], "item_id": ["i0", "i1"]}).write_parquet(src / "history.parquet")
    return import_source(import_tabular, src, tmp_path / "data", ImportOptions())


def test_fractions_cut_by_request_time_and_nothing_crosses(dataset: Dataset, tmp_path: Path) -> None:
    out = split_dataset(dataset, tmp_path / "split", SplitSpec(valid_frac=0.2, test_frac=0.2))
    parts = open_split(out)
    sizes = {name: ds.read("impressions").get_column("request_id").n_unique() for name, ds in parts.items()}
    assert sizes == {"train": 12, "valid": 4, "test": 4}
    spans = {
        name: ds.read("impressions")
        .select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
        .row(0)
        for name, ds in parts.items()
    }
    assert spans["train"][1] < spans["valid"][0] <= spans["valid"][1] < spans["test"][0]
    # every row of the parent lands in exactly one part
    assert sum(ds.rows("impressions") for ds in parts.values()) == dataset.rows("impressions")
    meta = json.loads((out / "split.json").read_text())
    assert meta["valid_start"] == (START + timedelta(hours=12)).isoformat()
    assert meta["test_start"] == (START + timedelta(hours=16)).isoformat()


def test_earlier_parts_know_no_future_items(dataset: Dataset, tmp_path: Path) -> None:
    parts = open_split(split_dataset(dataset, tmp_path / "split", SplitSpec(valid_frac=0.2, test_frac=0.2)))
    valid_start = START + timedelta(hours=12)
    train_items = parts["train"].read("items")
    # published after the boundary and never shown in train: unknown to train
    assert train_items.filter(pl.col("published_ts") >= valid_start).height == 0
    assert "i20" not in train_items.get_column("item_id").to_list()
    assert "i20" in parts["test"].read("items").get_column("item_id").to_list()
    # everything train shows is in train's catalog
    shown = set(parts["train"].read("impressions").get_column("item_id").to_list())
    assert shown <= set(train_items.get_column("item_id").to_list())
    for ds in parts.values():
        assert ds.rows("history") == 2


def test_explicit_boundaries_and_determinism(dataset: Dataset, tmp_path: Path) -> None:
    spec = SplitSpec(valid_start=START + timedelta(hours=5), test_start=START + timedelta(hours=10))
    a = open_split(split_dataset(dataset, tmp_path / "a", spec))
    b = open_split(split_dataset(dataset, tmp_path / "b", spec))
    assert a["train"].rows("impressions") == 15
    for part in a:
        left = a[part].read("impressions").sort("request_id", "item_id")
        right = b[part].read("impressions").sort("request_id", "item_id")
        assert left.equals(right)


def test_bad_specs_fail_clearly(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid_frac"):
        split_dataset(dataset, tmp_path / "x", SplitSpec(valid_frac=0.6, test_frac=0.5))
    split_dataset(dataset, tmp_path / "y", SplitSpec())
    with pytest.raises(DatasetError, match="already exists"):
        split_dataset(dataset, tmp_path / "y", SplitSpec())
    with pytest.raises(DatasetError, match=r"split\.json is missing"):
        open_split(tmp_path)


def test_sessions_spanning_a_cut_go_to_the_later_part(tmp_path: Path) -> None:
    """A click-only log whose request ids are sessions: a session that starts before a cut and
    ends after it goes wholly to the later part, so no click at or after a cut is in an earlier part."""
    src = tmp_path / "log"
    src.mkdir()
    valid_start, test_start = START + timedelta(days=6), START + timedelta(days=7)
    rows = [
        ("s_train", "u1", "i1", START + timedelta(days=1)),
        ("s_train", "u1", "i2", START + timedelta(days=1, minutes=5)),
        # starts on day 6, ends on day 7: valid, not train
        ("s_span_valid", "u2", "i3", valid_start - timedelta(minutes=10)),
        ("s_span_valid", "u2", "i4", valid_start + timedelta(minutes=10)),
        ("s_valid", "u3", "i5", valid_start + timedelta(hours=2)),
        # starts in valid and in train's window, ends in test: test
        ("s_span_test", "u4", "i6", valid_start - timedelta(hours=1)),
        ("s_span_test", "u4", "i7", test_start + timedelta(minutes=1)),
        ("s_test", "u5", "i8", test_start + timedelta(hours=3)),
    ]
    pl.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "ts": [r[3] for r in rows],
        }
    ).write_parquet(src / "impressions.parquet")
    ds = import_source(import_tabular, src, tmp_path / "data", ImportOptions())
    out = split_dataset(ds, tmp_path / "split", SplitSpec(valid_start=valid_start, test_start=test_start))
    parts = open_split(out)
    requests = {p: set(d.read("impressions").get_column("request_id").to_list()) for p, d in parts.items()}
    assert requests == {
        "train": {"s_train"},
        "valid": {"s_span_valid", "s_valid"},
        "test": {"s_span_test", "s_test"},
    }
    last = {p: d.read("impressions").select(pl.col("ts").max()).item() for p, d in parts.items()}
    assert last["train"] < valid_start and last["valid"] < test_start
    assert sum(d.rows("impressions") for d in parts.values()) == len(rows)
    assert json.loads((out / "split.json").read_text())["requests_spanning"] == {
        "valid_start": 2,
        "test_start": 1,
    }
