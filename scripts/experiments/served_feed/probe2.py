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
from feedrank.config import load_config
from pathlib import Path
b = load_bundle(sys.argv[1] if len(sys.argv)>1 else "runs/demo0/bundle"); w = World.load("runs/demo0/sim")
s = dataclasses.replace(load_config(ServeSettings, None, sys.argv[2:]), index_max_age_s=1e12)
rec = Recommender(b, s, build_reranker(s.rerank)); cat = rec.catalog
reqs = sample_requests(Path("runs/demo0/split"), "valid", 200, 0)
ts = to_us(reqs.get_column("ts")); users = reqs.get_column("user_id").to_list()
wu = w.user_index(pl.Series(users, dtype=pl.String))
res = {k: [] for k in ["pool_best","rank_top","ann_top","served","oracle","corr_rank","corr_ann","corr_rank_personal"]}
src_util = {n: [] for n in ["ann","trending","covis","fresh"]}
heads_all = []
hours = ts // 3600_000_000
for hour in np.unique(hours):
    at = np.flatnonzero(hours == hour); now_h = int(hour*3600_000_000)
    rows = np.flatnonzero(cat.exists_us <= now_h + 3600_000_000)
    cat.index.swap(AnnIndex.build(cat.index.index.spec, cat.item_vectors(rows, now_h), rows))
    for i in at.tolist():
        now = int(ts[i]); uid=[users[i]]
        urows = b.space.users.rows(pl.Series(uid, dtype=pl.String))
        views = rec._online_views(uid, [])
        U, _ = rec._user_vectors(uid, urows, views, now, None, [])
        ann = rec._ann(U, now, [set()], {}, [])
        pools = rec.stages.candidates(U, ann, now, s.candidates, uid, [set()], lambda: 1e9, 1e9)
        sc = rec._rank(U, urows, pools, now, views)[0]
        r = pools.rows[0]; ok = r>=0; r=r[ok]; sc=sc[ok]; annsc = pools.scores[0][ok]
        items = w.item_index(pl.Series(cat.item_ids[r].tolist(), dtype=pl.String))
        T = w.expected_utility(wu[i], items, now/1e6)
        best = w.oracle_ranking(np.array([wu[i]]), now/1e6, 20)[0]
        o = w.expected_utility(wu[i], best, now/1e6).mean()
        res["oracle"].append(o)
        res["pool_best"].append(np.sort(T)[-20:].mean())
        res["rank_top"].append(T[np.argsort(-sc)[:20]].mean())
        res["ann_top"].append(T[np.argsort(-annsc)[:20]].mean())
        feed = rec.recommend_batch(uid, now, 20, deadline=False)[0]
        fi = w.item_index(pl.Series([x.item_id for x in feed.items], dtype=pl.String))
        res["served"].append(w.expected_utility(wu[i], fi, now/1e6).mean())
        res["corr_rank"].append(np.corrcoef(T, sc)[0,1]); res["corr_ann"].append(np.corrcoef(T, annsc)[0,1])
        S = pools.sets[0]
        for n in src_util:
            m = S.sources[:, S.names.index(n)][ok[:len(S)]] if len(S)==ok.sum() else None
            if m is not None and m.any(): src_util[n].append(T[m].mean())
o = np.mean(res["oracle"])
for k,v in res.items(): print(k, round(float(np.mean(v)),4), "ratio", round(float(np.mean(v)/o),3) if not k.startswith("corr") else "")
for n,v in src_util.items(): print("mean truth of candidates from", n, round(float(np.mean(v)),4) if v else None)
