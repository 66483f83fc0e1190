"""The posterior oracle's sampler before and after a change, on evaluate_served's own requests.

    python compare_samplers.py BUNDLE PART REQUESTS OLD_COMMIT

OLD_COMMIT's src/feedrank/sim/posterior.py (read with `git show`) against the working tree's, on
the same sampled requests (seed 0), events, keys and live catalog as evaluate_served's posterior
row: the ESS quantiles of each by events read, and each feed's true utility@20 over the oracle's
(ratio of means, as utility_share@20), with the new minus the old paired per segment.
"""

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.catalog import LiveCatalog
from feedrank.eval.oracle import world_of
from feedrank.eval.posterior_server import IMPRESSION_COLUMNS, UserEvents
from feedrank.eval.served_metrics import paired_share
from feedrank.eval.served_requests import sample_requests, segment_masks
from feedrank.sim.posterior import PosteriorOracle

bundle_path, part, n, old_commit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
start = time.time()
source = subprocess.run(
    ["git", "show", f"{old_commit}:src/feedrank/sim/posterior.py"], capture_output=True, text=True, check=True
).stdout
path = Path(tempfile.mkdtemp()) / "old_posterior.py"
path.write_text(source)
spec = importlib.util.spec_from_file_location("old_posterior", path)
assert spec is not None and spec.loader is not None
old_module = importlib.util.module_from_spec(spec)
sys.modules["old_posterior"] = old_module
spec.loader.exec_module(old_module)

bundle = load_bundle(bundle_path)
parts = open_split(bundle.manifest["data"]["split"])
world = world_of(parts[part])
assert world is not None
space = bundle.space
live = LiveCatalog(
    space, pl.concat([ds.read("impressions").select("item_id", "ts") for ds in parts.values()]), 48.0
)
imp = pl.concat([ds.read("impressions").select(IMPRESSION_COLUMNS) for ds in parts.values()])
events = UserEvents(world, imp, pl.concat([ds.read("history") for ds in parts.values()]))
world_item = world.item_index(pl.Series(space.catalog.item_ids.astype(str), dtype=pl.String))
req = sample_requests(parts[part].read("impressions"), parts[part].read("users"), n, 0)
samplers = {
    "old": old_module.PosteriorOracle(world, draws=1024, seed=0),
    "new": PosteriorOracle(world, draws=1024, seed=0),
}
util = {name: np.zeros(len(req)) for name in [*samplers, "oracle"]}
ess = {name: np.zeros(len(req)) for name in samplers}
secs = dict.fromkeys(samplers, 0.0)
size = np.zeros(len(req))
for q in range(len(req)):
    user, now = req.user_ids[q], int(req.ts_us[q])
    u = int(world.user_index([user])[0])
    rows = np.flatnonzero(live.mask(np.array([now], dtype=np.int64))[0])
    truth = world.expected_utility(np.array([u]), world_item[rows][None, :], now / 1e6)[0]
    util["oracle"][q] = np.sort(truth)[::-1][:20].mean()
    log = events.before(u, now)
    size[q] = log.size
    for name, sampler in samplers.items():
        s = time.time()
        post = sampler.fit(req.demographics[q], log, key=f"{user}@{now}")
        score = sampler.expected_utility(post, world_item[rows], now / 1e6)
        secs[name] += time.time() - s
        util[name][q] = truth[np.argsort(-score, kind="stable")[:20]].mean()
        ess[name][q] = post.ess
print("seconds", round(time.time() - start), {k: round(v) for k, v in secs.items()})
buckets = {"all": size >= 0, "no events": size == 0, "1-99 events": (size > 0) & (size < 100),
           "100-999": (size >= 100) & (size < 1000), "1000+": size >= 1000}  # fmt: skip
for label, mask in buckets.items():
    if mask.any():
        for name in samplers:
            qs = np.quantile(ess[name][mask], [0.0, 0.01, 0.1, 0.5])
            quantiles = f"ESS min {qs[0]:.0f} p1 {qs[1]:.0f} p10 {qs[2]:.0f} median {qs[3]:.0f}"
            print(f"{label} ({mask.sum()}) {name}: {quantiles}")
rows_of = space.users.rows(pl.Series(req.user_ids, dtype=pl.String))
past = np.zeros(len(req), dtype=np.int64)
ok = rows_of >= 0
past[ok] = space.past.user_clicks.count_before(rows_of[ok], req.ts_us[ok])
for seg, mask in segment_masks(past).items():
    o = util["oracle"][mask]
    shares = {name: util[name][mask].mean() / o.mean() for name in samplers}
    diff, se = paired_share(util["new"][mask], util["old"][mask], o)
    print(f"{seg} ({mask.sum()}): share old {shares['old']:.4f} new {shares['new']:.4f};", end=" ")
    print(f"new - old {diff:+.4f} +- {se:.4f}")
print("seconds", round(time.time() - start))
