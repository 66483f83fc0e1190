"""A tiny simulated world with both models trained on it, shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import load_retrieval
from feedrank.artifacts.train_config import TrainConfig
from feedrank.data.features import FeatureConfig
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.sim import SimConfig, simulate
from feedrank.train.run import train_ranker, train_retrieval
from feedrank.train.validation import ranker_validator, retrieval_validator

TINY_FEATURES = FeatureConfig(
    user_buckets=4_000, item_buckets=4_000, publisher_buckets=256, subcategory_buckets=256
)


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    simulate(SimConfig.preset("tiny", seed=3), root / "sim")
    data = import_source(import_tabular, root / "sim", root / "data", ImportOptions())
    return split_dataset(data, root / "split", SplitSpec(valid_frac=0.15, test_frac=0.2))


@pytest.fixture(scope="session")
def runs(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    parts = open_split(split_dir)
    retrieval_cfg = RetrievalRunConfig(
        features=TINY_FEATURES,
        model=TwoTowerConfig(dim=32, embed_dim=16, hidden=64),
        train=TrainConfig(epochs=3, lr=3e-3, sparse_lr=0.05, early_stop_metric="recall@100", progress=False),
        batch_size=128,
    )
    train_retrieval(
        split_dir,
        root / "retrieval",
        retrieval_cfg,
        make_evaluate=retrieval_validator(parts, max_queries=200),
    )
    towers, _ = load_retrieval(root / "retrieval")
    ranker_cfg = RankerRunConfig(
        train=TrainConfig(epochs=1, lr=2e-3, sparse_lr=0.05, early_stop_metric="gauc", progress=False),
        batch_size=256,
    )
    validator = ranker_validator(parts, towers, ranker_cfg.weights.as_dict(), max_rows=2_000)
    train_ranker(split_dir, root / "retrieval", root / "ranker", ranker_cfg, make_evaluate=validator)
    return root / "retrieval", root / "ranker"


@pytest.fixture(scope="session")
def bundle_path(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from feedrank.bundle import write_bundle
    from tests.integration.http import BUNDLE_KEY

    return write_bundle(runs[1], tmp_path_factory.mktemp("bundle") / "b1", sign_key=BUNDLE_KEY)


from tests.serve.conftest import redis_server, redis_url  # noqa: E402, F401  (shared fixtures)
