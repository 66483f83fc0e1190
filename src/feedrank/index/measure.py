"""How good and how fast an index is: recall@k against exact results, and search latency.

Latency is measured the way serving and batch jobs see it:
- single-query: each of the first `num_single` queries searched alone (Q = 1), `repeats` times;
  each query's time is the median of its repeats, and the report gives the median and the 99th
  percentile of those per-query times, in milliseconds.
- batched: all queries in one call, `repeats` times; the median call gives queries per second.
One untimed warm-up search runs first (page faults, lazy allocations).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.index.ann import AnnIndex

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Latency:
    """Search times: single-query median and p99 in milliseconds, batched throughput in queries/s."""

    single_median_ms: float
    single_p99_ms: float
    batch_qps: float


def recall_at_k(found: I64, truth: I64) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (ids of -1 are padding and never count).

    found, truth: (Q, k) int64. A query whose exact list is empty counts as recall 1.
    """
    total = 0.0
    for got, want in zip(found, truth, strict=True):
        want = want[want >= 0]
        if len(want) == 0:
            total += 1.0
            continue
        total += len(np.intersect1d(got[got >= 0], want, assume_unique=True)) / len(want)
    return total / max(len(truth), 1)


def time_search(
    index: AnnIndex,
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
    repeats: int = 3,
    num_single: int = 100,
) -> Latency:
    """Single-query and batched latency of `index.search` with these settings (see module doc)."""
    index.search(queries[:1], k, nprobe=nprobe, ef_search=ef_search)  # warm-up
    singles = queries[:num_single]
    per_query = np.empty((repeats, len(singles)))
    batch_s = []
    for r in range(repeats):
        for i in range(len(singles)):
            start = time.perf_counter()
            index.search(singles[i : i + 1], k, nprobe=nprobe, ef_search=ef_search)
            per_query[r, i] = time.perf_counter() - start
        start = time.perf_counter()
        index.search(queries, k, nprobe=nprobe, ef_search=ef_search)
        batch_s.append(time.perf_counter() - start)
    single_ms = np.median(per_query, axis=0) * 1e3
    return Latency(
        single_median_ms=float(np.median(single_ms)),
        single_p99_ms=float(np.percentile(single_ms, 99)),
        batch_qps=len(queries) / float(np.median(batch_s)),
    )
