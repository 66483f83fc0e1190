"""Fixtures shared by every test: paths to the real samples and tiny canonical frames."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import settings

# The real samples live outside the repository (../shared/data beside a checkout); a clone elsewhere
# finds them through FEEDRANK_SHARED_DATA or the workspace's fixed location.
_CANDIDATES = [
    Path(os.environ["FEEDRANK_SHARED_DATA"]) if os.environ.get("FEEDRANK_SHARED_DATA") else None,
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]


# Property tests check what an answer is, never how fast it comes: on a loaded shared box
# hypothesis' default 200 ms deadline failed correct code (a re-ranking step took 471 ms once).
settings.register_profile("feedrank", deadline=None)
settings.load_profile("feedrank")


def shared_sample(name: str) -> Path:
    """A real data sample from ../shared/data; skip (with the reason shown by -ra) when absent."""
    for base in _CANDIDATES:
        if base is not None and (base / name).exists():
            return base / name
    pytest.skip(f"real data sample {name!r} not found (set FEEDRANK_SHARED_DATA)")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`feedrank ARGS` in this process (no subprocess, no time limit): (exit status, stdout, stderr)."""
    from feedrank.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_chart(path: Path, min_width: int = 300, min_height: int = 200) -> None:
    """`path` is a PNG picture of at least that size that draws something: ink (pixels away from
    the background colour) over part of it, in several colours. A blank canvas, a file of PNG magic
    bytes or a tiny thumbnail fails."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert image.width >= min_width and image.height >= min_height, (path, image.size)
        rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    ink = float((np.abs(rgb - background).sum(axis=2) > 60).mean())
    assert 0.005 < ink < 0.95, (path, ink)  # something is drawn, and not a solid block
    assert len(colours) >= 8, (path, len(colours))  # lines, text and fills, not one flat colour


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


# Session fixtures that simulate a world and train both models on it (tests/integration/conftest.py):
# a test that needs one is in the slow lane, whatever its own duration (`scripts/check --fast`
# runs `-m "not slow"`; CI runs everything).
TRAINED_MODEL_FIXTURES = frozenset({"split_dir", "runs", "bundle_path"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINED_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process: on a small shared machine two threads contending with
    # other processes run many times slower than one, and the DDP tests spawn processes of their own.
    import torch

    torch.set_num_threads(1)
