"""Engagement events that arrive while serving, on top of the bundle's snapshot of the past.

A bundle carries every event up to its snapshot; the service keeps what happens afterwards here:
each user's recent engagements (they extend the history the user tower reads) and each item's
recent clicks and hides (they feed the ranker's counters and the re-ranker's guardrails). Memory is
bounded: per user the last `history_len` engagements, per item the clicks of the last day.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

US_PER_HOUR = 3_600_000_000
ENGAGEMENTS = frozenset({"click", "dwell", "share"})
KINDS = ENGAGEMENTS | {"hide"}


@dataclass(frozen=True)
class Event:
    user_id: str
    item_row: int  # catalog row; events for unknown items never get here
    kind: str  # click | dwell | share | hide
    ts_us: int
    dwell_s: float | None = None


def time_refusal(ts_us: int, now_us: int, max_age_s: float, skew_s: float) -> str | None:
    """Why a client's event time is refused ("too_old", "future"), or None when it is usable.

    Clients' clocks are not trusted beyond [now - max_age, now + skew]: a click dated in 2100
    would otherwise move the counters' notion of "now" and prune every other click."""
    if ts_us < now_us - int(max_age_s * 1e6):
        return "too_old"
    if ts_us > now_us + int(skew_s * 1e6):
        return "future"
    return None


class OnlineEvents:
    """Thread-safe recent events per user and per item since the bundle snapshot."""

    def __init__(self, history_len: int = 50, item_window_h: float = 24.0) -> None:
        self.history_len = history_len
        self.item_window_us = int(item_window_h * US_PER_HOUR)
        self._lock = threading.Lock()
        self._history: dict[str, deque[tuple[int, int]]] = defaultdict(lambda: deque(maxlen=history_len))
        self._hidden: dict[str, set[int]] = defaultdict(set)
        self._item_clicks: dict[int, deque[int]] = defaultdict(deque)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, event: Event) -> None:
        with self._lock:
            self.counts[event.kind] += 1
            if event.kind == "hide":
                self._hidden[event.user_id].add(event.item_row)
                return
            history = self._history[event.user_id]
            if event.kind == "click" or not history or history[-1][1] != event.item_row:
                # dwell and share events follow the click on the same item; one history entry each
                history.append((event.ts_us, event.item_row))
            if event.kind == "click":
                clicks = self._item_clicks[event.item_row]
                clicks.append(event.ts_us)
                while clicks and clicks[0] < event.ts_us - self.item_window_us:
                    clicks.popleft()

    def history(self, user_id: str, before_us: int) -> list[int]:
        """Catalog rows the user engaged with since the snapshot, before `before_us`, oldest first."""
        with self._lock:
            return [row for ts, row in self._history.get(user_id, ()) if ts < before_us]

    def timed_history(self, user_id: str, before_us: int) -> list[tuple[int, int]]:
        """(µs, catalog row) of the engagements since the snapshot, before `before_us`, oldest first."""
        with self._lock:
            return [(ts, row) for ts, row in self._history.get(user_id, ()) if ts < before_us]

    def hidden(self, user_id: str) -> set[int]:
        with self._lock:
            return set(self._hidden.get(user_id, ()))

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
