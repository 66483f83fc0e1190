import numpy as np, polars as pl, torch, dataclasses, sys
exec(open("scripts/experiments/served_feed/probe3.py").read().split("S = score(src)")[0])
import feedrank.serve.stages as st
names = list(b.ranker_cfg.counters)
orig = st.serving_features
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
def share(M): return M.mean(0).var()/M.var()
def top_util(M, k=20):
    top = np.argsort(-M,1)[:,:k]; return np.take_along_axis(T, top, 1).mean()
def jac(M, k=10):
    top=[set(r) for r in np.argsort(-M,1)[:,:k]]; n=len(top)
    return np.mean([len(top[i]&top[j])/len(top[i]|top[j]) for i in range(n) for j in range(i+1,n)])
o = np.sort(T,1)[:,-20:].mean()
def run(cols, label):
    def patched(*a, **k):
        out = orig(*a, **k)
        for c in cols:
            j = names.index(c); out[:, j] = out[:, j].mean()
        return out
    st.serving_features = patched
    S = score(src)
    st.serving_features = orig
    print(f"{label:40s} share {share(S):.3f} top20 {top_util(S)/o:.3f} jac {jac(S):.3f}")
run([], "all")
item_cols = [c for c in names if c.startswith("item_")]
run(item_cols, "item counters flattened")
run([c for c in item_cols if "age" not in c], "item counters except age flattened")
run(["user_category_share","user_publisher_share"], "user shares flattened")
run(["user_clicks_all"], "user_clicks_all flattened")
for c in names: run([c], c)
