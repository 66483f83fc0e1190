"""The logging policy that built the simulated feeds, and the exact propensities it logs.

The policy is not personalized. Before each chunk of requests it scores the live items (published
within `catalog_hours` before the chunk's first request):

    score_j = popularity_weight * log((c_j + 1) / (mean_live(c) + 1))
              + freshness_weight * exp(-age_j / freshness_hours)
    p_j     = (1 - epsilon) * softmax(score)_j + epsilon / C

where c_j is item j's click count decayed with half-life `popularity_half_life_hours` and C the
number of live items. Every request of the chunk then draws its slate of k items by sequential
sampling without replacement from p (Plackett-Luce): slot 0 takes item i with probability p_i, and
slot s takes item i, not yet placed, with probability

    propensity = p_i / (1 - sum of p over the items placed in slots 0..s-1),

which is the value logged in `propensity`. The probability of the whole ordered slate is the
product of its rows' propensities.

Sampling uses the fact that drawing i.i.d. from p and keeping the first k distinct items is
exactly sequential sampling without replacement; rows that need more draws than were made finish
with a Gumbel top-k over the items not yet placed, which has the same conditional distribution.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from feedrank.sim.config import SimConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
HOUR = 3600.0
_FINISH_BLOCK = 512  # rows finished together: bounds the (rows, C) Gumbel keys in memory


class PopularityTracker:
    """Exponentially decayed click counts per item: c_j(t) = sum over clicks of 2^(-(t - t_click)/h)."""

    def __init__(self, num_items: int, half_life_hours: float) -> None:
        self.clicks = np.zeros(num_items, dtype=np.float64)
        self.rate = math.log(2.0) / (half_life_hours * HOUR)  # per second
        self.t_s: float | None = None

    def decay_to(self, t_s: float, lo: int, hi: int) -> None:
        """Age the counts of items [lo, hi) to time t. Items outside that range are not live and are
        never shown again, so their counts do not matter."""
        if self.t_s is not None and t_s > self.t_s:
            self.clicks[lo:hi] *= math.exp(-self.rate * (t_s - self.t_s))
        self.t_s = t_s if self.t_s is None else max(self.t_s, t_s)

    def add(self, items: I64) -> None:
        """Count one click on each entry of `items` (repeats count repeatedly)."""
        self.clicks += np.bincount(items, minlength=self.clicks.size)


class LoggingPolicy:
    """Popularity + freshness + uniform exploration; see the module docstring."""

    def __init__(self, config: SimConfig, published_s: F64) -> None:
        self.config = config
        self.published_s = published_s  # (I,) epoch seconds of every item

    def probabilities(self, lo: int, hi: int, t_s: float, clicks: F64) -> F64:
        """p over the live items [lo, hi) at time t given their decayed clicks, (C,)."""
        c = self.config
        age_h = (t_s - self.published_s[lo:hi]) / HOUR
        score = c.popularity_weight * np.log((clicks + 1.0) / (clicks.mean() + 1.0)) + (
            c.freshness_weight * np.exp(-age_h / c.freshness_hours)
        )
        soft = np.exp(score - score.max())
        soft /= soft.sum()
        p: F64 = (1.0 - c.epsilon) * soft + c.epsilon / (hi - lo)
        out: F64 = p / p.sum()  # absorbs rounding so that p sums to 1 to the last bit we can get
        return out


def sample_slates(p: F64, num: int, k: int, rng: np.random.Generator) -> tuple[I64, F64]:
    """Draw `num` slates of k distinct indices of `p` (C,) by sequential sampling without
    replacement. Returns (slates (num, k), propensities (num, k)), propensity as in the module
    docstring. k is capped at C."""
    size = p.size
    k = min(k, size)
    if num == 0 or k == 0:
        return np.zeros((num, k), dtype=np.int64), np.zeros((num, k), dtype=np.float64)
    draws = 2 * k + 8  # enough for k distinct items in nearly every row unless p is very peaked
    cdf = np.cumsum(p)
    seq = np.searchsorted(cdf, rng.random((num, draws)) * cdf[-1], side="right")
    seq = np.minimum(seq, size - 1)
    first = _first_draws(seq)  # (num, draws) the draw is an item's first occurrence in its row
    rank: I64 = np.cumsum(first, axis=1, dtype=np.int64)  # distinct items so far, per row
    complete = rank[:, -1] >= k
    slates = np.empty((num, k), dtype=np.int64)
    rows = np.flatnonzero(complete)
    slates[rows] = seq[rows][(first & (rank <= k))[rows]].reshape(-1, k)
    unfinished = np.flatnonzero(~complete)
    for lo in range(0, unfinished.size, _FINISH_BLOCK):
        block = unfinished[lo : lo + _FINISH_BLOCK]
        slates[block] = _finish(p, seq[block], first[block], rank[block], k, rng)
    return slates, propensities(p, slates)


def _first_draws(seq: I64) -> npt.NDArray[np.bool_]:
    """Mask of the draws in `seq` (R, D) whose item did not occur earlier in the same row."""
    order = np.argsort(seq, axis=1, kind="stable")  # stable: the earliest draw of an item comes first
    sorted_seq = np.take_along_axis(seq, order, axis=1)
    new_sorted = np.ones_like(sorted_seq, dtype=bool)
    new_sorted[:, 1:] = sorted_seq[:, 1:] != sorted_seq[:, :-1]
    first = np.empty_like(new_sorted)
    np.put_along_axis(first, order, new_sorted, axis=1)
    return first


def _finish(
    p: F64, seq: I64, first: npt.NDArray[np.bool_], rank: I64, k: int, rng: np.random.Generator
) -> I64:
    """Complete rows whose draws `seq` (R, D) found only rank[:, -1] < k distinct items: those
    items in draw order, then Gumbel-top-(k - found) over the items never drawn. (R, k)."""
    found = rank[:, -1:]  # (R, 1)
    prefix = np.zeros((seq.shape[0], k), dtype=np.int64)
    r_idx, c_idx = np.nonzero(first)
    prefix[r_idx, rank[r_idx, c_idx] - 1] = seq[r_idx, c_idx]
    keys = np.log(p)[None, :] + rng.gumbel(size=(seq.shape[0], p.size))
    keys[np.arange(seq.shape[0])[:, None], seq] = -np.inf  # already placed
    rest = np.argsort(-keys, axis=1, kind="stable")[:, :k]
    col = np.arange(k)[None, :]
    fill = np.take_along_axis(rest, np.maximum(col - found, 0), axis=1)
    out: I64 = np.where(col < found, prefix, fill)
    return out


def propensities(p: F64, slates: I64) -> F64:
    """p_i / (1 - sum of p of the items in earlier slots), (num, k)."""
    chosen = p[slates]
    before = np.cumsum(chosen, axis=1) - chosen
    out: F64 = chosen / np.maximum(1.0 - before, np.finfo(np.float64).tiny)
    return np.minimum(out, 1.0)
