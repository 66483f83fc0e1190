"""Training examples: positives, shown-not-clicked and live-catalog negatives, ranker rows."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from feedrank.artifacts.config import (
    AUTO_CLICK_ONLY_MAX_CLICKS,
    AUTO_IMPRESSION_CATALOG_NEGATIVES,
    RETRIEVAL_MAX_SAMPLES,
    RankerLossConfig,
    RankerRunConfig,
    RetrievalLossConfig,
    RetrievalRunConfig,
)
from feedrank.artifacts.store import build_ranker
from feedrank.artifacts.towers import HourlyItemVectors, item_vectors_at_hour
from feedrank.artifacts.train_config import TrainConfig
from feedrank.data.dataset import Dataset
from feedrank.data.examples import (
    FeatureSpace,
    fit_feature_space,
    ranker_examples,
    recent_click_sample,
    retrieval_examples,
)
from feedrank.data.features import US_PER_HOUR, hash_column, to_us
from feedrank.data.history import RANKER_FEATURES
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.errors import ConfigError
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.ranker import HEADS
from feedrank.models.two_tower import TwoTower, TwoTowerConfig
from feedrank.sim import SimConfig, simulate
from feedrank.train.batch_types import RankerBatch, RetrievalBatch
from feedrank.train.batches import take
from feedrank.train.ranker_task import RankerTask, tower_tables
from feedrank.train.retrieval_task import RetrievalTask
from feedrank.train.run import (
    AUTO_CATALOG_NEGATIVES,
    latest_clicks,
    recent_part,
    train_ranker,
    train_retrieval,
)
from tests.data.conftest import EXAMPLE_FEATURES as FEATURES
from tests.data.conftest import tiny_split

H_US = 3_600_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Dataset], FeatureSpace]:
    parts = tiny_split(tmp_path_factory.mktemp("examples"))
    return parts, fit_feature_space(parts, FEATURES)


def test_retrieval_examples_and_their_negatives(world: tuple[dict[str, Dataset], FeatureSpace]) -> None:
    parts, space = world
    train = parts["train"].read("impressions")
    arrays = retrieval_examples(space, train, hard_negatives=4, catalog_negatives=6, seed=1)
    clicks = train.filter(pl.col("clicked"))
    assert arrays.shown is not None and arrays.catalog is not None
    assert arrays.item["item_id"].shape == (clicks.height,) and len(arrays) == clicks.height
    assert arrays.shown["item_id"].shape == (clicks.height, 4)
    assert arrays.catalog["item_id"].shape == (clicks.height, 6)
    # shown-not-clicked negatives come from the positive's own request and were not clicked
    bucket_of = dict(zip(space.catalog.id_bucket.tolist(), space.catalog.item_ids.tolist(), strict=False))
    first = clicks.row(0, named=True)
    unclicked = set(
        train.filter((pl.col("request_id") == first["request_id"]) & ~pl.col("clicked")).get_column("item_id")
    )
    shown = {bucket_of[b] for b in arrays.shown["item_id"][0].tolist() if b > 0}
    assert shown and shown <= unclicked
    # live-catalog negatives existed at the example's time, and not longer than the window before it
    ts = to_us(clicks.get_column("ts"))
    published = arrays.catalog["item_published_us"]
    valid = arrays.catalog["item_id"] > 0
    assert valid.mean() > 0.9
    assert (published[valid] <= np.repeat(ts[:, None], 6, axis=1)[valid]).all()
    assert (published[valid] >= np.repeat(ts[:, None], 6, axis=1)[valid] - 48 * H_US).all()


def test_the_loss_uses_every_kind_of_negative(world: tuple[dict[str, Dataset], FeatureSpace]) -> None:
    parts, space = world
    arrays = retrieval_examples(
        space, parts["train"].read("impressions"), hard_negatives=3, catalog_negatives=5
    )
    whole = RetrievalBatch.from_arrays(
        dataclasses.replace(arrays, weight=np.ones(len(arrays), dtype=np.float32))
    )
    batch = take(whole, torch.arange(64))
    assert batch.shown is not None and batch.catalog is not None and len(batch) == 64
    torch.manual_seed(0)
    model = TwoTower(FEATURES, TwoTowerConfig(dim=16, embed_dim=8, hidden=16), num_demographics=4)
    in_batch_only = dataclasses.replace(batch, shown=None, catalog=None)
    model.eval()  # no id dropout: the two losses see the same embeddings
    with_all, _ = RetrievalTask(model, RetrievalLossConfig()).loss(batch)
    base, _ = RetrievalTask(model, RetrievalLossConfig()).loss(in_batch_only)
    assert with_all > base  # more negatives in the softmax


def test_ranker_rows_keep_every_engagement_when_downsampling(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    train = parts["train"].read("impressions")
    full, requests = ranker_examples(space, train)
    down, _ = ranker_examples(space, train, negative_rate=0.25, seed=0)
    assert full["y_click"].shape[0] == train.height
    assert down["y_click"].sum() == full["y_click"].sum()  # every click kept
    kept_negatives = (down["sample_rate"] < 1).sum()
    all_negatives = ((full["y_click"] + full["y_share"] + full["y_hide"]) == 0).sum()
    assert kept_negatives / all_negatives == pytest.approx(0.25, abs=0.03)
    assert full["counters"].shape == (train.height, len(RANKER_FEATURES))
    assert np.isfinite(full["counters"]).all()
    # one set of user-tower inputs per request; every row points at its own request's user
    num_requests = train.get_column("request_id").n_unique()
    assert len(requests) == num_requests and requests.user["user_id"].shape == (num_requests,)
    assert requests.user["hist_item"].shape[0] == num_requests
    assert full["request_index"].max() == num_requests - 1
    buckets = hash_column(train.get_column("user_id"), FEATURES.user_buckets, "user")
    assert (requests.user["user_id"][full["request_index"]] == buckets).all()


def test_ranker_catalog_negatives_are_live_unshown_rows_of_the_clicks_request(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    train = parts["train"].read("impressions")
    base, _ = ranker_examples(space, train, counters=RANKER_FEATURES)
    rows, _ = ranker_examples(space, train, counters=RANKER_FEATURES, catalog_negatives=3, seed=1)
    n, clicks = base["y_click"].size, np.flatnonzero(base["y_click"] > 0)
    assert all(np.array_equal(rows[k][:n], base[k]) for k in base)  # the impressions come first, unchanged
    assert "shown" not in base and (rows["shown"][:n] == 1).all() and (rows["shown"][n:] == 0).all()
    extra = {k: v[n:] for k, v in rows.items()}
    assert 0.9 * 3 * clicks.size <= extra["item_row"].size <= 3 * clicks.size
    assert all(extra[f"y_{h}"].sum() == 0 for h in ("click", "long_dwell", "share", "hide"))
    # each drawn item sits in a click's request and slot, existed at its time, and is not the click
    slot = {
        (r, p): i
        for r, p, i in zip(
            *(base[k][clicks].tolist() for k in ("request_index", "position", "item_row")), strict=True
        )
    }
    clicked = np.array(
        [
            slot[(r, p)]
            for r, p in zip(extra["request_index"].tolist(), extra["position"].tolist(), strict=True)
        ]
    )
    assert (extra["item_row"] != clicked).all()
    request_ts = np.zeros(base["request_index"].max() + 1, dtype=np.int64)
    request_ts[base["request_index"]] = to_us(train.get_column("ts"))
    t, exists = request_ts[extra["request_index"]], space.item_exists_us[extra["item_row"]]
    assert (exists <= t).all() and (exists >= t - 48 * H_US).all()
    assert rows["counters"].shape == (rows["item_row"].size, len(RANKER_FEATURES))


def test_unshown_negatives_teach_only_the_heads_named_and_at_their_weight(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    train = parts["train"].read("impressions").head(600)
    rows, requests = ranker_examples(space, train, counters=RANKER_FEATURES, catalog_negatives=4, seed=1)
    shown = rows["shown"] > 0
    assert shown.sum() == 600 and (~shown).sum() > 0
    torch.manual_seed(0)
    towers = TwoTower(FEATURES, TwoTowerConfig(dim=16, embed_dim=8, hidden=16), num_demographics=4).eval()
    everything = np.arange(len(space.catalog))
    catalog = space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64))
    tables = tower_tables(towers, [UserInputs.from_arrays(requests.user)], ItemInputs.from_arrays(catalog))
    cfg = RankerRunConfig(sources=(), counters=RANKER_FEATURES)
    ranker = build_ranker(cfg, FEATURES, 16).eval()  # no dropout: every loss sees the same logits

    def per_head(batch_rows: dict[str, np.ndarray], **loss: Any) -> torch.Tensor:
        task = RankerTask(ranker, tables, dataclasses.replace(RankerLossConfig(), **loss))
        logs = task.loss(RankerBatch.from_arrays(batch_rows))[1]
        return torch.tensor([logs[f"bce_{h}"] for h in HEADS])

    everything_rows = per_head(rows, unshown_heads=HEADS)
    shown_rows = per_head({k: v[shown] for k, v in rows.items()})
    click_only = per_head(rows)  # the default: the click head alone
    assert torch.allclose(click_only[0], everything_rows[0]) and torch.allclose(
        click_only[1:], shown_rows[1:]
    )
    assert not torch.allclose(everything_rows[1:], shown_rows[1:])  # the unshown rows did count there
    # weight 0 leaves them out of every head; a weight w counts each as w rows
    assert torch.allclose(per_head(rows, unshown_heads=HEADS, unshown_weight=0.0), shown_rows)
    twice = {k: np.concatenate([v, v[~shown]]) for k, v in rows.items()}
    doubled = per_head(rows, unshown_heads=HEADS, unshown_weight=2.0)
    assert torch.allclose(doubled, per_head(twice, unshown_heads=HEADS), atol=1e-6)
    with pytest.raises(ValueError, match="clicks"):
        per_head(rows, unshown_heads=("clicks",))


def test_popular_negatives_are_items_clicked_in_the_hour_before(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    train = parts["train"].read("impressions")
    clicks = train.filter(pl.col("clicked"))
    ts = to_us(clicks.get_column("ts"))
    drawn = recent_click_sample(space, ts, 4, 1.0, np.random.default_rng(0))
    assert drawn.shape == (ts.size, 4) and (drawn >= 0).mean() > 0.5
    known = space.past.item_clicks  # every click the feature space knows (history and all parts)
    for q in np.flatnonzero((drawn >= 0).any(axis=1))[:200]:
        recent = known.keys[(known.times < ts[q]) & (known.times >= ts[q] - H_US)]
        assert np.isin(drawn[q][drawn[q] >= 0], recent).all()
    # no click at all in the hour before: nothing drawn
    first = int(known.times[known.times > np.iinfo(np.int64).min].min())
    assert (recent_click_sample(space, np.array([first]), 3, 1.0, np.random.default_rng(0)) == -1).all()
    # in the ranker's rows they come after the catalog draws, as unengaged rows of the click's request
    base, _ = ranker_examples(space, train, counters=RANKER_FEATURES, catalog_negatives=2, seed=1)
    both, _ = ranker_examples(
        space, train, counters=RANKER_FEATURES, catalog_negatives=2, popular_negatives=3, seed=1
    )
    assert both["item_row"].size > base["item_row"].size
    assert both["y_click"].sum() == base["y_click"].sum()


def test_recent_part_keeps_the_last_hours_of_the_train_part(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    train = world[0]["train"].read("impressions")
    last = train.get_column("ts").max()
    kept = recent_part(train, 6.0)
    assert 0 < kept.height < train.height
    assert kept.get_column("ts").min() > last - timedelta(hours=6)  # type: ignore[operator]
    assert recent_part(train, 0.0).height == train.height


def test_latest_clicks_keeps_the_last_n_clicks_in_time_order(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    train = world[0]["train"].read("impressions")
    clicks = train.filter(pl.col("clicked")).sort("ts", maintain_order=True)
    kept = latest_clicks(train, 50)
    assert kept.height == 50 and kept.get_column("clicked").all()
    assert kept.get_column("ts").is_sorted()
    assert kept.get_column("ts").min() >= clicks.get_column("ts")[-50]
    assert kept.get_column("ts").max() == clicks.get_column("ts").max()
    assert latest_clicks(train, 0).height == train.height  # 0: every row, unclicked ones too
    assert latest_clicks(train, clicks.height + 1).height == clicks.height


def test_the_auto_click_budget_bounds_click_only_logs_only() -> None:
    auto = RankerLossConfig()
    assert auto.resolved(click_only=True).max_clicks == AUTO_CLICK_ONLY_MAX_CLICKS
    assert auto.resolved(click_only=False).max_clicks == 0
    assert RankerLossConfig(max_clicks=7).resolved(click_only=True).max_clicks == 7
    assert RankerLossConfig(max_clicks=0).resolved(click_only=True).max_clicks == 0
    # the two-tower's default sample budget: whole epochs of a small log, a bound on a large one
    assert RetrievalRunConfig().train.max_samples == RETRIEVAL_MAX_SAMPLES > 0


def test_precomputed_tower_tables_equal_running_the_towers(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    train = parts["train"].read("impressions").head(64)
    rows, requests = ranker_examples(space, train)
    torch.manual_seed(0)
    towers = TwoTower(FEATURES, TwoTowerConfig(dim=16, embed_dim=8, hidden=16), num_demographics=4).eval()
    everything = np.arange(len(space.catalog))
    catalog = space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64))
    tables = tower_tables(towers, [UserInputs.from_arrays(requests.user)], ItemInputs.from_arrays(catalog))
    got = tables.inputs(RankerBatch.from_arrays(rows), with_position=False)
    per_row_users = space.user_arrays(train.get_column("user_id"), to_us(train.get_column("ts")))
    with torch.no_grad():
        assert torch.allclose(got.user_emb, towers.user(UserInputs.from_arrays(per_row_users)), atol=1e-5)
        assert torch.allclose(got.item_emb, towers.item(ItemInputs.from_arrays(rows)), atol=1e-5)


def test_hourly_item_vectors_equal_the_tower_at_each_hour(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    _, space = world
    torch.manual_seed(0)
    towers = TwoTower(FEATURES, TwoTowerConfig(dim=16, embed_dim=8, hidden=16), num_demographics=4).eval()
    hourly = HourlyItemVectors(towers, space, batch=7)  # several blocks
    published = space.catalog.published_us[space.catalog.published_us > 0]
    first_hour = int(published.min()) // US_PER_HOUR
    for hour in (first_hour - 1, first_hour + 1, first_hour + 30, first_hour + 1):
        want = item_vectors_at_hour(towers, space, hour, batch=7)
        assert np.array_equal(hourly(hour), want)  # the same floats, hour after hour
    # the freshness term moves with the hour: the comparison is not of constants
    assert not np.array_equal(hourly(first_hour - 1), hourly(first_hour + 30))


@pytest.mark.slow
def test_click_only_split_trains_with_catalog_negatives(tmp_path: Path) -> None:
    simulate(SimConfig.preset("tiny", seed=6), tmp_path / "sim")
    clicks = pl.read_parquet(tmp_path / "sim" / "impressions" / "*.parquet").filter(pl.col("clicked"))
    (tmp_path / "log").mkdir()
    clicks.select("user_id", "item_id", "ts").write_parquet(tmp_path / "log" / "impressions.parquet")
    data = import_source(import_tabular, tmp_path / "log", tmp_path / "data", ImportOptions())
    assert data.click_only
    split_dir = split_dataset(data, tmp_path / "split", SplitSpec())
    assert open_split(split_dir)["train"].click_only
    cfg = RetrievalRunConfig(
        features=FEATURES,
        model=TwoTowerConfig(dim=16, embed_dim=8, hidden=16),
        train=TrainConfig(epochs=1, progress=False, plot=False),
        batch_size=64,
    )
    train_retrieval(split_dir, tmp_path / "run", cfg)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["catalog_negatives"] == AUTO_CATALOG_NEGATIVES
    # The ranker on the same split: without unshown negatives every label would be positive.
    ranker_cfg = RankerRunConfig(loss=RankerLossConfig(catalog_negatives=0, pool_negatives=0))
    with pytest.raises(ConfigError, match=r"click-only.*catalog_negatives is 0, loss.pool_negatives 0"):
        train_ranker(split_dir, tmp_path / "run", tmp_path / "ranker", ranker_cfg)
    assert not (tmp_path / "ranker").exists()


def test_auto_catalog_negatives_teach_the_click_head_alone_on_a_log_with_impressions() -> None:
    # On a log with impressions an unshown item's zero is the logging policy's exposure, not the
    # user's choice: it teaches which live item gets the next click (the click head) and must not
    # teach the heads the feed score weighs most (docs/evaluation.md, docs/served_feed.md).
    loss = RankerLossConfig()
    assert loss.resolved(click_only=False).catalog_negatives == AUTO_IMPRESSION_CATALOG_NEGATIVES == 50
    assert loss.resolved(click_only=True).catalog_negatives > 0
    assert loss.unshown_heads == ("click",)
    assert RankerLossConfig(catalog_negatives=20).resolved(click_only=False).catalog_negatives == 20
    assert RankerLossConfig(catalog_negatives=0).resolved(click_only=False).catalog_negatives == 0
