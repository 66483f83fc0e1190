"""What the streamed two-tower data path costs beside the training step it feeds.

    .venv/bin/python bench/stream_overhead.py SPLIT --batches 40

Builds the run's example streams for SPLIT (train/shards.py, data/retrieval_stream.py) with the
default RetrievalRunConfig, then times, in one process and one thread: drawing `--batches`
batches from the ShardBatchSource (Parquet reads, shuffle, history, item features, 20 catalog
negatives when the log is click-only), and a forward + backward + optimizer-free step of the
RetrievalTask on the same batches. Prints both rates (median of per-batch times) and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from feedrank.artifacts.config import RetrievalRunConfig
from feedrank.artifacts.store import build_space, build_two_tower
from feedrank.data.retrieval_stream import RetrievalBatches
from feedrank.data.split import open_split
from feedrank.train.batch_types import RetrievalBatch
from feedrank.train.retrieval_task import RetrievalTask
from feedrank.train.run import AUTO_CATALOG_NEGATIVES, retrieval_streams
from feedrank.train.shards import ShardBatchSource


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", type=Path)
    parser.add_argument("--batches", type=int, default=40)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    cfg = RetrievalRunConfig()
    space = build_space(opts.split, cfg.features)
    train_part = open_split(opts.split)["train"]
    negatives = AUTO_CATALOG_NEGATIVES if train_part.click_only else 0
    with tempfile.TemporaryDirectory(prefix="stream-overhead-") as tmp:
        paths, rows = retrieval_streams(space, train_part, cfg, Path(tmp))
        make = RetrievalBatches(space, negatives, seed=0)
        source = ShardBatchSource(
            paths, cfg.batch_size, lambda r, e: RetrievalBatch.from_arrays(make.arrays(r, e))
        )
        batches, data_s = [], []
        it = source.batches(0, 0, 1)
        for _ in range(opts.batches):
            start = time.perf_counter()
            batches.append(next(it))
            data_s.append(time.perf_counter() - start)
    task = RetrievalTask(build_two_tower(cfg), cfg.loss)
    step_s = []
    for batch in batches:
        start = time.perf_counter()
        loss, _ = task.loss(batch)
        loss.backward()
        step_s.append(time.perf_counter() - start)
    data, step = statistics.median(data_s), statistics.median(step_s)
    print(f"{rows:,} examples; batch {cfg.batch_size}, {negatives} catalog negatives, 1 thread")
    print(f"data path: {cfg.batch_size / data:,.0f} samples/s ({1000 * data:.1f} ms per batch, median)")
    print(
        f"forward + backward: {cfg.batch_size / step:,.0f} samples/s ({1000 * step:.1f} ms per batch, median)"
    )
    print(f"data / step time: {data / step:.3f}")


if __name__ == "__main__":
    main()
