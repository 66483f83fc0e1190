"""Static features hash stably; time features are leak-free (truncating the log at t changes nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from feedrank.data.dataset import conform
from feedrank.data.features import (
    FeatureConfig,
    build_catalog,
    build_users,
    freshness_bucket,
    hash_column,
    stable_bucket,
    to_us,
)
from feedrank.data.history import COUNTER_NAMES, build_past_events
from feedrank.data.schema import ITEMS, USERS
from feedrank.data.timeline import NO_TIME

T0 = datetime(2024, 3, 1, tzinfo=UTC)
H = 3_600_000_000


def test_stable_bucket_is_fixed_and_in_range() -> None:
    # a fixed expectation: if the hash ever changes, every saved model's embeddings change meaning
    assert stable_bucket("N123", 1000, "item") == stable_bucket("N123", 1000, "item")
    assert stable_bucket("N123", 1000, "item") != stable_bucket("N123", 1000, "user")
    buckets = hash_column(pl.Series(["a", None, "b", "a"]), 50)
    assert buckets[0] == buckets[3] and buckets[1] == 0
    assert ((buckets[[0, 2, 3]] >= 1) & (buckets[[0, 2, 3]] < 50)).all()
    assert (
        stable_bucket("N123", 1000, "item")
        == 1
        + int.from_bytes(__import__("hashlib").blake2b(b"item\x1fN123", digest_size=8).digest(), "little")
        % 999
    )


def test_freshness_buckets() -> None:
    published = np.array([0, 0, 0, 0, NO_TIME, 10 * H])
    ts = np.array([0, 2 * H, 30 * H, 1000 * H, 5 * H, 5 * H])
    got = freshness_bucket(ts, published, (1, 3, 6, 12, 24, 48, 96, 168))
    # <1h → 1, 2h → 2 ([1,3)), 30h → 6 ([24,48)), 1000h → 9 (>=168), unknown → 0, future → 1
    assert got.tolist() == [1, 2, 6, 9, 0, 1]


def _log() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(0)
    n = 400
    items = pl.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(30)],
            "publisher_id": [f"p{k % 4}" for k in range(30)],
            "category": [f"c{k % 5}" for k in range(30)],
            "published_ts": [T0 + timedelta(hours=k) for k in range(30)],
        }
    )
    users = pl.DataFrame({"user_id": [f"u{k}" for k in range(10)], "country": ["dk", "us"] * 5})
    impressions = pl.DataFrame(
        {
            "request_id": [f"r{k // 5}" for k in range(n)],
            "user_id": [f"u{rng.integers(10)}" for _ in range(n)],
            "item_id": [f"i{rng.integers(30)}" for _ in range(n)],
            "ts": [T0 + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 3000, n))],
            "clicked": rng.random(n) < 0.3,
        }
    )
    history = pl.DataFrame(
        {"user_id": ["u1", "u1"], "seq": [0, 1], "item_id": ["i0", "i2"], "ts": [None, None]},
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    return conform(items, ITEMS), conform(users, USERS), impressions, history


def test_histories_and_counters_are_leak_free() -> None:
    cfg = FeatureConfig()
    items, users, impressions, history = _log()
    catalog, directory = build_catalog(items, cfg), build_users(users, cfg)
    full = build_past_events(history, impressions, catalog, directory, ctr_prior=0.1)
    cut = T0 + timedelta(minutes=1500)
    truncated = build_past_events(
        history, impressions.filter(pl.col("ts") < cut), catalog, directory, ctr_prior=0.1
    )
    queries = impressions.filter(pl.col("ts") <= cut)  # includes rows at exactly t = cut
    u = directory.rows(queries.get_column("user_id"))
    i = catalog.rows(queries.get_column("item_id"))
    t = to_us(queries.get_column("ts"))
    assert np.array_equal(full.history(u, t, 50), truncated.history(u, t, 50))
    assert np.array_equal(full.counters(u, i, t, catalog), truncated.counters(u, i, t, catalog))
    assert full.counters(u, i, t, catalog).shape == (queries.height, len(COUNTER_NAMES))
    # and the truncation really removed information that later queries would see
    later = to_us(pl.Series([cut + timedelta(days=3)] * 3))
    assert not np.array_equal(full.history(u[:3], later, 50), truncated.history(u[:3], later, 50))


def test_history_starts_with_the_pre_window_history() -> None:
    cfg = FeatureConfig()
    items, users, impressions, history = _log()
    catalog, directory = build_catalog(items, cfg), build_users(users, cfg)
    past = build_past_events(history, impressions.head(0), catalog, directory, ctr_prior=0.1)
    got = past.history(directory.rows(pl.Series(["u1", "u2"])), np.array([to_us(pl.Series([T0]))[0]] * 2), 3)
    assert got.tolist() == [[0, 1, 3], [0, 0, 0]]  # rows of i0 and i2, + 1
