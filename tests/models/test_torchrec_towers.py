"""The optional TorchRec backend trains the two-tower, with its tables in one EBC and sharded by
TorchRec's planner; skipped, with the reason, where torchrec does not import (CI installs no
torchrec: `pip install -e '.[torchrec]'` plus the two --no-deps wheels of models/torchrec_towers)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from feedrank.artifacts.config import RetrievalLossConfig
from feedrank.artifacts.train_config import TrainConfig
from feedrank.data.example_arrays import RetrievalArrays
from feedrank.data.features import DEMOGRAPHICS, FeatureConfig
from feedrank.models.torchrec_towers import table_specs, torchrec_missing
from feedrank.models.two_tower import TwoTower, TwoTowerConfig
from feedrank.train import TensorBatchSource, train
from feedrank.train.batch_types import RetrievalBatch
from feedrank.train.retrieval_task import RetrievalTask

MISSING = torchrec_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"TorchRec backend unavailable: {MISSING}")

FEATURES = FeatureConfig(user_buckets=500, item_buckets=300, publisher_buckets=64, history_len=8)
MODEL = TwoTowerConfig(embed_dim=8, hidden=16, dim=8)


def batches(n: int = 512, seed: int = 0) -> RetrievalBatch:
    """Clicks where each user keeps clicking items of one 'taste' (user id mod 10): learnable."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, FEATURES.user_buckets, n)
    taste = users % 10
    items = 1 + taste * 29 + rng.integers(0, 5, n)
    hist = 1 + taste[:, None] * 29 + rng.integers(0, 5, (n, FEATURES.history_len))
    ts = np.full(n, 1_700_000_000_000_000, dtype=np.int64)
    user = {
        "user_id": users,
        "user_demo": rng.integers(1, 8, (n, len(DEMOGRAPHICS))),
        "hist_item": hist,
        "hist_cat": hist % 7 + 1,
        "hist_pub": hist % 5 + 1,
    }
    item = {
        "item_id": items,
        "item_pub": items % 5 + 1,
        "item_cat": items % 7 + 1,
        "item_subcat": items % 11 + 1,
        "item_type": np.ones(n, dtype=np.int64),
        "item_fresh": np.ones(n, dtype=np.int64),
        "item_published_us": ts - 3_600_000_000,
    }
    labels = {"y_click": np.ones(n, dtype=np.float32)}
    logq = np.full(n, -np.log(300.0), dtype=np.float32)
    arrays = RetrievalArrays(user=user, item=item, labels=labels, ts_us=ts, logq=logq)
    return RetrievalBatch.from_arrays(arrays)


def fit(model: TwoTower, out: Path) -> list[float]:
    losses: list[float] = []
    cfg = TrainConfig(epochs=6, num_threads=1, lr=3e-3, sparse_lr=0.1)
    data = TensorBatchSource(batches(), 128, seed=0)
    train(
        RetrievalTask(model, RetrievalLossConfig()), data, cfg, out, on_step=lambda s: losses.append(s.loss)
    )
    return losses


def test_the_ebc_two_tower_trains(tmp_path: Path) -> None:
    from feedrank.models.torchrec_towers import torchrec_two_tower

    torch.manual_seed(0)
    model = torchrec_two_tower(FEATURES, MODEL)
    before = model.ebc.state_dict()["embedding_bags.item_id.weight"].clone()
    losses = fit(model, tmp_path)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1
    assert not torch.equal(before, model.ebc.state_dict()["embedding_bags.item_id.weight"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_planner_shards_the_tables_table_wise_and_they_train(tmp_path: Path) -> None:
    import torch.distributed as dist

    from feedrank.models.torchrec_towers import shard_tables, torchrec_two_tower

    if dist.is_initialized():
        pytest.skip("a process group from another test is live in this process")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torchrec_two_tower(FEATURES, MODEL, device="meta")
        plan = shard_tables(model, sparse_lr=0.1)
        for name in table_specs(FEATURES):
            assert f"{name} " in plan
        assert plan.count("table_wise") >= len(table_specs(FEATURES))
        assert "row_wise" not in plan
        losses = fit(model, tmp_path)
        assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1
    finally:
        dist.destroy_process_group()
