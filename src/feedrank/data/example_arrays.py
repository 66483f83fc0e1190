"""The numpy form of model examples whose parts have different shapes.

A flat table of columns (`Arrays`: name → array with one row per example) is what examples are
stored, sharded and shuffled as. Where one example holds several item sets or points at rows of
another table, the parts get names instead of key prefixes: `RetrievalArrays` (an engaged item,
its user, and the negative item sets) and `RequestArrays` (the requests ranker rows point at).
`feedrank.train.batch_types` turns them into the typed tensor batches the training tasks read.

Item and user parts are keyed like `FeatureSpace.item_arrays` / `user_arrays`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]
LABELS = ("y_click", "y_long_dwell", "y_share", "y_hide")  # what `label_arrays` gives, in this order


@dataclass(frozen=True)
class RetrievalArrays:
    """B engaged impressions: the two-tower's examples (`retrieval_examples`, `RetrievalBatches`)."""

    user: Arrays  # the user at the impression's time: user_id (B,), user_demo (B, D), hist_* (B, L)
    item: Arrays  # the engaged item seen at that time: item_* (B,)
    labels: Arrays  # y_click, y_long_dwell, y_share, y_hide: (B,) float32
    ts_us: np.ndarray  # (B,) int64 µs time of the impression
    logq: np.ndarray  # (B,) float32 log sampling probability of the item (logQ correction)
    weight: np.ndarray | None = None  # (B,) float32 example weight; None = 1 each
    shown: Arrays | None = None  # item_* (B, H): shown in the same request, not clicked; id 0 pads
    catalog: Arrays | None = None  # item_* (B, K): drawn from the catalog live at t; id 0 = none

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])


@dataclass(frozen=True)
class RequestArrays:
    """R requests (one user at one time each), what ranker rows' `request_index` points at."""

    user: Arrays  # the user-tower inputs of each request's user at its time: (R,) / (R, L)
    user_row: np.ndarray  # (R,) int64 the user's directory row, -1 when unknown
    ts_us: np.ndarray  # (R,) int64 µs time of the request

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])
