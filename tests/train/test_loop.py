"""The loop's features on the toy task: accumulation, clipping, AMP, early stopping, curves, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from feedrank.errors import ConfigError
from feedrank.progress import advance, reporting
from feedrank.train import DivergedError, StepInfo, TensorBatchSource, train
from feedrank.train.curves import read_metrics
from feedrank.train.precision import cpu_has_native_bf16
from tests.conftest import assert_chart
from tests.train.conftest import fast_config
from tests.train.toy import (
    TemperatureTask,
    ToyNet,
    ToyTask,
    assert_weights_close,
    make_evaluate,
    make_task,
    weights,
)


@pytest.mark.slow
def test_accumulating_two_batches_equals_one_double_batch(
    tmp_path: Path, toy_train: dict[str, Tensor]
) -> None:
    def trained(batch_size: int, accum: int) -> tuple[dict[str, Tensor], list[float]]:
        task = make_task(seed=0)
        data = TensorBatchSource(toy_train, batch_size=batch_size, seed=1)
        norms: list[float] = []
        config = fast_config(epochs=2, grad_accum_steps=accum, clip_grad_norm=1.0)
        train(
            task,
            data,
            config,
            tmp_path / f"{batch_size}x{accum}",
            on_step=lambda i: norms.append(i.grad_norm),
        )
        return weights(task.model), norms

    (accumulated, accumulated_norms), (single, single_norms) = trained(16, accum=2), trained(32, accum=1)
    assert_weights_close(accumulated, single, atol=1e-5, rtol=1e-5)
    # Adam's steps hardly change when the gradient is scaled, so the weights alone would not catch
    # a missing `/ grad_accum_steps`; the gradient norms do.
    assert accumulated_norms == pytest.approx(single_norms, rel=1e-5)
    # The control: batches of 16 without accumulation train differently.
    assert not torch.allclose(trained(16, accum=1)[0]["mlp.0.weight"], single["mlp.0.weight"], atol=1e-4)


def test_clipping_bounds_the_dense_gradient(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    seen: list[tuple[float, float]] = []
    task = make_task()

    def on_step(info: StepInfo) -> None:
        grads = [p.grad for p in task.model.mlp.parameters() if p.grad is not None]
        seen.append((info.grad_norm, float(torch.nn.utils.get_total_norm(grads))))

    data = TensorBatchSource(toy_train, batch_size=32)
    train(task, data, fast_config(clip_grad_norm=0.01), tmp_path, on_step=on_step)
    assert len(seen) == 12
    assert all(before > 0.01 for before, _ in seen)  # clipping had work to do
    assert all(after <= 0.01 * (1 + 1e-5) for _, after in seen)


class AutocastRecordingTask(ToyTask):
    """ToyTask that notes the autocast dtype active during each loss call (None when off)."""

    def __init__(self, model: ToyNet) -> None:
        super().__init__(model)
        self.autocast_dtypes: set[torch.dtype | None] = set()

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        on = torch.is_autocast_enabled("cpu")
        self.autocast_dtypes.add(torch.get_autocast_dtype("cpu") if on else None)
        return super().loss(batch)


@pytest.mark.parametrize(
    ("amp", "dtype"), [("off", None), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("auto", "resolved")]
)
def test_mixed_precision_trains(
    tmp_path: Path, toy_train: dict[str, Tensor], amp: str, dtype: torch.dtype | str | None
) -> None:
    torch.manual_seed(0)
    task = AutocastRecordingTask(ToyNet())
    data = TensorBatchSource(toy_train, batch_size=32, seed=2)
    evaluate = make_evaluate(toy_train)
    before = evaluate(task.model)["log_loss"]
    result = train(task, data, fast_config(epochs=3, amp=amp), tmp_path)
    after = evaluate(task.model)["log_loss"]

    assert after < before - 0.02
    assert all(p.dtype == torch.float32 for p in task.model.parameters())  # weights stay float32
    payload = torch.load(result.checkpoint, weights_only=True)
    resolved = payload["config"]["amp"]  # "auto" is saved resolved: bf16 on a CPU with native bf16
    assert resolved == (("bf16" if cpu_has_native_bf16() else "off") if amp == "auto" else amp)
    if dtype == "resolved":
        dtype = {"bf16": torch.bfloat16, "off": None}[resolved]
    assert task.autocast_dtypes == {dtype}
    assert bool(payload["scaler"]) == (amp == "fp16")  # the GradScaler's state is checkpointed


def test_early_stopping_after_patience_evaluations(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    values = iter([0.5, 0.6, 0.55, 0.59, 0.58, 0.9, 0.9, 0.9])
    calls: list[int] = []

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        calls.append(1)
        return {"auc": next(values)}

    data = TensorBatchSource(toy_train, batch_size=16)  # 24 steps per epoch
    config = fast_config(epochs=10, eval_every=2, early_stop_metric="auc", patience=3)
    result = train(make_task(), data, config, tmp_path, evaluate=evaluate)
    # best 0.6 at the 2nd evaluation (step 4); 3 evaluations without improvement -> stop at step 10
    assert (len(calls), result.steps, result.stopped_early) == (5, 10, True)
    assert (result.best_metric, result.best_step) == (0.6, 4)
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert (best["step"], best["metrics"]) == (4, {"auc": 0.6})


def test_an_early_stop_says_so_and_validation_reports_no_progress(
    tmp_path: Path, toy_train: dict[str, Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    values = iter([0.6, 0.5, 0.5])
    reported: list[tuple[str, int, int]] = []

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        advance("validation items", 1, 1)  # e.g. a source replay inside validation
        return {"auc": next(values)}

    data = TensorBatchSource(toy_train, batch_size=16)
    config = fast_config(epochs=10, eval_every=2, early_stop_metric="auc", patience=2)
    with reporting(lambda *args: reported.append(args)), caplog.at_level("INFO", logger="feedrank"):
        result = train(make_task(), data, config, tmp_path, evaluate=evaluate)
    assert result.stopped_early and result.steps == 6
    said = [r.getMessage() for r in caplog.records if "stopped early" in r.getMessage()]
    assert said == ["stopped early at step 6: valid auc did not improve for 2 evaluations (best at step 2)"]
    assert reported == []  # the loop's bar is the only display while it runs


def test_early_stopping_metric_must_exist(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    data = TensorBatchSource(toy_train, batch_size=32)
    config = fast_config(early_stop_metric="ndcg")
    with pytest.raises(ConfigError, match="ndcg"):
        train(make_task(), data, config, tmp_path, evaluate=lambda model: {"auc": 0.5})


def test_curves_and_checkpoints_are_written(
    tmp_path: Path, toy_train: dict[str, Tensor], toy_valid: dict[str, Tensor]
) -> None:
    data = TensorBatchSource(toy_train, batch_size=32)
    config = fast_config(epochs=2, log_every=4, checkpoint_every=5, keep_checkpoints=2, plot=True)
    result = train(make_task(), data, config, tmp_path, evaluate=make_evaluate(toy_valid))

    records = read_metrics(tmp_path / "metrics.jsonl")
    assert {tuple(sorted(r)) for r in records} == {
        ("epoch", "name", "samples_per_s", "split", "step", "value", "wall_s")
    }
    train_loss = [r for r in records if r["split"] == "train" and r["name"] == "loss"]
    assert [r["step"] for r in train_loss] == [4, 8, 12, 16, 20, 24]
    assert all(r["samples_per_s"] > 0 for r in train_loss)
    valid = {(r["step"], r["name"]) for r in records if r["split"] == "valid"}
    assert valid == {(12, "log_loss"), (12, "accuracy"), (24, "log_loss"), (24, "accuracy")}
    assert_chart(tmp_path / "curves.png")

    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000020.pt", "step_00000024.pt"]  # 5, 10, 15 pruned; no temp files left
    payload = torch.load(result.checkpoint, weights_only=True)
    assert payload["progress"]["step"] == result.steps == 24
    assert payload["progress"]["epoch"] == 2 and payload["progress"]["batch"] == 0
    assert payload["config"]["epochs"] == 2 and payload["world_size"] == 1
    assert len(payload["rng"]) == 1 and payload["rng"][0]["numpy_keys"].shape == (624,)
    assert result.samples == 2 * 384 and result.samples_per_s > 0 and result.peak_rss_mib > 10


def test_a_task_that_is_a_module_trains_its_own_parameters(
    tmp_path: Path, toy_train: dict[str, Tensor]
) -> None:
    torch.manual_seed(0)
    task = TemperatureTask(ToyNet())
    data = TensorBatchSource(toy_train, batch_size=32)
    result = train(task, data, fast_config(), tmp_path)
    assert float(task.log_scale.detach()) != 0.0
    saved = torch.load(result.checkpoint, weights_only=True)["model"]
    assert set(saved) == {"log_scale"} | {f"model.{k}" for k in task.model.state_dict()}


def test_max_steps_and_constant_schedule(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    lrs: list[float] = []
    data = TensorBatchSource(toy_train, batch_size=32)
    config = fast_config(epochs=5, max_steps=7, schedule="constant", warmup_steps=3)
    result = train(make_task(), data, config, tmp_path, on_step=lambda info: lrs.append(info.lr_factor))
    assert result.steps == 7
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0])


def test_the_result_records_the_threads_the_run_used(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    before = torch.get_num_threads()
    try:
        data = TensorBatchSource(toy_train, batch_size=32)
        for threads in (1, 2):
            result = train(
                make_task(), data, fast_config(max_steps=2, num_threads=threads), tmp_path / str(threads)
            )
            assert result.threads == threads
    finally:
        torch.set_num_threads(before)


def test_a_sample_budget_sets_the_steps_and_spans_the_schedule(
    tmp_path: Path, toy_train: dict[str, Tensor]
) -> None:
    factors: list[float] = []
    data = TensorBatchSource(toy_train, batch_size=32)
    config = fast_config(epochs=5, max_samples=200)  # 200 / 32 -> 7 steps, not 5 epochs of 12
    result = train(make_task(), data, config, tmp_path, on_step=lambda info: factors.append(info.lr_factor))
    assert result.steps == 7 and result.samples == 7 * 32
    assert factors[-1] == pytest.approx(config.min_lr_ratio, abs=0.05)  # the cosine reached its end


def test_a_time_budget_stops_at_the_first_step_past_it(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    data = TensorBatchSource(toy_train, batch_size=32)
    result = train(make_task(), data, fast_config(epochs=5, max_minutes=1e-9), tmp_path / "late")
    assert result.steps == 1  # every step takes longer than the budget
    assert train(make_task(), data, fast_config(epochs=1, max_minutes=60.0), tmp_path / "ok").steps == 12


def test_a_nan_loss_stops_the_run(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    bad = dict(toy_train, x=toy_train["x"].clone())
    bad["x"][40] = math.nan
    with pytest.raises(DivergedError, match="step 2"):
        train(make_task(), TensorBatchSource(bad, batch_size=32, shuffle=False), fast_config(), tmp_path)


def test_too_few_batches_for_the_accumulation(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    data = TensorBatchSource(toy_train, batch_size=200)
    with pytest.raises(ConfigError, match="grad_accum_steps=4"):
        train(make_task(), data, fast_config(grad_accum_steps=4), tmp_path)


def test_metrics_are_json_lines(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    train(make_task(), TensorBatchSource(toy_train, batch_size=64), fast_config(), tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["split"] == "train" for line in lines)


class LoggingLossTask(ToyTask):
    """Logs its own copy of the loss, as the ranker and retrieval tasks do."""

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss, values = super().loss(batch)
        return loss, values | {"loss": float(loss.detach()), "double": 2.0 * float(loss.detach())}


def test_logged_loss_is_the_mean_of_the_returned_loss(tmp_path: Path, toy_train: dict[str, Tensor]) -> None:
    losses: list[float] = []
    torch.manual_seed(0)
    data = TensorBatchSource(toy_train, batch_size=32)
    config = fast_config(log_every=3, grad_accum_steps=2)
    train(LoggingLossTask(ToyNet()), data, config, tmp_path, on_step=lambda info: losses.append(info.loss))
    records = read_metrics(tmp_path / "metrics.jsonl")
    logged = [r["value"] for r in records if r["name"] == "loss"]
    doubled = [r["value"] for r in records if r["name"] == "double"]
    assert logged == pytest.approx([sum(losses[i : i + 3]) / 3 for i in (0, 3)], rel=1e-6)
    assert doubled == pytest.approx([2 * v for v in logged], rel=1e-6)
