"""A seeded, tiny click log for the candidate-source tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

US_PER_MIN = 60_000_000
NUM_ITEMS = 40


@dataclass(frozen=True)
class ClickLog:
    users: np.ndarray  # (E,) object (str)
    items: np.ndarray  # (E,) int64
    ts: np.ndarray  # (E,) int64 µs, sorted

    def before(self, t: int) -> ClickLog:
        keep = self.ts < t
        return ClickLog(self.users[keep], self.items[keep], self.ts[keep])


@pytest.fixture
def clicks() -> ClickLog:
    rng = np.random.default_rng(7)
    n = 600
    # Minutes apart, in bursts: many gaps under the 30-minute session gap, some over it.
    ts = np.cumsum(rng.choice([1, 3, 10, 45, 120], size=n)) * US_PER_MIN
    users = np.array([f"u{k}" for k in rng.integers(0, 6, n)], dtype=object)
    items = rng.integers(0, NUM_ITEMS, n).astype(np.int64)
    return ClickLog(users, items, ts.astype(np.int64))
