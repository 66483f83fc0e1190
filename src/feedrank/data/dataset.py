"""A canonical dataset on disk: one directory of Parquet shards per table plus a manifest.

    DIR/
      manifest.json            schema version, source, row counts, time span, quarantine, ledger
      impressions/part-00000.parquet ...
      items/part-00000.parquet
      users/part-00000.parquet
      history/part-00000.parquet
      quarantine.jsonl         bad input rows, when there were any

`DatasetWriter` streams shards into a temporary directory and renames it into place only when the
dataset is complete, so a reader never sees half a dataset. `Dataset` reads one lazily.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from feedrank.data.schema import SCHEMA_VERSION, TABLES, Table
from feedrank.errors import DatasetError, SourceNotFoundError

MANIFEST = "manifest.json"
QUARANTINE_FILE = "quarantine.jsonl"
DEFAULT_SHARD_ROWS = 1_000_000

# Which column gives each table's time span in the manifest.
_TIME_COLUMN = {"impressions": "ts", "history": "ts", "items": "published_ts"}


def conform(df: pl.DataFrame, table: Table) -> pl.DataFrame:
    """Select the table's columns in order and cast them to its types (adds missing nullable ones)."""
    exprs = []
    for col in table.columns:
        if col.name in df.columns:
            exprs.append(pl.col(col.name).cast(col.dtype))
        elif col.nullable:
            exprs.append(pl.lit(None, dtype=col.dtype).alias(col.name))
        else:
            raise DatasetError(f"table {table.name!r} is missing required column {col.name!r}")
    return df.select(exprs)


class IdSet:
    """Distinct string ids held as Arrow strings: a Python set of str costs ~100 bytes per id,
    which for a log of millions of users was most of an import's memory."""

    _COMPACT_EVERY = 16  # parts kept before they are merged into one distinct column

    def __init__(self) -> None:
        self._parts: list[pl.Series] = []

    def update(self, ids: pl.Series) -> None:
        self._parts.append(ids.drop_nulls().unique())
        if len(self._parts) > self._COMPACT_EVERY:
            self._compact()

    def _compact(self) -> pl.Series:
        merged = pl.concat(self._parts).unique() if self._parts else pl.Series([], dtype=pl.String)
        self._parts = [merged]
        return merged

    def difference(self, other: IdSet) -> pl.Series:
        """The ids here and not in `other`, sorted."""
        mine = self._compact()
        return mine.filter(~mine.is_in(other._compact().implode())).sort()


@dataclass
class _TableState:
    rows: int = 0
    shards: int = 0
    buffer: list[pl.DataFrame] = field(default_factory=list)
    buffered: int = 0
    ts_min: datetime | None = None
    ts_max: datetime | None = None


class DatasetWriter:
    """Writes a canonical dataset atomically: shards go to DIR.tmp-<pid>, renamed to DIR at finish."""

    def __init__(
        self, out_dir: Path, *, shard_rows: int = DEFAULT_SHARD_ROWS, overwrite: bool = False
    ) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise DatasetError(f"output directory already exists: {self.out_dir} (use --overwrite)")
        self.tmp_dir = self.out_dir.with_name(f"{self.out_dir.name}.tmp-{os.getpid()}")
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir(parents=True)
        self.overwrite = overwrite
        self.shard_rows = shard_rows
        self._tables = {name: _TableState() for name in TABLES}
        # Ids referenced by events and ids described by entity tables, to complete the latter.
        self._referenced = {"item_id": IdSet(), "user_id": IdSet()}
        self._described = {"item_id": IdSet(), "user_id": IdSet()}

    @property
    def quarantine_path(self) -> Path:
        """Where the adapter's quarantine file goes; it moves with the dataset at finish."""
        return self.tmp_dir / QUARANTINE_FILE

    def write(self, table_name: str, df: pl.DataFrame) -> None:
        """Append rows to a table; they are conformed to the canonical schema first."""
        table = TABLES[table_name]
        df = conform(df, table)
        state = self._tables[table_name]
        state.rows += df.height
        self._track_ids(table_name, df)
        ts_col = _TIME_COLUMN.get(table_name)
        if ts_col is not None and df.height:
            lo, hi = df.select(pl.col(ts_col).min().alias("lo"), pl.col(ts_col).max().alias("hi")).row(0)
            if lo is not None:
                state.ts_min = lo if state.ts_min is None else min(state.ts_min, lo)
                state.ts_max = hi if state.ts_max is None else max(state.ts_max, hi)
        state.buffer.append(df)
        state.buffered += df.height
        if state.buffered >= self.shard_rows:
            self._flush(table_name)

    def _track_ids(self, table_name: str, df: pl.DataFrame) -> None:
        if table_name in ("impressions", "history"):
            for col in ("item_id", "user_id"):
                self._referenced[col].update(df.get_column(col))
        elif table_name == "items":
            self._described["item_id"].update(df.get_column("item_id"))
        elif table_name == "users":
            self._described["user_id"].update(df.get_column("user_id"))

    def complete_entities(self) -> dict[str, int]:
        """Add a row with unknown features for every item and user that events mention but the
        items / users tables do not describe, so downstream code can treat those tables as the
        full catalog and population. Returns how many rows were added per table."""
        added: dict[str, int] = {}
        for table_name, col in (("items", "item_id"), ("users", "user_id")):
            missing = self._referenced[col].difference(self._described[col])
            added[table_name] = missing.len()
            if missing.len():
                self.write(table_name, pl.DataFrame({col: missing}, schema={col: pl.String}))
        return added

    def _flush(self, table_name: str) -> None:
        state = self._tables[table_name]
        if not state.buffer:
            return
        df = pl.concat(state.buffer, rechunk=False)
        state.buffer, state.buffered = [], 0
        shard_dir = self.tmp_dir / table_name
        shard_dir.mkdir(exist_ok=True)
        df.write_parquet(shard_dir / f"part-{state.shards:05d}.parquet", compression="zstd")
        state.shards += 1

    def finish(self, *, source: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """Flush, write the manifest and move the dataset into place. Returns its directory."""
        for name, state in self._tables.items():
            self._flush(name)
            if state.shards == 0:  # every table exists, possibly empty, so readers need no special case
                shard_dir = self.tmp_dir / name
                shard_dir.mkdir(exist_ok=True)
                TABLES[name].empty().write_parquet(shard_dir / "part-00000.parquet")
                state.shards = 1
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            "tables": {
                name: {
                    "rows": s.rows,
                    "shards": s.shards,
                    "time_span": [_iso(s.ts_min), _iso(s.ts_max)] if s.ts_min is not None else None,
                }
                for name, s in self._tables.items()
            },
        }
        manifest.update(extra or {})
        (self.tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync_dir(self.tmp_dir)
        if self.out_dir.exists() and self.overwrite:
            shutil.rmtree(self.out_dir)
        self.tmp_dir.rename(self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _fsync_dir(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())


class Dataset:
    """A canonical dataset directory opened for reading."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: Path | str) -> Dataset:
        path = Path(path)
        if not path.exists():
            raise SourceNotFoundError(path, "dataset directory")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise DatasetError(f"{path} is not a feedrank dataset: {MANIFEST} is missing")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{manifest_path}: unreadable manifest: {exc}") from exc
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DatasetError(
                f"{manifest_path}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
            )
        for name in TABLES:
            if not (path / name).is_dir():
                raise DatasetError(f"{path}: table directory {name}/ is missing")
        return cls(path, manifest)

    @property
    def click_only(self) -> bool:
        return bool(self.manifest.get("click_only", False))

    def scan(self, table: str) -> pl.LazyFrame:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
        # Shards written before a nullable column was added lack it: it reads as null.
        return pl.scan_parquet(
            self.path / table / "*.parquet",
            schema=TABLES[table].polars_schema(),
            missing_columns="insert",
        )

    def read(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def rows(self, table: str) -> int:
        return int(self.manifest["tables"][table]["rows"])
