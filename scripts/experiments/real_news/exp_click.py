"""Experiment harness (issue 10/11, 2026-12-04 session 5): train a ranker with `train_ranker` (the
click-only path: pool negatives, inputs per batch) over a retrieval run, score next clicks of the
validation day (or `"part": "test"`), save per-click NDCG@10 for paired comparisons (stats.py).

    .venv/bin/python scripts/experiments/real_news/exp_click.py NAME ROOT '{"loss": {...}}'

ROOT is a bench/real_news.py root (its split/ and retrieval/). No early stopping (fixed epochs),
as for ranker E of the previous round.
"""
from __future__ import annotations
import dataclasses, json, logging, sys, time, resource
from pathlib import Path
import numpy as np, polars as pl
from feedrank.config import from_dict
from feedrank.data.split import open_split
from feedrank.data.history import NEWS_FEATURES
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.next_click import NextClickOptions, evaluate_clicks, sample_clicks
from feedrank.eval.blend import BlendWeights
from feedrank.eval.next_click_stream import ClickStream
from feedrank.artifacts import RankerRunConfig
from feedrank.artifacts.store import build_space, load_ranker, load_retrieval
from feedrank.train.run import train_ranker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
name, root = sys.argv[1], Path(sys.argv[2])
overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
n_eval = overrides.pop("n_eval", 1500)
part = overrides.pop("part", "valid")
base = {"loss": {"train_window_h": 2}, "counters": list(NEWS_FEATURES), "sources": [], "model": {"tower_inputs": False}}
for k, v in overrides.items():
    base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
split, tt_run = root / "split", root / "retrieval"
t0 = time.time()
towers, rcfg = load_retrieval(tt_run)
parts = open_split(split)
space = build_space(split, rcfg.features)
out = root / f"rk-{name}"
if not (out / "model.pt").exists():
    cfg = from_dict(RankerRunConfig, base, source="cli")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False, plot=False, early_stop_metric=""))
    train_ranker(split, tt_run, out, cfg, space=space)
    print("trained", time.time() - t0, "maxrss_GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
ranker, cfg, _ = load_ranker(out)
events = pl.concat([ds.read("impressions") for ds in parts.values()]).select("user_id", "item_id", "ts", "clicked")
targets = sample_clicks(parts[part].read("impressions"), n_eval, np.random.default_rng(0))
stream = ClickStream(space, events, 48.0, 30.0)
per = evaluate_clicks(stream, targets, NextClickOptions(), BlendWeights(3.0, 1.0),
                      TwoTowerScorer(space, towers), RankerScorer(space, towers, ranker, cfg.weights.as_dict()))
cut = np.datetime64("2017-10-07T00:00:00")
first = events.group_by("item_id").agg(pl.col("ts").min().dt.replace_time_zone(None).alias("first"))
firsts = dict(zip(first.get_column("item_id").to_list(), first.get_column("first").to_numpy()))
warm = np.array([firsts[i] < cut for i in per.item_id])
res = {"warm_share": round(float(warm.mean()), 4)}
arrays = {}
for sysname, m in per.metrics.items():
    v = m["ndcg@10"]; arrays[sysname] = v
    res[sysname] = {"all": round(float(v.mean()), 4), "se": round(float(v.std(ddof=1) / np.sqrt(v.size)), 4),
                    "warm": round(float(v[warm].mean()), 4), "cold": round(float(v[~warm].mean()), 4)}
np.savez(out / f"{part}_ndcg.npz", warm=warm, **arrays)
print("RESULT", name, json.dumps(res), "wall", round(time.time() - t0), "maxrss_GB",
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
