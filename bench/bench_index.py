"""Benchmark the candidate-generation indexes: build time, memory, recall@k, latency, throughput.

    .venv/bin/python bench/bench_index.py                              # 1,000,000 clustered vectors
    .venv/bin/python bench/bench_index.py --embeddings items.npy --queries users.npy

For flat (exact), IVF (nprobe tuned) and HNSW (efSearch tuned) it reports build time, memory (the
saved index on disk, which is what the index holds in RAM, and the process RSS growth during the
build), recall@k against the flat index's exact top-k, single-query latency (median and p99 over
queries, each the median of its repeats), batched throughput, and the speed-up over flat. Tuning
picks, per kind, the smallest nprobe / efSearch reaching --target-recall (`feedrank.index.tune`).

Builds use --build-threads (default: every core); searches use --search-threads (default 1): a
server answers many requests at once, one thread each, and on a busy 2-core machine OpenMP
threads splitting a single query wait on each other (measured 4-5x slower single queries with 2).

Without --embeddings the vectors are `feedrank.index.synthetic.clustered_embeddings` (topic
clusters, unnormalised, a freshness direction). With --embeddings and no --queries, queries are
held-out items with noise (an item-to-item proxy; real user vectors are better).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.index import (
    KINDS,
    AnnIndex,
    IndexSpec,
    Kind,
    TuneCandidates,
    render_tune_report,
    set_num_threads,
    tune,
)
from feedrank.index.synthetic import clustered_embeddings

F32 = npt.NDArray[np.float32]


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_data(args: argparse.Namespace) -> tuple[str, F32, F32]:
    """(description, items (N, d), queries (Q, d))."""
    if args.embeddings is None:
        data = clustered_embeddings(args.num_items, args.num_queries, args.dim, seed=args.seed)
        return f"clustered synthetic, seed {args.seed}", data.items, data.queries
    items = np.ascontiguousarray(np.load(args.embeddings, allow_pickle=False), dtype=np.float32)
    rng = np.random.default_rng(args.seed)
    if args.queries is not None:
        queries = np.ascontiguousarray(np.load(args.queries, allow_pickle=False), dtype=np.float32)
        queries = queries[rng.permutation(len(queries))[: args.num_queries]]
        return f"{args.embeddings.name} + {args.queries.name}", items, queries
    rows = rng.choice(len(items), size=min(args.num_queries, len(items) // 10), replace=False)
    queries = items[rows] + rng.normal(0, 0.1 / np.sqrt(items.shape[1]), (len(rows), items.shape[1]))
    items = np.delete(items, rows, axis=0)
    return f"{args.embeddings.name}, held-out items as queries", items, queries.astype(np.float32)


def build(spec: IndexSpec, items: F32) -> tuple[AnnIndex, dict[str, float]]:
    """Build and measure one index: seconds, RSS growth, and on-disk size (MiB)."""
    before = rss_mib()
    start = time.perf_counter()
    index = AnnIndex.build(spec, items)
    seconds = time.perf_counter() - start
    grown = rss_mib() - before
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        index.save(Path(tmp) / "index")
        size = sum(p.stat().st_size for p in (Path(tmp) / "index").iterdir())
    print(f"built {index.built.describe()} in {seconds:.1f} s ({size / 2**20:,.0f} MiB)", flush=True)
    return index, {"build_s": seconds, "rss_growth_mib": grown, "size_mib": size / 2**20}


def run(args: argparse.Namespace) -> dict[str, Any]:
    what, items, queries = load_data(args)
    print(f"{what}: {len(items):,} items x {items.shape[1]}, {len(queries):,} queries", flush=True)
    grid = TuneCandidates(
        nlist=args.nlist,
        nprobe=tuple(args.nprobe),
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=tuple(args.ef_search),
    )
    indexes: dict[Kind, AnnIndex] = {}
    builds: dict[str, dict[str, float]] = {}
    set_num_threads(args.build_threads)
    for kind in KINDS:
        indexes[kind], builds[kind] = build(grid.spec(kind), items)
    set_num_threads(args.search_threads)
    report = tune(
        items, queries, args.target_recall, args.k, grid,
        repeats=args.repeats, num_single=args.num_single, indexes=indexes,
    )  # fmt: skip
    print(render_tune_report(report))
    rows = []
    for kind in KINDS:
        trial = report.exact if kind == "flat" else report.chosen(kind)
        if trial is None:  # did not reach the target: show its most accurate setting
            trial = max((t for t in report.trials if t.spec.kind == kind), key=lambda t: t.recall)
        lat = trial.latency
        rows.append(
            {
                "kind": kind,
                "setting": trial.spec.describe(),
                **builds[kind],
                "recall": trial.recall,
                "single_p50_ms": lat.single_median_ms,
                "single_p99_ms": lat.single_p99_ms,
                "batch_qps": lat.batch_qps,
                "speedup_single": report.speedup(trial),
                "speedup_batch": lat.batch_qps / report.exact.latency.batch_qps,
            }
        )
    print_markdown(rows, args.k)
    return {
        "data": what,
        "num_items": len(items),
        "dim": int(items.shape[1]),
        "num_queries": len(queries),
        "k": args.k,
        "build_threads": args.build_threads,
        "search_threads": args.search_threads,
        "rows": rows,
        "best": report.best_spec.describe() if report.best_spec else None,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg_1m": os.getloadavg()[0],
    }


def print_markdown(rows: list[dict[str, Any]], k: int) -> None:
    print(
        f"\n| Index | Setting | Build | Memory | Recall@{k} | p50 single | p99 single | Batch q/s "
        "| Speed-up single / batch |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['kind']} | {r['setting']} | {r['build_s']:.1f} s | {r['size_mib']:,.0f} MiB "
            f"| {r['recall']:.3f} | {r['single_p50_ms']:.2f} ms | {r['single_p99_ms']:.2f} ms "
            f"| {r['batch_qps']:,.0f} | {r['speedup_single']:.0f}x / {r['speedup_batch']:.1f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-queries", type=int, default=1000, help="queries for recall and batches")
    parser.add_argument("--num-single", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--embeddings", type=Path, help="(N, d) item vectors .npy instead of synthetic")
    parser.add_argument("--queries", type=Path, help="(Q, d) user vectors .npy for --embeddings")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--search-threads", type=int, default=1, help="1 = a server answering requests in parallel threads"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    result = run(args)
    result["wall_s"] = time.perf_counter() - started
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
