"""Training runs: from a time split to a trained model in a run directory.

    RUN/
      run.json         kind, resolved config, data split, training result
      model.pt         the network's weights (best validation step when early stopping, else final)
      metrics.jsonl    curves; curves.png their plot; checkpoints/ for exact resume

A ranker run points at the retrieval run whose towers it builds on. Models are rebuilt from the
config saved in run.json and weights loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from feedrank.candidates import SOURCE_FEATURES
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.config import from_dict, to_dict
from feedrank.data.examples import (
    Arrays,
    FeatureSpace,
    fit_feature_space,
    ranker_examples,
    retrieval_examples,
    with_unshown_negatives,
)
from feedrank.data.features import DEMOGRAPHICS, FeatureConfig, table_memory
from feedrank.data.history import COUNTER_NAMES, FEATURE_NAMES, RANKER_FEATURES
from feedrank.data.split import open_split
from feedrank.errors import ConfigError, DatasetError
from feedrank.models.ranker import Ranker, RankerConfig
from feedrank.models.two_tower import TwoTower, TwoTowerConfig
from feedrank.train.batches import TensorBatchSource
from feedrank.train.config import TrainConfig
from feedrank.train.labels import EngagementWeights
from feedrank.train.loop import Evaluate, train
from feedrank.train.ranker_task import (
    RankerLossConfig,
    RankerTask,
    TowerTables,
    item_vectors_at_hour,
    tower_tables,
)
from feedrank.train.report import TrainResult
from feedrank.train.retrieval_task import RetrievalLossConfig, RetrievalTask

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
WEIGHTS_FILE = "model.pt"
MakeEvaluate = Callable[[FeatureSpace], Evaluate]
AUTO_CATALOG_NEGATIVES = 20  # per example, for click-only logs


@dataclass(frozen=True)
class RetrievalRunConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    loss: RetrievalLossConfig = field(default_factory=RetrievalLossConfig)
    weights: EngagementWeights = field(default_factory=EngagementWeights)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=8, lr=3e-3, sparse_lr=0.05, early_stop_metric="recall@100", patience=2
        )
    )
    batch_size: int = 1024


@dataclass(frozen=True)
class RankerRunConfig:
    model: RankerConfig = field(default_factory=RankerConfig)
    loss: RankerLossConfig = field(default_factory=RankerLossConfig)
    weights: EngagementWeights = field(default_factory=EngagementWeights)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=3, lr=2e-3, sparse_lr=0.05, early_stop_metric="gauc", patience=1
        )
    )
    batch_size: int = 1024
    # Names of the dense features the ranker reads (data/history.py), in column order; recorded in
    # run.json and bundles. A run that records none predates the names: it read COUNTER_NAMES.
    counters: tuple[str, ...] = RANKER_FEATURES
    # The candidate-source columns (`CandidateSet.features()`: which sources listed the item, their
    # scores), all of them or none; a run that records none was trained without them.
    sources: tuple[str, ...] = SOURCE_FEATURES

    def __post_init__(self) -> None:
        if self.sources and tuple(self.sources) != SOURCE_FEATURES:
            raise ValueError(
                f"sources must be all of {list(SOURCE_FEATURES)} or none; got {list(self.sources)}"
            )
        unknown = sorted(set(self.counters) - FEATURE_NAMES)
        if unknown or not self.counters or len(set(self.counters)) != len(self.counters):
            raise ValueError(
                f"counters must be distinct names from {sorted(FEATURE_NAMES)}; got {list(self.counters)}"
            )


def ranker_config(values: dict[str, Any], source: str) -> RankerRunConfig:
    """A ranker's config as saved in a run or bundle; one saved before feature names were recorded
    gets the nine counters it was trained with, so old runs and bundles keep their exact inputs."""
    if "counters" not in values:
        values = {**values, "counters": list(COUNTER_NAMES)}
    if "sources" not in values:  # saved before the ranker read the candidate sources
        values = {**values, "sources": []}
    return from_dict(RankerRunConfig, values, source=source)


def to_tensors(arrays: Arrays) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def build_space(split_dir: Path, features: FeatureConfig) -> FeatureSpace:
    return fit_feature_space(open_split(split_dir), features)


def build_two_tower(cfg: RetrievalRunConfig) -> TwoTower:
    return TwoTower(cfg.features, cfg.model, num_demographics=len(DEMOGRAPHICS))


def build_ranker(cfg: RankerRunConfig, features: FeatureConfig, tower_dim: int) -> Ranker:
    return Ranker(
        features,
        cfg.model,
        tower_dim=tower_dim,
        num_counters=len(cfg.counters),
        counter_names=cfg.counters,
        num_sources=len(cfg.sources),
    )


def train_retrieval(
    split_dir: Path,
    out_dir: Path,
    cfg: RetrievalRunConfig,
    *,
    make_evaluate: MakeEvaluate | None = None,
    space: FeatureSpace | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the two-tower on the train part of `split_dir`; write the run to `out_dir`."""
    space = space or build_space(split_dir, cfg.features)
    parts = open_split(split_dir)
    catalog_negatives = cfg.loss.catalog_negatives
    if catalog_negatives < 0:
        catalog_negatives = AUTO_CATALOG_NEGATIVES if parts["train"].click_only else 0
    arrays = retrieval_examples(
        space,
        parts["train"].read("impressions"),
        hard_negatives=cfg.loss.hard_negatives,
        catalog_negatives=catalog_negatives,
        seed=cfg.train.seed,
    )
    arrays["weight"] = cfg.weights.example_weight(arrays)
    keep = arrays["weight"] > 0
    arrays = {k: v[keep] for k, v in arrays.items()}
    if keep.sum() < cfg.batch_size:
        raise DatasetError(
            f"{split_dir}: only {int(keep.sum())} engaged training examples, fewer than one batch "
            f"of {cfg.batch_size}; lower batch_size or use more data"
        )
    torch.manual_seed(cfg.train.seed)  # initial weights are part of a reproducible run
    model = build_two_tower(cfg)
    _log_tables(cfg.features, cfg.model.embed_dim)
    task = RetrievalTask(model, cfg.loss)
    data = TensorBatchSource(to_tensors(arrays), cfg.batch_size, seed=cfg.train.seed)
    evaluate = make_evaluate(space) if make_evaluate else None
    result = train(task, data, cfg.train, out_dir, evaluate, resume=resume)
    extra = {"examples": int(keep.sum()), "catalog_negatives": catalog_negatives}
    _finish(out_dir, "retrieval", cfg, split_dir, model, result, extra)
    return result


def train_ranker(
    split_dir: Path,
    retrieval_run: Path,
    out_dir: Path,
    cfg: RankerRunConfig,
    *,
    make_evaluate: MakeEvaluate | None = None,
    space: FeatureSpace | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the ranker on the train part, over the frozen towers of `retrieval_run`."""
    towers, retrieval_cfg = load_retrieval(retrieval_run)
    space = space or build_space(split_dir, retrieval_cfg.features)
    parts = open_split(split_dir)
    if parts["train"].click_only and cfg.loss.catalog_negatives <= 0:
        # Every logged row is a click: without unshown items as negatives every label is positive.
        raise ConfigError(
            f"{split_dir} is a click-only log and loss.catalog_negatives is "
            f"{cfg.loss.catalog_negatives}: the ranker would see no negatives; set loss.catalog_negatives > 0"
        )
    arrays, requests = ranker_examples(
        space,
        parts["train"].read("impressions"),
        cfg.loss.negative_rate,
        seed=cfg.train.seed,
        counters=cfg.counters,
        catalog_negatives=cfg.loss.catalog_negatives,
    )
    torch.manual_seed(cfg.train.seed)  # initial weights are part of a reproducible run
    ranker = build_ranker(cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    tables = _tower_tables(towers, space, requests)
    if cfg.sources or cfg.loss.pool_negatives > 0:
        replay = SourceReplay(space, towers, requests, tables)
        if cfg.loss.pool_negatives > 0:
            arrays = replay.with_pool_negatives(arrays, cfg, np.random.default_rng(cfg.train.seed + 1))
        if cfg.sources:
            arrays["sources"] = replay.columns(arrays)
    task = RankerTask(ranker, tables, cfg.loss)
    data = TensorBatchSource(to_tensors(arrays), cfg.batch_size, seed=cfg.train.seed)
    evaluate = make_evaluate(space) if make_evaluate else None
    result = train(task, data, cfg.train, out_dir, evaluate, resume=resume)
    extra = {"examples": len(arrays["y_click"]), "retrieval_run": str(Path(retrieval_run).resolve())}
    _finish(out_dir, "ranker", cfg, split_dir, ranker, result, extra)
    return result


class SourceReplay:
    """The candidate sources asked at each training request's time (candidates/logged.py)."""

    def __init__(self, space: FeatureSpace, towers: TwoTower, requests: Arrays, tables: TowerTables) -> None:
        self.space = space
        self.logged = LoggedSources.from_past(space.past, space.catalog, space.users)
        towers.eval()
        users: torch.Tensor = tables.users  # type: ignore[assignment]
        self.requests = Requests(
            requests["request_user_row"],
            requests["request_ts_us"],
            users.numpy(),
            functools.partial(item_vectors_at_hour, towers, space),
        )

    def columns(self, rows: Arrays) -> np.ndarray:
        """(N, 8) the source columns of each example row, asked at its request's time."""
        size = self.requests.ts_us.size
        log.info("candidate-source columns: %d rows of %d requests", rows["item_row"].size, size)
        return self.logged.features(self.requests, rows["request_index"], rows["item_row"])

    def with_pool_negatives(self, rows: Arrays, cfg: RankerRunConfig, rng: np.random.Generator) -> Arrays:
        """`rows` and, per click, `loss.pool_negatives` unshown items of its request's candidate pool."""
        clicks = np.flatnonzero(rows["y_click"] > 0)
        request = rows["request_index"]
        quotas = self.logged.sources.config.quotas()
        loss = cfg.loss
        drawn = self.logged.sample_pools(
            self.requests, request[clicks], loss.pool_negatives, quotas, loss.pool_size, rng
        )
        log.info("pool negatives: %d for %d clicks", int((drawn >= 0).sum()), clicks.size)
        users, ts = self.requests.users[request], self.requests.ts_us[request]
        return with_unshown_negatives(self.space, rows, users, ts, cfg.counters, clicks, drawn)


def _tower_tables(towers: TwoTower, space: FeatureSpace, requests: Arrays) -> TowerTables:
    """The frozen towers' outputs for every training request and catalog item (computed once)."""
    num = len(requests["request_ts_us"])
    user_batches = [
        to_tensors({k: v[lo : lo + 8192] for k, v in requests.items() if not k.startswith("request_")})
        for lo in range(0, num, 8192)
    ]
    everything = np.arange(len(space.catalog))
    catalog = to_tensors(space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64)))
    return tower_tables(towers, user_batches, catalog)


def describe_tables(features: FeatureConfig, dim: int) -> str:
    """One line: every hashed embedding table's rows and the memory of all of them at width `dim`."""
    sizes = table_memory(features, dim)
    rows = ", ".join(f"{k} {features.table_sizes()[k]:,}" for k in sizes)
    return f"embedding tables (rows x {dim}): {rows}; {sum(sizes.values()) / 2**20:.1f} MiB of float32 in all"


def _log_tables(features: FeatureConfig, dim: int) -> None:
    log.info(describe_tables(features, dim))


def _finish(
    out_dir: Path,
    kind: str,
    cfg: Any,
    split_dir: Path,
    model: nn.Module,
    result: TrainResult,
    extra: dict[str, Any],
) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 writes the run (every rank holds the same weights)
    best = out_dir / "checkpoints" / "best.pt"
    if best.is_file():  # early stopping kept the best evaluation's weights apart
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["model"])
    torch.save(model.state_dict(), out_dir / WEIGHTS_FILE)
    summary = {
        "kind": kind,
        "config": to_dict(cfg),
        "data": str(Path(split_dir).resolve()),
        "result": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()},
        **extra,
    }
    (out_dir / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DatasetError(f"{run_dir} is not a training run: {RUN_FILE} is missing")
    info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return info


def load_retrieval(run_dir: Path) -> tuple[TwoTower, RetrievalRunConfig]:
    info = read_run(run_dir)
    if info["kind"] != "retrieval":
        raise DatasetError(f"{run_dir} is a {info['kind']} run, not a retrieval run")
    cfg = from_dict(RetrievalRunConfig, info["config"], source=str(Path(run_dir) / RUN_FILE))
    model = build_two_tower(cfg)
    model.load_state_dict(torch.load(Path(run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), cfg


def load_ranker(run_dir: Path) -> tuple[Ranker, RankerRunConfig, Path]:
    """The ranker, its config, and the retrieval run it was trained over."""
    info = read_run(run_dir)
    if info["kind"] != "ranker":
        raise DatasetError(f"{run_dir} is a {info['kind']} run, not a ranker run")
    cfg = ranker_config(info["config"], source=str(Path(run_dir) / RUN_FILE))
    retrieval_run = Path(info["retrieval_run"])
    _, retrieval_cfg = load_retrieval(retrieval_run)
    ranker = build_ranker(cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    ranker.load_state_dict(torch.load(Path(run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return ranker.eval(), cfg, retrieval_run
