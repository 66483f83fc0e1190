"""The next-click protocol through the serving path: do served feeds find the clicks the offline
scorer finds?

`feedrank evaluate RUN --protocol next-click` scores the ranker offline: the union of the candidate
sources over the live catalog, the ranker on that pool, the clicked item's rank. Here the *same*
sampled test clicks (the same seed and draws as `evaluate_next_click`) are each sent, as a request
of the clicking user at the click's time, through the service's `Recommender.recommend_batch` on
a bundle (`eval/served_path.py`: candidate union → ranker → re-ranker), and the clicked item's
position in the served feed gives HR@10, HR@20, NDCG@10 and MRR@20 exactly as
`next_click_stream.rank_metrics` defines them (an item outside the feed's top 20 is a miss for
all four). The rows are added beside the offline systems, so a gap between the scorer and the
service shows in the same table; since both ranked the same clicks, each served row's difference
from the offline ranker is also given with its paired standard error (`served_paired`), far
below either row's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.data.features import to_us
from feedrank.data.split import open_split
from feedrank.errors import ConfigError
from feedrank.eval.next_click import NextClickOptions, NextClickReport, next_click_per_event, sample_clicks
from feedrank.eval.served_metrics import request_metrics, summarize
from feedrank.eval.served_path import RecommenderServer
from feedrank.eval.served_requests import demographics_of
from feedrank.serve.rerank import RerankConfig
from feedrank.serve.settings import ServeSettings

log = logging.getLogger(__name__)
METRICS = ("hr@10", "hr@20", "ndcg@10", "mrr@20")
OFFLINE_RANKERS = ("ranker (feed score)", "ranker")


def evaluate_next_click_served(
    run_dir: Path,
    bundle: Path,
    split_dir: Path | None,
    options: NextClickOptions,
    on_click: Callable[[int, int], None] | None = None,
) -> NextClickReport:
    """`evaluate_next_click`, plus rows "served (ranker)" and "served (no re-ranking)": the same
    clicks through the bundle's Recommender."""
    if options.skip_session_first:
        raise ConfigError("--bundle: the served rows count every sampled click; drop --skip-session-first")
    report, per_event = next_click_per_event(run_dir, split_dir, options, on_click)
    served = served_next_click(bundle, Path(report.data), options)
    for name, values in served.items():
        row = summarize(values, np.ones(values[METRICS[0]].size, dtype=bool))
        row["events"] = row.pop("requests")
        report.overall[name] = row
    report.served_paired = served_differences(served, per_event.metrics)
    return report


def served_differences(
    served: dict[str, dict[str, np.ndarray]], offline: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """ "served − offline" → metric → mean per-click difference, `<metric>_se` (the standard error
    of the per-click differences) and `events`, for each served system against each offline
    ranker row present ("ranker (feed score)" orders the pool as serving does; "ranker", by its
    click head, is the protocol's headline). Both lists hold the same clicks in the same order."""
    out: dict[str, dict[str, float]] = {}
    for name, values in served.items():
        for base in (b for b in OFFLINE_RANKERS if b in offline):
            row: dict[str, float] = {}
            for m in METRICS:
                if values[m].shape != offline[base][m].shape:
                    raise ValueError(f"{name} has {values[m].size} clicks, {base} {offline[base][m].size}")
                d = values[m] - offline[base][m]
                d = d[np.isfinite(d)]  # as `summarize` counts finite values only
                row[m] = float(d.mean()) if d.size else float("nan")
                row[f"{m}_se"] = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
                row["events"] = float(d.size)
            out[f"{name} − {base}"] = row
    return out


def served_next_click(
    bundle: Path, split_dir: Path, options: NextClickOptions
) -> dict[str, dict[str, np.ndarray]]:
    """system → metric → (E,) per-click values over the sampled test clicks (their time order), served."""
    parts = open_split(split_dir)
    rng = np.random.default_rng(options.seed)  # the draws of evaluate_next_click, in its order
    sample_clicks(parts["valid"].read("impressions"), options.valid_events, rng)
    clicks = sample_clicks(parts["test"].read("impressions"), options.max_events, rng)
    users = [str(u) for u in clicks.get_column("user_id").to_list()]
    items = [str(i) for i in clicks.get_column("item_id").to_list()]
    times = to_us(clicks.get_column("ts")).tolist()
    demos = demographics_of(pl.Series(users, dtype=pl.String), parts["test"].read("users"))
    out: dict[str, dict[str, np.ndarray]] = {}
    plain = ServeSettings(sources=options.sources)
    for name, settings in (
        ("served (ranker)", plain),
        ("served (no re-ranking)", ServeSettings(sources=options.sources, rerank=RerankConfig(order=()))),
    ):
        server = RecommenderServer(load_bundle(bundle), settings, name=name)
        values: dict[str, list[float]] = {m: [] for m in METRICS}
        for e, (user, item, now) in enumerate(zip(users, items, times, strict=True)):
            feed = server.feeds([user], int(now), 20, [demos[e]])[0]
            metrics = request_metrics(feed, [], item)
            for m in METRICS:
                values[m].append(metrics[m])
            if (e + 1) % 500 == 0:
                log.info("%s: %d of %d clicks served", name, e + 1, len(users))
        out[name] = {m: np.asarray(v, dtype=np.float64) for m, v in values.items()}
        del server  # one bundle in memory at a time
    return out
