"""The Redis backend: the circuit breaker, failures without a server (refused, timeout), and against a
real redis-server (see conftest.py): two replicas sharing one cache, TTL, and Redis stopping and
coming back while requests run."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from feedrank.serve.cache import CacheSettings, EmbeddingCache, encode_vector, make_cache
from feedrank.serve.cache_redis import CircuitBreaker, RedisStore
from tests.serve.conftest import RedisServer, free_port

DIM = 8
# Generous timeouts where a test checks behaviour rather than failure: a loaded 2-core CI machine can
# stall a loopback round trip past the production 50 ms now and then.
PATIENT_TIMEOUT_S = 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def embedding_of(user_id: str) -> np.ndarray:
    """What the user tower would compute: a vector that names its user, (DIM,) float32."""
    return np.full(DIM, float(user_id.removeprefix("u")), dtype=np.float32)


def redis_cache(
    url: str, *, clock: FakeClock | None = None, patient: bool = False, **overrides: Any
) -> EmbeddingCache:
    if patient:
        overrides |= {"connect_timeout_s": PATIENT_TIMEOUT_S, "read_timeout_s": PATIENT_TIMEOUT_S}
    settings = CacheSettings(backend="redis", url=url, key_prefix="test:", **overrides)
    return make_cache(settings, dim=DIM, clock=clock or time.monotonic)


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # read through a function: mypy would keep a narrowed property's type


def store_of(cache: EmbeddingCache) -> RedisStore:
    assert isinstance(cache.store, RedisStore)
    return cache.store


# -- the circuit breaker, on a fake clock


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=5.0, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the count is of consecutive failures
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) == "closed" and breaker.allow()
    breaker.record_failure()
    assert state(breaker) == "open" and not breaker.allow()
    assert breaker.num_opens == 1


def test_breaker_lets_one_probe_through_after_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    clock.now = 4.9
    assert not breaker.allow()
    clock.now = 5.0
    assert state(breaker) == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its outcome
    breaker.record_failure()  # the probe failed: a new cool-down from now
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) == "closed"
    assert breaker.allow() and breaker.allow()


# -- failures without any server


def test_refused_connections_fall_back_and_open_the_circuit() -> None:
    clock = FakeClock()
    cache = redis_cache(f"redis://127.0.0.1:{free_port()}/0", clock=clock, breaker_failures=3)
    start = time.monotonic()
    for i in range(10):
        assert cache.get(f"u{i}") is None
        cache.put(f"u{i}", embedding_of(f"u{i}"))
        cache.invalidate(f"u{i}")
    assert time.monotonic() - start < 2.0
    stats = cache.stats()
    assert stats["fallbacks"] == 30
    assert stats["short_circuits"] == 27  # only the first 3 calls tried to connect
    assert stats["breaker_opens"] == 1
    assert stats["hits"] == stats["misses"] == stats["sets"] == 0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_a_hung_server_costs_one_short_timeout(silent_server: int) -> None:
    cache = redis_cache(f"redis://127.0.0.1:{silent_server}/0", read_timeout_s=0.05, breaker_failures=1)
    start = time.monotonic()
    assert cache.get("u1") is None
    first = time.monotonic() - start
    assert first < 1.0  # redis-py's default socket timeout is 5 s
    assert cache.get("u1") is None  # the circuit is open: no second wait
    assert cache.stats()["fallbacks"] == 2 and cache.stats()["short_circuits"] == 1


# -- a real redis-server


def test_two_replicas_share_puts_and_invalidations(redis_url: str) -> None:
    replica_a, replica_b = redis_cache(redis_url, patient=True), redis_cache(redis_url, patient=True)
    replica_a.put("u7", embedding_of("u7"))
    got = replica_b.get("u7")
    assert got is not None
    np.testing.assert_array_equal(got, embedding_of("u7"))
    replica_b.invalidate("u7")  # the engagement event reached replica b only
    assert replica_a.get("u7") is None
    assert replica_b.stats()["hits"] == 1 and replica_a.stats()["misses"] == 1


def test_entries_are_prefixed_raw_bytes_with_a_ttl(redis_url: str) -> None:
    cache = redis_cache(redis_url, ttl_s=300.0, patient=True)
    cache.put("u3", embedding_of("u3"))
    raw = redis.Redis.from_url(redis_url)
    assert raw.get("test:u3@0") == encode_vector(embedding_of("u3"))
    assert 299_000 < raw.pttl("test:u3@0") <= 300_000
    raw.close()


def test_entries_expire_after_the_ttl(redis_url: str) -> None:
    writer, reader = redis_cache(redis_url, ttl_s=1.0, patient=True), redis_cache(redis_url, patient=True)
    writer.put("u1", embedding_of("u1"))
    assert reader.get("u1") is not None
    time.sleep(1.2)
    assert reader.get("u1") is None


def test_a_corrupted_entry_in_redis_is_a_miss(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.set("test:u1@0", b"\x80\x04\x95 not an embedding")
    raw.set("test:u2@0", encode_vector(np.ones(DIM + 1, np.float32)))  # another model's dimension
    raw.close()
    cache = redis_cache(redis_url, patient=True)
    assert cache.get("u1") is None and cache.get("u2") is None
    assert cache.stats()["corrupt"] == 2 and cache.stats()["fallbacks"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_requests_survive_redis_stopping_and_the_cache_recovers(redis_server: RedisServer, how: str) -> None:
    # production timeouts (50 ms); a short cool-down so that recovery shows within the test
    cache = redis_cache(redis_server.url, ttl_s=60.0, breaker_failures=3, breaker_cooldown_s=0.5)
    store = store_of(cache)
    errors: list[BaseException] = []
    latencies_s: list[float] = []
    done = threading.Event()

    def serve(user_id: str) -> np.ndarray:
        """One request's embedding step, as the recommender does it: get → compute → put."""
        u = cache.get(user_id)
        if u is None:
            u = embedding_of(user_id)
            cache.put(user_id, u)
        return u

    def client(t: int) -> None:
        for i in range(100_000):  # bounded; `done` ends it long before
            if done.is_set():
                return
            user_id = f"u{(t * 31 + i) % 40}"
            start = time.monotonic()
            try:
                u = serve(user_id)
                np.testing.assert_array_equal(u, embedding_of(user_id))
            except BaseException as exc:
                errors.append(exc)
                return
            latencies_s.append(time.monotonic() - start)
            time.sleep(0.001)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.5)
        before = cache.stats()
        redis_server.stop(kill=how == "kill")
        time.sleep(1.0)
        during = cache.stats()
        assert state(store.breaker) != "closed"
        redis_server.start(port=redis_server.port)  # the same URL comes back, empty
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and cache.stats()["hits"] < during["hits"] + 50:
            time.sleep(0.05)
        after = cache.stats()
    finally:
        done.set()
        for th in threads:
            th.join()

    assert errors == []
    assert before["hits"] > 0 and before["fallbacks"] == 0
    assert during["fallbacks"] > before["fallbacks"]
    assert during["short_circuits"] > 0  # the open circuit kept most calls away from the dead port
    assert max(latencies_s) < 1.0  # no request waited on the dead Redis for long
    assert after["hits"] >= during["hits"] + 50, "the cache did not work again after the restart"
    assert state(store.breaker) == "closed"
    cache.put("u1", embedding_of("u1"))
    assert cache.get("u1") is not None
