"""Ranking metrics within impressions: how well scores order the items of each shown slate.

Inputs are flat, one row per impression: `scores` (N,), `labels` (N,) and `groups` (N,), the
request (slate) each row belongs to, as integers (any sortable dtype works).

Definitions (each result is a number in [0, 1]):

- A row is *positive* when its label is > 0. Labels may be graded gains (e.g. 1 click, 5 share):
  nDCG uses them as linear gains, exactly like `sklearn.metrics.ndcg_score`; every other metric
  only looks at positive / negative. Negative labels are rejected.
- AUC: over all rows, P(score of a positive > score of a negative), ties counting 1/2 (the
  Mann-Whitney statistic; equal to `sklearn.metrics.roc_auc_score`).
- GAUC: the AUC of each group that holds both classes, averaged with weights = the group's size
  (number of impressions). Groups with one class only have no AUC and are left out.
- MRR, nDCG@k and precision@k are computed per group and averaged with equal weight per group,
  over the groups with at least one positive (with none, there is nothing to rank first: the
  metric is undefined, and counting it as 0 or 1 would reward or punish slates the model did not
  choose). Precision@k divides by min(k, group size), so a perfect ranking of an all-positive
  small slate scores 1.
- Ties: every metric is its expectation over a uniformly random order of tied scores: ties count
  1/2 in AUC, nDCG is tie-averaged (sklearn's `ignore_ties=False`), and MRR and precision@k are
  the exact expected values. So no result depends on the order of the input rows, and a scorer
  that ties everything (a popularity baseline on fresh items) scores like a random one.

Everything is vectorized: rows are sorted once by (group, -score) with `np.lexsort` (plus once by
(group, -label) for nDCG's ideal order), and groups and tie blocks are contiguous segments reduced
with `np.add.reduceat`; there is no Python loop over groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DEFAULT_KS = (5, 10)


@dataclass(frozen=True)
class GroupMetrics:
    """Per-group metrics, row-aligned with `group_ids` (G,); NaN where a metric is undefined.

    These are the units a bootstrap resamples (whole requests), and `summary` averages them.
    """

    group_ids: np.ndarray  # (G,) sorted distinct group ids
    num_items: I64  # (G,) impressions per group
    num_positive: I64  # (G,) rows with label > 0
    auc: F64  # (G,) NaN unless the group has both classes
    mrr: F64  # (G,) NaN without a positive
    ndcg: dict[int, F64] = field(default_factory=dict)  # k -> (G,), NaN without a positive
    precision: dict[int, F64] = field(default_factory=dict)  # k -> (G,), NaN without a positive

    def summary(self) -> dict[str, float]:
        """GAUC (size-weighted), MRR, nDCG@k and precision@k (unweighted means) and group counts."""
        has_both = ~np.isnan(self.auc)
        has_pos = self.num_positive > 0
        weights = self.num_items[has_both].astype(np.float64)
        out = {
            "gauc": float(np.average(self.auc[has_both], weights=weights)) if has_both.any() else np.nan,
            "mrr": _mean(self.mrr[has_pos]),
        }
        out |= {f"ndcg@{k}": _mean(v[has_pos]) for k, v in sorted(self.ndcg.items())}
        out |= {f"precision@{k}": _mean(v[has_pos]) for k, v in sorted(self.precision.items())}
        out |= {
            "num_groups": float(self.group_ids.size),
            "num_groups_with_positive": float(has_pos.sum()),
            "num_groups_with_both_classes": float(has_both.sum()),
        }
        return out


def ranking_metrics(
    scores: npt.ArrayLike, labels: npt.ArrayLike, groups: npt.ArrayLike, ks: tuple[int, ...] = DEFAULT_KS
) -> dict[str, float]:
    """Overall AUC plus `GroupMetrics.summary()`: keys auc, gauc, mrr, ndcg@k, precision@k, counts."""
    return {"auc": auc(scores, labels)} | group_metrics(scores, labels, groups, ks).summary()


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """ROC AUC of (N,) scores against (N,) labels (> 0 is positive), ties 1/2; NaN with one class."""
    s, y = _check(scores, labels)
    return float(_Segments.build(s, y, np.zeros(s.size, dtype=np.int8)).auc()[0])


def group_metrics(
    scores: npt.ArrayLike, labels: npt.ArrayLike, groups: npt.ArrayLike, ks: tuple[int, ...] = DEFAULT_KS
) -> GroupMetrics:
    """Per-group AUC, MRR, nDCG@k and precision@k for each k in `ks` (see the module docstring).

    Args:
        scores: (N,) model scores, higher ranks first; any real scale, no NaN.
        labels: (N,) non-negative gains; > 0 is positive.
        groups: (N,) request id of each row (rows of a group need not be contiguous).
        ks: cutoffs for nDCG@k and precision@k, each >= 1.
    """
    s, y = _check(scores, labels)
    g = np.asarray(groups)
    if g.shape != s.shape:
        raise ValueError(f"groups has shape {g.shape}, scores {s.shape}")
    if any(k < 1 for k in ks):
        raise ValueError(f"every cutoff k must be >= 1, got {ks}")
    seg = _Segments.build(s, y, g)
    return GroupMetrics(
        group_ids=seg.group_ids,
        num_items=seg.group_size,
        num_positive=seg.group_pos,
        auc=seg.auc(),
        mrr=seg.mrr(),
        ndcg={k: seg.ndcg(k) for k in ks},
        precision={k: seg.precision(k) for k in ks},
    )


@dataclass(frozen=True)
class _Segments:
    """Rows sorted by (group, -score), with the group and tie-block segments that reductions need.

    A tie block is a maximal run of equal scores within a group; all `block_*` arrays are (B,),
    `group_*` arrays (G,), and row arrays (N,) are in sorted order.
    """

    gain: F64  # (N,) labels in sorted order
    pos_in_group: I64  # (N,) 0-based rank position within the group
    group_ids: np.ndarray  # (G,)
    group_start: I64  # (G,) first sorted row of each group
    group_size: I64  # (G,)
    group_pos: I64  # (G,) positives per group
    ideal_gain: F64  # (N,) gains sorted by (group, -gain): the ideal order for nDCG
    block_start: I64  # (B,) first sorted row of each tie block
    block_size: I64  # (B,)
    block_first: I64  # (B,) position within the group of the block's first row
    block_group: I64  # (B,) group index of each block
    block_pos: I64  # (B,) positives in each block
    block_gain: F64  # (B,) sum of gains in each block

    @staticmethod
    def build(scores: F64, gains: F64, groups: np.ndarray) -> _Segments:
        n = scores.size
        order = np.lexsort((-scores, groups))  # primary key last: group, then descending score
        g, s, y = groups[order], scores[order], gains[order]
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = g[1:] != g[:-1]
        new_block = new_group.copy()
        new_block[1:] |= s[1:] != s[:-1]
        group_start = np.flatnonzero(new_group)
        group_index = np.cumsum(new_group) - 1  # (N,)
        block_start = np.flatnonzero(new_block)
        pos_in_group = np.arange(n) - group_start[group_index]
        positive = (y > 0).astype(np.int64)
        ideal = gains[np.lexsort((-gains, groups))]  # same group order as `order`, gains descending
        return _Segments(
            gain=y,
            pos_in_group=pos_in_group,
            group_ids=g[group_start],
            group_start=group_start,
            group_size=np.diff(np.append(group_start, n)),
            group_pos=np.add.reduceat(positive, group_start),
            ideal_gain=ideal,
            block_start=block_start,
            block_size=np.diff(np.append(block_start, n)),
            block_first=pos_in_group[block_start],
            block_group=group_index[block_start],
            block_pos=np.add.reduceat(positive, block_start),
            block_gain=np.add.reduceat(y, block_start),
        )

    def _per_group(self, block_values: F64) -> F64:
        """(G,) sums of a per-block quantity over each group's blocks."""
        first_block = np.searchsorted(self.block_group, np.arange(self.group_start.size))
        return np.add.reduceat(block_values, first_block)

    def auc(self) -> F64:
        """(G,) Mann-Whitney AUC with mid-ranks for ties; NaN for groups with one class."""
        size = self.group_size[self.block_group]
        # Descending mid-rank of a block (1-based) → ascending mid-rank within its group.
        asc_rank = size + 1 - (self.block_first + 1 + self.block_first + self.block_size) / 2.0
        rank_sum = self._per_group(asc_rank * self.block_pos)
        p = self.group_pos.astype(np.float64)
        neg = self.group_size - p
        with np.errstate(divide="ignore", invalid="ignore"):
            out: F64 = (rank_sum - p * (p + 1) / 2.0) / (p * neg)
        return np.where((p > 0) & (neg > 0), out, np.nan)

    def precision(self, k: int) -> F64:
        """(G,) expected positives among the top k / min(k, group size); NaN without a positive."""
        block_end = self.block_first + self.block_size
        in_top = np.clip(np.minimum(block_end, k) - self.block_first, 0, None)
        expected = self._per_group(self.block_pos / self.block_size * in_top)
        return self._undefined_without_positive(expected / np.minimum(k, self.group_size))

    def ndcg(self, k: int) -> F64:
        """(G,) tie-averaged DCG@k / ideal DCG@k with linear gains; NaN without a positive."""
        pos = self.pos_in_group
        discount = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)  # (N,)
        # A tie block's expected DCG: its mean gain times the sum of the discounts it occupies.
        block_discount = np.add.reduceat(discount, self.block_start)
        dcg = self._per_group(self.block_gain / self.block_size * block_discount)
        ideal = np.add.reduceat(self.ideal_gain * discount, self.group_start)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._undefined_without_positive(dcg / ideal)

    def mrr(self) -> F64:
        """(G,) expected reciprocal rank of the first positive; NaN without a positive.

        The first positive lies in the first tie block holding one: a items precede that block,
        which holds p positives and m negatives (n = p + m). In a random order of the block, the
        number X of negatives before its first positive has P(X >= x) = prod_{i<x} (m-i)/(n-i)
        and P(X = x) = P(X >= x) * p / (n - x); the result is sum_x P(X = x) / (a + 1 + x).
        Each selected block expands to m + 1 terms, fewer than N in total.
        """
        has_pos = np.flatnonzero(self.block_pos > 0)
        first = np.ones(has_pos.size, dtype=bool)
        first[1:] = self.block_group[has_pos[1:]] != self.block_group[has_pos[:-1]]
        sel = has_pos[first]  # first positive block of each group that has a positive
        p, n = self.block_pos[sel], self.block_size[sel]
        a, m = self.block_first[sel], n - p
        lengths = m + 1
        seg_start = np.cumsum(lengths) - lengths
        row = np.repeat(np.arange(sel.size), lengths)
        x = np.arange(int(lengths.sum())) - seg_start[row]
        mm, nn = m[row], n[row]
        # log((m-i)/(n-i)) for i = x; only i < m is ever used, so the log argument stays >= 1/n.
        term = np.where(x < mm, np.log(np.maximum(mm - x, 1)) - np.log(nn - x), 0.0)
        csum = np.cumsum(term)
        log_survival = (csum - term) - (csum - term)[seg_start][row]  # exclusive in-segment sums
        prob = np.exp(log_survival) * p[row] / (nn - x)
        out = np.full(self.group_start.size, np.nan)
        out[self.block_group[sel]] = np.add.reduceat(prob / (a[row] + 1.0 + x), seg_start)
        return out

    def _undefined_without_positive(self, values: F64) -> F64:
        return np.where(self.group_pos > 0, values, np.nan)


def _check(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[F64, F64]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be 1-d of equal length")
    if s.size == 0:
        raise ValueError("no rows to evaluate")
    if not (np.isfinite(s).all() and np.isfinite(y).all()):
        raise ValueError("scores and labels must be finite (no NaN or inf)")
    if (y < 0).any():
        raise ValueError("labels must be non-negative gains")
    return s, y


def _mean(values: F64) -> float:
    return float(values.mean()) if values.size else np.nan
