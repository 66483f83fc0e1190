"""Candidate personal columns computed from the bundle's events by hand (subcategory share, publisher
click-rate lift, excess log dwell on the category): python probe13.py BUNDLE prints log score +
a * z(column) on the top-20 share of the oracle (docs/served_feed.md, session 7)."""
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
meta = []
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
    data.append((np.log(np.maximum(S, 1e-6)), F, uv, T)); meta.append((us, live, now))
def top(M, T): return np.take_along_axis(T, np.argsort(-M,1)[:,:20], 1).mean() / np.sort(T,1)[:,-20:].mean()
def personal(X): return X - X.mean(0, keepdims=True)
feats = ["user_category_affinity", "demo_category_lift", "user_category_ctr_lift", "user_category_share", "user_publisher_share", "covis_last", "covis_sum5"]
def design(L, F, uv):
    cols = [personal(L), personal(uv)] + [personal(F[..., names.index(n)]) for n in feats]
    return np.nan_to_num(np.stack(cols, -1), nan=0.0, posinf=0.0, neginf=0.0)

ev = pl.read_parquet(f"{sys.argv[1]}/events.parquet").with_columns(pl.col("ts").dt.epoch("us").alias("t"))
hist = pl.read_parquet(f"{sys.argv[1]}/history.parquet").with_columns(pl.col("ts").dt.epoch("us").alias("t"), pl.lit(True).alias("clicked"))
items = pl.read_parquet(f"{sys.argv[1]}/items.parquet").select("item_id", "publisher_id", "category", "subcategory")
allev = pl.concat([ev.select("user_id", "item_id", "t", "clicked", "dwell_s"), hist.select("user_id", "item_id", "t", "clicked", "dwell_s")]).join(items, on="item_id")
def top(M, T): return np.take_along_axis(T, np.argsort(-M,1)[:,:20], 1).mean() / np.sort(T,1)[:,-20:].mean()
def personal(X): return X - X.mean(0, keepdims=True)
res = {}
for (L, F, uv, T), (us, live, now) in zip(data, meta):
    past = allev.filter(pl.col("t") < now)
    clicks = past.filter(pl.col("clicked"))
    cand = pl.DataFrame({"item_id": cat.item_ids[live].tolist()}).join(items, on="item_id", how="left", maintain_order="left")
    grid = pl.DataFrame({"user_id": us}).join(cand, how="cross")
    g_sub = clicks.group_by("category", "subcategory").len("n_s").join(clicks.group_by("category").len("n_c"), on="category").with_columns(((pl.col("n_s") + 1) / (pl.col("n_c") + 4)).alias("g_sc"))
    u_sub = clicks.group_by("user_id", "subcategory").len("n_us")
    u_cat = clicks.group_by("user_id", "category").len("n_uc")
    mlog = clicks.with_columns(pl.col("dwell_s").clip(1, None).log().alias("ld"))
    cat_ld = mlog.group_by("category").agg(pl.col("ld").mean().alias("cat_ld"))
    u_ld = mlog.join(cat_ld, on="category").group_by("user_id", "category").agg((pl.col("ld") - pl.col("cat_ld")).sum().alias("ld_dev"))
    u_ldall = mlog.join(cat_ld, on="category").group_by("user_id").agg((pl.col("ld") - pl.col("cat_ld")).sum().alias("ld_all"), pl.len().alias("n_u"))
    pv = past.group_by("user_id", "publisher_id").agg(pl.col("clicked").sum().alias("c_up"), pl.len().alias("v_up"))
    pctr = past.group_by("publisher_id").agg(pl.col("clicked").mean().alias("ctr_p"))
    G = (grid.join(g_sub, on=["category", "subcategory"], how="left").join(u_sub, on=["user_id", "subcategory"], how="left")
         .join(u_cat, on=["user_id", "category"], how="left").join(u_ld, on=["user_id", "category"], how="left")
         .join(u_ldall, on="user_id", how="left")
         .join(pv, on=["user_id", "publisher_id"], how="left").join(pctr, on="publisher_id", how="left").fill_null(0))
    G = G.with_columns(
        (((pl.col("n_us") + 2 * pl.col("g_sc")) / (pl.col("n_uc") + 2)) / pl.col("g_sc").clip(1e-3, None)).log().alias("sub_aff"),
        ((pl.col("c_up") + 10 * pl.col("ctr_p")) / (pl.col("v_up") + 10) / pl.col("ctr_p").clip(1e-3, None)).log().alias("pub_ctr_lift"),
        (pl.col("ld_dev") / (pl.col("n_uc") + 3)).alias("dwell_aff"),
        (pl.col("ld_dev") / (pl.col("n_uc") + 3) - pl.col("ld_all") / (pl.col("n_u") + 3)).alias("dwell_aff_rel"),
    )
    shape = L.shape
    for n in ["sub_aff", "pub_ctr_lift", "dwell_aff", "dwell_aff_rel"]:
        X = personal(G[n].to_numpy().reshape(shape)); X = X / (X.std() + 1e-9)
        for a in [0.1, 0.25, 0.5, 1.0]:
            res.setdefault((n, a), []).append(top(L + a * X, T) - top(L, T))
for (n, a), v in res.items():
    print(n, a, "%+.4f" % np.mean(v), ["%+.4f" % x for x in v])
