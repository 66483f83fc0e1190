"""Experiment harness: train a ranker over a retrieval run, score valid-day (or test-day) next clicks."""
from __future__ import annotations
import dataclasses, json, logging, sys, time, resource
from pathlib import Path
import numpy as np, polars as pl
from feedrank.config import from_dict
from feedrank.data.split import open_split
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.next_click import NextClickOptions, evaluate_clicks as _evaluate, sample_clicks as _sample_clicks
from feedrank.eval.blend import BlendWeights
from feedrank.eval.next_click_stream import ClickStream
from feedrank.artifacts import RankerRunConfig
from feedrank.artifacts.store import build_space, load_ranker, load_retrieval
from feedrank.train.run import train_ranker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
name, tt_run, overrides = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
n_eval = overrides.pop("n_eval", 3000)
part = overrides.pop("part", "valid")
split = Path(overrides.pop("split", "runs/globo-split"))
t0 = time.time()
towers, rcfg = load_retrieval(tt_run)
parts = open_split(split)
space = build_space(split, rcfg.features)
print("space", time.time() - t0, flush=True)
out = Path(f"runs/rk-{name}")
if not (out / "model.pt").exists():
    cfg = from_dict(RankerRunConfig, overrides, source="cli")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False, plot=False, early_stop_metric=""))
    train_ranker(split, tt_run, out, cfg, space=space)
    print("trained", time.time() - t0, "maxrss_GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
ranker, cfg, _ = load_ranker(out)
events = pl.concat([ds.read("impressions") for ds in parts.values()]).select("user_id", "item_id", "ts", "clicked")
rng = np.random.default_rng(0)
valid = _sample_clicks(parts["valid"].read("impressions"), 3000, rng)
targets = valid if part == "valid" else _sample_clicks(parts["test"].read("impressions"), n_eval, rng)
if part == "valid":
    targets = _sample_clicks(parts["valid"].read("impressions"), n_eval, np.random.default_rng(0))
opts = NextClickOptions()
stream = ClickStream(space, events, 48.0, 30.0)
blend = BlendWeights(1.0, 1.0)
per = _evaluate(stream, targets, opts, blend, TwoTowerScorer(space, towers), RankerScorer(space, towers, ranker, cfg.weights.as_dict()))
train_items = set(parts["train"].read("impressions").get_column("item_id").unique().to_list())
warm = np.isin(per.item_id, list(train_items))
res = {"warm_share": float(warm.mean())}
arrays = {}
for sysname, m in per.metrics.items():
    v = m["ndcg@10"]; arrays[sysname] = v
    res[sysname] = {"all": round(float(v.mean()), 4), "se": round(float(v.std(ddof=1) / np.sqrt(v.size)), 4), "warm": round(float(v[warm].mean()), 4), "cold": round(float(v[~warm].mean()), 4), "hr10_cold": round(float(m["hr@10"][~warm].mean()), 4)}
for k, m in per.recall["union"].items():
    res[f"union {k}"] = round(float(m.mean()), 4)
np.savez(out / f"{part}_ndcg.npz", warm=warm, **arrays)
print("RESULT", name, json.dumps(res, indent=1), "wall", time.time() - t0, "maxrss_GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
