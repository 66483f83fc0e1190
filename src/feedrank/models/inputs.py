"""Typed model inputs: what the towers and the ranker read, from loader to model.

Batches travel as flat dicts of tensors (easy to shard, shuffle, checkpoint and move to a device);
these views give them names and shapes at the model boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Batch = dict[str, Tensor]

USER_KEYS = ("user_id", "user_demo", "hist_item", "hist_cat", "hist_pub")
ITEM_KEYS = ("item_id", "item_pub", "item_cat", "item_subcat", "item_type", "item_fresh", "item_published_us")


@dataclass(frozen=True)
class UserInputs:
    """A batch of users at a point in time. Bucket 0 means missing / padding everywhere."""

    user_id: Tensor  # (B,) int64 hashed user id
    demographics: Tensor  # (B, D) int64 hashed demographic values
    hist_item: Tensor  # (B, L) int64 hashed ids of the last L engaged items, oldest first
    hist_cat: Tensor  # (B, L) int64 their categories
    hist_pub: Tensor  # (B, L) int64 their publishers

    @classmethod
    def from_batch(cls, batch: Batch, prefix: str = "") -> UserInputs:
        return cls(
            user_id=batch[f"{prefix}user_id"],
            demographics=batch[f"{prefix}user_demo"],
            hist_item=batch[f"{prefix}hist_item"],
            hist_cat=batch[f"{prefix}hist_cat"],
            hist_pub=batch[f"{prefix}hist_pub"],
        )


@dataclass(frozen=True)
class ItemInputs:
    """A batch of items as seen at a point in time (freshness depends on the time)."""

    item_id: Tensor  # (...,) int64 hashed item id
    publisher: Tensor  # (...,) int64
    category: Tensor  # (...,) int64
    subcategory: Tensor  # (...,) int64
    content_type: Tensor  # (...,) int64
    freshness: Tensor  # (...,) int64 age bucket at the request time
    published_us: Tensor | None = None  # (...,) int64 publication time, to re-bucket at other times

    @classmethod
    def from_batch(cls, batch: Batch, prefix: str = "") -> ItemInputs:
        return cls(
            item_id=batch[f"{prefix}item_id"],
            publisher=batch[f"{prefix}item_pub"],
            category=batch[f"{prefix}item_cat"],
            subcategory=batch[f"{prefix}item_subcat"],
            content_type=batch[f"{prefix}item_type"],
            freshness=batch[f"{prefix}item_fresh"],
            published_us=batch.get(f"{prefix}item_published_us"),
        )

    def flatten(self) -> ItemInputs:
        """Reshape (B, H) fields to (B*H,) so a tower can embed them in one call."""
        return ItemInputs(
            item_id=self.item_id.reshape(-1),
            publisher=self.publisher.reshape(-1),
            category=self.category.reshape(-1),
            subcategory=self.subcategory.reshape(-1),
            content_type=self.content_type.reshape(-1),
            freshness=self.freshness.reshape(-1),
            published_us=None if self.published_us is None else self.published_us.reshape(-1),
        )

    def fields(self) -> tuple[Tensor, ...]:
        return (
            self.item_id,
            self.publisher,
            self.category,
            self.subcategory,
            self.content_type,
            self.freshness,
        )

    @property
    def shape(self) -> torch.Size:
        return self.item_id.shape
