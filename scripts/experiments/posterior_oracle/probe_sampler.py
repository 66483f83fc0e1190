"""Sampler check on a demo run: ESS, rounds, seconds and utility@20 share per request.

    python probe_sampler.py SPLIT PART REQUESTS [DRAWS]
"""
import sys, time
import numpy as np
import polars as pl
from feedrank.data.split import open_split
from feedrank.eval.oracle import world_of
from feedrank.eval.served_requests import sample_requests
from feedrank.eval.posterior_server import UserEvents
from feedrank.sim.posterior import PosteriorOracle

split, part, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
draws = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
parts = open_split(split)
world = world_of(parts[part])
imp = pl.concat([d.read("impressions").select("user_id", "item_id", "ts", "position", "clicked", "dwell_s", "shared", "hidden", "survey") for d in parts.values()])
hist = parts["train"].read("history")
t0 = time.time()
ev = UserEvents(world, imp, hist)
print("index s", round(time.time() - t0, 1))
req = sample_requests(parts[part].read("impressions"), parts[part].read("users"), n, 0)
po = PosteriorOracle(world, draws=draws, seed=0)
exam = world.examination(np.arange(20))
rows = []
for q in range(len(req)):
    u = int(world.user_index([req.user_ids[q]])[0]); now = int(req.ts_us[q]); t = now / 1e6
    log = ev.before(u, now)
    s = time.time()
    post = po.fit(req.demographics[q], log, key=f"{q}")
    items = world.live_items(t)
    eu = po.expected_utility(post, items, t)
    sec = time.time() - s
    true = world.expected_utility(np.array([u]), items[None, :], t)[0]
    top = np.argsort(-eu)[:20]; best = np.sort(true)[::-1][:20]
    prior_post = po.fit(req.demographics[q], log.__class__.empty())
    pu = po.expected_utility(prior_post, items, t)
    ptop = np.argsort(-pu)[:20]
    mean_th = post.weights @ post.interests
    rows.append((log.size, int(log.clicked.sum()), post.ess, post.rounds, sec, true[top].mean(), true[ptop].mean(), best.mean(),
                 np.corrcoef(mean_th, world.users.interests[u])[0, 1]))
    print(q, "events", log.size, "clicks", int(log.clicked.sum()), "hist", log.click_items.size, "ess %.0f rounds %d s %.2f" % (post.ess, post.rounds, sec),
          "post %.3f prior %.3f oracle %.3f corr %.2f" % (true[top].mean(), true[ptop].mean(), best.mean(), rows[-1][-1]), flush=True)
a = np.array(rows)
print("share posterior %.3f prior-only %.3f" % (a[:, 5].mean() / a[:, 7].mean(), a[:, 6].mean() / a[:, 7].mean()))
print("seconds mean %.2f max %.2f; ess min %.0f median %.0f" % (a[:, 4].mean(), a[:, 4].max(), a[:, 2].min(), np.median(a[:, 2])))
