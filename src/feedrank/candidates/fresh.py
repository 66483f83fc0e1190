"""Fresh items: published in the last minutes, so that items nobody has clicked yet get seen.

Neither the ANN (whose item vectors a cold item shares with its look-alikes) nor trending and
co-visitation (which need clicks) can be counted on to propose an item in its first minutes; this
source does, newest first. The score falls linearly from 1 (published just now) to 0 (as old as
the window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.candidates.postings import F64, I64

US_PER_MIN = 60_000_000


@dataclass(frozen=True)
class FreshConfig:
    window_min: float = 120.0


def fresh_scores(published_us: I64, t_us: int, config: FreshConfig = FreshConfig()) -> F64:
    """(I,) score of each item at t: 1 - age / window for items published in (t - window, t]."""
    window = config.window_min * US_PER_MIN
    age = (t_us - published_us).astype(np.float64)
    out: F64 = np.where((age >= 0) & (age < window), 1.0 - age / window, 0.0)
    return out
