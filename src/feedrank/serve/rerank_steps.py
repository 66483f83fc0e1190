"""The re-ranking steps. Each is a frozen dataclass of its settings, called as `step(candidates, ctx)`.

    DropHiddenAndSeen   filter: items the user hid (always) and already saw (optional)
    FreshnessDecay      score: older items lose score with a half-life
    ClickbaitGuardrail  score or position: high click rate with short dwell goes down
    PublisherCap        position: at most m items per publisher in the top k
    MMR                 position: greedy trade-off between score and similarity to what is above
    MinExposure         position: at least s slots of the top k for small publishers

Every step returns a new `Candidates` made of rows of its input (never invented or duplicated)
and never writes into the input's arrays; it may return its input itself when nothing changes.
Score steps return the rows sorted by their new scores (stable); position steps keep scores and
move rows. Only the greedy MMR loops in Python, k times over O(N·d) array work.

Scaling a score of either sign (`scale_down`): multiplying a negative score by f < 1 would raise
it towards 0, so a penalty would reward the worst items. Instead a score loses the share 1 - f of
its magnitude whatever its sign: s' = s - (1 - f)·|s|, which is s·f for s >= 0 and s·(2 - f) for
s < 0. It is continuous, strictly increasing in s while f > 0 (equally penalized items keep their
order), never raises a score, and is bounded (s' >= 2s), unlike dividing by f.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from feedrank.data.features import US_PER_HOUR
from feedrank.data.timeline import NO_TIME
from feedrank.errors import ConfigError

if TYPE_CHECKING:  # rerank.py imports this module at run time; the steps only call methods
    from feedrank.serve.rerank import Candidates, RequestContext

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def scale_down(scores: npt.ArrayLike, factor: npt.ArrayLike) -> F64:
    """(N,) s - (1 - f)·|s|: the score times f in (0, 1], for scores of either sign (module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    return s - (1.0 - np.asarray(factor, dtype=np.float64)) * np.abs(s)


@dataclass(frozen=True)
class DropHiddenAndSeen:
    """Drop the items the user hid and, with `drop_seen`, those already shown to them."""

    drop_seen: bool = True

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        drop = np.isin(c.items, ctx.hidden)
        if self.drop_seen:
            drop |= np.isin(c.items, ctx.seen)
        return c.take(np.flatnonzero(~drop)) if drop.any() else c


@dataclass(frozen=True)
class FreshnessDecay:
    """Decay scores with the item's age: factor f = 0.5 ** (age_h / half_life_h).

    mode "scale": s - (1 - f)·|s| (= s·f for s >= 0; see `scale_down` for negative scores);
    mode "log": s + log(f) = s - ln 2 · age_h / half_life_h, for scores that are logits or
    log-probabilities (it multiplies the odds or the probability by f).
    Unknown publication time: untouched. Published after `now` (clock skew): age 0.
    half_life_h = inf leaves every score as it is.
    """

    half_life_h: float = 24.0
    mode: Literal["scale", "log"] = "scale"

    def __post_init__(self) -> None:
        if not self.half_life_h > 0:
            raise ConfigError(f"FreshnessDecay.half_life_h must be > 0, got {self.half_life_h}")
        if self.mode not in ("scale", "log"):
            raise ConfigError(f"FreshnessDecay.mode must be 'scale' or 'log', got {self.mode!r}")

    def age_h(self, c: Candidates, now_us: int) -> F64:
        """(N,) age in hours at `now_us`, 0 when unknown (NO_TIME) or in the future."""
        known = c.published_us != NO_TIME
        published = np.where(known, c.published_us, now_us)  # avoids now - NO_TIME overflowing
        age_h: F64 = np.maximum(now_us - published, 0).astype(np.float64) / US_PER_HOUR
        return age_h

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        half_lives = self.age_h(c, ctx.now_us) / self.half_life_h  # (N,)
        if self.mode == "log":
            scores = c.scores - math.log(2.0) * half_lives
        else:
            scores = scale_down(c.scores, 0.5**half_lives)
        return c.with_scores(scores).by_score()


@dataclass(frozen=True)
class ClickbaitGuardrail:
    """Demote clickbait: recent click rate > `max_click_rate` and mean dwell < `min_dwell_s`.

    mode "demote": every flagged item moves below every unflagged one (order kept within each);
    mode "scale": a flagged score becomes scale_down(s, factor), then the rows are sorted by score.
    Unknown stats (NaN, or arrays absent) never flag an item.
    """

    # Defaults sit between clickbait and other items' click rates and dwell in the default
    # simulated world (docs/simulator.md, "Clickbait in the default world"): tune both on your logs.
    max_click_rate: float = 0.04
    min_dwell_s: float = 15.0
    mode: Literal["demote", "scale"] = "demote"
    factor: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("demote", "scale"):
            raise ConfigError(f"ClickbaitGuardrail.mode must be 'demote' or 'scale', got {self.mode!r}")
        if not 0.0 < self.factor <= 1.0:
            raise ConfigError(f"ClickbaitGuardrail.factor must be in (0, 1], got {self.factor}")

    def flags(self, c: Candidates) -> B:
        """(N,) True for clickbait; NaN compares False, so unknown stats are never flagged."""
        if c.click_rate is None or c.mean_dwell_s is None:
            return np.zeros(len(c), dtype=bool)
        return (c.click_rate > self.max_click_rate) & (c.mean_dwell_s < self.min_dwell_s)

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        bait = self.flags(c)
        if not bait.any():
            return c
        if self.mode == "demote":
            return c.take(np.concatenate([np.flatnonzero(~bait), np.flatnonzero(bait)]))
        return c.with_scores(np.where(bait, scale_down(c.scores, self.factor), c.scores)).by_score()


@dataclass(frozen=True)
class PublisherCap:
    """At most `max_per_publisher` items per publisher above any item that is within its cap.

    A row is within the cap when fewer than m rows of its publisher precede it. Rows within the cap
    keep their order and come first; the rest follow, in order. So the top k holds at most m items
    per publisher whenever at least k rows are within the cap (enough other publishers), and a
    second application changes nothing.
    """

    max_per_publisher: int = 2

    def __post_init__(self) -> None:
        if self.max_per_publisher < 1:
            raise ConfigError(f"PublisherCap.max_per_publisher must be >= 1, got {self.max_per_publisher}")

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        within = occurrence_rank(c.publisher) < self.max_per_publisher
        if within.all():
            return c
        return c.take(np.concatenate([np.flatnonzero(within), np.flatnonzero(~within)]))


@dataclass(frozen=True)
class MMR:
    """Maximal marginal relevance: pick k rows greedily by λ·relevance - (1 - λ)·redundancy.

    relevance: the score min-max scaled to [0, 1] over the candidates (comparable with a cosine);
    redundancy: max(0, the highest similarity to a row already picked), where the similarity of two
    items is the cosine of their embeddings, raised to `same_publisher_similarity` when they share a
    publisher (so MMR also spreads publishers; without embeddings only that term counts).
    Ties go to the higher raw score, then to the earlier row, so λ = 1 is a stable sort by score.
    After the k picks the other rows follow by score. Cost O(k·N·d).
    """

    relevance_weight: float = 0.7  # λ in [0, 1]
    same_publisher_similarity: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.relevance_weight <= 1.0:
            raise ConfigError(f"MMR.relevance_weight must be in [0, 1], got {self.relevance_weight}")

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        n, s, lam = len(c), c.scores, self.relevance_weight
        if n == 0:
            return c
        lo, hi = s.min(), s.max()
        # Halved so that hi - lo cannot overflow for scores near the float range.
        rel = (s / 2 - lo / 2) / (hi / 2 - lo / 2) if hi > lo else np.zeros(n)
        unit = None if c.embeddings is None else _unit_rows(c.embeddings)  # (N, d)
        redundancy = np.zeros(n)
        available = np.ones(n, dtype=bool)
        picked = np.empty(min(ctx.k, n), dtype=np.int64)
        for i in range(picked.size):
            gain = np.where(available, lam * rel - (1.0 - lam) * redundancy, -np.inf)
            best = int(np.argmax(np.where(gain == gain.max(), s, -np.inf)))
            picked[i] = best
            available[best] = False
            if unit is not None:
                redundancy = np.maximum(redundancy, unit @ unit[best])
            if self.same_publisher_similarity > 0:
                same = c.publisher == c.publisher[best]
                redundancy = np.maximum(redundancy, np.where(same, self.same_publisher_similarity, 0.0))
        rest = np.flatnonzero(available)
        return c.take(np.concatenate([picked, rest[np.argsort(-s[rest], kind="stable")]]))


@dataclass(frozen=True)
class MinExposure:
    """At least `min_slots` of the top k go to small publishers, if the candidates hold enough.

    Small = not in `big_publishers`; `build_reranker` fills that from a publisher-volume array as
    the head: the largest publishers that together hold `head_share` of the volume. When the top k
    holds fewer than min(min_slots, k) small-publisher items, the best-scored small-publisher items
    below it take the places of the lowest-placed big-publisher items in it, which move to just
    below the top k (order kept). Everything else stays where it was; a second run changes nothing.
    """

    min_slots: int = 2
    head_share: float = 0.5
    big_publishers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.min_slots < 0:
            raise ConfigError(f"MinExposure.min_slots must be >= 0, got {self.min_slots}")
        if not 0.0 <= self.head_share <= 1.0:
            raise ConfigError(f"MinExposure.head_share must be in [0, 1], got {self.head_share}")

    def is_small(self, c: Candidates) -> B:
        """(N,) True for items of publishers outside `big_publishers`."""
        return ~np.isin(c.publisher, np.asarray(self.big_publishers, dtype=np.int64))

    def __call__(self, c: Candidates, ctx: RequestContext) -> Candidates:
        n = len(c)
        k = min(ctx.k, n)
        small = self.is_small(c)
        need = min(self.min_slots, k) - int(small[:k].sum())
        below = np.flatnonzero(small[k:]) + k
        need = min(need, below.size)
        if need <= 0:
            return c
        promote = below[np.argsort(-c.scores[below], kind="stable")[:need]]
        demote = np.flatnonzero(~small[:k])[-need:]  # exists: fewer than `need` small rows are above k
        top = np.arange(k)
        top[demote] = promote
        rest = np.setdiff1d(np.arange(k, n), promote, assume_unique=True)  # sorted: order kept
        return c.take(np.concatenate([top, demote, rest]))


def occurrence_rank(keys: npt.ArrayLike) -> I64:
    """(N,) how many earlier rows have the same key as each row (0 for a key's first row)."""
    k = np.asarray(keys)
    order = np.argsort(k, kind="stable")  # stable: within a key, rows stay in position order
    ordered = k[order]
    start = np.ones(k.size, dtype=bool)
    start[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(k.size), 0))
    rank = np.empty(k.size, dtype=np.int64)
    rank[order] = np.arange(k.size) - first
    return rank


def big_publishers_by_volume(volume: npt.ArrayLike, head_share: float) -> I64:
    """(B,) sorted publisher buckets of the head: the fewest largest publishers holding `head_share`.

    Args:
        volume: (P,) non-negative volume (e.g. impressions over the last days) per publisher bucket.
        head_share: in [0, 1]; publishers are taken largest first (ties: lower bucket first) while
            the share held by those already taken is below it. 0 gives none; publishers with zero
            volume are never big.
    """
    v = np.asarray(volume, dtype=np.float64)
    total = v.sum()
    if v.size == 0 or total <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-v, kind="stable")
    share_before = (np.cumsum(v[order]) - v[order]) / total
    return np.sort(order[(share_before < head_share) & (v[order] > 0)]).astype(np.int64)


def _unit_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length; all-zero rows stay zero (similarity 0 with everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (x / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
    return unit
