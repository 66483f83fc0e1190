"""End to end on a tiny simulated world: simulate, import, split, train both models, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedrank.data.features import FeatureConfig
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.eval.offline import EvalOptions, evaluate_run
from feedrank.eval.report import write_report
from feedrank.eval.validation import ranker_validator, retrieval_validator
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.sim import SimConfig, simulate
from feedrank.train.config import TrainConfig
from feedrank.train.run import (
    RankerRunConfig,
    RetrievalRunConfig,
    load_ranker,
    load_retrieval,
    train_ranker,
    train_retrieval,
)

FEATURES = FeatureConfig(
    user_buckets=4_000, item_buckets=4_000, publisher_buckets=256, subcategory_buckets=256
)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    simulate(SimConfig.preset("tiny", seed=3), root / "sim")
    data = import_source(import_tabular, root / "sim", root / "data", ImportOptions())
    return split_dataset(data, root / "split", SplitSpec(valid_frac=0.15, test_frac=0.2))


@pytest.fixture(scope="module")
def runs(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    parts = open_split(split_dir)
    retrieval_cfg = RetrievalRunConfig(
        features=FEATURES,
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


def test_runs_are_written_and_reload(runs: tuple[Path, Path]) -> None:
    retrieval, ranker = runs
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["result"]["steps"] > 0
        assert (run / "model.pt").is_file() and (run / "curves.png").stat().st_size > 0
        assert (run / "metrics.jsonl").read_text().count('"split": "valid"') >= 1
    _, cfg = load_retrieval(retrieval)
    assert cfg.model.dim == 32 and cfg.features == FEATURES
    _, _, retrieval_of_ranker = load_ranker(ranker)
    assert retrieval_of_ranker == retrieval.resolve()


def test_evaluation_reports_every_system_beside_the_oracle(runs: tuple[Path, Path], tmp_path: Path) -> None:
    report = evaluate_run(runs[1], options=EvalOptions(max_queries=200))
    systems = {"random", "popularity", "recent popularity (24 h)", "co-visitation", "two-tower", "oracle"}
    assert systems <= set(report.retrieval)
    assert systems | {"ranker"} <= set(report.impressions)
    for metrics in [*report.retrieval.values(), *report.impressions.values()]:
        for name, value in metrics.items():
            if name.startswith(("recall", "ndcg", "hit_rate", "auc", "gauc", "mrr", "precision", "coverage")):
                assert 0.0 <= value <= 1.0, (name, value)
    # learning happened: the models beat chance
    assert report.retrieval["two-tower"]["recall@100"] > report.retrieval["random"]["recall@100"]
    assert report.impressions["ranker"]["auc"] > 0.55
    assert report.impressions["oracle"]["slate_value_share"] == pytest.approx(1.0)
    assert 0 < report.oracle_share["impressions/ranker"]["slate_value_share"] < 1
    assert report.calibration is not None and 0.5 < report.calibration["calibration_ratio"] < 2.0
    assert {row["weighting"] for row in report.sweep} >= {"clicks only", "default (1/2/5/-1)"}
    paths = write_report(report, tmp_path / "eval")
    for key in ("json", "markdown", "recall_at_k", "impressions", "reliability"):
        assert paths[key].stat().st_size > 0
    text = paths["markdown"].read_text()
    assert "| auc |" in text and "oracle" in text and "Engagement-weight sweep" in text
