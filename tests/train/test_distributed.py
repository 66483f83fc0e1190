"""Two gloo processes (DDP) train exactly like one process that sees the same global batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor

from feedrank.artifacts.train_config import SparseSync
from feedrank.train import StepInfo, TensorBatchSource, load_checkpoint, spawn_local, train
from tests.train.conftest import fast_config
from tests.train.toy import assert_weights_close, make_data, make_evaluate, make_task, weights

BATCH = 16  # per rank; one process uses 2 x BATCH
NUM_EXAMPLES = 256


# Every test here starts processes of its own (torch.distributed over gloo).
pytestmark = pytest.mark.slow


def config(sparse_sync: SparseSync = "auto", accum: int = 1) -> object:
    return fast_config(epochs=2, grad_accum_steps=accum, sparse_sync=sparse_sync, clip_grad_norm=1.0)


def ddp_worker(rank: int, run_dir: Path, sparse_sync: SparseSync, accum: int) -> None:
    """One rank: same init on every rank (seed 0), its own shard of every global batch."""
    task = make_task(seed=0)
    data = TensorBatchSource(make_data(NUM_EXAMPLES), batch_size=BATCH, seed=3)
    result = train(task, data, config(sparse_sync, accum), run_dir)  # type: ignore[arg-type]
    (run_dir / f"rank{rank}.json").write_text(json.dumps({"steps": result.steps, "samples": result.samples}))
    torch.save(weights(task.model), run_dir / f"weights{rank}.pt")


@pytest.mark.parametrize(("sparse_sync", "accum"), [("ddp", 1), ("allgather", 2)])
def test_two_processes_equal_one(tmp_path: Path, sparse_sync: SparseSync, accum: int) -> None:
    spawn_local(ddp_worker, 2, tmp_path, sparse_sync, accum)

    single = make_task(seed=0)
    data = TensorBatchSource(make_data(NUM_EXAMPLES), batch_size=2 * BATCH, seed=3)
    result = train(single, data, config(accum=accum), tmp_path / "single")  # type: ignore[arg-type]
    expected = weights(single.model)

    rank0 = torch.load(tmp_path / "weights0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "weights1.pt", weights_only=True)
    assert_weights_close(rank0, rank1, atol=0.0)  # DDP keeps the replicas identical
    assert_weights_close(rank0, expected, atol=1e-5, rtol=1e-5)  # measured: 2.4e-7
    assert_weights_close(
        load_checkpoint(tmp_path / "checkpoints" / f"step_{result.steps:08d}.pt")["model"], rank0, atol=0.0
    )
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {
            "steps": result.steps,
            "samples": result.samples,
        }
    assert result.steps == 2 * NUM_EXAMPLES // (2 * BATCH * accum)
    # The control: the trained weights moved away from their initialisation.
    assert not torch.allclose(
        rank0["mlp.0.weight"], weights(make_task(seed=0).model)["mlp.0.weight"], atol=1e-3
    )


def early_stop_worker(rank: int, run_dir: Path) -> None:
    """Rank 0 alone evaluates (a metric that never improves); every rank must stop with it."""
    task = make_task(seed=0)
    data = TensorBatchSource(make_data(NUM_EXAMPLES), batch_size=BATCH, seed=3)
    flat = make_evaluate(make_data(64, seed=1))
    cfg = fast_config(epochs=5, eval_every=2, early_stop_metric="constant", patience=2)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        assert rank == 0
        return flat(model) | {"constant": 1.0}

    result = train(task, data, cfg, run_dir, evaluate=evaluate)
    (run_dir / f"rank{rank}.json").write_text(
        json.dumps({"steps": result.steps, "stopped": result.stopped_early})
    )


def test_early_stopping_is_shared_by_all_ranks(tmp_path: Path) -> None:
    spawn_local(early_stop_worker, 2, tmp_path)
    # Evaluations at steps 2, 4, 6: the first sets the best, two more without improvement stop it.
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {"steps": 6, "stopped": True}


def test_the_toy_table_has_sparse_gradients(toy_train: dict[str, Tensor]) -> None:
    """The toy really exercises sparse gradients (else the DDP tests would prove less)."""
    task = make_task()
    loss, _ = task.loss({k: v[:8] for k, v in toy_train.items()})
    loss.backward()
    grad = task.model.table.weight.grad
    assert grad is not None and grad.is_sparse


class InterruptError(Exception):
    pass


def resume_worker(rank: int, run_dir: Path, phase: str) -> None:
    """One phase per launch, as a job that crashes and is restarted: straight through; stopped at
    step 5; resumed from the last checkpoint in fresh processes."""
    task = make_task(seed=0, dropout=0.3)  # dropout: each rank's own RNG stream matters
    data = TensorBatchSource(make_data(NUM_EXAMPLES), batch_size=BATCH, seed=3)
    config = fast_config(epochs=2, checkpoint_every=3)

    def stop_at_5(info: StepInfo) -> None:
        if info.step == 5:
            raise InterruptError

    if phase == "straight":
        train(task, data, config, run_dir / "straight")
    elif phase == "interrupted":
        with pytest.raises(InterruptError):
            train(task, data, config, run_dir / "resumed", on_step=stop_at_5)
        return
    else:
        steps: list[int] = []
        train(
            task, data, config, run_dir / "resumed", resume=True, on_step=lambda info: steps.append(info.step)
        )
        (run_dir / f"first_step{rank}.json").write_text(json.dumps(steps[0]))
    torch.save(weights(task.model), run_dir / f"{phase}{rank}.pt")


def test_two_processes_resume_exactly(tmp_path: Path) -> None:
    for phase in ("straight", "interrupted", "resumed"):
        spawn_local(resume_worker, 2, tmp_path, phase)
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_00000016.pt")
    assert len(checkpoint["rng"]) == 2  # both ranks' RNG states, gathered into rank 0's file
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])
    for rank in (0, 1):
        # It really resumed: from the step-3 checkpoint the interrupted run left, not from scratch.
        assert json.loads((tmp_path / f"first_step{rank}.json").read_text()) == 4
        straight = torch.load(tmp_path / f"straight{rank}.pt", weights_only=True)
        resumed = torch.load(tmp_path / f"resumed{rank}.pt", weights_only=True)
        assert_weights_close(straight, resumed, atol=1e-6, rtol=1e-6)
