"""The candidate sources' state in serving: counters from the bundle's snapshot plus every click since.

    ann        the index's top N for the user vector (personal)
    covis      co-visitation with the user's recent clicks (bundle snapshot + clicks since)
    trending   time-decayed click counts (bundle snapshot + clicks since)
    fresh      items published in the last minutes, POST /v1/items included

The trending and co-visitation counters start from the bundle's snapshot of past clicks and take
each click that reaches POST /v1/events at once, so the next request already sees it. A source
that raises, or that would start too late for the deadline, or that overruns its budget, is
skipped: its seats go to the other sources and the feed says so (serve/stages.py runs them). A
failing ANN leaves the feed to the other sources rather than failing the request.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

import numpy as np

from feedrank.bundle import Bundle
from feedrank.candidates import CandidateSources, FreshItems
from feedrank.data.timeline import NO_TIME
from feedrank.serve.catalog import ServingCatalog
from feedrank.serve.settings import ServeSettings

log = logging.getLogger(__name__)
US_PER_HOUR = 3_600_000_000
PRUNE_EVERY = 10_000  # clicks between prunes of what no request can see any more


class CandidateStage:
    """The candidate sources of one loaded bundle, fed by the snapshot and by live clicks; thread-safe."""

    def __init__(self, bundle: Bundle, catalog: ServingCatalog, settings: ServeSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.config = settings.sources
        # Per-user clicks of co-visitation are bounded like the online state's users.
        self.sources = CandidateSources(self.config, max_users=settings.state.max_users)
        self.fresh = FreshItems(self.config.fresh_cfg)  # publication times sorted, for the fresh window
        self.fresh.sync(catalog.published_us)
        self.history_us = int(self.config.history_h * US_PER_HOUR)
        self._load_snapshot(bundle)
        self._lock = threading.Lock()
        self._clicks_since_prune = 0
        self.skipped: dict[tuple[str, str], int] = defaultdict(int)  # (source, reason) → count

    def _load_snapshot(self, bundle: Bundle) -> None:
        """The bundle's clicks of the last `history_h` hours (undated history is left out)."""
        clicks = bundle.space.past.user_clicks
        keep = (clicks.times != NO_TIME) & (clicks.times >= bundle.snapshot_us - self.history_us)
        users = bundle.space.users.user_ids[clicks.keys[keep]]
        items = np.asarray(clicks.values, dtype=np.int64)[keep] - 1  # values are item row + 1
        self.sources.extend(users, items, clicks.times[keep])
        log.info("candidate sources: %d clicks from the bundle snapshot", int(keep.sum()))

    def fresh_items(self) -> FreshItems:
        """The fresh-window index over the catalog as it is now (items posted since are taken)."""
        self.fresh.sync(self.catalog.published_us)
        return self.fresh

    def record_click(self, user_id: str, item_row: int, ts_us: int) -> None:
        self.sources.add_click(user_id, item_row, ts_us)
        with self._lock:
            self._clicks_since_prune += 1
            prune = self._clicks_since_prune >= PRUNE_EVERY
            if prune:
                self._clicks_since_prune = 0
        if prune:
            self.sources.prune(ts_us - self.history_us)

    def count_skipped(self, skipped: dict[str, str]) -> None:
        """Count sources skipped by a request, by (source, reason)."""
        with self._lock:
            for name, reason in skipped.items():
                self.skipped[(name, reason.split(":")[0])] += 1
