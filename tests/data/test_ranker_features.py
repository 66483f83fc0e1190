"""Recency, co-visitation and session features: hand-checked values, and no leakage for any feature.

The leakage test rebuilds the indexes from the log truncated to the events strictly before each
query time t and asks for the features at t: every feature must come out identical to what the
full log gives. A deliberately leaky variant (the log up to and including t) must differ, so the
comparison is shown to catch a leak.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from feedrank.data.dataset import conform
from feedrank.data.features import (
    FeatureConfig,
    ItemCatalog,
    UserDirectory,
    build_catalog,
    build_users,
    to_us,
)
from feedrank.data.history import (
    AFFINITY_NAMES,
    COUNTER_NAMES,
    DWELL_NAMES,
    NEWS_FEATURES,
    NEWS_NOW_NAMES,
    SEGMENT_NAMES,
    SESSION_COLUMNS,
    PastEvents,
    build_past_events,
)
from feedrank.data.live_features import serving_features
from feedrank.data.schema import ITEMS, USERS

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _world(seed: int = 0) -> tuple[ItemCatalog, UserDirectory, pl.DataFrame, pl.DataFrame]:
    """Six users with bursts of requests (sessions) over two days; a third of items lack a time."""
    rng = np.random.default_rng(seed)
    items = pl.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(25)],
            "publisher_id": [f"p{k % 4}" for k in range(25)],
            "category": [f"c{k % 5}" for k in range(25)],
            "subcategory": [f"c{k % 5}s{k % 2}" for k in range(25)],
            "content_type": [("article", "video")[k % 3 == 1] for k in range(25)],
            "published_ts": [None if k % 3 == 0 else T0 + timedelta(hours=k) for k in range(25)],
        },
        schema_overrides={"published_ts": pl.Datetime("us", "UTC")},
    )
    users = pl.DataFrame(
        {"user_id": [f"u{k}" for k in range(6)], "age_bucket": ["a", "b", "a", "b", "a", None]}
    )
    rows: list[dict[str, object]] = []
    for _ in range(90):
        user = f"u{rng.integers(6)}"
        ts = T0 + MIN * int(rng.integers(0, 2 * 24 * 60))
        for _ in range(int(rng.integers(1, 4))):  # a burst: requests minutes apart, one session
            shown = rng.choice(25, size=4, replace=False)
            for pos, item in enumerate(shown.tolist()):
                rows.append(
                    {"request_id": f"r{len(rows)}", "user_id": user, "item_id": f"i{item}", "ts": ts,
                     "position": pos, "clicked": bool(rng.random() < 0.35),
                     "dwell_s": 3.0 + 7.0 * (len(rows) * 37 % 11)}
                )  # fmt: skip
            ts += MIN * int(rng.integers(1, 12))
    impressions = pl.DataFrame(rows).sort("ts")
    history = pl.DataFrame(
        {"user_id": ["u1", "u1"], "seq": [0, 1], "item_id": ["i0", "i2"], "ts": [None, None]},
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    cfg = FeatureConfig()
    return (
        build_catalog(conform(items, ITEMS), cfg),
        build_users(conform(users, USERS), cfg),
        impressions,
        history,
    )


def _past(
    catalog: ItemCatalog, users: UserDirectory, impressions: pl.DataFrame, history: pl.DataFrame
) -> PastEvents:
    return build_past_events(history, impressions, catalog, users, ctr_prior=0.2)


ALL_FEATURES = NEWS_FEATURES + NEWS_NOW_NAMES + AFFINITY_NAMES + DWELL_NAMES + SEGMENT_NAMES


def _features(past: PastEvents, catalog: ItemCatalog, users: UserDirectory, rows: pl.DataFrame) -> np.ndarray:
    u = users.rows(rows.get_column("user_id"))
    i = catalog.rows(rows.get_column("item_id"))
    return past.features(ALL_FEATURES, u, i, to_us(rows.get_column("ts")), catalog)


def test_every_feature_is_leak_free_and_the_check_catches_a_leak() -> None:
    catalog, users, impressions, history = _world()
    full = _features(_past(catalog, users, impressions, history), catalog, users, impressions)
    times = impressions.get_column("ts").unique().sort()
    leaked = np.zeros(len(ALL_FEATURES), dtype=bool)
    for t in times.gather(np.linspace(5, times.len() - 1, 100).astype(int)).to_list():
        at_t = pl.col("ts") == t
        rows = impressions.filter(at_t)
        mask = impressions.get_column("ts").to_numpy() == np.datetime64(t.replace(tzinfo=None), "us")
        before = _past(catalog, users, impressions.filter(pl.col("ts") < t), history)
        got = _features(before, catalog, users, rows)
        for j, name in enumerate(ALL_FEATURES):
            assert np.array_equal(got[:, j], full[mask, j]), f"{name} at {t} differs when the log ends at t"
        # the control: an index that also holds the events at t (its own rows), queried just after t
        leaky_past = _past(catalog, users, impressions.filter(pl.col("ts") <= t), history)
        leaky = _features(
            leaky_past, catalog, users, rows.with_columns(pl.col("ts") + timedelta(microseconds=1))
        )
        leaked |= (leaky != got).any(axis=0)
    # every feature that reads events sees the leak (the age of a published item reads only its metadata)
    missed = [n for n, hit in zip(ALL_FEATURES, leaked, strict=True) if not hit and n != "item_age_log_h"]
    assert not missed, f"the leaky control is not caught for {missed}"
    # and no feature is constant here (a constant would pass any comparison)
    constant = [n for j, n in enumerate(ALL_FEATURES) if np.unique(full[:, j]).size < 2]
    assert not constant


def _frame(events: list[tuple[str, str, int, bool]]) -> pl.DataFrame:
    """(user, item, minute, clicked) rows, one request each."""
    return pl.DataFrame(
        {
            "request_id": [f"r{k}" for k in range(len(events))],
            "user_id": [e[0] for e in events],
            "item_id": [e[1] for e in events],
            "ts": [T0 + MIN * e[2] for e in events],
            "clicked": [e[3] for e in events],
        }
    )


def test_covisitation_counts_in_session_pairs_after_their_second_click() -> None:
    catalog, users, _, history = _world()
    log = _frame(
        [
            ("u0", "i1", 0, True),
            ("u0", "i2", 5, True),  # i1 → i2 completed at minute 5
            ("u0", "i3", 50, True),  # a new session: no i2 → i3 pair
            ("u2", "i1", 7, True),
            ("u2", "i2", 9, True),  # a second i1 → i2 at minute 9
        ]
    )
    past = _past(catalog, users, log, history.head(0))
    i = catalog.rows(pl.Series(["i2", "i2", "i2", "i3"]))
    t = to_us(pl.Series([T0 + MIN * 5, T0 + MIN * 6, T0 + MIN * 10, T0 + MIN * 60]))
    previous = catalog.rows(pl.Series(["i1"] * 3 + ["i2"]))
    counts = past.covisits.count_before(previous, i, t)
    assert counts.tolist() == [0, 1, 2, 0]
    # through the features: u0's latest clicks at minute 60 are i1, i2, i3 (oldest first)
    names = ("covis_last", "covis_sum5", "covis_max5")
    got = past.features(names, users.rows(pl.Series(["u0"])), catalog.rows(pl.Series(["i2"])), t[3:], catalog)
    assert np.allclose(got, [[0.0, np.log1p(2), np.log1p(2)]])


def test_news_columns_read_the_pairs_around_the_latest_click() -> None:
    catalog, users, _, history = _world()
    log = _frame(
        [
            ("u1", "i1", 0, True),
            ("u1", "i2", 5, True),  # i1 → i2 at minute 5, three hours before the query
            ("u2", "i1", 170, True),
            ("u2", "i2", 172, True),  # i1 → i2 at minute 172, within 2 h of it
            ("u3", "i1", 175, True),
            ("u3", "i4", 176, True),  # i1 → i4
            ("u4", "i2", 177, True),
            ("u4", "i1", 178, True),  # i2 → i1: the way back
            ("u5", "i3", 100, True),
            ("u5", "i2", 101, True),  # i3 → i2: after u0's second-latest click
            ("u0", "i3", 179, True),
            ("u0", "i1", 180, True),  # u0 has just read i3 then i1
        ]
    )
    past = _past(catalog, users, log, history.head(0))
    names = (
        "covis_last",
        "covis_last_2h",
        "covis_back_last",
        "covis_last_out",
        "covis_last_share",
        "item_in_last5",
    )
    t = to_us(pl.Series([T0 + MIN * 185] * 3))
    got = past.features(
        names, users.rows(pl.Series(["u0"] * 3)), catalog.rows(pl.Series(["i2", "i4", "i3"])), t, catalog
    )
    # out of i1 before minute 185: i1 → i2 twice, i1 → i4 once (u0's own i3 → i1 ends at i1)
    assert np.allclose(np.expm1(got[:, 0]), [2, 1, 0])
    assert np.allclose(np.expm1(got[:, 1]), [1, 1, 0])  # only the pair at minute 172 is within 2 h
    assert np.allclose(np.expm1(got[:, 2]), [1, 0, 1])  # i2 → i1 (u4) and i3 → i1 (u0 itself)
    assert np.allclose(np.expm1(got[:, 3]), [3, 3, 3])
    assert np.allclose(got[:, 4], [2 / 4, 1 / 4, 0])
    assert got[:, 5].tolist() == [0, 0, 1]  # i3 is one of u0's latest clicks
    # nothing before the user's first click: no latest click, every column 0
    first = past.features(
        names, users.rows(pl.Series(["u0"])), catalog.rows(pl.Series(["i3"])), t[:1] - 10**9, catalog
    )
    assert not first.any()
    # the last minutes: co-visits out of i1 in the last 30 min (minutes 172 and 176, not 5), and
    # out of u0's second-latest click i3 (i3 → i2 at minute 101; i3 → i1 is u0's own)
    now = past.features(
        ("covis_last_30m", "covis_prev2"),
        users.rows(pl.Series(["u0"] * 3)),
        catalog.rows(pl.Series(["i2", "i4", "i3"])),
        t,
        catalog,
    )
    assert np.allclose(np.expm1(now[:, 0]), [1, 1, 0])
    assert np.allclose(np.expm1(now[:, 1]), [1, 0, 0])
    # item clicks in the last 2 and 30 minutes: i4 was clicked at 176, i1 at 175, i2 at 172 and 177
    items = catalog.rows(pl.Series(["i4", "i1", "i2", "i4"]))
    at = to_us(pl.Series([T0 + MIN * 177, T0 + MIN * 177, T0 + MIN * 178, T0 + MIN * 179]))
    windows = past.features(
        ("item_clicks_2m", "item_clicks_30m"), users.rows(pl.Series(["u0"] * 4)), items, at, catalog
    )
    assert np.allclose(np.expm1(windows[:, 0]), [1, 1, 1, 0])
    assert np.allclose(np.expm1(windows[:, 1]), [1, 2, 2, 1])


def test_session_position_and_time_since_the_sessions_previous_click() -> None:
    catalog, users, _, history = _world()
    log = _frame(
        [
            ("u0", "i1", 0, False),
            ("u0", "i2", 10, True),
            ("u0", "i3", 20, False),
            ("u0", "i4", 100, False),  # 80 min later: a new session without a click
        ]
    )
    past = _past(catalog, users, log, history.head(0))
    minutes = [0, 15, 25, 60, 101]
    u = users.rows(pl.Series(["u0"] * len(minutes)))
    t = to_us(pl.Series([T0 + MIN * m for m in minutes]))
    got = past.session_columns(u, t)
    activities = np.expm1(got[:, 0]).round().tolist()
    clicks = np.expm1(got[:, 1]).round().tolist()
    since_s = np.expm1(got[:, 2]).round().tolist()
    assert activities == [0, 2, 3, 0, 1]
    assert clicks == [0, 1, 1, 0, 0]
    assert since_s == [0, 300, 900, 0, 0]
    assert got[:, 3].tolist() == [1, 0, 0, 1, 1]


def test_serving_session_adds_online_clicks_to_the_snapshot_session() -> None:
    catalog, users, _, history = _world()
    log = _frame([("u0", "i1", 0, False), ("u0", "i2", 10, True)])
    past = _past(catalog, users, log, history.head(0))
    row = int(users.rows(pl.Series(["u0"]))[0])
    m = int(to_us(pl.Series([T0 + MIN]))[0] - to_us(pl.Series([T0]))[0])
    t0 = int(to_us(pl.Series([T0]))[0])
    # two online clicks at minutes 20 and 30 continue the snapshot's session (2 activities, 1 click)
    got = past.serving_session(row, t0 + 35 * m, [t0 + 20 * m, t0 + 30 * m])
    assert np.expm1(got[:2]).round().tolist() == [4, 3] and np.expm1(got[2]).round() == 300
    # an online click after a long gap opens its own session
    got = past.serving_session(row, t0 + 125 * m, [t0 + 120 * m])
    assert np.expm1(got[:2]).round().tolist() == [1, 1] and got[3] == 0
    # nothing online: exactly the snapshot's columns
    assert np.array_equal(
        past.serving_session(row, t0 + 15 * m, []),
        past.session_columns(np.array([row]), np.array([t0 + 15 * m]))[0],
    )
    assert len(SESSION_COLUMNS) == got.size


def test_unknown_feature_names_are_refused() -> None:
    catalog, users, impressions, history = _world()
    past = _past(catalog, users, impressions, history)
    with pytest.raises(ValueError, match="unknown ranker features"):
        past.features(
            ("item_clicks_3h",), np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), catalog
        )
    assert past.counters(
        np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), catalog
    ).shape == (
        1,
        len(COUNTER_NAMES),
    )


def test_an_unknown_users_affinity_columns_read_the_demographics_it_brings() -> None:
    catalog, users, impressions, history = _world()
    past = _past(catalog, users, impressions, history)
    names = ("demo_category_lift", "user_category_affinity", *SEGMENT_NAMES)
    items = catalog.rows(pl.Series([f"i{k}" for k in range(5)]))  # one item of each category
    now = int(to_us(impressions.get_column("ts")).max()) + 1
    known = past.features(
        names, np.full(5, users.rows(pl.Series(["u0"]))[0]), items, np.full(5, now), catalog
    )
    assert np.abs(known[:, 0]).max() > 0.01  # u0's group reads some categories more than others
    assert (np.abs(known[:, 2:]).max(axis=0) > 0.01).all()  # and subcategories, types, items

    def served(demographics: np.ndarray | None) -> np.ndarray:
        return serving_features(
            past,
            catalog,
            names,
            user_rows=np.array([-1]),
            now_us=now,
            online=[[]],
            pair_user=np.zeros(5, dtype=np.int64),
            item_rows=items,
            item_clicks=lambda _: np.zeros(5),
            demographics=demographics,
        )

    u0 = users.demographics[users.rows(pl.Series(["u0"]))]  # (1, D): the same groups as u0
    with_groups = served(u0)
    assert np.allclose(with_groups[:, 0], known[:, 0])
    assert np.allclose(with_groups[:, 2:], known[:, 2:])  # the group columns read only the groups
    # without clicks of its own the user's affinity is its groups' lift
    assert np.allclose(with_groups[:, 1], with_groups[:, 0], atol=1e-6)
    assert not served(None).any()  # no demographics: no lift, no affinity
