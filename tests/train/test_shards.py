"""ShardBatchSource: batches streamed from Parquet stream files, per-rank files, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from feedrank.errors import ConfigError
from feedrank.train import load_checkpoint, spawn_local, train
from feedrank.train.shards import Columns, ShardBatchSource, write_streams
from tests.train.conftest import fast_config
from tests.train.toy import assert_weights_close, make_data, make_task, weights

STREAMS = 4
UNIT = 24  # rows per row group: several windows per stream, a short last unit
NUM_EXAMPLES = 400
BATCH = 16  # per rank; one process reads 2 x BATCH


def to_batch(rows: Columns, epoch: int) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in rows.items()}


def toy_streams(out: Path, num: int = NUM_EXAMPLES, write: list[int] | None = None) -> list[Path]:
    data = {k: v.numpy() for k, v in make_data(num).items()}
    data["row"] = np.arange(num)
    chunks = ({k: v[lo : lo + 50] for k, v in data.items()} for lo in range(0, num, 50))
    return write_streams(
        out, chunks, streams=STREAMS, unit_rows=UNIT, streams_to_write=write or list(range(STREAMS))
    )


def source(paths: list[Path], batch_size: int, window: int = 2) -> ShardBatchSource[dict[str, Tensor]]:
    return ShardBatchSource(paths, batch_size, to_batch, seed=5, window=window)


def test_an_epoch_visits_rows_once_in_a_seeded_order(tmp_path: Path) -> None:
    data = source(toy_streams(tmp_path), 8)
    epoch0 = torch.cat([b["row"] for b in data.batches(0, 0, 1)]).numpy()
    assert epoch0.size == data.num_batches(0, 1) * 8 > 0.8 * NUM_EXAMPLES  # a ragged tail is dropped
    assert np.unique(epoch0).size == epoch0.size  # no row twice
    assert not np.array_equal(epoch0, np.sort(epoch0))  # shuffled
    again = torch.cat([b["row"] for b in data.batches(0, 0, 1)]).numpy()
    epoch1 = torch.cat([b["row"] for b in data.batches(1, 0, 1)]).numpy()
    assert np.array_equal(epoch0, again) and not np.array_equal(epoch0, epoch1)
    assert (torch.cat([b["x"] for b in data.batches(0, 0, 1)]).shape[1]) == 4  # 2-D columns survive


def test_start_skips_batches_without_changing_the_rest(tmp_path: Path) -> None:
    data = source(toy_streams(tmp_path), 8, window=3)
    full = [b["row"] for b in data.batches(2, 1, 2)]
    for start in (1, 5, len(full) - 1):
        tail = [b["row"] for b in data.batches(2, 1, 2, start=start)]
        assert len(tail) == len(full) - start
        assert all(torch.equal(a, b) for a, b in zip(full[start:], tail, strict=True))


def test_ranks_read_disjoint_files_and_together_make_the_single_process_batches(tmp_path: Path) -> None:
    paths = toy_streams(tmp_path)
    single = source(paths, 2 * BATCH)
    ranks = [source(paths, BATCH) for _ in range(2)]
    assert ranks[0].owned(0, 2) == [0, 2] and ranks[1].owned(1, 2) == [1, 3]
    assert single.num_batches(0, 1) == min(r.num_batches(i, 2) for i, r in enumerate(ranks))
    for one, a, b in zip(
        single.batches(0, 0, 1), ranks[0].batches(0, 0, 2), ranks[1].batches(0, 1, 2), strict=False
    ):
        assert sorted(one["row"].tolist()) == sorted(a["row"].tolist() + b["row"].tolist())


def test_a_rank_needs_only_its_own_files(tmp_path: Path) -> None:
    paths = toy_streams(tmp_path, write=[1, 3])  # what rank 1 of 2 writes
    assert [p.exists() for p in paths] == [False, True, False, True]
    rows = torch.cat([b["row"] for b in source(paths, BATCH).batches(0, 1, 2)])
    assert rows.numel() > 0
    with pytest.raises(ConfigError, match="cannot be split over 3 ranks"):
        source(paths, BATCH).num_batches(0, 3)


def ddp_worker(rank: int, run_dir: Path) -> None:
    """A rank writes only its own streams, then trains on them."""
    paths = toy_streams(run_dir / "streams", write=[s for s in range(STREAMS) if s % 2 == rank])
    task = make_task(seed=0)
    train(task, source(paths, BATCH), fast_config(epochs=2), run_dir)
    torch.save(weights(task.model), run_dir / f"weights{rank}.pt")


@pytest.mark.slow
def test_two_ranks_on_disjoint_streams_equal_one_process(tmp_path: Path) -> None:
    spawn_local(ddp_worker, 2, tmp_path)
    single = make_task(seed=0)
    result = train(
        single, source(toy_streams(tmp_path / "all"), 2 * BATCH), fast_config(epochs=2), tmp_path / "one"
    )
    rank0 = torch.load(tmp_path / "weights0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "weights1.pt", weights_only=True)
    assert_weights_close(rank0, rank1, atol=0.0)
    assert_weights_close(rank0, weights(single.model), atol=1e-5, rtol=1e-5)
    assert result.steps > 4
    assert not torch.allclose(
        rank0["mlp.0.weight"], weights(make_task(seed=0).model)["mlp.0.weight"], atol=1e-3
    )


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from feedrank.train import train
from tests.train.test_shards import CONFIG, shard_run_task, source, toy_streams
run = Path(sys.argv[1])
task = shard_run_task()
def kill_at_7(info):
    if info.step == 7:
        os.kill(os.getpid(), signal.SIGKILL)
train(task, source(toy_streams(run / "streams"), 8), CONFIG, run, on_step=kill_at_7)
"""
CONFIG = fast_config(epochs=2, checkpoint_every=3, num_threads=1)  # bitwise: no load-dependent threads


def shard_run_task() -> object:
    return make_task(seed=0, dropout=0.3)


@pytest.mark.slow
def test_resume_after_kill_9_mid_epoch_is_exact(tmp_path: Path) -> None:
    straight = make_task(seed=0, dropout=0.3)
    train(straight, source(toy_streams(tmp_path / "s"), 8), CONFIG, tmp_path / "straight")

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(run)], env=env, cwd=Path(__file__).parents[2]
    )
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "checkpoints" / "step_00000006.pt")["progress"]["batch"] == 6  # mid-epoch

    resumed = make_task(seed=1, dropout=0.3)  # another init: the weights must come from the checkpoint
    steps: list[int] = []
    train(
        resumed,
        source(toy_streams(run / "streams"), 8),
        CONFIG,
        run,
        resume=True,
        on_step=lambda i: steps.append(i.step),
    )
    assert steps[0] == 7
    assert_weights_close(weights(straight.model), weights(resumed.model), atol=0.0)
    assert json.dumps(sorted(weights(resumed.model))) == json.dumps(sorted(weights(straight.model)))
