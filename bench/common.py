"""Shared pieces of the training benchmarks: synthetic examples, child processes, statistics.

Synthetic examples carry the keys, dtypes and shapes that `feedrank.data.examples`
(`retrieval_examples`, `ranker_examples`) produce, with ids drawn uniformly from the
`FeatureConfig` table sizes and every history fully populated (`history_len` items per user):
the simulated worlds' histories are mostly short (median 2 items in the default world), which
would measure a much cheaper user tower than the one a 50-item history costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.data.history import COUNTER_NAMES

REPO = Path(__file__).resolve().parents[1]
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z, the simulator's default start
HOUR_US = 3_600_000_000


def build_world(out_dir: Path, preset: str = "small", seed: int = 0) -> Path:
    """Simulate a world, import it through the validating adapter and split it by time → split dir."""
    from feedrank.data.sources.base import ImportOptions, import_source
    from feedrank.data.sources.tabular import import_tabular
    from feedrank.data.split import SplitSpec, split_dataset
    from feedrank.sim import SimConfig, simulate

    simulate(SimConfig.preset(preset, seed=seed), out_dir / "sim", overwrite=True)
    data = import_source(import_tabular, out_dir / "sim", out_dir / "data", ImportOptions(overwrite=True))
    return Path(split_dataset(data, out_dir / "split", SplitSpec(), overwrite=True))


def _ids(rng: np.random.Generator, buckets: int, shape: int | tuple[int, ...]) -> torch.Tensor:
    """Hashed ids in [1, buckets): bucket 0 is padding / unknown and never drawn here."""
    return torch.from_numpy(rng.integers(1, buckets, size=shape, dtype=np.int64))


def _users_and_items(n: int, features: FeatureConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """User-tower and item-tower inputs of n rows, as `FeatureSpace.user_arrays` + `item_arrays`."""
    f, hist = features, (n, features.history_len)
    ts = START_US + rng.integers(0, 7 * 24 * HOUR_US, size=n)
    published = ts - rng.integers(0, 48 * HOUR_US, size=n)  # shown within 48 h of publication
    return {
        "user_id": _ids(rng, f.user_buckets, n),
        "user_demo": _ids(rng, f.demographic_buckets, (n, len(DEMOGRAPHICS))),
        "hist_item": _ids(rng, f.item_buckets, hist),
        "hist_cat": _ids(rng, f.category_buckets, hist),
        "hist_pub": _ids(rng, f.publisher_buckets, hist),
        "item_id": _ids(rng, f.item_buckets, n),
        "item_pub": _ids(rng, f.publisher_buckets, n),
        "item_cat": _ids(rng, f.category_buckets, n),
        "item_subcat": _ids(rng, f.subcategory_buckets, n),
        "item_type": _ids(rng, f.content_type_buckets, n),
        "item_fresh": _ids(rng, f.num_freshness_buckets, n),
        "item_published_us": torch.from_numpy(published),
        "ts_us": torch.from_numpy(ts),
    }


def _labels(n: int, rng: np.random.Generator, click_rate: float) -> dict[str, torch.Tensor]:
    click = rng.random(n) < click_rate
    long_dwell = click & (rng.random(n) < 0.5)
    share = click & (rng.random(n) < 0.03)
    hide = ~click & (rng.random(n) < 0.01)
    as_float = {"y_click": click, "y_long_dwell": long_dwell, "y_share": share, "y_hide": hide}
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in as_float.items()}


def synthetic_retrieval_examples(n: int, features: FeatureConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """n engaged examples keyed like `retrieval_examples(...)` plus the `weight` train_retrieval adds."""
    rng = np.random.default_rng(seed)
    out = _users_and_items(n, features, rng)
    out.update(_labels(n, rng, click_rate=1.0))  # every retrieval example is a click
    out["logq"] = torch.from_numpy(np.log(rng.uniform(1e-5, 1e-2, size=n)).astype(np.float32))
    out["weight"] = torch.ones(n, dtype=torch.float32)
    return out


def synthetic_ranker_examples(n: int, features: FeatureConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """n impressions keyed like `ranker_examples(...)`: 10-item slates, ~10% clicked."""
    rng = np.random.default_rng(seed)
    out = _users_and_items(n, features, rng)
    del out["ts_us"]  # the ranker reads the freshness bucket, not the time
    out.update(_labels(n, rng, click_rate=0.1))
    out["counters"] = torch.from_numpy(rng.random((n, len(COUNTER_NAMES)), dtype=np.float32))
    out["position"] = torch.from_numpy(np.arange(n, dtype=np.int64) % 10)
    out["request"] = torch.from_numpy(np.arange(n, dtype=np.int64) // 10 + 1)
    out["sample_rate"] = torch.ones(n, dtype=torch.float32)
    return out


def describe_examples(examples: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """key → (dtype, shape without the example axis): what must agree between real and synthetic."""
    return {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape[1:])) for k, v in examples.items()}


class _BudgetSpentError(Exception):
    """Raised from on_step to end a measurement that used up its time budget."""


def timed_train(task: Any, data: Any, config: Any, warmup: int, max_seconds: float) -> dict[str, Any]:
    """Run the real `feedrank.train.train` loop and time the optimizer steps after `warmup`.

    config.max_steps bounds the run; timing also stops once the timed steps took `max_seconds`.
    No evaluation; the final checkpoint is written after the last timed step, outside the window.
    Returns samples/s over the timed steps, the median and p90 step time and the peak RSS.
    """
    from feedrank.train import train
    from feedrank.train.batches import count_examples

    if warmup < 1:
        raise ValueError("timed_train needs at least one warm-up step (the first step starts the clock)")
    config = dataclasses.replace(config, progress=False, plot=False)
    batch = count_examples(next(iter(data.batches(0, 0, 1))))
    stamps: list[float] = []

    def on_step(info: object) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + 1 and stamps[-1] - stamps[warmup - 1] > max_seconds:
            raise _BudgetSpentError

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp, contextlib.suppress(_BudgetSpentError):
        train(task, data, config, Path(tmp), on_step=on_step)
    if len(stamps) <= warmup:
        raise ValueError(f"only {len(stamps)} steps ran: fewer than warmup + 1 = {warmup + 1}")
    step_s = np.diff(stamps[warmup - 1 :])
    return {
        "steps": int(step_s.size),
        "samples_per_s": step_s.size * batch / float(step_s.sum()),
        "step_ms_median": float(np.median(step_s)) * 1e3,
        "step_ms_p90": float(np.percentile(step_s, 90)) * 1e3,
        "peak_rss_mib": peak_rss_mib(),
    }


def current_rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process image so far, MiB.

    VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a child started
    by a parent holding 800 MiB reports at least 800 MiB however little it uses itself.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(
    script: Path, args: Sequence[str], *, python: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `script --child ARGS` in a fresh interpreter and parse the JSON on its last stdout line."""
    cmd = [python or sys.executable, str(script), "--child", *args]
    child_env = {**os.environ, **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max): with 3 to 5 noisy repeats a range says more than a standard deviation."""
    return (float(min(values)), float(max(values))) if values else (float("nan"), float("nan"))


def machine() -> dict[str, Any]:
    """What ran the benchmark: to paste beside each figure in BENCHMARKS.md."""
    return {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
