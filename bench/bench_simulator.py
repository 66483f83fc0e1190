"""Benchmark the feed simulator: impressions per second and peak memory.

    .venv/bin/python bench/bench_simulator.py --impressions 10000000 --repeats 3

Each run simulates into a fresh temporary directory in a fresh Python process, so its peak RSS
(resource.getrusage ru_maxrss) is the simulator's alone. Prints a table and one JSON line with
the median over the runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_once(preset: str, impressions: int, seed: int) -> dict[str, Any]:
    """Simulate once in this process and measure it (the child side)."""
    from feedrank.sim import SimConfig, simulate

    config = SimConfig.preset(preset, num_impressions=impressions, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        started = time.perf_counter()
        ds = simulate(config, Path(tmp) / "sim")
        seconds = time.perf_counter() - started
        rows = ds.rows("impressions")
        disk = sum(p.stat().st_size for p in ds.path.rglob("*") if p.is_file())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "impressions": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_mib": peak_kib / 1024,
        "disk_mib": disk / 2**20,
    }


def run_child(preset: str, impressions: int, seed: int) -> dict[str, Any]:
    """Run `run_once` in a fresh interpreter and parse its JSON result."""
    cmd = [
        sys.executable, __file__, "--child", "--preset", preset,
        "--impressions", str(impressions), "--seed", str(seed),
    ]  # fmt: skip
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--preset", default="medium", help="world size preset (default: medium)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.preset, args.impressions, args.seed)))
        return

    runs = [run_child(args.preset, args.impressions, args.seed) for _ in range(args.repeats)]
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(
        f"{'run':>6} {'impressions':>12} {'seconds':>9} {'rows/s':>11} {'peak RSS MiB':>13} {'disk MiB':>9}"
    )
    for name, r in [*((str(i + 1), r) for i, r in enumerate(runs)), ("median", median)]:
        print(
            f"{name:>6} {r['impressions']:>12,.0f} {r['seconds']:>9.1f} {r['rows_per_s']:>11,.0f}"
            f" {r['peak_rss_mib']:>13,.0f} {r['disk_mib']:>9,.0f}"
        )
    summary = {
        "benchmark": "simulator",
        "preset": args.preset,
        "repeats": args.repeats,
        "median": median,
        "runs": runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
