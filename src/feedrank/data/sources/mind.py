# Over 300 lines: one source format end to end; its read, check and write steps share one import
# state in sequence, and splitting would scatter the format's rules.
"""MIND (Microsoft News Dataset, release format) -> canonical tables.

A MIND directory holds two tab-separated files without a header:

    behaviors.tsv  ImpressionID, UserID, Time ("11/12/2019 2:14:46 PM", read as UTC: the release
                   names no zone), History (space-separated news ids clicked before the log window,
                   oldest first), Impressions (space-separated "N123-1" clicked / "N123-0" not)
    news.tsv       NewsID, Category, SubCategory, Title, Abstract, URL, TitleEntities, AbstractEntities

What they become:
- impressions: one row per Impressions token. request_id = ImpressionID, position = the token's
  0-based index in its line (a quarantined token leaves a gap), clicked from the label; dwell_s,
  survey and propensity null; shared and hidden False (MIND does not record them).
- items: one row per news.tsv line (Abstract, URL, entities not imported). Impressions of ids
  without a news row are kept; the dataset writer adds those ids to items with unknown features.
- users: the distinct UserIDs (MIND has no demographics).
- history: one History list per user (see below), one row per news id; ts and dwell_s null.

Decisions:
- Test split. Its Impressions are bare "N123" tokens without a label. A file is labelled or not as
  its first valid token says; tokens of the other form are quarantined, because a mixed file has no
  single meaning for `clicked`. An unlabelled file gives clicked=False on every row, meaning
  *unknown*: the manifest says `labelled: false` and carries a note.
- History. Every line repeats its user's History. The history table keeps one list per user: the
  longest, ties broken by the latest Time, then the later line. A line whose list equals the kept
  one, or is a prefix of it (an older snapshot of the same history), is merged into it; a list that
  conflicts is quarantined (field History), so no list is dropped silently.

Ledger units per file: behaviors.tsv line, impression token and history list (one per line that
passed the line checks), history item (ids in the kept lists); news.tsv line. Memory is bounded by
the batch (`BATCH_LINES`); across batches live one history list per user, a (user, line, length,
hash) record per line, and the user ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from feedrank.data.schema import HISTORY, IMPRESSIONS, ITEMS
from feedrank.data.sources.base import ImportContext
from feedrank.data.sources.checks import (
    BAD_SCHEMA,
    RowCheck,
    batches,
    concat_bad,
    count,
    split_bad_rows,
    time_checks,
    validated,
)
from feedrank.data.sources.text import Line, iter_lines, open_checked
from feedrank.data.validate import ROW, SeenKeys
from feedrank.errors import SourceNotFoundError

logger = logging.getLogger(__name__)

BEHAVIORS = "behaviors.tsv"
NEWS = "news.tsv"
BATCH_LINES = 100_000
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
BEHAVIORS_COLUMNS = ("ImpressionID", "UserID", "Time", "History", "Impressions")
NEWS_COLUMNS = (
    "NewsID", "Category", "SubCategory", "Title", "Abstract", "URL", "TitleEntities", "AbstractEntities",
)  # fmt: skip
# "N123-1" / "N123-0", or a bare "N123" (test split). "N1-7", "N1-", "-1" do not match.
_TOKEN = r"^([^-\s]+)(?:-([01]))?$"
BAD_TOKEN = "not a news id with label -0 or -1 (nor a bare news id as in the test split)"
MIXED = {
    True: "unlabelled token in a labelled file",
    False: "labelled token in an unlabelled (test-split) file",
}

# --- the adapter -----------------------------------------------------------------------------


@dataclass
class _State:
    """What the adapter carries across batches of behaviors.tsv."""

    labelled: bool | None = None
    seen_impressions: SeenKeys = field(default_factory=SeenKeys)
    users: pl.DataFrame | None = None  # user_id, _row (first line)
    history_lines: list[pl.DataFrame] = field(default_factory=list)  # user_id, _row, n, h
    best: pl.DataFrame | None = None  # per user: user_id, _row, ts, n, h, history (list)


def import_mind(source: Path, ctx: ImportContext) -> dict[str, Any]:
    """Import a MIND directory (behaviors.tsv + news.tsv); see the module docstring."""
    if not source.is_dir():
        raise SourceNotFoundError(source, "MIND directory (with behaviors.tsv and news.tsv)")
    behaviors = open_checked(source / BEHAVIORS)
    news = open_checked(source / NEWS)
    size = max(1, min(BATCH_LINES, ctx.options.batch_rows))
    started = time.perf_counter()

    _import_news(news, ctx, size)
    state = _State()
    for lines in batches(iter_lines(behaviors, max_line_bytes=ctx.options.max_line_bytes), size):
        _import_behaviors_batch(lines, state, ctx)
    _write_users(state, ctx)
    _write_history(behaviors, state, ctx)

    labelled = state.labelled is not False
    if not labelled:
        ctx.notes.append(
            f"{BEHAVIORS} has unlabelled impression tokens (MIND test split): clicked is False on "
            "every row and means unknown; do not train or evaluate on it"
        )
    ctx.notes.append(f"{BEHAVIORS} Time has no zone in the release; read as UTC")
    logger.info("imported MIND from %s in %.1f s", source, time.perf_counter() - started)
    return {"format": "mind", "labelled": labelled, "files": [BEHAVIORS, NEWS]}


def split_columns(lines: list[Line], columns: Sequence[str], file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split lines on tabs: (String frame with `_row` + one column per name, bad-line frame)."""
    good: list[list[str]] = []
    rows: list[int] = []
    bad: list[tuple[str, int, str, str, str]] = []
    for line in lines:
        if line.text is None:
            bad.append((file, line.number, "(line)", line.raw_preview, line.error or "unreadable line"))
            continue
        parts = line.text.split("\t")
        if len(parts) != len(columns):
            reason = f"expected {len(columns)} tab-separated columns, found {len(parts)}"
            bad.append((file, line.number, "(line)", line.text, reason))
            continue
        good.append(parts)
        rows.append(line.number)
    frame = pl.DataFrame(good, schema=dict.fromkeys(columns, pl.String), orient="row").with_columns(
        pl.Series(ROW, rows, pl.Int64)
    )
    return frame, pl.DataFrame(bad, schema=BAD_SCHEMA, orient="row")


def _nonblank(name: str) -> pl.Expr:
    stripped = pl.col(name).str.strip_chars()
    return pl.when(stripped != "").then(stripped).alias(name)


def _import_news(path: Path, ctx: ImportContext, size: int) -> None:
    """Write items from news.tsv (Abstract, URL and the entity columns are not imported)."""
    seen = SeenKeys()
    for lines in batches(iter_lines(path, max_line_bytes=ctx.options.max_line_bytes), size):
        before = ctx.quarantine.count
        frame, bad = split_columns(lines, NEWS_COLUMNS, NEWS)
        ctx.quarantine.add_frame(bad)
        items = frame.select(
            pl.col(ROW),
            pl.col("NewsID").alias("item_id"),
            _nonblank("Category").alias("category"),
            _nonblank("SubCategory").alias("subcategory"),
            _nonblank("Title").alias("title"),
        )
        out = validated(items, ITEMS, NEWS, ctx, seen)
        ctx.writer.write("items", out)
        count(ctx, NEWS, "line", read=len(lines), kept=out.height, since=before)


def _import_behaviors_batch(lines: list[Line], state: _State, ctx: ImportContext) -> None:
    """Line checks, then impression tokens, then history bookkeeping, for one batch of lines."""
    before = ctx.quarantine.count
    frame, bad = split_columns(lines, BEHAVIORS_COLUMNS, BEHAVIORS)
    lo, hi = ctx.options.time_range.bounds()
    frame = frame.with_columns(
        pl.col("Time")
        .str.strip_chars()
        .str.to_datetime(TIME_FORMAT, time_unit="us", strict=False)
        .dt.replace_time_zone("UTC")
        .alias("ts"),
        pl.col("Impressions").str.extract_all(r"\S+").alias("tokens"),
    )
    checks = [
        RowCheck(pl.col("ImpressionID").str.strip_chars() == "", "ImpressionID", "required value is missing"),
        RowCheck(pl.col("UserID").str.strip_chars() == "", "UserID", "required value is missing"),
        *time_checks("ts", "Time", lo, hi, example="11/12/2019 2:14:46 PM"),
        RowCheck(pl.col("tokens").list.len() == 0, "Impressions", "no impression tokens"),
    ]
    good, line_bad = split_bad_rows(frame, checks, file=BEHAVIORS)
    ctx.quarantine.add_frame(concat_bad([bad, line_bad]))
    good = good.with_columns(
        pl.col("ImpressionID").str.strip_chars().alias("request_id"),
        pl.col("UserID").str.strip_chars().alias("user_id"),
    )
    count(ctx, BEHAVIORS, "line", read=len(lines), kept=good.height, since=before)

    _import_tokens(good, state, ctx)
    _track_history(good, state)
    users = good.select("user_id", ROW)
    if state.users is not None:
        users = pl.concat([state.users, users])
    state.users = users.group_by("user_id").agg(pl.col(ROW).min())


def _import_tokens(good: pl.DataFrame, state: _State, ctx: ImportContext) -> None:
    """Explode the Impressions tokens of good lines into impression rows (vectorized)."""
    before = ctx.quarantine.count
    parts = pl.col("token").str.extract_groups(_TOKEN)
    tokens = (
        good.select(ROW, "request_id", "user_id", "ts", pl.col("tokens").alias("token"))
        .with_columns(pl.int_ranges(pl.col("token").list.len(), dtype=pl.Int32).alias("position"))
        .explode(["token", "position"], empty_as_null=False)
        .with_columns(parts.struct.field("1").alias("item_id"), parts.struct.field("2").alias("label"))
    )
    if state.labelled is None:
        valid = tokens.filter(pl.col("item_id").is_not_null())
        if valid.height:
            state.labelled = valid["label"][0] is not None
    checks = [RowCheck(pl.col("item_id").is_null(), "Impressions", BAD_TOKEN, pl.col("token"))]
    if state.labelled is not None:
        wrong_form = pl.col("label").is_null() if state.labelled else pl.col("label").is_not_null()
        checks.append(RowCheck(wrong_form, "Impressions", MIXED[state.labelled], pl.col("token")))
    ok, bad = split_bad_rows(tokens, checks, file=BEHAVIORS)
    ctx.quarantine.add_frame(bad)
    rows = ok.select(
        ROW, "request_id", "user_id", "item_id", "ts", "position",
        (pl.col("label") == "1").fill_null(False).alias("clicked"),
        pl.lit(False).alias("shared"), pl.lit(False).alias("hidden"),
    )  # fmt: skip
    out = validated(rows, IMPRESSIONS, BEHAVIORS, ctx, state.seen_impressions)
    ctx.writer.write("impressions", out)
    count(ctx, BEHAVIORS, "impression token", read=tokens.height, kept=out.height, since=before)


def _track_history(good: pl.DataFrame, state: _State) -> None:
    """Remember each line's History by length and hash, and the best list per user so far."""
    hist = good.select(
        "user_id", ROW, "ts", pl.col("History").str.extract_all(r"\S+").alias("history")
    ).with_columns(
        pl.col("history").list.len().alias("n"),
        pl.col("history").list.join(" ").hash(seed=0).alias("h"),
    )
    state.history_lines.append(hist.select("user_id", ROW, "n", "h"))
    candidates = hist if state.best is None else pl.concat([state.best, hist])
    state.best = _longest_per_user(candidates)


def _longest_per_user(df: pl.DataFrame) -> pl.DataFrame:
    """One row per user: the longest list; ties go to the latest Time, then the later line."""
    return df.sort("n", "ts", ROW).unique("user_id", keep="last")


def _write_history(path: Path, state: _State, ctx: ImportContext) -> None:
    """Reconcile every line's History with its user's kept list, then write the kept lists."""
    if state.best is None:
        return
    best = state.best.sort(ROW)
    lines = pl.concat(state.history_lines)
    state.history_lines = []
    differing = lines.join(best.select("user_id", pl.col("h").alias("best_h")), on="user_id").filter(
        (pl.col("h") != pl.col("best_h")) & (pl.col("n") > 0)
    )
    before = ctx.quarantine.count
    prefixes = _resolve_differing(path, differing, best, ctx) if differing.height else 0
    conflicts = ctx.quarantine.count - before
    kept = lines.height - differing.height + prefixes
    count(ctx, BEHAVIORS, "history list", read=lines.height, kept=kept, since=before)
    ctx.notes.append(
        f"{BEHAVIORS} History: {lines.height:,} lines carry one list each; one list per user is "
        f"kept ({best.height:,} users; the longest, ties: latest Time); "
        f"{lines.height - best.height - conflicts:,} repeats (equal or a prefix) merged, "
        f"{conflicts:,} conflicting lists quarantined"
    )

    nonempty = best.filter(pl.col("n") > 0)
    for offset in range(0, nonempty.height, BATCH_LINES):
        chunk = nonempty.slice(offset, BATCH_LINES)
        before = ctx.quarantine.count
        rows = (
            chunk.select("user_id", ROW, pl.col("history").alias("item_id"))
            .with_columns(pl.int_ranges(pl.col("item_id").list.len(), dtype=pl.Int32).alias("seq"))
            .explode(["item_id", "seq"], empty_as_null=False)
        )
        out = validated(rows, HISTORY, BEHAVIORS, ctx)
        ctx.writer.write("history", out)
        count(ctx, BEHAVIORS, "history item", read=int(chunk["n"].sum()), kept=out.height, since=before)


def _resolve_differing(path: Path, differing: pl.DataFrame, best: pl.DataFrame, ctx: ImportContext) -> int:
    """Second pass over the few lines whose History differs from the kept list of their user.

    Only hashes were kept per line, so the text is read again: a prefix of the kept list is merged
    (counted and returned), anything else is quarantined with its value.
    """
    wanted = dict(zip(differing[ROW].to_list(), differing["user_id"].to_list(), strict=True))
    users = best.filter(pl.col("user_id").is_in(differing["user_id"].implode()))
    kept = {user: (row, tokens) for user, row, tokens in users.select("user_id", ROW, "history").iter_rows()}
    prefixes = 0
    bad: list[tuple[str, int, str, str, str]] = []
    for line in iter_lines(path, max_line_bytes=ctx.options.max_line_bytes):
        user = wanted.get(line.number)
        if user is None or line.text is None:
            continue
        history = line.text.split("\t")[3]
        tokens = history.split()
        kept_row, kept_tokens = kept[user]
        if tokens == kept_tokens[: len(tokens)]:
            prefixes += 1
        else:
            reason = f"differs from the history kept for user {user} (line {kept_row}); not imported"
            bad.append((BEHAVIORS, line.number, "History", history, reason))
    ctx.quarantine.add_frame(pl.DataFrame(bad, schema=BAD_SCHEMA, orient="row"))
    return prefixes


def _write_users(state: _State, ctx: ImportContext) -> None:
    """One row per UserID of a line that passed the line checks, in order of first appearance."""
    if state.users is not None:
        # Ids were checked on their lines and are distinct here: nothing left to validate.
        ctx.writer.write("users", state.users.sort(ROW).drop(ROW))
