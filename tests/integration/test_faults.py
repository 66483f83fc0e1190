"""Faults under load: 8 clients over real HTTP while Redis is killed (SIGKILL) and restarted and
the bundle is reloaded twice. Not one request may fail.

The service runs under uvicorn in this process (serve/local.py) with the shared embedding cache in
a private redis-server. Each phase waits until the clients have made progress in it (no sleeps
that a slow machine could outrun): Redis up, Redis killed, a reload while it is down, Redis back
on the same port, a reload with it up.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from feedrank.serve.cache import CacheSettings
from feedrank.serve.local import running_service
from feedrank.serve.settings import ServeSettings
from tests.integration.http import AUTH, server_settings
from tests.serve.conftest import RedisServer

log = logging.getLogger(__name__)
CLIENTS = 8
PER_PHASE = 40  # requests all clients together complete in each phase before the next fault


class Load:
    """`CLIENTS` threads posting feeds (and now and then a click) until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.outcomes: list[tuple[str, int, float]] = []  # (phase, status or -1, seconds)
        self.phase = "redis up"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def client(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    if n % 10 == 0:
                        body = {"events": [{"user_id": f"c{index}", "item_id": "i1", "type": "click"}]}
                        status = http.post("/v1/events", json=body, headers=AUTH).status_code
                    else:
                        body2 = {"user_id": f"c{index}-{n % 5}", "k": 10}
                        status = http.post("/v1/feed", json=body2).status_code
                except httpx.HTTPError:
                    status = -1
                with self.lock:
                    self.outcomes.append((self.phase, status, time.perf_counter() - started))

    def count(self, phase: str) -> int:
        with self.lock:
            return sum(1 for p, _, _ in self.outcomes if p == phase)

    def enter(self, phase: str) -> None:
        with self.lock:
            self.phase = phase
        while self.count(phase) < PER_PHASE:
            time.sleep(0.01)


@pytest.mark.slow
def test_eight_clients_through_redis_kill_restart_and_reloads_fail_nothing(
    bundle_path: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    first = shutil.copytree(bundle_path, root / "v1")
    shutil.copytree(bundle_path, root / "v2")
    settings = ServeSettings(clock="bundle", cache=CacheSettings(backend="redis", url=redis_server.url))
    with running_service(first, settings, server=server_settings(root)) as url:
        load = Load(url)
        for thread in load.threads:
            thread.start()
        try:
            load.enter("redis up")
            redis_server.stop(kill=True)
            load.enter("redis killed")
            while_down = httpx.get(f"{url}/metrics").text  # a reload starts a new cache and its counts
            assert httpx.post(f"{url}/admin/reload", json={"bundle": "v2"}, headers=AUTH).status_code == 200
            load.enter("reloaded while redis is down")
            redis_server.start(port=redis_server.port)
            load.enter("redis restarted")
            assert httpx.post(f"{url}/admin/reload", json={"bundle": "v1"}, headers=AUTH).status_code == 200
            load.enter("reloaded with redis up")
        finally:
            load.stop.set()
            for thread in load.threads:
                thread.join()
    statuses = [status for _, status, _ in load.outcomes]
    failed = [o for o in load.outcomes if o[1] != 200]
    seconds = sorted(s for _, _, s in load.outcomes)
    log.info(
        "fault test: %d requests by %d clients, %d failed, p50 %.1f ms, p99 %.1f ms",
        len(statuses),
        CLIENTS,
        len(failed),
        1e3 * seconds[len(seconds) // 2],
        1e3 * seconds[int(len(seconds) * 0.99)],
    )
    assert failed == []
    assert len(statuses) >= 5 * PER_PHASE
    fallbacks = [line for line in while_down.splitlines() if line.startswith("feedrank_cache_fallbacks")]
    assert fallbacks and float(fallbacks[0].split()[-1]) > 0  # the cache did fall back while Redis was away
