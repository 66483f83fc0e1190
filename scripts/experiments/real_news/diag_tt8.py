"""Where a trained two-tower puts the clicked item on one day's clicks, and what sits above it.

    PYTHONPATH=src python scripts/experiments/real_news/diag_tt8.py RUN SPLIT [--day D] [--clicks N]

Same clicks as exp_tt8.py (seed 0 sample of the day's clicks). Per click: NDCG@10 over the live
catalog, NDCG@10 over the warm live items only (cold ones removed), the share of the top 10 that
are cold items, and the live catalog's cold share. Cold = published (first click) at or after the
split's train cut, which on this log is "first event at or after the cut".
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.artifacts.store import build_space, load_retrieval
from feedrank.data.examples import EVENT_COLUMNS
from feedrank.data.features import US_PER_HOUR, to_us
from feedrank.data.split import open_split
from feedrank.eval.catalog import TwoTowerRanker
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.eval.next_click import _HourlyScores, sample_clicks
from feedrank.eval.next_click_segments import train_cut_of
from feedrank.eval.next_click_stream import ClickStream, rank_metrics

_DCG10 = float(sum(1.0 / np.log2(r + 1.0) for r in range(1, 11)))
parser = argparse.ArgumentParser()
parser.add_argument("run", type=Path)
parser.add_argument("split", type=Path)
parser.add_argument("--day", default="2017-10-07")
parser.add_argument("--clicks", type=int, default=3000)
args = parser.parse_args()

towers, cfg = load_retrieval(args.run)
towers.eval()
space = build_space(args.split, cfg.features)
parts = open_split(args.split)
events = pl.concat([ds.scan("impressions").select(EVENT_COLUMNS).collect() for ds in parts.values()])
day = datetime.fromisoformat(args.day + "T00:00:00+00:00")
day_clicks = events.filter(
    pl.col("clicked") & (pl.col("ts") >= day) & (pl.col("ts") < day + timedelta(days=1))
)
clicks = sample_clicks(day_clicks, args.clicks, np.random.default_rng(0))
cut_us = int(train_cut_of(args.split).timestamp() * 1_000_000)
cold_row = space.catalog.published_us >= cut_us
stream = ClickStream(space, events, 48.0, 30.0)
ts = to_us(clicks.get_column("ts"))
users = clicks.get_column("user_id").to_numpy().astype(object)
scorer = TwoTowerScorer(space, towers)
uv = scorer.user_embeddings(users, ts).numpy()
hourly = _HourlyScores(TwoTowerRanker(scorer), uv, ts // US_PER_HOUR)
rows: dict[str, list[float]] = {
    k: [] for k in ("warm", "ndcg", "ndcg_warm_only", "cold_top10", "cold_live", "live")
}
for e, st in stream.walk(clicks):
    if st.target < 0:
        continue
    s = hourly.scores(e)[st.live_rows]
    cold = cold_row[st.live_rows]
    warm_target = not cold[st.target]
    rows["warm"].append(float(warm_target))
    rows["ndcg"].append(rank_metrics(s, st.target)["ndcg@10"])
    if warm_target:
        keep = ~cold
        rows["ndcg_warm_only"].append(rank_metrics(s[keep], int(keep[: st.target].sum()))["ndcg@10"])
    else:
        rows["ndcg_warm_only"].append(np.nan)
    top = np.argsort(-s, kind="stable")[:10]
    rows["cold_top10"].append(float(cold[top].mean()))
    rows["cold_live"].append(float(cold.mean()))
    rows["live"].append(float(cold.size))
a = {k: np.array(v) for k, v in rows.items()}
w = a["warm"] > 0
out = {
    "clicks": int(w.size),
    "warm_share": round(float(w.mean()), 4),
    "ndcg_warm": round(float(a["ndcg"][w].mean()), 5),
    "ndcg_warm_among_warm_live_only": round(float(a["ndcg_warm_only"][w].mean()), 5),
    # a uniform order of L items gives NDCG@10 = sum_{r<=10} 1/log2(r + 1) / L
    "random_all": round(float(np.mean(_DCG10 / a["live"])), 5),
    "random_warm_only": round(float(np.mean(_DCG10 / (a["live"][w] * (1 - a["cold_live"][w])))), 5),
    "cold_share_of_top10": round(float(a["cold_top10"].mean()), 4),
    "cold_share_of_live": round(float(a["cold_live"].mean()), 4),
}
print("DIAG", args.run, json.dumps(out), flush=True)
