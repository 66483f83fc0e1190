"""Globo.com G1 click logs ("News Portal User Interactions by Globo.com", Moreira et al. 2018).

Input: a directory with `clicks.parquet` (or a `clicks/` directory of Parquet shards), one row
per click: user_id, session_id, item_id, ts, and the click context as integer codes
(environment, device_group, os, country, region, referrer_type). A session's clicks become one
request (`request_id` = `session_id`, kept as `session_id` too), each click an impression row
with `clicked` true: the log is click-only. The context columns become the impressions' request
context; each user's row in `users` takes the country and device group of their latest click.

The log has no article metadata, so publication time is unknown: an item's `published_ts` is its
first click in the log (an upper bound of the true time, and what a live system would know when
the item first shows up). The manifest says so (`source.published_ts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from feedrank.data.schema import CONTEXT_COLUMNS, IMPRESSIONS
from feedrank.data.sources.base import ImportContext
from feedrank.data.sources.checks import count, parquet_batches, validated
from feedrank.data.sources.text import open_checked
from feedrank.data.validate import ROW, SeenKeys
from feedrank.errors import DataError, SourceNotFoundError

CLICK_COLUMNS = ("user_id", "session_id", "item_id", "ts")
PUBLISHED_FROM = "first click in the log (the source has no publication time)"


def click_files(source: Path) -> list[Path]:
    if not source.exists():
        raise SourceNotFoundError(source, "Globo.com log directory")
    if source.is_file():
        return [source]
    files = [source / "clicks.parquet"] if (source / "clicks.parquet").is_file() else []
    if (source / "clicks").is_dir():
        files += sorted((source / "clicks").glob("*.parquet"))
    if not files:
        raise SourceNotFoundError(source / "clicks.parquet", "clicks table (clicks.parquet or clicks/)")
    return files


def import_globo(source: Path, ctx: ImportContext) -> dict[str, Any]:
    """Adapter for the Globo.com click log; see the module docstring."""
    seen = SeenKeys()
    first_click: pl.DataFrame | None = None  # item_id, published_ts
    latest_context: pl.DataFrame | None = None  # user_id, ts, country, device
    files = click_files(source)
    for path in files:
        label = path.name if source.is_file() else str(path.relative_to(source))
        open_checked(path)
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{label}: not a readable Parquet file: {exc}") from exc
        names = set(parquet.schema_arrow.names)
        missing = [c for c in CLICK_COLUMNS if c not in names]
        if missing:
            raise DataError(
                f"{label}: required column(s) {', '.join(missing)} missing; "
                f"found columns: {', '.join(sorted(names)) or '(none)'}"
            )
        context = [c for c in CONTEXT_COLUMNS if c in names]
        for batch in parquet_batches(parquet, ctx.options.batch_rows, [*CLICK_COLUMNS, *context]):
            since = ctx.quarantine.count
            rows = batch.with_columns(
                *(pl.col(c).cast(pl.String) for c in ("user_id", "session_id", "item_id", *context)),
                pl.col("session_id").cast(pl.String).alias("request_id"),
                pl.lit(True).alias("clicked"),
                pl.lit(False).alias("shared"),
                pl.lit(False).alias("hidden"),
                pl.col(ROW),
            )
            good = validated(rows, IMPRESSIONS, label, ctx, seen)
            count(ctx, label, "click", read=batch.height, kept=good.height, since=since)
            ctx.writer.write("impressions", good)
            first_click = _merge_first(first_click, good)
            latest_context = _merge_latest(latest_context, good)
    if first_click is not None:
        ctx.writer.write("items", first_click)
    if latest_context is not None:
        ctx.writer.write("users", latest_context.drop("ts"))
    ctx.notes.append("click-only log: every impression row is a click")
    ctx.notes.append(f"items.published_ts is each item's {PUBLISHED_FROM}")
    return {
        "format": "globo",
        "files": [str(p.relative_to(source)) if source.is_dir() else p.name for p in files],
        "click_only": True,
        "request_id": "session_id",
        "published_ts": PUBLISHED_FROM,
        "users": "country and device (device_group) of the user's latest click",
    }


def _merge_first(acc: pl.DataFrame | None, clicks: pl.DataFrame) -> pl.DataFrame:
    batch = clicks.group_by("item_id").agg(pl.col("ts").min().alias("published_ts"))
    if acc is None:
        return batch
    return pl.concat([acc, batch]).group_by("item_id").agg(pl.col("published_ts").min())


def _merge_latest(acc: pl.DataFrame | None, clicks: pl.DataFrame) -> pl.DataFrame:
    batch = clicks.select("user_id", "ts", "country", pl.col("device_group").alias("device"))
    frame = batch if acc is None else pl.concat([acc, batch])
    return frame.sort("ts").group_by("user_id").last()
