"""The loop's parts on their own: batch sources, schedule, early stopping, parameter split, RNG
state, checkpoint files, config validation."""

from __future__ import annotations

import dataclasses
import io
import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from feedrank.config import load_config
from feedrank.errors import ConfigError
from feedrank.train import CheckpointError, TensorBatchSource, TrainConfig, count_examples, move_to
from feedrank.train.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_atomic,
)
from feedrank.train.early_stopping import EarlyStopping
from feedrank.train.optim import lr_factor
from feedrank.train.task import split_parameters
from tests.train.toy import ToyNet, ToyTask


@settings(max_examples=60, deadline=None)
@given(
    num_examples=st.integers(1, 60),
    batch_size=st.integers(1, 7),
    world_size=st.integers(1, 4),
    epoch=st.integers(0, 3),
)
def test_ranks_split_each_global_batch_of_one_process(
    num_examples: int, batch_size: int, world_size: int, epoch: int
) -> None:
    """Rank r's i-th batch is slice r of the i-th batch of one process with world_size x the batch."""
    data = {"i": torch.arange(num_examples)}
    per_rank = TensorBatchSource(data, batch_size, seed=5)
    single = TensorBatchSource(data, batch_size * world_size, seed=5)
    ranks = [list(per_rank.batches(epoch, r, world_size)) for r in range(world_size)]
    globals_ = list(single.batches(epoch, 0, 1))
    assert all(
        len(b) == single.num_batches(0, 1) == per_rank.num_batches(r, world_size) for r, b in enumerate(ranks)
    )
    for i, global_batch in enumerate(globals_):
        joined = torch.cat([ranks[r][i]["i"] for r in range(world_size)])
        assert torch.equal(joined, global_batch["i"])
    seen = torch.cat([b["i"] for rank in ranks for b in rank]) if globals_ else torch.empty(0)
    assert len(set(seen.tolist())) == len(seen)  # no example twice in an epoch


def test_batches_are_seeded_per_epoch_and_start_skips() -> None:
    data = {"i": torch.arange(100), "x": torch.randn(100, 3)}
    source = TensorBatchSource(data, batch_size=10, seed=1)
    first = torch.stack([b["i"] for b in source.batches(0, 0, 1)])  # (10, 10)
    again = torch.stack([b["i"] for b in TensorBatchSource(data, batch_size=10, seed=1).batches(0, 0, 1)])
    assert torch.equal(first, again)
    assert sorted(first.flatten().tolist()) == list(range(100))
    assert not torch.equal(first.flatten(), torch.cat([b["i"] for b in source.batches(1, 0, 1)]))
    assert not torch.equal(first.flatten(), TensorBatchSource(data, 10, seed=2).order(0))
    skipped = torch.stack([b["i"] for b in source.batches(0, 0, 1, start=4)])
    assert torch.equal(skipped, first[4:])


def test_keeping_the_last_short_batch() -> None:
    source = TensorBatchSource({"i": torch.arange(25)}, batch_size=10, shuffle=False, drop_last=False)
    assert [len(b["i"]) for b in source.batches(0, 0, 1)] == [10, 10, 5]
    assert (source.num_batches(0, 2), source.num_batches(1, 2)) == (2, 1)
    assert TensorBatchSource({"i": torch.arange(25)}, batch_size=10).num_batches(0, 2) == 1


def test_tensor_batch_source_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="common length"):
        TensorBatchSource({"a": torch.zeros(3), "b": torch.zeros(4)}, batch_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        TensorBatchSource({"a": torch.zeros(3)}, batch_size=0)


@dataclasses.dataclass
class PairBatch:
    ids: Tensor
    extra: dict[str, Tensor]
    name: str = "pairs"


def test_move_to_and_count_examples_walk_nested_batches() -> None:
    batch = PairBatch(torch.arange(6), {"x": torch.zeros(6, 2)})
    moved = move_to(batch, torch.device("meta"))
    assert isinstance(moved, PairBatch) and moved.name == "pairs"
    assert moved.ids.device.type == "meta" and moved.extra["x"].device.type == "meta"
    assert count_examples(batch) == 6
    assert count_examples({"a": [torch.zeros(4, 3)]}) == 4
    with pytest.raises(TypeError, match="__len__"):
        count_examples(object())


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    config = TrainConfig(warmup_steps=4, min_lr_ratio=0.1)
    factors = [lr_factor(s, 20, config) for s in range(25)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))  # non-increasing
    assert factors[20] == factors[24] == pytest.approx(0.1)
    assert lr_factor(10, 20, dataclasses.replace(config, schedule="constant")) == 1.0


@pytest.mark.parametrize(
    ("mode", "values", "stops_after"),
    [("max", [0.5, 0.6, 0.6, 0.61, 0.59, 0.6, 0.7], 6), ("min", [3.0, 2.0, 2.5, 2.1], 4)],
)
def test_early_stopping_counts_evaluations_without_improvement(
    mode: str, values: list[float], stops_after: int
) -> None:
    early = EarlyStopping(mode, patience=2)  # type: ignore[arg-type]
    stopped_at = next(i + 1 for i, v in enumerate(values) if (early.update(v, i), early.should_stop)[1])
    assert stopped_at == stops_after
    restored = EarlyStopping(mode, patience=2)  # type: ignore[arg-type]
    restored.load_state_dict(early.state_dict())
    assert restored.should_stop and restored.best == early.best


def test_min_delta_and_zero_patience() -> None:
    early = EarlyStopping("max", patience=1, min_delta=0.05)
    early.update(0.5, 1)
    assert not early.update(0.54, 2) and early.should_stop
    never = EarlyStopping("max", patience=0)
    for step in range(10):
        never.update(0.0, step)
    assert not never.should_stop and never.best_step == 0


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.EmbeddingBag(10, 4, sparse=True)
        self.b = nn.Embedding(10, 4)  # dense gradients: an AdamW parameter
        self.head = nn.Linear(4, 1)


def test_parameters_split_into_sparse_tables_and_the_rest() -> None:
    model = Tied()
    sparse, dense = split_parameters(object(), model)
    assert [id(p) for p in sparse] == [id(model.a.weight)]
    assert {id(p) for p in dense} == {id(model.b.weight), id(model.head.weight), id(model.head.bias)}

    class Explicit(ToyTask):
        def sparse_parameters(self) -> list[nn.Parameter]:
            return []

    toy = ToyNet()
    sparse, dense = split_parameters(Explicit(toy), toy)
    assert sparse == [] and len(dense) == len(list(toy.parameters()))


def test_rng_state_round_trips_through_a_weights_only_file() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leave a cached gaussian in numpy's state
    buffer = io.BytesIO()
    torch.save(capture_rng(), buffer)
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    buffer.seek(0)
    restore_rng(torch.load(buffer, weights_only=True))
    assert (random.random(), np.random.standard_normal()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_checkpoint_files_latest_prune_and_bad_files(tmp_path: Path) -> None:
    for step in (5, 40, 100):
        save_atomic({"format_version": 1, "step": step}, tmp_path / "checkpoints" / f"step_{step:08d}.pt")
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_00000100.pt"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.pt",
        "step_00000040.pt",
        "step_00000100.pt",
    ]
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000040.pt")["step"] == 40
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a module: weights_only refuses it
    with pytest.raises(CheckpointError, match=r"pickled\.pt"):
        load_checkpoint(tmp_path / "pickled.pt")
    assert latest_checkpoint(tmp_path / "empty") is None


def test_train_config_loads_from_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('epochs = 3\nbetas = [0.8, 0.99]\namp = "bf16"\n')
    config = load_config(TrainConfig, path, ["lr=3e-4", "early_stop_metric=auc"])
    assert (config.epochs, config.betas, config.amp, config.lr) == (3, (0.8, 0.99), "bf16", 3e-4)
    with pytest.raises(ConfigError, match="amp"):
        load_config(TrainConfig, None, ["amp=fp8"])
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        TrainConfig(grad_accum_steps=0)
    with pytest.raises(ConfigError, match="betas"):
        TrainConfig(betas=(0.9, 1.5))
