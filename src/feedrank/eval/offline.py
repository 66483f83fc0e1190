"""`feedrank evaluate RUN`: a trained run against the baselines (and the oracle, in the simulator).

Two views, every system in the same run on the same rows:
- retrieval over the full catalog (two-tower, baselines, oracle): Recall/NDCG/hit rate@K, MRR,
  coverage on sampled test requests with clicks;
- ranking within impressions (all of the above plus the ranker): AUC, GAUC, MRR, nDCG@5/10,
  precision, value-weighted nDCG, the ranker's calibration, and in the simulator the share of the
  oracle's slate value.
A ranker run also gets the engagement-weight sweep on the validation part, and the served feed:
sampled test requests through the service's own serving path (`eval/served.py`), on the bundle
given or on one written from the run into a temporary directory.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feedrank.artifacts.store import build_space, load_ranker, load_retrieval, read_run
from feedrank.bundle import write_bundle
from feedrank.data.features import to_us
from feedrank.data.split import open_split
from feedrank.eval.baselines import GlobalPopularity, RandomScorer, RecentPopularity, Scorer
from feedrank.eval.catalog import (
    CatalogRanker,
    LiveCatalog,
    ScorerRanker,
    TwoTowerRanker,
    click_queries,
    evaluate_catalog,
)
from feedrank.eval.covisitation import CoVisitation
from feedrank.eval.impressions import calibration_of, engagement_value, evaluate_impressions
from feedrank.eval.metrics import group_metrics
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.oracle import OracleScorer, world_of
from feedrank.eval.rerank_effect import rerank_effect
from feedrank.eval.served import ServedOptions, ServedReport, evaluate_served
from feedrank.eval.utility import share_of_oracle
from feedrank.models.ranker import HEADS

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("request_id", "user_id", "item_id", "ts", "clicked")
# What the test window's own metrics read (scores, labels, engagement value, groups).
TARGET_COLUMNS = ("request_id", "user_id", "item_id", "ts", "clicked", "dwell_s", "shared", "hidden")

WEIGHT_SWEEP: dict[str, dict[str, float]] = {
    "clicks only": {"click": 1.0},
    "default (1/2/5/-1)": {"click": 1.0, "long_dwell": 2.0, "share": 5.0, "hide": -1.0},
    "dwell-heavy": {"click": 1.0, "long_dwell": 5.0, "share": 5.0, "hide": -1.0},
    "share-heavy": {"click": 1.0, "long_dwell": 2.0, "share": 20.0, "hide": -1.0},
    "hide-averse": {"click": 1.0, "long_dwell": 2.0, "share": 5.0, "hide": -10.0},
    "no clicks": {"long_dwell": 1.0, "share": 2.0, "hide": -1.0},
}


@dataclass(frozen=True)
class EvalOptions:
    max_queries: int = 2000  # test requests ranked against the full catalog
    ks: tuple[int, ...] = (10, 20, 50, 100, 500)
    part: str = "test"
    seed: int = 0
    live_window_h: float = 48.0  # an item is a candidate while published or shown this recently
    rerank_queries: int = 300  # test requests replayed through each re-ranking configuration
    served_requests: int = 1000  # test requests sent through the serving path (0: none)
    served_posterior: bool = False  # the posterior oracle's row beside served and oracle (slow)


@dataclass
class OfflineReport:
    run: str
    data: str
    kind: str
    retrieval: dict[str, dict[str, float]]
    impressions: dict[str, dict[str, float]]
    calibration: dict[str, float] | None = None
    reliability: pl.DataFrame | None = None
    oracle_share: dict[str, dict[str, float]] = field(default_factory=dict)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    rerank: dict[str, dict[str, float]] = field(default_factory=dict)
    served: ServedReport | None = None
    notes: list[str] = field(default_factory=list)


def baselines() -> dict[str, Scorer]:
    return {
        "random": RandomScorer(seed=0),
        "popularity": GlobalPopularity(),
        "recent popularity (24 h)": RecentPopularity(window=timedelta(hours=24)),
        "co-visitation": CoVisitation(),
    }


def evaluate_run(
    run_dir: Path,
    split_dir: Path | None = None,
    options: EvalOptions = EvalOptions(),
    bundle: Path | None = None,
) -> OfflineReport:
    """Evaluate a retrieval or ranker run on a split (default: the split it was trained on).

    `bundle`: what serves the served-feed rows of a ranker run (default: one written from the run)."""
    info = read_run(run_dir)
    kind = info["kind"]
    ranker_bits = load_ranker(run_dir) if kind == "ranker" else None
    retrieval_run = ranker_bits[2] if ranker_bits else run_dir
    towers, retrieval_cfg = load_retrieval(retrieval_run)
    split_dir = Path(split_dir or info["data"])
    parts = open_split(split_dir)
    space = build_space(split_dir, retrieval_cfg.features)
    # Never every impression at once: the baselines read clicks alone, the live catalog each
    # item's first show and the views near the queries, the re-ranking check a day of views.
    scans = [ds.scan("impressions") for ds in parts.values()]
    clicks = pl.concat([s.filter(pl.col("clicked")).select(EVENT_COLUMNS) for s in scans]).collect()
    target = parts[options.part].scan("impressions").select(TARGET_COLUMNS).collect()
    world = world_of(parts[options.part])

    weights = (ranker_bits[1] if ranker_bits else retrieval_cfg).weights.as_dict()
    scorers: dict[str, Scorer] = {name: s.fit(clicks) for name, s in baselines().items()}
    two_tower = TwoTowerScorer(space, towers)
    scorers["two-tower"] = two_tower
    ranker_scorer = None
    if ranker_bits is not None:
        ranker_scorer = RankerScorer(space, towers, ranker_bits[0], weights)
        scorers["ranker"] = ranker_scorer
    oracle = OracleScorer(world) if world is not None else None
    if oracle is not None:
        scorers["oracle"] = oracle

    log.info("retrieval over the full catalog")
    queries = click_queries(space, target, options.max_queries, options.seed)
    shown = pl.concat([s.select("item_id", "ts") for s in scans])
    target_us = to_us(target.get_column("ts"))  # every query below is a target request
    span = (int(target_us.min()), int(target_us.max())) if target_us.size else None
    live = LiveCatalog(space, shown, options.live_window_h, span_us=span)
    rankers: list[CatalogRanker] = [
        ScorerRanker(name, s, space) for name, s in scorers.items() if name not in ("two-tower", "ranker")
    ]
    rankers.insert(-1 if oracle is not None else len(rankers), TwoTowerRanker(two_tower))
    retrieval = evaluate_catalog(rankers, queries, live, options.ks, ground_truth=oracle, space=space)

    log.info("ranking within impressions")
    impressions, scores = evaluate_impressions(target, scorers, weights)
    report = OfflineReport(
        run=str(run_dir), data=str(split_dir), kind=kind, retrieval=retrieval, impressions=impressions
    )
    if ranker_scorer is not None:
        probs = ranker_scorer.probabilities(*_rows(target))
        report.calibration, report.reliability = calibration_of(probs[:, HEADS.index("click")], target)
        valid = parts["valid"].scan("impressions").select(TARGET_COLUMNS).collect()
        report.sweep = weight_sweep(ranker_scorer, valid, world)
        log.info("re-ranking effect")
        sample = click_queries(space, target, options.rerank_queries, options.seed)
        clickbait = None
        if world is not None:
            clickbait = world.items.clickbait[
                world.item_index(pl.Series(space.catalog.item_ids, dtype=pl.String))
            ]
        events = _day_before(scans, sample.span_us())
        report.rerank = rerank_effect(
            space, ranker_scorer, sample, live, clickbait=clickbait, events=events, ground_truth=oracle
        )
    if ranker_bits is not None and options.served_requests > 0:
        log.info("the served feed")
        report.served = served_feed(run_dir, split_dir, options, bundle)
    if oracle is not None:
        groups = target.get_column("request_id").rank("dense").to_numpy()
        exam = world.examination(np.arange(64)) if world is not None else np.ones(64)
        for name, sc in scores.items():
            impressions[name]["slate_value_share"] = share_of_oracle(sc, scores["oracle"], groups, exam)
        report.oracle_share = _shares(retrieval, "oracle") | {
            f"impressions/{k}": v for k, v in _shares(impressions, "oracle").items()
        }
    else:
        report.notes.append("no simulated world behind this data: oracle values are not available")
    return report


def served_feed(run_dir: Path, split_dir: Path, options: EvalOptions, bundle: Path | None) -> ServedReport:
    """The served-feed evaluation of a ranker run: on `bundle`, or on a bundle of the run and split
    written to a temporary directory (the same files `feedrank bundle` writes, unsigned)."""
    served = ServedOptions(
        requests=options.served_requests,
        part=options.part,
        seed=options.seed,
        live_window_h=options.live_window_h,
        posterior_oracle=options.served_posterior,
    )
    if bundle is not None:
        return evaluate_served(bundle, split_dir, served)
    with tempfile.TemporaryDirectory(prefix="feedrank-served-") as tmp:
        path = write_bundle(run_dir, Path(tmp) / "bundle", split_dir=split_dir)
        report = evaluate_served(path, split_dir, served)
    report.bundle = f"a bundle of {run_dir} written for this evaluation"
    return report


def _day_before(scans: list[pl.LazyFrame], span_us: tuple[int, int] | None) -> pl.DataFrame:
    """The impressions (item_id, ts, clicked, dwell_s) of the 24 hours before the first query
    up to the last: all that `rerank_effect`'s day-long click rates read."""
    lo, hi = span_us or (0, 0)
    us = pl.col("ts").dt.epoch("us")
    window = (us >= lo - 24 * 3_600_000_000) & (us < hi)
    columns = ("item_id", "ts", "clicked", "dwell_s")
    return pl.concat([s.filter(window).select(columns) for s in scans]).collect()


def _rows(impressions: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        impressions.get_column("user_id").to_numpy().astype(object),
        impressions.get_column("ts").dt.replace_time_zone(None).to_numpy(),
        impressions.get_column("item_id").to_numpy().astype(object),
    )


def _shares(results: dict[str, dict[str, float]], oracle: str) -> dict[str, dict[str, float]]:
    """Each system's metrics as a fraction of the oracle's."""
    best = results.get(oracle, {})
    return {
        name: {k: v / best[k] for k, v in metrics.items() if k in best and best[k] and np.isfinite(best[k])}
        for name, metrics in results.items()
        if name != oracle
    }


def weight_sweep(ranker: RankerScorer, valid: pl.DataFrame, world: Any) -> list[dict[str, Any]]:
    """Rank the validation slates by each weighting of the heads; judge each by the long-term
    outcome: the share of the oracle's slate value (simulator) and the value-weighted nDCG@10."""
    probs = ranker.probabilities(*_rows(valid))
    groups = valid.get_column("request_id").rank("dense").to_numpy()
    value = engagement_value(valid, WEIGHT_SWEEP["default (1/2/5/-1)"])
    utility = OracleScorer(world).score(*_rows(valid)) if world is not None else None
    exam = world.examination(np.arange(64)) if world is not None else None
    rows = []
    for name, weights in WEIGHT_SWEEP.items():
        scores = probs @ np.array([weights.get(h, 0.0) for h in HEADS])
        row: dict[str, Any] = {"weighting": name, **weights}
        row["value_ndcg@10"] = group_metrics(scores, value, groups, ks=(10,)).summary()["ndcg@10"]
        if utility is not None and exam is not None:
            row["slate_value_share"] = share_of_oracle(scores, utility, groups, exam)
        rows.append(row)
    return rows
