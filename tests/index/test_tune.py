"""tune(): the chosen setting meets the target against exact results, latency is reported."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.errors import ConfigError
from feedrank.index import AnnIndex, IndexSpec, Kind, TuneCandidates, recall_at_k, render_tune_report, tune
from feedrank.index.measure import time_search
from tests.index.conftest import Catalog, K

GRID = TuneCandidates(
    nlist=32, nprobe=(1, 2, 4, 8, 32), hnsw_m=16, ef_construction=32, ef_search=(16, 128, 256)
)


def test_tune_picks_the_cheapest_setting_that_meets_the_target(catalog: Catalog) -> None:
    report = tune(catalog.items, catalog.queries, 0.9, K, GRID, repeats=1, num_single=5)
    assert report.best is not None and report.best.recall >= 0.9
    assert report.best_spec == report.best.spec
    # the recall in the report is the recall against brute-force numpy
    index = AnnIndex.build(report.best.spec, catalog.items)
    found = index.search(catalog.queries, K, nprobe=report.best.spec.nprobe)[1]
    assert recall_at_k(found, catalog.true_ids) == pytest.approx(report.best.recall)
    ivf = report.chosen("ivf")
    assert ivf is not None
    cheaper = [t for t in report.trials if t.spec.kind == "ivf" and t.spec.nprobe < ivf.spec.nprobe]
    assert cheaper and all(t.recall < 0.9 for t in cheaper)
    # efSearch below k is raised to k, so 16 is not measured as a setting of its own
    assert sorted(t.spec.ef_search for t in report.trials if t.spec.kind == "hnsw") == [100, 128, 256]
    for trial in (report.exact, *report.trials):
        lat = trial.latency
        assert 0 < lat.single_median_ms <= lat.single_p99_ms and lat.batch_qps > 0
    assert report.exact.recall == 1.0 and report.build_s.keys() == {"flat", "ivf", "hnsw"}
    table = render_tune_report(report)
    assert "chosen: " + report.best.spec.describe() in table
    assert len(table.splitlines()) == 4 + len(report.trials) + 1


def test_an_unreachable_target_chooses_nothing_and_says_so(catalog: Catalog) -> None:
    grid = TuneCandidates(kinds=("ivf",), nlist=32, nprobe=(1, 2))
    prebuilt: dict[Kind, AnnIndex] = {"flat": AnnIndex.build(IndexSpec("flat"), catalog.items)}
    report = tune(catalog.items, catalog.queries, 0.99, K, grid, repeats=1, num_single=3, indexes=prebuilt)
    assert report.best is None and report.chosen("ivf") is None
    assert np.isnan(report.build_s["flat"]) and report.build_s["ivf"] > 0
    assert "no setting reached recall 0.99" in render_tune_report(report)
    with pytest.raises(ConfigError):
        tune(catalog.items, catalog.queries, 1.5)


def test_recall_and_latency_measures() -> None:
    truth = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    found = np.array([[3, 9, 1, -1], [-1, -1, -1, -1]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 3 + 0) / 2)
    rng = np.random.default_rng(0)
    index = AnnIndex.build(IndexSpec("flat"), rng.standard_normal((100, 4)).astype(np.float32))
    lat = time_search(index, rng.standard_normal((10, 4)).astype(np.float32), 5, repeats=2, num_single=4)
    assert lat.single_median_ms > 0 and lat.batch_qps > 0
