"""Replicas share online state through one real redis-server: `feedrank serve` processes over HTTP.

Replica A runs two uvicorn workers (`--workers 2`), replica B one; both use the same Redis for
the embedding cache and the online state. Startup is waited for by readiness (no deadline tied to
the box's speed); the effect of a click is polled a bounded number of times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import polars as pl

from tests.integration.http import ADMIN_TOKEN, AUTH, BUNDLE_KEY
from tests.serve.conftest import RedisServer, free_port

FEEDS_OK = 'feedrank_requests_total{endpoint="/v1/feed",status="200"}'
METRICS_ROUNDS = 25  # rounds of 8 concurrent feeds at most (a bound on tries, not on time)
POLLS = 10  # attempts, 0.1 s apart: the click must show within about a second of polling
# Trending alone proposes candidates and the feed keeps them all, so B's feed for a new user is
# B's trending top list: an item moves into it exactly when B's trending counts its clicks.
# No deadline: a slow first request on a loaded box must not skip the only source.
TRENDING_ONLY = ["sources.ann=0", "sources.covis=0", "sources.fresh=0", "candidates=20", "rerank.order=[]"]
TRENDING_ONLY += ["deadline_ms=600000", "source_budget_ms=600000"]


@contextmanager
def replica(bundle: Path, redis_url: str, workers: int, log: Path) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "feedrank", "serve", str(bundle), "--port", str(port), "--clock", "bundle"]
    args += ["--workers", str(workers), "--redis-url", redis_url]
    for override in TRENDING_ONLY:
        args += ["--set", override]
    env = os.environ | {"FEEDRANK_ADMIN_TOKEN": ADMIN_TOKEN, "FEEDRANK_BUNDLE_KEY": BUNDLE_KEY.decode()}
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until /readyz answers 200 or the process exits (a safety cap of 15 minutes, not a test of speed)."""
    give_up = time.monotonic() + 900
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"replica exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica never became ready:\n{log.read_text()[-3000:]}")


def feed(url: str, user: str, k: int = 20) -> list[str]:
    # a new connection per request, so the workers of a replica share the requests
    response = httpx.post(f"{url}/v1/feed", json={"user_id": user, "k": k}, timeout=60)
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def workers_serving(url: str, rounds: int, concurrent: int = 8) -> Counter[str]:
    """Rounds of `concurrent` feeds at once (new connections, which the workers race to accept),
    until two workers have answered or `rounds` rounds are spent: the requests each worker served."""
    served: Counter[str] = Counter()
    with ThreadPoolExecutor(concurrent) as pool:
        for r in range(rounds):
            users = [f"metrics-{r}-{i}" for i in range(concurrent)]
            for response in pool.map(
                lambda u: httpx.post(f"{url}/v1/feed", json={"user_id": u, "k": 5}, timeout=60), users
            ):
                assert response.status_code == 200, response.text
                served[response.headers["x-feedrank-worker"]] += 1
            if len(served) >= 2:
                break
    return served


def counter(metrics: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


def test_a_click_on_replica_a_reaches_replica_b(
    bundle_path: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    end = pl.read_parquet(bundle_path / "events.parquet").get_column("ts").max()
    assert isinstance(end, datetime)
    click_time = (end - timedelta(seconds=1)).isoformat()  # before either replica's clock
    with (
        replica(bundle_path, redis_server.url, 1, tmp_path / "b.log") as b,
        replica(bundle_path, redis_server.url, 2, tmp_path / "a.log") as a,
    ):
        trending_before = feed(b, "a-new-reader")
        reader_feed = feed(b, "reader")
        catalog = pl.read_parquet(bundle_path / "items.parquet").get_column("item_id").to_list()
        cold = next(str(i) for i in reversed(catalog) if str(i) not in trending_before)
        clicked = reader_feed[0]
        events = [{"user_id": "reader", "item_id": clicked, "type": "click", "ts": click_time}]
        events += [
            {"user_id": f"crowd-{i}", "item_id": cold, "type": "click", "ts": click_time} for i in range(60)
        ]
        response = httpx.post(f"{a}/v1/events", json={"events": events}, headers=AUTH, timeout=60)
        assert response.json() == {"accepted": 61, "ignored": 0}

        for _ in range(POLLS):
            reader_now, trending_now = feed(b, "reader"), feed(b, "another-new-reader")
            if clicked not in reader_now and cold in trending_now:
                break
            time.sleep(0.1)
        assert clicked not in reader_now  # B knows the reader clicked it on A
        assert cold in trending_now and cold not in trending_before  # B's trending moved

        # Both of A's workers serve (each answer names its worker), and /metrics on either one
        # counts the feeds of both: a worker's own count alone is below the total
        served = workers_serving(a, rounds=METRICS_ROUNDS)
        assert len(served) == 2 and all(n > 0 for n in served.values()), served
        metrics = httpx.get(f"{a}/metrics", timeout=60).text
        assert counter(metrics, FEEDS_OK) == sum(served.values())
        assert counter(metrics, 'feedrank_events_total{accepted="true",type="click"}') == 61

        # An item posted to A: B takes clicks on it at once, and both serve it.
        item = {"item_id": "fresh-on-a", "publisher_id": "p1", "category": "news", "published_ts": click_time}
        response = httpx.post(f"{a}/v1/items", json={"items": [item]}, headers=AUTH, timeout=60)
        assert response.json() == {"added": 1, "known": 0}
        response = httpx.post(f"{b}/v1/items", json={"items": [item]}, headers=AUTH, timeout=60)
        assert response.json() == {"added": 0, "known": 1}  # B knows it through Redis
        crowd = [
            {"user_id": f"fresh-crowd-{i}", "item_id": "fresh-on-a", "type": "click", "ts": click_time}
            for i in range(120)
        ]
        response = httpx.post(f"{b}/v1/events", json={"events": crowd}, headers=AUTH, timeout=60)
        assert response.json() == {"accepted": 120, "ignored": 0}
        for _ in range(POLLS):
            on_a, on_b = feed(a, "fresh-reader-a"), feed(b, "fresh-reader-b")
            if "fresh-on-a" in on_a and "fresh-on-a" in on_b:
                break
            time.sleep(0.1)
        assert "fresh-on-a" in on_b and "fresh-on-a" in on_a
