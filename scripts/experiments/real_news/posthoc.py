"""Same trained two-tower, with the id rows no training example touched set to the padding row."""
from __future__ import annotations
import json, sys, time, resource
from pathlib import Path
import numpy as np, polars as pl, torch
from feedrank.config import from_dict
from feedrank.data.features import US_PER_HOUR, hash_column, to_us
from feedrank.data.split import open_split
from feedrank.eval.catalog import TwoTowerRanker
from feedrank.eval.model_scorer import TwoTowerScorer
from feedrank.eval.next_click import _HourlyScores, _sample_clicks
from feedrank.eval.next_click_stream import ClickStream, rank_metrics
from feedrank.train.run import RetrievalRunConfig, build_space, build_two_tower

run = Path(sys.argv[1]); overrides = json.loads(sys.argv[2]); mode = sys.argv[3]
train_from = overrides.pop("train_from", "2017-10-04"); overrides.pop("n_eval", None)
cfg = from_dict(RetrievalRunConfig, overrides, source="cli")
split = Path("runs/globo-split"); parts = open_split(split); space = build_space(split, cfg.features)
model = build_two_tower(cfg); model.load_state_dict(torch.load(run / "model.pt", weights_only=True)); model.eval()
train = parts["train"].read("impressions")
window = train.filter(pl.col("ts") >= pl.lit(train_from).str.to_datetime(time_zone="UTC"))
with torch.no_grad():
    if mode in ("items", "both"):
        touched = np.zeros(cfg.features.item_buckets, dtype=bool)
        touched[hash_column(train.get_column("item_id").unique(), cfg.features.item_buckets, "item")] = True
        model.item_tower.item_id.weight[torch.from_numpy(~touched)] = 0.0
    if mode in ("users", "both"):
        touched = np.zeros(cfg.features.user_buckets, dtype=bool)
        touched[hash_column(window.get_column("user_id").unique(), cfg.features.user_buckets, "user")] = True
        model.user_tower.user_id.weight[torch.from_numpy(~touched)] = 0.0
events = pl.concat([ds.read("impressions") for ds in parts.values()]).select("user_id", "item_id", "ts", "clicked")
valid = _sample_clicks(parts["valid"].read("impressions"), 3000, np.random.default_rng(0))
stream = ClickStream(space, events, 48.0, 30.0)
ts = to_us(valid.get_column("ts")); users = valid.get_column("user_id").to_numpy().astype(object)
scorer = TwoTowerScorer(space, model)
hourly = _HourlyScores(TwoTowerRanker(scorer), scorer.user_embeddings(users, ts).numpy(), ts // US_PER_HOUR)
v = np.array([rank_metrics(hourly.scores(e)[st.live_rows], st.target)["ndcg@10"] for e, st in stream.walk(valid)])
warm = np.isin(valid.get_column("item_id").to_numpy().astype(object), train.get_column("item_id").unique().to_list())
np.savez(run / f"valid_ndcg_{mode}.npz", tt=v, warm=warm)
print("RESULT", run.name, mode, json.dumps({"all": v.mean(), "se": v.std(ddof=1) / np.sqrt(v.size), "warm": v[warm].mean(), "cold": v[~warm].mean()}))
