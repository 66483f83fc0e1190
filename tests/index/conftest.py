"""Seeded clustered vectors with their brute-force top-100, shared by the index tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.index.spec import set_num_threads
from feedrank.index.synthetic import clustered_embeddings, exact_top_k

K = 100


@dataclass(frozen=True)
class Catalog:
    """items (N, d), queries (Q, d), and the exact top-K of each query: scores and row ids."""

    items: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    true_scores: npt.NDArray[np.float32]
    true_ids: npt.NDArray[np.int64]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    data = clustered_embeddings(4000, 40, 32, num_clusters=16, seed=7)
    scores, ids = exact_top_k(data.items, data.queries, K)
    return Catalog(data.items, data.queries, scores, ids)


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread() -> None:
    # Like torch in tests/conftest.py: on a small shared machine, OpenMP threads that spin-wait for
    # each other while other processes hold the cores run many times slower than one thread.
    set_num_threads(1)
