"""Within-impression ranking metrics against sklearn, brute force over tie orders, and invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score, roc_auc_score

from feedrank.eval.metrics import auc, group_metrics, ranking_metrics

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def random_impressions(seed: int, n: int = 3000, groups: int = 200, levels: int = 4) -> tuple[F64, F64, I64]:
    """Scores on a coarse grid (many ties), graded labels 0-3 mostly 0, shuffled group ids."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, n).astype(np.float64)
    labels = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n), 0).astype(np.float64)
    return scores, labels, rng.integers(0, groups, n)


def brute_force_expectations(scores: F64, labels: F64, k: int) -> tuple[float, float, float]:
    """Expected (reciprocal rank, DCG@k / ideal, precision@k) over every order consistent with the scores.

    Each permutation that sorts the scores descending is one equally likely tie-breaking.
    """
    rr, ndcg, prec, count = 0.0, 0.0, 0.0, 0
    ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(labels, reverse=True)[:k]))
    for perm in itertools.permutations(range(len(scores))):
        s = scores[list(perm)]
        if any(s[i] < s[i + 1] for i in range(len(s) - 1)):
            continue
        y = labels[list(perm)]
        count += 1
        rr += next(1.0 / (r + 1) for r, v in enumerate(y) if v > 0)
        ndcg += sum(g / math.log2(r + 2) for r, g in enumerate(y[:k])) / ideal
        prec += float((y[:k] > 0).sum()) / min(k, len(y))
    return rr / count, ndcg / count, prec / count


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    scores, labels, _ = random_impressions(seed)
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels > 0, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_gauc_is_the_size_weighted_mean_of_sklearn_group_aucs(seed: int) -> None:
    scores, labels, groups = random_impressions(seed)
    aucs, weights = [], []
    for g in np.unique(groups):
        m = groups == g
        if 0 < (labels[m] > 0).sum() < m.sum():
            aucs.append(roc_auc_score(labels[m] > 0, scores[m]))
            weights.append(m.sum())
    summary = group_metrics(scores, labels, groups).summary()
    assert summary["gauc"] == pytest.approx(np.average(aucs, weights=weights), abs=1e-12)
    assert summary["num_groups_with_both_classes"] == len(aucs)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_matches_sklearn_tie_averaged_graded(seed: int, k: int) -> None:
    scores, labels, groups = random_impressions(seed, n=1500, groups=100)
    gm = group_metrics(scores, labels, groups, ks=(k,))
    checked = 0
    for i, g in enumerate(gm.group_ids):
        m = groups == g
        if labels[m].sum() == 0:
            assert np.isnan(gm.ndcg[k][i])
        elif m.sum() > 1:  # sklearn refuses a single document
            assert gm.ndcg[k][i] == pytest.approx(ndcg_score([labels[m]], [scores[m]], k=k), abs=1e-12)
            checked += 1
    assert checked > 50


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), k=st.integers(1, 4))
def test_mrr_ndcg_precision_are_expectations_over_tie_orders(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, n).astype(np.float64)
    labels = rng.integers(0, 3, n).astype(np.float64)
    labels[rng.integers(n)] = 1.0  # at least one positive
    gm = group_metrics(scores, labels, np.zeros(n, dtype=np.int64), ks=(k,))
    rr, ndcg, prec = brute_force_expectations(scores, labels, k)
    assert gm.mrr[0] == pytest.approx(rr, abs=1e-9)
    assert gm.ndcg[k][0] == pytest.approx(ndcg, abs=1e-9)
    assert gm.precision[k][0] == pytest.approx(prec, abs=1e-9)


def test_mrr_and_precision_without_ties_match_a_plain_loop() -> None:
    rng = np.random.default_rng(7)
    scores, labels, groups = (
        rng.random(4000),
        (rng.random(4000) < 0.2).astype(float),
        rng.integers(0, 300, 4000),
    )
    gm = group_metrics(scores, labels, groups, ks=(3,))
    rrs, precs = [], []
    for g in gm.group_ids:
        m = groups == g
        ranked = labels[m][np.argsort(-scores[m])]
        if ranked.sum() > 0:
            rrs.append(1.0 / (np.flatnonzero(ranked)[0] + 1))
            precs.append(ranked[:3].sum() / min(3, ranked.size))
    summary = gm.summary()
    assert summary["mrr"] == pytest.approx(np.mean(rrs), abs=1e-12)
    assert summary["precision@3"] == pytest.approx(np.mean(precs), abs=1e-12)


def test_hand_computed_example() -> None:
    # request 7: the only click sits second; request 3: no click (left out); request 5: two clicks, one tie
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.3, 0.1])
    labels = np.array([0, 1, 0, 0, 0, 1, 0, 1], dtype=np.float64)
    groups = np.array([7, 7, 7, 3, 3, 5, 5, 5])
    out = ranking_metrics(scores, labels, groups, ks=(1, 2))
    # group 7: AUC 1/2, RR 1/2, nDCG@2 = (1/log2 3) / 1; group 5: positives at a 2-way tie (top) and last.
    # group 5 AUC: pairs (pos 0.3, neg 0.3) = 1/2, (pos 0.1, neg 0.3) = 0 → 1/4; weights 3 and 3.
    assert out["gauc"] == pytest.approx((0.5 + 0.25) / 2)
    # group 5 RR: the tied block holds 1 positive of 2 → E[1/rank] = (1 + 1/2) / 2.
    assert out["mrr"] == pytest.approx((0.5 + 0.75) / 2)
    # group 5 precision@1 = 1/2 (the tie), group 7 = 0.
    assert out["precision@1"] == pytest.approx(0.25)
    # group 5 nDCG@2: tie block mean gain 1/2 over discounts (1 + 1/log2 3); ideal 1 + 1/log2 3.
    ndcg7 = 1 / math.log2(3)
    assert out["ndcg@2"] == pytest.approx((ndcg7 + 0.5) / 2)
    assert out["num_groups"] == 3 and out["num_groups_with_positive"] == 2
    # overall: 3 positives, 5 negatives.
    assert out["auc"] == pytest.approx(roc_auc_score(labels, scores))


@st.composite
def impressions(draw: st.DrawFn) -> tuple[F64, F64, I64]:
    n = draw(st.integers(1, 60))
    scores = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, -3.0, 7.5]), min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0]), min_size=n, max_size=n))
    groups = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    return np.array(scores), np.array(labels), np.array(groups, dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(data=impressions())
def test_every_metric_lies_in_unit_interval(data: tuple[F64, F64, I64]) -> None:
    out = ranking_metrics(*data, ks=(1, 5))
    for name, value in out.items():
        if not name.startswith("num_") and not np.isnan(value):
            assert 0.0 <= value <= 1.0 + 1e-12, name


@settings(max_examples=100, deadline=None)
@given(data=impressions(), seed=st.integers(0, 2**31))
def test_row_order_and_group_labels_do_not_matter(data: tuple[F64, F64, I64], seed: int) -> None:
    scores, labels, groups = data
    rng = np.random.default_rng(seed)
    perm = rng.permutation(scores.size)
    relabel = rng.permutation(10)[groups] * 1000 - 7  # a different id for each group, order scrambled
    before = ranking_metrics(scores, labels, groups)
    after = ranking_metrics(scores[perm], labels[perm], relabel[perm])
    assert after == pytest.approx(before, nan_ok=True, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(data=impressions())
def test_a_perfect_ranking_scores_one(data: tuple[F64, F64, I64]) -> None:
    _, labels, groups = data
    out = ranking_metrics(labels, labels, groups)  # scores = gains: the ideal order, ties only among equals
    for name in ("auc", "gauc", "mrr", "ndcg@5", "ndcg@10"):
        assert np.isnan(out[name]) or out[name] == pytest.approx(1.0), name


def test_groups_without_both_classes_are_undefined_not_zero() -> None:
    gm = group_metrics([0.3, 0.2, 0.9], [0, 0, 1], [1, 1, 2])
    assert np.isnan(gm.auc).all()
    assert np.isnan(gm.mrr[0]) and gm.mrr[1] == 1.0
    assert np.isnan(gm.summary()["gauc"])
    assert np.isnan(auc([0.1, 0.2], [1, 1]))


@pytest.mark.parametrize(
    ("scores", "labels", "groups"),
    [([0.1, np.nan], [0, 1], [0, 0]), ([0.1, 0.2], [0, -1], [0, 0]), ([0.1], [0, 1], [0, 0]), ([], [], [])],
)
def test_bad_input_is_rejected(scores: list[float], labels: list[int], groups: list[int]) -> None:
    with pytest.raises(ValueError):
        group_metrics(scores, labels, groups)
