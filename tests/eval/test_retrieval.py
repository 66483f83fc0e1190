"""Retrieval metrics against a plain per-query loop, sklearn's NDCG, hand examples and invariants."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from feedrank.eval import retrieval
from feedrank.eval.retrieval import RelevantItems, retrieval_metrics

I64 = npt.NDArray[np.int64]


def random_case(seed: int, q: int = 300, width: int = 30, num_items: int = 80) -> tuple[I64, list[I64]]:
    """Lists with repeats and -1 padding; relevant sets of 0-12 items, sometimes repeated."""
    rng = np.random.default_rng(seed)
    top = rng.integers(0, num_items, (q, width))
    top[rng.random((q, width)) < 0.1] = -1
    relevant = [rng.integers(0, num_items, rng.integers(0, 13)) for _ in range(q)]
    return top, relevant


def brute_force(top: I64, relevant: list[I64], num_items: int, k: int) -> dict[str, float]:
    recall, ndcg, hit, rr = [], [], [], []
    for row, rel_items in zip(top.tolist(), relevant, strict=True):
        rel = set(rel_items.tolist())
        if not rel:
            continue
        seen: set[int] = set()
        hits = []
        for item in row:
            hits.append(item in rel and item not in seen)
            seen.add(item)
        found = sum(hits[:k])
        recall.append(found / len(rel))
        hit.append(float(found > 0))
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits[:k]) if h)
        ndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(rel), k))))
        rr.append(next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0))
    listed = {i for row in top[:, :k].tolist() for i in row if i >= 0}
    return {
        f"recall@{k}": float(np.mean(recall)),
        f"ndcg@{k}": float(np.mean(ndcg)),
        f"hit_rate@{k}": float(np.mean(hit)),
        "mrr": float(np.mean(rr)),
        f"coverage@{k}": len(listed) / num_items,
    }


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_plain_loop(seed: int) -> None:
    top, relevant = random_case(seed)
    summary = retrieval_metrics(top, relevant, num_items=80, ks=(1, 5, 30)).summary()
    for k in (1, 5, 30):
        expected = brute_force(top, relevant, 80, k)
        assert {n: summary[n] for n in expected} == pytest.approx(expected, abs=1e-12)


def test_chunked_evaluation_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    top, relevant = random_case(11)
    whole = retrieval_metrics(top, relevant, num_items=80, ks=(5, 10))
    monkeypatch.setattr(retrieval, "_CHUNK_CELLS", 7 * top.shape[1])  # 7 queries per chunk
    chunked = retrieval_metrics(top, relevant, num_items=80, ks=(5, 10))
    assert chunked.summary() == pytest.approx(whole.summary(), abs=1e-12)
    np.testing.assert_array_equal(chunked.recall[5], whole.recall[5])


def test_ndcg_matches_sklearn_on_full_catalog_scores() -> None:
    rng = np.random.default_rng(3)
    num_items, q, width = 40, 50, 15
    top = np.stack([rng.permutation(num_items)[:width] for _ in range(q)])
    relevant = [rng.choice(num_items, rng.integers(1, 20), replace=False) for _ in range(q)]
    truth = np.zeros((q, num_items))
    score = np.zeros((q, num_items))
    for i in range(q):
        truth[i, relevant[i]] = 1.0
        score[i, top[i]] = np.arange(width, 0, -1)  # listed items above every unlisted one (score 0)
    metrics = retrieval_metrics(top, relevant, num_items, ks=(5, 15))
    for k in (5, 15):
        expected = ndcg_score(truth, score, k=k)
        assert float(np.mean(metrics.ndcg[k])) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_example() -> None:
    top = np.array([[3, 1, 4, -1], [2, 2, 0, 1], [0, 1, 2, 3]])
    relevant = RelevantItems(offsets=np.array([0, 2, 3, 3]), items=np.array([1, 5, 2]))
    m = retrieval_metrics(top, relevant, num_items=6, ks=(1, 2, 4))
    # q0: relevant {1, 5}, hit at rank 2; q1: relevant {2}, hit at rank 1 (its repeat does not count);
    # q2: no relevant item → NaN, left out.
    np.testing.assert_allclose(m.recall[2][:2], [0.5, 1.0])
    np.testing.assert_allclose(m.recall[1][:2], [0.0, 1.0])
    np.testing.assert_allclose(m.mrr[:2], [0.5, 1.0])
    np.testing.assert_allclose(m.ndcg[4][:2], [(1 / math.log2(3)) / (1 + 1 / math.log2(3)), 1.0])
    assert np.isnan(m.recall[4][2]) and np.isnan(m.mrr[2])
    assert m.coverage == {1: 3 / 6, 2: 4 / 6, 4: 5 / 6}
    assert m.summary()["num_queries"] == 2


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), width=st.integers(1, 12), k=st.integers(1, 12))
def test_metrics_in_unit_interval_and_perfect_lists_score_one(seed: int, width: int, k: int) -> None:
    k = min(k, width)
    rng = np.random.default_rng(seed)
    num_items = 30
    relevant = [rng.choice(num_items, rng.integers(1, 6), replace=False) for _ in range(20)]
    top = rng.integers(-1, num_items, (20, width))
    for name, value in retrieval_metrics(top, relevant, num_items, ks=(k,)).summary().items():
        assert name == "num_queries" or 0.0 <= value <= 1.0 + 1e-12, name
    # A perfect list: the relevant items first, then padding.
    perfect = np.full((20, width), -1)
    for i, rel in enumerate(relevant):
        perfect[i, : min(rel.size, width)] = rel[:width]
    good = retrieval_metrics(perfect, relevant, num_items, ks=(k,))
    assert (
        np.allclose(good.ndcg[k], 1.0) and np.allclose(good.mrr, 1.0) and np.allclose(good.hit_rate[k], 1.0)
    )
    fits = np.array([r.size <= k for r in relevant])
    assert np.allclose(good.recall[k][fits], 1.0)


def test_default_cutoffs_are_those_that_fit() -> None:
    top = np.zeros((2, 60), dtype=np.int64)
    assert retrieval_metrics(top, [[0], [1]], num_items=2).ks == (10, 20, 50)


@pytest.mark.parametrize(
    ("top", "relevant", "ks"),
    [
        ([[0, 1]], [[0]], (3,)),  # K wider than the lists
        ([[0, 9]], [[0]], (1,)),  # item outside the catalog
        ([[0, 1]], [[0], [1]], (1,)),  # two relevant sets for one query
        ([[0, -2]], [[0]], (1,)),  # padding must be -1
    ],
)
def test_bad_input_is_rejected(top: list[list[int]], relevant: list[list[int]], ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        retrieval_metrics(top, relevant, num_items=3, ks=ks)
