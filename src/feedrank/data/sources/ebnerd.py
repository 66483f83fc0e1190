# Over 300 lines: one source format end to end; its read, check and write steps share one import
# state in sequence, and splitting would scatter the format's rules.
"""EB-NeRD (Ekstra Bladet News Recommendation Dataset) -> canonical tables.

An EB-NeRD directory holds Parquet files:

    behaviors.parquet  one row per feed request: impression_id, user_id, impression_time (naive,
                       read as UTC), article_ids_inview (list), article_ids_clicked (list),
                       next_read_time (s), device_type, age, gender, and more
    history.parquet    one row per user: clicks before the window as parallel *_fixed lists
    articles.parquet   optional: article_id, title, published_time, category_str, subcategory
                       (list), article_type, ...

What they become:
- impressions: one row per in-view article; request_id = impression_id, position = index in
  article_ids_inview, clicked = the id is in article_ids_clicked. A clicked id that is not in view
  (or is listed twice) has no row to attach to and is quarantined.
- users: one row per user of behaviors.parquet with the latest non-null device_type (1 desktop,
  2 mobile, 3 tablet, other codes as text), age as a decade bucket ("40" -> "40-49") and gender
  code; country is unknown. Users found only in history.parquet are added by the dataset writer
  with unknown features.
- history: the *_fixed lists exploded; seq = list index, ts = impression_time_fixed,
  dwell_s = read_time_fixed (s), item_id = article_id_fixed.
- items: articles.parquet when present; otherwise the dataset writer adds every article id seen
  in impressions and history with unknown features.

Dwell attribution. `read_time` is the seconds spent on the page where the slate was shown (the front
page when article_id is null, else the article page the slate sat on), so it describes no item of
the slate. `next_read_time` is the seconds spent on the next page, i.e. the clicked article: the
clicked row's dwell_s = next_read_time. (The issue said "read_time becomes dwell_s"; that would give
every click the dwell of the page it was clicked *from*.) When a request has several clicked ids
in view, which one next_read_time belongs to is unknown, so their dwell_s stays null (counted in a
manifest note). A null next_read_time is kept as unknown dwell (the user left; the public fixture
has 28 such requests). A NaN or negative next_read_time on a request with a click quarantines the
whole request (field next_read_time): keeping its other rows would leave a slate that looks
unclicked.

Ledger units (file, unit): (behaviors.parquet, behaviors row), (behaviors.parquet, in-view
impression) for the in-view ids of rows that passed the row checks, (behaviors.parquet, clicked id)
likewise; a clicked id whose impression row was quarantined counts as quarantined (that row's
record covers it). (history.parquet, user row), (history.parquet, history row),
(articles.parquet, article row). Row numbers in quarantine records are 1-based Parquet row indices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from feedrank.data.schema import HISTORY, IMPRESSIONS, ITEMS
from feedrank.data.sources.base import ImportContext
from feedrank.data.sources.checks import (
    RowCheck,
    count,
    parquet_batches,
    split_bad_rows,
    time_checks,
    validated,
)
from feedrank.data.sources.text import open_checked
from feedrank.data.validate import ROW, SeenKeys, to_utc
from feedrank.errors import DataError, EmptySourceError, SourceNotFoundError

logger = logging.getLogger(__name__)

BEHAVIORS = "behaviors.parquet"
HISTORY_FILE = "history.parquet"
ARTICLES = "articles.parquet"
BATCH_ROWS = 100_000  # behaviors rows per batch; each expands to ~10 impression rows

BEHAVIORS_REQUIRED = (
    "impression_id", "user_id", "impression_time", "article_ids_inview", "article_ids_clicked",
)  # fmt: skip
BEHAVIORS_OPTIONAL = ("next_read_time", "device_type", "age", "gender")
HISTORY_REQUIRED = ("user_id", "article_id_fixed", "impression_time_fixed", "read_time_fixed")
# articles.parquet column -> items column
ARTICLE_COLUMNS = {
    "title": "title", "published_time": "published_ts", "category_str": "category", "category": "category",
    "subcategory": "subcategory", "article_type": "content_type",
}  # fmt: skip
LIST_COLUMNS = frozenset({"article_ids_inview", "article_ids_clicked", *HISTORY_REQUIRED[1:]})
DEVICES = {1: "desktop", 2: "mobile", 3: "tablet"}
FIELD = "article_ids_clicked"  # exploded in _check_clicks: one clicked id per row
USER_FEATURES = ("device", "age_bucket", "gender")


@dataclass
class _State:
    """What the adapter carries across batches of behaviors.parquet."""

    seen_impressions: SeenKeys = field(default_factory=SeenKeys)
    users: pl.DataFrame | None = None  # user_id, _row (first row)
    latest: dict[str, pl.DataFrame] = field(default_factory=dict)  # feature -> user_id, ts, _row, value
    num_multi_click: int = 0
    num_unknown_dwell: int = 0


def import_ebnerd(source: Path, ctx: ImportContext) -> dict[str, Any]:
    """Import an EB-NeRD directory; see the module docstring."""
    if not source.is_dir():
        raise SourceNotFoundError(source, "EB-NeRD directory (with behaviors.parquet and history.parquet)")
    started = time.perf_counter()
    behaviors = open_parquet(source / BEHAVIORS, BEHAVIORS_REQUIRED)
    history = open_parquet(source / HISTORY_FILE, HISTORY_REQUIRED)
    articles = open_parquet(source / ARTICLES, ("article_id",)) if (source / ARTICLES).exists() else None
    size = max(1, min(BATCH_ROWS, ctx.options.batch_rows))

    files = [BEHAVIORS, HISTORY_FILE]
    if articles is not None:
        files.append(ARTICLES)
        _import_articles(articles, ctx, size)
    else:
        ctx.notes.append(
            f"{ARTICLES} is absent: items are the article ids seen in impressions and history, "
            "with unknown features"
        )
    state = _State()
    present = set(behaviors.schema_arrow.names)
    columns = [*BEHAVIORS_REQUIRED, *(c for c in BEHAVIORS_OPTIONAL if c in present)]
    _note_ignored(BEHAVIORS, present - set(columns), ctx)
    for batch in parquet_batches(behaviors, size, columns):
        _import_behaviors_batch(batch, state, ctx)
    _write_users(state, ctx)
    _note_ignored(HISTORY_FILE, set(history.schema_arrow.names) - set(HISTORY_REQUIRED), ctx)
    _import_history(history, ctx, size)

    ctx.notes.append(
        "dwell_s of a clicked row is next_read_time (seconds on the clicked article); "
        "read_time (seconds on the page the slate was shown on) is not imported"
    )
    if state.num_multi_click:
        ctx.notes.append(
            f"{state.num_multi_click:,} requests have several clicked articles in view: "
            "next_read_time cannot be attributed to one of them, so their dwell_s is null"
        )
    if state.num_unknown_dwell:
        ctx.notes.append(
            f"{state.num_unknown_dwell:,} requests with a click have no next_read_time: dwell_s is null"
        )
    ctx.notes.append("impression_time and impression_time_fixed have no zone; read as UTC")
    logger.info("imported EB-NeRD from %s in %.1f s", source, time.perf_counter() - started)
    return {"format": "ebnerd", "labelled": True, "files": files}


def open_parquet(path: Path, required: Sequence[str]) -> Any:
    """Open a Parquet input after checking it exists, is Parquet, has rows and `required` columns.

    Returns a `pyarrow.parquet.ParquetFile`.
    """
    open_checked(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from exc
    schema = parquet.schema_arrow
    for name in required:
        if name not in schema.names:
            raise DataError(
                f"{path}: required column {name!r} is missing; found columns: {', '.join(schema.names)}"
            )
        if name in LIST_COLUMNS and not str(schema.field(name).type).startswith(("list", "large_list")):
            raise DataError(f"{path}: column {name!r} must be a list, found {schema.field(name).type}")
    if parquet.metadata.num_rows == 0:
        raise EmptySourceError(path)
    return parquet


def _note_ignored(file: str, columns: set[str], ctx: ImportContext) -> None:
    if columns:
        ctx.notes.append(
            f"{file}: columns not in the canonical tables were not imported: {', '.join(sorted(columns))}"
        )


def _missing(name: str, value: pl.Expr | None = None) -> RowCheck:
    return RowCheck(pl.col(name).is_null(), name, "required value is missing", value)


def _import_behaviors_batch(df: pl.DataFrame, state: _State, ctx: ImportContext) -> None:
    """Row checks, then clicked ids, in-view impressions and user features of one batch."""
    before = ctx.quarantine.count
    lo, hi = ctx.options.time_range.bounds()
    for name in BEHAVIORS_OPTIONAL:
        if name not in df.columns:
            df = df.with_columns(
                pl.lit(None, dtype=pl.Float64 if name == "next_read_time" else pl.Int32).alias(name)
            )
    df = df.with_columns(
        to_utc(pl.col("impression_time"), df.schema["impression_time"]).alias("ts"),
        pl.col("next_read_time").cast(pl.Float64).alias("next_read_time"),
    )
    has_click = pl.col("article_ids_clicked").list.len() > 0
    checks = [
        _missing("impression_id"),
        _missing("user_id"),
        _missing("impression_time"),
        *time_checks("ts", "impression_time", lo, hi, example="2023-02-27 03:23:27"),
        RowCheck(
            pl.col("article_ids_inview").list.len().fill_null(0) == 0,
            "article_ids_inview",
            "no in-view articles",
            pl.when(pl.col("article_ids_inview").is_null()).then(pl.lit("null")).otherwise(pl.lit("[]")),
        ),
        _missing("article_ids_clicked", pl.lit("null")),
        RowCheck(has_click & pl.col("next_read_time").is_nan(), "next_read_time", "dwell is NaN"),
        RowCheck(has_click & (pl.col("next_read_time") < 0), "next_read_time", "dwell is negative"),
    ]
    good, bad = split_bad_rows(df, checks, file=BEHAVIORS)
    ctx.quarantine.add_frame(bad)
    count(ctx, BEHAVIORS, "behaviors row", read=df.height, kept=good.height, since=before)

    clicks_in_view = (
        pl.col("article_ids_clicked").list.set_intersection(pl.col("article_ids_inview")).list.len()
    )
    good = good.with_columns(
        pl.col("impression_id").cast(pl.String).alias("request_id"),
        pl.col("user_id").cast(pl.String),
        # next_read_time belongs to the clicked article only when there is exactly one
        pl.when(clicks_in_view == 1).then(pl.col("next_read_time")).alias("click_dwell"),
    )
    state.num_multi_click += int((good.select(clicks_in_view > 1).to_series()).sum())
    state.num_unknown_dwell += good.filter(has_click & pl.col("next_read_time").is_null()).height
    attached = _check_clicks(good, ctx)
    _import_in_view(good, attached, state, ctx)
    _track_users(good, state)


def _check_clicks(good: pl.DataFrame, ctx: ImportContext) -> int:
    """Quarantine clicked ids with no in-view row to attach to; return how many can attach."""
    before = ctx.quarantine.count
    clicks = good.select(ROW, "article_ids_inview", FIELD).explode(FIELD, empty_as_null=False)
    not_in_view = "clicked article is not in article_ids_inview: no impression row to attach the click to"
    checks = [
        RowCheck(pl.col(FIELD).is_null(), FIELD, "required value is missing", pl.lit("null")),
        RowCheck(
            ~pl.struct(ROW, FIELD).is_first_distinct(), FIELD, "clicked article listed twice in this row"
        ),
        RowCheck(~pl.col("article_ids_inview").list.contains(pl.col(FIELD)), FIELD, not_in_view),
    ]
    ok, bad = split_bad_rows(clicks, checks, file=BEHAVIORS)
    ctx.quarantine.add_frame(bad)
    # kept is counted once the impression rows the clicks attach to are validated
    count(ctx, BEHAVIORS, "clicked id", read=clicks.height, kept=0, since=before)
    return ok.height


def _import_in_view(good: pl.DataFrame, attached: int, state: _State, ctx: ImportContext) -> None:
    """One impression row per in-view article (vectorized explode), validated and written."""
    before = ctx.quarantine.count
    request = (ROW, "request_id", "user_id", "ts")
    clicked = pl.col("article_ids_clicked").list.contains(pl.col("item")).fill_null(False)
    rows = (
        good.select(
            *request, "article_ids_clicked", "click_dwell", pl.col("article_ids_inview").alias("item")
        )
        .with_columns(pl.int_ranges(pl.col("item").list.len(), dtype=pl.Int32).alias("position"))
        .explode(["item", "position"], empty_as_null=False)
        .select(
            *request,
            "position",
            clicked.alias("clicked"),
            pl.col("item").cast(pl.String).alias("item_id"),
            pl.when(clicked).then(pl.col("click_dwell")).alias("dwell_s"),
            pl.lit(False).alias("shared"),
            pl.lit(False).alias("hidden"),
        )
    )
    out = validated(rows, IMPRESSIONS, BEHAVIORS, ctx, state.seen_impressions)
    ctx.writer.write("impressions", out)
    count(ctx, BEHAVIORS, "in-view impression", read=rows.height, kept=out.height, since=before)
    # A click whose impression row was quarantined is lost with that row (its record covers it).
    clicks = ctx.ledger.tally(BEHAVIORS, "clicked id")
    kept_clicks = int(out["clicked"].sum())
    clicks.kept += kept_clicks
    clicks.quarantined += attached - kept_clicks


def _track_users(good: pl.DataFrame, state: _State) -> None:
    """Keep each user's first row and, per feature, the latest non-null value."""
    age = pl.col("age").cast(pl.Int32) // 10 * 10
    features = good.select(
        "user_id",
        "ts",
        ROW,
        pl.col("device_type")
        .cast(pl.Int32)
        .replace_strict(DEVICES, default=pl.col("device_type").cast(pl.String), return_dtype=pl.String)
        .alias("device"),
        pl.format("{}-{}", age, age + 9).alias("age_bucket"),
        pl.col("gender").cast(pl.String).alias("gender"),
    )
    users = features.select("user_id", ROW)
    if state.users is not None:
        users = pl.concat([state.users, users])
    state.users = users.group_by("user_id").agg(pl.col(ROW).min())
    for name in USER_FEATURES:
        latest = features.select("user_id", "ts", ROW, name).filter(pl.col(name).is_not_null())
        if name in state.latest:
            latest = pl.concat([state.latest[name], latest])
        state.latest[name] = latest.sort("ts", ROW).unique("user_id", keep="last")


def _write_users(state: _State, ctx: ImportContext) -> None:
    if state.users is None:
        return
    users = state.users.sort(ROW)
    for name, latest in state.latest.items():
        users = users.join(latest.select("user_id", name), on="user_id", how="left", maintain_order="left")
    # Ids and features were checked on their rows and are distinct here: nothing left to validate.
    ctx.writer.write("users", users.drop(ROW))


def _import_history(parquet: Any, ctx: ImportContext, size: int) -> None:
    """Explode the *_fixed lists of each user row into history rows."""
    seen = SeenKeys()
    for df in parquet_batches(parquet, size, HISTORY_REQUIRED):
        before = ctx.quarantine.count
        hashes = df["user_id"].cast(pl.String).hash(seed=0).to_numpy()
        df = df.with_columns(
            (~pl.col("user_id").is_first_distinct() | pl.Series(seen.contains(hashes))).alias("__dup")
        )
        length = pl.col("article_id_fixed").list.len()
        checks = [_missing("user_id"), *(_missing(name, pl.lit("null")) for name in HISTORY_REQUIRED[1:])]
        checks += [
            RowCheck(
                pl.col(name).list.len() != length,
                name,
                "list length differs from article_id_fixed",
                pl.format("{} items, article_id_fixed has {}", pl.col(name).list.len(), length),
            )
            for name in HISTORY_REQUIRED[2:]
        ]
        checks.append(RowCheck(pl.col("__dup"), "user_id", "duplicate user row (the first one is kept)"))
        good, bad = split_bad_rows(df, checks, file=HISTORY_FILE)
        ctx.quarantine.add_frame(bad)
        seen.add(good["user_id"].cast(pl.String).hash(seed=0).to_numpy())
        count(ctx, HISTORY_FILE, "user row", read=df.height, kept=good.height, since=before)

        before = ctx.quarantine.count
        entries = (
            good.select(
                ROW,
                pl.col("user_id").cast(pl.String),
                pl.col("article_id_fixed").alias("item_id"),
                pl.col("impression_time_fixed").alias("ts"),
                pl.col("read_time_fixed").alias("dwell_s"),
            )
            .with_columns(pl.int_ranges(pl.col("item_id").list.len(), dtype=pl.Int32).alias("seq"))
            .explode(["item_id", "ts", "dwell_s", "seq"], empty_as_null=False)
        )
        out = validated(entries, HISTORY, HISTORY_FILE, ctx)
        ctx.writer.write("history", out)
        count(ctx, HISTORY_FILE, "history row", read=entries.height, kept=out.height, since=before)


def _import_articles(parquet: Any, ctx: ImportContext, size: int) -> None:
    """Items from articles.parquet; columns it lacks stay unknown."""
    present = set(parquet.schema_arrow.names)
    if "category_str" in present:  # the category name wins over its numeric id
        present.discard("category")
    columns = ["article_id", *(c for c in ARTICLE_COLUMNS if c in present)]
    _note_ignored(ARTICLES, set(parquet.schema_arrow.names) - set(columns), ctx)
    seen = SeenKeys()
    for df in parquet_batches(parquet, size, columns):
        before = ctx.quarantine.count
        if isinstance(df.schema.get("subcategory"), pl.List):
            # EB-NeRD lists several subcategory ids; the first is the one a model can embed
            df = df.with_columns(pl.col("subcategory").list.first())
        renamed = [pl.col(c).alias(ARTICLE_COLUMNS[c]) for c in columns[1:]]
        items = df.select(ROW, pl.col("article_id").alias("item_id"), *renamed)
        out = validated(items, ITEMS, ARTICLES, ctx, seen)
        ctx.writer.write("items", out)
        count(ctx, ARTICLES, "article row", read=df.height, kept=out.height, since=before)
