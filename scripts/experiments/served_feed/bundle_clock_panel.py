"""Issue 15's original measurement, through the served-feed evaluation's pieces: the top-10 feeds of
200 known test users at the bundle's snapshot time (what `--clock bundle` serves first), their
spread and mean inter-user Jaccard, and each one's overlap with a brand-new user ({"country": "us"},
as `feedrank demo` asks) at the same time.

    .venv/bin/python scripts/experiments/served_feed/bundle_clock_panel.py runs/demo-before/bundle
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.served_metrics import all_pairs_jaccard, jaccard, mean_se, spread
from feedrank.eval.served_path import RecommenderServer


def main(path: str, num_users: int = 200, seed: int = 0) -> None:
    bundle = load_bundle(path)
    test = open_split(bundle.manifest["data"]["split"])["test"].read("impressions")
    clicked = test.filter(pl.col("clicked")).get_column("user_id").unique().sort().to_list()
    rng = np.random.default_rng(seed)
    users = [str(u) for u in rng.choice(clicked, size=min(num_users, len(clicked)), replace=False)]
    server = RecommenderServer(bundle)
    now = bundle.snapshot_us
    feeds = server.feeds([*users, "brand-new-user"], now, 10, [{}] * len(users) + [{"country": "us"}])
    known, new = feeds[:-1], feeds[-1]
    overlap = mean_se([jaccard(f, new) for f in known])
    print(f"users {len(known)} at the snapshot {np.datetime64(now, 'us')}")
    print(spread(known), f"jaccard_all_pairs {all_pairs_jaccard(known):.4f}")
    print(f"known-vs-new overlap {overlap[0]:.4f} ± {overlap[1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
