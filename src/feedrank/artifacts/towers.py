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
