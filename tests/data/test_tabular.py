"""The generic Parquet/CSV adapter: good logs, click-only logs, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.errors import BadRowError, DataError, EmptySourceError, SourceNotFoundError
from tests.conftest import tiny_impressions

HEADER = "request_id,user_id,item_id,ts,position,clicked,dwell_s"


def run(src: Path, out: Path, strict: bool = False, batch_rows: int = 1_000_000) -> Dataset:
    return import_source(import_tabular, src, out, ImportOptions(strict=strict, batch_rows=batch_rows))


def quarantine_records(ds: Dataset) -> list[dict[str, object]]:
    path = ds.path / "quarantine.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def reconciliation(ds: Dataset, file: str) -> dict[str, object]:
    (rec,) = [r for r in ds.manifest["reconciliation"] if r["file"] == file]
    assert isinstance(rec, dict)
    assert rec["read"] == rec["kept"] + rec["quarantined"]
    return rec


def test_parquet_directory_round_trips_and_completes_the_catalog(tmp_path: Path) -> None:
    src = tmp_path / "log"
    src.mkdir()
    imps = tiny_impressions()
    imps.write_parquet(src / "impressions.parquet")
    pl.DataFrame({"item_id": ["i0", "i1"], "category": ["news", "sports"]}).write_parquet(
        src / "items.parquet"
    )
    ds = run(src, tmp_path / "out")
    got = ds.read("impressions").sort("request_id", "position")
    assert got.height == imps.height
    assert got.get_column("clicked").sum() == 6
    assert str(got.schema["ts"]) == "Datetime(time_unit='us', time_zone='UTC')"
    items = ds.read("items")
    # i0..i7 are referenced; only i0 and i1 were described, the rest come with unknown features
    assert sorted(items.get_column("item_id").to_list()) == [f"i{k}" for k in range(8)]
    assert items.filter(pl.col("item_id") == "i1").get_column("category").item() == "sports"
    assert any("6 items appear only in events" in n for n in ds.manifest["notes"])
    assert ds.manifest["click_only"] is False
    assert reconciliation(ds, "impressions.parquet") == {
        "file": "impressions.parquet",
        "unit": "row",
        "read": 18,
        "kept": 18,
        "quarantined": 0,
    }


def test_click_only_log_without_request_or_clicked_columns(tmp_path: Path) -> None:
    src = tmp_path / "clicks.csv"
    src.write_text(
        "user_id,item_id,ts\nu1,a,2024-01-01T10:00:00\nu1,b,2024-01-01T10:05:00\nu2,a,2024-01-02T08:00:00\n"
    )
    ds = run(src, tmp_path / "out")
    assert ds.click_only
    imps = ds.read("impressions")
    assert imps.get_column("clicked").all()
    assert imps.get_column("request_id").to_list() == ["clicks.csv:2", "clicks.csv:3", "clicks.csv:4"]
    assert not imps.get_column("shared").any()


def test_csv_sharded_directory(tmp_path: Path) -> None:
    src = tmp_path / "log"
    (src / "impressions").mkdir(parents=True)
    (src / "impressions" / "a.csv").write_text(f"{HEADER}\nr1,u1,a,2024-01-01T00:00:00Z,0,1,12.5\n")
    (src / "impressions" / "b.csv").write_text(f"{HEADER}\nr2,u1,b,2024-01-01T01:00:00Z,0,0,\n")
    ds = run(src, tmp_path / "out")
    assert ds.rows("impressions") == 2
    assert reconciliation(ds, "impressions/a.csv")["kept"] == 1
    assert reconciliation(ds, "impressions/b.csv")["kept"] == 1


BAD_CASES = [
    # (csv body line, field, value fragment, reason fragment)
    ("r1,u1,a,2024-01-01T00:00:00,0,1", "(line)", "r1,u1,a", "has 6 columns, the header has 7"),
    ("r1,u1,a,yesterday,0,1,3", "ts", "yesterday", "cannot be read as a timestamp"),
    ("r1,u1,a,1970-01-01T00:00:00,0,1,3", "ts", "1970-01-01", "timestamp outside"),
    ("r1,u1,a,2999-01-01T00:00:00,0,1,3", "ts", "2999-01-01", "timestamp outside"),
    ("r1,u1,a,2024-01-01T00:00:00,0,1,nan", "dwell_s", "nan", "dwell is NaN"),
    ("r1,u1,a,2024-01-01T00:00:00,0,1,-4", "dwell_s", "-4", "dwell is negative"),
    ("r1,u1,a,2024-01-01T00:00:00,0,maybe,3", "clicked", "maybe", "cannot be read as a boolean"),
    ("r1,,a,2024-01-01T00:00:00,0,1,3", "user_id", "", "required value is missing"),
    ("r1,u1,a,2024-01-01T00:00:00,-2,1,3", "position", "-2", "must not be negative"),
]


@pytest.mark.parametrize(("line", "field", "value", "reason"), BAD_CASES)
def test_bad_csv_row_is_quarantined_with_its_location(
    tmp_path: Path, line: str, field: str, value: str, reason: str
) -> None:
    src = tmp_path / "impressions.csv"
    good = "r0,u1,z,2024-01-01T00:00:00,0,1,3"
    src.write_text(f"{HEADER}\n{good}\n{line}\n")
    ds = run(src, tmp_path / "out")
    (rec,) = quarantine_records(ds)
    assert rec["file"] == "impressions.csv"
    assert rec["row"] == 3
    assert rec["field"] == field
    assert value in str(rec["value"])
    assert reason in str(rec["reason"])
    assert reconciliation(ds, "impressions.csv") == {
        "file": "impressions.csv",
        "unit": "row",
        "read": 2,
        "kept": 1,
        "quarantined": 1,
    }
    assert ds.manifest["quarantine"]["count"] == 1

    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert f"impressions.csv: row 3: field {field!r}" in str(info.value)
    assert reason in str(info.value)
    assert not (tmp_path / "strict").exists()
    assert not list(tmp_path.glob("strict.tmp-*"))


def test_duplicate_rows_keep_the_first(tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    row = "r1,u1,a,2024-01-01T00:00:00,0,1,3"
    src.write_text(f"{HEADER}\n{row}\n{row}\n")
    ds = run(src, tmp_path / "out")
    (rec,) = quarantine_records(ds)
    assert (rec["row"], rec["field"], rec["value"]) == (3, "request_id,item_id", "r1,a")
    assert "duplicate impressions row" in str(rec["reason"])
    assert ds.rows("impressions") == 1


def test_duplicates_are_caught_across_batches(tmp_path: Path) -> None:
    src = tmp_path / "impressions.parquet"
    imps = tiny_impressions(num_requests=3, slate=2)
    pl.concat([imps, imps.head(1)]).write_parquet(src)
    ds = run(src, tmp_path / "out", batch_rows=2)
    (rec,) = quarantine_records(ds)
    assert rec["row"] == 7
    assert reconciliation(ds, "impressions.parquet")["quarantined"] == 1


def test_non_utf8_and_huge_lines(tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    with src.open("wb") as fh:
        fh.write(f"{HEADER}\n".encode())
        fh.write(b"r1,u1,caf\xe9,2024-01-01T00:00:00,0,1,3\n")
        fh.write(b"r2,u1," + b"x" * (10 * 1024 * 1024) + b",2024-01-01T00:00:00,0,1,3\n")
        fh.write(b"r3,u1,ok,2024-01-01T00:00:00,0,1,3\n")
    ds = run(src, tmp_path / "out")
    recs = quarantine_records(ds)
    assert [r["row"] for r in recs] == [2, 3]
    assert "not valid UTF-8 (byte 0xe9" in str(recs[0]["reason"])
    assert "10,485,7" in str(recs[1]["reason"]) and "over the limit" in str(recs[1]["reason"])
    assert len(str(recs[1]["value"])) < 1000  # the quarantine never copies a 10 MB value
    assert reconciliation(ds, "impressions.csv")["kept"] == 1


def test_empty_and_missing_files_fail_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "impressions.csv"
    empty.write_bytes(b"")
    with pytest.raises(EmptySourceError, match=r"impressions.csv: file is empty"):
        run(empty, tmp_path / "out")
    with pytest.raises(SourceNotFoundError, match=r"input not found: .*nowhere"):
        run(tmp_path / "nowhere", tmp_path / "out2")
    (tmp_path / "dir").mkdir()
    with pytest.raises(SourceNotFoundError, match=r"impressions table"):
        run(tmp_path / "dir", tmp_path / "out3")


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    src.write_text("request_id,item_id,ts\nr1,a,2024-01-01T00:00:00\n")
    with pytest.raises(DataError, match=r"impressions.csv: required column\(s\) user_id missing"):
        run(src, tmp_path / "out")
