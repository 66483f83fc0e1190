"""Engagement weights: how much each kind of engagement is worth when learning and ranking.

Defaults are where practitioners usually start: a click counts 1, a long dwell (> 10 s) 2 more, a
share 5 more, and a hide ("not interested") counts against. The same weights give the retrieval
loss its per-example weight and the ranker its feed score (a weighted sum of head probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.models.ranker import HEADS


@dataclass(frozen=True)
class EngagementWeights:
    click: float = 1.0
    long_dwell: float = 2.0
    share: float = 5.0
    hide: float = -1.0

    def as_dict(self) -> dict[str, float]:
        return {h: float(getattr(self, h)) for h in HEADS}

    def example_weight(self, y: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) value of each engaged row, floored at 0 (a clicked-then-hidden item teaches nothing)."""
        value = (
            self.click * y["y_click"]
            + self.long_dwell * y["y_long_dwell"]
            + self.share * y["y_share"]
            + self.hide * y["y_hide"]
        )
        return np.maximum(value, 0.0).astype(np.float32)
