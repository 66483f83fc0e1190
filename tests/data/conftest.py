"""Helpers for the source-adapter tests: read back the quarantine and the ledger of a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feedrank.data.dataset import QUARANTINE_FILE, Dataset
from feedrank.data.quarantine import BadRow


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
