"""Cheap validation metrics for early stopping during training, on the split's valid part.

They are built from the same evaluation code as the final report, on a sample, so that what the
training loop optimises and what the report shows agree.

On a click-only log (no impressions) a request holds no negatives, so impression AUC / GAUC are
undefined (NaN) and a request-level catalog metric mixes a whole session's clicks into one query.
Both validators then also report `next_click_ndcg@10`: the next-click protocol
(eval/next_click.py) on a seeded sample of the validation window's clicks: NDCG@10 of each
clicked item among the live catalog at its time (the two-tower scores every live item; the ranker
re-scores the union of candidate sources, as served, ranked by its click head). A click on an item
that is not live counts 0, so the value is a number whatever the sample holds (0 when empty).
`selection_metric` picks it for early stopping on click-only data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from torch import nn

from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace
from feedrank.eval.blend import BlendWeights
from feedrank.eval.catalog import LiveCatalog, TwoTowerRanker, click_queries, evaluate_catalog
from feedrank.eval.metrics import ranking_metrics
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.next_click import NextClickOptions, evaluate_clicks, sample_clicks
from feedrank.eval.next_click_stream import ClickStream
from feedrank.models.ranker import Ranker
from feedrank.models.two_tower import TwoTower
from feedrank.train.ranker_rows import ScopedEvaluate

Evaluate = Callable[[nn.Module], dict[str, float]]
NEXT_CLICK_METRIC = "next_click_ndcg@10"
IMPRESSION_METRICS = ("recall@100", "gauc", "auc")  # the defaults a click-only log cannot use


def selection_metric(parts: dict[str, Dataset], metric: str) -> str:
    """The early-stopping metric to use: on a click-only split, the next-click metric instead of
    an impression metric (which is NaN or request-level there); otherwise `metric` unchanged."""
    if parts["train"].click_only and metric in IMPRESSION_METRICS:
        return NEXT_CLICK_METRIC
    return metric


class NextClickValidation:
    """The next-click protocol on a seeded sample of validation clicks (see the module docstring)."""

    def __init__(
        self, parts: dict[str, Dataset], space: FeatureSpace, max_clicks: int = 500, seed: int = 0
    ) -> None:
        # Candidate recall is not needed here: one pool size, the ranker's.
        self.options = NextClickOptions(candidate_ns=(NextClickOptions().ranker_candidates,), seed=seed)
        valid = parts["valid"].read("impressions")
        events = pl.concat([parts["train"].read("impressions"), valid]).select(
            "user_id", "item_id", "ts", "clicked"
        )
        self.clicks = sample_clicks(valid, max_clicks, np.random.default_rng(seed))
        self.stream = ClickStream(space, events, self.options.live_window_h, self.options.session_gap_min)

    def ndcg(self, two_tower: TwoTowerScorer, ranker: RankerScorer | None = None) -> float:
        """Mean NDCG@10 of the ranker (when given) or else the two-tower; 0.0 with no clicks."""
        if self.clicks.height == 0:
            return 0.0
        per_event = evaluate_clicks(
            self.stream, self.clicks, self.options, BlendWeights(1.0, 1.0), two_tower, ranker
        )
        values = per_event.metrics["ranker" if ranker is not None else "two-tower"]["ndcg@10"]
        return float(values.mean()) if values.size else 0.0


def retrieval_validator(
    parts: dict[str, Dataset], max_queries: int = 500, seed: int = 0, next_click: bool | None = None
) -> Callable[[FeatureSpace], Evaluate]:
    """recall@100, ndcg@10 and mrr of the two-tower on sampled valid requests (live catalog), and
    `next_click_ndcg@10` when `next_click` (default: on a click-only split)."""
    with_next_click = parts["train"].click_only if next_click is None else next_click

    def make(space: FeatureSpace) -> Evaluate:
        # The valid clicks and each item's first show: never the whole train part in memory.
        # Only the columns the queries read: the valid clicks grow with the log (900k at 100M
        # impressions), and all 18 columns of them took 300 MB beside the history index.
        columns = ("request_id", "user_id", "item_id", "ts", "clicked")
        valid_clicks = parts["valid"].scan("impressions").filter(pl.col("clicked")).select(columns).collect()
        queries = click_queries(space, valid_clicks, max_queries, seed)
        shown = pl.concat([parts[p].scan("impressions").select("item_id", "ts") for p in ("train", "valid")])
        live = LiveCatalog(space, shown, span_us=queries.span_us())
        clicks = NextClickValidation(parts, space, max_queries, seed) if with_next_click else None

        def evaluate(model: nn.Module) -> dict[str, float]:
            assert isinstance(model, TwoTower)
            scorer = TwoTowerScorer(space, model)
            m = evaluate_catalog([TwoTowerRanker(scorer)], queries, live, ks=(10, 100))["two-tower"]
            out = {"recall@100": m["recall@100"], "ndcg@10": m["ndcg@10"], "mrr": m["mrr"]}
            if clicks is not None:
                out[NEXT_CLICK_METRIC] = clicks.ndcg(scorer)
            return out

        return evaluate

    return make


def ranker_validator(
    parts: dict[str, Dataset],
    towers: TwoTower,
    weights: dict[str, float],
    max_rows: int = 50_000,
    seed: int = 0,
    max_clicks: int = 500,
    next_click: bool | None = None,
) -> Callable[[FeatureSpace], Evaluate]:
    """AUC, GAUC and nDCG@10 of the ranker's feed score on sampled valid requests (logs with
    impressions), and `next_click_ndcg@10` when `next_click` (default: on a click-only split, where
    it is the only metric: impression metrics are undefined without unclicked rows)."""
    click_only = parts["train"].click_only
    with_next_click = click_only if next_click is None else next_click

    def make(space: FeatureSpace) -> Evaluate:
        clicks = NextClickValidation(parts, space, max_clicks, seed) if with_next_click else None
        if click_only:

            def evaluate_clicks_only(model: nn.Module) -> dict[str, float]:
                assert isinstance(model, Ranker)
                scorer = RankerScorer(space, towers, model, weights)
                if clicks is None:
                    return {}
                return {NEXT_CLICK_METRIC: clicks.ndcg(scorer.towers, scorer)}

            return evaluate_clicks_only

        # The valid part is scanned, not read whole: its request ids, then the sampled requests'
        # rows (at 100M impressions the part is 10M rows; the sample is 50,000).
        valid = parts["valid"].scan("impressions")
        requests = (
            valid.select("request_id").unique().collect(engine="streaming").get_column("request_id").sort()
        )
        height = valid.select(pl.len()).collect(engine="streaming").item()
        rng = np.random.default_rng(seed)
        keep_n = max(1, int(requests.len() * min(1.0, max_rows / max(height, 1))))
        chosen = requests.gather(np.sort(rng.choice(requests.len(), keep_n, replace=False)))
        sample = valid.filter(pl.col("request_id").is_in(chosen.implode())).collect()
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
            out = {"auc": m["auc"], "gauc": m["gauc"], "ndcg@10": m["ndcg@10"]}
            if clicks is not None:
                out[NEXT_CLICK_METRIC] = clicks.ndcg(scorer.towers, scorer)
            return out

        # It names its rows: train_ranker bounds the indexes to them and its own (ranker_rows.py).
        return ScopedEvaluate(evaluate, sample.get_column("user_id"), sample.get_column("ts"))

    return make
