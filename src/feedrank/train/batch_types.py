"""The typed batches the two training tasks read: `RetrievalBatch` and `RankerBatch`.

Each is a frozen dataclass of tensors whose first dimension is the batch; `from_arrays` builds it
from the numpy examples of data/ (sharing their memory), `to(device)` moves it and `len()` counts
its examples. `TensorBatchSource` slices one whole-data batch into batches of the same type, and
`ShardBatchSource` builds one per batch of streamed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from feedrank.data.example_arrays import Arrays, RetrievalArrays
from feedrank.models.inputs import Columns, ItemInputs, UserInputs, as_tensor
from feedrank.models.ranker import HEADS
from feedrank.train.batches import map_tensors


@dataclass(frozen=True)
class RetrievalBatch:
    """B engaged impressions for the two-tower's sampled softmax. Item id 0 marks no item."""

    user: UserInputs  # the user at the impression's time: (B,), (B, D), (B, L)
    item: ItemInputs  # the engaged item, (B,) fields with published_us: the in-batch candidates
    ts_us: Tensor  # (B,) int64 µs time of the impression (each row scores every item at its time)
    logq: Tensor  # (B,) float32 log sampling probability of the item, for logQ correction
    weight: Tensor | None = None  # (B,) float32 example weight; None = 1 each
    shown: ItemInputs | None = None  # (B, H) shown in the same request and not clicked
    catalog: ItemInputs | None = None  # (B, K) drawn from the catalog live at the row's time

    def __post_init__(self) -> None:
        if self.item.published_us is None:
            raise ValueError("a RetrievalBatch's items need published_us: freshness is per row's time")

    @classmethod
    def from_arrays(cls, arrays: RetrievalArrays) -> RetrievalBatch:
        def items(part: Arrays | None) -> ItemInputs | None:
            return None if part is None else ItemInputs.from_arrays(part)

        return cls(
            user=UserInputs.from_arrays(arrays.user),
            item=ItemInputs.from_arrays(arrays.item),
            ts_us=as_tensor(arrays.ts_us),
            logq=as_tensor(arrays.logq),
            weight=None if arrays.weight is None else as_tensor(arrays.weight),
            shown=items(arrays.shown),
            catalog=items(arrays.catalog),
        )

    @property
    def published_us(self) -> Tensor:
        """(B,) int64 publication time of each engaged item."""
        published: Tensor = self.item.published_us  # type: ignore[assignment]  # checked on creation
        return published

    def negatives(self) -> list[ItemInputs]:
        """The extra negative item sets, (B, ·) each: shown first, then catalog draws."""
        return [part for part in (self.shown, self.catalog) if part is not None]

    def to(self, device: torch.device) -> RetrievalBatch:
        return map_tensors(self, lambda t: t.to(device, non_blocking=True))

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])


@dataclass(frozen=True)
class RankerBatch:
    """N impression rows (and unshown negatives) for the multi-task ranker.

    The frozen towers' outputs are looked up, not computed: `request_index` points at the user
    embedding of the row's request and `item_row` at its item's content embedding (TowerTables).
    """

    request_index: Tensor  # (N,) int64 the row's request (one user at one time)
    item_row: Tensor  # (N,) int64 catalog row of the item
    item: ItemInputs  # (N,) the item's features at the request's time (freshness: its age bucket)
    counters: Tensor  # (N, F) float32 dense features, in the run config's counter order
    position: Tensor  # (N,) int64 slot in the slate
    labels: Tensor  # (N, len(HEADS)) float32 targets in models.ranker.HEADS order
    sample_rate: Tensor  # (N,) float32 probability the row was kept when downsampling negatives
    sources: Tensor | None = None  # (N, S) float32 candidate-source columns, when the ranker reads them
    # (N,) float32 1 = a logged impression, 0 = an unshown negative (catalog, popular or pool draw);
    # None when the rows hold no unshown negatives, or none are told apart (a click-only log's).
    shown: Tensor | None = None

    @classmethod
    def from_arrays(cls, rows: Columns) -> RankerBatch:
        """From `ranker_examples`' rows (and train_ranker's `sources` column when present)."""
        sources = rows.get("sources")
        shown = rows.get("shown")
        return cls(
            request_index=as_tensor(rows["request_index"]),
            item_row=as_tensor(rows["item_row"]),
            item=ItemInputs.from_arrays(rows),
            counters=as_tensor(rows["counters"]),
            position=as_tensor(rows["position"]),
            labels=torch.stack([as_tensor(rows[f"y_{head}"]) for head in HEADS], dim=1),
            sample_rate=as_tensor(rows["sample_rate"]),
            sources=None if sources is None else as_tensor(sources),
            shown=None if shown is None else as_tensor(shown),
        )

    def to(self, device: torch.device) -> RankerBatch:
        return map_tensors(self, lambda t: t.to(device, non_blocking=True))

    def __len__(self) -> int:
        return int(self.request_index.shape[0])
