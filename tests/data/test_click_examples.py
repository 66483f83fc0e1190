"""The ranker's click-only examples: next-click queries, negatives as catalog rows, batches built
per batch that equal the materialised rows, pool negatives from each click's own pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import load_ranker
from feedrank.artifacts.train_config import TrainConfig
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.candidates.merge import SOURCE_FEATURES, merge, source_features
from feedrank.data.click_examples import ClickBatches, click_examples, replay_pools
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, fit_feature_space, ranker_examples
from feedrank.data.features import FeatureConfig
from feedrank.data.history import NEWS_FEATURES
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.sim import SimConfig, simulate
from feedrank.train.run import train_ranker, train_retrieval

FEATURES = FeatureConfig(user_buckets=2_000, item_buckets=2_000)
DIM = 8


@pytest.fixture(scope="module")
def click_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Dataset], FeatureSpace]:
    """The tiny world's clicks alone, imported as a click-only log and split by time."""
    root = tmp_path_factory.mktemp("click_only")
    simulate(SimConfig.preset("tiny", seed=6), root / "sim")
    clicks = pl.read_parquet(root / "sim" / "impressions" / "*.parquet").filter(pl.col("clicked"))
    (root / "log").mkdir()
    clicks.select("user_id", "item_id", "ts").write_parquet(root / "log" / "impressions.parquet")
    data = import_source(import_tabular, root / "log", root / "data", ImportOptions())
    split_dir = split_dataset(data, root / "split", SplitSpec())
    parts = open_split(split_dir)
    assert parts["train"].click_only
    return split_dir, parts, fit_feature_space(parts, FEATURES)


def _replayed(space: FeatureSpace, train: pl.DataFrame, pool: int, sources: bool) -> tuple:  # type: ignore[type-arg]
    examples = click_examples(space, train, catalog_negatives=3, seed=1)
    rng = np.random.default_rng(0)
    items = rng.normal(size=(len(space.catalog), DIM)).astype(np.float32)
    users = rng.normal(size=(len(examples), DIM)).astype(np.float32)
    logged = LoggedSources.from_past(space.past, space.catalog, space.users, list_size=40)
    requests = Requests(examples.user_rows, examples.ts_us, users, lambda hour: items)
    quotas = logged.sources.config.quotas()
    out = replay_pools(logged, requests, examples, pool, quotas, 30, np.random.default_rng(2), sources)
    return examples, out, logged, requests, quotas


def test_batches_hold_the_rows_the_materialised_path_builds(
    click_log: tuple[Path, dict[str, Dataset], FeatureSpace],
) -> None:
    _, parts, space = click_log
    train = parts["train"].read("impressions")
    n = train.height
    assert n > 200
    examples = click_examples(space, train, catalog_negatives=0)
    assert examples.items.dtype == np.int32 and examples.items.shape == (n, 1)
    batches = ClickBatches(space, examples, NEWS_FEATURES, batch_size=64)
    got = batches.arrays(np.arange(len(examples)))
    rows, _ = ranker_examples(space, train.sort("ts", maintain_order=True), counters=NEWS_FEATURES)
    for name in ("item_row", "item_id", "item_fresh", "y_click", "y_share", "position"):
        assert np.array_equal(got[name], rows[name]), name
    assert np.allclose(got["counters"], rows["counters"])
    assert got["counters"].shape == (n, len(NEWS_FEATURES)) and got["y_click"].all()


def test_pool_negatives_come_from_each_clicks_own_pool_with_its_source_columns(
    click_log: tuple[Path, dict[str, Dataset], FeatureSpace],
) -> None:
    _, parts, space = click_log
    train = parts["train"].read("impressions")
    before, examples, logged, requests, quotas = _replayed(space, train, pool=4, sources=True)
    assert examples.items.shape == (train.height, 1 + 3 + 4)
    assert np.array_equal(examples.items[:, :4], before.items)  # the click and its catalog draws kept
    assert examples.sources is not None and examples.sources.shape == (train.height, 8, len(SOURCE_FEATURES))
    drawn = 0
    for r, lists in logged.walk(requests, np.arange(len(examples))):
        pool = merge(lists, quotas, 30).item_rows
        negatives = examples.items[r, 4:]
        negatives = negatives[negatives >= 0]
        drawn += negatives.size
        assert np.isin(negatives, pool).all()
        assert examples.items[r, 0] not in negatives  # never the clicked item
        assert np.unique(negatives).size == negatives.size  # without replacement
        items = examples.items[r].astype(np.int64)
        expected = np.where((items >= 0)[:, None], source_features(lists, items), 0.0)
        assert np.allclose(examples.sources[r], expected, atol=2e-3, rtol=2e-3)  # float16
    assert drawn > 2 * len(examples)  # most pools hold 4 items besides the click
    batch = ClickBatches(space, examples, NEWS_FEATURES, batch_size=64).arrays(np.arange(5))
    assert batch["sources"].shape == (batch["item_row"].size, len(SOURCE_FEATURES))
    assert batch["y_click"].sum() == 5 and not batch["y_click"][batch["item_row"] < 0].any()


def test_batches_are_a_function_of_seed_epoch_and_index(
    click_log: tuple[Path, dict[str, Dataset], FeatureSpace],
) -> None:
    _, parts, space = click_log
    examples = click_examples(space, parts["train"].read("impressions"), catalog_negatives=3, seed=1)
    source = ClickBatches(space, examples, NEWS_FEATURES, batch_size=64, seed=3)
    assert source.clicks_per_batch == 16
    every = list(source.batches(1, 0, 1))
    assert len(every) == source.num_batches(0, 1) == len(examples) // 16
    resumed = list(source.batches(1, 0, 1, start=2))
    for a, b in zip(every[2:], resumed, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    other_epoch = next(source.batches(2, 0, 1))
    assert not np.array_equal(every[0]["request_index"], other_epoch["request_index"])
    # two ranks: rank r's i-th batch is the one process's batch 2i + r
    ranks = [list(source.batches(1, r, 2)) for r in (0, 1)]
    assert np.array_equal(ranks[1][0]["request_index"], every[1]["request_index"])
    assert np.array_equal(ranks[0][1]["request_index"], every[2]["request_index"])


@pytest.mark.slow
def test_the_ranker_trains_on_a_click_only_log_with_pool_negatives_by_default(
    click_log: tuple[Path, dict[str, Dataset], FeatureSpace], tmp_path: Path
) -> None:
    split_dir, _, space = click_log
    retrieval = RetrievalRunConfig(
        features=FEATURES,
        model=TwoTowerConfig(dim=16, embed_dim=8, hidden=16),
        train=TrainConfig(epochs=1, progress=False, plot=False),
        batch_size=64,
    )
    train_retrieval(split_dir, tmp_path / "tt", retrieval, space=space)
    cfg = RankerRunConfig(
        train=TrainConfig(epochs=1, max_steps=20, progress=False, plot=False), batch_size=128
    )
    result = train_ranker(split_dir, tmp_path / "tt", tmp_path / "rk", cfg, space=space)
    assert result.steps == 20
    info = json.loads((tmp_path / "rk" / "run.json").read_text())
    assert info["config"]["loss"]["catalog_negatives"] == 5 and info["config"]["loss"]["pool_negatives"] == 10
    clicks = int(parts_clicks(split_dir))
    assert info["examples"] == clicks  # one query per training click
    ranker, _, _ = load_ranker(tmp_path / "rk")
    assert ranker.num_sources == len(SOURCE_FEATURES)  # the default reads the source columns


def parts_clicks(split_dir: Path) -> int:
    return int(open_split(split_dir)["train"].read("impressions").get_column("clicked").sum())


def test_the_listwise_term_adds_each_clicks_softmax_over_its_own_negatives(
    click_log: tuple[Path, dict[str, Dataset], FeatureSpace],
) -> None:
    import torch

    from feedrank.artifacts.config import RankerLossConfig
    from feedrank.artifacts.store import build_ranker
    from feedrank.train.batch_types import RankerBatch
    from feedrank.train.losses import grouped_softmax_loss
    from feedrank.train.ranker_task import RankerTask, TowerTables

    _, parts, space = click_log
    examples = click_examples(space, parts["train"].read("impressions"), catalog_negatives=6, seed=1)
    batch = RankerBatch.from_arrays(ClickBatches(space, examples, NEWS_FEATURES, 64).arrays(np.arange(9)))
    cfg = RankerRunConfig(counters=NEWS_FEATURES, sources=())
    torch.manual_seed(0)
    ranker = build_ranker(cfg, FEATURES, DIM)
    tables = TowerTables(
        torch.zeros(len(examples), DIM), torch.zeros(len(space.catalog), DIM), torch.zeros(16, DIM)
    )
    ranker.eval()  # no dropout: the two losses see the same logits
    plain, plain_logs = RankerTask(ranker, tables, RankerLossConfig()).loss(batch)
    both, logs = RankerTask(ranker, tables, RankerLossConfig(listwise_weight=0.5)).loss(batch)
    assert "listwise" not in plain_logs and logs["listwise"] > 0
    logits = ranker(tables.inputs(batch, with_position=True))[:, 0]
    expected = grouped_softmax_loss(logits, batch.labels[:, 0], batch.request_index)
    assert torch.allclose(both - plain, 0.5 * expected)
    # nine queries, each one click among its own rows: the term is their mean cross-entropy
    assert int(batch.request_index.unique().numel()) == 9 and float(batch.labels[:, 0].sum()) == 9
