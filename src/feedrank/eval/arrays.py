"""Sort-based numpy helpers shared by the evaluation modules.

numpy 2.4's `np.unique` takes a hash-based path that is ~20x slower than sorting on this project's
sizes (5M int64 keys: 15 s against 0.8 s; 2M strings: 4.6 s against 0.7 s), so the eval code
uses these instead.
"""

from __future__ import annotations

import numpy as np


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """(U,) the distinct values of a 1-d array, ascending (what `np.unique(values)` returns)."""
    ordered = np.sort(values, kind="stable")
    keep = np.ones(ordered.size, dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def first_occurrences(values: np.ndarray) -> np.ndarray:
    """(U,) int64 index of the first occurrence of each distinct value of a 1-d array, by value."""
    order = np.argsort(values, kind="stable")  # stable: the earliest index leads each run
    ordered = values[order]
    first = np.ones(ordered.size, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return order[first].astype(np.int64)
