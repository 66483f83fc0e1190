"""The configuration of a training run, as saved in run.json and in bundles.

A run config gathers the parts every stage agrees on: the features, the network, the loss, the
engagement weights and the training loop's knobs. Training reads them to train; bundles and
serving read them back to rebuild the same networks, without importing the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # Up to this many shown-not-clicked items per positive from the same request (e.g. 50). They
    # multiply the item tower's work per step by the slate size, so they are off by default.
    hard_negatives: int = 0
    # Uniform draws from the catalog live at each example's time; -1 = auto: 20 for click-only logs
    # (they have no shown-not-clicked items), else none.
    catalog_negatives: int = -1
    # Train on the clicks of the last `train_window_h` hours of the train part only (0 = all of
    # it), as the ranker's `loss.train_window_h`: on a news log the items read next are those of
    # the last day or two, and a row of a week-old click spends a step on an item no longer live.
    train_window_h: float = 0.0


# On a log with impressions the catalog negatives teach the click head alone (`unshown_heads`):
# validation of the default world, 2026-12-05 (docs/evaluation.md): next click as with 50 for every
# head, the served share as with none.
AUTO_IMPRESSION_CATALOG_NEGATIVES = 50
AUTO_CLICK_ONLY_CATALOG_NEGATIVES = 5
AUTO_CLICK_ONLY_POOL_NEGATIVES = 10
# About the last 2 hours of the Globo slice's train part: ranker E of docs/real_news.md (18,016
# clicks), the recipe that run measured, in a step that fits the shared 2-core box.
AUTO_CLICK_ONLY_MAX_CLICKS = 20_000
# The rows of the latest requests a ranker trains on, on a log with impressions: the default
# simulated world's train part (`feedrank demo`, 200,000 rows) is whole under it; the large
# world's at 10M impressions (8M rows, 50 catalog negatives per click) did not fit 6 GB
# (BENCHMARKS.md, "Training memory against rows on one world").
AUTO_IMPRESSION_MAX_ROWS = 500_000


@dataclass(frozen=True)
class RankerLossConfig:
    # How much each head's loss counts in the total; the feed score's weights are separate.
    head_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HEADS, 1.0))
    negative_rate: float = 1.0  # keep-probability of rows without engagement (1 = no downsampling)
    # Unshown items drawn per click from the catalog live at its time (data/examples.py says why):
    # the ranker then learns to tell a click from everything live, as next-click ranking asks.
    # 0 turns them off: the ranker fits the logged impressions only. -1 = auto: 50 on a log with
    # impressions, for the click head only (`unshown_heads`), 5 on a click-only log, where the pool
    # negatives below are the ones that teach (docs/real_news.md). On a log with impressions an
    # unshown item's label says only that the logging policy did not show it: with 50 of them per
    # click in every head's loss the ranker learned the policy's exposure (popular, fresh items for
    # everyone) and the served feed lost a tenth of the oracle's utility (docs/served_feed.md);
    # with none, the click head lost next click (docs/evaluation.md has the counts tried).
    catalog_negatives: int = -1
    # The heads whose loss counts the unshown negatives above (catalog, popular and pool draws) on
    # a log with impressions; the other heads learn from the shown rows alone. An unshown item's
    # zero says only that it was not shown: a fair negative for "which live item gets the next
    # click" (the click head, which next-click ranking reads), not for "is it read long, shared or
    # hidden once shown" (the heads the feed score weighs most: long dwell x2, share x5, hide -1).
    # A click-only log's rows do not tell shown from unshown: there every head counts them.
    unshown_heads: tuple[str, ...] = ("click",)
    # The loss weight of each unshown negative (1 = as much as a shown row).
    unshown_weight: float = 1.0
    # Items drawn per click from its own merged candidate pool (what serving would rank: the
    # ANN's, trending, co-visitation and fresh lists at its time, `pool_size` of them), not shown,
    # labels 0: the hard negatives the ranker must tell apart from the click when it serves.
    # -1 = auto: 10 on a click-only log (they brought the Globo ranker's cold items back,
    # docs/real_news.md), 0 on a log with impressions (the simulated world's results are measured
    # without them).
    pool_negatives: int = -1
    pool_size: int = 500
    # Items drawn per click in proportion to their clicks in the `popular_window_h` hours before it
    # (data/examples.recent_click_sample): the items being read right now, the hard negatives of a
    # click-only news log (docs/real_news.md). Off by default: the simulated world's results are
    # measured without them.
    popular_negatives: int = 0
    popular_window_h: float = 1.0
    # Train on the last `train_window_h` hours of the train part only (0 = all of it): on a
    # click-only log every click brings its negatives, which bounds the rows held in memory.
    train_window_h: float = 0.0
    # Weight of a listwise term on the click head: the softmax cross-entropy of each query's click
    # against the query's other rows (a click-only log's click and its negatives; a request's
    # impressions), added to the per-row BCE. 0 = off: the BCE alone keeps the click probability
    # calibrated, which the simulated world's impressions measure; the listwise term trades that
    # for the order within a pool, which next-click on news asks for (docs/real_news.md).
    listwise_weight: float = 0.0
    # Train on the latest `max_clicks` clicks of a click-only log (after `train_window_h`; 0 = all
    # of them): each click is a query whose candidate pool is replayed (~2.5 ms a click on an idle
    # core), which bounds the ranker's time and memory whatever the log's length. -1 = auto:
    # AUTO_CLICK_ONLY_MAX_CLICKS on a click-only log, all rows on a log with impressions.
    max_clicks: int = -1
    # Train on the rows of the latest requests of a log with impressions, about `max_rows` of them
    # (after `train_window_h`; whole requests; 0 = all of them): it bounds the examples held, the
    # counters computed and the requests replayed, as `max_clicks` does on a click-only log.
    # -1 = auto: AUTO_IMPRESSION_MAX_ROWS on a log with impressions, 0 on a click-only log.
    max_rows: int = -1

    def resolved(self, click_only: bool) -> RankerLossConfig:
        """This config with the auto (-1) counts decided for a click-only log or not."""
        catalog = self.catalog_negatives
        if catalog < 0:
            catalog = AUTO_CLICK_ONLY_CATALOG_NEGATIVES if click_only else AUTO_IMPRESSION_CATALOG_NEGATIVES
        pool = self.pool_negatives
        if pool < 0:
            pool = AUTO_CLICK_ONLY_POOL_NEGATIVES if click_only else 0
        clicks = self.max_clicks
        if clicks < 0:
            clicks = AUTO_CLICK_ONLY_MAX_CLICKS if click_only else 0
        rows = self.max_rows
        if rows < 0:
            rows = 0 if click_only else AUTO_IMPRESSION_MAX_ROWS
        return replace(self, catalog_negatives=catalog, pool_negatives=pool, max_clicks=clicks, max_rows=rows)


# The training loop's defaults per model (TrainConfig is frozen and hashable: one shared default).
# The two-tower stops after RETRIEVAL_MAX_SAMPLES examples (its learning-rate schedule spans them)
# unless its epochs end first: 8 epochs of a small log (the demo's 8,741 examples), 300 batches of
# 1,024 on a large one (a quarter of an epoch of the Globo slice's 1.2M training clicks, the
# 300 steps bench/real_news.py trains), so that a real log trains in minutes on a shared 2-core
# box (BENCHMARKS.md, "The real slice end to end with the defaults"). `train.max_samples=0`
# lifts it.
RETRIEVAL_MAX_SAMPLES = 307_200
RETRIEVAL_TRAINING = TrainConfig(
    epochs=8,
    max_samples=RETRIEVAL_MAX_SAMPLES,
    lr=3e-3,
    sparse_lr=0.05,
    early_stop_metric="recall@100",
    patience=2,
)
RANKER_TRAINING = TrainConfig(epochs=3, lr=2e-3, sparse_lr=0.05, early_stop_metric="gauc", patience=2)


@dataclass(frozen=True)
class RetrievalRunConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    loss: RetrievalLossConfig = field(default_factory=RetrievalLossConfig)
    weights: EngagementWeights = field(default_factory=EngagementWeights)
    train: TrainConfig = RETRIEVAL_TRAINING
    batch_size: int = 1024


@dataclass(frozen=True)
class RankerRunConfig:
    model: RankerConfig = field(default_factory=RankerConfig)
    loss: RankerLossConfig = field(default_factory=RankerLossConfig)
    weights: EngagementWeights = field(default_factory=EngagementWeights)
    train: TrainConfig = RANKER_TRAINING
    batch_size: int = 1024
    # Names of the dense features the ranker reads (data/history.py), in column order; recorded in
    # run.json and bundles. `ranker_config` reads a saved config without them as COUNTER_NAMES.
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
    """A ranker's config as saved in a run or bundle. A config without `counters` reads the nine
    COUNTER_NAMES, one without `sources` no source columns and one without `model.counter_norm`
    the LayerNorm: the inputs and layers such a model was trained with, so every saved run and
    bundle keeps its exact model."""
    if "counters" not in values:
        values = {**values, "counters": list(COUNTER_NAMES)}
    if "sources" not in values:  # no key: the model reads no source columns
        values = {**values, "sources": []}
    model = values.get("model")
    if isinstance(model, dict) and "counter_norm" not in model:  # saved before the key existed
        values = {**values, "model": {**model, "counter_norm": "layer"}}
    return from_dict(RankerRunConfig, values, source=source)
