"""What re-ranking does to the feeds: diversity, coverage, exposure and value, side by side.

For sampled test requests, the serving path is replayed offline: the two-tower's top candidates
over the live catalog, the ranker's feed scores, then each re-ranking configuration; every
configuration re-ranks the same candidates. Reported per configuration: intra-list diversity,
distinct publishers per feed, catalog coverage, publisher exposure Gini, clickbait share, mean age,
hit rate of the request's clicked items in the feed and, in the simulator, the mean ground-truth
utility of the feed's items.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from feedrank.data.examples import FeatureSpace
from feedrank.data.features import to_us
from feedrank.data.timeline import EventIndex
from feedrank.eval.baselines import Scorer
from feedrank.eval.catalog import LiveCatalog, Queries, TwoTowerRanker, score_lists, top_k
from feedrank.eval.diversity import ItemArrays, compare_rerankings
from feedrank.eval.model_scorer import RankerScorer
from feedrank.models.inputs import ItemInputs
from feedrank.progress import advance
from feedrank.serve.rerank import Candidates, RequestContext, RerankConfig, build_reranker


def rerank_configs() -> dict[str, RerankConfig]:
    """No re-ranking, each step alone, and the serving default."""
    none = RerankConfig(order=())
    return {
        "ranker only": none,
        "+ freshness": replace(none, order=("freshness",)),
        "+ clickbait guardrail": replace(none, order=("clickbait",)),
        "+ publisher cap": replace(none, order=("cap",)),
        "+ MMR": replace(none, order=("mmr",)),
        f"default ({', '.join(RerankConfig().order)})": RerankConfig(),
    }


def rerank_effect(
    space: FeatureSpace,
    ranker: RankerScorer,
    queries: Queries,
    live: LiveCatalog,
    *,
    clickbait: np.ndarray | None = None,
    events: pl.DataFrame | None = None,
    ground_truth: Scorer | None = None,
    configs: dict[str, RerankConfig] | None = None,
    k: int = 20,
    candidates: int = 200,
) -> dict[str, dict[str, float]]:
    """Metrics of the (Q, k) feeds each configuration makes from the same candidates.

    `events`: the impressions known to the system; each candidate's click rate and mean dwell over
    the day before the request come from them, as the clickbait guardrail reads them in serving.
    """
    configs = configs or rerank_configs()
    rows = top_k(TwoTowerRanker(ranker.towers), queries, live, candidates)  # (Q, N), -1 pads
    valid = rows >= 0
    scores = score_lists(rows, queries, ranker, space)
    ctr = np.full(rows.shape, np.nan)
    dwell = np.full(rows.shape, np.nan)
    if events is not None:
        ctr[valid], dwell[valid] = engagement_at(
            space, events, rows[valid], np.repeat(queries.ts_us, rows.shape[1])[valid.ravel()]
        )
    cat = space.catalog
    content = _content(ranker, space)
    feeds: dict[str, npt.ArrayLike] = {}
    for c, (name, config) in enumerate(configs.items()):
        reranker = build_reranker(config)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            mask = valid[q]
            r = rows[q][mask]
            cands = Candidates(
                items=r,
                scores=scores[q][mask],
                publisher=cat.publisher[r],
                published_us=cat.published_us[r],
                embeddings=content[r],
                click_rate=ctr[q][mask],
                mean_dwell_s=dwell[q][mask],
            )
            chosen = reranker.apply(cands, RequestContext(now_us=int(queries.ts_us[q]), k=k))
            out[q, : len(chosen)] = chosen.items
            advance("re-ranking effect (feeds)", c * len(queries) + q + 1, len(configs) * len(queries))
        feeds[name] = out
    arrays = ItemArrays(
        publisher=cat.publisher, embeddings=content, published_us=cat.published_us, clickbait=clickbait
    )
    results = compare_rerankings(dict(feeds), arrays, request_us=queries.ts_us)
    for name, feed in feeds.items():
        results[name]["hit_rate@k"] = _hit_rate(np.asarray(feed), queries)
        if ground_truth is not None:
            results[name]["utility@k"] = _utility(np.asarray(feed), queries, ground_truth, space)
    return results


def engagement_at(
    space: FeatureSpace, events: pl.DataFrame, rows: np.ndarray, ts_us: np.ndarray, window_h: float = 24.0
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) click rate and mean dwell (s) of clicks of catalog `rows` over the `window_h` hours
    before each time, from `events` strictly before it (what serving knows then); NaN if unseen."""
    window = int(window_h * 3_600_000_000)
    item_rows = space.catalog.rows(events.get_column("item_id"))
    ts = to_us(events.get_column("ts"))
    clicked = events.get_column("clicked").to_numpy().astype(bool)
    dwell = events.get_column("dwell_s").fill_null(0.0).to_numpy().astype(np.float64)
    known = item_rows >= 0
    views = EventIndex(item_rows[known], ts[known])
    clicks = EventIndex(item_rows[known & clicked], ts[known & clicked], dwell[known & clicked])
    n_views = views.count_before(rows, ts_us, window).astype(np.float64)
    n_clicks = clicks.count_before(rows, ts_us, window).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = np.where(n_views > 0, n_clicks / n_views, np.nan)
        mean_dwell = np.where(n_clicks > 0, clicks.sum_before(rows, ts_us, window) / n_clicks, np.nan)
    return ctr, mean_dwell


@torch.no_grad()
def _content(ranker: RankerScorer, space: FeatureSpace) -> np.ndarray:
    cat = space.catalog
    items = ItemInputs.from_arrays(space.item_arrays(np.arange(len(cat)), np.zeros(len(cat), dtype=np.int64)))
    out: np.ndarray = ranker.towers.model.item_tower.content(items).numpy()
    return out.astype(np.float32)


def _hit_rate(feeds: np.ndarray, queries: Queries) -> float:
    rel = queries.relevant
    hits = [
        bool(np.isin(rel.items[rel.offsets[q] : rel.offsets[q + 1]], feeds[q]).any())
        for q in range(len(queries))
    ]
    return float(np.mean(hits)) if hits else float("nan")


def _utility(feeds: np.ndarray, queries: Queries, truth: Scorer, space: FeatureSpace) -> float:
    valid = feeds >= 0
    users = np.repeat(queries.user_ids, feeds.shape[1])[valid.ravel()]
    ts = np.repeat(queries.ts_us.astype("datetime64[us]"), feeds.shape[1])[valid.ravel()]
    values = truth.score(users, ts, space.catalog.item_ids[feeds[valid]])
    return float(values.mean()) if values.size else float("nan")
