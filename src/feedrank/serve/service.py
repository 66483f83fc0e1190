"""The service behind the HTTP layer: the current Recommender, hot swaps, and metrics.

Requests take a reference to the current Recommender once and use it to the end, so `reload`
can build a new one from a new bundle (slowly, off the request path) and swap the reference:
requests in flight finish on the old bundle, new ones start on the new one, none fails.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import polars as pl
import torch

from feedrank.bundle import load_bundle
from feedrank.errors import FeedrankError
from feedrank.serve.cache import make_cache
from feedrank.serve.metrics import Registry
from feedrank.serve.recommender import Feed, FeedRequest, Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.serve.settings import ServeSettings

log = logging.getLogger(__name__)
STAGES = ("queue", "user", "retrieve", "rank", "rerank", "total")


class FeedService:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        self.metrics = Registry()
        self.metrics.describe("feedrank_requests_total", "HTTP requests by endpoint and status")
        self.metrics.describe("feedrank_stage_latency_ms", "feed latency by stage, milliseconds")
        self.metrics.describe("feedrank_degraded_total", "feeds served with a degraded stage")
        self.metrics.describe("feedrank_source_latency_ms", "candidate source latency, milliseconds")
        self.metrics.describe("feedrank_source_candidates_total", "candidates proposed, by source")
        self.metrics.describe("feedrank_source_skipped_total", "candidate sources skipped, by reason")
        self._recommender: Recommender | None = None
        self._reload_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._recommender is not None

    @property
    def recommender(self) -> Recommender:
        current = self._recommender
        if current is None:
            raise FeedrankError("no bundle is loaded yet")
        return current

    def load(self, bundle_path: Path) -> str:
        """Load a bundle and swap it in; returns its version. In-flight requests are unaffected."""
        with self._reload_lock:  # one reload at a time; requests never take this lock
            started = time.perf_counter()
            bundle = load_bundle(bundle_path)
            dim = bundle.item_content.shape[1]
            cache = make_cache(self.settings.cache, dim=dim, namespace=bundle.version)
            recommender = Recommender(bundle, self.settings, build_reranker(self.settings.rerank), cache)
            old, self._recommender = self._recommender, recommender
            log.info(
                "serving bundle %s (%s) after %.1f s",
                bundle.version,
                bundle_path,
                time.perf_counter() - started,
            )
            self.metrics.inc("feedrank_bundle_loads_total")
            del old  # requests still holding it keep it alive until they finish
            return bundle.version

    def feed(self, request: FeedRequest) -> Feed:
        recommender = self.recommender  # one reference for the whole request
        feed = recommender.recommend(request)
        for stage in STAGES:
            if stage in feed.timings_ms:
                self.metrics.observe("feedrank_stage_latency_ms", feed.timings_ms[stage], {"stage": stage})
        for name, ms in feed.timings_ms.items():
            if name.startswith("source."):
                self.metrics.observe(
                    "feedrank_source_latency_ms", ms, {"source": name.removeprefix("source.")}
                )
        for name, count in feed.candidates.items():
            self.metrics.inc("feedrank_source_candidates_total", {"source": name}, value=float(count))
        for name, why in feed.skipped_sources.items():
            self.metrics.inc("feedrank_source_skipped_total", {"source": name, "reason": why.split(":")[0]})
        self.metrics.inc(
            "feedrank_feeds_total", {"cache": feed.cache, "known_user": str(feed.known_user).lower()}
        )
        if feed.degraded:
            self.metrics.inc("feedrank_degraded_total")
        return feed

    def event(self, user_id: str, item_id: str, kind: str, ts_us: int | None, dwell_s: float | None) -> bool:
        accepted = self.recommender.record_event(user_id, item_id, kind, ts_us, dwell_s)
        self.metrics.inc("feedrank_events_total", {"type": kind, "accepted": str(accepted).lower()})
        return accepted

    def add_items(self, items: pl.DataFrame) -> int:
        """Fresh items into the current bundle's catalog and index (a reload starts from the bundle)."""
        recommender = self.recommender
        added = recommender.catalog.add_items(items, self.settings.now_us(recommender.bundle))
        self.metrics.inc("feedrank_items_added_total", value=float(added))
        return added

    def render_metrics(self) -> str:
        current = self._recommender
        if current is not None and current.cache is not None:
            for name, value in current.cache.stats().items():
                self.metrics.set_counter(f"feedrank_cache_{name}_total", value)
            stats = current.catalog.index.stats()
            self.metrics.set_counter("feedrank_index_rebuilds_total", stats.rebuilds)
            self.metrics.set_counter("feedrank_unknown_item_events_total", current.unknown_item_events)
        return self.metrics.render()
