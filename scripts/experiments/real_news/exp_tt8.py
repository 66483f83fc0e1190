"""Session 8 harness: train a two-tower with `train_retrieval` (the CLI's code path, fixed steps, no
early stopping) and score it with the next-click protocol on sampled clicks of one day.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python scripts/experiments/real_news/exp_tt8.py \
        NAME SPLIT '{"model": {"embedding_init": "zero"}, "loss": {"train_window_h": 24}}' \
        [--day 2017-10-07] [--clicks 3000] [--reuse]

SPLIT is a split directory (runs/rn/split: train days 1-6; runs/rn/split5: train days 1-5, the
validation day one day after the train cut, as the test day is for the real split). The scored
clicks are a seeded sample (seed 0) of the clicks of `--day` (by event time, whatever part they
landed in), the same sample for every run on the same day. Cold items: first event at or after the
split's train cut. Writes runs/tt8/NAME/{run.json, model.pt, day_ndcg.npz} and prints one RESULT
line: NDCG@10 mean ± SE of the two-tower and the baselines, overall / warm / cold, ANN recall@100
and @500, wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.artifacts.config import RetrievalRunConfig
from feedrank.artifacts.store import build_space, load_retrieval
from feedrank.config import from_dict
from feedrank.data.examples import EVENT_COLUMNS
from feedrank.data.split import open_split
from feedrank.eval.blend import BlendWeights
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.eval.next_click import NextClickOptions, evaluate_clicks, sample_clicks
from feedrank.eval.next_click_segments import segment_masks, train_cut_of
from feedrank.eval.next_click_stream import ClickStream
from feedrank.train.run import train_retrieval

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("split", type=Path)
parser.add_argument("overrides", nargs="?", default="{}")
parser.add_argument("--day", default="2017-10-07")
parser.add_argument("--clicks", type=int, default=3000)
parser.add_argument("--reuse", action="store_true", help="score the saved run again, no training")
args = parser.parse_args()

t0 = time.time()
out = Path("runs/tt8") / args.name
# Overrides on top of the two-tower's own defaults (RETRIEVAL_TRAINING: lr 3e-3, sparse lr 0.05,
# 307,200 samples = 300 steps), as `feedrank train retrieval --set` applies them; a plain
# from_dict of a partial "train" dict would start from TrainConfig's generic defaults instead.
base = dataclasses.asdict(RetrievalRunConfig())
base["train"].update(progress=False, plot=False, early_stop_metric="")
for key, value in json.loads(args.overrides).items():
    base[key] = {**base[key], **value} if isinstance(value, dict) else value
cfg = from_dict(RetrievalRunConfig, base, source="exp_tt8")
space = build_space(args.split, cfg.features)
if not args.reuse:
    result = train_retrieval(args.split, out, cfg, space=space)
    print(
        "trained", result.steps if hasattr(result, "steps") else "", round(time.time() - t0), "s", flush=True
    )
towers, _ = load_retrieval(out)
towers.eval()

parts = open_split(args.split)
events = pl.concat([ds.scan("impressions").select(EVENT_COLUMNS).collect() for ds in parts.values()])
day = datetime.fromisoformat(args.day + "T00:00:00+00:00")
day_clicks = events.filter(
    pl.col("clicked") & (pl.col("ts") >= day) & (pl.col("ts") < day + timedelta(days=1))
)
clicks = sample_clicks(day_clicks, args.clicks, np.random.default_rng(0))
options = NextClickOptions(candidate_ns=(100, 500), ranker_candidates=500)
stream = ClickStream(space, events, options.live_window_h, options.session_gap_min)
per = evaluate_clicks(
    stream, clicks, options, BlendWeights(3.0, 1.0, 10), TwoTowerScorer(space, towers), None
)
cut = train_cut_of(args.split)
masks = segment_masks(per.item_id, per.user_id, events, pl.Series([], dtype=pl.String), cut)
warm = masks["warm items"]
ndcg = {s: m["ndcg@10"] for s, m in per.metrics.items()}
res: dict[str, object] = {"warm_share": round(float(warm.mean()), 4)}
for system, v in ndcg.items():
    res[system] = {
        "all": round(float(v.mean()), 5),
        "se": round(float(v.std(ddof=1) / np.sqrt(v.size)), 5),
        "warm": round(float(v[warm].mean()), 5),
        "cold": round(float(v[~warm].mean()), 5),
    }
for n in (100, 500):
    r = per.recall["ANN"][f"recall@{n}"]
    res[f"ann_recall@{n}"] = {"all": round(float(r.mean()), 4), "warm": round(float(r[warm].mean()), 4)}
np.savez(out / f"day_ndcg_{args.day}.npz", **ndcg, warm=warm)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(
    "RESULT", args.name, json.dumps(res), f"wall {time.time() - t0:.0f} s, peak RSS {rss:.2f} GiB", flush=True
)
