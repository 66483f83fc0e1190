"""Turn an `IndexSpec` and the vectors of a catalog into an empty-of-surprises faiss index.

Small catalogs: k-means needs at least MIN_POINTS_PER_LIST (39) training vectors per list, so an
IVF spec built on N vectors uses nlist = min(spec.nlist, N // 39) lists; below MIN_IVF_LISTS lists
(N < 78) it becomes a flat index, which on so few vectors is exact and at least as fast. The spec
actually built is returned beside the index, so callers and saved metadata say what happened. A
`ManagedIndex` rebuild uses the requested spec again, so an index that started small grows into
the IVF it asked for.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from feedrank.index.spec import MIN_IVF_LISTS, MIN_POINTS_PER_LIST, IndexSpec

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def effective_spec(spec: IndexSpec, num_vectors: int) -> IndexSpec:
    """The spec that building on `num_vectors` vectors yields (IVF capped or turned flat)."""
    if spec.kind != "ivf":
        return spec
    nlist = min(spec.nlist, num_vectors // MIN_POINTS_PER_LIST)
    if nlist < MIN_IVF_LISTS:
        logger.info("%d vectors are too few to train IVF lists: building a flat index", num_vectors)
        return dataclasses.replace(spec, kind="flat")
    if nlist < spec.nlist:
        logger.info("%d vectors train at most %d IVF lists (asked %d)", num_vectors, nlist, spec.nlist)
    return dataclasses.replace(spec, nlist=nlist, nprobe=min(spec.nprobe, nlist))


def new_faiss_index(spec: IndexSpec, dim: int, train: F32) -> tuple[Any, IndexSpec]:
    """An empty, trained faiss index for `spec` and the spec actually built.

    train: (N, dim) float32, the vectors the index will hold (IVF samples its k-means set from them).
    Labels are added by the caller (`add_with_ids` for IVF; positions for flat and HNSW).
    """
    built = effective_spec(spec, len(train))
    if built.kind == "flat":
        return faiss.IndexFlatIP(dim), built
    if built.kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, built.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = built.ef_construction
        hnsw.hnsw.efSearch = built.ef_search
        return hnsw, built
    quantizer = faiss.IndexFlatIP(dim)
    # faiss's python layer keeps the quantizer alive as long as the IVF index refers to it
    index = faiss.IndexIVFFlat(quantizer, dim, built.nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = built.seed
    index.nprobe = built.nprobe
    index.train(_training_sample(train, built))
    return index, built


def _training_sample(vectors: F32, spec: IndexSpec) -> F32:
    """At most train_points_per_list * nlist vectors: k-means cost grows with N·nlist·d per step,
    and a few dozen points per list already place the centroids well."""
    size = spec.train_points_per_list * spec.nlist
    if len(vectors) <= size:
        return vectors
    rows = np.sort(np.random.default_rng(spec.seed).choice(len(vectors), size=size, replace=False))
    return np.ascontiguousarray(vectors[rows])
