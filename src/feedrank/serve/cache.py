"""The user-embedding cache: serving computes a user's embedding once and reuses it until it expires.

    cache = make_cache(CacheSettings(backend="memory", ttl_s=300.0), dim=128, namespace=bundle_id)
    u = cache.get(user_id, gen)             # (d,) float32, or None: compute it (or use the default)
    if u is None:
        u = user_tower(...)                 # from the history read with generation `gen`
        cache.put(user_id, u, gen)
    cache.invalidate(user_id, gen)          # on an engagement event that ended generation `gen`

`EmbeddingCache` holds what every backend shares (keys, the byte format, the counters, failure
handling) over a narrow byte-level `ByteStore`: `MemoryStore` here (an in-process LRU, the default)
and `RedisStore` in `cache_redis.py` (one cache shared by several replicas). A cache is an
optimisation, so a failing backend never fails a request: `get` returns None, `put` and
`invalidate` do nothing, and the `fallbacks` counter rises.

Generations: every entry is keyed by the user and the user's generation in the online state
(serve/state.py), which each of the user's events increments together with the history. A request
reads the generation and the history in one read, computes, and puts under that generation; an
event that lands meanwhile has moved the generation on, so the late put writes a key nobody reads
any more (it expires) and cannot undo the event's invalidation. `invalidate(user, generation)`
only frees the entry of the generation the event ended. With Redis as both cache and state every
replica reads the same keys and generations.

Errors (neither escapes `EmbeddingCache`; both belong in feedrank.errors' tree):

    FeedrankError
    ├── CacheBackendError     the backend failed or is skipped (circuit open); the call falls back
    └── CorruptPayloadError   stored bytes are not a vector of the expected form; counted as a miss
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from feedrank.config import apply_overrides
from feedrank.errors import ConfigError, FeedrankError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]  # seconds, monotonic

# magic, format version, one pad byte, dimension; then `dim` little-endian float32 values
_HEADER = struct.Struct("<2sBxI")
_MAGIC = b"FE"
FORMAT_VERSION = 1


class CacheBackendError(FeedrankError):
    """The cache backend failed (refused, timed out, stopped) or is skipped while its circuit is open."""


class CorruptPayloadError(FeedrankError):
    """Stored bytes are not a vector in this format, version and dimension."""


@dataclass(frozen=True)
class CacheSettings:
    """How serving caches user embeddings; `from_env` reads FEEDRANK_CACHE_<FIELD> variables."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"  # redis backend only
    ttl_s: float = 300.0  # an entry lives this long after its put (seconds)
    max_entries: int = 100_000  # memory backend: LRU bound (about 65 MB at d=128)
    key_prefix: str = "feedrank:emb:"
    connect_timeout_s: float = 0.05  # short: a cache that waits longer than the user tower is useless
    read_timeout_s: float = 0.05
    max_connections: int = 64  # redis connection pool per replica
    breaker_failures: int = 5  # consecutive backend failures that open the circuit
    breaker_cooldown_s: float = 5.0  # how long an open circuit skips the backend (seconds)

    def __post_init__(self) -> None:
        if self.backend not in ("memory", "redis"):
            raise ConfigError(f"cache backend must be 'memory' or 'redis', got {self.backend!r}")
        numbers = ("ttl_s", "max_entries", "connect_timeout_s", "read_timeout_s", "max_connections")
        for name in (*numbers, "breaker_failures", "breaker_cooldown_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"cache setting {name} must be > 0, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CacheSettings:
        """Defaults overridden by FEEDRANK_CACHE_BACKEND, FEEDRANK_CACHE_TTL_S, ... (pass os.environ)."""
        prefix = "FEEDRANK_CACHE_"
        overrides = [
            f"{k.removeprefix(prefix).lower()}={v}" for k, v in environ.items() if k.startswith(prefix)
        ]
        return apply_overrides(cls(), sorted(overrides))


def encode_vector(vector: np.ndarray, dim: int | None = None) -> bytes:
    """Header + raw little-endian float32 bytes of a (d,) vector (cast to float32); never pickle."""
    v = np.asarray(vector, dtype="<f4")
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"an embedding must have shape (d,) with d > 0, got {v.shape}")
    if dim is not None and v.shape[0] != dim:
        raise ValueError(f"embedding dimension {v.shape[0]} does not match the cache's {dim}")
    if not np.isfinite(v).all():
        raise ValueError("an embedding with NaN or infinite values cannot be cached")
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, v.shape[0]) + v.tobytes()


def decode_vector(payload: bytes, dim: int | None = None) -> np.ndarray:
    """The (d,) float32 vector in `payload` (a writable copy); CorruptPayloadError if it is not one."""
    if len(payload) < _HEADER.size:
        raise CorruptPayloadError(f"payload of {len(payload)} bytes is shorter than the header")
    magic, version, stored_dim = _HEADER.unpack_from(payload)
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise CorruptPayloadError(f"unknown header {magic!r} version {version}")
    if len(payload) != _HEADER.size + 4 * stored_dim:
        raise CorruptPayloadError(f"payload of {len(payload)} bytes does not hold {stored_dim} floats")
    if dim is not None and stored_dim != dim:
        # e.g. written by a replica still serving a bundle with another embedding size
        raise CorruptPayloadError(f"stored dimension {stored_dim} != expected {dim}")
    return np.frombuffer(payload, dtype="<f4", offset=_HEADER.size).astype(np.float32)


class ByteStore(Protocol):
    """The backend boundary: bytes under string keys with a time to live. Failures raise any error."""

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, payload: bytes, ttl_s: float) -> None: ...
    def delete(self, key: str) -> None: ...
    def stats(self) -> dict[str, int]: ...


class Counters:
    """Named integer counters that threads may bump concurrently."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class MemoryStore:
    """In-process LRU of at most `max_entries` payloads, each expiring `ttl_s` after its set; thread-safe.

    It stores the same bytes as Redis would, so both backends hand out independent copies and run the
    same checks. Expired entries are dropped when read or when the LRU bound pushes them out.
    """

    def __init__(self, max_entries: int, clock: Clock = time.monotonic) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be > 0, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires_at, bytes)
        self._counters = Counters("evictions", "expirations")

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[str]:
        """Keys from least to most recently used (expired ones included until they are dropped)."""
        with self._lock:
            return list(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, payload = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                self._counters.add("expirations")
                return None
            self._entries.move_to_end(key)
            return payload

    def set(self, key: str, payload: bytes, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl_s, payload)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._counters.add("evictions")

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()


class EmbeddingCache:
    """User embeddings, (d,) float32, over a ByteStore; no method raises because the backend failed.

    Counters (`stats()`): `hits`; `misses` (absent, expired or corrupt entries); `corrupt` (the part
    of the misses whose bytes were unusable); `sets`; `invalidations`; `fallbacks` (calls of any of
    the three methods that could not use the backend); plus the store's own counters.
    """

    def __init__(
        self, store: ByteStore, *, ttl_s: float = 300.0, dim: int | None = None, key_prefix: str = ""
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.store = store
        self.ttl_s = ttl_s
        self.dim = dim  # None: accept any dimension
        self.key_prefix = key_prefix
        self._counters = Counters("hits", "misses", "corrupt", "sets", "invalidations", "fallbacks")

    def key(self, user_id: str, generation: int = 0) -> str:
        return f"{self.key_prefix}{user_id}@{generation}"

    def get(self, user_id: str, generation: int = 0) -> np.ndarray | None:
        """The cached (d,) float32 embedding of `user_id` at `generation`, or None (miss or backend down)."""
        try:
            payload = self.store.get(self.key(user_id, generation))
        except Exception as exc:  # any failure: the cache is an optimisation, the request must go on
            self._fall_back("get", exc)
            return None
        if payload is None:
            self._counters.add("misses")
            return None
        try:
            vector = decode_vector(payload, self.dim)
        except CorruptPayloadError as exc:
            logger.warning(
                "cache entry %r is unusable, treated as a miss: %s", self.key(user_id, generation), exc
            )
            self._counters.add("corrupt")
            self._counters.add("misses")
            return None
        self._counters.add("hits")
        return vector

    def put(self, user_id: str, vector: np.ndarray, generation: int = 0) -> None:
        """Cache a (d,) embedding computed at `generation` for `ttl_s` seconds; ValueError for a
        wrong shape or NaN (a caller bug)."""
        payload = encode_vector(vector, self.dim)
        try:
            self.store.set(self.key(user_id, generation), payload, self.ttl_s)
        except Exception as exc:
            self._fall_back("put", exc)
            return
        self._counters.add("sets")

    def invalidate(self, user_id: str, generation: int = 0) -> None:
        """Forget `user_id`'s embedding of `generation` (the one an engagement event ended)."""
        try:
            self.store.delete(self.key(user_id, generation))
        except Exception as exc:
            self._fall_back("invalidate", exc)
            return
        self._counters.add("invalidations")

    def stats(self) -> dict[str, int]:
        """Counters since start, for Prometheus: this cache's, then the store's (evictions, ...)."""
        return self._counters.snapshot() | self.store.stats()

    def _fall_back(self, op: str, exc: Exception) -> None:
        self._counters.add("fallbacks")
        if isinstance(exc, CacheBackendError):
            # expected while the backend is down: the store logs its circuit's transitions once
            logger.debug("cache %s fell back: %s", op, exc)
        else:
            # a cache must never fail a request, but an error the store did not map is a bug to see
            logger.error("cache %s fell back on an unexpected error", op, exc_info=exc)


def make_cache(
    settings: CacheSettings, *, dim: int | None = None, namespace: str = "", clock: Clock = time.monotonic
) -> EmbeddingCache:
    """The cache `settings` describe. `namespace` (e.g. the bundle id) keeps embeddings of different
    models apart in a shared Redis: a new bundle starts with an empty cache. `clock` drives the LRU's
    TTL and the circuit breaker (seconds, monotonic)."""
    prefix = f"{settings.key_prefix}{namespace}:" if namespace else settings.key_prefix
    store: ByteStore
    if settings.backend == "redis":
        from feedrank.serve.cache_redis import RedisStore  # imports redis only when it is used

        store = RedisStore.from_settings(settings, clock=clock)
    else:
        store = MemoryStore(settings.max_entries, clock=clock)
    return EmbeddingCache(store, ttl_s=settings.ttl_s, dim=dim, key_prefix=prefix)
