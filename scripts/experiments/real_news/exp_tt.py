"""Experiment harness: train a two-tower on a window of train days, score valid-day next clicks."""
from __future__ import annotations
import dataclasses, json, logging, sys, time, resource
from pathlib import Path
import numpy as np, polars as pl, torch
from feedrank.config import from_dict
from feedrank.data.examples import retrieval_examples
from feedrank.data.split import open_split
from feedrank.eval.catalog import TwoTowerRanker
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.eval.next_click import _HourlyScores, _sample_clicks
from feedrank.eval.next_click_stream import ClickStream, rank_metrics
from feedrank.data.features import US_PER_HOUR, to_us
from feedrank.train.batches import TensorBatchSource
from feedrank.train.retrieval_task import RetrievalTask
from feedrank.train.loop import train
from feedrank.train.batch_types import RetrievalBatch
from feedrank.train.run import RetrievalRunConfig, build_space, build_two_tower

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
name, overrides = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
train_from = overrides.pop("train_from", "2017-10-04")
n_eval = overrides.pop("n_eval", 3000)
split = Path("runs/globo-split")
cfg = from_dict(RetrievalRunConfig, {**overrides}, source="cli")
t0 = time.time()
parts = open_split(split)
space = build_space(split, cfg.features)
print("space", time.time() - t0, flush=True)
imp = parts["train"].read("impressions").filter(pl.col("ts") >= pl.lit(train_from).str.to_datetime(time_zone="UTC"))
arrays = retrieval_examples(space, imp, catalog_negatives=cfg.loss.catalog_negatives if cfg.loss.catalog_negatives >= 0 else 20, seed=0)
arrays = dataclasses.replace(arrays, weight=cfg.weights.example_weight(arrays.labels))
print("examples", len(arrays), time.time() - t0, flush=True)
torch.manual_seed(0)
model = build_two_tower(cfg)
task = RetrievalTask(model, cfg.loss)
data = TensorBatchSource(RetrievalBatch.from_arrays(arrays), cfg.batch_size, seed=0)
out = Path(f"runs/tt-{name}"); out.mkdir(exist_ok=True)
res = train(task, data, dataclasses.replace(cfg.train, progress=False, plot=False, early_stop_metric=""), out, None)
print("trained", res.steps if hasattr(res, "steps") else res, time.time() - t0, flush=True)
torch.save(model.state_dict(), out / "model.pt")
del arrays, data
model.eval()
events = pl.concat([ds.read("impressions") for ds in parts.values()]).select("user_id", "item_id", "ts", "clicked")
valid = _sample_clicks(parts["valid"].read("impressions"), n_eval, np.random.default_rng(0))
stream = ClickStream(space, events, 48.0, 30.0)
ts = to_us(valid.get_column("ts")); users = valid.get_column("user_id").to_numpy().astype(object)
uv = TwoTowerScorer(space, model).user_embeddings(users, ts).numpy()
hourly = _HourlyScores(TwoTowerRanker(TwoTowerScorer(space, model)), uv, ts // US_PER_HOUR)
nd = {"tt": [], "covis": [], "pop10": []}
for e, st in stream.walk(valid):
    nd["tt"].append(rank_metrics(hourly.scores(e)[st.live_rows], st.target)["ndcg@10"])
    nd["covis"].append(rank_metrics(st.covis, st.target)["ndcg@10"])
    nd["pop10"].append(rank_metrics(st.pop[10], st.target)["ndcg@10"])
seen = set(imp.get_column("item_id").unique().to_list()) | set(parts["train"].read("impressions").get_column("item_id").unique().to_list())
warm = np.isin(valid.get_column("item_id").to_numpy().astype(object), list(seen))
res = {}
for k, v in nd.items():
    v = np.array(v)
    res[k] = {"all": v.mean(), "se": v.std(ddof=1) / np.sqrt(v.size), "warm": v[warm].mean(), "cold": v[~warm].mean()}
res["warm_share"] = float(warm.mean())
np.savez(out / "valid_ndcg.npz", **{k: np.array(v) for k, v in nd.items()}, warm=warm)
print("RESULT", name, json.dumps(res), "wall", time.time() - t0, "maxrss_GB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, flush=True)
