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
from feedrank.bundle.signing import Trust
from feedrank.errors import BundleError, FeedrankError
from feedrank.serve.cache import make_cache
from feedrank.serve.fresh import post_items
from feedrank.serve.metrics import Registry
from feedrank.serve.online import time_refusal
from feedrank.serve.recommender import Feed, FeedRequest, Recommender
from feedrank.serve.rerank import build_reranker
from feedrank.serve.settings import ServeSettings
from feedrank.serve.state import StateStore, make_state_store

log = logging.getLogger(__name__)
STAGES = ("queue", "user", "retrieve", "rank", "rerank", "total")


class FeedService:
    """`trust`: what must vouch for a bundle (bundle/signing.py). Without a key or registry, only
    the bundle the operator names at startup loads (with a warning); every reload is refused.
    `state`: the online state (default: a new one of `settings.state`), kept across reloads."""

    def __init__(
        self, settings: ServeSettings, trust: Trust | None = None, state: StateStore | None = None
    ) -> None:
        self.settings = settings
        self.trust = trust or Trust()
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        self.metrics = Registry()
        self.metrics.describe("feedrank_requests_total", "HTTP requests by endpoint and status")
        self.metrics.describe("feedrank_stage_latency_ms", "feed latency by stage, milliseconds")
        self.metrics.describe("feedrank_degraded_total", "feeds served with a degraded stage")
        self.metrics.describe("feedrank_source_latency_ms", "candidate source latency, milliseconds")
        self.metrics.describe("feedrank_source_candidates_total", "candidates proposed, by source")
        self.metrics.describe("feedrank_source_skipped_total", "candidate sources skipped, by reason")
        self.metrics.describe(
            "feedrank_events_out_of_window_total", "events refused for their client time, by reason"
        )
        self.metrics.describe("feedrank_bundle_refusals_total", "bundle loads refused (old bundle kept)")
        self._recommender: Recommender | None = None
        self._reload_lock = threading.Lock()
        # Online state outlives bundles: every Recommender this service builds reads and writes it.
        self.state = state if state is not None else make_state_store(settings.state)

    @property
    def ready(self) -> bool:
        return self._recommender is not None

    @property
    def recommender(self) -> Recommender:
        current = self._recommender
        if current is None:
            raise FeedrankError("no bundle is loaded yet")
        return current

    def load(self, bundle_path: Path, *, startup: bool = False) -> str:
        """Load a bundle and swap it in; returns its version. In-flight requests are unaffected.

        BundleError (the current bundle keeps serving) on any failure. `startup`: the bundle the
        operator named when starting the service, allowed unsigned when no key or registry is set."""
        trust = self.trust
        if startup and not trust.configured and not trust.allow_unsigned:
            log.warning(
                "no bundle key or registry configured: %s is checked for corruption only", bundle_path
            )
            trust = Trust(allow_unsigned=True)
        with self._reload_lock:  # one reload at a time; requests never take this lock
            started = time.perf_counter()
            try:
                recommender = self._build(bundle_path, trust)
            except FeedrankError:
                self.metrics.inc("feedrank_bundle_refusals_total")
                raise
            bundle = recommender.bundle
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

    def _build(self, bundle_path: Path, trust: Trust) -> Recommender:
        bundle = load_bundle(bundle_path, trust)
        try:
            dim = bundle.item_content.shape[1]
            cache = make_cache(self.settings.cache, dim=dim, namespace=bundle.version)
            reranker = build_reranker(self.settings.rerank)
            return Recommender(bundle, self.settings, reranker, cache, state=self.state)
        except FeedrankError:
            raise
        except Exception as exc:  # a bundle whose parts do not fit together: refused, not a 500
            raise BundleError(f"bundle {bundle_path} cannot be served: {type(exc).__name__}: {exc}") from exc

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
        """Record a client's event; False (counted) for an unknown item or a time out of the window."""
        recommender = self.recommender
        if ts_us is not None:
            now = self.settings.now_us(recommender.bundle)
            why = time_refusal(ts_us, now, self.settings.event_max_age_s, self.settings.event_skew_s)
            if why is not None:
                self.metrics.inc("feedrank_events_out_of_window_total", {"reason": why})
                self.metrics.inc("feedrank_events_total", {"type": kind, "accepted": "false"})
                return False
        accepted = recommender.record_event(user_id, item_id, kind, ts_us, dwell_s)
        self.metrics.inc("feedrank_events_total", {"type": kind, "accepted": str(accepted).lower()})
        return accepted

    def add_items(self, items: pl.DataFrame) -> int:
        """Fresh items into the shared state, and from there into every replica's catalog and index
        (a reload replays them); returns how many were new."""
        recommender = self.recommender
        now = self.settings.now_us(recommender.bundle)
        added = post_items(recommender.online, recommender.catalog, items, now)
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
