"""Beyond-accuracy metrics of a set of feeds: diversity, coverage, exposure fairness, guardrails.

Inputs: `feeds`, a (Q, k) integer array of catalog rows, one feed per row in feed order, -1
padding a feed shorter than k; and per-item arrays over the catalog (`ItemArrays`). Every metric
is a plain vectorized function; `diversity_metrics` gathers them and `compare_rerankings` makes
the side-by-side table of several re-ranking configurations on the same requests.

Definitions:
- intra-list diversity (ILD): per feed, the mean over pairs of its items of 1 - cosine similarity
  of their embeddings, in [0, 2] (0: identical directions); averaged over feeds of >= 2 items.
  An all-zero embedding has similarity 0 with everything. Uses sum_{i<j} u_i·u_j =
  (|sum u|^2 - sum |u|^2) / 2 over unit vectors u, O(Q·k·d).
- distinct publishers: per feed, the number of different publishers; averaged over non-empty feeds.
- catalog coverage: distinct items shown in any feed / catalog size.
- publisher exposure Gini: the Gini coefficient of the impressions (feed slots) each publisher of
  the catalog gets, publishers with none included: G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)),
  0 when every publisher gets the same, (n - 1) / n when one gets everything.
- clickbait share: flagged items / filled slots, over all feeds.
- mean age: the mean age in hours of the shown items at their request's time, over slots whose
  publication time is known (NO_TIME is unknown); an item published after the request counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.data.features import US_PER_HOUR
from feedrank.data.timeline import NO_TIME
from feedrank.eval.arrays import sorted_unique

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
PAD = -1


@dataclass(frozen=True)
class ItemArrays:
    """Per-item arrays over the catalog, row-aligned (I,); metrics that need a missing one are skipped."""

    publisher: I64  # (I,) publisher bucket
    embeddings: npt.NDArray[np.float32] | None = None  # (I, d)
    published_us: I64 | None = None  # (I,) microseconds since the epoch, NO_TIME when unknown
    clickbait: npt.NDArray[np.bool_] | None = None  # (I,) True for items flagged as clickbait

    @property
    def num_items(self) -> int:
        return int(np.asarray(self.publisher).shape[0])


def intra_list_diversity(feeds: npt.ArrayLike, embeddings: npt.ArrayLike) -> F64:
    """(Q,) mean pairwise 1 - cosine similarity within each feed; NaN for feeds of fewer than 2 items."""
    emb = np.asarray(embeddings)
    f, filled = _check_feeds(feeds, emb.shape[0])
    pair_cos = np.zeros(f.shape[0])  # (Q,) sum over pairs i < j of u_i·u_j
    # Feeds in chunks of ~8 MB of gathered (rows, k, d) float64 vectors, whatever Q and the catalog.
    step = max(1, 1_000_000 // max(1, f.shape[1] * emb.shape[1]))
    for lo in range(0, f.shape[0], step):
        rows, mask = f[lo : lo + step], filled[lo : lo + step]
        e = emb[np.where(mask, rows, 0)].astype(np.float64) * mask[:, :, None]  # (q, k, d)
        norms = np.linalg.norm(e, axis=2, keepdims=True)
        u = e / np.maximum(norms, np.finfo(np.float64).tiny)  # zero rows (padding too) stay zero
        total = u.sum(axis=1)  # (q, d)
        pair_cos[lo : lo + step] = ((total * total).sum(axis=1) - (u * u).sum(axis=(1, 2))) / 2.0
    n = filled.sum(axis=1)
    pairs = n * (n - 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ild = 1.0 - pair_cos / pairs
    # Rounding can stray just outside the exact range [0, 2].
    return np.where(n >= 2, np.clip(ild, 0.0, 2.0), np.nan)


def distinct_publishers(feeds: npt.ArrayLike, publisher: npt.ArrayLike) -> I64:
    """(Q,) number of different publishers in each feed (0 for an empty feed)."""
    pub = np.asarray(publisher, dtype=np.int64)
    f, filled = _check_feeds(feeds, pub.size)
    p = np.where(filled, pub[np.where(filled, f, 0)], np.iinfo(np.int64).max)  # padding sorts last
    p = np.sort(p, axis=1)
    new = np.ones(p.shape, dtype=bool)
    new[:, 1:] = p[:, 1:] != p[:, :-1]
    count: I64 = (new & (p != np.iinfo(np.int64).max)).sum(axis=1).astype(np.int64)
    return count


def catalog_coverage(feeds: npt.ArrayLike, num_items: int) -> float:
    """Distinct items shown in any feed / `num_items` (the catalog size), in [0, 1]."""
    f, filled = _check_feeds(feeds, num_items)
    return float(sorted_unique(f[filled]).size / num_items) if num_items > 0 else np.nan


def gini(values: npt.ArrayLike) -> float:
    """Gini coefficient of (n,) non-negative values: 0 all equal, (n - 1) / n one holds all; NaN if sum 0.

    Sorted ascending x_(1) <= ... <= x_(n): G = 2 sum_i i·x_(i) / (n sum x) - (n + 1) / n, which
    equals the mean absolute difference over all ordered pairs divided by twice the mean.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if (x < 0).any():
        raise ValueError("gini needs non-negative values")
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return np.nan
    g = 2.0 * float(np.dot(np.arange(1, n + 1), x)) / (n * total) - (n + 1) / n
    return float(np.clip(g, 0.0, (n - 1) / n))


def publisher_exposure(feeds: npt.ArrayLike, publisher: npt.ArrayLike) -> F64:
    """(n,) feed slots given to each publisher of the catalog (its distinct buckets, ascending)."""
    pub = np.asarray(publisher, dtype=np.int64)
    f, filled = _check_feeds(feeds, pub.size)
    publishers = sorted_unique(pub)
    shown = np.searchsorted(publishers, pub[f[filled]])
    return np.bincount(shown, minlength=publishers.size).astype(np.float64)


def publisher_exposure_gini(feeds: npt.ArrayLike, publisher: npt.ArrayLike) -> float:
    """Gini of the impressions per publisher over every publisher of the catalog (see `gini`)."""
    return gini(publisher_exposure(feeds, publisher))


def clickbait_share(feeds: npt.ArrayLike, clickbait: npt.ArrayLike) -> float:
    """Flagged items / filled slots over all feeds, in [0, 1]; NaN when every feed is empty."""
    flags = np.asarray(clickbait, dtype=bool)
    f, filled = _check_feeds(feeds, flags.size)
    return float(flags[f[filled]].mean()) if filled.any() else np.nan


def mean_age_h(feeds: npt.ArrayLike, published_us: npt.ArrayLike, request_us: npt.ArrayLike) -> float:
    """Mean age in hours of the shown items with a known publication time; NaN when none is known.

    Args:
        request_us: (Q,) time of each feed's request, or one time for all, microseconds.
    """
    pub = np.asarray(published_us, dtype=np.int64)
    f, filled = _check_feeds(feeds, pub.size)
    now = np.broadcast_to(np.asarray(request_us, dtype=np.int64).reshape(-1, 1), f.shape)
    item_pub = pub[np.where(filled, f, 0)]
    known = filled & (item_pub != NO_TIME)
    if not known.any():
        return np.nan
    age_us = np.maximum(now[known] - item_pub[known], 0)
    return float(age_us.astype(np.float64).mean() / US_PER_HOUR)


def diversity_metrics(
    feeds: npt.ArrayLike, items: ItemArrays, request_us: npt.ArrayLike | None = None
) -> dict[str, float]:
    """Every metric the item arrays allow, averaged over feeds (see the module docstring).

    Keys: num_feeds, mean_feed_length, distinct_publishers, catalog_coverage, publisher_gini, and
    with embeddings intra_list_diversity, with clickbait flags clickbait_share, with publication
    times and `request_us` ((Q,) or one time, microseconds) mean_age_h.
    """
    f, filled = _check_feeds(feeds, items.num_items)
    lengths = filled.sum(axis=1)
    out = {
        "num_feeds": float(f.shape[0]),
        "mean_feed_length": _mean(lengths.astype(np.float64)),
        "distinct_publishers": _mean(distinct_publishers(f, items.publisher)[lengths > 0].astype(np.float64)),
        "catalog_coverage": catalog_coverage(f, items.num_items),
        "publisher_gini": publisher_exposure_gini(f, items.publisher),
    }
    if items.embeddings is not None:
        ild = intra_list_diversity(f, items.embeddings)
        out["intra_list_diversity"] = _mean(ild[~np.isnan(ild)])
    if items.clickbait is not None:
        out["clickbait_share"] = clickbait_share(f, items.clickbait)
    if items.published_us is not None and request_us is not None:
        out["mean_age_h"] = mean_age_h(f, items.published_us, request_us)
    return out


def compare_rerankings(
    feeds_by_config: dict[str, npt.ArrayLike], items: ItemArrays, request_us: npt.ArrayLike | None = None
) -> dict[str, dict[str, float]]:
    """`diversity_metrics` of each configuration's feeds, by name, for a side-by-side table.

    Args:
        feeds_by_config: name → (Q, k) feeds; every configuration should answer the same Q
            requests in the same order, so that `request_us` (Q,) lines up and the rows compare.
    """
    shapes = {name: np.shape(f)[0] for name, f in feeds_by_config.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"every configuration must answer the same requests; feeds per config: {shapes}")
    return {name: diversity_metrics(f, items, request_us) for name, f in feeds_by_config.items()}


def _check_feeds(feeds: npt.ArrayLike, num_items: int) -> tuple[I64, npt.NDArray[np.bool_]]:
    """The (Q, k) feeds as int64 and the (Q, k) mask of filled slots; rows must be in [-1, num_items)."""
    f = np.asarray(feeds)
    if f.ndim != 2 or not (np.issubdtype(f.dtype, np.integer) or f.size == 0):
        raise ValueError(f"feeds must be a 2-d integer array (Q, k), got shape {f.shape} dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < PAD or f.max() >= num_items):
        raise ValueError(f"feed rows must be catalog rows in [0, {num_items}) or {PAD} for padding")
    return f, f != PAD


def _mean(values: F64) -> float:
    return float(values.mean()) if values.size else np.nan
