"""The embedding cache with its in-process LRU backend: TTL, LRU order, invalidation, counters,
thread safety, the byte format, and falling back when a backend fails."""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from feedrank.errors import ConfigError
from feedrank.serve.cache import (
    CacheBackendError,
    CacheSettings,
    CorruptPayloadError,
    EmbeddingCache,
    MemoryStore,
    decode_vector,
    encode_vector,
    make_cache,
)

DIM = 8


class FakeClock:
    """A monotonic clock that moves only when told (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FailingStore:
    """A backend that is down: every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, key: str) -> bytes | None:
        raise self.error

    def set(self, key: str, payload: bytes, ttl_s: float) -> None:
        raise self.error

    def delete(self, key: str) -> None:
        raise self.error

    def stats(self) -> dict[str, int]:
        return {}


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)  # (dim,)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> EmbeddingCache:
    return make_cache(CacheSettings(ttl_s=300.0, max_entries=3), dim=DIM, clock=clock)


def test_put_then_get_returns_an_equal_float32_copy(cache: EmbeddingCache) -> None:
    v = vec(0)
    cache.put("alice", v)
    got = cache.get("alice")
    assert got is not None
    assert got.dtype == np.float32 and got.shape == (DIM,)
    np.testing.assert_array_equal(got, v)
    got[0] = 99.0  # the caller owns its copy: the cached value does not change
    again = cache.get("alice")
    assert again is not None and again[0] == v[0]
    assert cache.get("bob") is None


def test_an_entry_expires_after_ttl(cache: EmbeddingCache, clock: FakeClock) -> None:
    cache.put("alice", vec(0))
    clock.advance(299.9)
    assert cache.get("alice") is not None
    clock.advance(0.1)
    assert cache.get("alice") is None
    assert cache.stats()["expirations"] == 1


def test_a_new_put_restarts_the_ttl(cache: EmbeddingCache, clock: FakeClock) -> None:
    cache.put("alice", vec(0))
    clock.advance(200)
    cache.put("alice", vec(1))
    clock.advance(200)
    got = cache.get("alice")
    assert got is not None
    np.testing.assert_array_equal(got, vec(1))


def test_lru_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=3, clock=clock)
    cache = EmbeddingCache(store, dim=DIM)
    for user in ("a", "b", "c"):
        cache.put(user, vec(0))
    assert cache.get("a") is not None  # a becomes the most recent: b is now the oldest
    cache.put("d", vec(0))
    assert store.keys() == ["c@0", "a@0", "d@0"]
    assert cache.get("b") is None
    assert cache.stats()["evictions"] == 1
    assert len(store) == 3


def test_invalidate_removes_only_that_user(cache: EmbeddingCache) -> None:
    cache.put("alice", vec(0))
    cache.put("bob", vec(1))
    cache.invalidate("alice")
    cache.invalidate("carol")  # nothing cached: still fine
    assert cache.get("alice") is None
    assert cache.get("bob") is not None
    assert cache.stats()["invalidations"] == 2


def test_stats_count_every_outcome(cache: EmbeddingCache) -> None:
    cache.get("alice")
    cache.put("alice", vec(0))
    cache.get("alice")
    cache.get("alice")
    cache.invalidate("alice")
    cache.get("alice")
    assert cache.stats() == {
        "hits": 2,
        "misses": 2,
        "corrupt": 0,
        "sets": 1,
        "invalidations": 1,
        "fallbacks": 0,
        "evictions": 0,
        "expirations": 0,
    }


def test_round_trip_is_header_plus_little_endian_float32() -> None:
    v = np.array([1.0, -2.5, 3.25], dtype=np.float64)  # cast to float32 on the way in
    payload = encode_vector(v)
    assert len(payload) == 8 + 3 * 4
    assert payload[8:] == struct.pack("<3f", 1.0, -2.5, 3.25)
    np.testing.assert_array_equal(decode_vector(payload, dim=3), v.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("truncated", lambda p: p[:-1]),
        ("too long", lambda p: p + b"\0\0\0\0"),
        ("shorter than the header", lambda p: p[:5]),
        ("empty", lambda p: b""),
        ("wrong magic", lambda p: b"XX" + p[2:]),
        ("unknown version", lambda p: p[:2] + b"\x09" + p[3:]),
        ("pickle", lambda p: b"\x80\x04\x95" + p),
    ],
)
def test_a_corrupted_payload_is_a_miss_with_a_counter(
    name: str, mangle: Callable[[bytes], bytes], clock: FakeClock
) -> None:
    store = MemoryStore(max_entries=10, clock=clock)
    cache = EmbeddingCache(store, dim=DIM)
    bad = mangle(encode_vector(vec(0)))
    with pytest.raises(CorruptPayloadError):
        decode_vector(bad, DIM)
    store.set(cache.key("alice"), bad, ttl_s=60)
    assert cache.get("alice") is None
    stats = cache.stats()
    assert (stats["corrupt"], stats["misses"], stats["hits"]) == (1, 1, 0)


def test_a_stored_vector_of_another_dimension_is_a_miss(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=10, clock=clock)
    old_model = EmbeddingCache(store, dim=4)
    new_model = EmbeddingCache(store, dim=DIM)
    old_model.put("alice", vec(0, dim=4))
    assert new_model.get("alice") is None
    assert new_model.stats()["corrupt"] == 1
    assert old_model.get("alice") is not None


@pytest.mark.parametrize(
    "bad",
    [np.zeros(DIM + 1, np.float32), np.zeros((1, DIM), np.float32), np.zeros(0, np.float32)],
    ids=["wrong dimension", "2-D", "empty"],
)
def test_put_rejects_a_vector_of_the_wrong_shape(cache: EmbeddingCache, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"dimension|shape"):
        cache.put("alice", bad)
    assert cache.stats()["sets"] == 0


def test_put_rejects_nan(cache: EmbeddingCache) -> None:
    v = vec(0)
    v[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cache.put("alice", v)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # switch threads every microsecond so that an unguarded check-then-act would interleave
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_use_keeps_the_bound_and_the_counts() -> None:
    store = MemoryStore(max_entries=16)
    cache = EmbeddingCache(store, dim=DIM)
    num_threads, num_ops = 8, 2000
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            rng = np.random.default_rng(t)
            for i in range(num_ops):
                user = f"u{rng.integers(64)}"
                got = cache.get(user)
                assert got is None or got.shape == (DIM,)
                cache.put(user, vec(i))
                if i % 10 == 0:
                    cache.invalidate(user)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(num_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    stats = cache.stats()
    assert stats["fallbacks"] == 0  # an exception inside the store would show here
    assert stats["hits"] + stats["misses"] == num_threads * num_ops  # no lost counter updates
    assert stats["sets"] == num_threads * num_ops
    assert stats["invalidations"] == num_threads * num_ops // 10
    assert len(store) <= 16


@pytest.mark.parametrize("error", [CacheBackendError("down"), RuntimeError("a bug in a store")])
def test_a_failing_backend_falls_back_without_raising(error: Exception) -> None:
    cache = EmbeddingCache(FailingStore(error), dim=DIM)
    assert cache.get("alice") is None
    cache.put("alice", vec(0))
    cache.invalidate("alice")
    stats = cache.stats()
    assert stats["fallbacks"] == 3
    assert stats["hits"] == stats["misses"] == stats["sets"] == stats["invalidations"] == 0


def test_namespace_keeps_models_apart(clock: FakeClock) -> None:
    settings = CacheSettings(key_prefix="fr:")
    cache = make_cache(settings, namespace="bundle-7", clock=clock)
    assert cache.key("alice") == "fr:bundle-7:alice@0"
    assert make_cache(settings).key("alice", 3) == "fr:alice@3"


def test_settings_from_environment() -> None:
    env = {
        "FEEDRANK_CACHE_BACKEND": "redis",
        "FEEDRANK_CACHE_URL": "redis://redis-primary:6380/2",
        "FEEDRANK_CACHE_TTL_S": "60",
        "FEEDRANK_CACHE_READ_TIMEOUT_S": "0.02",
        "HOME": "/root",
    }
    settings = CacheSettings.from_env(env)
    assert settings.backend == "redis"
    assert settings.url == "redis://redis-primary:6380/2"
    assert settings.ttl_s == 60.0 and settings.read_timeout_s == 0.02
    assert settings.max_entries == CacheSettings().max_entries


@pytest.mark.parametrize(
    "env",
    [{"FEEDRANK_CACHE_BACKEND": "memcached"}, {"FEEDRANK_CACHE_TTL_S": "0"}, {"FEEDRANK_CACHE_TTLS": "5"}],
)
def test_bad_settings_raise_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        CacheSettings.from_env(env)
