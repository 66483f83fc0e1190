"""The EB-NeRD adapter on the official test fixture, with an articles file, and on broken input."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.ebnerd import import_ebnerd
from feedrank.errors import BadRowError, DataError, EmptySourceError, SourceNotFoundError
from tests.conftest import shared_sample
from tests.data.conftest import assert_no_output, bad_row_message, ledger, quarantine_records

T0 = datetime(2023, 2, 27, 3, 23, 27)
BEHAVIORS_SCHEMA: dict[str, pl.DataType] = {
    "impression_id": pl.UInt32(),
    "user_id": pl.UInt32(),
    "impression_time": pl.Datetime("us"),
    "article_ids_inview": pl.List(pl.Int32()),
    "article_ids_clicked": pl.List(pl.Int32()),
    "next_read_time": pl.Float32(),
    "device_type": pl.Int8(),
    "age": pl.Int8(),
    "gender": pl.Int8(),
    "read_time": pl.Float32(),
}
HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.UInt32(),
    "impression_time_fixed": pl.List(pl.Datetime("us")),
    "article_id_fixed": pl.List(pl.Int32()),
    "read_time_fixed": pl.List(pl.Float32()),
}


def run(src: Path, out: Path, *, strict: bool = False, batch_rows: int = 1_000_000) -> Dataset:
    return import_source(import_ebnerd, src, out, ImportOptions(strict=strict, batch_rows=batch_rows))


@pytest.fixture(scope="module")
def sample() -> Path:
    return shared_sample("ebnerd-sample")


@pytest.fixture(scope="module")
def ebnerd_sample(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return run(sample, tmp_path_factory.mktemp("ebnerd") / "ds")


def test_sample_counts_match_the_files(ebnerd_sample: Dataset, sample: Path) -> None:
    ds = ebnerd_sample
    raw = pl.read_parquet(sample / "behaviors.parquet")
    raw_history = pl.read_parquet(sample / "history.parquet")
    imps = ds.read("impressions")
    assert imps.get_column("request_id").n_unique() == raw.height == 1_046
    assert imps.height == raw.get_column("article_ids_inview").list.len().sum() == 10_848
    assert imps.get_column("clicked").sum() == 1_047
    assert ds.rows("history") == raw_history.get_column("article_id_fixed").list.len().sum() == 8_303
    users = ds.read("users")
    # 38 users in behaviors (with a device); 6 more only in history, added without features
    assert users.filter(pl.col("device").is_not_null()).height == 38
    assert users.height == 44
    assert ds.manifest["quarantine"]["count"] == 0
    assert ledger(ds) == {
        ("behaviors.parquet", "behaviors row"): (1_046, 1_046, 0),
        ("behaviors.parquet", "clicked id"): (1_047, 1_047, 0),
        ("behaviors.parquet", "in-view impression"): (10_848, 10_848, 0),
        ("history.parquet", "user row"): (44, 44, 0),
        ("history.parquet", "history row"): (8_303, 8_303, 0),
    }
    assert ds.manifest["source"]["files"] == ["behaviors.parquet", "history.parquet"]
    assert any("articles.parquet is absent" in n for n in ds.manifest["notes"])


def test_sample_dwell_of_a_click_is_next_read_time(ebnerd_sample: Dataset, sample: Path) -> None:
    raw = pl.read_parquet(sample / "behaviors.parquet").select(
        pl.col("impression_id").cast(pl.String).alias("request_id"),
        "next_read_time",
        pl.col("article_ids_clicked").list.len().alias("num_clicked"),
    )
    clicks = ebnerd_sample.read("impressions").filter("clicked").join(raw, on="request_id")
    single = clicks.filter(pl.col("num_clicked") == 1)
    assert single.height == 1_045
    assert single.get_column("dwell_s").equals(single.get_column("next_read_time"), check_names=False)
    assert single.get_column("dwell_s").null_count() == 28  # requests without a next_read_time
    # request 13398 has two clicks: next_read_time belongs to one of them, unknown which
    multi = clicks.filter(pl.col("num_clicked") > 1)
    assert multi.get_column("request_id").unique().to_list() == ["13398"]
    assert multi.get_column("dwell_s").is_null().all()
    assert ebnerd_sample.read("impressions").filter(~pl.col("clicked")).get_column("dwell_s").is_null().all()


def test_sample_users_and_history_rows(ebnerd_sample: Dataset) -> None:
    user = ebnerd_sample.read("users").filter(pl.col("user_id") == "12258").row(0, named=True)
    assert (user["device"], user["age_bucket"], user["gender"], user["country"]) == (
        "mobile",
        "40-49",
        "0",
        None,
    )
    history = ebnerd_sample.read("history").filter(pl.col("user_id") == "18518").sort("seq")
    first = history.row(0, named=True)
    assert (first["item_id"], first["dwell_s"]) == ("9615953", 13.0)
    assert first["ts"] == datetime(2023, 2, 2, 7, 20, 24, tzinfo=UTC)
    assert history.get_column("seq").to_list() == list(range(history.height))


def test_articles_file_becomes_items(sample: Path, tmp_path: Path) -> None:
    src = tmp_path / "ebnerd"
    shutil.copytree(sample, src)
    pl.DataFrame(
        {
            "article_id": [9652010, 9615953, 1],
            "title": ["Første", "Anden", "Tredje"],
            "published_time": [datetime(2023, 2, 26, 20, 0), datetime(2023, 2, 1, 8, 0), None],
            "category_str": ["nyheder", "sport", None],
            "subcategory": [[414, 433], [], None],
            "article_type": ["article_default", "article_default", "article_video"],
            "body": ["...", "...", "..."],
        },
        schema_overrides={"article_id": pl.Int32, "subcategory": pl.List(pl.Int16)},
    ).write_parquet(src / "articles.parquet")
    ds = run(src, tmp_path / "out")
    items = ds.read("items")
    described = items.filter(pl.col("content_type").is_not_null()).sort("item_id")
    assert described.select("item_id", "category", "subcategory", "title", "content_type").rows() == [
        ("1", None, None, "Tredje", "article_video"),
        ("9615953", "sport", None, "Anden", "article_default"),
        ("9652010", "nyheder", "414", "Første", "article_default"),
    ]
    assert described.get_column("published_ts")[2] == datetime(2023, 2, 26, 20, 0, tzinfo=UTC)
    assert ledger(ds)[("articles.parquet", "article row")] == (3, 3, 0)
    assert ds.manifest["source"]["files"] == ["behaviors.parquet", "history.parquet", "articles.parquet"]
    assert any(
        "articles.parquet: columns not in the canonical tables" in n and "body" in n
        for n in ds.manifest["notes"]
    )


# --- broken input ------------------------------------------------------------------------------


def behaviors_row(impression_id: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "impression_id": impression_id,
        "user_id": 7,
        "impression_time": T0,
        "article_ids_inview": [10, 11, 12],
        "article_ids_clicked": [11],
        "next_read_time": 30.0,
        "device_type": 2,
        "age": 40,
        "gender": 0,
        "read_time": 5.0,
    }
    return {**row, **changes}


def write_ebnerd(
    root: Path, behaviors: list[dict[str, Any]], history: list[dict[str, Any]] | None = None
) -> Path:
    root.mkdir()
    pl.DataFrame(behaviors, schema=BEHAVIORS_SCHEMA).write_parquet(root / "behaviors.parquet")
    if history is None:
        history = [
            {
                "user_id": 7,
                "impression_time_fixed": [datetime(2023, 2, 2, 7, 0), datetime(2023, 2, 2, 8, 0)],
                "article_id_fixed": [1, 2],
                "read_time_fixed": [13.0, None],
            }
        ]
    pl.DataFrame(history, schema=HISTORY_SCHEMA).write_parquet(root / "history.parquet")
    return root


BAD_BEHAVIORS = {
    # name: (changes to row 2, field, value, reason fragment, ledger changes)
    "NaN dwell": ({"next_read_time": float("nan")}, "next_read_time", "NaN", "dwell is NaN"),
    "negative dwell": ({"next_read_time": -5.0}, "next_read_time", "-5.0", "dwell is negative"),
    "null impression_time": ({"impression_time": None}, "impression_time", "", "required value is missing"),
    "impression_time in 1970": (
        {"impression_time": datetime(1970, 1, 1)},
        "impression_time",
        "1970-01-01 00:00:00.000000",
        "timestamp outside 1995-01-01..",
    ),
    "impression_time in 2999": (
        {"impression_time": datetime(2999, 1, 1)},
        "impression_time",
        "2999-01-01 00:00:00.000000",
        "timestamp outside 1995-01-01..",
    ),
    "nothing in view": ({"article_ids_inview": []}, "article_ids_inview", "[]", "no in-view articles"),
}


@pytest.mark.parametrize("batch_rows", [1, 1_000_000], ids=["row-batches", "one-batch"])
@pytest.mark.parametrize("case", BAD_BEHAVIORS.values(), ids=BAD_BEHAVIORS.keys())
def test_bad_behaviors_row_is_quarantined_whole(
    tmp_path: Path, case: tuple[dict[str, Any], str, str, str], batch_rows: int
) -> None:
    changes, field, value, reason = case
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1), behaviors_row(2, **changes), behaviors_row(3)])
    ds = run(src, tmp_path / "out", batch_rows=batch_rows)
    (rec,) = quarantine_records(ds)
    assert (rec["file"], rec["row"], rec["field"], rec["value"]) == ("behaviors.parquet", 2, field, value)
    assert reason in rec["reason"]
    books = ledger(ds)
    assert books[("behaviors.parquet", "behaviors row")] == (3, 2, 1)
    assert books[("behaviors.parquet", "in-view impression")] == (6, 6, 0)
    assert books[("behaviors.parquet", "clicked id")] == (2, 2, 0)
    assert ds.read("impressions").get_column("request_id").unique().sort().to_list() == ["1", "3"]

    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert str(info.value) == bad_row_message(rec)
    assert_no_output(tmp_path / "strict")


def test_clicked_id_not_in_view_is_quarantined_alone(tmp_path: Path) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1), behaviors_row(2, article_ids_clicked=[99])])
    ds = run(src, tmp_path / "out")
    (rec,) = quarantine_records(ds)
    assert (rec["row"], rec["field"], rec["value"]) == (2, "article_ids_clicked", "99")
    assert "clicked article is not in article_ids_inview" in rec["reason"]
    books = ledger(ds)
    assert books[("behaviors.parquet", "clicked id")] == (2, 1, 1)
    assert books[("behaviors.parquet", "in-view impression")] == (6, 6, 0)
    second = ds.read("impressions").filter(pl.col("request_id") == "2")
    assert second.height == 3 and not second.get_column("clicked").any()
    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert str(info.value) == bad_row_message(rec)
    assert_no_output(tmp_path / "strict")


def test_duplicate_impression_rows_are_quarantined_across_batches(tmp_path: Path) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1), behaviors_row(2), behaviors_row(1, user_id=8)])
    ds = run(src, tmp_path / "out", batch_rows=1)
    records = quarantine_records(ds)
    assert [(r["row"], r["field"], r["value"]) for r in records] == [
        (3, "request_id,item_id", "1,10"),
        (3, "request_id,item_id", "1,11"),
        (3, "request_id,item_id", "1,12"),
    ]
    books = ledger(ds)
    assert books[("behaviors.parquet", "in-view impression")] == (9, 6, 3)
    # the duplicate's click is lost with its impression row, and counted so
    assert books[("behaviors.parquet", "clicked id")] == (3, 2, 1)


def test_null_next_read_time_is_unknown_dwell(tmp_path: Path) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1, next_read_time=None)])
    ds = run(src, tmp_path / "out")
    assert quarantine_records(ds) == []
    clicked = ds.read("impressions").filter("clicked")
    assert clicked.get_column("item_id").to_list() == ["11"]
    assert clicked.get_column("dwell_s").to_list() == [None]


def test_history_lists_of_different_lengths(tmp_path: Path) -> None:
    good = {
        "user_id": 7,
        "impression_time_fixed": [T0, T0],
        "article_id_fixed": [1, 2],
        "read_time_fixed": [1.0, 2.0],
    }
    bad = {**good, "user_id": 8, "read_time_fixed": [1.0]}
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1)], [good, bad, good])
    ds = run(src, tmp_path / "out")
    records = quarantine_records(ds)
    assert [(r["file"], r["row"], r["field"], r["value"], r["reason"]) for r in records] == [
        (
            "history.parquet",
            2,
            "read_time_fixed",
            "1 items, article_id_fixed has 2",
            "list length differs from article_id_fixed",
        ),
        ("history.parquet", 3, "user_id", "7", "duplicate user row (the first one is kept)"),
    ]
    books = ledger(ds)
    assert books[("history.parquet", "user row")] == (3, 1, 2)
    assert books[("history.parquet", "history row")] == (2, 2, 0)
    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert str(info.value) == bad_row_message(records[0])
    assert_no_output(tmp_path / "strict")


def test_negative_history_dwell_is_quarantined(tmp_path: Path) -> None:
    row = {
        "user_id": 7,
        "impression_time_fixed": [T0, T0],
        "article_id_fixed": [1, 2],
        "read_time_fixed": [1.0, -3.0],
    }
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1)], [row])
    ds = run(src, tmp_path / "out")
    (rec,) = quarantine_records(ds)
    assert (rec["file"], rec["row"], rec["field"], rec["value"], rec["reason"]) == (
        "history.parquet",
        1,
        "dwell_s",
        "-3.0",
        "dwell is negative",
    )
    assert ledger(ds)[("history.parquet", "history row")] == (2, 1, 1)


@pytest.mark.parametrize("name", ["behaviors.parquet", "history.parquet"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1)])
    (src / name).unlink()
    with pytest.raises(SourceNotFoundError) as info:
        run(src, tmp_path / "out")
    assert str(info.value) == f"input file not found: {src / name}"
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize(
    ("name", "column"), [("behaviors.parquet", "article_ids_clicked"), ("history.parquet", "read_time_fixed")]
)
def test_missing_column_names_file_and_column(tmp_path: Path, name: str, column: str) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1)])
    pl.read_parquet(src / name).drop(column).write_parquet(src / name)
    with pytest.raises(DataError, match=rf"{name}: required column '{column}' is missing"):
        run(src, tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_empty_and_unreadable_files_fail_clearly(tmp_path: Path) -> None:
    src = write_ebnerd(tmp_path / "eb", [behaviors_row(1)])
    pl.DataFrame(schema=BEHAVIORS_SCHEMA).write_parquet(src / "behaviors.parquet")
    with pytest.raises(EmptySourceError, match=r"behaviors.parquet: file is empty"):
        run(src, tmp_path / "out")
    (src / "behaviors.parquet").write_text("impression_id,user_id\n1,2\n")
    with pytest.raises(DataError, match=r"behaviors.parquet: not a readable Parquet file"):
        run(src, tmp_path / "out")
    assert_no_output(tmp_path / "out")
