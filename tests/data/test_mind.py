"""The MIND adapter on the real sample, history de-duplication, and the test-split (unlabelled) form."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.mind import import_mind
from tests.conftest import shared_sample
from tests.data.conftest import ledger, quarantine_records

TIME = "11/12/2019 2:14:46 PM"
NEWS = "N1\tnews\tnewsworld\tTitle one\tAbstract\thttps://x/1\t[]\t[]\n"


def run(src: Path, out: Path, *, strict: bool = False, batch_rows: int = 1_000_000) -> Dataset:
    return import_source(import_mind, src, out, ImportOptions(strict=strict, batch_rows=batch_rows))


def write_mind(root: Path, behaviors: str, news: str = NEWS) -> Path:
    root.mkdir()
    (root / "behaviors.tsv").write_text(behaviors, encoding="utf-8")
    (root / "news.tsv").write_text(news, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def mind_sample(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return run(shared_sample("mind-small-sample"), tmp_path_factory.mktemp("mind") / "ds")


def _raw_sample() -> tuple[list[list[str]], list[list[str]]]:
    """behaviors and news lines of the sample split on tabs, read without the adapter."""
    root = shared_sample("mind-small-sample")
    behaviors = [line.split("\t") for line in (root / "behaviors.tsv").read_text().splitlines()]
    news = [line.split("\t") for line in (root / "news.tsv").read_text().splitlines()]
    return behaviors, news


def test_sample_counts_match_the_files(mind_sample: Dataset) -> None:
    ds = mind_sample
    imps = ds.read("impressions")
    assert imps.height == 189_359
    assert imps.get_column("request_id").n_unique() == 5_000
    assert imps.get_column("clicked").sum() == 7_542
    assert ds.rows("users") == 4_637
    assert ds.manifest["source"]["labelled"] is True
    assert ds.manifest["quarantine"]["count"] == 0
    assert quarantine_records(ds) == []


def test_sample_items_history_and_ledger_match_an_independent_count(mind_sample: Dataset) -> None:
    ds = mind_sample
    behaviors, news = _raw_sample()
    news_ids = {parts[0] for parts in news}
    longest: dict[str, list[str]] = {}
    referenced: set[str] = set()
    for _, user, _, history, impressions in behaviors:
        if len(history.split()) > len(longest.get(user, [])):
            longest[user] = history.split()
        referenced.update(history.split())
        referenced.update(token.rsplit("-", 1)[0] for token in impressions.split())
    num_history = sum(len(h) for h in longest.values())
    assert num_history == 138_932

    items = ds.read("items")
    described = items.filter(pl.col("category").is_not_null())
    assert described.height == len(news) == 2_000
    # ids seen only in events are added with unknown features by the dataset writer
    assert items.height == 2_000 + len(referenced - news_ids)
    assert ds.rows("history") == num_history
    assert ledger(ds) == {
        ("news.tsv", "line"): (2_000, 2_000, 0),
        ("behaviors.tsv", "line"): (5_000, 5_000, 0),
        ("behaviors.tsv", "impression token"): (189_359, 189_359, 0),
        ("behaviors.tsv", "history list"): (5_000, 5_000, 0),
        ("behaviors.tsv", "history item"): (num_history, num_history, 0),
    }


def test_sample_rows_and_time_span(mind_sample: Dataset) -> None:
    ds = mind_sample
    lo, hi = ds.manifest["tables"]["impressions"]["time_span"]
    assert datetime.fromisoformat(lo) >= datetime(2019, 11, 9, tzinfo=UTC)
    assert datetime.fromisoformat(hi) < datetime(2019, 11, 15, tzinfo=UTC)
    # line 1: 58376 U81994 11/12/2019 2:14:46 PM ... "N43266-0 N58363-0 N6975-1 ..."
    first = ds.read("impressions").filter(pl.col("request_id") == "58376").sort("position")
    assert first.get_column("item_id").head(3).to_list() == ["N43266", "N58363", "N6975"]
    assert first.get_column("clicked").head(3).to_list() == [False, False, True]
    assert first.get_column("ts")[0] == datetime(2019, 11, 12, 14, 14, 46, tzinfo=UTC)
    assert first.get_column("user_id").unique().to_list() == ["U81994"]
    assert first.get_column("dwell_s").is_null().all()
    history = ds.read("history").filter(pl.col("user_id") == "U81994").sort("seq")
    assert history.get_column("item_id").head(3).to_list() == ["N138", "N64727", "N138"]
    assert history.get_column("seq").to_list() == list(range(history.height))
    item = ds.read("items").filter(pl.col("item_id") == "N34700").row(0, named=True)
    assert (item["category"], item["subcategory"]) == ("news", "newspolitics")
    assert item["title"].startswith("New Florida Majority celebrates")


def test_history_keeps_the_longest_list_and_quarantines_a_conflict(tmp_path: Path) -> None:
    src = write_mind(
        tmp_path / "mind",
        f"1\tU1\t{TIME}\tN5 N6\tN1-1\n"
        f"2\tU1\t11/12/2019 3:00:00 PM\tN5 N6 N7\tN1-0\n"
        f"3\tU1\t11/12/2019 4:00:00 PM\tN5\tN1-0\n"  # an older snapshot: a prefix, merged
        f"4\tU1\t11/12/2019 5:00:00 PM\tN9 N8\tN1-0\n"  # conflicts with the kept list
        f"5\tU2\t{TIME}\t\tN1-0\n",  # no history at all
    )
    ds = run(src, tmp_path / "out", batch_rows=2)  # the lists meet across batches
    history = ds.read("history").sort("user_id", "seq")
    assert history.select("user_id", "item_id").rows() == [("U1", "N5"), ("U1", "N6"), ("U1", "N7")]
    (rec,) = quarantine_records(ds)
    assert (rec["file"], rec["row"], rec["field"], rec["value"]) == ("behaviors.tsv", 4, "History", "N9 N8")
    assert "differs from the history kept for user U1 (line 2)" in rec["reason"]
    assert ledger(ds)[("behaviors.tsv", "history list")] == (5, 4, 1)
    assert ledger(ds)[("behaviors.tsv", "impression token")] == (5, 5, 0)
    assert ds.rows("users") == 2


def test_history_tie_goes_to_the_latest_time(tmp_path: Path) -> None:
    src = write_mind(
        tmp_path / "mind",
        f"1\tU1\t11/12/2019 5:00:00 PM\tN8 N9\tN1-1\n2\tU1\t{TIME}\tN5 N6\tN1-0\n",
    )
    ds = run(src, tmp_path / "out")
    assert ds.read("history").sort("seq").get_column("item_id").to_list() == ["N8", "N9"]
    (rec,) = quarantine_records(ds)
    assert (rec["row"], rec["value"]) == (2, "N5 N6")


def test_test_split_without_labels(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind", f"1\tU1\t{TIME}\tN5\tN1 N2 N3\n2\tU2\t{TIME}\t\tN2 N4\n")
    ds = run(src, tmp_path / "out")
    imps = ds.read("impressions")
    assert imps.height == 5
    assert not imps.get_column("clicked").any()
    assert ds.manifest["source"]["labelled"] is False
    assert any("unlabelled impression tokens (MIND test split)" in n for n in ds.manifest["notes"])
    assert quarantine_records(ds) == []


@pytest.mark.parametrize(
    ("impressions", "token", "reason"),
    [
        ("N1-1 N2 N3-0", "N2", "unlabelled token in a labelled file"),
        ("N1 N2-1 N3", "N2-1", "labelled token in an unlabelled (test-split) file"),
    ],
)
def test_mixing_labelled_and_unlabelled_tokens_is_rejected(
    tmp_path: Path, impressions: str, token: str, reason: str
) -> None:
    src = write_mind(tmp_path / "mind", f"1\tU1\t{TIME}\t\t{impressions}\n")
    ds = run(src, tmp_path / "out")
    (rec,) = quarantine_records(ds)
    assert (rec["row"], rec["field"], rec["value"], rec["reason"]) == (1, "Impressions", token, reason)
    assert ds.read("impressions").sort("position").get_column("position").to_list() == [0, 2]
    assert ledger(ds)[("behaviors.tsv", "impression token")] == (3, 2, 1)
