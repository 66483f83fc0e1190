"""The streaming simulation: hour by hour, chunk by chunk, straight into Parquet shards.

    world  = World.generate(config)
    for each hour of warm-up, then of the log window:
        requests of the hour (daily cycle), uniform times within the hour, sorted
        for each chunk of at most `chunk_requests` requests:
            live items at the chunk's first request → policy probabilities (popularity, freshness)
            per request: a user (arrived by then, ∝ activity) and a slate (sequential sampling)
            world.respond(...) → clicks, dwell, shares, hides, surveys
            warm-up: clicks → history;  log window: every shown row → impressions
            the chunk's clicks update the policy's popularity counts

Memory holds the world, one chunk, and the writer's buffer (≤ shard_rows rows per table); it does
not grow with the number of impressions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.data.dataset import Dataset, DatasetWriter
from feedrank.sim.config import SimConfig
from feedrank.sim.policy import LoggingPolicy, PopularityTracker, sample_slates
from feedrank.sim.response import Responses
from feedrank.sim.tables import FrameBuilder, items_frame, users_frame
from feedrank.sim.world import WORLD_DIR, World

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
HOUR_US = 3_600_000_000
TRAFFIC_STREAM, POLICY_STREAM, RESPONSE_STREAM = 1, 2, 3


def hourly_requests(config: SimConfig) -> tuple[I64, I64, int]:
    """Requests per hour of the warm-up and of the log window, and the window's first hour start
    (epoch microseconds). Rates follow 1 + daily_amplitude * cos(2π (hour - peak_hour) / 24),
    scaled so the window holds exactly `config.num_requests`; the warm-up has the same rate."""
    start_us = round(config.start_dt.timestamp() * 1e6)
    warm_hours, log_hours = config.warmup_hours, config.window_hours
    hour_of_day = (start_us // HOUR_US + np.arange(-warm_hours, log_hours)) % 24
    weight = 1.0 + config.daily_amplitude * np.cos(2 * math.pi * (hour_of_day - config.peak_hour) / 24)
    per_hour = weight * config.num_requests / weight[warm_hours:].sum()

    def rounded(rates: npt.NDArray[np.float64]) -> I64:  # integers with the exact rounded total
        out: I64 = np.diff(np.rint(np.concatenate([[0.0], np.cumsum(rates)])).astype(np.int64))
        return out

    return rounded(per_hour[:warm_hours]), rounded(per_hour[warm_hours:]), start_us


@dataclass
class _Stats:
    """Totals of the log window, written to the manifest."""

    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    dwell_s: float = 0.0
    shares: int = 0
    hides: int = 0
    surveys: int = 0
    history: int = 0
    seen: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def as_dict(self, world: World) -> dict[str, Any]:
        arrived_in_window = world.users.arrival_s >= world.start_s
        return {
            "requests": self.requests,
            "impressions": self.impressions,
            "ctr": self.clicks / max(self.impressions, 1),
            "mean_dwell_s_of_clicks": self.dwell_s / max(self.clicks, 1),
            "share_rate_of_clicks": self.shares / max(self.clicks, 1),
            "hide_rate": self.hides / max(self.impressions, 1),
            "surveys": self.surveys,
            "history_clicks": self.history,
            "users_in_world": world.num_users,
            "users_active_in_window": int(self.seen.sum()),
            "new_users_active_in_window": int((self.seen & arrived_in_window).sum()),
            "items_in_world": world.num_items,
            "publishers": world.num_publishers,
        }


class _Run:
    """State carried across chunks: popularity counts, history positions, counters."""

    def __init__(self, world: World, writer: DatasetWriter, progress: Callable[[int], None] | None) -> None:
        cfg = world.config
        self.world, self.writer, self.progress = world, writer, progress
        self.policy = LoggingPolicy(cfg, world.items.published_s)
        self.popularity = PopularityTracker(world.num_items, cfg.popularity_half_life_hours)
        self.frames = FrameBuilder(world)
        self.traffic_rng = np.random.default_rng([cfg.seed, TRAFFIC_STREAM])
        self.policy_rng = np.random.default_rng([cfg.seed, POLICY_STREAM])
        self.response_rng = np.random.default_rng([cfg.seed, RESPONSE_STREAM])
        self.history_len = np.zeros(world.num_users, dtype=np.int64)
        self.stats = _Stats(seen=np.zeros(world.num_users, dtype=bool))

    def hours(self, counts: I64, first_hour_us: int, *, log: bool) -> None:
        chunk = self.world.config.chunk_requests
        for h, n in enumerate(counts.tolist()):
            if n == 0:
                continue
            offsets = np.sort(self.traffic_rng.integers(0, HOUR_US, size=n))
            ts_us = first_hour_us + h * HOUR_US + offsets
            for lo in range(0, n, chunk):
                self.chunk(ts_us[lo : lo + chunk], log=log)

    def chunk(self, ts_us: I64, *, log: bool) -> None:
        world, cfg = self.world, self.world.config
        t0 = float(ts_us[0]) / 1e6  # the policy is fixed for the chunk at its first request
        lo, hi = world.live_range(t0)
        self.popularity.decay_to(t0, lo, hi)
        p = self.policy.probabilities(lo, hi, t0, self.popularity.clicks[lo:hi])
        local, propensity = sample_slates(p, ts_us.size, cfg.slate_size, self.policy_rng)
        slates = lo + local  # (B, k) item indices
        ts_s = ts_us / 1e6
        users = world.sample_users(ts_s, self.traffic_rng)  # (B,)
        resp = world.respond(users, slates, ts_s, self.response_rng)
        self.popularity.add(slates[resp.clicked])
        if log:
            self._log(users, ts_us, slates, propensity, resp)
        else:
            self._history(users, ts_us, slates, resp)

    def _log(self, users: I64, ts_us: I64, slates: I64, propensity: F64, resp: Responses) -> None:
        s = self.stats
        frame = self.frames.impressions(s.requests, users, ts_us, slates, propensity, resp)
        self.writer.write("impressions", frame)
        s.requests += users.size
        s.impressions += frame.height
        s.clicks += int(resp.clicked.sum())
        s.dwell_s += float(resp.dwell_s.sum(dtype=np.float64))
        s.shares += int(resp.shared.sum())
        s.hides += int(resp.hidden.sum())
        s.surveys += int((~np.isnan(resp.survey)).sum())
        s.seen[users] = True
        if self.progress is not None:
            self.progress(s.impressions)

    def _history(self, users: I64, ts_us: I64, slates: I64, resp: Responses) -> None:
        rows, _ = np.nonzero(resp.clicked)  # request-major, so in time order
        clicker = users[rows]
        # seq = clicks the user had before this chunk + rank of this click among theirs in it.
        order = np.argsort(clicker, kind="stable")
        sorted_users = clicker[order]
        group_start = np.searchsorted(sorted_users, sorted_users, side="left")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size) - group_start
        seq = self.history_len[clicker] + rank
        np.add.at(self.history_len, clicker, 1)
        frame = self.frames.history(users, ts_us, slates, resp, seq)
        self.writer.write("history", frame)
        self.stats.history += frame.height


def simulate(
    config: SimConfig,
    out_dir: Path | str,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Simulate `config`'s world and log into a canonical dataset at `out_dir`, with the world in
    `out_dir/world/` (World.load restores it). `progress` gets the impressions written so far.
    The dataset appears atomically; on any error nothing is left behind."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    writer = DatasetWriter(out_dir, shard_rows=config.shard_rows, overwrite=overwrite)
    try:
        world = World.generate(config)
        logger.info(
            "simulating %d requests: %d users, %d items, %d publishers",
            config.num_requests,
            world.num_users,
            world.num_items,
            world.num_publishers,
        )
        writer.write("users", users_frame(world))
        writer.write("items", items_frame(world))
        run = _Run(world, writer, progress)
        warm, window, start_us = hourly_requests(config)
        run.hours(warm, start_us - warm.size * HOUR_US, log=False)
        run.hours(window, start_us, log=True)
        world.save(writer.tmp_dir / WORLD_DIR)
        stats = run.stats.as_dict(world)
        writer.finish(
            source={
                "format": "simulator",
                "config": config.to_dict(),
                "seed": config.seed,
                "world": WORLD_DIR,
            },
            extra={"click_only": False, "simulation": stats},
        )
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - started
    logger.info(
        "simulated %d impressions in %.1f s (%.0f rows/s): CTR %.3f, mean dwell %.1f s",
        stats["impressions"],
        seconds,
        stats["impressions"] / max(seconds, 1e-9),
        stats["ctr"],
        stats["mean_dwell_s_of_clicks"],
    )
    return Dataset.open(out_dir)
