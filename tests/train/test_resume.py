"""Exact resume: a run interrupted after a checkpoint and resumed ends with the same weights,
optimizer states and metric records as the same run uninterrupted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from feedrank.artifacts.train_config import SparseOptimizer
from feedrank.train import (
    CheckpointError,
    StepInfo,
    TensorBatchSource,
    TrainConfig,
    checkpoint,
    load_checkpoint,
    train,
)
from tests.train.conftest import fast_config
from tests.train.toy import assert_weights_close, make_evaluate, make_task, weights

# 384 examples / 32 per batch = 12 batches = 6 steps of 2 micro-batches per epoch; 2 epochs.
CONFIG = fast_config(
    epochs=2,
    grad_accum_steps=2,
    checkpoint_every=3,
    eval_every=4,
    early_stop_metric="log_loss",
    early_stop_mode="min",
    patience=10,
    warmup_steps=2,
    clip_grad_norm=0.5,
)


class InterruptError(Exception):
    pass


def interrupt_at(step: int) -> object:
    def on_step(info: StepInfo) -> None:
        if info.step == step:
            raise InterruptError

    return on_step


def run(
    run_dir: Path,
    data: dict[str, Tensor],
    valid: dict[str, Tensor],
    *,
    init_seed: int = 0,
    config: TrainConfig = CONFIG,
    **kwargs: Any,
) -> dict[str, Tensor]:
    task = make_task(seed=init_seed, dropout=0.3)
    source = TensorBatchSource(data, batch_size=32, seed=7)
    train(task, source, config, run_dir, evaluate=make_evaluate(valid), **kwargs)
    return weights(task.model)


def records(run_dir: Path) -> list[tuple[int, str, str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["split"], r["name"], r["value"]) for r in map(json.loads, lines)]


@pytest.mark.parametrize("sparse_optimizer", ["adagrad", "sparse_adam"])
@pytest.mark.parametrize(
    "stop_at", [5, 8], ids=["mid-epoch (resume from step 3)", "after an epoch end (resume from step 6)"]
)
def test_resume_equals_uninterrupted(
    tmp_path: Path,
    toy_train: dict[str, Tensor],
    toy_valid: dict[str, Tensor],
    stop_at: int,
    sparse_optimizer: SparseOptimizer,
) -> None:
    config = dataclasses.replace(CONFIG, sparse_optimizer=sparse_optimizer)
    straight = run(tmp_path / "straight", toy_train, toy_valid, config=config)

    with pytest.raises(InterruptError):
        run(tmp_path / "resumed", toy_train, toy_valid, config=config, on_step=interrupt_at(stop_at))
    # A different initialisation proves the weights come from the checkpoint.
    resumed = run(tmp_path / "resumed", toy_train, toy_valid, config=config, init_seed=123, resume=True)

    assert_weights_close(straight, resumed, atol=1e-6, rtol=1e-6)
    assert records(tmp_path / "straight") == records(tmp_path / "resumed")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000012.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_00000012.pt")
    for name in ("sparse", "dense"):  # Adagrad's sums / SparseAdam's and AdamW's moments
        torch.testing.assert_close(a["optimizers"][name], b["optimizers"][name], atol=1e-6, rtol=1e-6)
    assert a["progress"]["samples"] == b["progress"]["samples"] == 2 * 384
    assert a["early_stopping"] == b["early_stopping"]


def test_resume_without_rng_restore_differs(
    tmp_path: Path,
    toy_train: dict[str, Tensor],
    toy_valid: dict[str, Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: dropout makes the RNG state matter, so skipping its restore changes the result."""
    straight = run(tmp_path / "straight", toy_train, toy_valid)
    with pytest.raises(InterruptError):
        run(tmp_path / "resumed", toy_train, toy_valid, on_step=interrupt_at(5))
    monkeypatch.setattr(checkpoint, "restore_rng", lambda state: None)
    resumed = run(tmp_path / "resumed", toy_train, toy_valid, resume=True)
    assert not torch.allclose(straight["mlp.0.weight"], resumed["mlp.0.weight"], atol=1e-4)


def test_resume_of_a_finished_run_trains_no_more(
    tmp_path: Path, toy_train: dict[str, Tensor], toy_valid: dict[str, Tensor]
) -> None:
    first = run(tmp_path, toy_train, toy_valid)
    again = run(tmp_path, toy_train, toy_valid, init_seed=5, resume=True)
    assert_weights_close(first, again, atol=0.0)
    assert records(tmp_path)[-1][0] == 12


def test_resume_refuses_another_sparse_optimizer(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    data = TensorBatchSource(toy_train, batch_size=32)
    train(make_task(), data, fast_config(), tmp_path)
    with pytest.raises(CheckpointError, match="sparse_optimizer='adagrad'"):
        train(make_task(), data, fast_config(sparse_optimizer="sparse_adam"), tmp_path, resume=True)


def test_resume_refuses_another_model(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    data = TensorBatchSource(toy_train, batch_size=32)
    train(make_task(), data, fast_config(), tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        train(make_task(num_ids=300), data, fast_config(), tmp_path, resume=True)


def test_logged_curves_of_a_resumed_run_equal_the_uninterrupted_runs(
    tmp_path: Path,
    toy_train: dict[str, Tensor],
    toy_valid: dict[str, Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records every 4 steps, checkpoints every 3: the checkpoint at step 3 holds three steps of
    running means that the record at step 4 averages. They are part of the checkpoint."""
    config = dataclasses.replace(CONFIG, log_every=4)
    run(tmp_path / "straight", toy_train, toy_valid, config=config)
    with pytest.raises(InterruptError):
        run(tmp_path / "resumed", toy_train, toy_valid, config=config, on_step=interrupt_at(5))
    run(tmp_path / "resumed", toy_train, toy_valid, config=config, resume=True)
    straight = records(tmp_path / "straight")
    first_loss = next(r for r in straight if r[1] == "train" and r[2] == "loss")
    assert first_loss[0] == 4  # its window spans the resume
    assert records(tmp_path / "resumed") == straight

    # The control: without the window in the checkpoint, the record at step 4 averages only step 4.
    from feedrank.train.report import MetricWindow

    monkeypatch.setattr(MetricWindow, "load_state_dict", lambda self, state: None)
    with pytest.raises(InterruptError):
        run(tmp_path / "control", toy_train, toy_valid, config=config, on_step=interrupt_at(5))
    run(tmp_path / "control", toy_train, toy_valid, config=config, resume=True)
    assert records(tmp_path / "control") != straight
