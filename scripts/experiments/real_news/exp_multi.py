"""Experiment harness (issue 10, session 6): several ranker variants over one set of training
examples, each scored on the same next clicks, per-click NDCG@10 saved for paired.py.

    .venv/bin/python scripts/experiments/real_news/exp_multi.py ROOT TAG '{"window_h": 6,
        "pool": 30, "part": "valid", "n_eval": 1500, "variants": {"W6": {"pool": 10}, ...}}'

The click-only examples (5 live-catalog negatives, `pool` candidate-pool negatives, the last
`window_h` hours of the train part) are built and replayed once with the largest pool count; a
variant with `"pool": k` trains on the first k pool draws of each click (a random subset: the draws
are without replacement in random order). Variant keys other than "pool" are RankerRunConfig
overrides (e.g. {"loss": {"listwise_weight": 1.0}}). Fixed 3 epochs, no early stopping, as
exp_click.py. Runs go to ROOT/rk-TAG-VARIANT.
"""
from __future__ import annotations
import dataclasses, json, logging, sys, time, resource
from pathlib import Path
import numpy as np, polars as pl, torch
from feedrank.config import from_dict
from feedrank.data.split import open_split
from feedrank.data.history import NEWS_FEATURES
from feedrank.data.click_examples import ClickBatches, ClickExamples
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.next_click import NextClickOptions, evaluate_clicks, sample_clicks
from feedrank.eval.blend import BlendWeights
from feedrank.eval.next_click_stream import ClickStream
from feedrank.artifacts import RankerRunConfig
from feedrank.artifacts.store import build_space, load_ranker, load_retrieval, build_ranker
from feedrank.train.run import recent_part, _finish
from feedrank.train.click_ranker import click_ranker_data, ClickBatchSource, click_tower_tables
from feedrank.train.ranker_task import RankerTask
from feedrank.train.loop import train

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
root, tag = Path(sys.argv[1]), sys.argv[2]
spec = json.loads(sys.argv[3])
window, pool, part, n_eval = spec.get("window_h", 6), spec.get("pool", 10), spec.get("part", "valid"), spec.get("n_eval", 1500)
variants = spec["variants"]
split, tt_run = root / "split", root / "retrieval"
t0 = time.time()
towers, rcfg = load_retrieval(tt_run)
parts = open_split(split)
space = build_space(split, rcfg.features)


def config(over: dict) -> RankerRunConfig:
    base = {"loss": {"train_window_h": window, "catalog_negatives": 5, "pool_negatives": pool},
            "counters": list(NEWS_FEATURES), "sources": [],
            "model": {"tower_inputs": False, "counter_norm": "layer"}}
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    cfg = from_dict(RankerRunConfig, base, source="cli")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False, plot=False, early_stop_metric=""))


examples = None
todo = {n: v for n, v in variants.items() if not (root / f"rk-{tag}-{n}" / "model.pt").exists()}
cache = root / f"examples-{window}h-p{pool}.npz"  # the replayed examples, shared by later invocations
if todo and cache.exists():
    z = np.load(cache)
    examples = ClickExamples(**{f.name: z[f.name] for f in dataclasses.fields(ClickExamples) if f.name in z})
    tables = click_tower_tables(towers, space, examples)
    print("examples loaded", cache, examples.items.shape, flush=True)
elif todo:
    impressions = recent_part(parts["train"].read("impressions"), window)
    _, tables, examples = click_ranker_data(space, towers, impressions, config({}))
    np.savez(cache, **{f.name: getattr(examples, f.name) for f in dataclasses.fields(ClickExamples) if getattr(examples, f.name) is not None})
    print("examples built", round(time.time() - t0), "s", examples.items.shape, flush=True)
for name, over in todo.items():
    over = dict(over)
    k = over.pop("pool", pool)
    epochs = over.pop("epochs", None)
    cfg = config(over)
    if epochs is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    ex = dataclasses.replace(examples, items=np.ascontiguousarray(examples.items[:, : 1 + 5 + k]))
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, pool_negatives=k))
    torch.manual_seed(cfg.train.seed)
    ranker = build_ranker(cfg, rcfg.features, rcfg.model.dim)
    data = ClickBatchSource(ClickBatches(space, ex, cfg.counters, cfg.batch_size, seed=cfg.train.seed))
    out = root / f"rk-{tag}-{name}"
    t1 = time.time()
    result = train(RankerTask(ranker, tables, cfg.loss), data, cfg.train, out, None)
    _finish(out, "ranker", cfg, split, ranker, result, {"examples": len(ex), "retrieval_run": str(tt_run.resolve())})
    print("trained", name, round(time.time() - t1), "s", flush=True)

events = pl.concat([ds.read("impressions") for ds in parts.values()]).select("user_id", "item_id", "ts", "clicked")
targets = sample_clicks(parts[part].read("impressions"), n_eval, np.random.default_rng(0))
cut = np.datetime64("2017-10-07T00:00:00")
first = events.group_by("item_id").agg(pl.col("ts").min().dt.replace_time_zone(None).alias("first"))
firsts = dict(zip(first.get_column("item_id").to_list(), first.get_column("first").to_numpy()))
for name in variants:
    out = root / f"rk-{tag}-{name}"
    if (out / f"{part}_ndcg.npz").exists():
        continue
    t1 = time.time()
    ranker, cfg, _ = load_ranker(out)
    stream = ClickStream(space, events, 48.0, 30.0)
    per = evaluate_clicks(stream, targets, NextClickOptions(), BlendWeights(3.0, 1.0),
                          TwoTowerScorer(space, towers), RankerScorer(space, towers, ranker, cfg.weights.as_dict()))
    warm = np.array([firsts[i] < cut for i in per.item_id])
    res = {"warm_share": round(float(warm.mean()), 4)}
    arrays = {}
    for sysname, m in per.metrics.items():
        v = m["ndcg@10"]; arrays[sysname] = v
        res[sysname] = {"all": round(float(v.mean()), 4), "se": round(float(v.std(ddof=1) / np.sqrt(v.size)), 4),
                        "warm": round(float(v[warm].mean()), 4), "cold": round(float(v[~warm].mean()), 4)}
    np.savez(out / f"{part}_ndcg.npz", warm=warm, **arrays)
    print("RESULT", tag, name, part, json.dumps(res), "eval_s", round(time.time() - t1), "maxrss_GB",
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
