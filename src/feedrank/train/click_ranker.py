"""The ranker's training data on a click-only log: next-click queries streamed batch by batch.

`train_ranker` (train/run.py) comes here for a click-only split. Every training click is a query
at its own time; its negatives are catalog rows (data/click_examples.py): uniform live-catalog
draws, and draws from the candidate pool the sources would have merged for it, replayed with one
walk forward in time (candidates/logged.py). The frozen towers run once per click and once per
catalog item; model inputs are built per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import polars as pl
import torch

from feedrank.artifacts.config import RankerRunConfig
from feedrank.artifacts.towers import HourlyItemVectors
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.data.click_examples import ClickBatches, ClickExamples, click_examples, replay_pools
from feedrank.data.examples import FeatureSpace, recent_click_sample
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.two_tower import TwoTower
from feedrank.train.batch_types import RankerBatch
from feedrank.train.ranker_task import TowerTables

log = logging.getLogger(__name__)
USER_CHUNK = 8192  # clicks whose user-tower inputs are built at once


class ClickBatchSource:
    """`ClickBatches` as `RankerBatch`es, for the training loop (a `BatchSource`)."""

    def __init__(self, batches: ClickBatches) -> None:
        self.inner = batches

    def __len__(self) -> int:
        return len(self.inner)

    def num_batches(self, rank: int, world_size: int) -> int:
        return self.inner.num_batches(rank, world_size)

    def batches(self, epoch: int, rank: int, world_size: int, start: int = 0) -> Iterator[RankerBatch]:
        for arrays in self.inner.batches(epoch, rank, world_size, start):
            yield RankerBatch.from_arrays(arrays)


@torch.no_grad()
def click_tower_tables(towers: TwoTower, space: FeatureSpace, examples: ClickExamples) -> TowerTables:
    """The frozen towers' outputs: one user vector per click (its history before the click), one
    content vector per catalog item; user inputs are built `USER_CHUNK` clicks at a time."""
    towers.eval()
    users = []
    for lo in range(0, len(examples), USER_CHUNK):
        chunk = slice(lo, lo + USER_CHUNK)
        arrays = space.user_arrays_at(
            examples.user_buckets[chunk], examples.user_rows[chunk], examples.ts_us[chunk]
        )
        users.append(towers.user(UserInputs.from_arrays(arrays)))
    dim = towers.cfg.dim
    everything = np.arange(len(space.catalog))
    catalog = ItemInputs.from_arrays(space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64)))
    content = towers.item_tower.content(catalog)
    table = torch.cat(users) if users else torch.zeros((0, dim))
    return TowerTables(table, content, towers.item_tower.freshness.weight.detach().clone())


def click_ranker_data(
    space: FeatureSpace, towers: TwoTower, clicks: pl.DataFrame, cfg: RankerRunConfig
) -> tuple[ClickBatchSource, TowerTables, ClickExamples]:
    """Batches, tower tables and examples for the ranker on the clicks of a click-only log.

    `cfg.loss` must be resolved (no auto counts).
    """
    loss = cfg.loss
    examples = click_examples(space, clicks, loss.catalog_negatives, seed=cfg.train.seed)
    if loss.popular_negatives > 0:
        rng = np.random.default_rng([cfg.train.seed, 2])
        window = loss.popular_window_h
        examples = examples.with_negatives(
            recent_click_sample(space, examples.ts_us, loss.popular_negatives, window, rng)
        )
    log.info("ranker on a click-only log: %d clicks as next-click queries", len(examples))
    tables = click_tower_tables(towers, space, examples)
    if loss.pool_negatives > 0 or cfg.sources:
        logged = LoggedSources.from_past(space.past, space.catalog, space.users)
        users: torch.Tensor = tables.users  # type: ignore[assignment]
        requests = Requests(
            examples.user_rows,
            examples.ts_us,
            users.numpy(),
            HourlyItemVectors(towers, space),
        )
        log.info(
            "candidate pools replayed for %d clicks (%d pool negatives each%s)",
            len(examples),
            loss.pool_negatives,
            ", source columns" if cfg.sources else "",
        )
        examples = replay_pools(
            logged,
            requests,
            examples,
            loss.pool_negatives,
            logged.sources.config.quotas(),
            loss.pool_size,
            np.random.default_rng([cfg.train.seed, 1]),
            with_sources=bool(cfg.sources),
        )
    log.info(
        "ranker examples: %d clicks x %d items, %.1f MiB held",
        len(examples),
        examples.items.shape[1],
        examples.nbytes() / 2**20,
    )
    batches = ClickBatches(space, examples, cfg.counters, cfg.batch_size, seed=cfg.train.seed)
    return ClickBatchSource(batches), tables, examples
