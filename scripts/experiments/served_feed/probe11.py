"""The ranker's personal part against Bayesian interest estimates at the median valid time: python
probe11.py BUNDLE. Scales the personal part; adds a * the expected affinity under the posterior from
the true demographic prior and the topic mixes of the user's clicked items, the true affinity,
the prior alone (docs/served_feed.md, session 7)."""
import numpy as np, polars as pl, sys
sys.path.insert(0, "scripts/experiments/served_feed")
from probe_setup import probe_setup
from feedrank.candidates import SOURCE_FEATURES
b, w, rec, cat, ts, users = probe_setup(sys.argv[1], 150)
now = int(np.median(ts))
urows = b.space.users.rows(pl.Series(users, dtype=pl.String))
U = rec.stages.user_vectors(urows, [[] for _ in users], now)
live = np.flatnonzero((cat.exists_us <= now) & (cat.published_us > now - 48*3600*10**6))
rows = np.tile(live, (len(users), 1))
src = np.zeros(rows.shape + (len(SOURCE_FEATURES),), dtype=np.float32)
S, _ = rec.stages.rank(U, urows, rows, now, [[] for _ in users], rec.online.item_clicks, rec._weights, src)
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
o = np.sort(T,1)[:,-20:].mean()
def top(M): return np.take_along_axis(T, np.argsort(-M,1)[:,:20], 1).mean()/o
L = np.log(S); Lm = L.mean(0, keepdims=True); P = L - Lm
print("ranker", round(top(L),3))
for a in [-0.3, 0.3, 0.6, 1.0, 2.0]:
    print("amplify personal by", 1+a, round(top(Lm + (1+a)*P),3))
# interests posterior (true prior + main-topic click counts)
past = b.space.past.history(urows, np.full(len(users), now, dtype=np.int64), 50)
rows_items = np.where(past > 0, past - 1, 0)
ids = b.space.catalog.item_ids[rows_items.reshape(-1)]
widx = w.item_index(pl.Series(ids.tolist(), dtype=pl.String)).reshape(past.shape)
K = w.config.num_topics
counts = np.zeros((len(users), K))
for u in range(len(users)):
    for j in range(past.shape[1]):
        if past[u, j] > 0: counts[u] += w.items.topics[widx[u, j]]
logits = np.log(w.topic_popularity)[None, :] + sum(w.demographic_shift[a][getattr(w.users, a)[wu]] for a in ["age_bucket","gender","country","device"])
prior = np.exp(logits - logits.max(1, keepdims=True)); prior /= prior.sum(1, keepdims=True)
post = (2 * prior + counts) / (2 + counts.sum(1, keepdims=True))
affpost = post @ w.items.topics[wl].T  # expected affinity
afftrue = w.affinity(wu[:, None], wl[None, :])
for name, X in [("post affinity", affpost), ("true affinity", afftrue), ("prior affinity", prior @ w.items.topics[wl].T)]:
    best = max((top(Lm + a * X), a) for a in [1, 2, 4, 7, 10, 14])
    best2 = max((top(L + a * X), a) for a in [0.5, 1, 2, 4, 7])
    print(name, "ranker item mean + a*X best %.3f a=%s; ranker + a*X best %.3f a=%s" % (best[0], best[1], best2[0], best2[1]))
