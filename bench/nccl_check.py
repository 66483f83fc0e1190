"""Prepared CUDA check of the NCCL path: 2 ranks (allgather sparse sync) against 1 process.

    .venv/bin/python bench/nccl_check.py --out /tmp/nccl            # needs 2 CUDA devices
    .venv/bin/python bench/nccl_check.py --out /tmp/gloo --device cpu   # the same check on gloo

NCCL has no sparse all-reduce, so on CUDA the loop averages the sparse embedding gradients with
an all-gather (`train.sparse_sync = "allgather"`, distributed.py). That path is tested on gloo
only. This script trains the loop's toy task (tests/train/toy.py) as 2 NCCL ranks reading
disjoint example streams, and as one CUDA process reading all of them with twice the batch,
then prints the largest weight difference; it exits 1 above `--atol`. Not part of CI: it needs a
machine with 2 GPUs (two ranks cannot share one GPU under NCCL), and exits 2 saying so elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.train

from feedrank.train import TrainConfig, spawn_local, train
from feedrank.train.shards import Columns, ShardBatchSource, write_streams
from tests.train.toy import make_data, make_task, weights

STREAMS, BATCH, EXAMPLES = 4, 64, 8_192
CONFIG = TrainConfig(epochs=2, device="cuda", sparse_sync="allgather", progress=False, plot=False, lr=1e-2)
CPU = dataclasses.replace(CONFIG, device="cpu")  # --device cpu: the same check on gloo (dry run)


def to_batch(rows: Columns, epoch: int) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in rows.items()}


def streams(out: Path, write: list[int]) -> list[Path]:
    data = {k: v.numpy() for k, v in make_data(EXAMPLES).items()}
    chunks = iter([data])
    return write_streams(out, chunks, streams=STREAMS, unit_rows=256, streams_to_write=write)


def worker(rank: int, out: Path, config: TrainConfig) -> None:
    paths = streams(out / "streams", [s for s in range(STREAMS) if s % 2 == rank])
    task = make_task(seed=0)
    train(task, ShardBatchSource(paths, BATCH, to_batch, seed=1), config, out / "ddp")
    torch.save({k: v.cpu() for k, v in weights(task.model).items()}, out / f"rank{rank}.pt")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    opts = parser.parse_args()
    config = CONFIG if opts.device == "cuda" else CPU
    if opts.device == "cuda" and torch.cuda.device_count() < 2:
        print(f"needs 2 CUDA devices, found {torch.cuda.device_count()}: not run", file=sys.stderr)
        raise SystemExit(2)
    opts.out.mkdir(parents=True, exist_ok=True)
    spawn_local(worker, 2, opts.out, config)
    single = make_task(seed=0)
    paths = streams(opts.out / "all", list(range(STREAMS)))
    train(single, ShardBatchSource(paths, 2 * BATCH, to_batch, seed=1), config, opts.out / "single")
    one = {k: v.cpu() for k, v in weights(single.model).items()}
    ranks = [torch.load(opts.out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    replicas = max(float((ranks[0][k] - ranks[1][k]).abs().max()) for k in one)
    versus = max(float((ranks[0][k] - one[k]).abs().max()) for k in one)
    backend = "NCCL" if opts.device == "cuda" else "gloo"
    print(f"max |rank0 - rank1| = {replicas:.3g}; max |2 {backend} ranks - 1 process| = {versus:.3g}")
    raise SystemExit(0 if replicas == 0.0 and versus <= opts.atol else 1)


if __name__ == "__main__":
    main()
