"""Fixtures shared by every test: paths to the real samples and tiny canonical frames."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

# The real samples live outside the repository (../shared/data beside a checkout); a clone elsewhere
# finds them through FEEDRANK_SHARED_DATA or the workspace's fixed location.
_CANDIDATES = [
    Path(os.environ["FEEDRANK_SHARED_DATA"]) if os.environ.get("FEEDRANK_SHARED_DATA") else None,
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]


def shared_sample(name: str) -> Path:
    """A real data sample from ../shared/data; skip (with the reason shown by -ra) when absent."""
    for base in _CANDIDATES:
        if base is not None and (base / name).exists():
            return base / name
    pytest.skip(f"real data sample {name!r} not found (set FEEDRANK_SHARED_DATA)")


def tiny_impressions(num_requests: int = 6, slate: int = 3, start: datetime | None = None) -> pl.DataFrame:
    """Requests one hour apart, `slate` items each; item i of request r is 'i{r + i}'."""
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for r in range(num_requests):
        for p in range(slate):
            rows.append(
                {
                    "request_id": f"r{r}",
                    "user_id": f"u{r % 2}",
                    "item_id": f"i{r + p}",
                    "ts": start + timedelta(hours=r),
                    "position": p,
                    "clicked": p == 0,
                    "dwell_s": 30.0 if p == 0 else None,
                    "shared": False,
                    "hidden": p == 2,
                }
            )
    return pl.DataFrame(rows)


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process: on a small shared machine two threads contending with
    # other processes run many times slower than one, and the DDP tests spawn processes of their own.
    import torch

    torch.set_num_threads(1)
