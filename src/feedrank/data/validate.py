"""Row validation for canonical tables, vectorized with polars.

Adapters build a frame whose columns carry canonical names (any loose type, often strings) plus a
`_row` column with the 1-based row or line number in the source file. `validate_rows` casts each
column to its canonical type, checks ranges and uniqueness, sends each failing row to the
quarantine once (its first failing check, in column order) and returns the rows that passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from feedrank.data.dataset import conform
from feedrank.data.quarantine import Quarantine
from feedrank.data.schema import UTC_TS, Table

ROW = "_row"

# Timestamps outside this window are treated as corrupt (epoch-zero defaults, seconds read as
# milliseconds, clock skew into the future).
TS_MIN = datetime(1995, 1, 1, tzinfo=UTC)


def ts_max_default() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


BAD_SCHEMA = pl.Schema(
    {"file": pl.String, "row": pl.Int64, "field": pl.String, "value": pl.String, "reason": pl.String}
)


@dataclass(frozen=True)
class RowCheck:
    """One check: rows where `bad` is true fail with `reason`.

    `value` renders the offending value for the quarantine record (default: the `field` column).
    """

    bad: pl.Expr
    field: str
    reason: str
    value: pl.Expr | None = None


def split_bad_rows(
    df: pl.DataFrame, checks: Sequence[RowCheck], *, file: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows passing every check, bad-row frame). Each failing row appears once, at its first check.

    `df` must have a `_row` column; the bad-row frame has columns file, row, field, value, reason,
    ready for `Quarantine.add_frame`. The first failing check is tagged in one pass (a coalesce
    over the checks), so the cost grows linearly with the number of checks.
    """
    if not checks:
        return df, concat_bad([])
    first_failed = pl.coalesce(
        [pl.when(c.bad.fill_null(False)).then(pl.lit(i)) for i, c in enumerate(checks)]
    )
    tagged = df.with_columns(first_failed.alias("__check"))
    bad = []
    for i, c in enumerate(checks):
        hit = tagged.filter(pl.col("__check") == i)
        if hit.height:
            value = c.value if c.value is not None else pl.col(c.field)
            bad.append(
                hit.select(
                    pl.lit(file).alias("file"),
                    pl.col(ROW).cast(pl.Int64).alias("row"),
                    pl.lit(c.field).alias("field"),
                    value.cast(pl.String).fill_null("").alias("value"),
                    pl.lit(c.reason).alias("reason"),
                )
            )
    return tagged.filter(pl.col("__check").is_null()).drop("__check"), concat_bad(bad)


def concat_bad(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([pl.DataFrame(schema=BAD_SCHEMA), *frames])


@dataclass(frozen=True)
class TimeRange:
    """Accepted timestamps, inclusive."""

    lo: datetime = TS_MIN
    hi: datetime | None = None  # None: now + 1 day, evaluated when validating

    def bounds(self) -> tuple[datetime, datetime]:
        return self.lo, self.hi if self.hi is not None else ts_max_default()


def parse_times(raw: pl.Series) -> pl.Series:
    """Strings to UTC timestamps, each value on its own: any ISO 8601 spelling, zone-less = UTC.

    polars parses the column fast with the format it infers from the first value; the values that
    format does not fit (another ISO spelling: `Z`, an offset, a fraction, a date alone) are
    parsed one by one. Unparseable values stay null."""
    fast = raw.str.strip_chars().str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    missed = (fast.is_null() & raw.is_not_null()).arg_true()
    if missed.len() == 0:
        return fast
    values = raw.gather(missed).to_list()
    parsed = pl.Series([_iso_us(v) for v in values], dtype=pl.Int64).cast(UTC_TS)
    return fast.scatter(missed, parsed)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_us(value: str) -> int | None:
    try:
        when = datetime.fromisoformat(value.strip())
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return (when - _EPOCH) // timedelta(microseconds=1)
    except (ValueError, OverflowError):
        return None


def to_utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Cast a column of datetimes (naive = UTC) or numbers to the canonical UTC timestamp (strings:
    `parse_times`, value by value)."""
    if dtype == pl.String:
        return expr.map_batches(parse_times, return_dtype=UTC_TS)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return expr.dt.cast_time_unit("us").dt.replace_time_zone("UTC")
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return expr.cast(UTC_TS, strict=False)


def _cast(df: pl.DataFrame, name: str, target: pl.DataType) -> pl.Expr:
    src = df.schema[name]
    if target == UTC_TS:
        return to_utc(pl.col(name), src)
    if target == pl.Boolean and src.is_numeric():
        # 0/1 only: a label of 2, -1 or 7 is corrupt, not "true"
        col = pl.col(name)
        return pl.when(col == 1).then(pl.lit(True)).when(col == 0).then(pl.lit(False)).otherwise(None)
    if target == pl.Boolean and src == pl.String:
        lowered = pl.col(name).str.strip_chars().str.to_lowercase()
        return (
            pl.when(lowered.is_in(["1", "true", "t", "yes"]))
            .then(pl.lit(True))
            .when(lowered.is_in(["0", "false", "f", "no"]))
            .then(pl.lit(False))
            .otherwise(pl.lit(None, dtype=pl.Boolean))
        )
    if src == pl.String:
        return pl.col(name).str.strip_chars().cast(target, strict=False)
    return pl.col(name).cast(target, strict=False)


def validate_rows(
    df: pl.DataFrame,
    table: Table,
    *,
    file: str,
    quarantine: Quarantine,
    time_range: TimeRange = TimeRange(),
    seen_keys: SeenKeys | None = None,
) -> pl.DataFrame:
    """Return the valid rows of `df` conformed to `table`; quarantine the others.

    `df` must have a `_row` column. `seen_keys` carries the table key across batches of one input,
    so a duplicate is caught even when its first occurrence came in an earlier batch.
    """
    if df.height == 0:
        return table.empty()
    lo, hi = time_range.bounds()
    casted = df.with_columns(
        [_cast(df, c.name, c.dtype).alias(f"__{c.name}") for c in table.columns if c.name in df.columns]
    )
    checks: list[RowCheck] = []
    for c in table.columns:
        if c.name not in df.columns:
            if not c.nullable:
                checks.append(RowCheck(pl.lit(True), c.name, "required column is missing", pl.lit("")))
            continue
        raw, typed = pl.col(c.name), pl.col(f"__{c.name}")
        blank = raw.is_null()
        if df.schema[c.name] == pl.String:
            blank = blank | (raw.str.strip_chars() == "")
        if not c.nullable:
            checks.append(RowCheck(blank, c.name, "required value is missing"))
        checks.append(RowCheck(~blank & typed.is_null(), c.name, f"cannot be read as {_type_name(c.dtype)}"))
        if c.dtype == UTC_TS:
            outside = f"timestamp outside {lo:%Y-%m-%d}..{hi:%Y-%m-%d}"
            checks.append(RowCheck((typed < lo) | (typed > hi), c.name, outside))
        if c.name == "dwell_s":
            checks.append(RowCheck(typed.is_nan(), c.name, "dwell is NaN"))
            # inf, or a number too large for float32 (1e39): not a dwell time
            checks.append(RowCheck(typed.is_infinite(), c.name, "dwell is not finite"))
            checks.append(RowCheck(typed < 0, c.name, "dwell is negative"))
        if c.name in ("position", "seq"):
            checks.append(RowCheck(typed < 0, c.name, "must not be negative"))
        if c.name == "propensity":
            bad_p = typed.is_nan() | (typed <= 0) | (typed > 1)
            checks.append(RowCheck(bad_p, c.name, "propensity must be in (0, 1]"))
        if c.name == "survey":
            checks.append(RowCheck(typed.is_nan(), c.name, "survey is NaN"))
            checks.append(RowCheck(typed.is_infinite(), c.name, "survey is not finite"))

    passed, bad = split_bad_rows(casted, checks, file=file)
    bad_frames = [bad]
    good = passed.select(
        [pl.col(f"__{c.name}").alias(c.name) for c in table.columns if c.name in df.columns] + [pl.col(ROW)]
    )

    key = list(table.key)
    if all(k in good.columns for k in key) and good.height:
        first = good.select(pl.struct(key).is_first_distinct()).to_series()
        if seen_keys is not None:
            hashes = good.select(pl.struct(key).hash(seed=0)).to_series().to_numpy()
            first = first & pl.Series(~seen_keys.contains(hashes))
            seen_keys.add(hashes[first.to_numpy()])
        dup = good.filter(~first)
        if dup.height:
            bad_frames.append(
                dup.select(
                    pl.lit(file).alias("file"),
                    pl.col(ROW).cast(pl.Int64).alias("row"),
                    pl.lit(",".join(key)).alias("field"),
                    pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator=",").alias("value"),
                    pl.lit(f"duplicate {table.name} row (same {', '.join(key)})").alias("reason"),
                )
            )
            good = good.filter(first)

    bad_rows = concat_bad(bad_frames)
    if bad_rows.height:
        quarantine.add_frame(bad_rows)
    return conform(good.drop(ROW), table)


def _type_name(dtype: pl.DataType) -> str:
    if dtype == UTC_TS:
        return "a timestamp"
    return {
        pl.Int32: "an integer",
        pl.Int64: "an integer",
        pl.Float32: "a number",
        pl.Float64: "a number",
        pl.Boolean: "a boolean (true/false/1/0)",
        pl.String: "text",
    }.get(type(dtype), str(dtype))


class SeenKeys:
    """64-bit hashes of the keys already kept, for duplicate detection across batches."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if self._sorted.size == 0:
            return np.zeros(hashes.shape, dtype=bool)
        idx = np.searchsorted(self._sorted, hashes)
        idx[idx == self._sorted.size] = 0
        result: np.ndarray = self._sorted[idx] == hashes
        return result

    def add(self, hashes: np.ndarray) -> None:
        # Insert into the sorted array instead of re-sorting everything seen (np.union1d would).
        new = np.sort(hashes.astype(np.uint64))
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new), new)
