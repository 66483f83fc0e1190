"""Retrieval metrics over a full catalog: did the top K of each query contain its relevant items?

Inputs: `top_k` (Q, W) int item indices in rank order (W >= every K asked for; -1 pads short
lists) and the relevant items of each query as `RelevantItems` (CSR offsets + items) or a list of
Q index arrays. Items are indices in [0, num_items).

Definitions, per query q with relevant set R_q and top-K list L_q:

- Recall@K = |L_q ∩ R_q| / |R_q| (the standard definition; it cannot reach 1 when |R_q| > K).
- NDCG@K: binary gains, DCG = sum over hits at 0-based rank r < K of 1 / log2(r + 2), divided by
  the ideal DCG of min(|R_q|, K) hits at the top.
- Hit rate@K: 1 if L_q holds any relevant item.
- MRR: 1 / (1-based rank of the first relevant item within the whole list of width W), 0 if none.
- Coverage@K: distinct items appearing in any query's top K / num_items (one number, not per query).

Queries without relevant items get NaN per-query values and are left out of the means. A repeated
item within one list counts once, at its first rank (later copies act as padding).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.eval.arrays import first_occurrences, sorted_unique

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DEFAULT_KS = (10, 20, 50, 100, 500)
_CHUNK_CELLS = 1 << 22  # (rows x width) cells per chunk: bounds the temporary (Q, W) arrays


@dataclass(frozen=True)
class RelevantItems:
    """Relevant items per query in CSR form: query q owns items[offsets[q]:offsets[q + 1]]."""

    offsets: I64  # (Q + 1,) non-decreasing, offsets[0] == 0
    items: I64  # (R,) item indices

    @staticmethod
    def from_lists(lists: Sequence[npt.ArrayLike]) -> RelevantItems:
        arrays = [np.asarray(a, dtype=np.int64).ravel() for a in lists]
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return RelevantItems(offsets, items.astype(np.int64))

    @property
    def num_queries(self) -> int:
        return int(self.offsets.size - 1)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Per-query metrics (Q,) for every K (NaN where a query has no relevant item) and coverage."""

    ks: tuple[int, ...]
    recall: dict[int, F64]  # K -> (Q,)
    ndcg: dict[int, F64]  # K -> (Q,)
    hit_rate: dict[int, F64]  # K -> (Q,)
    mrr: F64  # (Q,)
    coverage: dict[int, float]  # K -> fraction of the catalog
    num_relevant: I64  # (Q,) distinct relevant items per query

    def summary(self) -> dict[str, float]:
        """Means over queries with a relevant item: recall@K, ndcg@K, hit_rate@K, mrr, coverage@K."""
        has = self.num_relevant > 0
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"recall@{k}"] = _mean(self.recall[k][has])
            out[f"ndcg@{k}"] = _mean(self.ndcg[k][has])
            out[f"hit_rate@{k}"] = _mean(self.hit_rate[k][has])
        out["mrr"] = _mean(self.mrr[has])
        out |= {f"coverage@{k}": self.coverage[k] for k in self.ks}
        out["num_queries"] = float(has.sum())
        return out


def retrieval_metrics(
    top_k: npt.ArrayLike,
    relevant: RelevantItems | Sequence[npt.ArrayLike],
    num_items: int,
    ks: Sequence[int] | None = None,
) -> RetrievalMetrics:
    """Recall, NDCG, hit rate, MRR and coverage of ranked lists against relevant sets.

    Args:
        top_k: (Q, W) int item indices, best first; -1 marks padding.
        relevant: relevant items per query: `RelevantItems` or a list of Q int arrays.
        num_items: catalog size; every item index must lie in [0, num_items).
        ks: cutoffs, each <= W. Default: those of (10, 20, 50, 100, 500) that fit within W.
    """
    top = np.asarray(top_k, dtype=np.int64)
    rel = relevant if isinstance(relevant, RelevantItems) else RelevantItems.from_lists(relevant)
    if top.ndim != 2 or top.shape[0] != rel.num_queries:
        raise ValueError(f"top_k must be (Q, W) with Q = {rel.num_queries} queries, got {top.shape}")
    width = top.shape[1]
    cutoffs = tuple(sorted(set(ks))) if ks is not None else tuple(k for k in DEFAULT_KS if k <= width)
    if not cutoffs or cutoffs[0] < 1 or cutoffs[-1] > width:
        raise ValueError(f"cutoffs {cutoffs} must be in [1, {width}] (the width of top_k)")
    for name, arr, low in (("top_k", top, -1), ("relevant items", rel.items, 0)):
        if arr.size and (arr.min() < low or arr.max() >= num_items):
            raise ValueError(f"{name} must hold item indices in [{low}, {num_items})")

    # Relevance as sorted unique (query, item) keys: membership is one searchsorted per cell.
    rel_query = np.repeat(np.arange(rel.num_queries, dtype=np.int64), np.diff(rel.offsets))
    rel_keys = sorted_unique(rel_query * num_items + rel.items)
    num_relevant = np.bincount(rel_keys // num_items, minlength=rel.num_queries).astype(np.int64)

    discount = 1.0 / np.log2(np.arange(width) + 2.0)  # (W,)
    ideal_cum = np.cumsum(discount)
    found = {k: np.zeros(top.shape[0], dtype=np.int64) for k in cutoffs}
    dcg = {k: np.zeros(top.shape[0]) for k in cutoffs}
    mrr = np.zeros(top.shape[0])
    seen = {k: np.zeros(num_items, dtype=bool) for k in cutoffs}
    step = max(1, _CHUNK_CELLS // max(width, 1))
    for lo in range(0, top.shape[0], step):
        rows = slice(lo, lo + step)
        hit = _hits(top[rows], np.arange(lo, lo + top[rows].shape[0]), rel_keys, num_items)  # (q, W)
        hits_cum = np.cumsum(hit, axis=1)
        dcg_cum = np.cumsum(hit * discount, axis=1)
        for k in cutoffs:
            found[k][rows] = hits_cum[:, k - 1]
            dcg[k][rows] = dcg_cum[:, k - 1]
            listed = top[rows, :k]
            seen[k][listed[listed >= 0]] = True
        first = np.argmax(hit, axis=1)
        mrr[rows] = np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)

    undefined = num_relevant == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = {k: np.where(undefined, np.nan, found[k] / num_relevant) for k in cutoffs}
        ndcg = {
            k: np.where(
                undefined, np.nan, dcg[k] / ideal_cum[np.clip(np.minimum(num_relevant, k) - 1, 0, None)]
            )
            for k in cutoffs
        }
    if undefined.any():
        logger.info(
            "%d of %d queries have no relevant item; left out of the means", undefined.sum(), undefined.size
        )
    return RetrievalMetrics(
        ks=cutoffs,
        recall=recall,
        ndcg=ndcg,
        hit_rate={k: np.where(undefined, np.nan, (found[k] > 0).astype(np.float64)) for k in cutoffs},
        mrr=np.where(undefined, np.nan, mrr),
        coverage={k: float(seen[k].sum() / num_items) for k in cutoffs},
        num_relevant=num_relevant,
    )


def _hits(top: I64, queries: I64, rel_keys: I64, num_items: int) -> npt.NDArray[np.bool_]:
    """(q, W) True where a listed item is relevant to its query and not a repeat within the list."""
    keys = queries[:, None] * num_items + top  # (q, W)
    if rel_keys.size == 0:
        return np.zeros(top.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
    hit = (top >= 0) & (rel_keys[idx] == keys)
    # Only hits can be harmful repeats, and hits are few: keep the first cell of each (query, item)
    # among them (the first in row-major order has the best rank).
    cells = np.flatnonzero(hit)
    first = first_occurrences(keys.ravel()[cells])
    out = np.zeros(top.size, dtype=bool)
    out[cells[first]] = True
    return out.reshape(top.shape)


def _mean(values: F64) -> float:
    return float(values.mean()) if values.size else np.nan
