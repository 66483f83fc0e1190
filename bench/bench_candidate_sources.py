"""Per-request cost of the non-ANN candidate sources against the catalog size: dense vs sparse.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_candidate_sources.py --items 5343 1000000

Serving asks trending, co-visitation and fresh for their top lists on every request (once per
batch for trending and fresh, once per user for co-visitation). Until session 6 each built
catalog-size arrays: trending's counts over every window × item, fresh scores over every
publication time, an eligibility mask over the catalog and, for co-visitation, each user's copy
of it. Now each source scores only the items it touches (clicked in the window, voted for after
the user's recent clicks, published in the fresh window) and eligibility is asked of those rows
only. This bench times both on the same counters and catalog, interleaved request by request, and
checks that they return the same lists.

The world: `--clicks` clicks over the last 7 days from `--users` users (items drawn with a Zipf
tail, a third of the clicks in sessions of a few minutes), a catalog of N items published over
the last 72 h (as bench/bench_service.py grows the demo catalog), each request for a user with
20 excluded items.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from feedrank.candidates import CandidateSources, Eligible, FreshItems, SourceList, top_n

US_PER_MIN = 60_000_000
US_PER_HOUR = 60 * US_PER_MIN
I64 = npt.NDArray[np.int64]


def dense_lists(
    sources: CandidateSources, user: str, t: int, n: int, exists_us: I64, published: I64, banned: I64
) -> dict[str, SourceList]:
    """The computation serving ran until session 6 (serve/stages.py at 25bf095)."""
    exists = exists_us <= t
    num = exists.size
    trending = sources.trending.counts(t, num)
    user_mask = exists.copy()
    user_mask[banned] = False
    covis = np.zeros(num)
    config = sources.covis.config
    for h in sources.covis.recent(user, t).values.tolist():
        votes = sources.covis._votes.between(h, None, t)
        known = votes.values < num
        weight = votes.weights[known]
        if config.half_life_h is not None:
            weight = weight * np.exp2(-((t - votes.ts[known]) / US_PER_HOUR) / config.half_life_h)
        covis += np.bincount(votes.values[known], weights=weight, minlength=num)
    window = sources.config.fresh_cfg.window_min * US_PER_MIN
    age = (t - published).astype(np.float64)
    fresh = np.where((age >= 0) & (age < window), 1.0 - age / window, 0.0)
    return {
        "trending": top_n(np.log1p(trending).sum(axis=0), n, exists),
        "covis": top_n(covis, n, user_mask),
        "fresh": top_n(fresh, n, exists),
    }


def sparse_lists(
    sources: CandidateSources, user: str, t: int, n: int, exists_us: I64, fresh: FreshItems, banned: I64
) -> dict[str, SourceList]:
    """What serving runs now (serve/stages.py `FeedStages.candidates`)."""

    def exists(rows: I64) -> npt.NDArray[np.bool_]:
        return exists_us[rows] <= t

    everyone = Eligible(exists_us.size, exists)
    user_ok = Eligible(exists_us.size, lambda rows: exists(rows) & ~np.isin(rows, banned))
    return {
        "trending": sources.trending_list(t, n, everyone),
        "covis": sources.covis_list(user, t, n, user_ok),
        "fresh": sources.fresh_list(fresh, t, n, everyone),
    }


def world(
    items: int, clicks: int, users: int, seed: int
) -> tuple[CandidateSources, I64, I64, list[str], int]:
    rng = np.random.default_rng(seed)
    now = 1_000 * 24 * US_PER_HOUR
    ts = np.sort(now - rng.integers(1, 7 * 24 * US_PER_HOUR, clicks))
    popular = np.minimum(rng.zipf(1.3, clicks) - 1, items - 1)  # a long tail over the catalog
    item = np.where(rng.random(clicks) < 0.5, popular, rng.integers(0, items, clicks)).astype(np.int64)
    who = rng.integers(0, users, clicks)
    names = np.array([f"u{k}" for k in range(users)], dtype=object)
    sources = CandidateSources().extend(names[who], item, ts.astype(np.int64))
    published = (now - rng.integers(0, 72 * US_PER_HOUR, items)).astype(np.int64)
    askers = [str(u) for u in names[who[-2_000:]]]  # users active lately: they have recent clicks
    return sources, published, published.copy(), askers, now


def timed(fn: Callable[[], dict[str, SourceList]]) -> tuple[float, dict[str, SourceList]]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, nargs="+", default=[5_343, 1_000_000])
    parser.add_argument("--clicks", type=int, default=200_000, help="over the last 7 days")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--n", type=int, default=520, help="list length (candidates + exclusions)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-candidate-sources"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for items in args.items:
        sources, published, exists_us, askers, now = world(items, args.clicks, args.users, seed=5)
        fresh = FreshItems(sources.config.fresh_cfg)
        t0 = time.perf_counter()
        fresh.sync(published)
        index_ms = (time.perf_counter() - t0) * 1e3
        rng = np.random.default_rng(1)
        dense_ms, sparse_ms, listed = [], [], {"trending": 0, "covis": 0, "fresh": 0}
        for r in range(args.requests):
            user, t = askers[r * 7 % len(askers)], now + r * 1_000_000
            banned = rng.choice(items, 20, replace=False).astype(np.int64)
            dense = partial(dense_lists, sources, user, t, args.n, exists_us, published, banned)
            sparse = partial(sparse_lists, sources, user, t, args.n, exists_us, fresh, banned)
            if r % 2 == 0:  # alternate which goes first
                (ms_dense, want), (ms_sparse, got) = timed(dense), timed(sparse)
            else:
                (ms_sparse, got), (ms_dense, want) = timed(sparse), timed(dense)
            dense_ms.append(ms_dense)
            sparse_ms.append(ms_sparse)
            for name in want:
                assert np.array_equal(want[name].rows, got[name].rows), name
                assert np.array_equal(want[name].scores, got[name].scores), name
                listed[name] += int(got[name].rows.size)
        row = {
            "items": items,
            "dense_ms": statistics.median(dense_ms),
            "sparse_ms": statistics.median(sparse_ms),
            "ratio": statistics.median(dense_ms) / statistics.median(sparse_ms),
            "fresh_index_build_ms": index_ms,
            "mean_listed": {k: v / args.requests for k, v in listed.items()},
            "clicks_in_24h": int(sources.trending._clicks.between(0, now - 24 * US_PER_HOUR, now).ts.size),
        }
        rows.append(row)
        print(
            f"{items:>9,} items: dense {row['dense_ms']:.2f} ms, sparse {row['sparse_ms']:.2f} ms "
            f"({row['ratio']:.1f}x), equal lists in {args.requests} requests; listed {row['mean_listed']}; "
            f"fresh index built in {index_ms:.0f} ms",
            flush=True,
        )
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "load_avg": os.getloadavg(), "rows": rows}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.out / 'result.json'}")


if __name__ == "__main__":
    main()
