import numpy as np, polars as pl, torch, dataclasses, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from diagnose import sample_requests
from feedrank.bundle import load_bundle
from feedrank.sim import World
from feedrank.serve.settings import ServeSettings
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.data.features import to_us
from feedrank.index import AnnIndex
from pathlib import Path
b = load_bundle("runs/demo0/bundle"); w = World.load("runs/demo0/sim")
s = dataclasses.replace(ServeSettings(), index_max_age_s=1e12)
rec = Recommender(b, s, build_reranker(s.rerank)); cat = rec.catalog
reqs = sample_requests(Path("runs/demo0/split"), "valid", 300, 0)
ts = to_us(reqs.get_column("ts")); users = reqs.get_column("user_id").to_list()
now = int(np.median(ts))
urows = b.space.users.rows(pl.Series(users, dtype=pl.String))
U = rec.stages.user_vectors(urows, [[] for _ in users], now)
live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
print("live", live.size)
content = cat.content[live]
V = cat.item_vectors(live, now)
fresh = V - content
sc_c = U @ content.T; sc_f = U @ fresh.T
print("content score: per-user std over items", sc_c.std(1).mean(), " fresh score per-user std", sc_f.std(1).mean())
print("content score: per-item std over users", sc_c.std(0).mean(), " fresh per-item std over users", sc_f.std(0).mean())
tot = sc_c + sc_f
print("total per-user std over items", tot.std(1).mean(), "per-item std over users", tot.std(0).mean())
# topk overlap of ANN over users
top = np.argsort(-tot, 1)[:, :100]
sets=[set(r) for r in top]; rng=np.random.default_rng(0)
a,bb=rng.integers(0,300,2000),rng.integers(0,300,2000)
print("ANN top100 jaccard same time", np.mean([len(sets[i]&sets[j])/len(sets[i]|sets[j]) for i,j in zip(a,bb) if i!=j]))
topc = np.argsort(-sc_c,1)[:, :100]; setc=[set(r) for r in topc]
print("content-only top100 jaccard", np.mean([len(setc[i]&setc[j])/len(setc[i]|setc[j]) for i,j in zip(a,bb) if i!=j]))
# truth
wu = w.user_index(pl.Series(users, dtype=pl.String))
wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
def corr_rows(A,B):
    A=A-A.mean(1,keepdims=True); B=B-B.mean(1,keepdims=True)
    return np.mean((A*B).sum(1)/np.sqrt((A*A).sum(1)*(B*B).sum(1)))
print("per-user corr(truth, content score)", corr_rows(T, sc_c), "(truth, total)", corr_rows(T, tot), "(truth, fresh)", corr_rows(T, sc_f))
# remove item mean: personal part
Tc = T - T.mean(0, keepdims=True); tc = tot - tot.mean(0, keepdims=True)
print("personal part corr(truth-itemmean, score-itemmean)", corr_rows(Tc, tc))
print("truth: per-user std over items", T.std(1).mean(), "per-item std over users", T.std(0).mean(), "item-mean var share", T.mean(0).var()/T.var())
print("user vector norm", np.linalg.norm(U,axis=1).mean(), "mean user vec norm", np.linalg.norm(U.mean(0)))
np.savez("runs/probe1.npz", U=U, live=live, T=T, tot=tot, sc_c=sc_c, now=now, urows=urows, wu=wu, wl=wl)
