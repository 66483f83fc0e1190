"""End-to-end latency of POST /v1/feed over loopback, with a catalog of a million items.

    .venv/bin/python bench/bench_service.py --items 1000000 --requests 2000 --concurrency 8 --repeats 3

The models are the default world's (from `feedrank demo --out runs/demo`, trained here first if
that directory is missing). The catalog is the world's items plus `--items` synthetic ones
(publishers, categories and content types drawn from the real catalog, published over the last
72 hours of the log), embedded by the trained item tower and indexed (IVF by default). The
service runs in this process on a free loopback port (uvicorn, one worker); clients are httpx with
keep-alive. Reports client-side p50/p99 for one client, throughput and latency at `--concurrency`
clients, and the server's own per-stage timings; writes a latency histogram PNG.

The service runs in its own process (`python -m feedrank serve`), as in production: clients in
the same process would compete with it for the interpreter lock and inflate its latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from feedrank.bundle import write_bundle
from feedrank.data.schema import ITEMS
from feedrank.index import IndexSpec
from feedrank.pipeline import DemoConfig, run_demo
from feedrank.serve.local import free_port, wait_until_ready

STAGES = ("queue", "user", "retrieve", "rank", "rerank", "total")
# Parts of the stages (serve/recommender.py): the online state's reads (Redis round trips with the
# Redis state), the embedding cache, the user tower, the ranker's features and passes; and the
# number of feeds computed in the request's batch.
PARTS = ("user.state", "user.cache", "user.tower", "rank.features", "rank.model", "batch")


def ensure_runs(demo: Path) -> Path:
    if not (demo / "ranker" / "run.json").is_file():
        print(f"no trained runs in {demo}: running the main job first")
        run_demo(demo, DemoConfig())
    return demo


def enlarged_split(split: Path, extra: int, out: Path, seed: int) -> Path:
    """A copy of `split` whose test part's catalog has `extra` synthetic items more."""
    shutil.copytree(split, out)
    items_dir = out / "test" / "items"
    items = pl.read_parquet(items_dir / "*.parquet")
    end = pl.read_parquet(out / "test" / "impressions" / "*.parquet").get_column("ts").max()
    assert isinstance(end, datetime)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, items.height, extra)
    ages_s = rng.uniform(0, 72 * 3600, extra)
    synthetic = pl.DataFrame(
        {
            "item_id": [f"x{i}" for i in range(extra)],
            "publisher_id": items.get_column("publisher_id").gather(pick),
            "category": items.get_column("category").gather(pick),
            "subcategory": items.get_column("subcategory").gather(pick),
            "content_type": items.get_column("content_type").gather(pick),
            "published_ts": pl.Series([end - timedelta(seconds=float(a)) for a in ages_s]).cast(
                ITEMS.column("published_ts").dtype
            ),
            "title": pl.Series([None] * extra, dtype=pl.String),
        }
    )
    for old in items_dir.glob("*.parquet"):
        old.unlink()
    pl.concat([items, synthetic]).write_parquet(items_dir / "part-00000.parquet")
    return out


def run_clients(
    url: str, users: list[str], requests: int, concurrency: int
) -> tuple[list[float], list[dict[str, Any]], float]:
    """(client latencies ms, server answers, wall seconds) of `requests` feeds by `concurrency` clients."""
    latencies: list[float] = []
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    per_client = requests // concurrency

    def client(worker: int) -> None:
        rng = np.random.default_rng(worker)
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(per_client):
                user = users[int(rng.integers(len(users)))]
                t0 = time.perf_counter()
                response = http.post("/v1/feed", json={"user_id": user, "k": 20})
                elapsed = (time.perf_counter() - t0) * 1e3
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    answers.append(response.json())

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, answers, time.perf_counter() - start


def run_open_loop(
    url: str, users: list[str], requests: int, rate_rps: float, senders: int = 64
) -> tuple[list[float], list[dict[str, Any]], float]:
    """Open loop: request i is due at start + i / rate whatever the service's speed; its latency
    runs from when it was due, so time spent queued behind slow answers counts (no coordinated
    omission). `senders` threads send; a request waits for a free one only past that many in flight."""
    latencies: list[float] = []
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    rng = np.random.default_rng(0)
    picked = [users[int(i)] for i in rng.integers(len(users), size=requests)]
    start = time.perf_counter()
    next_index = iter(range(requests))

    def sender() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in next_index:  # the shared iterator hands each request to one sender
                due = start + i / rate_rps
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                response = http.post("/v1/feed", json={"user_id": picked[i], "k": 20})
                elapsed = (time.perf_counter() - due) * 1e3
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    answers.append(response.json())

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, answers, time.perf_counter() - start


def summarize(latencies: list[float], answers: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    lat = np.array(latencies)
    names = [
        *STAGES,
        *PARTS,
        *sorted({n for a in answers for n in a["timings_ms"] if n.startswith("source.")}),
    ]
    # What the client waited beyond the server's own total: HTTP, JSON, the event loop and the
    # thread pool (latencies and answers are appended together, so they pair up).
    # In the open loop the latency runs from when the request was due, so this includes the wait
    # for a free sender too.
    timings = [
        a["timings_ms"] | {"http": ms - a["timings_ms"]["total"]}
        for a, ms in zip(answers, latencies, strict=True)
    ]
    names.append("http")
    stages = {s: float(np.nanmedian([t.get(s, np.nan) for t in timings])) for s in names}
    stages_p99 = {s: float(np.nanpercentile([t.get(s, np.nan) for t in timings], 99)) for s in names}
    return {
        "requests": len(latencies),
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "throughput_rps": len(latencies) / wall_s,
        "server_stage_median_ms": stages,
        "server_stage_p99_ms": stages_p99,
        "degraded": sum(bool(a["degraded"]) for a in answers),
        "cache_hits": sum(a["cache"] == "hit" for a in answers),
    }


def median_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure's median over repeated runs (the machine is shared: single runs are noisy)."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = {k: float(np.median([r[key][k] for r in runs])) for k in value}
        else:
            out[key] = float(np.median([r[key] for r in runs]))
    out["per_run_p99_ms"] = [r["p99_ms"] for r in runs]
    return out


def plot(single: list[float], concurrent: list[float], concurrency: int, path: Path) -> None:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    lo, hi = np.log10(max(0.1, min(single + concurrent))), np.log10(max(single + concurrent))
    bins = [float(b) for b in np.logspace(lo, hi, 60)]
    ax.hist(single, bins=bins, alpha=0.6, label=f"1 client (p99 {np.percentile(single, 99):.1f} ms)")
    ax.hist(
        concurrent,
        bins=bins,
        alpha=0.6,
        label=f"{concurrency} clients (p99 {np.percentile(concurrent, 99):.1f} ms)",
    )
    ax.axvline(20, color="grey", linestyle="--", label="20 ms target (p99, 1 client)")
    ax.set(xscale="log", xlabel="client-side latency of POST /v1/feed (ms)", ylabel="requests",
           title="Feed latency over loopback")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@contextmanager
def serving_process(
    bundle: Path,
    *,
    int8: bool,
    timeout_s: float = 600.0,
    workers: int = 1,
    redis_url: str | None = None,
    overrides: Sequence[str] = (),
) -> Iterator[str]:
    """`feedrank serve BUNDLE` in a child process on a free loopback port; yields its URL when ready.
    `workers`: uvicorn workers; `redis_url`: embedding cache and online state in that Redis;
    `overrides`: `--set` of ServeSettings."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "feedrank",
        "serve",
        str(bundle),
        "--port",
        str(port),
        "--clock",
        "bundle",
    ]
    if int8:
        command.append("--int8")
    command += ["--workers", str(workers)]
    if redis_url:
        command += ["--redis-url", redis_url]
    for override in overrides:
        command += ["--set", override]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    global SERVER_PIDS
    try:
        if not wait_until_ready(url, lambda: child.poll() is None, timeout_s):
            err = child.stderr.read().decode() if child.stderr else ""
            raise SystemExit(f"the service did not start: {err[-2000:]}")
        SERVER_PIDS = [child.pid, *_children(child.pid)]
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


SERVER_PIDS: list[int] = []  # the service's processes (the serve command and its workers), when up


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


def server_peak_rss_mib() -> float:
    """Sum over the service's processes of each one's peak resident memory (VmHWM), MiB."""
    total = 0.0
    for pid in SERVER_PIDS:
        status = Path(f"/proc/{pid}/status")
        if status.is_file():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="directory of `feedrank demo`")
    parser.add_argument("--items", type=int, default=1_000_000, help="synthetic items added to the catalog")
    parser.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="ivf")
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--int8", action="store_true", help="serve INT8-quantized MLPs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each phase; figures are medians")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-service"), help="JSON and PNG go here")
    parser.add_argument("--quick", action="store_true", help="10k items, 200 requests: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.items, args.requests, args.repeats = 10_000, 200, 1
    demo = ensure_runs(args.demo)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        split = enlarged_split(demo / "split", args.items, Path(tmp) / "split", seed=0)
        spec = IndexSpec(kind=args.index, nlist=args.nlist, nprobe=args.nprobe, ef_search=args.ef_search)
        t0 = time.perf_counter()
        bundle = write_bundle(demo / "ranker", Path(tmp) / "bundle", index_spec=spec, split_dir=split)
        build_s = time.perf_counter() - t0
        users = pl.read_parquet(bundle / "events.parquet").get_column("user_id").unique().sort().to_list()
        t0 = time.perf_counter()
        with serving_process(bundle, int8=args.int8) as url:
            load_s = time.perf_counter() - t0
            run_clients(url, users, min(200, args.requests), 1)  # warm-up: caches, allocator, threads
            singles = [run_clients(url, users, args.requests, 1) for _ in range(args.repeats)]
            concurrents = [
                run_clients(url, users, args.requests, args.concurrency) for _ in range(args.repeats)
            ]
            peak_rss = server_peak_rss_mib()
        catalog = pl.read_parquet(bundle / "items.parquet").height
    result = {
        "catalog_items": catalog,
        "index": spec.describe() if hasattr(spec, "describe") else str(spec),
        "int8": args.int8,
        "bundle_build_s": build_s,
        "service_load_s": load_s,
        "service_peak_rss_mib": peak_rss,
        "load_average_1m": os.getloadavg()[0],
        "repeats": args.repeats,
        "single_client": median_summary([summarize(*run) for run in singles]),
        f"{args.concurrency}_clients": median_summary([summarize(*run) for run in concurrents]),
    }
    (args.out / "service.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(singles[0][0], concurrents[0][0], args.concurrency, args.out / "latency_histogram.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
