"""Broken MIND input: every bad line or token is quarantined where it is, or fails --strict.

Each case writes a small behaviors.tsv whose line 2 (or a token on it) is bad, between good
lines 1 and 3, and checks the exact quarantine record, the ledger, and that --strict raises the
same message and leaves no output behind.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.mind import import_mind
from feedrank.errors import BadRowError, EmptySourceError, SourceNotFoundError
from tests.data.conftest import assert_no_output, bad_row_message, ledger, quarantine_records

TIME = "11/12/2019 2:14:46 PM"
GOOD_1 = f"1\tU1\t{TIME}\tN7 N8\tN1-1 N2-0\n".encode()
GOOD_3 = f"3\tU3\t{TIME}\tN7\tN2-1 N3-0\n".encode()
NEWS = b"N1\tnews\tnewsworld\tTitle one\tAbstract\thttps://x/1\t[]\t[]\n"


def run(src: Path, out: Path, *, strict: bool = False, batch_rows: int = 1_000_000) -> Dataset:
    return import_source(import_mind, src, out, ImportOptions(strict=strict, batch_rows=batch_rows))


def write_mind(root: Path, behaviors: bytes, news: bytes = NEWS) -> Path:
    root.mkdir()
    (root / "behaviors.tsv").write_bytes(behaviors)
    (root / "news.tsv").write_bytes(news)
    return root


@dataclass(frozen=True)
class Case:
    line: bytes  # line 2 of behaviors.tsv
    field: str
    value: str
    reason: str  # a fragment of the reason
    lines: tuple[int, int, int]  # (read, kept, quarantined) lines of behaviors.tsv
    tokens: tuple[int, int, int]  # (read, kept, quarantined) impression tokens


TOKENS_OF_GOOD = 4  # two tokens on each of lines 1 and 3
LINE_CASES = {
    "wrong column count": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN1-1\n",
        "(line)",
        f"2\tU2\t{TIME}\tN1-1",
        "expected 5 tab-separated columns, found 4",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "unparseable timestamp": Case(
        b"2\tU2\t13/45/2019 2:14:46 PM\tN7\tN1-1\n",
        "Time",
        "13/45/2019 2:14:46 PM",
        "cannot be read as a timestamp like '11/12/2019 2:14:46 PM'",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "timestamp in 1970": Case(
        b"2\tU2\t1/1/1970 12:00:00 AM\tN7\tN1-1\n",
        "Time",
        "1/1/1970 12:00:00 AM",
        "timestamp outside 1995-01-01..",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "timestamp in 2999": Case(
        b"2\tU2\t6/1/2999 12:00:00 PM\tN7\tN1-1\n",
        "Time",
        "6/1/2999 12:00:00 PM",
        "timestamp outside 1995-01-01..",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "missing user id": Case(
        b"2\t \t" + TIME.encode() + b"\tN7\tN1-1\n",
        "UserID",
        " ",
        "required value is missing",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "no impression tokens": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN7\t \n",
        "Impressions",
        " ",
        "no impression tokens",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "non-UTF-8 bytes": Case(
        b"2\tU\xff2\t" + TIME.encode() + b"\tN7\tN1-1\n",
        "(line)",
        f"2\tU\ufffd2\t{TIME}\tN7\tN1-1",
        "not valid UTF-8 (byte 0xff at offset 3)",
        (3, 2, 1),
        (4, 4, 0),
    ),
    "unknown label N1-7": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN7\tN4-1 N1-7 N5-0\n",
        "Impressions",
        "N1-7",
        "not a news id with label",
        (3, 3, 0),
        (7, 6, 1),
    ),
    "label without id": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN7\tN4-1 -1\n",
        "Impressions",
        "-1",
        "not a news id with label",
        (3, 3, 0),
        (6, 5, 1),
    ),
    "id without label": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN7\tN1- N4-1\n",
        "Impressions",
        "N1-",
        "not a news id with label",
        (3, 3, 0),
        (6, 5, 1),
    ),
    "item twice in one impression": Case(
        b"2\tU2\t" + TIME.encode() + b"\tN7\tN4-1 N4-0\n",
        "request_id,item_id",
        "2,N4",
        "duplicate impressions row (same request_id, item_id)",
        (3, 3, 0),
        (6, 5, 1),
    ),
}


@pytest.mark.parametrize("batch_rows", [1, 1_000_000], ids=["line-batches", "one-batch"])
@pytest.mark.parametrize("case", LINE_CASES.values(), ids=LINE_CASES.keys())
def test_bad_line_is_quarantined_with_its_location(tmp_path: Path, case: Case, batch_rows: int) -> None:
    src = write_mind(tmp_path / "mind", GOOD_1 + case.line + GOOD_3)
    ds = run(src, tmp_path / "out", batch_rows=batch_rows)
    (rec,) = quarantine_records(ds)
    assert (rec["file"], rec["row"], rec["field"], rec["value"]) == (
        "behaviors.tsv",
        2,
        case.field,
        case.value,
    )
    assert case.reason in rec["reason"]
    assert ds.manifest["quarantine"] == {
        "count": 1,
        "by_reason": {rec["reason"]: 1},
        "file": "quarantine.jsonl",
    }
    books = ledger(ds)
    assert books[("behaviors.tsv", "line")] == case.lines
    assert books[("behaviors.tsv", "impression token")] == case.tokens
    assert ds.rows("impressions") == case.tokens[1]

    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert str(info.value) == bad_row_message(rec)
    assert_no_output(tmp_path / "strict")


def test_duplicate_impression_line_in_a_later_batch(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind", GOOD_1 + GOOD_3 + GOOD_1.replace(b"U1", b"U9"))
    ds = run(src, tmp_path / "out", batch_rows=1)  # one line per batch: caught across batches
    records = quarantine_records(ds)
    assert [(r["row"], r["field"], r["value"]) for r in records] == [
        (3, "request_id,item_id", "1,N1"),
        (3, "request_id,item_id", "1,N2"),
    ]
    assert all("duplicate impressions row" in r["reason"] for r in records)
    assert ledger(ds)[("behaviors.tsv", "impression token")] == (6, 4, 2)
    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True, batch_rows=1)
    assert str(info.value) == bad_row_message(records[0])
    assert_no_output(tmp_path / "strict")


def test_bad_news_line_is_quarantined(tmp_path: Path) -> None:
    news = NEWS + b"N2\tsports\n" + NEWS
    src = write_mind(tmp_path / "mind", GOOD_1 + GOOD_3, news)
    ds = run(src, tmp_path / "out")
    records = quarantine_records(ds)
    assert [(r["file"], r["row"], r["field"], r["value"]) for r in records] == [
        ("news.tsv", 2, "(line)", "N2\tsports"),
        ("news.tsv", 3, "item_id", "N1"),
    ]
    assert "expected 8 tab-separated columns, found 2" in records[0]["reason"]
    assert "duplicate items row" in records[1]["reason"]
    assert ledger(ds)[("news.tsv", "line")] == (3, 1, 2)
    assert ds.read("items").filter(ds.read("items")["category"].is_not_null()).height == 1


def test_ten_megabyte_line_is_capped_and_quarantined(tmp_path: Path) -> None:
    huge = b"2\tU2\t" + TIME.encode() + b"\t" + b"N7 " * (10 * 1024 * 1024 // 3) + b"\tN1-1\n"
    src = write_mind(tmp_path / "mind", GOOD_1 + huge + GOOD_3)
    del huge
    tracemalloc.start()
    try:
        ds = run(src, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python never holds the 10 MB line: reads stop at the 1 MiB cap (polars memory is not traced)
    assert peak < 8 * 1024 * 1024
    (rec,) = quarantine_records(ds)
    assert (rec["row"], rec["field"]) == (2, "(line)")
    assert rec["reason"].startswith("line is 10,485,7") and "over the limit of 1,048,576" in rec["reason"]
    assert rec["value"].startswith("2\tU2\t") and len(rec["value"]) <= 80
    assert ledger(ds)[("behaviors.tsv", "line")] == (3, 2, 1)
    with pytest.raises(BadRowError) as info:
        run(src, tmp_path / "strict", strict=True)
    assert str(info.value) == bad_row_message(rec)
    assert_no_output(tmp_path / "strict")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("name", ["behaviors.tsv", "news.tsv"])
def test_empty_file_fails_clearly(tmp_path: Path, name: str, strict: bool) -> None:
    src = write_mind(tmp_path / "mind", GOOD_1)
    (src / name).write_bytes(b"")
    with pytest.raises(EmptySourceError, match=rf"{name}: file is empty \(0 rows\)"):
        run(src, tmp_path / "out", strict=strict)
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("name", ["behaviors.tsv", "news.tsv"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    src = write_mind(tmp_path / "mind", GOOD_1)
    (src / name).unlink()
    with pytest.raises(SourceNotFoundError) as info:
        run(src, tmp_path / "out")
    assert info.value.path == src / name
    assert str(info.value) == f"input file not found: {src / name}"
    assert_no_output(tmp_path / "out")


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"MIND directory .*not found: .*nowhere"):
        run(tmp_path / "nowhere", tmp_path / "out")
    assert_no_output(tmp_path / "out")
