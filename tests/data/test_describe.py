"""`describe` numbers match what a direct count of the rows gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.data.describe import describe
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from tests.conftest import tiny_impressions


def test_describe_counts_and_rates(tmp_path: Path) -> None:
    src = tmp_path / "log"
    src.mkdir()
    imps = tiny_impressions(num_requests=4, slate=3)
    imps.write_parquet(src / "impressions.parquet")
    (src / "extra.txt").write_text("ignored")
    ds = import_source(import_tabular, src, tmp_path / "out", ImportOptions())
    stats = describe(ds)
    assert stats["impressions"] == 12
    assert stats["requests"] == 4
    assert stats["users"] == 2
    assert stats["items_shown"] == 6
    assert stats["clicks"] == 4
    assert stats["ctr"] == pytest.approx(4 / 12)
    assert stats["hide_rate"] == pytest.approx(4 / 12)
    assert stats["share_rate"] == 0
    assert stats["dwell_s_quantiles"]["p50"] == pytest.approx(30.0)
    assert stats["time_span"][0].startswith("2024-01-01T00:00:00")
    assert stats["time_span"][1].startswith("2024-01-01T03:00:00")
    assert stats["quarantined"] == 0
