"""Engagement weights: how much each kind of engagement is worth when learning and ranking.

Defaults are where practitioners usually start: a click counts 1, a long dwell (> 10 s) 2 more, a
share 5 more, and a hide ("not interested") counts against. They give the retrieval loss its
per-example weight. The ranker's feed score (a weighted sum of head probabilities) defaults to
`FEED_SCORE_MINUTES` instead: each engagement at what it is worth in minutes of reading.
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


# The ranker's default feed score, in minutes of reading. A click is worth its expected dwell:
# 0.098 min for a click of at most 10 s and 0.851 min for a longer one in the default simulated
# world's training log (so the long-dwell head adds 0.753); a share and a hide are worth what the
# served evaluation's utility counts them (docs/simulator.md: 2 min, -0.3 min). On validation the
# served feed's share of the oracle rose 0.592 -> 0.598 and 0.575 -> 0.579 (two seeds) against
# EngagementWeights' defaults (docs/served_feed.md, session 7).
FEED_SCORE_MINUTES = EngagementWeights(click=0.098, long_dwell=0.753, share=2.0, hide=-0.3)
