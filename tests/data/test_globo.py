"""The Globo.com adapter: sessions become requests, the click context is kept, publication time
comes from the first click (and the manifest says so); old datasets without the new columns load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedrank.data.dataset import Dataset, DatasetWriter, conform
from feedrank.data.schema import CONTEXT_COLUMNS, IMPRESSIONS
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.globo import import_globo
from feedrank.errors import DataError, SourceNotFoundError
from tests.conftest import shared_sample
from tests.data.conftest import ledger, quarantine_records

T0 = datetime(2017, 10, 1, 3, tzinfo=UTC)


def _clicks(rows: list[tuple[str, str, str, datetime | None, int]]) -> pl.DataFrame:
    """(user, session, item, ts, region) rows with the Globo column set and integer codes."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "session_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "ts": [r[3] for r in rows],
            "environment": [4] * len(rows),
            "device_group": [1 if r[4] < 10 else 3 for r in rows],
            "os": [17] * len(rows),
            "country": [1] * len(rows),
            "region": [r[4] for r in rows],
            "referrer_type": [2] * len(rows),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_sessions_context_and_first_click_publication(tmp_path: Path) -> None:
    src = tmp_path / "globo"
    src.mkdir()
    _clicks(
        [
            ("7", "100", "a", T0 + timedelta(minutes=5), 3),
            ("7", "100", "b", T0 + timedelta(minutes=9), 3),
            ("8", "200", "a", T0, 21),  # a's first click, though written after the others
            ("7", "300", "c", T0 + timedelta(hours=3), 12),  # user 7's latest click: region 12
            ("8", "200", "a", T0 + timedelta(minutes=1), 21),  # same session and item: duplicate
            ("9", "400", "d", None, 5),  # no time
        ]
    ).write_parquet(src / "clicks.parquet")
    ds = import_source(import_globo, src, tmp_path / "out", ImportOptions())
    assert ds.click_only
    assert ledger(ds) == {("clicks.parquet", "click"): (6, 4, 2)}
    reasons = sorted(r["reason"] for r in quarantine_records(ds))
    assert reasons == ["duplicate impressions row (same request_id, item_id)", "required value is missing"]
    imp = ds.read("impressions").sort("ts")
    assert imp.get_column("request_id").to_list() == ["200", "100", "100", "300"]
    assert imp.get_column("session_id").to_list() == imp.get_column("request_id").to_list()
    assert imp.get_column("clicked").all()
    assert imp.get_column("region").to_list() == ["21", "3", "3", "12"]
    assert all(imp.get_column(c).null_count() == 0 for c in CONTEXT_COLUMNS)
    published = dict(ds.read("items").select("item_id", "published_ts").iter_rows())
    assert published == {"a": T0, "b": T0 + timedelta(minutes=9), "c": T0 + timedelta(hours=3)}
    users = {r["user_id"]: r for r in ds.read("users").iter_rows(named=True)}
    assert users["7"]["device"] == "3" and users["7"]["country"] == "1"  # from the latest click
    assert "first click" in ds.manifest["source"]["published_ts"]
    assert ds.manifest["source"]["request_id"] == "session_id"


def test_missing_input_and_columns_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        import_source(import_globo, tmp_path / "nowhere", tmp_path / "o1", ImportOptions())
    src = tmp_path / "globo"
    src.mkdir()
    _clicks([("7", "100", "a", T0, 3)]).drop("session_id").write_parquet(src / "clicks.parquet")
    with pytest.raises(DataError, match=r"clicks\.parquet: required column\(s\) session_id missing"):
        import_source(import_globo, src, tmp_path / "o2", ImportOptions())


def test_a_dataset_written_before_the_context_columns_still_loads(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "old")
    writer.finish(source={"format": "old"})
    old_columns = IMPRESSIONS.names[: IMPRESSIONS.names.index("propensity") + 1]
    row = pl.DataFrame(
        {
            "request_id": ["r"],
            "user_id": ["u"],
            "item_id": ["i"],
            "ts": [T0],
            "clicked": [True],
            "shared": [False],
            "hidden": [False],
        }
    )
    shard = tmp_path / "old" / "impressions" / "part-00000.parquet"
    conform(row, IMPRESSIONS).select(old_columns).write_parquet(shard)
    got = Dataset.open(tmp_path / "old").read("impressions")
    assert got.columns == IMPRESSIONS.names and got.height == 1
    assert got.get_column("region").to_list() == [None]


def test_the_real_slice_head(tmp_path: Path) -> None:
    """The first 20,000 clicks of the shared Globo.com slice import whole, with their context."""
    sample = shared_sample("globo-g1-dev") / "clicks.parquet"
    src = tmp_path / "head"
    src.mkdir()
    head = pq.ParquetFile(sample).iter_batches(batch_size=20_000)
    pq.write_table(pa.Table.from_batches([next(head)]), src / "clicks.parquet")
    ds = import_source(import_globo, src, tmp_path / "out", ImportOptions())
    assert ledger(ds) == {("clicks.parquet", "click"): (20_000, 20_000, 0)}
    imp = ds.read("impressions")
    assert imp.get_column("request_id").n_unique() == imp.get_column("session_id").n_unique() > 1_000
    assert all(imp.get_column(c).null_count() == 0 for c in CONTEXT_COLUMNS)
    items = ds.read("items")
    first = imp.group_by("item_id").agg(pl.col("ts").min().alias("first"))
    joined = items.join(first, on="item_id")
    assert joined.height == items.height and (joined["published_ts"] == joined["first"]).all()
