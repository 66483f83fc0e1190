"""Shared pieces of the training benchmarks: synthetic examples, child processes, statistics.

Synthetic examples carry the keys, dtypes and shapes of what train_retrieval and train_ranker
train on (`feedrank.data.examples.retrieval_examples` with the default 9 hard negatives of a
10-item slate, `ranker_examples` with its requests, and the catalog the frozen towers embed),
with ids drawn uniformly from the `FeatureConfig` table sizes and every history fully populated
(`history_len` items per user): the simulated worlds' histories are mostly short (median 2 items
per training click in the default world), which would measure a much cheaper user tower than
the one a 50-item history costs.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedrank.candidates import SOURCE_FEATURES
from feedrank.data.example_arrays import RequestArrays
from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.data.history import RANKER_FEATURES
from feedrank.models.inputs import ItemInputs, UserInputs, as_tensor
from feedrank.train.batch_types import RankerBatch, RetrievalBatch

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


@dataclass(frozen=True)
class Catalog:
    """A finite catalog: each item's id bucket and content features, and how popular it is.

    With `catalog_items > 0` the synthetic examples draw items (shown, clicked, in histories) from
    it, so batches repeat items as real ones do: in the default world a batch of 1,024 clicks
    holds ~9,850 item slots (the clicks and their slates' other items) over ~3,000 distinct items;
    5,300 items (the default world's catalog) with popularity ∝ rank^-0.8 gives ~3,100.
    """

    fields: dict[str, np.ndarray]  # item_id, item_pub, item_cat, item_subcat, item_type: (C,) int64
    popularity: np.ndarray  # (C,) probabilities

    @classmethod
    def make(
        cls, features: FeatureConfig, num_items: int, rng: np.random.Generator, zipf: float = 0.8
    ) -> Catalog:
        f = features
        fields = {
            "item_id": rng.choice(np.arange(1, f.item_buckets), size=num_items, replace=False),
            "item_pub": rng.integers(1, f.publisher_buckets, size=num_items),
            "item_cat": rng.integers(1, f.category_buckets, size=num_items),
            "item_subcat": rng.integers(1, f.subcategory_buckets, size=num_items),
            "item_type": rng.integers(1, f.content_type_buckets, size=num_items),
        }
        weights = 1.0 / np.arange(1, num_items + 1) ** zipf
        return cls(fields, weights / weights.sum())

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        rows = rng.choice(self.popularity.size, size=shape, p=self.popularity)
        return {k: torch.from_numpy(v[rows]) for k, v in self.fields.items()}


def _users(
    n: int, features: FeatureConfig, rng: np.random.Generator, catalog: Catalog | None = None
) -> dict[str, torch.Tensor]:
    """User-tower inputs of n users, as `FeatureSpace.user_arrays`: every history full."""
    f, hist = features, (n, features.history_len)
    if catalog is not None:
        drawn = catalog.draw(rng, hist)
        history = {
            "hist_item": drawn["item_id"],
            "hist_cat": drawn["item_cat"],
            "hist_pub": drawn["item_pub"],
        }
    else:
        history = {
            "hist_item": _ids(rng, f.item_buckets, hist),
            "hist_cat": _ids(rng, f.category_buckets, hist),
            "hist_pub": _ids(rng, f.publisher_buckets, hist),
        }
    return {
        "user_id": _ids(rng, f.user_buckets, n),
        "user_demo": _ids(rng, f.demographic_buckets, (n, len(DEMOGRAPHICS))),
        **history,
    }


def _items(
    ts: np.ndarray,
    features: FeatureConfig,
    rng: np.random.Generator,
    width: int = 0,
    catalog: Catalog | None = None,
) -> dict[str, torch.Tensor]:
    """Item-tower inputs seen at times ts (N,), as `FeatureSpace.item_arrays`: (N,) fields, or
    (N, width) when width > 0; every item shown within 48 h of its publication."""
    f = features
    shape: tuple[int, ...] = (ts.size, width) if width else (ts.size,)
    seen = np.repeat(ts[:, None], width, axis=1) if width else ts
    published = seen - rng.integers(0, 48 * HOUR_US, size=shape)
    if catalog is not None:
        content = catalog.draw(rng, shape)
    else:
        content = {
            "item_id": _ids(rng, f.item_buckets, shape),
            "item_pub": _ids(rng, f.publisher_buckets, shape),
            "item_cat": _ids(rng, f.category_buckets, shape),
            "item_subcat": _ids(rng, f.subcategory_buckets, shape),
            "item_type": _ids(rng, f.content_type_buckets, shape),
        }
    return {
        **content,
        "item_fresh": _ids(rng, f.num_freshness_buckets, shape),
        "item_published_us": torch.from_numpy(published),
    }


def _labels(n: int, rng: np.random.Generator, click_rate: float) -> dict[str, torch.Tensor]:
    click = rng.random(n) < click_rate
    long_dwell = click & (rng.random(n) < 0.5)
    share = click & (rng.random(n) < 0.03)
    hide = ~click & (rng.random(n) < 0.01)
    as_float = {"y_click": click, "y_long_dwell": long_dwell, "y_share": share, "y_hide": hide}
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in as_float.items()}


def _times(n: int, rng: np.random.Generator) -> np.ndarray:
    return START_US + rng.integers(0, 7 * 24 * HOUR_US, size=n)


def synthetic_retrieval_examples(
    n: int, features: FeatureConfig, seed: int = 0, hard_negatives: int = 9, catalog_items: int = 0
) -> RetrievalBatch:
    """n clicks shaped like train_retrieval's batches: `retrieval_examples(...)` with the default
    hard negatives (the other items of a 10-item slate: 9 `shown` items, all real) plus `weight`.
    Ids uniform over the tables, or drawn from a `Catalog` of `catalog_items` items when > 0."""
    rng = np.random.default_rng(seed)
    catalog = Catalog.make(features, catalog_items, rng) if catalog_items > 0 else None
    ts = _times(n, rng)
    users, items = _users(n, features, rng, catalog), _items(ts, features, rng, catalog=catalog)
    _labels(n, rng, click_rate=1.0)  # drawn, not kept: the draws that follow stay as they were measured
    logq = torch.from_numpy(np.log(rng.uniform(1e-5, 1e-2, size=n)).astype(np.float32))
    shown = _items(ts, features, rng, width=hard_negatives, catalog=catalog) if hard_negatives > 0 else None
    return RetrievalBatch(
        user=UserInputs.from_arrays(users),
        item=ItemInputs.from_arrays(items),
        ts_us=torch.from_numpy(ts),
        logq=logq,
        weight=torch.ones(n, dtype=torch.float32),
        shown=None if shown is None else ItemInputs.from_arrays(shown),
    )


@dataclass(frozen=True)
class SyntheticRequests:
    """What train_ranker holds per request: the user-tower inputs, and (for the source replay) the
    user's row and the request's time."""

    user: UserInputs  # (R,) / (R, L)
    user_row: torch.Tensor  # (R,) int64
    ts_us: torch.Tensor  # (R,) int64

    @classmethod
    def from_arrays(cls, requests: RequestArrays) -> SyntheticRequests:
        """The real requests of `ranker_examples`, as tensors."""
        return cls(
            UserInputs.from_arrays(requests.user), as_tensor(requests.user_row), as_tensor(requests.ts_us)
        )

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])


def synthetic_ranker_examples(
    n: int, features: FeatureConfig, seed: int = 0, num_items: int = 10_000
) -> tuple[RankerBatch, SyntheticRequests, ItemInputs]:
    """(rows, requests, catalog) shaped like `ranker_examples(...)` and train_ranker's catalog:
    n impressions in 10-item slates (~10% clicked) pointing at n / 10 requests (users with full
    histories) and at a catalog of `num_items` items."""
    rng = np.random.default_rng(seed)
    num_requests = -(-n // 10)
    request_index = np.arange(n, dtype=np.int64) // 10
    ts = _times(num_requests, rng)[request_index]
    rows = _items(ts, features, rng)
    rows.update(_labels(n, rng, click_rate=0.1))
    rows["item_row"] = torch.from_numpy(rng.integers(0, num_items, size=n))
    rows["counters"] = torch.from_numpy(rng.random((n, len(RANKER_FEATURES)), dtype=np.float32))
    rows["position"] = torch.from_numpy(np.arange(n, dtype=np.int64) % 10)
    rows["request_index"] = torch.from_numpy(request_index)
    rows["sample_rate"] = torch.ones(n, dtype=torch.float32)
    # The candidate-source columns train_ranker adds (SOURCE_FEATURES: which sources listed the
    # item, then their scores, 0 where a source did not list it).
    listed = rng.random((n, len(SOURCE_FEATURES) // 2)) < 0.5
    scores = rng.random(listed.shape) * listed
    rows["sources"] = torch.from_numpy(np.concatenate([listed, scores], axis=1).astype(np.float32))
    catalog = _items(np.zeros(num_items, dtype=np.int64), features, rng)
    requests = SyntheticRequests(
        user=UserInputs.from_arrays(_users(num_requests, features, rng)),
        user_row=torch.arange(num_requests, dtype=torch.int64),
        ts_us=torch.from_numpy(ts[::10].copy()),
    )
    return RankerBatch.from_arrays(rows), requests, ItemInputs.from_arrays(catalog)


def describe_examples(examples: Any, name: str = "") -> dict[str, tuple[str, tuple[int, ...]]]:
    """path → (dtype, shape without the example axis) of every array or tensor in `examples` (a
    typed batch, a dataclass or a dict of them): what must agree between real and synthetic."""
    if isinstance(examples, (np.ndarray, torch.Tensor)):
        return {name: (str(examples.dtype).removeprefix("torch."), tuple(examples.shape[1:]))}
    if isinstance(examples, dict):
        parts = list(examples.items())
    elif dataclasses.is_dataclass(examples) and not isinstance(examples, type):
        parts = [(f.name, getattr(examples, f.name)) for f in dataclasses.fields(examples)]
    else:
        return {}  # None: a part the examples do not have
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, value in parts:
        out.update(describe_examples(value, f"{name}.{key}" if name else key))
    return out


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

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "src")
    return {
        "commit": commit + (" + uncommitted changes in src/" if dirty else ""),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
