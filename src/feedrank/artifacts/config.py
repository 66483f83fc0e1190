"""The configuration of a training run, as saved in run.json and in bundles.

A run config gathers the parts every stage agrees on: the features, the network, the loss, the
engagement weights and the training loop's knobs. Training reads them to train; bundles and
serving read them back to rebuild the same networks, without importing the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedrank.artifacts.labels import EngagementWeights
from feedrank.artifacts.train_config import TrainConfig
from feedrank.candidates import SOURCE_FEATURES
from feedrank.config import from_dict
from feedrank.data.features import FeatureConfig
from feedrank.data.history import COUNTER_NAMES, FEATURE_NAMES, RANKER_FEATURES
from feedrank.models.ranker import HEADS, RankerConfig
from feedrank.models.two_tower import TwoTowerConfig


@dataclass(frozen=True)
class RetrievalLossConfig:
    logq_correction: bool = True
    # Up to this many shown-not-clicked items per positive from the same request (e.g. 50): they
    # multiply the item tower's work per step by the slate size for a small gain in recall in the
    # default world (docs/evaluation.md), so they are off by default.
    hard_negatives: int = 0
    # Uniform draws from the catalog live at each example's time; -1 = auto: 20 for click-only logs
    # (they have no shown-not-clicked items), else none.
    catalog_negatives: int = -1


@dataclass(frozen=True)
class RankerLossConfig:
    # How much each head's loss counts in the total; the feed score's weights are separate.
    head_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HEADS, 1.0))
    negative_rate: float = 1.0  # keep-probability of rows without engagement (1 = no downsampling)
    # Unshown items drawn per click from the catalog live at its time (data/examples.py says why).
    # 20 raised next-click NDCG@10 in the default world by 0.011 to 0.016 against 0; over six
    # development worlds 50 added +0.0050 ± 0.0015 more and 100 lost 0.0081 ± 0.0020 against 50
    # (docs/evaluation.md); 0 turns it off (calibrated on impressions, worse at next-click).
    catalog_negatives: int = 50
    # Items drawn per click from its request's merged candidate pool (what serving would rank: the
    # ANN's, trending, co-visitation and fresh lists at its time, `pool_size` of them), not shown,
    # labels 0: the hard negatives the ranker must tell apart from the click when it serves. 20 of
    # them changed next-click NDCG@10 by -0.0006 ± 0.0016 over six worlds: off by default.
    pool_negatives: int = 0
    pool_size: int = 500


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
