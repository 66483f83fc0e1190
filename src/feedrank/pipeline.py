"""The main job: the whole path from the simulated world to a described, split dataset.

`run_demo` is what the README's first command runs. Each step is one library call, in the order
data takes through the system (see DESIGN.md); later stages (training, evaluation, bundling,
serving) join here as they land.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedrank.data.dataset import Dataset
from feedrank.data.describe import describe
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.sim import SimConfig, simulate

Progress = Callable[[str, int, int | None], None]  # (step, done, total)


@dataclass
class DemoResult:
    out_dir: Path
    stats: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(out_dir: Path, sim_config: SimConfig, *, progress: Progress | None = None) -> DemoResult:
    """Simulate → import (validating every row) → split by time → describe each part."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda step, done, total: None)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    sim_dir = out_dir / "sim"
    simulate(
        sim_config,
        sim_dir,
        overwrite=True,
        progress=lambda n: report("simulate", n, sim_config.num_impressions),
    )
    seconds["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("import", 0, None)
    data = import_source(import_tabular, sim_dir, out_dir / "data", ImportOptions(overwrite=True))
    seconds["import"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("split", 0, None)
    split_dir = split_dataset(data, out_dir / "split", SplitSpec(), overwrite=True)
    seconds["split"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("describe", 0, None)
    stats = {"all": describe(Dataset.open(data.path))}
    stats.update({part: describe(ds) for part, ds in open_split(split_dir).items()})
    seconds["describe"] = time.perf_counter() - t0
    return DemoResult(out_dir=out_dir, stats=stats, seconds=seconds)
