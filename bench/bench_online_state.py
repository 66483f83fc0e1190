"""Memory of the online state under a stream of distinct new users (each clicks once, then dwells).

    .venv/bin/python bench/bench_online_state.py --users 1000000 --max-users 200000
    .venv/bin/python bench/bench_online_state.py --users 1000000 --max-users 200000 --backend redis

In-process backend: events go through `MemoryStateStore` and one replica's view (`OnlineEvents`:
per-item click counts) whose clicks feed real candidate sources (trending, co-visitation with the
per-user bound), as serving does; the process's resident memory is sampled every `--every`
users. Redis backend: the same through `RedisStateStore` on a private redis-server started here
without `maxmemory` (`--redis-maxmemory 0`), so what bounds it is the store's own `max_users` cap
and the click stream's MAXLEN; Redis' `used_memory`, its key count and the store's counters are
sampled beside this process's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from feedrank.candidates import CandidateSources
from feedrank.serve.online import OnlineEvents
from feedrank.serve.state import MemoryStateStore, StateSettings, StateStore, StoredEvent, make_state_store

NUM_ITEMS = 20_000


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(
    store: StateStore, args: argparse.Namespace, redis_info: Callable[[], dict[str, float]] | None = None
) -> list[dict[str, float]]:
    sources = CandidateSources(max_users=args.max_users)
    view = OnlineEvents(
        store,
        lambda ids: np.fromiter((int(i) for i in ids), dtype=np.int64, count=len(ids)),
        sources.add_click,
    )
    rng = np.random.default_rng(0)
    items = rng.integers(0, NUM_ITEMS, size=args.users)
    t0 = 1_700_000_000_000_000
    step_us = int(args.span_h * 3_600_000_000 / args.users)  # arrivals spread over the span
    samples = []
    started = time.perf_counter()
    for i in range(args.users):
        user, item, ts = f"new-user-{i}", str(int(items[i])), t0 + i * step_us
        store.record(StoredEvent(user, item, "click", ts))
        store.record(StoredEvent(user, item, "dwell", ts + 1))
        if (i + 1) % 1000 == 0:
            view.sync()  # a replica applies the log in pages, as before a feed
        if (i + 1) % 100_000 == 0:  # serving's CandidateStage prunes what no window reaches
            sources.prune(ts - int(sources.config.history_h * 3_600_000_000))
        if (i + 1) % args.every == 0:
            sample = {"users_seen": float(i + 1), "rss_mb": rss_mb(), "s": time.perf_counter() - started}
            if redis_info is not None:
                sample |= redis_info()
            sample |= {k: float(v) for k, v in store.stats().items()}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--max-users", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--span-h", type=float, default=24.0, help="hours the arrivals spread over")
    parser.add_argument("--backend", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-maxmemory", default="0", help="redis-server's maxmemory (0: none)")
    parser.add_argument("--click-log-len", type=int, default=StateSettings.click_log_len)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps({"start_rss_mb": rss_mb()}))
    if args.backend == "memory":
        store = MemoryStateStore(StateSettings(max_users=args.max_users, click_log_len=args.click_log_len))
        samples = run(store, args)
    else:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not found"
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            server = subprocess.Popen(
                [
                    *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                    *("--maxmemory", args.redis_maxmemory, "--maxmemory-policy", "volatile-lru"),
                    *("--dir", tmp),
                ],
                stdout=subprocess.DEVNULL,
            )
            try:
                import redis

                raw = redis.Redis(port=port)
                while True:
                    try:
                        raw.ping()
                        break
                    except redis.ConnectionError:
                        time.sleep(0.05)
                settings = StateSettings(
                    backend="redis",
                    url=f"redis://127.0.0.1:{port}/0",
                    max_users=args.max_users,
                    click_log_len=args.click_log_len,
                )
                redis_store = make_state_store(settings)

                def redis_info() -> dict[str, float]:
                    memory = raw.info("memory")
                    return {
                        "redis_used_mb": int(memory["used_memory"]) / 2**20,
                        "redis_rss_mb": int(memory["used_memory_rss"]) / 2**20,
                        "redis_keys": float(raw.dbsize()),
                    }

                print(json.dumps({"redis_before": redis_info()}), flush=True)
                samples = run(redis_store, args, redis_info)
            finally:
                server.terminate()
                server.wait()
    if args.out:
        args.out.write_text(json.dumps(samples, indent=1))


if __name__ == "__main__":
    main()
