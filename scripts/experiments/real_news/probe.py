import numpy as np, polars as pl, torch
from pathlib import Path
from feedrank.artifacts.store import build_space, load_ranker, load_retrieval
from feedrank.data.split import open_split
from feedrank.eval.model_scorer import RankerScorer
from feedrank.data.features import to_us
ranker, cfg, tt = load_ranker(Path("runs/rk-D")); towers, rcfg = load_retrieval(tt)
split = Path("runs/globo-split"); parts = open_split(split); space = build_space(split, rcfg.features)
train_items = set(parts["train"].read("impressions").get_column("item_id").unique().to_list())
v = parts["valid"].read("impressions").sample(400, seed=0).sort("ts")
cold = ~v.get_column("item_id").is_in(list(train_items))
sc = RankerScorer(space, towers, ranker, cfg.weights.as_dict())
ts = v.get_column("ts").dt.replace_time_zone(None).to_numpy()
p = sc.probabilities(v.get_column("user_id").to_numpy().astype(object), ts, v.get_column("item_id").to_numpy().astype(object))[:, 0]
c = cold.to_numpy()
print("click prob of the clicked item: cold mean %.4g, warm mean %.4g" % (p[c].mean(), p[~c].mean()))
users = space.users.rows(v.get_column("user_id")); rows = space.catalog.rows(v.get_column("item_id"))
X = space.past.features(cfg.counters, users, rows, to_us(v.get_column("ts")), space.catalog)
for j, n in enumerate(cfg.counters):
    print("%-26s cold %8.3f warm %8.3f" % (n, X[c, j].mean(), X[~c, j].mean()))
fresh = space.item_arrays(rows, to_us(v.get_column("ts")))["item_fresh"]
print("fresh bucket cold", np.bincount(fresh[c], minlength=10), "warm", np.bincount(fresh[~c], minlength=10))
print("published NO_TIME share cold", float((space.catalog.published_us[rows[c]] == np.iinfo(np.int64).min).mean()))
