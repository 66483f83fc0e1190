"""Time-based train / valid / test splits that no future event can cross.

Each request goes wholly to one part, by its *latest* timestamp: train holds requests that end
before the valid boundary, valid those that end before the test boundary, test the rest. A request
is one slate in an impression log but may be a whole session in a click-only log (hours, even
days): a session that spans a boundary goes to the later part, so no event at or after a boundary
is ever in an earlier part, whatever the ids say. Boundaries are given as times, or as fractions
of requests (quantiles of request start time). Each part is a canonical dataset
whose items and users are those known by the part's end: referenced by the pre-window history or
by impressions up to that part, or published before the part ends. The pre-window history is the
same in every part. Items and users that nothing dates or references go to the last part only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from feedrank.data.dataset import Dataset, DatasetWriter
from feedrank.errors import ConfigError, DatasetError

PARTS = ("train", "valid", "test")
SPLIT_MANIFEST = "split.json"


@dataclass(frozen=True)
class SplitSpec:
    """Where to cut. Explicit times win over fractions; fractions count requests, not rows."""

    valid_frac: float = 0.1
    test_frac: float = 0.1
    valid_start: datetime | None = None
    test_start: datetime | None = None

    def check(self) -> None:
        if not (0 <= self.valid_frac < 1 and 0 < self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            raise ConfigError(
                f"valid_frac={self.valid_frac} and test_frac={self.test_frac} must be fractions "
                "with test_frac > 0 and valid_frac + test_frac < 1"
            )
        if self.valid_start and self.test_start and self.valid_start > self.test_start:
            raise ConfigError(f"valid_start {self.valid_start} is after test_start {self.test_start}")


def request_times(ds: Dataset) -> pl.DataFrame:
    """(request_id, ts, last_ts): each request's earliest and latest timestamps."""
    return (
        ds.scan("impressions")
        .group_by("request_id")
        .agg(pl.col("ts").min(), pl.col("ts").max().alias("last_ts"))
        .collect()
    )


def boundaries(requests: pl.DataFrame, spec: SplitSpec) -> tuple[datetime, datetime]:
    """The valid and test start times (a request belongs to the first part whose start it precedes)."""
    spec.check()
    if requests.height == 0:
        raise DatasetError("cannot split a dataset with no impressions")
    ts = requests.get_column("ts")
    valid_start = spec.valid_start or ts.quantile(1 - spec.valid_frac - spec.test_frac, "higher")
    test_start = spec.test_start or ts.quantile(1 - spec.test_frac, "higher")
    if not isinstance(valid_start, datetime) or not isinstance(test_start, datetime):
        raise DatasetError("could not compute split boundaries from request times")
    if spec.valid_start is None and spec.test_start is not None:
        valid_start = min(valid_start, test_start)
    return _as_utc(valid_start), _as_utc(test_start)


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def split_dataset(
    ds: Dataset, out_dir: Path, spec: SplitSpec = SplitSpec(), *, overwrite: bool = False
) -> Path:
    """Write OUT/{train,valid,test} and OUT/split.json; returns OUT."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise DatasetError(f"output directory already exists: {out_dir} (use --overwrite)")
    requests = request_times(ds)
    valid_start, test_start = boundaries(requests, spec)
    part_of = requests.select(
        "request_id",
        pl.when(pl.col("last_ts") < valid_start)
        .then(pl.lit("train"))
        .when(pl.col("last_ts") < test_start)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("test"))
        .alias("part"),
    )
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-split")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        summary = _write_parts(ds, tmp, part_of, valid_start, test_start)
        summary["requests_spanning"] = {
            name: requests.filter((pl.col("ts") < cut) & (pl.col("last_ts") >= cut)).height
            for name, cut in (("valid_start", valid_start), ("test_start", test_start))
        }
        (tmp / SPLIT_MANIFEST).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_parts(
    ds: Dataset, tmp: Path, part_of: pl.DataFrame, valid_start: datetime, test_start: datetime
) -> dict[str, Any]:
    ends: dict[str, datetime | None] = {"train": valid_start, "valid": test_start, "test": None}
    history = ds.read("history")
    items, users = ds.read("items"), ds.read("users")
    known_items = set(history.get_column("item_id").unique().to_list())
    known_users = set(history.get_column("user_id").unique().to_list())
    counts: dict[str, int] = {}
    for part in PARTS:
        writer = DatasetWriter(tmp / part)
        part_requests = part_of.filter(pl.col("part") == part).select("request_id")
        for shard in sorted((ds.path / "impressions").glob("*.parquet")):
            rows = pl.read_parquet(shard).join(part_requests, on="request_id", how="semi")
            known_items.update(rows.get_column("item_id").unique().to_list())
            known_users.update(rows.get_column("user_id").unique().to_list())
            writer.write("impressions", rows)
        end = ends[part]
        last = end is None
        writer.write("items", _known(items, "item_id", known_items, "published_ts", end, last))
        writer.write("users", _known(users, "user_id", known_users, None, end, last))
        writer.write("history", history)
        writer.finish(
            source={"format": "split", "parent": str(ds.path.resolve()), "part": part},
            extra={
                "click_only": ds.click_only,
                "split": {"valid_start": valid_start.isoformat(), "test_start": test_start.isoformat()},
                "parent_source": ds.manifest.get("source"),
            },
        )
        counts[part] = Dataset.open(tmp / part).rows("impressions")
    return {
        "parent": str(ds.path.resolve()),
        "valid_start": valid_start.isoformat(),
        "test_start": test_start.isoformat(),
        "impressions": counts,
    }


def _known(
    table: pl.DataFrame,
    id_col: str,
    referenced: set[str],
    time_col: str | None,
    end: datetime | None,
    last: bool,
) -> pl.DataFrame:
    """Rows known by `end`: referenced so far, published before `end`, or (last part) everything."""
    if last:
        return table
    keep = pl.col(id_col).is_in(pl.Series(sorted(referenced), dtype=pl.String).implode())
    if time_col is not None:
        keep = keep | (pl.col(time_col) < end).fill_null(False)
    return table.filter(keep)


def open_split(path: Path | str) -> dict[str, Dataset]:
    """Open the three parts of a split written by `split_dataset`."""
    path = Path(path)
    if not (path / SPLIT_MANIFEST).is_file():
        raise DatasetError(f"{path} is not a split: {SPLIT_MANIFEST} is missing (run `feedrank data split`)")
    return {part: Dataset.open(path / part) for part in PARTS}
