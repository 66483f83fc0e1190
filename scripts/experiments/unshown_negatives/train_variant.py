"""Train, calibrate and bundle a ranker variant on a demo run's split and two-tower.

    python train_variant.py WORLD NAME [KEY=VALUE ...]

WORLD/NAME gets the ranker (the demo's ranker config with the overrides, as
bench/next_click_pooled.py --train builds it) and WORLD/b_NAME its bundle (unsigned). Nothing is
evaluated on the test part.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from feedrank.bundle import write_bundle
from feedrank.config import apply_overrides
from feedrank.pipeline import DemoConfig
from next_click_pooled import done, train_world_ranker


def main() -> None:
    world, name, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    start = time.time()
    if not done(world / name):
        train_world_ranker(world, name, apply_overrides(DemoConfig().ranker, overrides))
    print("trained", name, round(time.time() - start), "s", flush=True)
    bundle = world / f"b_{name}"
    if not bundle.exists():
        write_bundle(world / name, bundle)
    print("bundled", name, round(time.time() - start), "s", flush=True)


if __name__ == "__main__":
    main()
