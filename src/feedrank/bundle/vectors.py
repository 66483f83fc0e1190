"""Item and user vectors of a loaded bundle, for tuning and benchmarking its index."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from feedrank.bundle.loader import Bundle
from feedrank.models.inputs import UserInputs


@torch.no_grad()
def item_vectors(bundle: Bundle, now_us: int | None = None) -> np.ndarray:
    """(I, d) float32: content + freshness of every catalog item at `now_us` (default: the snapshot)."""
    at = bundle.snapshot_us if now_us is None else now_us
    published = torch.from_numpy(bundle.space.catalog.published_us)
    vectors: np.ndarray = bundle.towers.vectors_at(
        torch.from_numpy(bundle.item_content), published, at
    ).numpy()
    return vectors.astype(np.float32)


@torch.no_grad()
def user_vectors(bundle: Bundle, num_users: int = 1000, seed: int = 0) -> np.ndarray:
    """(U, d) float32 user-tower outputs at the snapshot for up to `num_users` users with events,
    sampled with `seed`: held-out queries for tuning the index."""
    events = pl.read_parquet(bundle.path / "events.parquet")
    users = events.get_column("user_id").unique().sort()
    if users.len() > num_users:
        users = users.sample(num_users, seed=seed)
    ts = np.full(users.len(), bundle.snapshot_us, dtype=np.int64)
    arrays = bundle.space.user_arrays(users, ts)
    out: np.ndarray = bundle.towers.user(UserInputs.from_arrays(arrays)).numpy()
    return out.astype(np.float32)
