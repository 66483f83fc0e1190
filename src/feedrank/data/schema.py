"""The canonical tables: the single source of truth for column names, types and meaning.

Every source adapter (MIND, EB-NeRD, generic Parquet/CSV, the simulator) produces exactly these
tables; everything downstream (features, training, serving, evaluation) reads only these.

Identifiers are strings in every table so that logs with string ids (MIND's "U123", "N456") and
integer ids (EB-NeRD) share one type; feature code hashes them into embedding buckets. Timestamps
are microsecond UTC datetimes.

Columns added after a table's first release are nullable and sit at its end (`CONTEXT_COLUMNS`
of impressions): a dataset written before them still loads, the missing columns read as null.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SCHEMA_VERSION = 1

UTC_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    dtype: pl.DataType
    nullable: bool
    doc: str


@dataclass(frozen=True)
class Table:
    """A canonical table: its columns and the columns that identify a row uniquely."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    doc: str

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        """Columns that must be present and non-null in every row."""
        return [c.name for c in self.columns if not c.nullable]

    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema())


IMPRESSIONS = Table(
    name="impressions",
    doc="One row per item shown to a user in a feed request (click-only logs: engaged rows only).",
    key=("request_id", "item_id"),
    columns=(
        Column("request_id", pl.String(), False, "feed request (slate) the item was shown in"),
        Column("user_id", pl.String(), False, "user who saw the item"),
        Column("item_id", pl.String(), False, "item shown"),
        Column("ts", UTC_TS, False, "time the request was served (UTC)"),
        Column("position", pl.Int32(), True, "0-based slot in the slate; null when unknown"),
        Column("clicked", pl.Boolean(), False, "the user opened the item"),
        Column("dwell_s", pl.Float32(), True, "seconds spent on the item after a click; null when unknown"),
        Column("shared", pl.Boolean(), False, "the user shared the item"),
        Column("hidden", pl.Boolean(), False, "the user asked not to see it ('not interested')"),
        Column("survey", pl.Float32(), True, "explicit rating from an occasional survey (1-5), usually null"),
        Column("propensity", pl.Float64(), True, "logging policy's probability of this choice, if known"),
        Column("session_id", pl.String(), True, "the source's session id, when it has one"),
        # The request's context as the source codes it (Globo.com: integer codes); null when unknown.
        Column("environment", pl.String(), True, "request context: platform / environment code"),
        Column("device_group", pl.String(), True, "request context: device group code"),
        Column("os", pl.String(), True, "request context: operating system code"),
        Column("country", pl.String(), True, "request context: country code"),
        Column("region", pl.String(), True, "request context: region code"),
        Column("referrer_type", pl.String(), True, "request context: how the user arrived (referrer type)"),
    ),
)

# The request-context columns of impressions (features of the request, not of the item).
CONTEXT_COLUMNS = ("environment", "device_group", "os", "country", "region", "referrer_type")

ITEMS = Table(
    name="items",
    doc="One row per item with its content features; every feature may be unknown.",
    key=("item_id",),
    columns=(
        Column("item_id", pl.String(), False, "item identifier"),
        Column("publisher_id", pl.String(), True, "publisher or source of the item"),
        Column("category", pl.String(), True, "top-level category"),
        Column("subcategory", pl.String(), True, "finer category"),
        Column("content_type", pl.String(), True, "article, video, photo, ..."),
        Column("published_ts", UTC_TS, True, "publication time (UTC)"),
        Column("title", pl.String(), True, "headline"),
    ),
)

USERS = Table(
    name="users",
    doc="One row per user with optional demographics (the latest known values).",
    key=("user_id",),
    columns=(
        Column("user_id", pl.String(), False, "user identifier"),
        Column("age_bucket", pl.String(), True, "age bucket, e.g. '25-34'"),
        Column("gender", pl.String(), True, "gender code as given by the source"),
        Column("country", pl.String(), True, "country or region code"),
        Column("device", pl.String(), True, "device class: desktop, mobile, tablet"),
    ),
)

HISTORY = Table(
    name="history",
    doc="Engagements that happened before the log window (MIND's History column, EB-NeRD history).",
    key=("user_id", "seq"),
    columns=(
        Column("user_id", pl.String(), False, "user identifier"),
        Column("seq", pl.Int32(), False, "0-based order within the user's history, oldest first"),
        Column("item_id", pl.String(), False, "item engaged with"),
        Column("ts", UTC_TS, True, "time of the engagement; null when the source does not say"),
        Column("dwell_s", pl.Float32(), True, "seconds spent on the item; null when unknown"),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (IMPRESSIONS, ITEMS, USERS, HISTORY)}
