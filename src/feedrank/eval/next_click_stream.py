"""The event stream behind next-click evaluation: counters that advance with time.

`ClickStream.walk(targets)` visits target clicks in time order; before each, it has absorbed
exactly the events strictly before its time: which items are live (an event in the window),
click counts per item over the popularity windows, and co-visitation counts (for each item, how
often each other item was the next click of the same user within a session). Memory is O(items
+ distinct co-visited pairs); time is one pass over the events plus O(live items) per target.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.examples import FeatureSpace
from feedrank.data.features import to_us

US_PER_MIN = 60_000_000
NEVER = np.iinfo(np.int64).min
POP_WINDOWS_MIN = (10, 60, 1440)


@dataclass
class TargetState:
    """What the systems see for one target click."""

    live_rows: np.ndarray  # (L,) catalog rows of the live catalog, sorted
    target: int  # position of the clicked item in live_rows, -1 when it was not live
    pop: dict[int, np.ndarray]  # window minutes → (L,) clicks in the window
    covis: np.ndarray  # (L,) co-visitation counts with the user's previous click
    session_first: bool  # no previous click of this user within the session gap

    @property
    def live_click(self) -> bool:
        return self.target >= 0


class ClickStream:
    def __init__(
        self, space: FeatureSpace, events: pl.DataFrame, live_window_h: float, session_gap_min: float
    ) -> None:
        events = events.sort("ts", "user_id", "item_id")
        self.space = space
        self.num_items = len(space.catalog)
        rows = space.catalog.rows(events.get_column("item_id"))
        known = rows >= 0
        self.ev_item = rows[known]
        self.ev_ts = to_us(events.get_column("ts"))[known]
        clicked = events.get_column("clicked").to_numpy().astype(bool)[known]
        users = events.get_column("user_id").to_numpy().astype(object)[known]
        self.ck_item, self.ck_ts, self.ck_user = self.ev_item[clicked], self.ev_ts[clicked], users[clicked]
        self.live_us = int(live_window_h * 60 * US_PER_MIN)
        self.gap_us = int(session_gap_min * US_PER_MIN)
        self.reset()

    def reset(self) -> None:
        self.last_event = np.full(self.num_items, NEVER, dtype=np.int64)
        self.pop = {m: np.zeros(self.num_items, dtype=np.int64) for m in POP_WINDOWS_MIN}
        self.covis: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.last_click: dict[str, tuple[int, int]] = {}
        self._ev = 0
        self._ck = 0
        self._out = dict.fromkeys(POP_WINDOWS_MIN, 0)

    def _advance(self, t: int) -> None:
        """Absorb every event with time < t."""
        ev_end = int(np.searchsorted(self.ev_ts, t, side="left"))
        if ev_end > self._ev:
            np.maximum.at(self.last_event, self.ev_item[self._ev : ev_end], self.ev_ts[self._ev : ev_end])
            self._ev = ev_end
        ck_end = int(np.searchsorted(self.ck_ts, t, side="left"))
        if ck_end > self._ck:
            for m in POP_WINDOWS_MIN:
                np.add.at(self.pop[m], self.ck_item[self._ck : ck_end], 1)
            for j in range(self._ck, ck_end):  # co-visitation needs each user's previous click
                user, item, ts = self.ck_user[j], int(self.ck_item[j]), int(self.ck_ts[j])
                prev = self.last_click.get(user)
                if prev is not None and prev[0] != item and ts - prev[1] <= self.gap_us:
                    self.covis[prev[0]][item] += 1
                self.last_click[user] = (item, ts)
            self._ck = ck_end
        for m in POP_WINDOWS_MIN:  # clicks that left the window
            out_end = int(np.searchsorted(self.ck_ts, t - m * US_PER_MIN, side="left"))
            if out_end > self._out[m]:
                np.add.at(self.pop[m], self.ck_item[self._out[m] : out_end], -1)
                self._out[m] = out_end

    def walk(self, targets: pl.DataFrame) -> Iterator[tuple[int, TargetState]]:
        """(row index in `targets`, state) for each target click, in time order."""
        rows = self.space.catalog.rows(targets.get_column("item_id"))
        ts = to_us(targets.get_column("ts"))
        users = targets.get_column("user_id").to_numpy().astype(object)
        for e in np.argsort(ts, kind="stable"):
            t = int(ts[e])
            self._advance(t)
            live = np.flatnonzero(self.last_event >= t - self.live_us)
            pos = int(np.searchsorted(live, rows[e])) if rows[e] >= 0 else -1
            target = pos if 0 <= pos < live.size and live[pos] == rows[e] else -1
            prev = self.last_click.get(users[e])
            first = prev is None or t - prev[1] > self.gap_us
            covis = np.zeros(live.size)
            if prev is not None:
                following = self.covis.get(prev[0])
                if following:
                    keys = np.fromiter(following.keys(), dtype=np.int64, count=len(following))
                    vals = np.fromiter(following.values(), dtype=np.float64, count=len(following))
                    at = np.searchsorted(live, keys)
                    ok = (at < live.size) & (live[np.minimum(at, max(live.size - 1, 0))] == keys)
                    covis[at[ok]] = vals[ok]
            yield (
                int(e),
                TargetState(
                    live,
                    target,
                    {m: self.pop[m][live].astype(np.float64) for m in POP_WINDOWS_MIN},
                    covis,
                    first,
                ),
            )


def rank_metrics(scores: np.ndarray, target: int) -> dict[str, float]:
    """HR@10, HR@20, NDCG@10, MRR@20 of the item at `target`, ties broken by expectation."""
    if target < 0 or scores.size == 0:
        return {"hr@10": 0.0, "hr@20": 0.0, "ndcg@10": 0.0, "mrr@20": 0.0}
    s = scores[target]
    better = int((scores > s).sum())
    tied = int((scores == s).sum())  # includes the target: its rank is uniform on the tie group
    ranks = np.arange(better + 1, better + tied + 1, dtype=np.float64)
    return {
        "hr@10": float((ranks <= 10).mean()),
        "hr@20": float((ranks <= 20).mean()),
        "ndcg@10": float(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0).mean()),
        "mrr@20": float(np.where(ranks <= 20, 1.0 / ranks, 0.0).mean()),
    }
