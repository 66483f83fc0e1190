"""Affinity columns against the truth at one time: python probe9.py BUNDLE [DEMO_RUN]; the ranker's
item-mean share, top-20 share of the oracle, Jaccard; each affinity column's personal correlation
with the truth and log score + a * z(column) by hand."""
import numpy as np, polars as pl, torch, dataclasses, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from diagnose import sample_requests
from feedrank.bundle import load_bundle
from feedrank.sim import World
from feedrank.serve.settings import ServeSettings
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.data.features import to_us
from feedrank.candidates import SOURCE_FEATURES
from pathlib import Path
b = load_bundle(sys.argv[1]); DEMO = sys.argv[2] if len(sys.argv) > 2 else "runs/demo"; w = World.load(f"{DEMO}/sim")
s = dataclasses.replace(ServeSettings(), index_max_age_s=1e12)
rec = Recommender(b, s, build_reranker(s.rerank)); cat = rec.catalog
reqs = sample_requests(Path(f"{DEMO}/split"), "valid", 150, 0)
ts = to_us(reqs.get_column("ts")); users = reqs.get_column("user_id").to_list()
now = int(np.median(ts))
urows = b.space.users.rows(pl.Series(users, dtype=pl.String))
U = rec.stages.user_vectors(urows, [[] for _ in users], now)
live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
rows = np.tile(live, (len(users), 1))
wts = rec._weights
def score(sources=None, weights=wts):
    S, _ = rec.stages.rank(U, urows, rows, now, [[] for _ in users], rec.online.item_clicks, weights, sources)
    return S
src = np.zeros(rows.shape + (len(SOURCE_FEATURES),), dtype=np.float32)
S = score(src)
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
def share(M): return M.mean(0).var()/M.var()
def corr_rows(A,B):
    A=A-A.mean(1,keepdims=True); B=B-B.mean(1,keepdims=True)
    return np.mean((A*B).sum(1)/np.sqrt((A*A).sum(1)*(B*B).sum(1)))
def top_util(M, k=20):
    top = np.argsort(-M,1)[:,:k]; return np.take_along_axis(T, top, 1).mean()
def jac(M, k=10):
    top=[set(r) for r in np.argsort(-M,1)[:,:k]]; n=len(top)
    return np.mean([len(top[i]&top[j])/len(top[i]|top[j]) for i in range(n) for j in range(i+1,n)])
o = np.sort(T,1)[:,-20:].mean()
print("live", live.size, "oracle@20", o)
print("truth: item-mean share", share(T), "jaccard", jac(T))
print("feed score (no src): item-mean share", share(S), "corr", corr_rows(T,S), "top20 util ratio", top_util(S)/o, "jac", jac(S))

import feedrank.serve.stages as st
names = list(b.ranker_cfg.counters)
orig = st.serving_features; cap = {}
def patched(*a, **k):
    out = orig(*a, **k); cap["f"] = out.copy(); return out
st.serving_features = patched
S = score(src); st.serving_features = orig
Ls = np.log(S)
Tc = T - T.mean(0, keepdims=True)
for name in ["user_category_share", "user_category_affinity", "demo_category_lift", "user_category_ctr_lift"]:
    if name not in names: continue
    F = cap["f"][:, names.index(name)].reshape(S.shape)
    Fc = F - F.mean(0, keepdims=True)
    print(name, "personal corr with truth", round(corr_rows(Tc, Fc + 1e-9*np.random.rand(*F.shape)), 3))
    for a in [0, 0.5, 1, 2, 3]:
        M = Ls + a*F/F.std()
        print("  log score + a*z(feature)", a, "top20", round(top_util(M)/o, 3), "jac", round(jac(M), 3))
print("ranker personal corr", round(corr_rows(Tc, Ls - Ls.mean(0, keepdims=True)), 3))
