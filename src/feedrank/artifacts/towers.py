"""What a trained two-tower computes outside a training step: item vectors at a given hour."""

from __future__ import annotations

import numpy as np
import torch

from feedrank.data.examples import FeatureSpace
from feedrank.data.features import US_PER_HOUR
from feedrank.models.inputs import ItemInputs
from feedrank.models.two_tower import TwoTower


@torch.no_grad()
def item_vectors_at_hour(towers: TwoTower, space: FeatureSpace, hour: int, batch: int = 8192) -> np.ndarray:
    """(num catalog items, d) float32 item vectors at the middle of `hour` (freshness as then)."""
    rows = np.arange(len(space.catalog))
    at = np.full(rows.size, hour * US_PER_HOUR + US_PER_HOUR // 2, dtype=np.int64)
    out = []
    for lo in range(0, rows.size, batch):
        arrays = space.item_arrays(rows[lo : lo + batch], at[lo : lo + batch])
        out.append(towers.item(ItemInputs.from_arrays(arrays)))
    vectors: np.ndarray = torch.cat(out).numpy() if out else np.zeros((0, towers.cfg.dim), dtype=np.float32)
    return vectors


class HourlyItemVectors:
    """`item_vectors_at_hour` of frozen towers for hour after hour, the time-independent content
    vectors computed once: an hour then costs the freshness lookup alone, not the item tower over
    the catalog (which replays and next-click asked for every hour they crossed). The sums are
    the same floats as `item_vectors_at_hour`'s (same batches, same operations)."""

    def __init__(self, towers: TwoTower, space: FeatureSpace, batch: int = 8192) -> None:
        self.towers, self.space, self.batch = towers, space, batch
        self._content: list[torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self, hour: int) -> np.ndarray:
        rows = np.arange(len(self.space.catalog))
        at = np.full(rows.size, hour * US_PER_HOUR + US_PER_HOUR // 2, dtype=np.int64)
        tower = self.towers.item_tower
        size = self.batch
        blocks = [
            ItemInputs.from_arrays(self.space.item_arrays(rows[lo : lo + size], at[lo : lo + size]))
            for lo in range(0, rows.size, size)
        ]
        if self._content is None:
            self._content = [tower.content(items) for items in blocks]
        pairs = zip(self._content, blocks, strict=True)
        out = [content + tower.freshness(items.freshness) for content, items in pairs]
        vectors: np.ndarray = (
            torch.cat(out).numpy() if out else np.zeros((0, self.towers.cfg.dim), dtype=np.float32)
        )
        return vectors
