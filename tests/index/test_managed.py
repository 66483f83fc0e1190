"""ManagedIndex: rebuild policy (share and age, with a fake clock), atomic swap under load, counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.errors import ConfigError
from feedrank.index import AnnIndex, IndexSpec, ManagedIndex, RebuildPolicy
from feedrank.index.managed import Source
from tests.index.conftest import Catalog, K

SPEC = IndexSpec("hnsw", hnsw_m=16, ef_construction=32, ef_search=64)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def managed(
    catalog: Catalog,
    n: int,
    *,
    source: Source | None = None,
    clock: Callable[[], float] = time.monotonic,
    background: bool = True,
    auto_rebuild: bool = True,
) -> ManagedIndex:
    """An HNSW over the first n items; rebuilds past 20% added or removed, or after an hour."""
    return ManagedIndex(
        AnnIndex.build(SPEC, catalog.items[:n]),
        RebuildPolicy(max_added_share=0.2, max_removed_share=0.2, max_age_s=3600),
        source=source,
        clock=clock,
        background=background,
        auto_rebuild=auto_rebuild,
    )


def test_a_rebuild_starts_when_the_added_share_passes_the_threshold(catalog: Catalog) -> None:
    m = managed(catalog, 1000, background=False)
    m.add(catalog.items[1000:1200], np.arange(1000, 1200))  # exactly 20%: not past it
    assert m.stats().rebuilds == 0 and m.rebuild_reason() is None
    m.add(catalog.items[1200:1201], [1200])
    stats = m.stats()
    assert stats.rebuilds == 1 and stats.size == stats.size_at_build == 1201
    assert stats.added_since_build == 0 and stats.adds == 201
    assert m.index.num_tombstones == 0 and len(m) == 1201


def test_a_rebuild_starts_when_the_removed_share_passes_the_threshold(catalog: Catalog) -> None:
    m = managed(catalog, 1000, background=False)
    m.remove(np.arange(150))
    assert m.stats().rebuilds == 0 and m.index.num_tombstones == 150
    m.remove(np.arange(150, 250))
    assert m.stats().rebuilds == 1 and m.index.num_tombstones == 0 and len(m) == 750
    assert m.stats().removes == 250


def test_a_rebuild_starts_when_the_index_is_too_old(catalog: Catalog) -> None:
    clock = FakeClock()
    m = managed(catalog, 500, background=False, clock=clock)
    clock.now += 3599
    assert m.maybe_rebuild() is None
    clock.now += 2
    assert m.maybe_rebuild() == "age 3601 s > 3600 s"
    assert m.stats().rebuilds == 1 and m.stats().built_at == clock.now
    assert m.maybe_rebuild() is None  # young again


def test_a_rebuild_grows_a_small_ivf_into_the_lists_it_asked_for(catalog: Catalog) -> None:
    m = ManagedIndex(AnnIndex.build(IndexSpec("ivf", nlist=16), catalog.items[:40]), background=False)
    assert m.index.built.kind == "flat"
    m.add(catalog.items[40:2000], np.arange(40, 2000))
    assert (m.index.built.kind, m.index.built.nlist) == ("ivf", 16)


def test_searches_during_a_background_rebuild_never_fail(catalog: Catalog) -> None:
    """Searchers hammer the index while a rebuild runs, items are added and removed, and it swaps."""
    n = 2000
    release = threading.Event()
    reads = 0

    def source() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        nonlocal reads
        reads += 1
        release.wait(10)  # hold the rebuild open until the test has changed the catalog
        return catalog.items[:n], np.arange(n)

    m = managed(catalog, n, source=source, auto_rebuild=False)
    removed = np.arange(0, 100)
    errors: list[BaseException] = []
    counts = [0, 0, 0, 0]
    stop = threading.Event()

    def search_forever(slot: int) -> None:
        try:
            while not stop.is_set():
                _, ids = m.search(catalog.queries, K)
                assert ((ids >= 0) & (ids < len(catalog.items))).all()  # valid ids, rows full
                counts[slot] += 1
        except BaseException as exc:  # report any failure to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=search_forever, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    assert m.rebuild(reason="test") and m.stats().rebuilding
    assert not m.rebuild()  # one at a time
    m.add(catalog.items[n : n + 300], np.arange(n, n + 300))  # arrive during the rebuild
    m.remove(removed)
    old = m.index
    before = counts.copy()
    release.set()
    assert m.wait_for_rebuild(timeout=30)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert all(c > b for c, b in zip(counts, before, strict=True))  # searches ran around the swap
    stats = m.stats()
    assert m.index is not old and reads == 1 and stats.rebuilds == 1 and not stats.rebuilding
    # the changes made during the rebuild were replayed onto the new index
    assert stats.size == n + 300 - len(removed) == len(m.index)
    assert stats.added_since_build == 300 and stats.removed_since_build == len(removed)
    live = m.index.ids()
    assert np.isin(np.arange(n, n + 300), live).all() and not np.isin(removed, live).any()


def test_a_failed_background_rebuild_keeps_the_old_index(catalog: Catalog) -> None:
    def broken() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        raise OSError("embeddings store unreachable")

    m = managed(catalog, 300, source=broken)
    old = m.index
    m.rebuild()
    assert m.wait_for_rebuild(timeout=30)
    stats = m.stats()
    assert m.index is old and stats.rebuilds == 0 and not stats.rebuilding
    assert stats.last_error == "OSError: embeddings store unreachable"
    with pytest.raises(OSError):
        ManagedIndex(old, source=broken, background=False).rebuild()


def test_swap_replaces_the_index_and_drops_a_stale_rebuild(catalog: Catalog) -> None:
    release = threading.Event()

    def slow() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        release.wait(10)
        return catalog.items[:300], np.arange(300)

    m = managed(catalog, 300, source=slow)
    m.rebuild()
    bundle = AnnIndex.build(IndexSpec("flat"), catalog.items[:50])
    m.swap(bundle)
    release.set()
    assert m.wait_for_rebuild(timeout=30)
    assert m.index is bundle and m.stats().rebuilds == 0 and m.stats().size_at_build == 50


def test_policy_values_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_age_s"):
        RebuildPolicy(max_age_s=0)
