"""Import against hostile input: every ISO 8601 spelling kept, every bad row quarantined with its
file, row, field, value and reason, counts reconciled, and --strict naming the first bad row."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.errors import BadRowError

HEADER = "request_id,user_id,item_id,ts,position,clicked,dwell_s,propensity,survey"

# Spellings of 2024-03-01 08:00:00 UTC (or a moment near it): all valid ISO 8601, all kept.
GOOD_TIMES = [
    "2024-03-01T08:00:00",
    "2024-03-01T08:00:00Z",
    "2024-03-01T10:00:00+02:00",
    "2024-03-01T03:00:00-0500",
    "2024-03-01T08:00:00.123Z",
    "2024-03-01T08:00:00.123456789+00:00",
    "2024-03-01 08:00:00",
    "2024-03-01",
    "20240301T080000Z",
]

# (row text after request_id, field, value shown, reason fragment)
BAD_KINDS = [
    ("u1,i1,yesterday,0,1,3,,", "ts", "yesterday", "cannot be read as a timestamp"),
    ("u1,i1,1970-01-01T00:00:00Z,0,1,3,,", "ts", "1970-01-01", "timestamp outside"),
    ("u1,i1,2024-02-30T00:00:00,0,1,3,,", "ts", "2024-02-30", "cannot be read as a timestamp"),
    (",i1,2024-03-01T08:00:00,0,1,3,,", "user_id", "", "required value is missing"),
    ("u1,i1,2024-03-01T08:00:00,0,maybe,3,,", "clicked", "maybe", "cannot be read as a boolean"),
    ("u1,i1,2024-03-01T08:00:00,0,2,3,,", "clicked", "2", "cannot be read as a boolean"),
    ("u1,i1,2024-03-01T08:00:00,0,-1,3,,", "clicked", "-1", "cannot be read as a boolean"),
    ("u1,i1,2024-03-01T08:00:00,0,1,inf,,", "dwell_s", "inf", "dwell is not finite"),
    ("u1,i1,2024-03-01T08:00:00,0,1,1e39,,", "dwell_s", "1e39", "dwell is not finite"),
    ("u1,i1,2024-03-01T08:00:00,0,1,nan,,", "dwell_s", "nan", "dwell is NaN"),
    ("u1,i1,2024-03-01T08:00:00,0,1,-3,,", "dwell_s", "-3", "dwell is negative"),
    ("u1,i1,2024-03-01T08:00:00,-1,1,3,,", "position", "-1", "must not be negative"),
    ("u1,i1,2024-03-01T08:00:00,x,1,3,,", "position", "x", "cannot be read as an integer"),
    ("u1,i1,2024-03-01T08:00:00,0,1,3,0,", "propensity", "0", "propensity must be in (0, 1]"),
    ("u1,i1,2024-03-01T08:00:00,0,1,3,1.5,", "propensity", "1.5", "propensity must be in (0, 1]"),
    ("u1,i1,2024-03-01T08:00:00,0,1,3,,inf", "survey", "inf", "survey is not finite"),
    ("u1,i1,2024-03-01T08:00:00,0,1", "(line)", "u1,i1", "columns, the header has"),
]


def run(src: Path, out: Path, strict: bool = False, batch_rows: int = 1_000_000) -> Dataset:
    return import_source(import_tabular, src, out, ImportOptions(strict=strict, batch_rows=batch_rows))


def records(ds: Dataset) -> list[dict[str, object]]:
    path = ds.path / "quarantine.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def hostile_csv(path: Path, good_rows: int, seed: int) -> tuple[set[str], dict[int, tuple[str, str, str]]]:
    """A BOM, then good rows in every time spelling mixed at random with every kind of bad row.

    Returns the good rows' request ids and {line number: (field, value, reason)} of the bad ones."""
    rng = random.Random(seed)
    kinds = [("bad", k) for k in BAD_KINDS] * 6 + [("good", None)] * good_rows
    rng.shuffle(kinds)
    lines = ["\ufeff" + HEADER]
    good: set[str] = set()
    bad: dict[int, tuple[str, str, str]] = {}
    for n, (_, kind) in enumerate(kinds):
        line_number = len(lines) + 1
        if kind is None:
            request = f"g{n}"
            when = GOOD_TIMES[n % len(GOOD_TIMES)]
            lines.append(f"{request},u{n % 13},i{n % 17},{when},{n % 10},{n % 2},{n % 7}.5,0.25,4")
            good.add(request)
        else:
            text, field, value, reason = kind
            lines.append(f"b{n},{text}")
            bad[line_number] = (field, value, reason)
    # a duplicate of an earlier good row, and a line that is not UTF-8
    first_good = next(i for i, line in enumerate(lines) if line.startswith("g"))
    lines.append(lines[first_good])
    bad[len(lines)] = ("request_id,item_id", lines[first_good].split(",")[0], "duplicate impressions row")
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n" + b"b-x,u1,caf\xe9,2024-03-01,0,1,3,,\n")
    bad[len(lines) + 1] = ("(line)", "caf", "not valid UTF-8")
    return good, bad


@pytest.mark.parametrize("batch_rows", [1_000_000, 37])
def test_the_hostile_corpus_keeps_every_good_row_and_quarantines_every_bad_one(
    tmp_path: Path, batch_rows: int
) -> None:
    src = tmp_path / "impressions.csv"
    good, bad = hostile_csv(src, good_rows=900, seed=5)
    ds = run(src, tmp_path / "out", batch_rows=batch_rows)
    kept = ds.read("impressions")
    assert set(kept.get_column("request_id").to_list()) == good  # none lost, none made up (BOM)
    assert kept.height == len(good)
    quarantined = records(ds)
    assert {int(str(r["row"])) for r in quarantined} == set(bad)
    for record in quarantined:
        assert set(record) == {"file", "row", "field", "value", "reason"}
        field, value, reason = bad[int(str(record["row"]))]
        assert record["file"] == "impressions.csv"
        assert record["field"] == field, record
        assert value in str(record["value"]), record
        assert reason in str(record["reason"]), record
    (rec,) = ds.manifest["reconciliation"]
    assert rec == {
        "file": "impressions.csv",
        "unit": "row",
        "read": len(good) + len(bad),
        "kept": len(good),
        "quarantined": len(bad),
    }


def test_every_iso_spelling_in_one_file_is_the_same_instant(tmp_path: Path) -> None:
    """The first value's format used to decide for the whole column: half of a file was lost."""
    src = tmp_path / "impressions.csv"
    same_instant = [*GOOD_TIMES[:4], "2024-03-01T08:00:00.000000Z"]
    rows = [f"r{n},u1,i{n},{when},0,1,3,," for n, when in enumerate(same_instant)]
    src.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    ds = run(src, tmp_path / "out")
    assert records(ds) == []
    ts = ds.read("impressions").get_column("ts")
    assert ts.n_unique() == 1 and str(ts[0]) == "2024-03-01 08:00:00+00:00"


def test_a_bom_does_not_hide_the_first_column(tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    rows = "r1,u1,i1,2024-03-01,0,1,3,,\nr1,u1,i2,2024-03-01,1,0,,,\n"
    src.write_bytes(("\ufeff" + HEADER + "\n" + rows).encode())
    ds = run(src, tmp_path / "out")
    assert ds.read("impressions").get_column("request_id").to_list() == ["r1", "r1"]
    assert not any("not in the canonical" in n for n in ds.manifest["notes"])


def test_parquet_labels_other_than_0_and_1_are_quarantined(tmp_path: Path) -> None:
    src = tmp_path / "impressions.parquet"
    labels = [0, 1, 2, -1, 7, 1]
    pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(6)],
            "user_id": ["u1"] * 6,
            "item_id": ["i1"] * 6,
            "ts": ["2024-03-01T08:00:00Z"] * 6,
            "clicked": pl.Series(labels, dtype=pl.Int64),
            "dwell_s": [1.0, 2.0, 3.0, 4.0, float("inf"), 1e39],
        }
    ).write_parquet(src)
    ds = run(src, tmp_path / "out")
    assert ds.read("impressions").get_column("request_id").to_list() == ["r0", "r1"]
    got = {(r["row"], r["field"], r["value"]) for r in records(ds)}
    assert got == {(3, "clicked", "2"), (4, "clicked", "-1"), (5, "clicked", "7"), (6, "dwell_s", "1e+39")}


@pytest.mark.parametrize("batch_rows", [1_000_000, 2])
def test_strict_names_the_first_bad_row_whatever_kind(tmp_path: Path, batch_rows: int) -> None:
    src = tmp_path / "impressions.csv"
    lines = [
        HEADER,
        "r1,u1,i1,2024-03-01,0,1,3,,",
        "r2,u1,i1,2024-03-01,0,1,3,,",
        "r3,u1,i1,not-a-time,0,1,3,,",  # line 4: the first bad row (a value)
        "r4,u1,i1,2024-03-01,0,1",  # line 5: a bad line (column count), found while reading
        "r5,u1,i1,2024-03-01,0,7,3,,",
    ]
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True, batch_rows=batch_rows)
    assert info.value.row == 4 and info.value.field == "ts"
