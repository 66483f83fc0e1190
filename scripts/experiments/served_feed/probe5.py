"""Tower quality against truth: python probe5.py RETRIEVAL_RUN..."""
import numpy as np, polars as pl, torch, dataclasses, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from diagnose import sample_requests
from feedrank.bundle import load_bundle
from feedrank.bundle.writer import _content_embeddings
from feedrank.artifacts.store import load_retrieval
from feedrank.sim import World
from feedrank.serve.settings import ServeSettings
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.data.features import to_us
from pathlib import Path
b0 = load_bundle("runs/demo0/bundle"); w = World.load("runs/demo0/sim")
s = dataclasses.replace(ServeSettings(), index_max_age_s=1e12)
reqs = sample_requests(Path("runs/demo0/split"), "valid", 150, 0)
ts = to_us(reqs.get_column("ts")); users = reqs.get_column("user_id").to_list()
now = int(np.median(ts))
wu = w.user_index(pl.Series(users, dtype=pl.String))
def share(M): return M.mean(0).var()/M.var()
def corr_rows(A,B):
    A=A-A.mean(1,keepdims=True); B=B-B.mean(1,keepdims=True)
    return np.mean((A*B).sum(1)/np.sqrt((A*A).sum(1)*(B*B).sum(1)))
def jac(M, k=10):
    top=[set(r) for r in np.argsort(-M,1)[:,:k]]; n=len(top)
    return np.mean([len(top[i]&top[j])/len(top[i]|top[j]) for i in range(n) for j in range(i+1,n)])
for run in sys.argv[1:]:
    if run == "bundle": b = b0
    else:
        towers, cfg = load_retrieval(Path(run)); towers.eval()
        b = dataclasses.replace(b0, towers=towers, item_content=_content_embeddings(towers, b0.space.catalog, 0))
    rec = Recommender(b, s, build_reranker(s.rerank)); cat = rec.catalog
    urows = b.space.users.rows(pl.Series(users, dtype=pl.String))
    U = rec.stages.user_vectors(urows, [[] for _ in users], now)
    live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
    wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
    T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
    o = np.sort(T,1)[:,-20:].mean()
    def top_util(M, k=20):
        top = np.argsort(-M,1)[:,:k]; return np.take_along_axis(T, top, 1).mean()/o
    A = U @ cat.item_vectors(live, now).T; C = U @ cat.content[live].T
    cos = U@U.T; iu=np.triu_indices(len(U),1)
    Tp = T - T.mean(0,keepdims=True)
    print(f"{run:28s} ucos {cos[iu].mean():.3f} | full: share {share(A):.2f} corr {corr_rows(T,A):.3f} pcorr {corr_rows(Tp, A-A.mean(0,keepdims=True)):.3f} top20 {top_util(A):.3f} jac {jac(A):.3f} | content: pcorr {corr_rows(Tp, C-C.mean(0,keepdims=True)):.3f} top20 {top_util(C):.3f}")
