"""Serving settings: one frozen dataclass, from defaults, a TOML file and FEEDRANK_* variables."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from feedrank.candidates import SourcesConfig
from feedrank.serve.cache import CacheSettings
from feedrank.serve.rerank import RerankConfig

if TYPE_CHECKING:
    from feedrank.bundle import Bundle


@dataclass(frozen=True)
class ServeSettings:
    candidates: int = 500  # candidates handed to the ranker: the union of the sources
    # Relative quotas of the candidate sources and their settings (`--set sources.trending=0`;
    # `sources.trending=0 sources.covis=0 sources.fresh=0` is the ANN-only candidate stage).
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    source_budget_ms: float = 10.0  # a non-ANN source slower than this is dropped from the request
    default_k: int = 20  # feed size when a request does not say
    max_k: int = 100
    deadline_ms: float = 50.0  # the scoring deadline of one request
    rank_budget_ms: float = 15.0  # ranking starts only if this much of the deadline is left (3x its p99)
    # Requests scored at the same time. More than the cores makes every request slower (they share
    # the CPU) without serving more; the rest wait, and time spent waiting counts against the
    # deadline, so a request that waited long is served in ANN order instead of late.
    max_concurrent: int = 2
    # "wall": now is the machine's clock. "bundle": now is the bundle's snapshot time plus the time
    # since the service started, for replaying a simulated or historical world.
    clock: Literal["wall", "bundle"] = "wall"
    int8: bool = False  # dynamic INT8 quantization of the towers' and ranker's MLPs
    # Intra-op threads of torch in the service. Concurrency comes from serving requests in
    # parallel; several requests each running multi-threaded matrix products oversubscribe the cores.
    torch_threads: int = 1
    index_max_age_s: float = 3600.0  # item vectors carry freshness: rebuild the index this often
    max_body_bytes: int = 64 * 1024
    rerank: RerankConfig = field(default_factory=RerankConfig)
    cache: CacheSettings = field(default_factory=CacheSettings)
    started_at: float = field(default_factory=time.monotonic)

    def now_us(self, bundle: Bundle) -> int:
        if self.clock == "bundle":
            return bundle.snapshot_us + int((time.monotonic() - self.started_at) * 1e6)
        return int(time.time() * 1e6)
