"""Cheap validation metrics for early stopping during training, on the split's valid part.

They are built from the same evaluation code as the final report, on a sample, so that what the
training loop optimises and what the report shows agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from torch import nn

from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace
from feedrank.eval.catalog import LiveCatalog, TwoTowerRanker, click_queries, evaluate_catalog
from feedrank.eval.metrics import ranking_metrics
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.models.ranker import Ranker
from feedrank.models.two_tower import TwoTower

Evaluate = Callable[[nn.Module], dict[str, float]]


def retrieval_validator(
    parts: dict[str, Dataset], max_queries: int = 500, seed: int = 0
) -> Callable[[FeatureSpace], Evaluate]:
    """recall@100, ndcg@10 and mrr of the two-tower on sampled valid requests (live catalog)."""

    def make(space: FeatureSpace) -> Evaluate:
        valid = parts["valid"].read("impressions")
        events = pl.concat([parts["train"].read("impressions"), valid])
        queries = click_queries(space, valid, max_queries, seed)
        live = LiveCatalog(space, events)

        def evaluate(model: nn.Module) -> dict[str, float]:
            assert isinstance(model, TwoTower)
            ranker = TwoTowerRanker(TwoTowerScorer(space, model))
            m = evaluate_catalog([ranker], queries, live, ks=(10, 100))["two-tower"]
            return {"recall@100": m["recall@100"], "ndcg@10": m["ndcg@10"], "mrr": m["mrr"]}

        return evaluate

    return make


def ranker_validator(
    parts: dict[str, Dataset],
    towers: TwoTower,
    weights: dict[str, float],
    max_rows: int = 50_000,
    seed: int = 0,
) -> Callable[[FeatureSpace], Evaluate]:
    """AUC, GAUC and nDCG@10 of the ranker's feed score on sampled valid requests."""

    def make(space: FeatureSpace) -> Evaluate:
        valid = parts["valid"].read("impressions")
        requests = valid.get_column("request_id").unique().sort()
        rng = np.random.default_rng(seed)
        keep_n = max(1, int(requests.len() * min(1.0, max_rows / max(valid.height, 1))))
        chosen = requests.gather(np.sort(rng.choice(requests.len(), keep_n, replace=False)))
        sample = valid.filter(pl.col("request_id").is_in(chosen.implode()))
        rows: Any = (
            sample.get_column("user_id").to_numpy().astype(object),
            sample.get_column("ts").dt.replace_time_zone(None).to_numpy(),
            sample.get_column("item_id").to_numpy().astype(object),
        )
        clicked = sample.get_column("clicked").to_numpy().astype(np.float64)
        groups = sample.get_column("request_id").rank("dense").to_numpy()

        cached: dict[str, np.ndarray] = {}  # the source columns: the towers are frozen, rows fixed

        def evaluate(model: nn.Module) -> dict[str, float]:
            assert isinstance(model, Ranker)
            scorer = RankerScorer(space, towers, model, weights)
            if model.num_sources and "sources" not in cached:
                cached["sources"] = scorer.source_columns(rows[0], rows[1], rows[2])
            scores = scorer.score(rows[0], rows[1], rows[2], sources=cached.get("sources"))
            m = ranking_metrics(scores, clicked, groups, ks=(10,))
            return {"auc": m["auc"], "gauc": m["gauc"], "ndcg@10": m["ndcg@10"]}

        return evaluate

    return make
