"""Are the Globo feed's scores tied where the clicked item sits? A probe of why the served path's
NDCG@10 is above the offline protocol's on the same clicks (docs/served_feed.md, Globo, session 9):
the protocol ranks a tied item at its tie group's mean rank, serving sorts ties in pool order.
For the first N of the same sampled test clicks (seed 0, as `feedrank evaluate --protocol
next-click`), served with no re-ranking: how often the clicked item is in the top 20, and how
often another top-20 item has exactly its score.

    PYTHONPATH=$PWD/src python scripts/experiments/served_feed/globo_ties.py runs/rn/bundle \
        runs/rn/split 2000 2000 400
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
from feedrank.eval.served_requests import demographics_of
from feedrank.serve.rerank import RerankConfig
from feedrank.serve.settings import ServeSettings


def main(bundle: str, split: str, max_events: int, valid_events: int, probe: int) -> None:
    from feedrank.eval.served_path import RecommenderServer

    parts = open_split(Path(split))
    rng = np.random.default_rng(0)  # the draws of evaluate_next_click, in its order
    sample_clicks(parts["valid"].read("impressions"), valid_events, rng)
    clicks = sample_clicks(parts["test"].read("impressions"), max_events, rng).head(probe)
    users = [str(u) for u in clicks.get_column("user_id").to_list()]
    items = [str(i) for i in clicks.get_column("item_id").to_list()]
    times = to_us(clicks.get_column("ts")).tolist()
    demos = demographics_of(pl.Series(users, dtype=pl.String), parts["test"].read("users"))
    server = RecommenderServer(load_bundle(Path(bundle)), ServeSettings(rerank=RerankConfig(order=())))
    found = tied = 0
    tie_sizes: list[int] = []
    for e, (user, item, now) in enumerate(zip(users, items, times, strict=True)):
        server._refresh(int(now))  # as RecommenderServer.feeds, keeping the scores
        recommender = server.recommender
        feed = recommender.recommend_batch([user], int(now), 20, demographics=[demos[e]], deadline=False)
        scores = {x.item_id: x.score for x in feed[0].items}
        if item not in scores:
            continue
        found += 1
        same = sum(1 for i, s in scores.items() if i != item and s == scores[item])
        if same:
            tied += 1
            tie_sizes.append(same + 1)
    print(f"{len(users)} clicks: clicked item in the served top 20 for {found};", end=" ")
    print("tied with another top-20 item")
    print(f"for {tied} of them (tie groups of {np.mean(tie_sizes) if tie_sizes else 0:.1f} items on average)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
