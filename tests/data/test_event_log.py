"""The feature space read shard by shard equals the one built from whole tables, index for index,
and builds the indexes over every impression only when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, build_feature_space, fit_feature_space
from feedrank.data.features import FeatureConfig
from feedrank.data.history import INDEXES
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.data.timeline import EventIndex
from feedrank.eval.catalog import LiveCatalog, click_queries
from feedrank.sim import SimConfig, simulate

FEATURES = FeatureConfig(user_buckets=2_000, item_buckets=2_000)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    root = tmp_path_factory.mktemp("event_log")
    simulate(SimConfig.preset("tiny", seed=11), root / "sim")
    data = import_source(import_tabular, root / "sim", root / "data", ImportOptions())
    parts = open_split(split_dataset(data, root / "split", SplitSpec()))
    for ds in parts.values():  # several shards per part, as a large log has: the order must hold across them
        files = sorted((ds.path / "impressions").glob("*.parquet"))
        table = pl.concat([pl.read_parquet(f) for f in files])
        for f in files:
            f.unlink()
        for i, lo in enumerate(range(0, table.height, 2_500)):
            table.slice(lo, 2_500).write_parquet(ds.path / "impressions" / f"part-{i:05d}.parquet")
    return parts


def whole_tables_space(parts: dict[str, Dataset]) -> FeatureSpace:
    """The feature space as it was built before the log was streamed: every table collected."""
    columns = ("user_id", "item_id", "ts", "clicked", "dwell_s")
    events = [ds.scan("impressions").select(columns).collect() for ds in parts.values()]
    train = events[0]
    return build_feature_space(
        FEATURES,
        items=parts["test"].read("items"),
        users=parts["test"].read("users"),
        history=parts["test"].read("history"),
        impressions=pl.concat(events),
        ctr_prior=float(train.get_column("clicked").cast(pl.Float64).mean() or 0.0),  # type: ignore[arg-type]
        positives=train.filter(pl.col("clicked")).get_column("item_id"),
    )


def arrays_of(index: EventIndex) -> list[np.ndarray]:
    values = [] if index.values is None else [index.values]
    return [index.keys, index.times, *values]


def test_several_shards_per_part(parts: dict[str, Dataset]) -> None:
    assert len(list((parts["train"].path / "impressions").glob("*.parquet"))) > 1


def test_streamed_space_equals_the_whole_tables_space(parts: dict[str, Dataset]) -> None:
    streamed, whole = fit_feature_space(parts, FEATURES), whole_tables_space(parts)
    assert streamed.ctr_prior == whole.ctr_prior
    np.testing.assert_array_equal(streamed.item_logq, whole.item_logq)
    np.testing.assert_array_equal(streamed.item_exists_us, whole.item_exists_us)
    np.testing.assert_array_equal(streamed.users.id_bucket, whole.users.id_bucket)
    for name in INDEXES:
        a, b = getattr(streamed.past, name), getattr(whole.past, name)
        if isinstance(a, EventIndex):
            for x, y in zip(arrays_of(a), arrays_of(b), strict=True):
                np.testing.assert_array_equal(x, y, err_msg=name)
    # the clicks carry their dwell, the same whichever way they were read
    dwell = streamed.past.clicks.dwell_s
    assert dwell is not None and np.isfinite(dwell).any()
    np.testing.assert_array_equal(dwell, whole.past.clicks.dwell_s)
    sa, sb = streamed.past.sessions, whole.past.sessions
    np.testing.assert_array_equal(sa._position, sb._position)
    np.testing.assert_array_equal(sa._start_us, sb._start_us)
    assert arrays_of(sa._index)[0].size > 0
    ca, cb = streamed.past.covisits, whole.past.covisits
    np.testing.assert_array_equal(ca._codes, cb._codes)
    np.testing.assert_array_equal(ca._index.keys, cb._index.keys)
    # Histories and ranker features at the training clicks' times are the same numbers.
    clicks = parts["train"].read("impressions").filter(pl.col("clicked"))
    users = whole.users.rows(clicks.get_column("user_id"))
    items = whole.catalog.rows(clicks.get_column("item_id"))
    ts = clicks.get_column("ts").dt.epoch("us").to_numpy()
    np.testing.assert_array_equal(streamed.past.history(users, ts, 20), whole.past.history(users, ts, 20))
    assert (whole.past.history(users, ts, 20) > 0).any()
    names = ("item_views_24h", "item_ctr_24h", "user_clicks_all", "session_clicks", "covis_last")
    np.testing.assert_array_equal(
        streamed.past.features(names, users, items, ts, streamed.catalog),
        whole.past.features(names, users, items, ts, whole.catalog),
    )


def test_histories_do_not_read_the_impressions(parts: dict[str, Dataset]) -> None:
    space = fit_feature_space(parts, FEATURES)
    space.user_arrays_at(np.array([1, 2]), np.array([0, 1]), np.array([2**60, 2**60]))
    built = {name for name in INDEXES if name in space.past.__dict__}
    assert built == {"user_clicks"}  # no view or session index: no impression was held


def test_latest_views_from_the_log_equal_those_of_the_index(parts: dict[str, Dataset]) -> None:
    lazy, built = fit_feature_space(parts, FEATURES), whole_tables_space(parts)
    times = built.past.item_views.times
    lo, hi = int(np.quantile(times, 0.3)), int(np.quantile(times, 0.6))
    rows_a, ts_a = lazy.past.latest_views(lo, hi)
    rows_b, ts_b = built.past.latest_views(lo, hi)
    assert "item_views" not in lazy.past.__dict__
    assert rows_a.size == rows_b.size > 0 and ts_a.min() >= lo and ts_a.max() < hi
    order_a, order_b = np.lexsort((ts_a, rows_a)), np.lexsort((ts_b, rows_b))
    np.testing.assert_array_equal(rows_a[order_a], rows_b[order_b])
    np.testing.assert_array_equal(ts_a[order_a], ts_b[order_b])
    # One row per item and hour, the latest view of it.
    views = built.past.item_views
    inside = (views.times >= lo) & (views.times < hi)
    pairs = views.keys[inside] * 10**6 + views.times[inside] // 3_600_000_000
    assert rows_a.size == np.unique(pairs).size < inside.sum()


def test_live_catalog_from_the_views_near_the_queries_equals_every_view(parts: dict[str, Dataset]) -> None:
    space = fit_feature_space(parts, FEATURES)
    valid = parts["valid"].read("impressions")
    queries = click_queries(space, valid, 200, seed=0)
    shown = pl.concat([parts[p].scan("impressions").select("item_id", "ts") for p in ("train", "valid")])
    near = LiveCatalog(space, shown, window_h=6.0, span_us=queries.span_us())
    assert "item_views" not in space.past.__dict__  # answered without indexing every view
    every = LiveCatalog(space, shown.collect(), window_h=6.0)
    np.testing.assert_array_equal(near.mask(queries.ts_us), every.mask(queries.ts_us))
    assert 0 < near.mask(queries.ts_us).mean() < 1


def test_user_rows_by_join(parts: dict[str, Dataset], tmp_path: Path) -> None:
    space = fit_feature_space(parts, FEATURES)
    ids = space.users.user_ids
    asked = pl.Series([str(ids[3]), "nobody", str(ids[0]), None, str(ids[3])], dtype=pl.String)
    np.testing.assert_array_equal(space.users.rows(asked), [3, -1, 0, -1, 3])


def test_logq_from_clicks_per_item_equals_one_count_per_click(parts: dict[str, Dataset]) -> None:
    # The space counts training clicks per item by a grouped count (one row per item, not one
    # string per click); the logQ must be what counting every click one by one gives.
    space = fit_feature_space(parts, FEATURES)
    clicks = parts["train"].scan("impressions").filter(pl.col("clicked")).collect().get_column("item_id")
    rows = space.catalog.rows(clicks)
    counts = 1.0 + np.bincount(rows[rows >= 0], minlength=len(space.catalog))
    assert counts.max() > 2  # some item has several clicks: the per-item counts are exercised
    np.testing.assert_array_equal(space.item_logq, np.log(counts / counts.sum()))


def test_keep_history_only_lets_the_click_arrays_go_and_answers_the_same(parts: dict[str, Dataset]) -> None:
    whole = fit_feature_space(parts, FEATURES)
    lean = fit_feature_space(parts, FEATURES)
    lean.past.keep_history_only()
    assert "clicks" not in lean.past.__dict__ and "user_clicks" in lean.past.__dict__
    for name in ("user_clicks", "item_clicks", "covisits", "user_category_clicks"):
        a, b = getattr(lean.past, name), getattr(whole.past, name)  # item_clicks: the clicks read again
        if isinstance(a, EventIndex):
            for x, y in zip(arrays_of(a), arrays_of(b), strict=True):
                np.testing.assert_array_equal(x, y, err_msg=name)
    users, ts = np.array([0, 1, 2, 3]), np.full(4, np.iinfo(np.int64).max // 2)
    np.testing.assert_array_equal(lean.past.history(users, ts, 5), whole.past.history(users, ts, 5))
