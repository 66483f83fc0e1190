"""Seeded synthetic embeddings with exact ground truth, for index tests and benchmarks.

The idea of faiss's contrib `SyntheticDataset`, shaped like feedrank's item vectors: items sit
around topic centres (a news catalog is clustered by topic), are not normalised (a per-item norm
spread plus a shared freshness direction scaled by each item's freshness), and users are mixtures of
one to three topics. `exact_top_k` is the brute-force numpy answer the indexes are measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SyntheticEmbeddings:
    """items (N, d) and queries (Q, d) float32; item i's id is its row i."""

    items: F32
    queries: F32


def clustered_embeddings(
    num_items: int,
    num_queries: int,
    dim: int = 128,
    *,
    num_clusters: int | None = None,
    noise: float = 0.8,
    seed: int = 0,
) -> SyntheticEmbeddings:
    """Clustered, unnormalised item vectors and user vectors (see the module docstring).

    num_clusters defaults to max(8, sqrt(N) / 4) (250 topics for a million items): broad topics
    that an IVF with the usual nlist ~ sqrt(N) has to split, rather than one list per topic, which
    would flatter it. `noise` is the norm of an item's offset from its centre relative to the
    centre's norm (about 1): 0.8 makes clusters overlap in score, so the top 100 of a user is not
    simply "the nearest cluster".
    """
    rng = np.random.default_rng(seed)
    k = num_clusters or max(8, round(np.sqrt(num_items) / 4))
    centres = rng.standard_normal((k, dim), dtype=np.float32) / np.sqrt(dim)
    fresh_dir = rng.standard_normal(dim, dtype=np.float32) / np.sqrt(dim)
    items = np.empty((num_items, dim), np.float32)
    chunk = 1 << 18  # bounds the float32 temporaries when N is a million
    for lo in range(0, num_items, chunk):
        n = min(chunk, num_items - lo)
        x = centres[rng.integers(0, k, n)]
        x += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        x *= rng.uniform(0.7, 1.3, (n, 1)).astype(np.float32)  # content norm spread
        x += rng.uniform(0.0, 0.5, (n, 1)).astype(np.float32) * fresh_dir  # freshness term
        items[lo : lo + n] = x
    weights = rng.dirichlet(np.ones(3), num_queries) * (rng.random((num_queries, 3)) < 0.7)
    weights[:, 0] += 1e-3  # every user has at least one topic
    topics = rng.integers(0, k, (num_queries, 3))
    queries = np.einsum("qt,qtd->qd", weights, centres[topics]).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries += rng.standard_normal((num_queries, dim), dtype=np.float32) * np.float32(0.3 / np.sqrt(dim))
    queries += np.float32(0.2) * fresh_dir  # users like fresh items a little
    return SyntheticEmbeddings(items, np.ascontiguousarray(queries, dtype=np.float32))


def exact_top_k(items: F32, queries: F32, k: int, *, chunk_cells: int = 1 << 24) -> tuple[F32, I64]:
    """Brute-force top-k by inner product: scores (Q, k) descending and row ids (Q, k), -1 padded.

    Scores are computed in float64 so that the reference does not share float32 rounding with
    the index under test. Works through the queries in chunks of about `chunk_cells` scores.
    """
    n = len(items)
    kk = min(k, n)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    ids = np.full((len(queries), k), -1, np.int64)
    step = max(1, chunk_cells // max(n, 1))
    items64 = items.astype(np.float64)
    for lo in range(0, len(queries), step):
        s = queries[lo : lo + step].astype(np.float64) @ items64.T  # (q, N)
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(s), 1))
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        ids[lo : lo + step, :kk] = np.take_along_axis(top, order, axis=1)
        scores[lo : lo + step, :kk] = np.take_along_axis(top_s, order, axis=1)
    return scores, ids
