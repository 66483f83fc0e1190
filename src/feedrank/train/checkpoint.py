"""Checkpoints that resume a run exactly and load with `torch.load(weights_only=True)`.

A checkpoint `run_dir/checkpoints/step_00000120.pt` is one dict of tensors and plain Python
values (weights_only forbids anything else, so nothing in it can run code when loaded):

    format_version  int
    config          the resolved TrainConfig as a dict
    world_size      int: a run resumes only with the world size that wrote it
    model           state_dict() of the trained module (the Task if it is an nn.Module, else task.model)
    optimizers      {"dense": AdamW state_dict | None, "sparse": sparse optimizer state_dict | None}
    scaler          GradScaler state_dict ({} when fp16 is off)
    rng             one dict per rank: python `random`, numpy's global MT19937, torch CPU (and CUDA)
    progress        Progress as a dict: epoch, batch index in the epoch, global step, samples, ...
    early_stopping  EarlyStopping.state_dict()
    metric_window   MetricWindow.state_dict() of rank 0: the running means not yet logged (or None)

`checkpoints/best.pt` holds {format_version, config, model: task.model.state_dict(), step,
metrics} from the best evaluation (only when early_stop_metric is set).

Writes are atomic (temporary file, fsync, os.replace), so a crash never leaves half a checkpoint
under a name `latest_checkpoint` would pick.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from feedrank.artifacts.train_config import TrainConfig
from feedrank.config import to_dict
from feedrank.errors import CheckpointError
from feedrank.train.distributed import DistContext, gather_to_all
from feedrank.train.early_stopping import EarlyStopping
from feedrank.train.optim import Optimizers
from feedrank.train.task import TaskModule

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8,})\.pt$")


@dataclass
class Progress:
    """Where a run is: enough to continue exactly where it stopped."""

    epoch: int = 0  # 0-based epoch being trained
    batch: int = 0  # per-rank micro-batch index in the epoch where the next optimizer step starts
    step: int = 0  # optimizer steps taken so far
    samples: int = 0  # training examples consumed so far, all ranks together
    wall_s: float = 0.0  # training wall time in seconds, summed over resumes
    last_eval_step: int = -1  # step of the latest evaluation, so an epoch end does not repeat it
    metrics_lines: int = 0  # records in metrics.jsonl at this point; later ones are dropped on resume


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}.pt"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The step checkpoint with the highest step in `run_dir/checkpoints`, or None."""
    found = [
        (int(m.group(1)), p)
        for p in (run_dir / "checkpoints").glob("step_*.pt")
        if (m := _NAME.match(p.name))
    ]
    return max(found)[1] if found else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    found = sorted(
        (int(m.group(1)), p)
        for p in (run_dir / "checkpoints").glob("step_*.pt")
        if (m := _NAME.match(p.name))
    )
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """torch.save `payload` to `path` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True onto the CPU."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a feedrank training checkpoint (format {FORMAT_VERSION})")
    return payload


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and primitives (what weights_only can load)."""
    version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python_version": int(version),
        "python_state": torch.tensor(py_state, dtype=torch.int64),  # 624 words + position
        "python_gauss": py_gauss,  # float | None
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # uint32 fits int64
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set this process's RNGs from a `capture_rng()` dict."""
    py_state = tuple(int(x) for x in state["python_state"].tolist())
    random.setstate((state["python_version"], py_state, state["python_gauss"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng(ctx: DistContext) -> list[dict[str, Any]]:
    """Every rank's RNG state, indexed by rank (collective: call on all ranks)."""
    return gather_to_all(capture_rng(), ctx)


def training_payload(
    config: TrainConfig,
    ctx: DistContext,
    module: TaskModule,
    optimizers: Optimizers,
    scaler: torch.amp.GradScaler,
    rng_states: list[dict[str, Any]],
    progress: Progress,
    early: EarlyStopping,
    metric_window: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict described in the module docstring."""
    return {
        "format_version": FORMAT_VERSION,
        "config": to_dict(config),
        "world_size": ctx.world_size,
        "model": module.root.state_dict(),
        "optimizers": {
            "dense": None if optimizers.dense is None else optimizers.dense.state_dict(),
            "sparse": None if optimizers.sparse is None else optimizers.sparse.state_dict(),
        },
        "scaler": scaler.state_dict(),
        "rng": rng_states,
        "progress": dataclasses.asdict(progress),
        "early_stopping": early.state_dict(),
        "metric_window": metric_window,  # rank 0's running means of the logged training values
    }


def restore_training(
    payload: dict[str, Any],
    path: Path,
    config: TrainConfig,
    ctx: DistContext,
    module: TaskModule,
    optimizers: Optimizers,
    scaler: torch.amp.GradScaler,
    early: EarlyStopping,
    progress: Progress,
) -> None:
    """Load a `training_payload` into the live objects (`progress` is updated in place)."""
    if payload["world_size"] != ctx.world_size:
        # Batch indices are per rank, so the data position means something else in another world.
        raise CheckpointError(
            f"{path}: written by {payload['world_size']} processes; resume with the same world size "
            f"(now {ctx.world_size})"
        )
    if payload["config"]["sparse_optimizer"] != config.sparse_optimizer:
        # Optimizer states of another class would load without complaint and fail, or worse, later.
        raise CheckpointError(
            f"{path}: written with sparse_optimizer={payload['config']['sparse_optimizer']!r}, "
            f"now {config.sparse_optimizer!r}"
        )
    changed = {
        k: (v, getattr(config, k)) for k, v in payload["config"].items() if _differs(v, getattr(config, k))
    }
    if changed:
        log.warning("resuming with a changed config (old, new): %s", changed)
    try:
        module.root.load_state_dict(payload["model"])
        for name, opt in (("dense", optimizers.dense), ("sparse", optimizers.sparse)):
            state = payload["optimizers"][name]
            if (state is None) != (opt is None):
                raise CheckpointError(f"{path}: the {name} optimizer does not match this model")
            if opt is not None:
                opt.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not fit this task and config: {exc}") from exc
    if payload["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(payload["scaler"])
    rng_states = payload["rng"]
    if ctx.rank < len(rng_states):
        restore_rng(rng_states[ctx.rank])
    early.load_state_dict(payload["early_stopping"])
    for key, value in payload["progress"].items():
        setattr(progress, key, value)


def save_best(
    run_dir: Path, config: TrainConfig, model: nn.Module, step: int, metrics: dict[str, float]
) -> None:
    """checkpoints/best.pt: the network's weights at its best evaluation (weights_only loadable)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(config),
        "model": model.state_dict(),
        "step": step,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    save_atomic(payload, run_dir / "checkpoints" / "best.pt")


def _differs(old: Any, new: Any) -> bool:
    return bool(old != (list(new) if isinstance(new, tuple) and isinstance(old, list) else new))
