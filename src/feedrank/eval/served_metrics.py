"""Measures of served feeds: overlap between feeds, catalog coverage, means with standard errors.

Pure functions over lists of item ids; `eval/served.py` applies them to the feeds the serving path
returned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two feeds as sets; two empty feeds are identical (1.0)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def disjoint_pairs(num: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """num // 2 pairs of distinct positions that share no position (independent pairs)."""
    order = rng.permutation(num)
    return [(int(order[i]), int(order[i + 1])) for i in range(0, num - 1, 2)]


def pair_jaccards(feeds: Sequence[Sequence[str]], pairs: Sequence[tuple[int, int]]) -> F64:
    """(P,) Jaccard of each pair of feeds."""
    return np.array([jaccard(feeds[i], feeds[j]) for i, j in pairs], dtype=np.float64)


def all_pairs_jaccard(feeds: Sequence[Sequence[str]]) -> float:
    """Mean Jaccard over every pair of distinct feeds (NaN with fewer than two feeds)."""
    n = len(feeds)
    if n < 2:
        return float("nan")
    total = sum(jaccard(feeds[i], feeds[j]) for i in range(n) for j in range(i + 1, n))
    return total / (n * (n - 1) / 2)


def spread(feeds: Sequence[Sequence[str]]) -> dict[str, float]:
    """How many distinct items the feeds hold, and the share of feeds holding the most common one."""
    counts = Counter(item for feed in feeds for item in set(feed))
    top = counts.most_common(1)[0][1] if counts else 0
    return {
        "distinct_items": float(len(counts)),
        "top_item_feed_share": top / len(feeds) if feeds else float("nan"),
    }


def mean_se(values: npt.ArrayLike) -> tuple[float, float]:
    """Mean and standard error over the finite values (NaN when there are none / fewer than two)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(x.mean()), se


def ratio_se(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> tuple[float, float]:
    """mean(numerator) / mean(denominator) over paired rows, with its delta-method standard error.

    var(R) ≈ (var(Y) − 2R·cov(Y, X) + R²·var(X)) / (n · mean(X)²) for R = mean(Y) / mean(X).
    """
    y = np.asarray(numerator, dtype=np.float64)
    x = np.asarray(denominator, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(x)
    y, x = y[ok], x[ok]
    if y.size == 0 or x.mean() == 0:
        return float("nan"), float("nan")
    r = float(y.mean() / x.mean())
    if y.size < 2:
        return r, float("nan")
    cov = np.cov(y, x, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (y.size * x.mean() ** 2)
    return r, float(np.sqrt(max(var, 0.0)))


def paired_share(variant: npt.ArrayLike, base: npt.ArrayLike, oracle: npt.ArrayLike) -> tuple[float, float]:
    """share(variant) - share(base) over the same requests and oracle denominator, and its
    standard error: (mean(variant - base) / mean(oracle)) by the delta method, request by request."""
    x = np.asarray(variant, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    o = np.asarray(oracle, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(o)
    x, o = x[ok], o[ok]
    if x.size < 2 or o.mean() == 0:
        return float("nan"), float("nan")
    r = float(x.mean() / o.mean())
    se = float((x - r * o).std(ddof=1) / (np.sqrt(x.size) * o.mean()))
    return r, se


def summarize(per_request: dict[str, F64], mask: npt.NDArray[np.bool_]) -> dict[str, float]:
    """metric → mean and `<metric>_se` over the masked requests (finite values only), plus `requests`."""
    out: dict[str, float] = {"requests": float(mask.sum())}
    for name, values in per_request.items():
        out[name], out[f"{name}_se"] = mean_se(values[mask])
    return out


def request_metrics(
    known: list[str], new: list[str], target: str | None, anonymous: list[str] | None = None
) -> dict[str, float]:
    rank = known.index(target) + 1 if target is not None and target in known else 0
    nan = float("nan")
    out = {
        "hr@10": nan if target is None else float(0 < rank <= 10),
        "hr@20": nan if target is None else float(0 < rank <= 20),
        "ndcg@10": nan if target is None else (1.0 / np.log2(rank + 1.0) if 0 < rank <= 10 else 0.0),
        "mrr@20": nan if target is None else (1.0 / rank if 0 < rank <= 20 else 0.0),
        "new_user_overlap@10": jaccard(known[:10], new[:10]) if new else nan,
        "anonymous_overlap@10": jaccard(known[:10], anonymous[:10]) if anonymous else nan,
        "feed_length": float(len(known)),
    }
    return out
