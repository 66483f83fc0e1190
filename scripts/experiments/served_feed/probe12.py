"""Can the ranker's own personal inputs be weighted better? python probe12.py BUNDLE: 300 valid users in two
halves at two times; a linear refit of the truth's personal part, then log score + a * z(each personal
column) (docs/served_feed.md, session 7)."""
import numpy as np, polars as pl, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from probe_setup import probe_setup
from feedrank.candidates import SOURCE_FEATURES
import feedrank.serve.stages as st
b, w, rec, cat, ts, users = probe_setup(sys.argv[1], 300)
names = list(b.ranker_cfg.counters)
orig = st.serving_features; cap = {}
def patched(*a, **k):
    out = orig(*a, **k); cap["f"] = out.copy(); return out
st.serving_features = patched
data = []
for half, now in enumerate([int(np.quantile(ts, 0.3)), int(np.quantile(ts, 0.7))]):
    us = users[half::2]
    urows = b.space.users.rows(pl.Series(us, dtype=pl.String))
    U = rec.stages.user_vectors(urows, [[] for _ in us], now)
    live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
    rows = np.tile(live, (len(us), 1))
    src = np.zeros(rows.shape + (len(SOURCE_FEATURES),), dtype=np.float32)
    S, _ = rec.stages.rank(U, urows, rows, now, [[] for _ in us], rec.online.item_clicks, rec._weights, src)
    F = cap["f"].reshape(S.shape + (-1,))
    V = cat.item_vectors(live, now)
    uv = U @ V.T
    wu = w.user_index(pl.Series(us, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
    T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
    data.append((np.log(np.maximum(S, 1e-6)), F, uv, T))
def top(M, T): return np.take_along_axis(T, np.argsort(-M,1)[:,:20], 1).mean() / np.sort(T,1)[:,-20:].mean()
def personal(X): return X - X.mean(0, keepdims=True)
feats = ["user_category_affinity", "demo_category_lift", "user_category_ctr_lift", "user_category_share", "user_publisher_share", "covis_last", "covis_sum5"]
def design(L, F, uv):
    cols = [personal(L), personal(uv)] + [personal(F[..., names.index(n)]) for n in feats]
    return np.nan_to_num(np.stack(cols, -1), nan=0.0, posinf=0.0, neginf=0.0)
# fit on half 0, test on half 1 and vice versa: truth personal part regressed on personal parts of ranker score and inputs
for fit, ev in [(0, 1), (1, 0)]:
    L, F, uv, T = data[fit]
    X = design(L, F, uv).reshape(-1, 2 + len(feats)); y = personal(T).reshape(-1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    L2, F2, uv2, T2 = data[ev]
    base_item = L2.mean(0, keepdims=True)
    Lp = personal(L2)
    # put personal part on truth scale: scale ranker item mean to truth via its own regression on half fit
    Tm_fit = data[fit][3].mean(0); Lm_fit = data[fit][0].mean(0)
    a = np.polyfit(Lm_fit, Tm_fit, 1)
    item = np.polyval(a, base_item)
    pers_fit = design(L2, F2, uv2) @ coef
    pers_rank = Lp * np.polyfit(personal(data[fit][0]).reshape(-1), personal(data[fit][3]).reshape(-1), 1)[0]
    print("eval half", ev, "ranker %.3f" % top(L2, T2), "item(ranker)+pers(ranker, scaled) %.3f" % top(item + pers_rank, T2),
          "item(ranker)+pers(linear refit) %.3f" % top(item + pers_fit, T2), "coef", np.round(coef / np.abs(coef).max(), 2))
print("log score + a*z(personal feature), both halves")
for n in feats + ["uv"]:
    out = []
    for a in [-0.5, -0.25, 0.25, 0.5, 1.0]:
        vals = []
        for L, F, uv, T in data:
            X = uv if n == "uv" else np.nan_to_num(F[..., names.index(n)])
            X = personal(X); X = X / (X.std() + 1e-9)
            vals.append(top(L + a * X, T) - top(L, T))
        out.append("%+.3f" % np.mean(vals))
    print(n, out)
