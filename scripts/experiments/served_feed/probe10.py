"""Item part vs personal part of the served score at three valid times (150 users, every live item):
python probe10.py BUNDLE. Regresses the truth's and the ranker's item means on the latent item traits and
prints the top-20 share of the oracle for the ranker, the truth's item mean, and each mix of one
part from the ranker with the other from the truth (docs/served_feed.md, session 7)."""
import numpy as np, polars as pl, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from probe_setup import probe_setup
from feedrank.candidates import SOURCE_FEATURES
b, w, rec, cat, ts, users = probe_setup(sys.argv[1], 150)
res = []
for now in [int(np.quantile(ts, q)) for q in (0.25, 0.5, 0.75)]:
    urows = b.space.users.rows(pl.Series(users, dtype=pl.String))
    U = rec.stages.user_vectors(urows, [[] for _ in users], now)
    live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
    rows = np.tile(live, (len(users), 1))
    src = np.zeros(rows.shape + (len(SOURCE_FEATURES),), dtype=np.float32)
    S, _ = rec.stages.rank(U, urows, rows, now, [[] for _ in users], rec.online.item_clicks, rec._weights, src)
    wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
    T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
    f = w.features(wu[:,None], wl[None,:], now/1e6)
    it = w.items
    X = {"quality": it.quality[wl], "clickbait": it.clickbait[wl].astype(float), "appeal": it.appeal[wl],
         "fresh": f.freshness[0], "video": (it.content_type[wl]==1).astype(float), "photo": (it.content_type[wl]==2).astype(float)}
    A = np.column_stack([np.ones(len(wl))] + [ (v - v.mean())/ (v.std()+1e-9) for v in X.values()])
    Tm = T.mean(0); Lm = np.log(S).mean(0)
    o = np.sort(T,1)[:,-20:].mean()
    def top(M): return np.take_along_axis(T, np.argsort(-M,1)[:,:20], 1).mean()/o
    for name, y in [("truth item mean", Tm), ("ranker log item mean", Lm)]:
        coef, *_ = np.linalg.lstsq(A, (y-y.mean())/y.std(), rcond=None)
        r2 = 1 - ((A@coef - (y-y.mean())/y.std())**2).mean()
        print(now, name, "R2 %.2f" % r2, {k: round(c,2) for k, c in zip(X, coef[1:])})
    print("corr(truth item mean, ranker item mean) %.3f" % np.corrcoef(Tm, Lm)[0,1], "live", len(wl))
    print("top20 share: ranker %.3f, truth item mean %.3f, ranker item mean + truth personal %.3f, truth item mean + ranker personal(scaled) %.3f" % (
        top(S), top(np.tile(Tm,(len(users),1))), top(T - Tm + Lm*Tm.std()/Lm.std()), top(Tm + (np.log(S)-Lm)*Tm.std()/Lm.std())))
