"""AnnIndex against brute-force numpy: exact flat, IVF/HNSW recall, save/load, add/remove, edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.errors import ConfigError, DataError, SourceNotFoundError
from feedrank.index import AnnIndex, IndexSpec, recall_at_k
from tests.index.conftest import Catalog, K

IVF = IndexSpec("ivf", nlist=32, nprobe=4)
HNSW = IndexSpec("hnsw", hnsw_m=32, ef_construction=64, ef_search=128)
SPECS = [IndexSpec("flat"), IVF, HNSW]


def test_flat_returns_the_exact_top_k(catalog: Catalog) -> None:
    index = AnnIndex.build(IndexSpec("flat"), catalog.items)
    scores, ids = index.search(catalog.queries, K)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (len(catalog.queries), K)
    np.testing.assert_array_equal(ids, catalog.true_ids)
    np.testing.assert_allclose(scores, catalog.true_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("spec", "min_recall"), [(IVF, 0.95), (HNSW, 0.95)], ids=["ivf", "hnsw"])
def test_approximate_kinds_reach_a_stated_recall(
    catalog: Catalog, spec: IndexSpec, min_recall: float
) -> None:
    index = AnnIndex.build(spec, catalog.items)
    assert index.built == spec  # enough vectors: nothing capped
    scores, ids = index.search(catalog.queries, K)
    assert recall_at_k(ids, catalog.true_ids) >= min_recall
    # whatever is returned is scored correctly and in order
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", catalog.queries, catalog.items[ids]), rtol=1e-4
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_search_parameters_trade_recall_for_work(catalog: Catalog) -> None:
    ivf = AnnIndex.build(IVF, catalog.items)
    recalls = [recall_at_k(ivf.search(catalog.queries, K, nprobe=p)[1], catalog.true_ids) for p in (1, 4, 32)]
    assert recalls[0] < recalls[1] < recalls[2] == 1.0  # nprobe = nlist scans everything


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_save_load_round_trip_gives_identical_results(
    tmp_path: Path, catalog: Catalog, spec: IndexSpec
) -> None:
    index = AnnIndex.build(spec, catalog.items, np.arange(len(catalog.items)) + 1000)
    index.remove(np.arange(1000, 1100))  # exercise tombstones / compaction in what is saved
    index.save(tmp_path / "idx")
    loaded = AnnIndex.load(tmp_path / "idx")
    assert (loaded.spec, loaded.built, len(loaded)) == (index.spec, index.built, len(index))
    for a, b in zip(index.search(catalog.queries, K), loaded.search(catalog.queries, K), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary directory was renamed into place


def test_save_refuses_to_overwrite_and_load_names_bad_files(tmp_path: Path, catalog: Catalog) -> None:
    index = AnnIndex.build(IndexSpec("flat"), catalog.items[:50])
    index.save(tmp_path / "idx")
    with pytest.raises(DataError, match="already exists"):
        index.save(tmp_path / "idx")
    index.save(tmp_path / "idx", overwrite=True)
    with pytest.raises(SourceNotFoundError):
        AnnIndex.load(tmp_path / "missing")
    (tmp_path / "idx" / "index.json").write_text('{"format_version": 99}')
    with pytest.raises(DataError, match="format_version"):
        AnnIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "ids.npy").unlink()
    with pytest.raises(DataError, match=r"ids\.npy"):
        AnnIndex.load(tmp_path / "idx")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_removed_ids_never_come_back_and_k_stays_full(catalog: Catalog, spec: IndexSpec) -> None:
    index = AnnIndex.build(spec, catalog.items)
    gone = np.unique(catalog.true_ids[:, :30])  # the best items of every query
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0  # already gone: nothing happens
    assert len(index) == len(catalog.items) - len(gone)
    _, ids = index.search(catalog.queries, K)
    assert not np.isin(ids, gone).any()
    assert (ids >= 0).all()  # k results, all live
    assert all(len(np.unique(row)) == K for row in ids)
    index.add(catalog.queries[:1] * 100, [99_999])  # added after removals: found (hnsw: not filtered)
    assert index.search(catalog.queries[:1], 1)[1][0, 0] == 99_999


def test_hnsw_answers_full_rows_when_most_of_the_graph_is_dead(catalog: Catalog) -> None:
    index = AnnIndex.build(HNSW, catalog.items)
    survivors = np.arange(0, len(catalog.items), 40)  # 100 live items out of 4000
    index.remove(np.setdiff1d(np.arange(len(catalog.items)), survivors))
    assert index.num_tombstones == len(catalog.items) - len(survivors)
    _, ids = index.search(catalog.queries, K)
    assert (np.sort(ids, axis=1) == survivors).all()  # every live item, each once


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_added_items_are_found_and_re_adding_replaces(catalog: Catalog, spec: IndexSpec) -> None:
    n = len(catalog.items)
    index = AnnIndex.build(spec, catalog.items[: n // 2])
    index.add(catalog.items[n // 2 :], np.arange(n // 2, n))
    assert len(index) == n
    _, ids = index.search(catalog.queries, K)
    assert recall_at_k(ids, catalog.true_ids) >= 0.9  # incremental adds join the search
    # a strong new vector for an existing id replaces the old one instead of duplicating it
    index.add(catalog.queries[:1] * 100, [7])
    assert len(index) == n
    _, top = index.search(catalog.queries[:1], K)
    assert top[0, 0] == 7 and (top[0] == 7).sum() == 1
    assert np.isin(np.arange(n), index.ids()).all()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_fewer_items_than_k_pad_with_minus_one(spec: IndexSpec) -> None:
    rng = np.random.default_rng(0)
    index = AnnIndex.build(spec, rng.standard_normal((5, 8)).astype(np.float32), [10, 11, 12, 13, 14])
    scores, ids = index.search(rng.standard_normal((3, 8)), 8)
    assert (np.sort(ids[:, :5], axis=1) == [10, 11, 12, 13, 14]).all()
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    index.remove([10, 11, 12, 13, 14])
    scores, ids = index.search(rng.standard_normal((2, 8)), 3)
    assert (ids == -1).all() and len(index) == 0


def test_small_catalogs_cap_nlist_or_fall_back_to_flat(catalog: Catalog) -> None:
    capped = AnnIndex.build(IndexSpec("ivf", nlist=1024, nprobe=64), catalog.items[:400])
    assert (capped.built.kind, capped.built.nlist, capped.built.nprobe) == ("ivf", 10, 10)
    tiny = AnnIndex.build(IndexSpec("ivf", nlist=1024), catalog.items[:50])
    assert tiny.built.kind == "flat" and tiny.spec.kind == "ivf"
    _, ids = tiny.search(catalog.queries, 10)
    np.testing.assert_array_equal(
        ids, AnnIndex.build(IndexSpec("flat"), catalog.items[:50]).search(catalog.queries, 10)[1]
    )
    empty = AnnIndex.build(IndexSpec("ivf"), np.zeros((0, 32), np.float32))
    empty.add(catalog.items[:10], np.arange(10))
    assert len(empty) == 10 and empty.built.kind == "flat"


def test_bad_input_raises_errors_that_say_what_is_wrong(catalog: Catalog) -> None:
    index = AnnIndex.build(IndexSpec("flat"), catalog.items[:10])
    with pytest.raises(DataError, match=r"queries: expected a \(N, 32\)"):
        index.search(catalog.queries[:, :5], 3)
    with pytest.raises(DataError, match="positive integer"):
        index.search(catalog.queries, 0)
    with pytest.raises(DataError, match="more than once"):
        index.add(catalog.items[:2], [3, 3])
    with pytest.raises(DataError, match=">= 0"):
        index.add(catalog.items[:1], [-1])
    bad = catalog.items[:2].copy()
    bad[1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        index.add(bad, [20, 21])
    with pytest.raises(ConfigError, match="nlist"):
        IndexSpec("ivf", nlist=0)
    with pytest.raises(ConfigError, match="kind"):
        IndexSpec("annoy")  # type: ignore[arg-type]
