"""Typed model inputs: what the towers read, with names and shapes.

Features are computed as numpy arrays keyed like `FeatureSpace.user_arrays` / `item_arrays`
(data/examples.py); `from_arrays` names them at the model boundary. The training batches built
from these are in feedrank.train.batch_types; the ranker's own inputs are `models.ranker.RankerInputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Columns = Mapping[str, np.ndarray | Tensor]


def as_tensor(values: np.ndarray | Tensor) -> Tensor:
    """A tensor sharing `values`' memory (numpy arrays made contiguous first)."""
    return values if isinstance(values, Tensor) else torch.from_numpy(np.ascontiguousarray(values))


@dataclass(frozen=True)
class UserInputs:
    """A batch of users at a point in time. Bucket 0 means missing / padding everywhere."""

    user_id: Tensor  # (B,) int64 hashed user id
    demographics: Tensor  # (B, D) int64 hashed demographic values
    hist_item: Tensor  # (B, L) int64 hashed ids of the last L engaged items, oldest first
    hist_cat: Tensor  # (B, L) int64 their categories
    hist_pub: Tensor  # (B, L) int64 their publishers

    @classmethod
    def from_arrays(cls, arrays: Columns) -> UserInputs:
        """From `FeatureSpace.user_arrays` (numpy arrays or tensors, keyed by it)."""
        return cls(
            user_id=as_tensor(arrays["user_id"]),
            demographics=as_tensor(arrays["user_demo"]),
            hist_item=as_tensor(arrays["hist_item"]),
            hist_cat=as_tensor(arrays["hist_cat"]),
            hist_pub=as_tensor(arrays["hist_pub"]),
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
    def from_arrays(cls, arrays: Columns) -> ItemInputs:
        """From `FeatureSpace.item_arrays` (numpy arrays or tensors, keyed by it; any shape)."""
        published = arrays.get("item_published_us")
        return cls(
            item_id=as_tensor(arrays["item_id"]),
            publisher=as_tensor(arrays["item_pub"]),
            category=as_tensor(arrays["item_cat"]),
            subcategory=as_tensor(arrays["item_subcat"]),
            content_type=as_tensor(arrays["item_type"]),
            freshness=as_tensor(arrays["item_fresh"]),
            published_us=None if published is None else as_tensor(published),
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
