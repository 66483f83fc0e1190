"""`AnnIndex`: one typed interface over faiss flat, IVF and HNSW inner-product indexes.

    index = AnnIndex.build(IndexSpec("hnsw"), vectors, ids)   # vectors (N, d) float32, ids (N,) int64
    scores, found = index.search(users, k=100)               # (Q, k) float32, (Q, k) int64, -1 padded
    index.add(fresh_vectors, fresh_ids)                       # an id already present is replaced
    index.remove(retired_ids)
    index.save(path); AnnIndex.load(path)

Inside faiss every vector is labelled by its position (the order it was added); `ids` maps
positions to catalog ids. Removal depends on what faiss can do cheaply:

- flat: `remove_ids` compacts the array (O(N) memmove); positions shift and `ids` shifts with them.
- ivf: `remove_ids` drops entries from their lists; positions are never reused.
- hnsw: a graph node cannot be unlinked, so removal sets a tombstone (`alive[pos] = False`). A search
  filters tombstones inside the graph walk with a faiss IDSelector (so the k results are always
  live items, not a post-filtered short list) and widens efSearch by ntotal / live, because dead
  nodes still occupy the beam. Once more than half the graph is dead, and for any row the walk
  still left short, the search scans the HNSW's flat storage exactly instead. The dead vectors
  stay in memory until a rebuild (`ManagedIndex` rebuilds when the removed share passes its policy).

Thread safety: searches run in parallel with each other; `add` and `remove` wait for running
searches and block new ones (a readers-writer lock), because faiss indexes are not safe to read
while they change.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Self

import faiss
import numpy as np
import numpy.typing as npt

from feedrank.errors import DataError
from feedrank.index import store
from feedrank.index.build import new_faiss_index
from feedrank.index.rwlock import ReadWriteLock
from feedrank.index.spec import IndexSpec

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class AnnIndex:
    """Inner-product top-k search over item vectors labelled with int64 catalog ids.

    Build with `AnnIndex.build` or `AnnIndex.load`; the constructor only assembles the parts.
    `spec` is what was asked for, `built` what was built (see `build.effective_spec`).
    """

    def __init__(
        self, spec: IndexSpec, built: IndexSpec, dim: int, faiss_index: Any, ids: I64, alive: Bools
    ) -> None:
        self.spec = spec
        self.built = built
        self.dim = dim
        self._index = faiss_index
        self._ids = ids  # (P,) catalog id at each faiss position
        self._alive = alive  # (P,) False where removed (only ever False for ivf and hnsw)
        self._num_alive = int(alive.sum())
        # IDSelectorBitmap over `alive` while hnsw tombstones exist; replaced only under the write lock
        self._selector: Any = None
        self._refresh_selector()
        self._lock = ReadWriteLock()

    @classmethod
    def build(cls, spec: IndexSpec, vectors: npt.ArrayLike, ids: npt.ArrayLike | None = None) -> Self:
        """Build an index over vectors (N, d) float32 labelled ids (N,) int64 (default 0..N-1)."""
        x = as_vectors(vectors)
        labels = np.arange(len(x), dtype=np.int64) if ids is None else as_ids(ids, len(x))
        faiss_index, built = new_faiss_index(spec, x.shape[1], x)
        index = cls(spec, built, x.shape[1], faiss_index, np.zeros(0, np.int64), np.zeros(0, np.bool_))
        index._append(x, labels)
        return index

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read an index written by `save`; raises SourceNotFoundError or DataError naming the file."""
        parts = store.read(path)
        return cls(parts.spec, parts.built, parts.dim, parts.faiss_index, parts.ids, parts.alive)

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the index to directory `path` (faiss file, id arrays, JSON metadata), atomically."""
        with self._lock.read():
            store.write(path, self.spec, self.built, self.dim, self._index, self._ids, self._alive, overwrite)

    def __len__(self) -> int:
        """Number of live (searchable) items."""
        return self._num_alive

    @property
    def num_tombstones(self) -> int:
        """Removed items whose vectors still occupy the index (hnsw only)."""
        return int(self._index.ntotal) - self._num_alive

    def ids(self) -> I64:
        """(N,) catalog ids of the live items, in insertion order."""
        with self._lock.read():
            return self._ids[self._alive].copy()

    def add(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Add vectors (n, d) labelled ids (n,); an id already in the index is replaced (upsert)."""
        x = as_vectors(vectors, self.dim)
        labels = as_ids(ids, len(x))
        with self._lock.write():
            self._remove_positions(self._positions_of(labels))
            self._append(x, labels)
            self._refresh_selector()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove items by catalog id; unknown ids are ignored. Returns how many were removed."""
        labels = np.asarray(ids, dtype=np.int64).ravel()
        with self._lock.write():
            positions = self._positions_of(labels)
            self._remove_positions(positions)
            self._refresh_selector()
        return len(positions)

    def search(
        self, queries: npt.ArrayLike, k: int, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> tuple[F32, I64]:
        """Top-k items by inner product for each query.

        queries: (Q, d) float32 (any float dtype is converted). nprobe / ef_search override the
        built spec for this call (ivf / hnsw). Returns scores (Q, k) float32, descending, and ids
        (Q, k) int64; when fewer than k items exist, rows are padded with id -1 and score -inf.
        """
        x = as_vectors(queries, self.dim, what="queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"search k: expected a positive integer, got {k!r}")
        k = int(k)
        with self._lock.read():
            if self._num_alive == 0:
                return np.full((len(x), k), -np.inf, np.float32), np.full((len(x), k), -1, np.int64)
            if self.built.kind == "hnsw" and 2 * self._num_alive < self._index.ntotal:
                scores, positions = self._exact_hnsw(x, k)  # a mostly dead graph: scanning is cheaper
            else:
                scores, positions = self._index.search(x, k, params=self._params(k, nprobe, ef_search))
            if self.built.kind == "hnsw":
                self._fill_short_rows(x, k, scores, positions)
            found = positions >= 0
            ids = np.where(found, self._ids[np.where(found, positions, 0)], -1).astype(np.int64)
            return np.where(found, scores, -np.inf).astype(np.float32), ids

    def live_vectors(self) -> tuple[F32, I64]:
        """(N, d) float32 vectors and (N,) ids of the live items, for a rebuild."""
        with self._lock.read():
            if self.built.kind == "ivf":
                vectors, positions = _ivf_contents(self._index, self.dim)
                return vectors, self._ids[positions]
            vectors = np.asarray(self._index.reconstruct_n(0, self._index.ntotal), dtype=np.float32)
            return np.ascontiguousarray(vectors[self._alive]), self._ids[self._alive].copy()

    # -- internals; callers hold the lock -------------------------------------------------------

    def _append(self, x: F32, labels: I64) -> None:
        start = len(self._ids)
        if self.built.kind == "ivf":  # explicit labels: ntotal shrinks on removal, positions must not
            self._index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
        else:
            self._index.add(x)
        self._ids = np.concatenate([self._ids, labels])
        self._alive = np.concatenate([self._alive, np.ones(len(x), np.bool_)])
        self._num_alive += len(x)

    def _positions_of(self, labels: I64) -> I64:
        """Positions of the live items with these catalog ids (one vectorised pass over the map)."""
        if len(labels) == 0 or self._num_alive == 0:
            return np.zeros(0, np.int64)
        return np.flatnonzero(np.isin(self._ids, labels) & self._alive).astype(np.int64)

    def _remove_positions(self, positions: I64) -> None:
        if len(positions) == 0:
            return
        if self.built.kind == "flat":
            self._index.remove_ids(positions)
            keep = np.ones(len(self._ids), np.bool_)
            keep[positions] = False
            self._ids, self._alive = self._ids[keep], self._alive[keep]
        else:
            self._alive[positions] = False
            if self.built.kind == "ivf":
                self._index.remove_ids(positions)
        self._num_alive -= len(positions)

    def _refresh_selector(self) -> None:
        """The hnsw tombstone filter, rebuilt after every change (a bit per position, new ones too)."""
        dead = self._num_alive < len(self._alive)
        self._selector = _alive_selector(self._alive) if self.built.kind == "hnsw" and dead else None

    def _params(self, k: int, nprobe: int | None, ef_search: int | None) -> Any:
        if self.built.kind == "ivf":
            ivf_params = faiss.SearchParametersIVF()
            ivf_params.nprobe = min(nprobe or self.built.nprobe, self.built.nlist)
            return ivf_params
        if self.built.kind != "hnsw":
            return None
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in faiss's partial stubs
        ntotal = int(self._index.ntotal)
        params.efSearch = math.ceil(max(ef_search or self.built.ef_search, k) * ntotal / self._num_alive)
        params.sel = self._selector  # None: no tombstones, no filtering
        return params

    def _fill_short_rows(self, x: F32, k: int, scores: F32, positions: I64) -> None:
        """Answer rows the graph walk left short of min(k, live) exactly, from the flat storage."""
        short = np.flatnonzero((positions >= 0).sum(axis=1) < min(k, self._num_alive))
        if len(short):
            scores[short], positions[short] = self._exact_hnsw(x[short], k)

    def _exact_hnsw(self, x: F32, k: int) -> tuple[F32, I64]:
        """Exact top-k over the live vectors in the HNSW's flat storage."""
        params = faiss.SearchParameters()
        params.sel = self._selector
        scores, positions = faiss.downcast_index(self._index.storage).search(x, k, params=params)
        return scores, positions


def as_vectors(vectors: npt.ArrayLike, dim: int | None = None, *, what: str = "vectors") -> F32:
    """A C-contiguous float32 (N, d) copy-if-needed of `vectors`; DataError on a wrong shape or NaN."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[1] == 0:
        want = f"(N, {dim})" if dim is not None else "(N, d)"
        raise DataError(f"{what}: expected a {want} array, got shape {x.shape}")
    if what == "vectors" and not np.isfinite(x).all():
        raise DataError(f"{what}: {int((~np.isfinite(x)).any(axis=1).sum())} rows hold NaN or infinity")
    return x


def as_ids(ids: npt.ArrayLike, num_vectors: int) -> I64:
    """(N,) int64 ids, one per vector, non-negative (-1 pads results) and distinct."""
    labels = np.asarray(ids)
    if labels.ndim != 1 or len(labels) != num_vectors:
        raise DataError(f"ids: expected {num_vectors} ids in a 1-D array, got shape {labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"ids: expected integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise DataError(f"ids: must be >= 0 (-1 marks padding), got {int(labels.min())}")
    if len(np.unique(labels)) != len(labels):
        raise DataError("ids: the same id appears more than once in one batch")
    return labels


def _alive_selector(alive: Bools) -> Any:
    """A faiss IDSelectorBitmap that keeps positions where `alive` is True (a bit per position)."""
    # faiss's stub lists (n, bitmap); the python wrapper takes the array alone and keeps it alive
    return faiss.IDSelectorBitmap(np.packbits(alive, bitorder="little"))  # type: ignore[call-arg, arg-type]


def _ivf_contents(index: Any, dim: int) -> tuple[F32, I64]:
    """All (vectors, positions) stored in an IndexIVFFlat's inverted lists, by position."""
    from faiss.contrib.inspect_tools import get_invlist

    vectors, positions = [], []
    for list_no in range(index.nlist):
        list_ids, codes = get_invlist(index.invlists, list_no)  # type: ignore[no-untyped-call]
        positions.append(np.asarray(list_ids, np.int64))
        vectors.append(np.asarray(codes).view(np.float32).reshape(-1, dim))  # IVFFlat codes = raw floats
    order = np.argsort(np.concatenate(positions), kind="stable")
    return np.ascontiguousarray(np.concatenate(vectors)[order]), np.concatenate(positions)[order]
