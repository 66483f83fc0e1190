"""Two-tower training throughput of the current code, one fresh process per call.

    .venv/bin/python bench/two_tower_throughput.py 2 catalog     # threads, ids: catalog | uniform

The case is bench_training.py's: the real training loop and RetrievalTask, batch 1,024, d = 128,
full 50-item histories, 5 warm-up steps then up to 30 timed steps. `catalog` draws item ids from a
5,300-item catalog with the default world's popularity skew (about 3,100 distinct items per batch,
as real batches have); `uniform` draws them uniformly over the hashed tables (a worst case for the
sparse optimizer: every id is distinct). Prints one JSON line; run it several times and take the
median (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_training as bt


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    ids = sys.argv[2] if len(sys.argv) > 2 else "catalog"
    catalog_items = bt.CATALOG_ITEMS if ids == "catalog" else 0
    result = bt.measure("two_tower", "off", threads, 1024, 5, 30, 30.0, 0, catalog_items)
    keys = ("steps", "samples_per_s", "step_ms_median", "step_ms_p90")
    print(json.dumps({"threads": threads, "ids": ids} | {k: result[k] for k in keys}))


if __name__ == "__main__":
    main()
