import numpy as np, polars as pl, torch, dataclasses, sys
exec(open("scripts/experiments/served_feed/probe3.py").read().split("S = score(src)")[0])
import feedrank.serve.stages as st
names = list(b.ranker_cfg.counters); j = names.index("user_category_share")
orig = st.serving_features; cap = {}
def patched(*a, **k):
    out = orig(*a, **k); cap["f"] = out.copy(); return out
st.serving_features = patched
S = score(src)
F = cap["f"][:, j].reshape(S.shape)
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6); o = np.sort(T,1)[:,-20:].mean()
def top_util(M, k=20):
    top = np.argsort(-M,1)[:,:k]; return np.take_along_axis(T, top, 1).mean()/o
def jac(M, k=10):
    top=[set(r) for r in np.argsort(-M,1)[:,:k]]; n=len(top)
    return np.mean([len(top[i]&top[j])/len(top[i]|top[j]) for i in range(n) for j in range(i+1,n)])
print("share>0 frac", (F>0).mean(), "max", F.max(), "users with any >0", (F.max(1)>0).mean())
Ls = np.log(S)
print("item-mean of ranker score top20", top_util(np.tile(Ls.mean(0),(len(users),1))))
for a in [0, 0.5, 1, 2, 3, 5]:
    M = Ls + a*F
    print(a, "log feed + a*ucs: top20", round(top_util(M),3), "jac", round(jac(M),3))
# what the ranker does with ucs: set to 0 vs 1 for all items
def run_set(val):
    def p2(*a, **k):
        out = orig(*a, **k); out[:, j] = val; return out
    st.serving_features = p2; R = score(src); st.serving_features = orig; return R
R0, R1 = run_set(0.0), run_set(1.0)
print("mean log-score change ucs 0->1:", np.log(R1/R0).mean(), "click-head-ish")
