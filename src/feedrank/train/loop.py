# Over 300 lines: the training loop and its nested steps (checkpoint, evaluate, record) share one
# run's state (model, optimizers, progress, early stopping); apart they would pass all of it around.
"""The training loop: `train(task, data, config, run_dir, evaluate)` for any Task.

One readable loop (nanoGPT's train.py shape). Per optimizer step, on every rank:

    set the learning rates from the step (warmup + cosine)
    for each of grad_accum_steps micro-batches: forward under autocast, backward of loss / accum
        (DDP's no_sync on all but the last, so ranks talk once per step)
    unscale (fp16), clip the dense gradient, step AdamW and the sparse optimizer
    log, evaluate on rank 0 and share the early-stopping decision, checkpoint

The same call runs as one process or under torchrun (see distributed.py); only rank 0 writes
run_dir: metrics.jsonl, curves.png, checkpoints/step_*.pt and checkpoints/best.pt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from feedrank.artifacts.train_config import Device, TrainConfig
from feedrank.errors import ConfigError, DivergedError, TrainError
from feedrank.progress import silenced
from feedrank.threads import auto_threads
from feedrank.train import checkpoint as ckpt
from feedrank.train.batches import count_examples, move_to
from feedrank.train.curves import MetricsLog, Split, plot_curves
from feedrank.train.distributed import (
    DistContext,
    allreduce_sparse_grads,
    broadcast_floats,
    min_over_ranks,
    setup_distributed,
    wrap_model,
)
from feedrank.train.early_stopping import EarlyStopping
from feedrank.train.optim import build_optimizers, clip_dense_grads, lr_factor, set_learning_rates
from feedrank.train.precision import resolve_precision
from feedrank.train.report import (
    MetricWindow,
    TrainResult,
    describe_parameters,
    peak_rss_mib,
    progress_bar,
    warn_about_dense_tables,
)
from feedrank.train.task import BatchSource, Task, TaskModule, split_parameters

log = logging.getLogger(__name__)

Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass(frozen=True)
class StepInfo:
    """What `on_step` sees after each optimizer step (gradients are still on the parameters)."""

    step: int  # optimizer steps taken so far, this one included
    epoch: int
    loss: float  # mean loss of this step's micro-batches on this rank
    grad_norm: float  # L2 norm of the dense gradient before clipping
    lr_factor: float  # multiplier of both base learning rates used for this step


def train(
    task: Task[Any],
    data: BatchSource[Any],
    config: TrainConfig,
    run_dir: Path,
    evaluate: Evaluate | None = None,
    *,
    resume: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
) -> TrainResult:
    """Train `task` on `data`; return throughput, steps and the best validation metric.

    evaluate: called on rank 0 with `task.model` in eval mode under no_grad, every
        `config.eval_every` steps, at the end of each epoch and at the end; returns metrics by name.
    resume: continue from the newest checkpoint in `run_dir/checkpoints` (if any) exactly.
    on_step: called on every rank after each optimizer step (and after its checkpoint).
    """
    torch.set_num_threads(auto_threads(config.num_threads))
    ctx = setup_distributed(config.device, config.dist_timeout_s)
    return _train(task, data, config, run_dir, evaluate, resume, on_step, ctx)


def _train(
    task: Task[Any],
    data: BatchSource[Any],
    config: TrainConfig,
    run_dir: Path,
    evaluate: Evaluate | None,
    resume: bool,
    on_step: Callable[[StepInfo], None] | None,
    ctx: DistContext,
) -> TrainResult:
    precision = resolve_precision(config.amp, ctx.device)
    device: Device = "cuda" if ctx.device.type == "cuda" else "cpu"
    config = dataclasses.replace(config, device=device, amp=precision.amp)  # resolved "auto"s
    _seed_everything(config.seed + ctx.rank)  # dropout differs across ranks, same on every rerun

    module = TaskModule(task).to(ctx.device).train()
    sparse, dense = split_parameters(task, module.root)
    log.info("parameters: %s", describe_parameters(sparse, dense))
    warn_about_dense_tables(module.root)
    optimizers = build_optimizers(sparse, dense, config)
    scaler = precision.grad_scaler()
    early = EarlyStopping(config.early_stop_mode, config.patience, config.min_delta)
    progress = ckpt.Progress()
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=ctx.is_main)

    def save_checkpoint() -> None:
        # Collective: every rank's RNG state goes into rank 0's file, so all ranks resume exactly.
        rng_states = ckpt.gather_rng(ctx)
        if ctx.is_main:
            progress.metrics_lines, progress.wall_s = metrics.lines, wall_s()
            payload = ckpt.training_payload(
                config, ctx, module, optimizers, scaler, rng_states, progress, early, window.state_dict()
            )
            ckpt.save_atomic(payload, ckpt.checkpoint_path(run_dir, progress.step))
            ckpt.prune_checkpoints(run_dir, config.keep_checkpoints)

    window = MetricWindow()  # the logged training means since the last record
    if resume and (latest := ckpt.latest_checkpoint(run_dir)) is not None:
        payload = ckpt.load_checkpoint(latest)
        ckpt.restore_training(payload, latest, config, ctx, module, optimizers, scaler, early, progress)
        if payload.get("metric_window") is not None:  # absent from checkpoints of older versions
            window.load_state_dict(payload["metric_window"])
        log.info("resumed from %s at step %d (epoch %d)", latest, progress.step, progress.epoch)
    metrics.start(progress.metrics_lines)
    model, manual_sparse_sync = wrap_model(
        module, ctx, sparse, config.sparse_sync, config.find_unused_parameters
    )

    accum = config.grad_accum_steps
    micro_per_epoch = min_over_ranks(data.num_batches(ctx.rank, ctx.world_size), ctx)  # equal step counts
    steps_per_epoch = micro_per_epoch // accum  # a trailing partial accumulation is skipped
    if steps_per_epoch == 0:
        raise ConfigError(
            f"an epoch has {micro_per_epoch} batches per rank, fewer than grad_accum_steps={accum}"
        )
    total_steps = _step_budget(steps_per_epoch, data, accum, ctx.world_size, config)

    session_start, wall_at_start, samples_at_start = time.perf_counter(), progress.wall_s, progress.samples

    def wall_s() -> float:
        return wall_at_start + time.perf_counter() - session_start

    def session_samples_per_s() -> float:
        return (progress.samples - samples_at_start) / max(1e-9, wall_s() - wall_at_start)

    def record(split: Split, values: dict[str, float], samples_per_s: float) -> None:
        metrics.write(
            step=progress.step,
            epoch=progress.epoch,
            split=split,
            values=values,
            samples_per_s=samples_per_s,
            wall_s=wall_s(),
        )

    def run_evaluation() -> bool:
        """Evaluate on rank 0; every rank gets the same early-stopping state. True = stop."""
        if evaluate is None:
            return False
        if ctx.is_main:
            module.eval()
            with torch.no_grad():
                values = evaluate(task.model)
            module.train()
            record("valid", values, session_samples_per_s())
            if config.early_stop_metric:
                if config.early_stop_metric not in values:
                    known = ", ".join(sorted(values))
                    raise ConfigError(
                        f"early_stop_metric {config.early_stop_metric!r} is not among the metrics "
                        f"evaluate() returned: {known}"
                    )
                if early.update(values[config.early_stop_metric], progress.step):
                    ckpt.save_best(run_dir, config, task.model, progress.step, values)
            log.info("step %d: %s", progress.step, ", ".join(f"{k}={v:.5g}" for k, v in values.items()))
        progress.last_eval_step = progress.step
        # Only rank 0 evaluated: give every rank its early-stopping state, so all stop together.
        has_best, best, best_step, bad_evals = broadcast_floats(
            [early.best is not None, early.best or 0.0, early.best_step, early.bad_evals], ctx
        )
        early.load_state_dict(
            {"best": best if has_best else None, "best_step": best_step, "bad_evals": bad_evals}
        )
        return early.should_stop

    stop = progress.step >= total_steps or early.should_stop
    # The loop's bar is the one display while it runs: per-item reports (validation) are silenced.
    with (
        silenced(),
        progress_bar(enabled=config.progress and ctx.is_main, total=total_steps, done=progress.step) as bar,
    ):
        while progress.epoch < config.epochs and not stop:
            batches = iter(data.batches(progress.epoch, ctx.rank, ctx.world_size, start=progress.batch))
            while not stop and progress.batch + accum <= micro_per_epoch:
                factor = lr_factor(progress.step, total_steps, config)
                set_learning_rates(optimizers, factor, config)
                optimizers.zero_grad()  # here, not after step(), so on_step can still see the gradients
                step_loss = 0.0
                for micro in range(accum):
                    batch = move_to(_next_batch(batches, progress), ctx.device)
                    with _no_sync_unless(model, sync=micro == accum - 1):
                        with precision.autocast():
                            loss, values = model(batch)
                        scaler.scale(loss / accum).backward()  # loss is a mean: / accum keeps it one
                    loss_value = float(loss.item())
                    if not math.isfinite(loss_value) and not precision.needs_scaler:
                        raise DivergedError(f"loss is {loss_value} at step {progress.step + 1}")
                    step_loss += loss_value / accum
                    window.add_batch(loss_value, values, count_examples(batch) * ctx.world_size)
                if manual_sparse_sync:
                    allreduce_sparse_grads(sparse, ctx)
                if optimizers.dense is not None:
                    scaler.unscale_(optimizers.dense)  # clip true gradients, not fp16-scaled ones
                grad_norm = clip_dense_grads(dense, config.clip_grad_norm)
                for opt in optimizers.all():
                    if any(p.grad is not None for group in opt.param_groups for p in group["params"]):
                        scaler.step(opt)
                scaler.update()
                progress.step += 1
                progress.batch += accum
                progress.samples += window.step_done(grad_norm, factor * config.lr)
                stop = progress.step >= total_steps or _out_of_budget(wall_s(), progress.samples, config)

                if progress.step % config.log_every == 0 or stop:
                    record("train", window.means(), window.samples_per_s())
                    window.reset()
                if config.eval_every and progress.step % config.eval_every == 0:
                    stop = run_evaluation() or stop
                if config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                    save_checkpoint()
                bar.update(progress.step, step_loss, session_samples_per_s())
                if on_step is not None:
                    on_step(StepInfo(progress.step, progress.epoch, step_loss, grad_norm, factor))
            if progress.batch + accum > micro_per_epoch:  # the epoch is complete
                if progress.last_eval_step != progress.step:
                    stop = run_evaluation() or stop
                progress.epoch, progress.batch = progress.epoch + 1, 0
        if early.should_stop:
            said = (
                f"stopped early at step {progress.step}: valid {config.early_stop_metric} did not improve "
                f"for {config.patience} evaluations (best at step {early.best_step})"
            )
            bar.note(f"[yellow]stopped early, best step {early.best_step}")
            if ctx.is_main:
                log.info(said)

    if progress.last_eval_step != progress.step:  # stopped mid-epoch by max_steps
        run_evaluation()
    session_s, samples_per_s = wall_s() - wall_at_start, session_samples_per_s()  # before the I/O below
    save_checkpoint()
    if ctx.is_main and config.plot and metrics.path.exists():
        plot_curves(metrics.path, run_dir / "curves.png")
    return TrainResult(
        steps=progress.step,
        epochs=progress.epoch,
        samples=progress.samples,
        samples_per_s=samples_per_s,
        wall_s=session_s,
        best_metric=early.best,
        best_step=early.best_step,
        stopped_early=early.should_stop,
        peak_rss_mib=peak_rss_mib(),
        checkpoint=ckpt.checkpoint_path(run_dir, progress.step),
        threads=torch.get_num_threads(),
    )


def _step_budget(
    steps_per_epoch: int, data: BatchSource[Any], accum: int, world_size: int, config: TrainConfig
) -> int:
    """Optimizer steps the run may take: all epochs, cut by max_steps and max_samples."""
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    batch = getattr(data, "batch_size", None)
    if config.max_samples and isinstance(batch, int):  # the schedule spans the budget
        total = min(total, max(1, -(-config.max_samples // (batch * accum * world_size))))
    return total


def _out_of_budget(wall_s: float, samples: int, config: TrainConfig) -> bool:
    """Past the time budget, or past the sample budget of a source without a fixed batch size."""
    late = bool(config.max_minutes) and wall_s >= 60.0 * config.max_minutes
    return late or (bool(config.max_samples) and samples >= config.max_samples)


def _no_sync_unless(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[object]:
    """DDP's no_sync() on accumulation micro-steps; nothing otherwise."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def _next_batch(batches: Iterator[Any], progress: ckpt.Progress) -> Any:
    try:
        return next(batches)
    except StopIteration:
        raise TrainError(
            f"the BatchSource ran out of batches in epoch {progress.epoch} at batch {progress.batch}: "
            "it yields fewer than its num_batches() promised"
        ) from None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
