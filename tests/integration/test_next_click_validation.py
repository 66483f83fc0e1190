"""Model selection on click-only data: the next-click validation metric is a number, never NaN."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import torch

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import build_ranker, build_space, build_two_tower
from feedrank.data.dataset import Dataset
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.train.validation import (
    NEXT_CLICK_METRIC,
    NextClickValidation,
    ranker_validator,
    retrieval_validator,
    selection_metric,
)
from tests.integration.conftest import TINY_FEATURES


@pytest.fixture(scope="module")
def click_only_split(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world's clicks alone (no unclicked impressions), imported and split by time."""
    root = tmp_path_factory.mktemp("click-only")
    world = Dataset.open(split_dir.parent / "data")
    src = root / "log"
    src.mkdir()
    clicks = world.read("impressions").filter(pl.col("clicked"))
    clicks.select("request_id", "user_id", "item_id", "ts").write_parquet(src / "impressions.parquet")
    world.read("items").write_parquet(src / "items.parquet")
    data = import_source(import_tabular, src, root / "data", ImportOptions())
    assert data.click_only
    return split_dataset(data, root / "split", SplitSpec(valid_frac=0.15, test_frac=0.2))


def _cfg() -> RetrievalRunConfig:
    return RetrievalRunConfig(features=TINY_FEATURES, model=TwoTowerConfig(dim=32, embed_dim=16, hidden=64))


def test_click_only_data_selects_on_next_click(split_dir: Path, click_only_split: Path) -> None:
    assert selection_metric(open_split(click_only_split), "gauc") == NEXT_CLICK_METRIC
    assert selection_metric(open_split(click_only_split), "recall@100") == NEXT_CLICK_METRIC
    assert selection_metric(open_split(click_only_split), "mrr") == "mrr"  # asked for explicitly
    assert selection_metric(open_split(split_dir), "gauc") == "gauc"  # impressions: unchanged


def test_both_validators_report_a_finite_next_click_metric(click_only_split: Path) -> None:
    torch.manual_seed(0)
    parts = open_split(click_only_split)
    cfg = _cfg()
    space = build_space(click_only_split, cfg.features)
    towers = build_two_tower(cfg)
    retrieval = retrieval_validator(parts, max_queries=100)(space)(towers)
    assert 0.0 <= retrieval[NEXT_CLICK_METRIC] <= 1.0
    ranker_cfg = RankerRunConfig()
    ranker = build_ranker(ranker_cfg, cfg.features, cfg.model.dim)
    metrics = ranker_validator(parts, towers, ranker_cfg.weights.as_dict(), max_clicks=60)(space)(ranker)
    # impression AUC / GAUC are undefined without unclicked rows: not reported, so nothing is NaN
    assert set(metrics) == {NEXT_CLICK_METRIC}
    assert 0.0 <= metrics[NEXT_CLICK_METRIC] <= 1.0 and not math.isnan(metrics[NEXT_CLICK_METRIC])


def test_the_metric_is_seeded_and_zero_without_clicks(click_only_split: Path) -> None:
    parts = open_split(click_only_split)
    cfg = _cfg()
    space = build_space(click_only_split, cfg.features)
    validation = NextClickValidation(parts, space, max_clicks=150, seed=1)
    assert validation.clicks.height > 0
    torch.manual_seed(0)
    a = validation.ndcg(TwoTowerScorer(space, build_two_tower(cfg)))
    torch.manual_seed(0)
    assert validation.ndcg(TwoTowerScorer(space, build_two_tower(cfg))) == pytest.approx(a, abs=1e-12)
    validation.clicks = validation.clicks.head(0)
    assert validation.ndcg(TwoTowerScorer(space, build_two_tower(cfg))) == 0.0
