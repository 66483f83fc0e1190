"""Static features: hashed id vocabularies, item content features, user demographics, freshness.

Ids are hashed into a fixed number of buckets with a stable hash (BLAKE2b of the UTF-8 id), so the
same id maps to the same bucket in training, in a bundle and in the service, with no vocabulary to
ship and no out-of-vocabulary case: an item published after training gets a bucket whose embedding
was never trained, and its content features carry it (the towers are trained with id dropout so
that path is learned). Bucket 0 is reserved for "missing" and padding.

Time-dependent features (histories, counters) live in data/history.py.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.schema import USERS
from feedrank.data.timeline import NO_TIME

US_PER_HOUR = 3_600_000_000
DEMOGRAPHICS = tuple(c.name for c in USERS.columns if c.name != "user_id")  # age_bucket, gender, ...


@dataclass(frozen=True)
class FeatureConfig:
    """Bucket counts of every hashed vocabulary and the shape of time features."""

    user_buckets: int = 100_000
    item_buckets: int = 100_000
    publisher_buckets: int = 4_096
    category_buckets: int = 512
    subcategory_buckets: int = 2_048
    content_type_buckets: int = 16
    demographic_buckets: int = 64
    history_len: int = 50
    # Item age edges in hours: bucket 0 = unknown, 1 = < 1 h (or published "after" the impression),
    # then one bucket per interval, the last one open-ended.
    freshness_edges_h: tuple[float, ...] = (1, 3, 6, 12, 24, 48, 96, 168)

    @property
    def num_freshness_buckets(self) -> int:
        return len(self.freshness_edges_h) + 2

    def table_sizes(self) -> dict[str, int]:
        return {
            "user_id": self.user_buckets,
            "item_id": self.item_buckets,
            "publisher": self.publisher_buckets,
            "category": self.category_buckets,
            "subcategory": self.subcategory_buckets,
            "content_type": self.content_type_buckets,
            "freshness": self.num_freshness_buckets,
            **dict.fromkeys(DEMOGRAPHICS, self.demographic_buckets),
        }


def stable_bucket(value: str, num_buckets: int, salt: str = "") -> int:
    """Bucket in [1, num_buckets) of one id; stable across processes, machines and versions."""
    digest = hashlib.blake2b(f"{salt}\x1f{value}".encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (num_buckets - 1)


def hash_column(values: pl.Series, num_buckets: int, salt: str = "") -> np.ndarray:
    """(N,) int64 buckets of a string column; null → 0. Hashes each distinct value once."""
    uniques = values.drop_nulls().unique()
    mapping = pl.DataFrame(
        {
            "value": uniques,
            "bucket": [stable_bucket(v, num_buckets, salt) for v in uniques.to_list()],
        },
        schema={"value": pl.String, "bucket": pl.Int64},
    )
    joined = pl.DataFrame({"value": values.cast(pl.String)}).join(
        mapping, on="value", how="left", maintain_order="left"
    )
    return joined.get_column("bucket").fill_null(0).to_numpy().astype(np.int64)


def to_us(ts: pl.Series) -> np.ndarray:
    """(N,) int64 microseconds since the epoch; null → NO_TIME."""
    return ts.dt.epoch("us").fill_null(NO_TIME).to_numpy().astype(np.int64)


def freshness_bucket(ts_us: np.ndarray, published_us: np.ndarray, edges_h: tuple[float, ...]) -> np.ndarray:
    """(N,) item age bucket at time ts: 0 unknown, 1 younger than the first edge, ... (see FeatureConfig)."""
    age_h = (ts_us - published_us) / US_PER_HOUR
    bucket = 1 + np.searchsorted(np.asarray(edges_h, dtype=np.float64), np.maximum(age_h, 0.0), side="right")
    return np.where(published_us == NO_TIME, 0, bucket).astype(np.int64)


@dataclass(frozen=True)
class ItemCatalog:
    """Content features of every known item, row-aligned; `index` maps item id → row."""

    item_ids: np.ndarray  # (I,) object (str)
    id_bucket: np.ndarray  # (I,) int64
    publisher: np.ndarray  # (I,) int64
    category: np.ndarray  # (I,) int64
    subcategory: np.ndarray  # (I,) int64
    content_type: np.ndarray  # (I,) int64
    published_us: np.ndarray  # (I,) int64, NO_TIME when unknown
    index: dict[str, int]

    def __len__(self) -> int:
        return int(self.item_ids.size)

    def rows(self, item_ids: pl.Series) -> np.ndarray:
        """(N,) catalog rows of the given ids; -1 for ids not in the catalog."""
        return _rows(self.index, item_ids)

    def lookup(self, column: str, shifted_rows: np.ndarray) -> np.ndarray:
        """column[row] for row = shifted_rows - 1, and 0 where shifted_rows == 0 (padding)."""
        padded = self._padded.get(column)
        if padded is None:  # built once per column: serving looks up 500 rows of a 1M catalog
            table = getattr(self, column)
            padded = np.concatenate([np.zeros(1, dtype=table.dtype), table])
            self._padded[column] = padded
        out: np.ndarray = padded[shifted_rows]
        return out

    @functools.cached_property
    def _padded(self) -> dict[str, np.ndarray]:
        return {}


@dataclass(frozen=True)
class UserDirectory:
    """Id bucket and demographic buckets of every known user, row-aligned.

    Ids stay an Arrow string column: a Python dict (and a Python string per user) took about
    100 bytes a user, the largest part of the directory for a log with millions of users.
    """

    ids: pl.Series  # (U,) String, distinct
    id_bucket: np.ndarray  # (U,) int64
    demographics: np.ndarray  # (U, len(DEMOGRAPHICS)) int64

    def __len__(self) -> int:
        return int(self.ids.len())

    @functools.cached_property
    def user_ids(self) -> np.ndarray:
        """(U,) object (str): the ids as Python strings, made on first use (serving's candidate lists)."""
        return self.ids.to_numpy().astype(object)

    @functools.cached_property
    def codes(self) -> pl.DataFrame:
        """user_id → row, for `rows` (a hash join)."""
        return pl.DataFrame({"user_id": self.ids, "row": np.arange(len(self), dtype=np.int64)})

    def rows(self, user_ids: pl.Series) -> np.ndarray:
        """(N,) directory rows of the given ids; -1 for unknown ids."""
        return id_rows(self.codes, "user_id", user_ids)


def build_catalog(items: pl.DataFrame, cfg: FeatureConfig) -> ItemCatalog:
    items = items.unique("item_id", keep="first", maintain_order=True)
    ids = items.get_column("item_id")
    return ItemCatalog(
        item_ids=ids.to_numpy().astype(object),
        id_bucket=hash_column(ids, cfg.item_buckets, "item"),
        publisher=hash_column(items.get_column("publisher_id"), cfg.publisher_buckets, "publisher"),
        category=hash_column(items.get_column("category"), cfg.category_buckets, "category"),
        subcategory=hash_column(items.get_column("subcategory"), cfg.subcategory_buckets, "subcategory"),
        content_type=hash_column(items.get_column("content_type"), cfg.content_type_buckets, "content_type"),
        published_us=to_us(items.get_column("published_ts")),
        index={v: i for i, v in enumerate(ids.to_list())},
    )


def build_users(users: pl.DataFrame, cfg: FeatureConfig) -> UserDirectory:
    users = users.unique("user_id", keep="last", maintain_order=True)
    ids = users.get_column("user_id")
    demo = np.stack(
        [hash_column(users.get_column(d), cfg.demographic_buckets, d) for d in DEMOGRAPHICS], axis=1
    ).reshape(users.height, len(DEMOGRAPHICS))
    return UserDirectory(
        ids=ids.cast(pl.String).rename("user_id"),
        id_bucket=hash_column(ids, cfg.user_buckets, "user"),
        demographics=demo,
    )


def id_rows(codes: pl.DataFrame, column: str, ids: pl.Series) -> np.ndarray:
    """(N,) the `row` of each id in `codes` (columns `column`, row), -1 where absent: a hash join,
    so no Python object is made per id."""
    frame = pl.DataFrame({column: ids.cast(pl.String)})
    joined = frame.join(codes, on=column, how="left", maintain_order="left")
    return joined.get_column("row").fill_null(-1).to_numpy().astype(np.int64)


def _rows(index: dict[str, int], ids: pl.Series) -> np.ndarray:
    get = index.get
    return np.fromiter((get(v, -1) for v in ids.to_list()), dtype=np.int64, count=ids.len())


def table_memory(cfg: FeatureConfig, dim: int, bytes_per_value: int = 4) -> dict[str, int]:
    """Bytes each embedding table of width `dim` takes, for the report printed before training."""
    return {name: rows * dim * bytes_per_value for name, rows in cfg.table_sizes().items()}
