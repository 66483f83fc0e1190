"""Sampler check on a demo run: ESS, rounds, seconds and utility@20 share per request.

    python probe_sampler.py SPLIT PART REQUESTS [DRAWS]

Over the world's items published in the last 48 h (not eval/catalog.py's live catalog), so its
shares are not evaluate_served's; "prior" is the feed from the demographics alone.
"""

import sys
import time

import numpy as np
import polars as pl

from feedrank.data.split import open_split
from feedrank.eval.oracle import world_of
from feedrank.eval.posterior_server import IMPRESSION_COLUMNS, UserEvents
from feedrank.eval.served_requests import sample_requests
from feedrank.sim.posterior import PosteriorOracle, UserLog

split, part, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
draws = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
parts = open_split(split)
world = world_of(parts[part])
assert world is not None
imp = pl.concat([d.read("impressions").select(IMPRESSION_COLUMNS) for d in parts.values()])
ev = UserEvents(world, imp, parts["train"].read("history"))
req = sample_requests(parts[part].read("impressions"), parts[part].read("users"), n, 0)
po = PosteriorOracle(world, draws=draws, seed=0)
rows = []
for q in range(len(req)):
    u = int(world.user_index([req.user_ids[q]])[0])
    now = int(req.ts_us[q])
    t = now / 1e6
    log = ev.before(u, now)
    s = time.time()
    post = po.fit(req.demographics[q], log, key=f"{q}")
    items = world.live_items(t)
    eu = po.expected_utility(post, items, t)
    sec = time.time() - s
    true = world.expected_utility(np.array([u]), items[None, :], t)[0]
    best = np.sort(true)[::-1][:20].mean()
    mine = true[np.argsort(-eu)[:20]].mean()
    prior = true[
        np.argsort(-po.expected_utility(po.fit(req.demographics[q], UserLog.empty()), items, t))[:20]
    ].mean()
    corr = np.corrcoef(post.weights @ post.interests, world.users.interests[u])[0, 1]
    rows.append((post.ess, sec, mine, prior, best))
    print(
        q, f"events {log.size} clicks {int(log.clicked.sum())} warm-up clicks {log.click_items.size}", end=" "
    )
    print(f"ess {post.ess:.0f} rounds {post.rounds} s {sec:.2f} post {mine:.3f} prior {prior:.3f}", end=" ")
    print(f"oracle {best:.3f} corr {corr:.2f}", flush=True)
a = np.array(rows)
print(
    f"share posterior {a[:, 2].mean() / a[:, 4].mean():.3f} prior-only {a[:, 3].mean() / a[:, 4].mean():.3f}"
)
print(
    f"seconds mean {a[:, 1].mean():.2f} max {a[:, 1].max():.2f};",
    f"ess min {a[:, 0].min():.0f} median {np.median(a[:, 0]):.0f}",
)
