"""The posterior oracle's sampler on the served evaluation's own requests: ESS quantiles per
segment, and whether 4x the draws changes the feed of the heaviest logs.

    python ess_check.py SPLIT PART REQUESTS HEAVIEST

The same sampled requests, demographics, events and seeds as eval/served.py's posterior row
(ServedOptions seed 0, 1,024 draws), so the ESS values are the row's own. For the HEAVIEST
requests by events read, the feed is refit with 4,096 draws and 16,384 final draws and both
feeds' true utility@20 over the world's live items is compared, paired.
"""

import sys
import time

import numpy as np
import polars as pl

from feedrank.data.split import open_split
from feedrank.eval.oracle import world_of
from feedrank.eval.posterior_server import IMPRESSION_COLUMNS, UserEvents
from feedrank.eval.served_requests import sample_requests
from feedrank.sim.posterior import PosteriorOracle

split, part, n, heaviest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start = time.time()
parts = open_split(split)
world = world_of(parts[part])
assert world is not None
imp = pl.concat([d.read("impressions").select(IMPRESSION_COLUMNS) for d in parts.values()])
events = UserEvents(world, imp, pl.concat([d.read("history") for d in parts.values()]))
req = sample_requests(parts[part].read("impressions"), parts[part].read("users"), n, 0)
base = PosteriorOracle(world, draws=1024, seed=0)
big = PosteriorOracle(world, draws=4096, seed=0, final_draws=16384)
ess, size, rounds = np.zeros(len(req)), np.zeros(len(req)), np.zeros(len(req))
logs = []
for q in range(len(req)):
    user = int(world.user_index([req.user_ids[q]])[0])
    now = int(req.ts_us[q])
    log = events.before(user, now)
    post = base.fit(req.demographics[q], log, key=f"{req.user_ids[q]}@{now}")
    ess[q], size[q], rounds[q] = post.ess, log.size, post.rounds
    logs.append((user, now, log, post))
print("seconds", round(time.time() - start))
for name, mask in (("all", size >= 0), ("no events", size == 0), ("1-99 events", (size > 0) & (size < 100)),
                   ("100-999", (size >= 100) & (size < 1000)), ("1000+", size >= 1000)):  # fmt: skip
    if mask.any():
        q = np.quantile(ess[mask], [0.0, 0.01, 0.1, 0.5])
        ess_q = f"ESS min {q[0]:.0f} p1 {q[1]:.0f} p10 {q[2]:.0f} median {q[3]:.0f}"
        print(f"{name}: {mask.sum()} requests, {ess_q}; rounds mean {rounds[mask].mean():.1f};", end=" ")
        print(f"events median {np.median(size[mask]):.0f}")
top = np.argsort(-size)[:heaviest]
a, b, o = [], [], []
for q in top:
    user, now, log, post = logs[q]
    t = now / 1e6
    items = world.live_items(t)
    true = world.expected_utility(np.array([user]), items[None, :], t)[0]
    again = big.fit(req.demographics[q], log, key=f"big{q}")
    a.append(true[np.argsort(-base.expected_utility(post, items, t))[:20]].mean())
    b.append(true[np.argsort(-big.expected_utility(again, items, t))[:20]].mean())
    o.append(np.sort(true)[::-1][:20].mean())
a_, b_, o_ = np.array(a), np.array(b), np.array(o)
d = (b_ - a_) / o_.mean()
se = d.std(ddof=1) / np.sqrt(d.size)
print(f"heaviest {heaviest} (events {size[top].min():.0f}-{size[top].max():.0f},", end=" ")
print(f"ESS at 1,024 draws median {np.median(ess[top]):.0f}):", end=" ")
print(f"share {a_.mean() / o_.mean():.4f} with 1,024 draws,", end=" ")
print(f"{b_.mean() / o_.mean():.4f} with 4,096 (+16,384 final); paired {d.mean():+.4f} +- {se:.4f}")
print("seconds", round(time.time() - start))
