"""`ManagedIndex`: an `AnnIndex` that takes fresh items incrementally and is rebuilt by policy.

    managed = ManagedIndex(AnnIndex.build(spec, vectors, ids), RebuildPolicy(max_added_share=0.2))
    managed.add(fresh_vectors, fresh_ids)   # searchable at once; may start a background rebuild
    scores, ids = managed.search(users, k=100)

Incremental adds keep an index usable but not good forever: IVF centroids drift away from the
catalog they were trained on, HNSW keeps tombstones of removed items, and item vectors carry a
freshness term that ages. So the index is rebuilt from scratch when the items added (or removed)
since the last build exceed a share of the size it was built with, or when it is older than
`max_age_s` (by the injected clock). `maybe_rebuild` checks the policy; `add` and `remove` call it,
and a server may also call it from a timer.

A rebuild reads the live vectors (from `source` when given, which may return recomputed vectors,
else from the current index), builds a new index with no lock held, then under the lock replays
the adds and removes that arrived meanwhile and swaps the reference. Searches read the reference
once and keep using the index they got, so during a rebuild they use the old index and never see a
half-built one. Replay is safe even when `source` already saw some of those changes: adds replace
by id and removing an absent id does nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.errors import ConfigError
from feedrank.index.ann import F32, I64, AnnIndex, as_ids, as_vectors
from feedrank.index.spec import IndexSpec

logger = logging.getLogger(__name__)

Source = Callable[[], tuple[npt.ArrayLike, npt.ArrayLike]]  # () -> vectors (N, d), ids (N,)


@dataclass(frozen=True)
class RebuildPolicy:
    """When to rebuild: shares are of the item count at the last build; age is in seconds."""

    max_added_share: float = 0.2
    max_removed_share: float = 0.2
    max_age_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("max_added_share", "max_removed_share", "max_age_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"rebuild policy {name}: expected a positive number, got {value!r}")


@dataclass(frozen=True)
class IndexStats:
    """Counters of a ManagedIndex; times are clock seconds, durations wall seconds."""

    size: int  # live items now
    adds: int  # items added since creation (an upsert counts once)
    removes: int  # items removed since creation
    rebuilds: int  # completed rebuilds
    added_since_build: int
    removed_since_build: int
    size_at_build: int
    built_at: float  # clock time the current index's contents were read
    last_build_s: float  # wall time of the last completed rebuild, 0.0 before the first
    rebuilding: bool
    last_error: str | None  # why the last background rebuild failed, if it did


class ManagedIndex:
    """Thread-safe holder of the current AnnIndex, with incremental adds and atomic rebuilds."""

    def __init__(
        self,
        index: AnnIndex,
        policy: RebuildPolicy | None = None,
        *,
        source: Source | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        auto_rebuild: bool = True,
    ) -> None:
        self.policy = policy or RebuildPolicy()
        self._current = index
        self._source = source
        self._clock = clock
        self._background = background
        self._auto_rebuild = auto_rebuild
        self._lock = threading.Lock()  # serialises writers and the swap; searches never take it
        self._journal: list[tuple[F32, I64] | I64] | None = None  # changes during a rebuild
        self._idle = threading.Event()
        self._idle.set()
        self._adds = self._removes = self._rebuilds = 0
        self._added_since = self._removed_since = 0
        self._size_at_build = len(index)
        self._built_at = clock()
        self._last_build_s = 0.0
        self._last_error: str | None = None
        self._generation = 0  # bumped by swap: a rebuild of an older generation is dropped

    @property
    def index(self) -> AnnIndex:
        """The index searches use now."""
        return self._current

    def __len__(self) -> int:
        return len(self._current)

    def search(
        self, queries: npt.ArrayLike, k: int, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> tuple[F32, I64]:
        """`AnnIndex.search` on the current index: (Q, k) float32 scores and int64 ids, -1 padded."""
        return self._current.search(queries, k, nprobe=nprobe, ef_search=ef_search)

    def add(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Add (or replace) items now; they are also replayed onto an index being rebuilt."""
        x = as_vectors(vectors, self._current.dim)
        labels = as_ids(ids, len(x))
        with self._lock:
            self._current.add(x, labels)
            if self._journal is not None:
                self._journal.append((x.copy(), labels.copy()))
            self._adds += len(labels)
            self._added_since += len(labels)
        if self._auto_rebuild:
            self.maybe_rebuild()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove items by id (unknown ids are ignored); returns how many were live."""
        labels = np.asarray(ids, dtype=np.int64).ravel().copy()
        with self._lock:
            removed = self._current.remove(labels)
            if self._journal is not None:
                self._journal.append(labels)
            self._removes += removed
            self._removed_since += removed
        if self._auto_rebuild:
            self.maybe_rebuild()
        return removed

    def rebuild_reason(self) -> str | None:
        """Why the policy wants a rebuild now, or None."""
        with self._lock:
            return self._reason()

    def maybe_rebuild(self) -> str | None:
        """Start a rebuild if the policy asks for one and none is running; returns the reason."""
        with self._lock:
            reason = None if self._journal is not None else self._reason()
        if reason is not None:
            self.rebuild(reason=reason)
        return reason

    def rebuild(self, *, reason: str = "asked") -> bool:
        """Rebuild now (in a background thread if so configured); False if one is already running.

        A synchronous rebuild raises what the build raised; a background one logs it and records it
        in `stats().last_error`, and the old index stays in service either way.
        """
        with self._lock:
            if self._journal is not None:
                return False
            self._journal = []
            self._idle.clear()
            snapshot = None if self._source is not None else self._current.live_vectors()
            started = (self._clock(), self._generation, self._current.spec)
        logger.info("rebuilding the %s index: %s", started[2].kind, reason)
        if not self._background:
            self._run_rebuild(snapshot, *started, reraise=True)
            return True
        threading.Thread(
            target=self._run_rebuild, args=(snapshot, *started), name="index-rebuild", daemon=True
        ).start()
        return True

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Block until no rebuild is running (or timeout seconds pass); True if none is running."""
        return self._idle.wait(timeout)

    def swap(self, index: AnnIndex) -> None:
        """Put a ready index in service (e.g. one from a new bundle); counts as a fresh build.

        A rebuild running at that moment finishes but its result is dropped: it was built from
        the contents of the index being replaced.
        """
        with self._lock:
            self._current = index
            self._generation += 1
            self._size_at_build, self._built_at = len(index), self._clock()
            self._added_since = self._removed_since = 0

    def stats(self) -> IndexStats:
        with self._lock:
            return IndexStats(
                size=len(self._current),
                adds=self._adds,
                removes=self._removes,
                rebuilds=self._rebuilds,
                added_since_build=self._added_since,
                removed_since_build=self._removed_since,
                size_at_build=self._size_at_build,
                built_at=self._built_at,
                last_build_s=self._last_build_s,
                rebuilding=self._journal is not None,
                last_error=self._last_error,
            )

    def _reason(self) -> str | None:
        base = max(self._size_at_build, 1)
        age = self._clock() - self._built_at
        if self._added_since / base > self.policy.max_added_share:
            return f"added share {self._added_since / base:.3f} > {self.policy.max_added_share}"
        if self._removed_since / base > self.policy.max_removed_share:
            return f"removed share {self._removed_since / base:.3f} > {self.policy.max_removed_share}"
        if age > self.policy.max_age_s:
            return f"age {age:.0f} s > {self.policy.max_age_s:.0f} s"
        return None

    def _run_rebuild(
        self,
        snapshot: tuple[F32, I64] | None,
        started_at: float,
        generation: int,
        spec: IndexSpec,
        *,
        reraise: bool = False,
    ) -> None:
        try:
            vectors, ids = snapshot if snapshot is not None else self._source_vectors()
            wall = time.perf_counter()
            fresh = AnnIndex.build(spec, vectors, ids)
            with self._lock:
                if generation != self._generation:
                    logger.info("dropping a rebuild of an index that was swapped out meanwhile")
                    return
                assert self._journal is not None  # only this method clears it
                base, added, removed = len(fresh), 0, 0
                for change in self._journal:
                    if isinstance(change, tuple):
                        fresh.add(*change)
                        added += len(change[1])
                    else:
                        removed += fresh.remove(change)
                self._current = fresh
                self._size_at_build, self._built_at = base, started_at
                self._added_since, self._removed_since = added, removed
                self._rebuilds += 1
                self._last_build_s = time.perf_counter() - wall
                self._last_error = None
            logger.info("index rebuilt: %d items in %.2f s", len(fresh), self._last_build_s)
        except Exception as exc:  # a failed background rebuild must leave the old index serving
            logger.exception("index rebuild failed; the previous index stays in service")
            with self._lock:
                self._last_error = f"{type(exc).__name__}: {exc}"
            if reraise:
                raise
        finally:
            with self._lock:
                self._journal = None
                self._idle.set()

    def _source_vectors(self) -> tuple[F32, I64]:
        assert self._source is not None
        vectors, ids = self._source()
        x = as_vectors(vectors, self._current.dim)
        return x, as_ids(ids, len(x))
