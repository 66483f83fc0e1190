"""Per-request cost of finding a feed's users in the bundle's user directory: join vs binary search.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_user_rows.py --users 20000 1000000

A feed request looks up its user ids (1 for a single request, 8 for a batch of 8). Until session 6
serving asked `UserDirectory.rows`, a polars hash join against every known user, whose table is
rebuilt on every call; `serve/users.UserRows` sorts the ids once per bundle and binary-searches.
Both are timed interleaved on the same directory (ids like `u0001234`, half the asked ids
unknown) and must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.data.features import UserDirectory
from feedrank.serve.users import UserRows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=8, help="ids per lookup")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-user-rows"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.users:
        rng = np.random.default_rng(0)
        ids = pl.Series([f"u{k:07d}" for k in rng.permutation(size)], dtype=pl.String)
        n = size
        directory = UserDirectory(ids, np.zeros(n, dtype=np.int64), np.zeros((n, 1), dtype=np.int64))
        t0 = time.perf_counter()
        lookup = UserRows(directory)
        build_ms = (time.perf_counter() - t0) * 1e3
        join_ms, search_ms = [], []
        for r in range(args.requests):
            asked = [f"u{k:07d}" for k in rng.integers(0, 2 * size, args.batch)]
            t0 = time.perf_counter()
            want = directory.rows(pl.Series(asked, dtype=pl.String))
            t1 = time.perf_counter()
            got = lookup(asked)
            t2 = time.perf_counter()
            assert np.array_equal(want, got), r
            join_ms.append((t1 - t0) * 1e3)
            search_ms.append((t2 - t1) * 1e3)
        row = {
            "users": size,
            "join_ms": statistics.median(join_ms),
            "search_ms": statistics.median(search_ms),
            "build_ms": build_ms,
        }
        row["ratio"] = row["join_ms"] / row["search_ms"]
        rows.append(row)
        print(
            f"{size:>9,} users, {args.batch} ids: join {row['join_ms']:.2f} ms, search "
            f"{row['search_ms']:.3f} ms ({row['ratio']:.0f}x); sorted once in {build_ms:.0f} ms",
            flush=True,
        )
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "load_avg": os.getloadavg(), "rows": rows}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
