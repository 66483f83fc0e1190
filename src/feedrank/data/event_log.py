"""The events behind `PastEvents` as integer codes: clicks held, impressions read when asked for.

`PastEvents` (data/history.py) indexes clicks (histories, click counters, co-visitation) and
every impression (view counters, sessions). The clicks are a few percent of a log's rows and are
held as (user row, item row, time) int64 arrays; the impressions are the log itself, so an
`EventLog` hands them out only when an index over them is first built (the ranker's counters,
sessions), and the two-tower, which reads histories alone, never holds them.

Two sources give the same events in the same order (log order: the pre-window history sorted by
user and `seq`, then the impressions in table order):

- `FrameEvents`: canonical tables in memory (a bundle, tests);
- `SplitEvents`: the parts of a split on disk, read one Parquet shard at a time, ids mapped to
  rows by a hash join, so no Python object is made per event and one shard is in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.data.features import ItemCatalog, UserDirectory, id_rows, to_us
from feedrank.data.schema import TABLES


@dataclass(frozen=True)
class Clicks:
    """Engagements with a known user and item, in log order: the history first, then the log's."""

    user: np.ndarray  # (C,) int64 user rows
    item: np.ndarray  # (C,) int64 catalog rows
    ts: np.ndarray  # (C,) int64 µs; NO_TIME for undated history
    dwell_s: np.ndarray | None = None  # (C,) float64 seconds read; NaN where the log has none


@dataclass(frozen=True)
class Shown:
    """One entity column of every impression, in log order: rows (-1 unknown) and times."""

    rows: np.ndarray  # (N,) int64
    ts: np.ndarray  # (N,) int64 µs


class EventLog(Protocol):
    """Where `PastEvents` reads its events."""

    def clicks(self, until_us: int | None = None) -> Clicks:
        """Every engagement (with time <= `until_us` when given; the undated history always)."""
        ...

    def shown_chunks(self, entity: str, between: tuple[int, int] | None = None) -> Iterator[Shown]:
        """The `entity` ("user" or "item") rows and times of every impression (with time in
        [lo, hi) when `between` is given), a shard at a time, in log order."""
        ...


def shown(events: EventLog, entity: str, between: tuple[int, int] | None = None) -> Shown:
    """`shown_chunks` concatenated."""
    chunks = list(events.shown_chunks(entity, between))
    if not chunks:
        return Shown(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return Shown(np.concatenate([c.rows for c in chunks]), np.concatenate([c.ts for c in chunks]))


class _Codes:
    """Id → row joins of a catalog and a user directory (one small frame each)."""

    def __init__(self, catalog: ItemCatalog, users: UserDirectory) -> None:
        self.items = pl.DataFrame(
            {"item_id": pl.Series(catalog.item_ids, dtype=pl.String), "row": np.arange(len(catalog))}
        )
        self.users = users.codes

    def rows(self, entity: str, ids: pl.Series) -> np.ndarray:
        if entity == "item":
            return id_rows(self.items, "item_id", ids)
        return id_rows(self.users, "user_id", ids)


ClickPart = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # user rows, item rows, µs, dwell


def _dwell(frame: pl.DataFrame) -> np.ndarray:
    """(N,) float64 dwell seconds of a frame's rows; NaN where null or without the column."""
    if "dwell_s" not in frame.columns:
        return np.full(frame.height, np.nan)
    return frame.get_column("dwell_s").cast(pl.Float64).fill_null(np.nan).to_numpy()


def _history_clicks(history: pl.DataFrame, codes: _Codes) -> ClickPart:
    dwell = ["dwell_s"] if "dwell_s" in history.columns else []
    hist = history.select("user_id", "item_id", "seq", "ts", *dwell).sort("user_id", "seq")
    return (
        codes.rows("user", hist.get_column("user_id")),
        codes.rows("item", hist.get_column("item_id")),
        to_us(hist.get_column("ts")),
        _dwell(hist),
    )


def _clicks(parts: Iterator[ClickPart]) -> Clicks:
    users, items, times, dwells = zip(*parts, strict=True)
    user, item, ts = np.concatenate(users), np.concatenate(items), np.concatenate(times)
    known = (user >= 0) & (item >= 0)
    return Clicks(user[known], item[known], ts[known], np.concatenate(dwells)[known])


def _until(until_us: int | None) -> pl.Expr:
    """Rows with ts <= until (µs), or every row."""
    return pl.lit(True) if until_us is None else pl.col("ts").dt.epoch("us") <= until_us


def _within(between: tuple[int, int] | None) -> pl.Expr:
    """Rows with lo <= ts < hi (µs), or every row."""
    if between is None:
        return pl.lit(True)
    us = pl.col("ts").dt.epoch("us")
    return (us >= between[0]) & (us < between[1])


class FrameEvents:
    """An `EventLog` over canonical tables in memory (history, and impressions with user_id,
    item_id, ts, clicked)."""

    def __init__(
        self, history: pl.DataFrame, impressions: pl.DataFrame, catalog: ItemCatalog, users: UserDirectory
    ) -> None:
        self._history = history
        dwell = ["dwell_s"] if "dwell_s" in impressions.columns else []
        self._impressions = impressions.select("user_id", "item_id", "ts", "clicked", *dwell)
        self._codes = _Codes(catalog, users)

    def clicks(self, until_us: int | None = None) -> Clicks:
        clicked = self._impressions.filter(pl.col("clicked") & _until(until_us))
        log = (
            self._codes.rows("user", clicked.get_column("user_id")),
            self._codes.rows("item", clicked.get_column("item_id")),
            to_us(clicked.get_column("ts")),
            _dwell(clicked),
        )
        return _clicks(iter([_history_clicks(self._history, self._codes), log]))

    def shown_chunks(self, entity: str, between: tuple[int, int] | None = None) -> Iterator[Shown]:
        imp = self._impressions.filter(_within(between))
        yield Shown(self._codes.rows(entity, imp.get_column(f"{entity}_id")), to_us(imp.get_column("ts")))


class SplitEvents:
    """An `EventLog` over the parts of a split, read shard by shard (see the module docstring).

    `parts` in time order (train, valid, test); the history is the last part's (every part holds
    the same pre-window history).
    """

    def __init__(self, parts: Sequence[Dataset], catalog: ItemCatalog, users: UserDirectory) -> None:
        self._parts = list(parts)
        self._codes = _Codes(catalog, users)

    def _shards(self) -> Iterator[Path]:
        for part in self._parts:
            yield from sorted((part.path / "impressions").glob("*.parquet"))

    def _read(self, shard: Path, columns: list[str], keep: pl.Expr) -> pl.DataFrame:
        # The schema and missing_columns as Dataset.scan reads them: same values, same order.
        scan = pl.scan_parquet(shard, schema=TABLES["impressions"].polars_schema(), missing_columns="insert")
        return scan.filter(keep).select(columns).collect()

    def clicks(self, until_us: int | None = None) -> Clicks:
        def parts() -> Iterator[ClickPart]:
            yield _history_clicks(self._parts[-1].read("history"), self._codes)
            for shard in self._shards():
                keep = pl.col("clicked") & _until(until_us)
                frame = self._read(shard, ["user_id", "item_id", "ts", "dwell_s"], keep)
                yield (
                    self._codes.rows("user", frame.get_column("user_id")),
                    self._codes.rows("item", frame.get_column("item_id")),
                    to_us(frame.get_column("ts")),
                    _dwell(frame),
                )

        return _clicks(parts())

    def shown_chunks(self, entity: str, between: tuple[int, int] | None = None) -> Iterator[Shown]:
        for shard in self._shards():
            frame = self._read(shard, [f"{entity}_id", "ts"], _within(between))
            rows = self._codes.rows(entity, frame.get_column(f"{entity}_id"))
            yield Shown(rows, to_us(frame.get_column("ts")))
