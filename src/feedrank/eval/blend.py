"""The popularity + co-visitation blend of the next-click protocol, and its tuning on validation.

    score = a·log(1 + clicks in the last W minutes) + b·log(1 + co-visits with the previous click)

W, a and b are chosen on the validation window's clicks (never the test window's). The grid holds
both components alone (b = 0: popularity over W; a = 0: co-visitation), so on validation the
tuned blend is never worse than its best component. Only the ratio a/b changes a ranking, so the
grid is a set of ratios: from a pure tie-break of co-visitation by popularity (a/b = 0.001: the
co-visited items first, in popularity order, then the rest by popularity) to popularity with a
co-visitation tie-break (a/b = 1000). A fixed coarse grid of (a, b) in {0, 0.25, ..., 4} with one
window (an hour) missed both ends, and co-visitation alone breaks its many ties (every item never
seen after the previous click scores 0) at random, so a blend that cannot reach the tie-break end
can lose to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from feedrank.eval.next_click_stream import POP_WINDOWS_MIN, TargetState, ndcg10_of_rows

# a/b ratios; 0 is co-visitation alone, inf popularity alone.
BLEND_RATIOS = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0, float("inf"))


@dataclass(frozen=True)
class BlendWeights:
    a: float  # weight of log(1 + popularity over window_min)
    b: float  # weight of log(1 + co-visits with the previous click)
    window_min: int = 60

    def scores(self, state: TargetState) -> np.ndarray:
        """(L,) blend scores over the live catalog of one target."""
        score = np.zeros(state.covis.shape, dtype=np.float64)
        if self.a:
            score += self.a * np.log1p(state.pop[self.window_min])
        if self.b:
            score += self.b * np.log1p(state.covis)
        return score

    @staticmethod
    def of_ratio(ratio: float, window_min: int) -> BlendWeights:
        if ratio == float("inf"):
            return BlendWeights(1.0, 0.0, window_min)
        return BlendWeights(ratio, 1.0, window_min)


def blend_grid(windows: Iterable[int] = POP_WINDOWS_MIN) -> list[BlendWeights]:
    """Every candidate blend; co-visitation alone once (its window is irrelevant)."""
    grid = [BlendWeights(0.0, 1.0, 60)]
    grid += [BlendWeights.of_ratio(r, w) for w in windows for r in BLEND_RATIOS if r > 0]
    return grid


@dataclass(frozen=True)
class BlendTuning:
    """The chosen blend and what every grid point scored on the tuning clicks."""

    best: BlendWeights
    grid: list[BlendWeights]
    ndcg: np.ndarray  # (G,) mean NDCG@10 of each grid point over every tuning click
    clicks: int

    def validation_ndcg(self) -> dict[str, float]:
        """Mean NDCG@10 on the tuning clicks of each component alone and of the tuned blend
        (in-sample for the blend: it was chosen on these clicks)."""
        if not self.clicks:
            return {}
        out = {"co-visitation (previous click)": self._of(BlendWeights(0.0, 1.0, 60))}
        for minutes in sorted({w.window_min for w in self.grid}):
            out[f"recent popularity ({minutes} min)"] = self._of(BlendWeights(1.0, 0.0, minutes))
        out["blend"] = self._of(self.best)
        return out

    def _of(self, weights: BlendWeights) -> float:
        return float(self.ndcg[self.grid.index(weights)])


def tune_blend(states: Iterable[TargetState], grid: list[BlendWeights] | None = None) -> BlendTuning:
    """The blend with the best mean NDCG@10 over `states` (validation clicks that count).

    A click on an item that was not live is a miss (0) for every blend; ties between grid points
    go to the earlier one. With no click at all the hour's popularity blend is kept.
    """
    grid = grid or blend_grid()
    windows = sorted({w.window_min for w in grid})
    a = np.array([w.a for w in grid])[:, None]
    b = np.array([w.b for w in grid])[:, None]
    window_row = np.array([windows.index(w.window_min) for w in grid])
    totals = np.zeros(len(grid))
    clicks = 0
    for state in states:
        clicks += 1
        if not state.live_click:
            continue
        log_pop = np.log1p(np.stack([state.pop[m] for m in windows]))  # (W, L)
        # every grid point's scores at once, with the arithmetic of BlendWeights.scores
        scores = a * log_pop[window_row] + b * np.log1p(state.covis)[None, :]
        totals += ndcg10_of_rows(scores, state.target)
    if not clicks:
        return BlendTuning(BlendWeights(1.0, 1.0, 60), grid, totals, 0)
    return BlendTuning(grid[int(np.argmax(totals))], grid, totals / clicks, clicks)
