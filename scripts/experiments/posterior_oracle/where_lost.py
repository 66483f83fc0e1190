"""Where the served feed loses against the posterior oracle: candidates, ranker, re-ranker.

    python where_lost.py BUNDLE PART REQUESTS

For evaluate_served's own sampled requests (seed 0) of known users, the bundle's Recommender
serves the feed as the evaluation does (RecommenderServer), and its candidate pool and the
ranker's feed scores are kept. Each feed's true utility@20, over the oracle's on the whole live
catalog (ratio of means, as utility_share@20), for:

    served                          the served feed (candidates -> ranker -> re-ranker)
    ranker order, candidates        the top 20 of the candidates by the ranker's feed score
    demographics only, candidates   by the new-user oracle's expected utility (sim/prior.py)
    posterior, candidates           by the posterior oracle's expected utility
    oracle, candidates              by the true utility: the candidate pool's ceiling
    posterior, live catalog         the posterior oracle's row of evaluate_served
    demographics only, live catalog

with per-segment values (new / returning / heavy / light, as served_requests.segment_masks).
"""

import json
import sys
import time

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.catalog import LiveCatalog
from feedrank.eval.oracle import world_of
from feedrank.eval.posterior_server import IMPRESSION_COLUMNS, UserEvents
from feedrank.eval.served_path import RecommenderServer
from feedrank.eval.served_requests import sample_requests, segment_masks
from feedrank.sim.posterior import PosteriorOracle, UserLog

bundle_path, part, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.time()
bundle = load_bundle(bundle_path)
parts = open_split(bundle.manifest["data"]["split"])
world = world_of(parts[part])
assert world is not None
space = bundle.space
events = pl.concat([ds.read("impressions").select("item_id", "ts") for ds in parts.values()])
live = LiveCatalog(space, events, 48.0)
imp = pl.concat([ds.read("impressions").select(IMPRESSION_COLUMNS) for ds in parts.values()])
user_events = UserEvents(world, imp, pl.concat([ds.read("history") for ds in parts.values()]))
oracle = PosteriorOracle(world, draws=1024, seed=0)
item_ids = space.catalog.item_ids
world_item = world.item_index(pl.Series(item_ids.astype(str), dtype=pl.String))
req = sample_requests(parts[part].read("impressions"), parts[part].read("users"), n, 0)
server = RecommenderServer(bundle)
rec = server.recommender
kept: dict[str, np.ndarray] = {}
candidates, rank = rec.stages.candidates, rec._rank


def keep_candidates(*args, **kwargs):  # type: ignore[no-untyped-def]
    pools = candidates(*args, **kwargs)
    kept["rows"] = pools.rows[0].copy()
    return pools


def keep_scores(*args, **kwargs):  # type: ignore[no-untyped-def]
    scores = rank(*args, **kwargs)
    kept["scores"] = np.asarray(scores[0]).copy()
    return scores


rec.stages.candidates, rec._rank = keep_candidates, keep_scores
names = [
    "served",
    "ranker order, candidates",
    "demographics only, candidates",
    "posterior, candidates",
    "oracle, candidates",
    "posterior, live catalog",
    "demographics only, live catalog",
    "oracle, live catalog",
]
values = {name: np.zeros(len(req)) for name in names}
pool_size = np.zeros(len(req))
past = np.zeros(len(req), dtype=np.int64)
rows_of = space.users.rows(pl.Series(req.user_ids, dtype=pl.String))
ok = rows_of >= 0
past[ok] = space.past.user_clicks.count_before(rows_of[ok], req.ts_us[ok])


def top_mean(true: np.ndarray, score: np.ndarray) -> float:
    return float(true[np.argsort(-score, kind="stable")[:20]].mean())


for q in range(len(req)):
    user, now = req.user_ids[q], int(req.ts_us[q])
    t = now / 1e6
    u = int(world.user_index([user])[0])
    feed = server.feeds([user], now, 20, [req.demographics[q]])[0]
    live_rows = np.flatnonzero(live.mask(np.array([now], dtype=np.int64))[0])
    cand = kept["rows"]
    valid = cand >= 0
    cand, scores = cand[valid], kept["scores"][valid]
    pool_size[q] = cand.size
    truth = world.expected_utility(np.array([u]), world_item[live_rows][None, :], t)[0]
    post = oracle.fit(req.demographics[q], user_events.before(u, now), key=f"{user}@{now}")
    prior = oracle.fit(req.demographics[q], UserLog.empty())
    post_live = oracle.expected_utility(post, world_item[live_rows], t)
    prior_live = oracle.expected_utility(prior, world_item[live_rows], t)
    true_c = world.expected_utility(np.array([u]), world_item[cand][None, :], t)[0]
    served_items = world.item_index(pl.Series(feed, dtype=pl.String))
    values["served"][q] = world.expected_utility(np.array([u]), served_items[None, :], t)[0][:20].mean()
    values["ranker order, candidates"][q] = top_mean(true_c, scores)
    values["demographics only, candidates"][q] = top_mean(
        true_c, oracle.expected_utility(prior, world_item[cand], t)
    )
    values["posterior, candidates"][q] = top_mean(true_c, oracle.expected_utility(post, world_item[cand], t))
    values["oracle, candidates"][q] = top_mean(true_c, true_c)
    values["posterior, live catalog"][q] = top_mean(truth, post_live)
    values["demographics only, live catalog"][q] = top_mean(truth, prior_live)
    values["oracle, live catalog"][q] = top_mean(truth, truth)
masks = segment_masks(past)
best = values["oracle, live catalog"]
out: dict[str, dict[str, float]] = {}
for seg, mask in masks.items():
    out[seg] = {name: float(v[mask].mean() / best[mask].mean()) for name, v in values.items()}
    out[seg]["requests"] = float(mask.sum())
    out[seg]["candidates (mean)"] = float(pool_size[mask].mean())
    se = {}
    for name in names[1:]:  # each row minus the served feed, paired
        x = values[name][mask] - values["served"][mask]
        r = x.mean() / best[mask].mean()
        se[name] = float((x - r * best[mask]).std(ddof=1) / (np.sqrt(mask.sum()) * best[mask].mean()))
    out[seg]["paired_se_vs_served"] = se  # type: ignore[assignment]
    print(seg, json.dumps(out[seg]), flush=True)
print("seconds", round(time.time() - start))
