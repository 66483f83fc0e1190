"""Diagnose the served feed: sampled requests through `Recommender.recommend_batch` at their own
times, measured against the simulator's ground truth, stage by stage.

    python scripts/experiments/served_feed/diagnose.py BUNDLE SIM_DIR SPLIT_DIR [--part valid|test]
        [--requests 300] [--set key=value ...] [--json OUT]

Requests: distinct logged requests of the part (seeded sample), grouped by hour; at each hour the
index is rebuilt with item vectors at that hour (as the simulated A/B test does), and every
request is served at its own time with a brand-new user's feed at the same time beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.bundle import load_bundle
from feedrank.config import load_config
from feedrank.data.features import to_us
from feedrank.data.split import open_split
from feedrank.index import AnnIndex
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.serve.settings import ServeSettings
from feedrank.sim import World

US_PER_HOUR = 3_600_000_000
LIVE_H = 48.0


def jaccard_mean(feeds: list[set[str]], pairs: int, rng: np.random.Generator) -> float:
    n = len(feeds)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = a != b
    vals = [
        len(feeds[i] & feeds[j]) / max(1, len(feeds[i] | feeds[j]))
        for i, j in zip(a[keep], b[keep], strict=True)
    ]
    return float(np.mean(vals))


def sample_requests(split: Path, part: str, num: int, seed: int) -> pl.DataFrame:
    imp = open_split(split)[part].read("impressions")
    req = (
        imp.group_by("request_id").agg(pl.col("user_id").first(), pl.col("ts").min()).sort("ts", "request_id")
    )
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(req.height, size=min(num, req.height), replace=False))
    return req[pick]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("sim")
    ap.add_argument("split")
    ap.add_argument("--part", default="valid")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--no-rank", action="store_true")
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--weights", help='feed score head weights, JSON, e.g. {"click": 1, "share": 5}')
    ap.add_argument("--json")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    world = World.load(args.sim)
    settings = load_config(ServeSettings, None, list(args.set))
    settings = dataclasses.replace(settings, index_max_age_s=1e12)
    rec = Recommender(
        bundle,
        settings,
        build_reranker(settings.rerank),
        rank=not args.no_rank,
        rerank=not args.no_rerank,
        weights=json.loads(args.weights) if args.weights else None,
    )
    cat = rec.catalog
    reqs = sample_requests(Path(args.split), args.part, args.requests, args.seed)
    ts = to_us(reqs.get_column("ts"))
    users = reqs.get_column("user_id").to_list()
    known = cat.bundle.space.users.rows(pl.Series(users, dtype=pl.String)) >= 0
    hours = ts // US_PER_HOUR
    feeds: list[list[str]] = []
    new_feeds: list[list[str]] = []
    slot_sources: Counter[str] = Counter()
    cand_counts: Counter[str] = Counter()
    uvecs = []
    t_start = time.perf_counter()
    for hour in np.unique(hours):
        at = np.flatnonzero(hours == hour)
        now_h = int(hour * US_PER_HOUR)
        rows = np.flatnonzero(cat.exists_us <= now_h + US_PER_HOUR)
        cat.index.swap(AnnIndex.build(cat.index.index.spec, cat.item_vectors(rows, now_h), rows))
        for i in at.tolist():
            now = int(ts[i])
            both = rec.recommend_batch(
                [users[i], f"brand-new-{i}"], now, args.k, demographics=[{}, {}], deadline=False
            )
            feeds.append([it.item_id for it in both[0].items])
            new_feeds.append([it.item_id for it in both[1].items])
            for it in both[0].items[:10]:
                slot_sources["+".join(it.sources) or "-"] += 1
            for name, c in (both[0].candidates or {}).items():
                cand_counts[name] += c
            uvecs.append(
                rec.stages.user_vectors(
                    cat.bundle.space.users.rows(pl.Series([users[i]], dtype=pl.String)), [[]], now
                )[0]
            )
    secs = time.perf_counter() - t_start
    n = len(feeds)
    rng = np.random.default_rng(1)
    top10 = [set(f[:10]) for f in feeds]
    kn = np.flatnonzero(known)
    out: dict[str, object] = {"requests": n, "known": int(known.sum()), "seconds": round(secs, 1)}
    counts = Counter(i for f in (top10[j] for j in kn) for i in f)
    out["distinct_top10_items_known"] = len(counts)
    out["max_item_share_known"] = counts.most_common(1)[0][1] / max(1, kn.size)
    out["jaccard_top10_known_any_time"] = jaccard_mean([top10[j] for j in kn], 4000, rng)
    # Feeds at different times draw from different live catalogs: compare requests of one hour.
    same = [
        len(top10[i] & top10[j]) / max(1, len(top10[i] | top10[j]))
        for i in kn.tolist()
        for j in kn.tolist()
        if i < j and hours[i] == hours[j] and users[i] != users[j]
    ]
    out["jaccard_top10_known_same_hour"] = float(np.mean(same))
    out["same_hour_pairs"] = len(same)
    out["known_vs_new_overlap"] = float(np.mean([len(top10[j] & set(new_feeds[j][:10])) / 10 for j in kn]))
    # Ground truth: mean expected utility of the served top-k against the oracle's top-k over the
    # world's live catalog at the same time.
    wu = world.user_index(pl.Series(users, dtype=pl.String))
    served_u, oracle_u, oracle_sets, new_u = [], [], [], []
    age_h = []
    for j in range(n):
        t_s = ts[j] / 1e6
        items = world.item_index(pl.Series(feeds[j][: args.k], dtype=pl.String))
        served_u.append(float(world.expected_utility(wu[j], items, t_s).mean()) if items.size else 0.0)
        nitems = world.item_index(pl.Series(new_feeds[j][: args.k], dtype=pl.String))
        new_u.append(float(world.expected_utility(wu[j], nitems, t_s).mean()) if nitems.size else 0.0)
        best = world.oracle_ranking(np.array([wu[j]]), t_s, args.k)[0]
        oracle_u.append(float(world.expected_utility(wu[j], best, t_s).mean()))
        oracle_sets.append(set(best[:10].tolist()))
        age_h.append(float(np.mean((t_s - world.items.published_s[items]) / 3600)) if items.size else np.nan)
    served, oracle = np.array(served_u), np.array(oracle_u)
    ratio = served / oracle
    out["utility@k_served"] = float(served.mean())
    out["utility@k_new_user_feed_for_same_user"] = float(np.mean(new_u))
    out["utility@k_oracle"] = float(oracle.mean())
    out["served/oracle"] = float(served.mean() / oracle.mean())
    out["served/oracle_se"] = float(ratio.std(ddof=1) / np.sqrt(n))
    out["oracle_jaccard_top10_same_hour"] = float(
        np.mean(
            [
                len(oracle_sets[i] & oracle_sets[j]) / max(1, len(oracle_sets[i] | oracle_sets[j]))
                for i in range(n)
                for j in range(i + 1, n)
                if hours[i] == hours[j] and users[i] != users[j]
            ]
        )
    )
    out["served_mean_age_h"] = float(np.nanmean(age_h))
    u = np.asarray(uvecs)
    cos = u @ u.T
    iu = np.triu_indices(len(u), 1)
    out["user_vec_cos_mean"] = float(cos[iu].mean())
    out["user_vec_cos_p10_p90"] = [float(np.quantile(cos[iu], 0.1)), float(np.quantile(cos[iu], 0.9))]
    out["slot_sources_top10"] = dict(slot_sources.most_common(12))
    out["candidates_per_request"] = {k: v / n for k, v in cand_counts.items()}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
