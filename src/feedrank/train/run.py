"""Training runs: from a time split to a trained model in a run directory.

    RUN/
      run.json         kind, resolved config, data split, training result
      model.pt         the network's weights (best validation step when early stopping, else final)
      metrics.jsonl    curves; curves.png their plot; checkpoints/ for exact resume

A ranker run points at the retrieval run whose towers it builds on. The configs, model factories
and run.json / model.pt I/O live in feedrank.artifacts, which readers of runs import instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import build_ranker, build_space, build_two_tower, load_retrieval, write_run
from feedrank.artifacts.towers import HourlyItemVectors
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.data.dataset import Dataset
from feedrank.data.example_arrays import Arrays, RequestArrays
from feedrank.data.examples import FeatureSpace, ranker_examples, with_unshown_negatives
from feedrank.data.features import FeatureConfig, table_memory, to_us
from feedrank.data.retrieval_stream import RetrievalBatches, retrieval_rows, window_clicks
from feedrank.data.split import open_split
from feedrank.errors import ConfigError, DatasetError
from feedrank.memory import release_free_memory
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.two_tower import TwoTower
from feedrank.train.batch_types import RankerBatch, RetrievalBatch
from feedrank.train.batches import TensorBatchSource
from feedrank.train.click_ranker import click_ranker_data
from feedrank.train.loop import Evaluate, train
from feedrank.train.ranker_rows import bound_to_queries, ranker_rows
from feedrank.train.ranker_rows import latest_clicks as latest_clicks
from feedrank.train.ranker_rows import recent_part as recent_part
from feedrank.train.ranker_task import RankerTask, TowerTables, tower_tables
from feedrank.train.report import TrainResult
from feedrank.train.retrieval_task import RetrievalTask
from feedrank.train.shards import ShardBatchSource, write_streams
from feedrank.train.task import BatchSource

log = logging.getLogger(__name__)

MakeEvaluate = Callable[[FeatureSpace], Evaluate]
AUTO_CATALOG_NEGATIVES = 20  # per example, for click-only logs
EXAMPLES_DIR = "examples"  # the run's example streams while it trains
# Example streams: 8 lets 1, 2, 4 or 8 ranks split them evenly (a batch takes batch_size / (8 /
# world) rows of each); units of 8,192 rows are the shuffle's blocks and the reads' row groups.
EXAMPLE_STREAMS = 8
EXAMPLE_UNIT_ROWS = 8_192


def train_retrieval(
    split_dir: Path,
    out_dir: Path,
    cfg: RetrievalRunConfig,
    *,
    make_evaluate: MakeEvaluate | None = None,
    space: FeatureSpace | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the two-tower on the train part of `split_dir`; write the run to `out_dir`."""
    space = space or build_space(split_dir, cfg.features)
    parts = open_split(split_dir)
    catalog_negatives = cfg.loss.catalog_negatives
    if catalog_negatives < 0:
        catalog_negatives = AUTO_CATALOG_NEGATIVES if parts["train"].click_only else 0
    streams, examples = retrieval_streams(space, parts["train"], cfg, out_dir / EXAMPLES_DIR)
    space.past.keep_history_only()  # the two-tower's batches and validation read histories alone
    if examples < cfg.batch_size:
        raise DatasetError(
            f"{split_dir}: only {examples} engaged training examples, fewer than one batch "
            f"of {cfg.batch_size}; lower batch_size or use more data"
        )
    batches = RetrievalBatches(space, catalog_negatives, seed=cfg.train.seed)

    def make_batch(rows: Arrays, epoch: int) -> RetrievalBatch:
        return RetrievalBatch.from_arrays(batches.arrays(rows, epoch))

    data = ShardBatchSource(streams, cfg.batch_size, make_batch, seed=cfg.train.seed)
    torch.manual_seed(cfg.train.seed)  # initial weights are part of a reproducible run
    model = build_two_tower(cfg)
    _log_tables(cfg.features, cfg.model.embed_dim)
    task = RetrievalTask(model, cfg.loss)
    evaluate = make_evaluate(space) if make_evaluate else None
    result = train(task, data, cfg.train, out_dir, evaluate, resume=resume)
    for path in streams:  # rebuilt by every call, resume included; each rank removes its own
        path.unlink(missing_ok=True)
    extra = {"examples": examples, "catalog_negatives": catalog_negatives}
    _finish(out_dir, "retrieval", cfg, split_dir, model, result, extra)
    return result


def train_ranker(
    split_dir: Path,
    retrieval_run: Path,
    out_dir: Path,
    cfg: RankerRunConfig,
    *,
    make_evaluate: MakeEvaluate | None = None,
    space: FeatureSpace | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the ranker on the train part, over the frozen towers of `retrieval_run`."""
    towers, retrieval_cfg = load_retrieval(retrieval_run)
    own_space = space is None  # nobody else asks this space anything: its indexes can be bounded
    space = space or build_space(split_dir, retrieval_cfg.features)
    parts = open_split(split_dir)
    click_only = parts["train"].click_only
    loss = cfg.loss.resolved(click_only)
    if click_only and loss.catalog_negatives + loss.popular_negatives + loss.pool_negatives <= 0:
        # Every logged row is a click: without unshown items as negatives every label is positive.
        raise ConfigError(
            f"{split_dir} is a click-only log and loss.catalog_negatives is {loss.catalog_negatives}, "
            f"loss.pool_negatives {loss.pool_negatives}: the ranker would see no negatives; "
            "set either > 0"
        )
    cfg = dataclasses.replace(cfg, loss=loss)
    impressions = ranker_rows(parts["train"], loss)  # read lazily: the rows it trains on alone
    torch.manual_seed(cfg.train.seed)  # initial weights are part of a reproducible run
    ranker = build_ranker(cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    data: BatchSource[Any]
    if click_only:
        data, tables, clicks = click_ranker_data(space, towers, impressions, cfg)
        examples = len(clicks)
        evaluate = make_evaluate(space) if make_evaluate else None
    else:
        # The validation's sample first (no index read): the indexes then hold what it and the rows ask.
        evaluate = make_evaluate(space) if make_evaluate else None
        if own_space and bound_to_queries(space, impressions, evaluate):
            log.info("indexes bounded to the training rows' and the validation sample's users and times")
        data, tables, examples = _impression_data(space, towers, impressions, cfg)
    task = RankerTask(ranker, tables, cfg.loss)
    result = train(task, data, cfg.train, out_dir, evaluate, resume=resume)
    extra = {"examples": examples, "retrieval_run": str(Path(retrieval_run).resolve())}
    _finish(out_dir, "ranker", cfg, split_dir, ranker, result, extra)
    return result


def _impression_data(
    space: FeatureSpace, towers: TwoTower, impressions: pl.DataFrame, cfg: RankerRunConfig
) -> tuple[TensorBatchSource[RankerBatch], TowerTables, int]:
    """The ranker's rows of a log with impressions, in memory: every impression (and the unshown
    negatives of each click), its features as of its request; the tower tables per request."""
    log.info("ranker examples from %d training impressions (features as of each request)", impressions.height)
    if impressions.height:  # every query is at or after the first row: views before it are not read
        space.past.bound_views(int(to_us(impressions.get_column("ts")).min()))
    if space.past.until_us is not None and (cfg.sources or cfg.loss.pool_negatives > 0):
        # Built before the examples, while little else is held: its peak (every session's
        # co-click votes sorted) then does not stack on theirs; the replay and the validation
        # share it (LoggedSources.from_past).
        LoggedSources.from_past(space.past, space.catalog, space.users)
    arrays, requests = ranker_examples(
        space,
        impressions,
        cfg.loss.negative_rate,
        seed=cfg.train.seed,
        counters=cfg.counters,
        catalog_negatives=cfg.loss.catalog_negatives,
        popular_negatives=cfg.loss.popular_negatives,
        popular_window_h=cfg.loss.popular_window_h,
    )
    log.info(
        "frozen towers over %d requests and %d catalog items",
        len(requests),
        len(space.catalog),
    )
    tables = _tower_tables(towers, space, requests)
    if cfg.sources or cfg.loss.pool_negatives > 0:
        replay = SourceReplay(space, towers, requests, tables)
        if cfg.loss.pool_negatives > 0:
            arrays = replay.with_pool_negatives(arrays, cfg, np.random.default_rng(cfg.train.seed + 1))
        if cfg.sources:
            arrays["sources"] = replay.columns(arrays)
    space.past.release_clicks()  # the click indexes are built; a later one reads them again
    release_free_memory()  # what building the examples freed on the heap (feedrank/memory.py)
    data = TensorBatchSource(RankerBatch.from_arrays(arrays), cfg.batch_size, seed=cfg.train.seed)
    return data, tables, len(arrays["y_click"])


def retrieval_streams(
    space: FeatureSpace, train_part: Dataset, cfg: RetrievalRunConfig, out_dir: Path
) -> tuple[list[Path], int]:
    """The train part's retrieval rows dealt into example streams (train/shards.py) in `out_dir`:
    this rank writes the streams it reads. Returns every stream's path and the number of rows."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    streams = EXAMPLE_STREAMS if EXAMPLE_STREAMS % world == 0 else world
    counted = [0]

    def shuffled(chunks: Iterator[Arrays]) -> Iterator[Arrays]:
        # A shard's rows come in time order: dealt as they are, a unit would hold one stretch of
        # time (one user's session side by side), and the in-batch softmax would take a user's own
        # next clicks as negatives. Each shard is shuffled (seeded) before it is dealt.
        for i, chunk in enumerate(chunks):
            counted[0] += chunk["example"].size
            order = np.random.default_rng([cfg.train.seed, i]).permutation(chunk["example"].size)
            yield {k: v[order] for k, v in chunk.items()}

    clicks = window_clicks(train_part, cfg.loss.train_window_h)
    # Small logs get smaller units, so that every stream holds several of them.
    unit_rows = max(1, min(EXAMPLE_UNIT_ROWS, clicks // (8 * streams)))
    rows = retrieval_rows(
        space, train_part, cfg.weights.example_weight, cfg.loss.hard_negatives, cfg.loss.train_window_h
    )
    paths = write_streams(
        out_dir,
        shuffled(rows),
        streams=streams,
        unit_rows=unit_rows,
        streams_to_write=list(range(rank, streams, world)),
    )
    log.info("retrieval examples: %d rows in %d streams under %s", counted[0], streams, out_dir)
    return paths, counted[0]


class SourceReplay:
    """The candidate sources asked at each training request's time (candidates/logged.py)."""

    def __init__(
        self, space: FeatureSpace, towers: TwoTower, requests: RequestArrays, tables: TowerTables
    ) -> None:
        self.space = space
        self.logged = LoggedSources.from_past(space.past, space.catalog, space.users)
        towers.eval()
        users: torch.Tensor = tables.users  # type: ignore[assignment]
        self.requests = Requests(
            requests.user_row,
            requests.ts_us,
            users.numpy(),
            HourlyItemVectors(towers, space),
        )

    def columns(self, rows: Arrays) -> np.ndarray:
        """(N, 8) the source columns of each example row, asked at its request's time."""
        size = self.requests.ts_us.size
        log.info("candidate-source columns: %d rows of %d requests", rows["item_row"].size, size)
        return self.logged.features(self.requests, rows["request_index"], rows["item_row"])

    def with_pool_negatives(self, rows: Arrays, cfg: RankerRunConfig, rng: np.random.Generator) -> Arrays:
        """`rows` and, per click, `loss.pool_negatives` unshown items of its request's candidate pool."""
        clicks = np.flatnonzero(rows["y_click"] > 0)
        request = rows["request_index"]
        quotas = self.logged.sources.config.quotas()
        loss = cfg.loss
        drawn = self.logged.sample_pools(
            self.requests, request[clicks], loss.pool_negatives, quotas, loss.pool_size, rng
        )
        log.info("pool negatives: %d for %d clicks", int((drawn >= 0).sum()), clicks.size)
        users, ts = self.requests.users[request], self.requests.ts_us[request]
        return with_unshown_negatives(self.space, rows, users, ts, cfg.counters, clicks, drawn)


def _tower_tables(towers: TwoTower, space: FeatureSpace, requests: RequestArrays) -> TowerTables:
    """The frozen towers' outputs for every training request and catalog item (computed once)."""
    user_batches = [
        UserInputs.from_arrays({k: v[lo : lo + 8192] for k, v in requests.user.items()})
        for lo in range(0, len(requests), 8192)
    ]
    everything = np.arange(len(space.catalog))
    catalog = ItemInputs.from_arrays(space.item_arrays(everything, np.zeros(everything.size, dtype=np.int64)))
    return tower_tables(towers, user_batches, catalog)


def describe_tables(features: FeatureConfig, dim: int) -> str:
    """One line: every hashed embedding table's rows and the memory of all of them at width `dim`."""
    sizes = table_memory(features, dim)
    rows = ", ".join(f"{k} {features.table_sizes()[k]:,}" for k in sizes)
    return f"embedding tables (rows x {dim}): {rows}; {sum(sizes.values()) / 2**20:.1f} MiB of float32 in all"


def _log_tables(features: FeatureConfig, dim: int) -> None:
    log.info(describe_tables(features, dim))


def _finish(
    out_dir: Path,
    kind: str,
    cfg: Any,
    split_dir: Path,
    model: nn.Module,
    result: TrainResult,
    extra: dict[str, Any],
) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 writes the run (every rank holds the same weights)
    best = out_dir / "checkpoints" / "best.pt"
    if best.is_file():  # early stopping kept the best evaluation's weights apart
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["model"])
    write_run(out_dir, kind, cfg, split_dir, model, dataclasses.asdict(result), extra)
