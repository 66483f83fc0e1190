"""Two-tower training examples in bounded memory: compact rows on disk, features per batch.

`retrieval_rows` reads the train part one impression shard at a time and keeps, per engaged
impression, only what identifies it: hashed user bucket, user and item rows, time, labels and
weight (about 60 bytes; 80 more per hard negative). `train/shards.write_streams` deals those rows
into per-rank stream files; `RetrievalBatches` turns a batch of rows into the model's inputs
(`RetrievalArrays`, as `retrieval_examples` gives) when the batch is drawn: the user's last-N
history, item features, logQ and the live-catalog negatives. The history and catalog tables are the feature
space's own, so nothing per example is ever materialised for the whole log.

Catalog negatives come from a counter-based hash of (seed, epoch, example, draw), not a shared
generator: an example gets the same negatives whichever rank, batch or resume reads it, and new
ones every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.data.example_arrays import LABELS, Arrays, RetrievalArrays
from feedrank.data.examples import FeatureSpace, label_arrays, live_catalog_draws
from feedrank.data.features import hash_column, to_us

_COLUMNS = ("request_id", "user_id", "item_id", "ts", "clicked", "dwell_s", "shared", "hidden")
_GOLDEN = np.array([0x9E3779B97F4A7C15], dtype=np.uint64)


def retrieval_rows(
    space: FeatureSpace,
    train: Dataset,
    weight: Callable[[Arrays], np.ndarray],
    hard_negatives: int = 0,
    window_h: float = 0.0,
) -> Iterator[Arrays]:
    """Per shard of the train impressions: the rows of `retrieval_examples`' positives that carry
    a positive `weight(labels)`, with `example` numbering them in shard order (the key of their
    random draws). With `window_h` > 0 only clicks in the last `window_h` hours before the train
    part's latest event.

    Columns: example, user_bucket, user_row, item_row, ts_us, y_* labels, weight, and with
    `hard_negatives` > 0 `neg_row` (P, hard_negatives) of shown-not-clicked items of the request.
    """
    negatives = _request_negatives(train, hard_negatives) if hard_negatives > 0 else None
    since = window_start(train, window_h)
    numbered = 0
    for shard in sorted((train.path / "impressions").glob("*.parquet")):
        pos = pl.read_parquet(shard, columns=list(_COLUMNS)).filter(pl.col("clicked"))
        if since is not None:
            pos = pos.filter(pl.col("ts") > since)
        rows = space.catalog.rows(pos.get_column("item_id"))
        out: Arrays = label_arrays(pos)
        out["weight"] = weight(out)
        keep = (rows >= 0) & (out["weight"] > 0)
        if not keep.all():  # copy only when something is dropped
            pos, rows = pos.filter(pl.Series(keep)), rows[keep]
            out = {k: v[keep] for k, v in out.items()}
        users = pos.get_column("user_id")
        out["user_bucket"] = hash_column(users, space.config.user_buckets, "user")
        out["user_row"] = space.users.rows(users)
        out["item_row"] = rows
        out["ts_us"] = to_us(pos.get_column("ts"))
        if negatives is not None:
            out["neg_row"] = _negative_rows(space, pos, negatives, hard_negatives)
        out["example"] = numbered + np.arange(rows.size, dtype=np.int64)
        numbered += rows.size
        if rows.size:
            yield out


def window_start(train: Dataset, window_h: float) -> datetime | None:
    """The time `window_h` hours before the train part's latest event (None: no window, or no
    events); rows strictly after it are in the window, as `train.run.recent_part` keeps them."""
    if window_h <= 0:
        return None
    latest = train.scan("impressions").select(pl.col("ts").max()).collect().item()
    return None if latest is None else latest - timedelta(hours=window_h)


def window_clicks(train: Dataset, window_h: float) -> int:
    """How many clicks of the train part `retrieval_rows` reads with this `window_h`."""
    clicked = train.scan("impressions").filter(pl.col("clicked"))
    since = window_start(train, window_h)
    if since is not None:
        clicked = clicked.filter(pl.col("ts") > since)
    return int(clicked.select(pl.len()).collect().item() or 0)


def _request_negatives(train: Dataset, k: int) -> pl.DataFrame:
    """request_id → up to k unclicked item ids, grouped by polars' streaming engine."""
    return (
        train.scan("impressions")
        .filter(~pl.col("clicked"))
        .group_by("request_id", maintain_order=True)
        .agg(pl.col("item_id").head(k).alias("negs"))
        .collect(engine="streaming")
    )


def _negative_rows(space: FeatureSpace, pos: pl.DataFrame, negatives: pl.DataFrame, k: int) -> np.ndarray:
    """(P, k) catalog rows of each positive's request negatives, -1 padded."""
    joined = pos.select("request_id").join(negatives, on="request_id", how="left", maintain_order="left")
    lists = joined.get_column("negs")
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = space.catalog.rows(lists.explode().drop_nulls())
    out = np.full((pos.height, k), -1, dtype=np.int64)
    row = np.repeat(np.arange(pos.height), lengths)
    col = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = flat
    return out


def uniforms(seed: int, epoch: int, keys: np.ndarray, k: int) -> np.ndarray:
    """(N, k) floats in [0, 1) that depend only on (seed, epoch, key, column): splitmix64."""
    # uint64 arrays (never scalars) wrap silently, which the mixing relies on.
    salt = np.array([(seed * 1_000_003 + epoch) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) * _GOLDEN
    counters: np.ndarray = np.asarray(keys, dtype=np.uint64)[:, None] * np.uint64(k)
    counters = counters + np.arange(k, dtype=np.uint64)
    z: np.ndarray = (counters ^ salt) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    out: np.ndarray = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return out


@dataclass(frozen=True)
class RetrievalBatches:
    """Rows of `retrieval_rows` → the two-tower's examples (`arrays(rows, epoch)`)."""

    space: FeatureSpace
    catalog_negatives: int = 0
    live_window_h: float = 48.0
    seed: int = 0

    def arrays(self, rows: Arrays, epoch: int) -> RetrievalArrays:
        space = self.space
        ts, items = rows["ts_us"], rows["item_row"]
        shown = catalog = None
        if "neg_row" in rows:
            neg = rows["neg_row"]
            width = max(1, int((neg >= 0).sum(axis=1).max(initial=0)))  # a batch's widest slate
            neg = neg[:, :width]
            shown = space.item_arrays(neg, np.repeat(ts[:, None], width, axis=1))
        if self.catalog_negatives > 0:
            u = uniforms(self.seed, epoch, rows["example"], self.catalog_negatives)
            cat = live_catalog_draws(space, ts, u, self.live_window_h)
            cat = np.where(cat == items[:, None], -1, cat)  # a draw of the positive itself is no negative
            catalog = space.item_arrays(cat, np.repeat(ts[:, None], self.catalog_negatives, axis=1))
        return RetrievalArrays(
            user=space.user_arrays_at(rows["user_bucket"], rows["user_row"], ts),
            item=space.item_arrays(items, ts),
            labels={name: rows[name] for name in LABELS},
            ts_us=ts,
            logq=space.item_logq[items].astype(np.float32),
            weight=rows["weight"],
            shown=shown,
            catalog=catalog,
        )
