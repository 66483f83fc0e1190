"""Engagement events that arrive while serving, on top of the bundle's snapshot of the past.

A bundle carries every event up to its snapshot; what happens afterwards lives in the shared
`StateStore` (serve/state.py), apart from any bundle, and `OnlineEvents` is one replica's view
of it for one loaded bundle: each user's recent engagements (they extend the history the user
tower reads), clicked and hidden items (not shown again), and the click log, replayed into this
replica's trending and co-visitation counters and per-item click counts (the ranker's counters).
Replaying is incremental (`sync`: the items and clicks after this replica's cursors), runs before
every feed, and starts from the oldest logged entry when a bundle is loaded, so a reload or a
replica started later counts the same clicks and knows the same fresh items as the others.

The bundle already counts every event logged up to its snapshot: events logged at or before it
(`StoredEvent.logged_us`: when the service took them) are left out of this view — of the counters
and of the users' histories — so a reload onto a newer bundle does not count them twice. Seen and
hidden items are sets, not counts, and are kept whatever their time.

Memory is bounded by the store's settings (per user and in the logs) and here by the item window
(per item, the clicks of the last day).
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from feedrank.serve.state import FreshItem, StateStore, StoredEvent

US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class Event:
    user_id: str
    item_row: int  # catalog row; events for unknown items never get here
    kind: str  # click | dwell | share | hide
    ts_us: int
    dwell_s: float | None = None
    received_us: int | None = None  # when the service took it (its clock)


def time_refusal(ts_us: int, now_us: int, max_age_s: float, skew_s: float) -> str | None:
    """Why a client's event time is refused ("too_old", "future"), or None when it is usable.

    Clients' clocks are not trusted beyond [now - max_age, now + skew]: a click dated in 2100
    would otherwise move the counters' notion of "now" and prune every other click."""
    if ts_us < now_us - int(max_age_s * 1e6):
        return "too_old"
    if ts_us > now_us + int(skew_s * 1e6):
        return "future"
    return None


@dataclass(frozen=True)
class UserView:
    """One user's online state in catalog rows (items this bundle does not know are left out)."""

    generation: int = 0
    timed: list[tuple[int, int]] = field(default_factory=list)  # (µs, row) engagements, oldest first
    seen: set[int] = field(default_factory=set)  # clicked rows
    hidden: set[int] = field(default_factory=set)

    def history(self, before_us: int) -> list[int]:
        return [row for ts, row in self.timed if ts < before_us]

    def timed_history(self, before_us: int) -> list[tuple[int, int]]:
        return [(ts, row) for ts, row in self.timed if ts < before_us]


ClickSink = Callable[[str, int, int], None]  # (user id, catalog row, µs): trending and co-visitation
ItemSink = Callable[[list[FreshItem]], object]  # logged fresh items into the catalog and index


class OnlineEvents:
    """This replica's view of the online state for one bundle; thread-safe.

    Args:
        store: the state shared by every replica (and kept across reloads).
        rows: catalog rows of item ids (-1 for an unknown id).
        on_click: where each logged click goes once (the candidate sources' counters).
        on_items: where logged fresh items go (the catalog); None: items are not replayed.
        snapshot_us: the bundle's snapshot; events logged at or before it are the bundle's own.
    """

    def __init__(
        self,
        store: StateStore,
        rows: Callable[[Sequence[str]], np.ndarray],
        on_click: ClickSink | None = None,
        item_window_h: float = 24.0,
        *,
        on_items: ItemSink | None = None,
        snapshot_us: int | None = None,
    ) -> None:
        self.store = store
        self._rows = rows
        self._on_click = on_click
        self._on_items = on_items
        self.snapshot_us = snapshot_us if snapshot_us is not None else -(2**63)
        self.item_window_us = int(item_window_h * US_PER_HOUR)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._cursor = ""
        self._item_cursor = ""
        self._item_clicks: dict[int, deque[int]] = defaultdict(deque)
        self.counts: dict[str, int] = defaultdict(int)  # events recorded through this view, by kind
        self.replayed = 0  # clicks of the log applied to this replica's counters
        self.unknown_clicks = 0  # logged clicks on items this bundle does not know (not counted)
        self.bundle_clicks = 0  # logged clicks the bundle's snapshot already holds (not counted)
        self.items_replayed = 0  # logged fresh items handed to the catalog

    def add(self, event: Event, item_id: str) -> int:
        """Record an event in the shared store and apply it here; returns the user's generation."""
        stored = StoredEvent(event.user_id, item_id, event.kind, event.ts_us, event.received_us)
        generation = self.store.record(stored)
        with self._lock:
            self.counts[event.kind] += 1
        self.sync()
        return generation

    def sync(self, *, wait: bool = True) -> int:
        """Apply the fresh items, then the clicks, logged since this replica's cursors (by any
        replica); returns how many clicks were counted.

        wait=False: if another thread is applying them, return at once (its pass is as fresh)."""
        if not self._sync_lock.acquire(blocking=wait):
            return 0
        try:
            self._sync_items()
            applied = 0
            while True:
                clicks, cursor = self.store.clicks_after(self._cursor)
                if not clicks:
                    return applied
                ids = [c.item_id for c in clicks]
                found = self._rows(ids)
                if (found < 0).any() and self._sync_items():  # items logged after the pass above
                    found = self._rows(ids)
                for click, row in zip(clicks, found.tolist(), strict=True):
                    if click.logged_us <= self.snapshot_us:
                        self.bundle_clicks += 1
                        continue
                    if row < 0:
                        self.unknown_clicks += 1
                        continue
                    if self._on_click is not None:
                        self._on_click(click.user_id, row, click.ts_us)
                    self._count_click(row, click.ts_us)
                    applied += 1
                self.replayed += applied
                self._cursor = cursor
        finally:
            self._sync_lock.release()

    def sync_items(self) -> int:
        """Apply the fresh items logged since this replica's cursor; returns how many were handed on."""
        with self._sync_lock:
            return self._sync_items()

    def _sync_items(self) -> int:
        if self._on_items is None:
            return 0
        handed = 0
        while True:
            items, cursor = self.store.items_after(self._item_cursor)
            if not items:
                return handed
            self._on_items(items)
            handed += len(items)
            self.items_replayed += len(items)
            self._item_cursor = cursor

    def user(self, user_id: str) -> UserView:
        """The user's state now, in this bundle's rows; events the bundle holds are left out."""
        state = self.store.user(user_id)
        ids = [item for _, item, _, _ in state.events]
        seen, hidden = sorted(state.seen), sorted(state.hidden)
        rows = self._rows([*ids, *seen, *hidden]).tolist()
        event_rows, seen_rows, hidden_rows = (
            rows[: len(ids)],
            rows[len(ids) : len(ids) + len(seen)],
            rows[len(ids) + len(seen) :],
        )
        timed: list[tuple[int, int]] = []
        for (ts, _, kind, logged), row in zip(state.events, event_rows, strict=True):
            if logged <= self.snapshot_us:
                continue
            # dwell and share events follow the click on the same item: one history entry each
            if row >= 0 and (kind == "click" or not timed or timed[-1][1] != row):
                timed.append((ts, row))
        return UserView(
            state.generation,
            timed,
            {r for r in seen_rows if r >= 0},
            {r for r in hidden_rows if r >= 0},
        )

    def history(self, user_id: str, before_us: int) -> list[int]:
        """Catalog rows the user engaged with since the snapshot, before `before_us`, oldest first."""
        return self.user(user_id).history(before_us)

    def timed_history(self, user_id: str, before_us: int) -> list[tuple[int, int]]:
        """(µs, catalog row) of the engagements since the snapshot, before `before_us`, oldest first."""
        return self.user(user_id).timed_history(before_us)

    def hidden(self, user_id: str) -> set[int]:
        return self.user(user_id).hidden

    def item_clicks(self, item_rows: np.ndarray, now_us: int, window_us: int) -> np.ndarray:
        """(N,) clicks each item received online in [now - window, now)."""
        with self._lock:
            out = np.zeros(item_rows.size, dtype=np.int64)
            if not self._item_clicks:
                return out
            for i, row in enumerate(item_rows.tolist()):
                clicks = self._item_clicks.get(row)
                if clicks:
                    out[i] = sum(1 for ts in clicks if now_us - window_us <= ts < now_us)
            return out

    def _count_click(self, row: int, ts_us: int) -> None:
        with self._lock:
            clicks = self._item_clicks[row]
            clicks.append(ts_us)
            while clicks and clicks[0] < ts_us - self.item_window_us:
                clicks.popleft()
