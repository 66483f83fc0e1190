"""What index to build: `IndexSpec`, a frozen dataclass (kind + parameters), and the thread setting.

    IndexSpec("hnsw", hnsw_m=32, ef_construction=80, ef_search=64)
    IndexSpec("ivf", nlist=1024, nprobe=16)

Every index scores by inner product (user · item): item vectors are not normalised (content plus a
freshness term), so cosine would rank differently from the model. Search-time parameters (`nprobe`,
`ef_search`) are defaults; `AnnIndex.search` takes per-call overrides, which is how `tune` sweeps
them without rebuilding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss

from feedrank.errors import ConfigError

Kind = Literal["flat", "ivf", "hnsw"]
KINDS: tuple[Kind, ...] = ("flat", "ivf", "hnsw")

# k-means needs this many training points per centroid; faiss warns below it. `build` caps nlist so
# that every list gets at least this many, and falls back to flat below MIN_IVF_LISTS lists.
MIN_POINTS_PER_LIST = 39
MIN_IVF_LISTS = 2


@dataclass(frozen=True)
class IndexSpec:
    """Kind and parameters of an ANN index; the unused parameters of other kinds are ignored.

    - flat: exact search (IndexFlatIP), O(N·d) per query.
    - ivf: IndexIVFFlat over an IndexFlatIP quantizer with `nlist` k-means lists; a query scans
      `nprobe` lists. k-means trains on at most `train_points_per_list * nlist` sampled vectors.
    - hnsw: IndexHNSWFlat with `hnsw_m` neighbours per node, build beam `ef_construction`, search
      beam `ef_search` (raised to at least k).
    """

    kind: Kind = "flat"
    nlist: int = 1024
    nprobe: int = 16
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    train_points_per_list: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"index kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"index {name}: expected a positive integer, got {value!r}")
        if self.train_points_per_list < MIN_POINTS_PER_LIST:
            raise ConfigError(
                f"index train_points_per_list: expected at least {MIN_POINTS_PER_LIST}, "
                f"got {self.train_points_per_list!r}"
            )

    def describe(self) -> str:
        """The parameters that matter for this kind, e.g. 'ivf nlist=1024 nprobe=16'."""
        if self.kind == "ivf":
            return f"ivf nlist={self.nlist} nprobe={self.nprobe}"
        if self.kind == "hnsw":
            return f"hnsw M={self.hnsw_m} efC={self.ef_construction} efSearch={self.ef_search}"
        return "flat"


def set_num_threads(num_threads: int) -> None:
    """Set the OpenMP threads faiss uses for builds and batched searches (process-wide).

    A single query runs on one thread whatever this says (faiss parallelises over queries), so a
    server that answers many requests in parallel threads loses nothing by setting 1, and avoids
    oversubscribing the cores; offline builds and batched searches want all cores.
    """
    if num_threads < 1:
        raise ConfigError(f"index threads: expected a positive integer, got {num_threads!r}")
    faiss.omp_set_num_threads(num_threads)


def num_threads() -> int:
    """The OpenMP threads faiss will use."""
    return int(faiss.omp_get_max_threads())
