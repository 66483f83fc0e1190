"""Generic logs in the canonical column names, as Parquet or CSV.

Input is a directory holding any of `impressions`, `items`, `users`, `history`, each as
`<name>.parquet`, `<name>.csv` or a `<name>/` directory of such shards, or a single file that is
taken as the impressions table. Column names are the canonical ones (see data/schema.py); types may
be loose (strings in CSV): every value is cast and checked, and a row that fails goes to the
quarantine.

Click-only logs (only engaged rows, e.g. a page-view log) are recognised when there is no `clicked`
column or every row is a click; the dataset is then flagged `click_only` so training samples
negatives from the catalog instead of from impressions. Rows without a `request_id` each become
their own request, named after their file and row. Missing `shared`/`hidden` columns mean False.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from feedrank.data.schema import TABLES, Table
from feedrank.data.sources.base import ImportContext
from feedrank.data.sources.checks import parquet_batches
from feedrank.data.sources.text import iter_lines, open_checked
from feedrank.data.validate import ROW, SeenKeys, validate_rows
from feedrank.errors import DataError, SourceNotFoundError

SUFFIXES = (".parquet", ".csv")

# Columns an input may omit, with the value that omission means.
_DEFAULTS: dict[str, dict[str, pl.Expr]] = {
    "impressions": {"shared": pl.lit(False), "hidden": pl.lit(False)},
}


def find_table_files(source: Path) -> dict[str, list[Path]]:
    """Map each canonical table to its input files under `source` (impressions only if a file)."""
    if not source.exists():
        raise SourceNotFoundError(source, "input")
    if source.is_file():
        return {"impressions": [source]}
    found: dict[str, list[Path]] = {}
    for name in TABLES:
        files = [source / f"{name}{suffix}" for suffix in SUFFIXES if (source / f"{name}{suffix}").is_file()]
        shard_dir = source / name
        if shard_dir.is_dir():
            files += sorted(p for p in shard_dir.iterdir() if p.suffix in SUFFIXES)
        if files:
            found[name] = files
    if "impressions" not in found:
        raise SourceNotFoundError(
            source / "impressions.parquet",
            "impressions table (impressions.parquet, impressions.csv or impressions/)",
        )
    return found


def import_tabular(source: Path, ctx: ImportContext) -> dict[str, Any]:
    """Adapter for generic Parquet/CSV logs; see the module docstring for the layout."""
    files = find_table_files(source)
    click_only = False
    for table_name, paths in files.items():
        table = TABLES[table_name]
        seen = SeenKeys()
        all_clicked, has_clicked_column = True, True
        for path in paths:
            label = _label(path, source)
            tally = ctx.ledger.tally(label, "row")
            for batch in _read_batches(path, label, ctx):
                tally.read += batch.height
                columns = set(batch.columns) - {ROW}
                _check_required_columns(columns, table, label)
                _note_unknown_columns(columns, table, label, ctx)
                batch = _fill_defaults(batch, table, label)
                if table_name == "impressions":
                    has_clicked_column &= "clicked" in batch.columns
                    if "clicked" not in batch.columns:
                        batch = batch.with_columns(pl.lit(True).alias("clicked"))
                before = ctx.quarantine.count
                good = validate_rows(
                    batch,
                    table,
                    file=label,
                    quarantine=ctx.quarantine,
                    time_range=ctx.options.time_range,
                    seen_keys=seen,
                )
                tally.quarantined += ctx.quarantine.count - before
                tally.kept += good.height
                if table_name == "impressions" and good.height:
                    all_clicked &= bool(good.get_column("clicked").all())
                ctx.writer.write(table_name, good)
        if table_name == "impressions":
            click_only = not has_clicked_column or all_clicked
            if click_only:
                ctx.notes.append("click-only log: every impression row is an engagement")
    return {
        "format": "tabular",
        "files": {name: [_label(p, source) for p in paths] for name, paths in files.items()},
        "click_only": click_only,
    }


def _label(path: Path, source: Path) -> str:
    """How a file is named in messages: relative to the source directory when inside it."""
    if source.is_dir():
        return str(path.relative_to(source))
    return path.name


def _check_required_columns(columns: set[str], table: Table, label: str) -> None:
    optional = set(_DEFAULTS.get(table.name, {})) | {"request_id", "clicked", "seq"}
    missing = [c for c in table.required if c not in columns and c not in optional]
    if missing:
        raise DataError(
            f"{label}: required column(s) {', '.join(missing)} missing for table {table.name!r}; "
            f"found columns: {', '.join(sorted(columns)) or '(none)'}"
        )


def _note_unknown_columns(columns: set[str], table: Table, label: str, ctx: ImportContext) -> None:
    unknown = sorted(columns - set(table.names))
    note = f"{label}: columns not in the canonical {table.name} table were ignored: {', '.join(unknown)}"
    if unknown and note not in ctx.notes:
        ctx.notes.append(note)


def _fill_defaults(batch: pl.DataFrame, table: Table, label: str) -> pl.DataFrame:
    fills = [
        expr.alias(col) for col, expr in _DEFAULTS.get(table.name, {}).items() if col not in batch.columns
    ]
    if table.name == "impressions" and "request_id" not in batch.columns:
        # Without request ids every row is its own request; the name says where it came from.
        fills.append(pl.format("{}:{}", pl.lit(label), pl.col(ROW)).alias("request_id"))
    if table.name == "history" and "seq" not in batch.columns:
        order = [c for c in ("ts", ROW) if c in batch.columns]
        fills.append(pl.col(ROW).rank("ordinal").over("user_id", order_by=order).sub(1).alias("seq"))
    return batch.with_columns(fills) if fills else batch


def _read_batches(path: Path, label: str, ctx: ImportContext) -> Iterator[pl.DataFrame]:
    open_checked(path)
    if path.suffix == ".parquet":
        yield from _parquet_batches(path, label, ctx.options.batch_rows)
    else:
        yield from _csv_batches(path, label, ctx)


def _parquet_batches(path: Path, label: str, batch_rows: int) -> Iterator[pl.DataFrame]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{label}: not a readable Parquet file: {exc}") from exc
    yield from parquet_batches(parquet, batch_rows)


def _csv_batches(path: Path, label: str, ctx: ImportContext) -> Iterator[pl.DataFrame]:
    """CSV with a header line; one record per line (quoted newlines are not supported)."""
    lines = iter_lines(path, max_line_bytes=ctx.options.max_line_bytes)
    header_line = next(lines)
    if header_line.text is None:
        raise DataError(f"{label}: line 1 (the header) is unreadable: {header_line.error}")
    # A byte-order mark (Excel writes one) would otherwise glue itself to the first column's name.
    header = [h.strip() for h in next(csv.reader([header_line.text.removeprefix("\ufeff")]))]
    tally = ctx.ledger.tally(label, "row")
    rows: list[list[str]] = []
    numbers: list[int] = []

    def flush() -> pl.DataFrame:
        frame = pl.DataFrame(
            {name: [r[i] for r in rows] for i, name in enumerate(header)},
            schema=dict.fromkeys(header, pl.String),
        ).with_columns(pl.Series(ROW, numbers, dtype=pl.Int64))
        rows.clear()
        numbers.clear()
        return frame

    for line in lines:
        if line.text is not None and not line.text.strip():
            continue  # blank lines (e.g. a trailing newline) are not rows
        fields = next(csv.reader([line.text])) if line.text is not None else []
        if line.text is None or len(fields) != len(header):
            if rows and ctx.quarantine.strict:
                yield flush()  # the rows before this line are checked first: --strict names the first bad row
            tally.read += 1
            tally.quarantined += 1
            if line.text is None:
                ctx.quarantine.add(
                    label, line.number, "(line)", line.raw_preview, line.error or "unreadable line"
                )
            else:
                reason = f"has {len(fields)} columns, the header has {len(header)}"
                ctx.quarantine.add(label, line.number, "(line)", line.text, reason)
            continue
        rows.append(fields)
        numbers.append(line.number)
        if len(rows) >= ctx.options.batch_rows:
            yield flush()
    if rows:
        yield flush()
