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
b = load_bundle(sys.argv[1]); w = World.load("runs/demo0/sim")
s = dataclasses.replace(ServeSettings(), index_max_age_s=1e12)
rec = Recommender(b, s, build_reranker(s.rerank)); cat = rec.catalog
reqs = sample_requests(Path("runs/demo0/split"), "valid", 150, 0)
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
for h, name in enumerate(["click","long_dwell","share","hide"]):
    wv = np.zeros(4); wv[h]=1
    Sh = score(src, wv)
    print(f" head {name}: item-mean share {share(Sh):.3f} corr {corr_rows(T,Sh):.3f} top20 {top_util(Sh)/o:.3f} jac {jac(Sh):.3f} mean {Sh.mean():.4f}")
A = U @ cat.item_vectors(live, now).T
print("two-tower: share", share(A), "corr", corr_rows(T,A), "top20", top_util(A)/o, "jac", jac(A))
C = U @ cat.content[live].T
print("two-tower content only: share", share(C), "corr", corr_rows(T,C), "top20", top_util(C)/o, "jac", jac(C))
M = np.tile(T.mean(0), (T.shape[0],1))
print("best shared feed (item mean of truth): top20", top_util(M)/o)
Tc = T - T.mean(0,keepdims=True)
print("personal part only: top20", top_util(Tc)/o, "jac", jac(Tc))
# affinity-only oracle
aff = w.affinity(wu[:,None], wl[None,:])
print("affinity only top20", top_util(aff)/o, "jac", jac(aff))
cp = w.click_prob(wu[:,None], wl[None,:], now/1e6)
print("truth click prob item-mean share", share(cp))
# users' history lengths
past = b.space.past.history(urows, np.full(len(users), now, dtype=np.int64), 50)
n_hist = (past > 0).sum(1)
print("history len quantiles", np.quantile(n_hist, [0.1,0.25,0.5,0.75,0.9]))
# category match from history
catb = cat.category_padded[past]  # (U, L) 0 pads
icat = b.space.catalog.category[live]
share_m = np.stack([(catb[u][:,None] == icat[None,:]).sum(0) / max(1,n_hist[u]) for u in range(len(users))])
print("history category share: corr", corr_rows(T, share_m + 1e-9*np.random.rand(*share_m.shape)), "personal corr", corr_rows(T - T.mean(0,keepdims=True), share_m - share_m.mean(0,keepdims=True)+1e-9*np.random.rand(*share_m.shape)))
comb = share_m + 0.5*(T.mean(0)[None,:]/T.mean(0).std())
print("item-mean truth + history category share: top20", top_util(comb)/o, "jac", jac(comb))
for a in [0.25, 1, 2, 4]:
    comb = a*share_m + (T.mean(0)[None,:]/T.mean(0).std())
    print(a, "item-mean truth z + a*history category share: top20", top_util(comb)/o, "jac", jac(comb))
