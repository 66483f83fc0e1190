"""Feed diversity metrics: hand formulas, known cases, brute force, and bounds (Hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedrank.data.features import US_PER_HOUR
from feedrank.data.timeline import NO_TIME
from feedrank.eval.diversity import (
    ItemArrays,
    catalog_coverage,
    clickbait_share,
    compare_rerankings,
    distinct_publishers,
    diversity_metrics,
    gini,
    intra_list_diversity,
    mean_age_h,
    publisher_exposure,
    publisher_exposure_gini,
)

NOW = 1_700_000_000_000_000


def gini_by_pairs(x: npt.ArrayLike) -> float:
    """The textbook definition: mean absolute difference over all ordered pairs / (2 · mean)."""
    v = np.asarray(x, dtype=np.float64)
    return float(np.abs(v[:, None] - v[None, :]).sum() / (2 * v.size**2 * v.mean()))


def random_world(seed: int, num_items: int = 40, q: int = 12, k: int = 6) -> tuple[np.ndarray, ItemArrays]:
    rng = np.random.default_rng(seed)
    feeds = np.stack([rng.permutation(num_items)[:k] for _ in range(q)])
    feeds[rng.random(feeds.shape) < 0.15] = -1
    items = ItemArrays(
        publisher=rng.integers(0, 7, num_items),
        embeddings=rng.normal(size=(num_items, 5)).astype(np.float32),
        published_us=np.where(
            rng.random(num_items) < 0.2, NO_TIME, NOW - rng.integers(0, 48 * US_PER_HOUR, num_items)
        ),
        clickbait=rng.random(num_items) < 0.2,
    )
    return feeds, items


@pytest.mark.parametrize("seed", range(5))
def test_gini_matches_the_pairwise_formula(seed: int) -> None:
    x = np.random.default_rng(seed).integers(0, 20, 30)
    assert gini(x) == pytest.approx(gini_by_pairs(x), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_gini_known_cases(n: int) -> None:
    assert gini(np.full(n, 7.0)) == pytest.approx(0.0, abs=1e-12)
    one_has_all = np.zeros(n)
    one_has_all[-1] = 10
    assert gini(one_has_all) == pytest.approx((n - 1) / n)
    assert gini([1, 3]) == pytest.approx(0.25)  # |1 - 3|·2 / (2 · 4 · 2)
    assert np.isnan(gini(np.zeros(n)))


def test_publisher_gini_counts_publishers_without_impressions() -> None:
    publisher = np.array([0, 0, 1, 2, 3])  # four publishers in the catalog
    only_publisher_0 = np.array([[0, 1], [1, -1]])
    assert publisher_exposure(only_publisher_0, publisher).tolist() == [3, 0, 0, 0]
    assert publisher_exposure_gini(only_publisher_0, publisher) == pytest.approx(3 / 4)
    assert publisher_exposure_gini(np.array([[0, 2], [3, 4]]), publisher) == pytest.approx(0.0)


@given(counts=st.lists(st.integers(0, 1000), min_size=1, max_size=50))
def test_gini_bounds(counts: list[int]) -> None:
    g = gini(counts)
    if sum(counts) == 0:
        assert np.isnan(g)
    else:
        assert 0.0 <= g <= (len(counts) - 1) / len(counts) + 1e-12
        assert g == pytest.approx(gini_by_pairs(counts), abs=1e-9)


def test_intra_list_diversity_by_hand() -> None:
    emb = np.array([[1, 0], [3, 0], [0, 2], [-1, 0], [0, 0]], dtype=np.float32)
    feeds = np.array([[0, 1, -1], [0, 2, -1], [0, 3, -1], [0, 1, 2], [2, -1, -1], [0, 4, -1]])
    ild = intra_list_diversity(feeds, emb)
    # identical directions 0, orthogonal 1, opposite 2, (0 + 1 + 1) / 3, one item undefined, zero vector 1.
    assert ild[:4] == pytest.approx([0.0, 1.0, 2.0, 2 / 3])
    assert np.isnan(ild[4]) and ild[5] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_intra_list_diversity_matches_brute_force(seed: int) -> None:
    feeds, items = random_world(seed)
    assert items.embeddings is not None
    unit = items.embeddings / np.linalg.norm(items.embeddings, axis=1, keepdims=True)
    for feed, got in zip(feeds, intra_list_diversity(feeds, items.embeddings), strict=True):
        rows = feed[feed >= 0]
        pairs = [1 - float(unit[a] @ unit[b]) for a, b in itertools.combinations(rows, 2)]
        assert got == pytest.approx(np.mean(pairs), abs=1e-6) if pairs else np.isnan(got)


def test_identical_items_have_no_diversity() -> None:
    emb = np.tile(np.array([[0.3, -1.2, 2.0]], dtype=np.float32), (6, 1))
    assert intra_list_diversity(np.array([[0, 1, 2, 3, 4, 5]]), emb)[0] == pytest.approx(0.0, abs=1e-6)


def test_counts_coverage_clickbait_and_age_by_hand() -> None:
    publisher = np.array([0, 0, 1, 2, 2, 3])
    feeds = np.array([[0, 1, 2], [3, 4, -1], [-1, -1, -1]])
    assert distinct_publishers(feeds, publisher).tolist() == [2, 1, 0]
    assert catalog_coverage(feeds, 6) == pytest.approx(5 / 6)
    assert clickbait_share(feeds, np.array([1, 0, 0, 1, 1, 0], dtype=bool)) == pytest.approx(3 / 5)
    h = US_PER_HOUR
    published = np.array([NOW - 2 * h, NOW - 4 * h, NO_TIME, NOW + h, NOW - 6 * h, NOW])
    # Ages 2, 4, unknown | 0 (published after the request), 6 → mean 3.
    assert mean_age_h(feeds, published, NOW) == pytest.approx(3.0)
    assert mean_age_h(feeds, published, [NOW + h, NOW, NOW]) == pytest.approx((3 + 5 + 0 + 6) / 4)


@given(seed=st.integers(0, 2**32 - 1))
def test_every_metric_stays_in_its_bounds(seed: int) -> None:
    feeds, items = random_world(seed, num_items=15, q=5, k=4)
    m = diversity_metrics(feeds, items, NOW)
    assert 0.0 <= m["catalog_coverage"] <= 1.0
    assert 0.0 <= m["publisher_gini"] < 1.0
    assert 0.0 <= m["clickbait_share"] <= 1.0
    assert m["mean_age_h"] >= 0.0 or np.isnan(m["mean_age_h"])
    assert 0.0 <= m["intra_list_diversity"] <= 2.0 or np.isnan(m["intra_list_diversity"])
    lengths = (feeds >= 0).sum(axis=1)
    assert (distinct_publishers(feeds, items.publisher) <= lengths).all()


def test_padding_changes_nothing() -> None:
    feeds, items = random_world(0)
    padded = np.concatenate([feeds, np.full((feeds.shape[0], 3), -1)], axis=1)
    assert diversity_metrics(padded, items, NOW) == pytest.approx(
        diversity_metrics(feeds, items, NOW), nan_ok=True
    )


def test_compare_rerankings_gives_one_row_per_configuration() -> None:
    feeds, items = random_world(1)
    one_publisher = np.flatnonzero(items.publisher == items.publisher[0])[:1]
    table = compare_rerankings(
        {"ranker": feeds, "same item": np.tile(one_publisher, (feeds.shape[0], 2))}, items
    )
    assert list(table) == ["ranker", "same item"]
    assert table["same item"]["distinct_publishers"] == 1.0
    assert table["same item"]["intra_list_diversity"] == pytest.approx(0.0, abs=1e-6)
    assert table["ranker"]["intra_list_diversity"] > 0.5
    assert "mean_age_h" not in table["ranker"]  # no request times given
    with pytest.raises(ValueError, match="same requests"):
        compare_rerankings({"a": feeds, "b": feeds[:2]}, items)


def test_bad_feeds_are_rejected() -> None:
    with pytest.raises(ValueError, match="catalog rows"):
        catalog_coverage(np.array([[0, 7]]), 5)
    with pytest.raises(ValueError, match="2-d integer"):
        catalog_coverage(np.array([0.5, 1.0]), 5)
