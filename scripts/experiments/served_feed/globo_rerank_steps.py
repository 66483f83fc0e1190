"""Which re-ranking step costs the served feed its next clicks on Globo: the same sampled test
clicks as `feedrank evaluate --protocol next-click` (seed 0), served through the bundle's
Recommender with each re-ranker order; NDCG@10 and HR@10 (mean ± SE).

    .venv/bin/python scripts/experiments/served_feed/globo_rerank_steps.py runs/real_news/bundle \
        runs/real_news/split 1500 2000
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.data.features import to_us
from feedrank.data.split import open_split
from feedrank.eval.next_click import sample_clicks
from feedrank.eval.served_metrics import mean_se, request_metrics
from feedrank.eval.served_path import RecommenderServer
from feedrank.serve.rerank import RerankConfig
from feedrank.serve.settings import ServeSettings

ORDERS = {
    "drop, clickbait, cap (main's default after a86d0fa)": ("drop", "clickbait", "cap"),
    "drop, clickbait": ("drop", "clickbait"),
    "drop, cap": ("drop", "cap"),
    "drop, freshness": ("drop", "freshness"),
}


def main(bundle: str, split: str, max_events: int, valid_events: int) -> None:
    parts = open_split(Path(split))
    rng = np.random.default_rng(0)
    sample_clicks(parts["valid"].read("impressions"), valid_events, rng)
    clicks = sample_clicks(parts["test"].read("impressions"), max_events, rng)
    users = [str(u) for u in clicks.get_column("user_id").to_list()]
    items = [str(i) for i in clicks.get_column("item_id").to_list()]
    times = to_us(clicks.get_column("ts")).tolist()
    assert pl.Series(users).len() == len(items)
    for name, order in ORDERS.items():
        server = RecommenderServer(
            load_bundle(bundle), ServeSettings(rerank=RerankConfig(order=order)), name=name
        )
        rows = [
            request_metrics(server.feeds([u], int(t), 20, [{}])[0], [], i)
            for u, i, t in zip(users, items, times, strict=True)
        ]
        ndcg = mean_se([r["ndcg@10"] for r in rows])
        hr = mean_se([r["hr@10"] for r in rows])
        print(f"{name}: NDCG@10 {ndcg[0]:.4f} ± {ndcg[1]:.4f}, HR@10 {hr[0]:.4f} ± {hr[1]:.4f}", flush=True)
        del server


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
