"""Streamed two-tower examples: the same inputs as `retrieval_examples`, drawn per batch."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from feedrank.artifacts.labels import EngagementWeights
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, fit_feature_space, retrieval_examples
from feedrank.data.features import to_us
from feedrank.data.retrieval_stream import (
    RetrievalBatches,
    retrieval_rows,
    uniforms,
    window_clicks,
    window_start,
)
from tests.data.conftest import EXAMPLE_FEATURES as FEATURES
from tests.data.conftest import tiny_split

H_US = 3_600_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Dataset], FeatureSpace]:
    parts = tiny_split(tmp_path_factory.mktemp("stream"))
    shards = parts["train"].path / "impressions"
    train = pl.read_parquet(shards / "*.parquet")
    for old in shards.glob("*.parquet"):  # three shards, as a larger log would have
        old.unlink()
    for i, lo in enumerate(range(0, train.height, train.height // 3 + 1)):
        train.slice(lo, train.height // 3 + 1).write_parquet(shards / f"part-{i:05d}.parquet")
    return parts, fit_feature_space(parts, FEATURES)


def test_streamed_rows_give_the_in_memory_examples(world: tuple[dict[str, Dataset], FeatureSpace]) -> None:
    parts, space = world
    assert len(list((parts["train"].path / "impressions").glob("*.parquet"))) > 1  # several shards
    weights = EngagementWeights()
    chunks = list(retrieval_rows(space, parts["train"], weights.example_weight, hard_negatives=4))
    rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    assert np.array_equal(rows["example"], np.arange(rows["example"].size))

    expected = retrieval_examples(space, parts["train"].read("impressions"), hard_negatives=4)
    weight = weights.example_weight(expected.labels)
    keep = weight > 0
    got = RetrievalBatches(space).arrays(rows, epoch=0)
    assert got.catalog is None and expected.catalog is None
    assert got.weight is not None and np.array_equal(got.weight, weight[keep])
    for part in ("user", "item", "labels"):
        assert set(getattr(got, part)) == set(getattr(expected, part)), part
        for name, value in getattr(expected, part).items():
            assert np.array_equal(getattr(got, part)[name], value[keep]), (part, name)
    for name in ("ts_us", "logq"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)[keep]), name
    assert got.shown is not None and expected.shown is not None
    assert set(got.shown) == set(expected.shown)
    for name, value in expected.shown.items():  # the same shown items; the stream pads to the widest slate
        width = value.shape[1]
        assert np.array_equal(got.shown[name][:, :width], value[keep]), name
        assert (got.shown[name][:, width:] == 0).all() or name == "item_published_us"


def test_catalog_negatives_depend_on_the_example_and_epoch_only(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    chunk = next(retrieval_rows(space, parts["train"], EngagementWeights().example_weight))
    batches = RetrievalBatches(space, catalog_negatives=6, seed=3)
    whole = batches.arrays(chunk, epoch=0)
    half = batches.arrays({k: v[10:30] for k, v in chunk.items()}, epoch=0)
    other = batches.arrays(chunk, epoch=1)
    assert whole.catalog is not None and half.catalog is not None and other.catalog is not None
    assert np.array_equal(whole.catalog["item_id"][10:30], half.catalog["item_id"])  # however it is batched
    assert not np.array_equal(whole.catalog["item_id"], other.catalog["item_id"])  # new draws each epoch
    # live at the example's time: came into existence within the 48 hours before it
    ts = np.repeat(chunk["ts_us"][:, None], 6, axis=1)
    valid = whole.catalog["item_id"] > 0
    published = whole.catalog["item_published_us"]
    assert valid.mean() > 0.9
    assert (published[valid] <= ts[valid]).all() and (published[valid] >= ts[valid] - 48 * H_US).all()


def test_train_window_keeps_the_clicks_of_the_last_hours(
    world: tuple[dict[str, Dataset], FeatureSpace],
) -> None:
    parts, space = world
    weight = EngagementWeights().example_weight
    every = np.concatenate([c["ts_us"] for c in retrieval_rows(space, parts["train"], weight)])
    window_h = (every.max() - every.min()) / H_US / 3  # a third of the train part's span
    chunks = list(retrieval_rows(space, parts["train"], weight, window_h=window_h))
    kept = np.concatenate([c["ts_us"] for c in chunks])
    latest = to_us(parts["train"].read("impressions").get_column("ts")).max()
    since = latest - round(window_h * H_US)
    assert np.array_equal(np.sort(kept), np.sort(every[every > since]))
    assert 0 < kept.size < every.size
    numbered = np.concatenate([c["example"] for c in chunks])
    assert np.array_equal(numbered, np.arange(kept.size))  # the window's rows are numbered afresh
    start = window_start(parts["train"], window_h)
    assert start is not None and window_start(parts["train"], 0.0) is None
    assert window_clicks(parts["train"], window_h) == kept.size


def test_uniforms_are_uniform_and_keyed() -> None:
    u = uniforms(0, 1, np.arange(50_000), 20)
    assert abs(u.mean() - 0.5) < 0.01 and u.min() >= 0.0 and u.max() < 1.0
    assert np.array_equal(uniforms(0, 1, np.arange(5, 10), 20), u[5:10])
    assert not np.array_equal(uniforms(1, 1, np.arange(5), 20), u[:5])
