from __future__ import annotations

import numpy as np
import pytest

from feedrank.candidates import SourceList, merge, merged_rows, source_features, split_quotas, top_n


def _list(rows: list[int]) -> SourceList:
    return SourceList(np.array(rows, dtype=np.int64), np.arange(len(rows), 0, -1, dtype=np.float64))


def test_quotas_dedup_membership_and_refill() -> None:
    lists = {"ann": _list([1, 2, 3, 4, 5, 6]), "trending": _list([2, 7, 8]), "fresh": _list([9])}
    got = merge(lists, {"ann": 2, "trending": 2, "fresh": 2}, total=6)
    # seats 2/2/2: ann 1, 2; trending 7, 8 (2 is taken); fresh 9; the empty seat refills from ann
    assert got.item_rows.tolist() == [1, 2, 7, 8, 9, 3]
    assert got.names == ("ann", "trending", "covis", "fresh")  # one layout, covis off or not
    assert got.proposed_by(1) == ["ann", "trending"]
    assert got.counts() == {"ann": 3, "trending": 3, "covis": 0, "fresh": 1}
    assert got.scores[1].tolist() == [5.0, 3.0, 0.0, 0.0]  # item 2: ann score 5, trending score 3
    feats = got.features()
    assert feats.shape == (6, 8) and len(got.feature_names()) == 8
    assert feats[1, :4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert feats[1, 5] == pytest.approx(np.log1p(3.0))  # trending's count-like score is log-scaled
    # The same block for arbitrary rows (training impressions): equal for the candidates, zero else.
    assert np.array_equal(source_features(lists, got.item_rows, got.names), feats)
    assert source_features(lists, np.array([42, 8]), got.names)[0].tolist() == [0.0] * 8


def test_split_quotas_sums_to_total() -> None:
    for total in (1, 7, 50, 501):
        seats = split_quotas({"ann": 300, "trending": 100, "covis": 100, "fresh": 50}, total)
        assert sum(seats.values()) == total
    assert split_quotas({"ann": 3, "covis": 1}, 8) == {"ann": 6, "covis": 2}


def test_top_n_is_positive_eligible_and_ordered() -> None:
    scores = np.array([0.0, 3.0, 1.0, 3.0, 2.0])
    eligible = np.array([True, True, True, True, False])
    got = top_n(scores, 3, eligible)
    assert got.rows.tolist() == [1, 3, 2] and got.scores.tolist() == [3.0, 3.0, 1.0]


def reference_merge(lists: dict[str, SourceList], quotas: dict[str, int], total: int) -> list[int]:
    """The module docstring's rule, spelled out: each source's first seats in SOURCES order, then
    the refill in the same order, skipping rows already taken."""
    seats = split_quotas({n: quotas[n] for n in lists}, total)
    taken: list[int] = []
    for limit in (seats, dict.fromkeys(seats, total)):
        for name in ("ann", "trending", "covis", "fresh"):
            added = 0
            for row in lists[name].rows.tolist():
                if added < limit[name] and len(taken) < total and row not in taken:
                    taken.append(row)
                    added += 1
    return taken


def test_merged_rows_follow_the_merge_rule() -> None:
    """The rows-only merge (evaluation, training replay) and `merge` take the rule's candidates
    in its order, with overlaps, a row listed twice, short lists and every total."""
    rng = np.random.default_rng(2)
    for _ in range(50):
        sizes = rng.integers(0, 40, 4)
        lists = {
            name: SourceList(rng.integers(0, 60, n), rng.random(n))
            for name, n in zip(("ann", "trending", "covis", "fresh"), sizes.tolist(), strict=True)
        }
        for total in (1, 7, 30, 120):
            quotas = {"ann": 3, "trending": 1, "covis": 1, "fresh": 1}
            expected = reference_merge(lists, quotas, total)
            assert merged_rows(lists, quotas, total).tolist() == expected
            assert merge(lists, quotas, total).item_rows.tolist() == expected
