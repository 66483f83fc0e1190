"""The event stream behind next-click evaluation: what each system may know at each click.

`ClickStream.walk(targets)` visits target clicks in time order; for each it reports which items
are live (an event in the window before t), click counts per item over the popularity windows,
and co-visitation counts with the user's previous click (how often each item was the next click
of the same user within a session). Co-visitation is the candidate source's own
(`feedrank.candidates.CoVisitation` of consecutive clicks) read "strictly before t"; the
popularity counts are `Trending`'s undecayed counts, kept as sliding windows that the walk
updates click by click (each click added and removed once), so a target costs O(live catalog)
instead of O(clicks in the last 24 hours).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.candidates import CandidateSources, CoVisitation, CoVisitationConfig, SourcesConfig
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
        # Users are keyed by an integer code (their first appearance in the sorted events), not by
        # the id string: co-visitation's bulk load sorts its keys, and sorting a million Python
        # strings took most of the stream's setup (and of every validation that rebuilt sources).
        ids = events.get_column("user_id")
        self._user_codes = pl.DataFrame({"user_id": ids.unique(maintain_order=True)}).with_row_index("code")
        users = self.user_codes(ids)[known]
        self.ck_item, self.ck_ts, self.ck_user = self.ev_item[clicked], self.ev_ts[clicked], users[clicked]
        self.live_us = int(live_window_h * 60 * US_PER_MIN)
        self.gap_us = int(session_gap_min * US_PER_MIN)
        self.windows_us = np.array([m * US_PER_MIN for m in POP_WINDOWS_MIN], dtype=np.int64)
        previous_click = CoVisitationConfig(
            session_gap_min=session_gap_min, max_lag=1, backward_weight=0.0, half_life_h=None, num_recent=1
        )
        self.covis = CoVisitation(previous_click)
        self.covis.extend(self.ck_user, self.ck_item, self.ck_ts)
        self._sources: dict[SourcesConfig, CandidateSources] = {}
        self.reset()

    def user_codes(self, user_ids: pl.Series) -> np.ndarray:
        """(N,) int64 codes the stream keys users by; -1 for a user with no event in the stream."""
        codes = (
            pl.DataFrame({"user_id": user_ids})
            .join(self._user_codes, on="user_id", how="left", maintain_order="left")
            .get_column("code")
            .fill_null(-1)
            .to_numpy()
            .astype(np.int64)
        )
        return codes

    def sources(self, config: SourcesConfig) -> CandidateSources:
        """Candidate sources of `config` fed every click of the stream (they too answer only from
        before each t), co-visitation keyed by `user_codes`. Built once per config and kept: the
        walks only read them, and training's validation asks again at every evaluation (the bulk
        load of 1.4M clicks is seconds each time)."""
        if config not in self._sources:
            self._sources[config] = CandidateSources(config).extend(self.ck_user, self.ck_item, self.ck_ts)
        return self._sources[config]

    def reset(self) -> None:
        self.last_event = np.full(self.num_items, NEVER, dtype=np.int64)
        self._ev = 0
        # Clicks per item in each popularity window, kept up to date as t moves forward: each
        # click is added once and removed once, instead of recounting the window per target.
        self.pop_counts = np.zeros((self.windows_us.size, self.num_items))
        self._ck_head = 0
        self._ck_tail = np.zeros(self.windows_us.size, dtype=np.int64)

    def _advance(self, t: int) -> None:
        """Absorb every event with time < t into the live catalog."""
        ev_end = int(np.searchsorted(self.ev_ts, t, side="left"))
        if ev_end > self._ev:
            np.maximum.at(self.last_event, self.ev_item[self._ev : ev_end], self.ev_ts[self._ev : ev_end])
            self._ev = ev_end
        # Window k counts the clicks with t - w_k <= s < t (what Trending.counts reads undecayed).
        head = int(np.searchsorted(self.ck_ts, t, side="left"))
        for k, window in enumerate(self.windows_us.tolist()):
            np.add.at(self.pop_counts[k], self.ck_item[self._ck_head : head], 1.0)
            tail = int(np.searchsorted(self.ck_ts, t - window, side="left"))
            if tail > self._ck_tail[k]:
                np.subtract.at(self.pop_counts[k], self.ck_item[self._ck_tail[k] : tail], 1.0)
                self._ck_tail[k] = tail
        self._ck_head = max(self._ck_head, head)

    def walk(self, targets: pl.DataFrame) -> Iterator[tuple[int, TargetState]]:
        """(row index in `targets`, state) for each target click, in time order."""
        rows = self.space.catalog.rows(targets.get_column("item_id"))
        ts = to_us(targets.get_column("ts"))
        users = self.user_codes(targets.get_column("user_id")).tolist()
        for e in np.argsort(ts, kind="stable"):
            t = int(ts[e])
            self._advance(t)
            live = np.flatnonzero(self.last_event >= t - self.live_us)
            pos = int(np.searchsorted(live, rows[e])) if rows[e] >= 0 else -1
            target = pos if 0 <= pos < live.size and live[pos] == rows[e] else -1
            prev = self.covis.recent(users[e], t, 1).ts
            first = prev.size == 0 or t - int(prev[-1]) > self.gap_us
            pop = self.pop_counts[:, live]
            yield (
                int(e),
                TargetState(
                    live,
                    target,
                    {m: pop[k] for k, m in enumerate(POP_WINDOWS_MIN)},
                    self.covis.scores(users[e], t, self.num_items)[live],
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


def ndcg10_of_rows(scores: np.ndarray, target: int) -> np.ndarray:
    """(G,) `rank_metrics(scores[g], target)["ndcg@10"]` for each row g of (G, L) scores, at once
    (bit for bit: the per-row arithmetic is the same; only the counting is vectorised)."""
    out = np.zeros(scores.shape[0])
    if target < 0 or scores.shape[1] == 0:
        return out
    s = scores[:, target : target + 1]
    better = (scores > s).sum(axis=1)
    tied = (scores == s).sum(axis=1)
    for g in np.flatnonzero(better < 10):  # a target ranked below 10 by every tie order scores 0
        ranks = np.arange(better[g] + 1, better[g] + tied[g] + 1, dtype=np.float64)
        out[g] = float(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out
