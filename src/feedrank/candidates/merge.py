"""Merging the sources' lists into one de-duplicated candidate set, each source within its quota.

Each source hands over a ranked list (best first). The merge takes every source's first
`quota` items, in the order of `SOURCES` (the personal ANN first), skipping items already taken;
seats left empty (a source with fewer items, or overlaps) go to the sources' next items in the
same order, so the set is as full as the lists allow. For every candidate the set records which
sources listed it anywhere in their lists (not only within the quota) and their scores: the
ranker should know that an ANN pick is also trending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    sources: (N, S) bool, S = len(names): source s listed candidate n. Every source of `SOURCES`
        has its column, also when it was off or failed (all False then).
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
        return _feature_block(self.sources, self.scores, self.names)

    def feature_names(self) -> list[str]:
        return feature_names(self.names)

    def proposed_by(self, i: int) -> list[str]:
        """Names of the sources that listed candidate i."""
        return [n for n, flag in zip(self.names, self.sources[i].tolist(), strict=True) if flag]

    def counts(self) -> dict[str, int]:
        """Candidates listed by each source."""
        return {n: int(c) for n, c in zip(self.names, self.sources.sum(axis=0).tolist(), strict=True)}


def feature_names(names: tuple[str, ...] = SOURCES) -> list[str]:
    return [f"from_{n}" for n in names] + [f"{n}_score" for n in names]


SOURCE_FEATURES = tuple(feature_names())  # the ranker's source columns, in `features()` order


def source_features(
    lists: Mapping[str, SourceList], item_rows: I64, names: tuple[str, ...] = SOURCES
) -> npt.NDArray[np.float32]:
    """(M, 2S) the `CandidateSet.features()` block for any item rows, e.g. a logged impression's.

    Training needs the block for the items that were shown, which the merge did not choose; from
    the same sources' lists at the impression's time, this gives the columns serving gives.
    A source missing from `lists` (off, failed) has all-zero columns.
    """
    return _feature_block(*_lookup(lists, item_rows, names), names)


def _lookup(
    lists: Mapping[str, SourceList], item_rows: I64, names: tuple[str, ...]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """(M, S) whether each source listed each item, and its score there (0 where not)."""
    member = np.zeros((item_rows.size, len(names)), dtype=bool)
    scores = np.zeros((item_rows.size, len(names)), dtype=np.float32)
    for s, name in enumerate(names):
        listed = lists.get(name)
        if listed is None or listed.rows.size == 0:
            continue
        order = np.argsort(listed.rows)
        at = np.minimum(np.searchsorted(listed.rows, item_rows, sorter=order), listed.rows.size - 1)
        hit = listed.rows[order[at]] == item_rows
        member[hit, s] = True
        scores[hit, s] = listed.scores[order[at[hit]]]
    return member, scores


def _feature_block(
    member: npt.NDArray[np.bool_], scores: npt.NDArray[np.float32], names: tuple[str, ...]
) -> npt.NDArray[np.float32]:
    out = scores.astype(np.float32, copy=True)
    for s, name in enumerate(names):
        if name in _LOG_SCALED:
            out[:, s] = np.log1p(np.maximum(out[:, s], 0.0))
    return np.concatenate([member.astype(np.float32), out], axis=1)


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
    # Every known source has its columns, listed or not, so the ranker's input keeps one layout.
    names = SOURCES + tuple(n for n in lists if n not in SOURCES)
    rows = merged_rows(lists, quotas, total)
    member, scores = _lookup(lists, rows, names)
    return CandidateSet(rows, member, scores, names)


def merged_rows(lists: Mapping[str, SourceList], quotas: Mapping[str, int], total: int) -> I64:
    """`merge(lists, quotas, total).item_rows` alone, without the per-candidate source columns
    (evaluation's recall and the training replay's pools need only the rows)."""
    present = [n for n in SOURCES + tuple(n for n in lists if n not in SOURCES) if n in lists]
    seats = split_quotas({n: quotas.get(n, 0) for n in present}, total)
    taken: dict[int, None] = {}  # insertion-ordered set
    for name in present:  # each source's own seats first
        _take(taken, lists[name].rows, seats[name], total)
    for name in present:  # then fill what is left, in the same priority order
        _take(taken, lists[name].rows, total, total)
    return np.fromiter(taken, dtype=np.int64, count=len(taken))


def top_n(scores: F64, n: int, eligible: npt.NDArray[np.bool_] | None = None) -> SourceList:
    """The n highest positive scores among eligible items, best first (ties: lower row first)."""
    ok = scores > 0
    if eligible is not None:
        ok &= eligible
    rows = np.flatnonzero(ok)
    rows = rows[top_order(scores[rows], n)]
    return SourceList(rows.astype(np.int64), scores[rows])


def top_rows(
    rows: I64, scores: F64, n: int, eligible: Callable[[I64], npt.NDArray[np.bool_]] | None = None
) -> SourceList:
    """`top_n` of a sparse score vector: `rows` (ascending, distinct) and their scores, every other
    item scoring 0; `eligible(rows)` says which rows may be listed. Equal to `top_n` of the dense
    vector, at a cost that depends on the rows given, not on the catalog.

    Eligibility is asked of the best rows first (2n, then 8n, ... in the order of the result), so
    a catalog-wide lookup is paid for about n rows, not for every row with a score.
    """
    positive = scores > 0
    rows, scores = rows[positive], scores[positive]
    if eligible is None:
        top = top_order(scores, n)
        return SourceList(rows[top], scores[top])
    want = 2 * n
    while True:
        best = top_order(scores, want)  # the `want` best, best first, ties by lower row
        best = best[eligible(rows[best])]
        if best.size >= n or want >= scores.size:
            best = best[:n]
            return SourceList(rows[best], scores[best])
        want *= 4


def top_order(values: npt.NDArray[np.floating], n: int) -> I64:
    """`np.argsort(-values, kind="stable")[:n]`: the n largest, best first, ties by lower index.

    A partition finds the n-th largest value first, so only about n values are sorted: the
    training replay asks this for every click over thousands of live items.
    """
    if values.size <= n:
        order: I64 = np.lexsort((np.arange(values.size), -values))
        return order
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(values, values.size - n)[values.size - n]  # the n-th largest value
    above = np.flatnonzero(values > kth)
    tied = np.flatnonzero(values == kth)[: n - above.size]
    picked = np.concatenate([above, tied])
    out: I64 = picked[np.lexsort((picked, -values[picked]))]
    return out


def _take(taken: dict[int, None], rows: I64, quota: int, total: int) -> None:
    added = 0
    for row in rows.tolist():
        if added >= quota or len(taken) >= total:
            return
        if row not in taken:
            taken[row] = None
            added += 1
