import numpy as np, polars as pl, torch, dataclasses, sys
exec(open("scripts/experiments/served_feed/probe3.py").read().split("S = score(src)")[0])
P = np.load("runs/P_base.npy"); S = np.tensordot([1,2,5,-1], P, 1)
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
it = w.items
age = (now/1e6 - it.published_s[wl])/3600
fr = w.features(wu[:1,None], wl[None,:], now/1e6).freshness[0]
clicks = b.space.past.item_clicks.count_before(live, np.full(live.size, now), 24*3600*10**6)
views = b.space.past.item_views.count_before(live, np.full(live.size, now), 24*3600*10**6)
from scipy.stats import spearmanr
sm, tm = np.log(S).mean(0), T.mean(0)
for name, v in [("truth item mean", tm), ("clicks24h", clicks), ("views24h", views), ("ctr", (clicks+1)/(views+20)), ("age_h", age), ("freshness", fr), ("quality", it.quality[wl]), ("appeal", it.appeal[wl]), ("clickbait", it.clickbait[wl].astype(float))]:
    print(f"{name:16s} spearman with ranker item mean {spearmanr(sm, v)[0]:+.3f}   with truth item mean {spearmanr(tm, v)[0]:+.3f}")
top = np.argsort(-sm)[:20]; print("ranker top20 items: mean age", age[top].mean(), "clicks", clicks[top].mean(), "views", views[top].mean(), "truth", tm[top].mean(), "fresh", fr[top].mean())
top = np.argsort(-tm)[:20]; print("truth top20 items: mean age", age[top].mean(), "clicks", clicks[top].mean(), "views", views[top].mean(), "truth", tm[top].mean(), "fresh", fr[top].mean())
print("live mean age", age.mean(), "views>0 share", (views>0).mean())
