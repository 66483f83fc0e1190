"""Capacity of `feedrank serve` on the demo bundle: 1 vs 2 workers, in-process vs Redis state.

    .venv/bin/python bench/bench_capacity.py --bundle runs/demo/bundle --requests 400 --rate 40

For each (workers, state) the service runs in its own process(es) (`feedrank serve --workers N`,
`--redis-url` with a private redis-server started here) and answers, after a warm-up:
1 closed-loop client, 8 closed-loop clients (`bench_service.run_clients`), and an open-loop stream
at `--rate` requests/s (`bench_service.run_open_loop`: latency from when each request was due).
Reports p50/p99, throughput, the share of degraded feeds, the server's median stage timings and
the 1-minute load average, and the median of GET /healthz from one client (the HTTP floor); writes
JSON and a latency plot. The 1- vs 2-worker ratio of each
figure comes from the same run. `--unbatched` adds, for each worker count with in-process state,
the service without micro-batching (`max_batch=1 max_concurrent=2`: each request waits for one
of two scoring slots, as before serve/batcher.py), so the batching's effect is a ratio of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import run_clients, run_open_loop, serving_process, summarize
from feedrank.serve.local import free_port

UNBATCHED = ["max_batch=1", "max_concurrent=2"]
Run = tuple[list[float], list[dict[str, Any]], float]  # latencies ms, answers, wall seconds


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        child = subprocess.Popen([*args, "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            child.terminate()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--requests", type=int, default=400, help="per phase")
    parser.add_argument("--rate", type=float, default=40.0, help="open-loop arrivals per second")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--states", nargs="*", default=["memory", "redis"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-capacity"))
    parser.add_argument("--unbatched", action="store_true", help="also serve without micro-batching")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    users = pl.read_parquet(args.bundle / "events.parquet").get_column("user_id").unique().sort().to_list()
    results: list[dict[str, Any]] = []
    plots: dict[str, list[float]] = {}
    variants = [(state, workers, "batched") for state in args.states for workers in args.workers]
    if args.unbatched:
        variants += [("memory", workers, "unbatched") for workers in args.workers]
    for state, workers, batching in variants:
        overrides = UNBATCHED if batching == "unbatched" else []
        with (
            contextmanager_for(state) as redis_url,
            serving_process(
                args.bundle,
                int8=False,
                workers=workers,
                redis_url=redis_url,
                timeout_s=1800,
                overrides=overrides,
            ) as url,
        ):
            run_clients(url, users, 100, 2)  # warm-up of every worker
            http_floor = probe_ms(url, args.requests)
            open_loop = f"open loop {args.rate:g}/s"
            phases: list[tuple[str, Callable[[], Run]]] = [
                ("1 client", lambda: run_clients(url, users, args.requests, 1)),
                ("8 clients", lambda: run_clients(url, users, args.requests, 8)),
                (open_loop, lambda: run_open_loop(url, users, args.requests, args.rate)),
            ]
            for phase, run in phases:
                latencies, answers, wall = run()
                summary = summarize(latencies, answers, wall)
                row = {"state": state, "workers": workers, "batching": batching, "phase": phase}
                row |= summary
                row["degraded_share"] = summary["degraded"] / summary["requests"]
                row["load_average_1m"] = os.getloadavg()[0]
                row["healthz_p50_ms"] = http_floor  # the same service's GET /healthz, 1 client
                results.append(row)
                plots[f"{state}, {workers} worker(s), {batching}, {phase}"] = latencies
                print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
    (args.out / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for label, latencies in plots.items():
        ax.ecdf(latencies, label=label)
    ax.set(xscale="log", xlabel="client-side latency of POST /v1/feed (ms)", ylabel="share of requests")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out / "capacity.png", dpi=120)


def probe_ms(url: str, requests: int) -> float:
    """Median client-side ms of GET /healthz, one client with keep-alive: what a request costs the
    HTTP stack, the event loop and the box's scheduling with no feed work, beside the feeds' `http`
    (client latency minus the server's own total)."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(requests):
            t0 = time.perf_counter()
            http.get("/healthz").raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(latencies))


@contextmanager
def contextmanager_for(state: str) -> Iterator[str | None]:
    if state == "redis":
        with redis_server() as url:
            yield url
    else:
        yield None


if __name__ == "__main__":
    main()
