"""The ranker's examples for a click-only log, in bounded memory: next-click queries and batches.

A click-only log has no unclicked impressions, so every negative is an item the user did not
click at that time: drawn from the catalog live then, and from the candidate pool serving would
have ranked (the hard negatives that decide next-click ranking, docs/real_news.md). Held as
materialised rows (item inputs, 25 dense columns and labels per negative) that is ~300 bytes per
negative, 16 rows per click: 6 GB for the 1.27M clicks of the Globo slice before any copy.

Here each click is one next-click query (its user at its own time, as the next-click protocol asks),
and its negatives are kept only as catalog rows: `ClickExamples.items` is (C, 1 + K) int32, the
clicked item first. `ClickBatches` builds a batch's model inputs (item inputs, dense columns,
labels) when the batch is asked for, from the strictly-before-t indexes the feature space already
holds; memory is the space plus 4 bytes per negative (and the source columns when the ranker reads
them, 2 bytes each). Batches are a function of (seed, epoch, batch index), so resume and DDP
behave as with `TensorBatchSource`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.candidates.merge import SOURCE_FEATURES, merged_rows, source_features
from feedrank.data.example_arrays import Arrays
from feedrank.data.examples import FeatureSpace, label_arrays, live_catalog_sample
from feedrank.data.features import hash_column, to_us

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
EXTRA_LABELS = ("y_long_dwell", "y_share", "y_hide")  # of the click; 0 for every negative


@dataclass(frozen=True)
class ClickExamples:
    """One next-click query per training click and its negatives, as catalog rows.

    user_rows: (C,) user directory rows (-1: unknown); user_buckets: (C,) hashed user ids;
    ts_us: (C,) µs of each click.
    items: (C, 1 + K) int32 catalog rows: the clicked item, then its negatives (-1: none drawn).
    labels: (C, 3) float32, the click's own EXTRA_LABELS; position: (C,) its logged slot.
    sources: (C, 1 + K, len(SOURCE_FEATURES)) float16 source columns of every item, or None.
    """

    user_rows: I64
    user_buckets: I64
    ts_us: I64
    items: I32
    labels: npt.NDArray[np.float32]
    position: I64
    sources: npt.NDArray[np.float16] | None = None

    def __len__(self) -> int:
        return int(self.ts_us.size)

    def with_negatives(self, drawn: I64) -> ClickExamples:
        """These examples with (C, k) more negatives (-1: none); the clicked item is never one."""
        drawn = np.where(drawn == self.items[:, :1], -1, drawn).astype(np.int32)
        return replace(self, items=np.concatenate([self.items, drawn], axis=1))

    def nbytes(self) -> int:
        arrays: list[np.ndarray] = [self.user_rows, self.user_buckets, self.ts_us, self.items]
        arrays += [self.labels, self.position]
        if self.sources is not None:
            arrays.append(self.sources)
        return int(sum(a.nbytes for a in arrays))


def click_examples(
    space: FeatureSpace,
    impressions: pl.DataFrame,
    catalog_negatives: int,
    seed: int = 0,
    live_window_h: float = 48.0,
) -> ClickExamples:
    """The clicks of `impressions` (on catalog items) as queries, with `catalog_negatives` items
    each drawn uniformly from the catalog live at the click's time (data/examples.py says why)."""
    clicks = impressions.filter(pl.col("clicked")).sort("ts", maintain_order=True)
    rows = space.catalog.rows(clicks.get_column("item_id"))
    clicks, rows = clicks.filter(pl.Series(rows >= 0)), rows[rows >= 0]
    ts = to_us(clicks.get_column("ts"))
    labels = label_arrays(clicks)
    examples = ClickExamples(
        user_rows=space.users.rows(clicks.get_column("user_id")),
        user_buckets=hash_column(clicks.get_column("user_id"), space.config.user_buckets, "user"),
        ts_us=ts,
        items=rows.astype(np.int32)[:, None],
        labels=np.stack([labels[name] for name in EXTRA_LABELS], axis=1),
        position=clicks.get_column("position").fill_null(0).to_numpy().astype(np.int64)
        if "position" in clicks.columns
        else np.zeros(clicks.height, dtype=np.int64),
    )
    if catalog_negatives <= 0:
        return examples
    drawn = live_catalog_sample(space, ts, catalog_negatives, live_window_h, np.random.default_rng(seed))
    return examples.with_negatives(drawn)


def replay_pools(
    logged: LoggedSources,
    requests: Requests,
    examples: ClickExamples,
    pool_negatives: int,
    quotas: Mapping[str, int],
    pool_size: int,
    rng: np.random.Generator,
    with_sources: bool,
) -> ClickExamples:
    """`examples` with `pool_negatives` items per click drawn without replacement from its own
    candidate pool (the `pool_size` candidates serving would merge at its time, the clicked item
    left out), and, when `with_sources`, every item's source columns from the same lists.

    `requests` are the clicks themselves (request r = click r). One walk forward in time over the
    clicks (candidates/logged.py) asks the sources once per click.
    """
    drawn = np.full((len(examples), max(pool_negatives, 0)), -1, dtype=np.int64)
    columns = None
    if with_sources:
        width = examples.items.shape[1] + drawn.shape[1]
        columns = np.zeros((len(examples), width, len(SOURCE_FEATURES)), dtype=np.float16)
    for r, lists in logged.walk(requests, np.arange(len(examples))):
        clicked = int(examples.items[r, 0])
        if pool_negatives > 0:
            pool = merged_rows(lists, quotas, pool_size)
            pool = pool[pool != clicked]
            k = min(pool_negatives, pool.size)
            drawn[r, :k] = rng.choice(pool, size=k, replace=False)
        if columns is not None:
            items = np.concatenate([examples.items[r].astype(np.int64), drawn[r]])
            block = source_features(lists, items)
            block[items < 0] = 0.0
            columns[r] = block
    out = examples.with_negatives(drawn) if pool_negatives > 0 else examples
    return replace(out, sources=columns)


class ClickBatches:
    """Ranker batches from `ClickExamples`, their model inputs built per batch.

    A batch holds `clicks_per_batch` clicks with all their negatives (about batch_size rows); the
    clicks are shuffled per epoch by (seed, epoch) and batch k of an epoch goes to rank
    k % world_size, as `TensorBatchSource` deals them. Row `request_index` is the click's index:
    the frozen tower's user table has one row per click.
    """

    def __init__(
        self,
        space: FeatureSpace,
        examples: ClickExamples,
        counters: Sequence[str],
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.space, self.examples, self.counters, self.seed = space, examples, tuple(counters), seed
        self.clicks_per_batch = max(1, batch_size // examples.items.shape[1])

    def __len__(self) -> int:
        return len(self.examples)

    def num_batches(self, rank: int, world_size: int) -> int:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        return int(len(self.examples) // (self.clicks_per_batch * world_size))

    def order(self, epoch: int) -> I64:
        order: I64 = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        return order

    def batches(self, epoch: int, rank: int, world_size: int, start: int = 0) -> Iterator[Arrays]:
        order = self.order(epoch)
        size = self.clicks_per_batch
        for i in range(start, self.num_batches(rank, world_size)):
            k = i * world_size + rank
            yield self.arrays(np.sort(order[k * size : (k + 1) * size]))

    def arrays(self, clicks: I64) -> Arrays:
        """The model inputs of these clicks and their negatives, one row per (click, item)."""
        ex = self.examples
        items = ex.items[clicks]
        keep = items >= 0
        owner = np.broadcast_to(clicks[:, None], items.shape)[keep]
        rows = items[keep].astype(np.int64)
        is_click = np.zeros(items.shape, dtype=bool)
        is_click[:, 0] = True
        is_click = is_click[keep]
        ts, users = ex.ts_us[owner], ex.user_rows[owner]
        out: Arrays = self.space.item_arrays(rows, ts)
        out["y_click"] = is_click.astype(np.float32)
        for j, name in enumerate(EXTRA_LABELS):
            out[name] = np.where(is_click, ex.labels[owner, j], 0.0).astype(np.float32)
        out["item_row"] = rows
        out["counters"] = self.space.past.features(self.counters, users, rows, ts, self.space.catalog)
        out["position"] = ex.position[owner]
        out["request_index"] = owner.astype(np.int64)
        out["sample_rate"] = np.ones(rows.size, dtype=np.float32)
        if ex.sources is not None:
            out["sources"] = ex.sources[clicks][keep].astype(np.float32)
        return out
