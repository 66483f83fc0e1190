"""Helpers for the data tests: read back the quarantine and the ledger of a dataset; the tiny
simulated world, split, that the example tests build from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feedrank.data.dataset import QUARANTINE_FILE, Dataset
from feedrank.data.features import FeatureConfig
from feedrank.data.quarantine import BadRow
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.sim import SimConfig, simulate

# Small hashed tables for the example tests' tiny world.
EXAMPLE_FEATURES = FeatureConfig(user_buckets=2_000, item_buckets=2_000)


def tiny_split(root: Path) -> dict[str, Dataset]:
    """The tiny simulated world (seed 5) imported and split by time under `root`: part → dataset."""
    simulate(SimConfig.preset("tiny", seed=5), root / "sim")
    data = import_source(import_tabular, root / "sim", root / "data", ImportOptions())
    return open_split(split_dataset(data, root / "split", SplitSpec()))


def quarantine_records(ds: Dataset) -> list[dict[str, Any]]:
    """The records of DIR/quarantine.jsonl, in file order ([] when nothing was quarantined)."""
    path = ds.path / QUARANTINE_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def bad_row_message(record: dict[str, Any]) -> str:
    """The message --strict gives for the same bad row."""
    return BadRow(**record).message()


def ledger(ds: Dataset) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(file, unit) -> (read, kept, quarantined) from the manifest; every row must reconcile."""
    rows: dict[tuple[str, str], tuple[int, int, int]] = {}
    for r in ds.manifest["reconciliation"]:
        assert r["read"] == r["kept"] + r["quarantined"], r
        rows[(r["file"], r["unit"])] = (r["read"], r["kept"], r["quarantined"])
    return rows


def assert_no_output(out: Path) -> None:
    """A failed import leaves neither the dataset directory nor its temporary sibling."""
    assert not out.exists()
    assert not list(out.parent.glob(f"{out.name}.tmp-*"))
