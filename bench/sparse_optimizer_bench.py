"""Which sparse optimizer trains embedding tables better on this CPU? (not a test; a measurement)

    .venv/bin/python bench/sparse_optimizer_bench.py

Trains the toy click task (a Zipf-distributed id table + MLP) through `feedrank.train.train` with
Adagrad and SparseAdam at a few learning rates each, plus the same table with dense gradients
and AdamW, and prints validation log loss, wall time and samples/s. The default of
TrainConfig.sparse_optimizer and sparse_lr comes from this table.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from feedrank.train import TensorBatchSource, TrainConfig, train
from tests.train.toy import ToyNet, ToyTask, make_data, make_evaluate

NUM_IDS = 100_000
DIM = 32
STEPS = 300
BATCH = 256


def run(
    optimizer: str, sparse_lr: float, *, sparse: bool = True, lr: float = 3e-3
) -> tuple[float, float, float]:
    torch.manual_seed(0)
    task = ToyTask(ToyNet(num_ids=NUM_IDS, dim=DIM, hidden=64, sparse=sparse))
    data = TensorBatchSource(make_data(STEPS * BATCH, num_ids=NUM_IDS, zipf=1.05), BATCH, seed=0)
    evaluate = make_evaluate(make_data(20_000, seed=1, num_ids=NUM_IDS, zipf=1.05))
    config = TrainConfig(
        lr=lr,
        sparse_lr=sparse_lr,
        sparse_optimizer=optimizer,  # type: ignore[arg-type]
        schedule="constant",
        progress=False,
        plot=False,
        log_every=STEPS,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(task, data, config, Path(tmp), evaluate=evaluate)
        task.model.eval()
        with torch.no_grad():
            log_loss = evaluate(task.model)["log_loss"]
    return log_loss, result.wall_s, result.samples_per_s


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # One thread: on a shared 2-core machine two intra-op threads ran 7-70x slower under contention.
    torch.set_num_threads(1)
    rows = []
    for lr in (0.01, 0.03, 0.1, 0.3):
        rows.append(("adagrad", lr, *run("adagrad", lr)))
    for lr in (0.001, 0.003, 0.01, 0.03):
        rows.append(("sparse_adam", lr, *run("sparse_adam", lr)))
    for lr in (3e-3, 1e-2, 3e-2):
        rows.append(("dense AdamW", lr, *run("adagrad", 0.1, sparse=False, lr=lr)))
    logging.getLogger(__name__).warning(
        "%-12s %8s %10s %8s %10s", "optimizer", "lr", "log_loss", "wall_s", "samples/s"
    )
    for name, lr, log_loss, wall, sps in rows:
        logging.getLogger(__name__).warning("%-12s %8.3g %10.4f %8.2f %10.0f", name, lr, log_loss, wall, sps)


if __name__ == "__main__":
    main()
