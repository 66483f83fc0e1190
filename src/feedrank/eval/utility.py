"""Judging rankings by the simulator's ground truth instead of logged clicks.

Logged clicks only say what happened to the items the logging policy showed, in the positions it
chose. In the simulator the expected utility of every (user, item, time) is known, so a re-ranked
slate can be valued directly: sum over positions k of P(examined at k) x utility of the item
placed there. Dividing by the value of the oracle order gives the share of the achievable value.
"""

from __future__ import annotations

import numpy as np


def slate_value(
    scores: np.ndarray, utility: np.ndarray, groups: np.ndarray, examination: np.ndarray
) -> np.ndarray:
    """(G,) value of each group's items ordered by `scores`: sum_k examination[k] * utility.

    Args:
        scores, utility: (N,) per row. groups: (N,) group (request) ids.
        examination: (K,) probability of examining position k; positions beyond K count 0.
    """
    order = np.lexsort((-scores, groups))
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    position = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    weight = np.where(
        position < examination.size, examination[np.minimum(position, examination.size - 1)], 0.0
    )
    value: np.ndarray = np.add.reduceat(weight * utility[order], starts)
    return value


def share_of_oracle(
    scores: np.ndarray, utility: np.ndarray, groups: np.ndarray, examination: np.ndarray
) -> float:
    """Total slate value of `scores` over that of the oracle order (utility itself), in [.., 1]."""
    achieved = slate_value(scores, utility, groups, examination).sum()
    best = slate_value(utility, utility, groups, examination).sum()
    return float(achieved / best) if best > 0 else float("nan")
