"""Helpers every source adapter shares: time checks, validation with the context, counting,
batching lines and reading Parquet in batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

import polars as pl

from feedrank.data.schema import Table
from feedrank.data.sources.base import ImportContext
from feedrank.data.sources.text import Line
from feedrank.data.validate import (
    BAD_SCHEMA,
    ROW,
    RowCheck,
    SeenKeys,
    concat_bad,
    split_bad_rows,
    validate_rows,
)

__all__ = [
    "BAD_SCHEMA",
    "RowCheck",
    "batches",
    "concat_bad",
    "count",
    "parquet_batches",
    "split_bad_rows",
    "time_checks",
    "validated",
]


def time_checks(ts: str, field: str, lo: datetime, hi: datetime, *, example: str) -> list[RowCheck]:
    """Unreadable and out-of-range checks for a parsed timestamp column `ts` read from `field`."""
    return [
        RowCheck(pl.col(ts).is_null(), field, f"cannot be read as a timestamp like {example!r}"),
        RowCheck(
            (pl.col(ts) < lo) | (pl.col(ts) > hi), field, f"timestamp outside {lo:%Y-%m-%d}..{hi:%Y-%m-%d}"
        ),
    ]


def validated(
    rows: pl.DataFrame, table: Table, file: str, ctx: ImportContext, seen: SeenKeys | None = None
) -> pl.DataFrame:
    """`validate_rows` with the context's quarantine and time range."""
    return validate_rows(
        rows, table, file=file, quarantine=ctx.quarantine, time_range=ctx.options.time_range, seen_keys=seen
    )


def count(ctx: ImportContext, file: str, unit: str, *, read: int, kept: int, since: int) -> None:
    """Add a stage's counts to the ledger; its quarantined rows are the records added `since`."""
    tally = ctx.ledger.tally(file, unit)
    tally.read += read
    tally.kept += kept
    tally.quarantined += ctx.quarantine.count - since


def batches(items: Iterable[Line], size: int) -> Iterator[list[Line]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def parquet_batches(parquet: Any, size: int, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
    """Frames of at most `size` rows of a `pyarrow.parquet.ParquetFile`, with a 1-based `_row`."""
    offset = 0
    for record_batch in parquet.iter_batches(
        batch_size=size, columns=None if columns is None else list(columns)
    ):
        frame = pl.from_arrow(record_batch)
        assert isinstance(frame, pl.DataFrame)  # from_arrow of a RecordBatch is always a frame
        yield frame.with_row_index(ROW, offset=offset + 1).with_columns(pl.col(ROW).cast(pl.Int64))
        offset += frame.height
