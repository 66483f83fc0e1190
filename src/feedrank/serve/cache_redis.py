"""The Redis backend of the embedding cache: one cache that several serving replicas share.

Each call is one command (GET, SET with PX = the TTL, DEL) with short socket timeouts and no client
retries, so a dead or slow Redis costs a request at most one connect or read timeout (50 ms by
default) before `EmbeddingCache` falls back to computing the embedding.

Circuit breaker, so that a dead Redis is not hammered and requests do not each pay a timeout:

    closed ──(`failures` consecutive failures)──▶ open ──(`cooldown_s` passed)──▶ half-open
      ▲                                             ▲                                │
      └────────────── the probe succeeds ───────────┼────────── the probe fails ─────┘

- closed: every call goes to Redis; a success resets the count of consecutive failures.
- open: no call goes to Redis; each raises CacheBackendError at once (a fallback, counted in
  `short_circuits` as well).
- half-open: one call (the probe) goes to Redis while the others are still skipped; its outcome
  closes the circuit or opens it for another cool-down. So a restarted Redis is in use again at
  most `cooldown_s` after it came back, and a dead one sees one attempt per cool-down per replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feedrank.serve.cache import CacheBackendError, CacheSettings, Clock, Counters

logger = logging.getLogger(__name__)

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of a backend and tells callers when to skip it; thread-safe."""

    def __init__(self, failures: int = 5, cooldown_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        if failures <= 0:
            raise ValueError(f"failures must be > 0, got {failures}")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None  # None while closed
        self._probing = False  # a half-open probe is in flight
        self.num_opens = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probing or self._clock() - self._opened_at >= self.cooldown_s:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        """Whether this call may use the backend; after the cool-down exactly one caller gets True."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._consecutive = 0
            self._opened_at = None
            self._probing = False
        if was_open:
            logger.warning("cache backend answers again: circuit closed")

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._probing:
                self._probing = False
                self._opened_at = self._clock()  # the probe failed: another full cool-down
                return
            if self._opened_at is not None or self._consecutive < self.failures:
                return
            self._opened_at = self._clock()
            self.num_opens += 1
            consecutive = self._consecutive
        logger.warning(
            "cache backend failed %d times in a row: circuit open, skipping it for %.1f s",
            consecutive,
            self.cooldown_s,
        )


class RedisStore:
    """A ByteStore on a redis-py client; raises CacheBackendError for every failure of Redis."""

    def __init__(self, client: redis.Redis, breaker: CircuitBreaker) -> None:
        self.client = client
        self.breaker = breaker
        self._counters = Counters("short_circuits")

    @classmethod
    def from_settings(cls, settings: CacheSettings, clock: Clock = time.monotonic) -> RedisStore:
        client = redis.Redis.from_url(
            settings.url,
            socket_connect_timeout=settings.connect_timeout_s,
            socket_timeout=settings.read_timeout_s,
            # no client-side retries: the breaker decides when to try again, so a failed call fails
            # at once (explicit because redis.Redis(host=...) defaults to 10 retries with backoff)
            retry=Retry(NoBackoff(), 0),
            max_connections=settings.max_connections,
        )
        breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, clock)
        return cls(client, breaker)

    def get(self, key: str) -> bytes | None:
        # decode_responses is off, so GET returns the stored bytes
        return cast("bytes | None", self._call(lambda: self.client.get(key)))

    def set(self, key: str, payload: bytes, ttl_s: float) -> None:
        # PX (milliseconds) rather than EX (whole seconds) keeps a fractional TTL exact
        self._call(lambda: self.client.set(key, payload, px=max(1, round(ttl_s * 1000))))

    def delete(self, key: str) -> None:
        self._call(lambda: self.client.delete(key))

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot() | {"breaker_opens": self.breaker.num_opens}

    def close(self) -> None:
        """Close the pooled connections (a replica shutting down)."""
        self.client.close()

    def _call(self, command: Callable[[], T]) -> T:
        if not self.breaker.allow():
            self._counters.add("short_circuits")
            raise CacheBackendError("redis skipped: circuit open")
        try:
            result = command()
        except Exception as exc:
            # every failure counts, or an unexpected error would leave a half-open probe in flight forever
            self.breaker.record_failure()
            if isinstance(exc, redis.RedisError | OSError):
                raise CacheBackendError(f"redis failed: {type(exc).__name__}: {exc}") from exc
            raise
        self.breaker.record_success()
        return result
