"""Merging the sources' lists into one de-duplicated candidate set, each source within its quota.

Each source hands over a ranked list (best first). The merge takes every source's first
`quota` items, in the order of `SOURCES` (the personal ANN first), skipping items already taken;
seats left empty (a source with fewer items, or overlaps) go to the sources' next items in the
same order, so the set is as full as the lists allow. For every candidate the set records which
sources listed it anywhere in their lists (not only within the quota) and their scores: the
ranker should know that an ANN pick is also trending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.candidates.postings import F64, I64

SOURCES = ("ann", "trending", "covis", "fresh")
# Count-like scores are log-scaled for the ranker; the ANN's inner product and fresh's [0, 1] are not.
_LOG_SCALED = frozenset({"trending", "covis"})


@dataclass(frozen=True)
class SourceList:
    """One source's proposal: item rows, best first, and the source's score of each."""

    rows: I64  # (n,)
    scores: F64  # (n,)

    @staticmethod
    def empty() -> SourceList:
        return SourceList(np.zeros(0, dtype=np.int64), np.zeros(0))


@dataclass(frozen=True)
class CandidateSet:
    """The merged candidates: which source proposed each one, and with what score.

    item_rows: (N,) int64 catalog rows, in merge order.
    sources: (N, S) bool, S = len(names): source s listed candidate n.
    scores: (N, S) float32, source s's score of candidate n; 0 where it did not list it.
    names: the S source names (column order of `sources` and `scores`).
    """

    item_rows: I64
    sources: npt.NDArray[np.bool_]
    scores: npt.NDArray[np.float32]
    names: tuple[str, ...] = SOURCES

    def __len__(self) -> int:
        return int(self.item_rows.size)

    def features(self) -> npt.NDArray[np.float32]:
        """(N, 2S) float32 ranker input: S membership columns (0/1), then S source scores.

        Scores are log1p-scaled for the count-like sources (trending, co-visitation); 0 where the
        source did not list the candidate. Column names: `feature_names()`.
        """
        scores = self.scores.astype(np.float32, copy=True)
        for s, name in enumerate(self.names):
            if name in _LOG_SCALED:
                scores[:, s] = np.log1p(np.maximum(scores[:, s], 0.0))
        return np.concatenate([self.sources.astype(np.float32), scores], axis=1)

    def feature_names(self) -> list[str]:
        return [f"from_{n}" for n in self.names] + [f"{n}_score" for n in self.names]

    def proposed_by(self, i: int) -> list[str]:
        """Names of the sources that listed candidate i."""
        return [n for n, flag in zip(self.names, self.sources[i].tolist(), strict=True) if flag]

    def counts(self) -> dict[str, int]:
        """Candidates listed by each source."""
        return {n: int(c) for n, c in zip(self.names, self.sources.sum(axis=0).tolist(), strict=True)}


def split_quotas(quotas: Mapping[str, int], total: int) -> dict[str, int]:
    """Quotas scaled to sum to `total` (largest remainders round up), in the same proportions."""
    weight = sum(quotas.values())
    if weight <= 0 or total <= 0:
        return dict.fromkeys(quotas, 0)
    exact = {n: total * q / weight for n, q in quotas.items()}
    out = {n: int(np.floor(x)) for n, x in exact.items()}
    for n in sorted(exact, key=lambda n: out[n] - exact[n])[: total - sum(out.values())]:
        out[n] += 1
    return out


def merge(lists: Mapping[str, SourceList], quotas: Mapping[str, int], total: int) -> CandidateSet:
    """Merge the sources' lists into at most `total` distinct candidates (see the module docstring).

    `quotas` are relative: they are scaled to `total` with `split_quotas`. Sources without a
    list (skipped, failed) have no seats; their quota goes to the others through the refill.
    """
    names = tuple(n for n in SOURCES if n in lists) + tuple(n for n in lists if n not in SOURCES)
    seats = split_quotas({n: quotas.get(n, 0) for n in names}, total)
    taken: dict[int, None] = {}  # insertion-ordered set
    for name in names:  # each source's own seats first
        _take(taken, lists[name].rows, seats[name], total)
    for name in names:  # then fill what is left, in the same priority order
        _take(taken, lists[name].rows, total, total)
    rows = np.fromiter(taken, dtype=np.int64, count=len(taken))
    member = np.zeros((rows.size, len(names)), dtype=bool)
    scores = np.zeros((rows.size, len(names)), dtype=np.float32)
    if rows.size:
        order = np.argsort(rows)
        for s, name in enumerate(names):
            listed = lists[name]
            at = np.searchsorted(rows, listed.rows, sorter=order)
            at = np.minimum(at, rows.size - 1)
            hit = rows[order[at]] == listed.rows
            member[order[at[hit]], s] = True
            scores[order[at[hit]], s] = listed.scores[hit]
    return CandidateSet(rows, member, scores, names)


def top_n(scores: F64, n: int, eligible: npt.NDArray[np.bool_] | None = None) -> SourceList:
    """The n highest positive scores among eligible items, best first (ties: lower row first)."""
    ok = scores > 0
    if eligible is not None:
        ok &= eligible
    rows = np.flatnonzero(ok)
    rows = rows[np.lexsort((rows, -scores[rows]))][:n]
    return SourceList(rows.astype(np.int64), scores[rows])


def _take(taken: dict[int, None], rows: I64, quota: int, total: int) -> None:
    added = 0
    for row in rows.tolist():
        if added >= quota or len(taken) >= total:
            return
        if row not in taken:
            taken[row] = None
            added += 1
