"""`TrainConfig`: every knob of the training loop, one frozen dataclass.

Built like every feedrank config: `load_config(TrainConfig, Path("train.toml"), ["lr=3e-4"])`.
Counts of steps are optimizer steps (one step = `grad_accum_steps` micro-batches on every rank);
`0` means "off" / "no limit" where noted, because TOML has no null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from feedrank.errors import ConfigError

Amp = Literal["off", "bf16", "fp16", "auto"]
Device = Literal["auto", "cpu", "cuda"]
SparseOptimizer = Literal["adagrad", "sparse_adam"]
SparseSync = Literal["auto", "ddp", "allgather"]


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of `feedrank.train.train`.

    Learning rates are per optimizer step. The global batch is the per-rank batch of the
    BatchSource x `grad_accum_steps` x world size.
    """

    # -- length
    epochs: int = 1
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = run all epochs)
    max_samples: int = 0  # stop once this many examples (all ranks) were trained on (0 = no limit)
    # Stop at the first step past this much training wall time, summed over resumes (0 = no
    # limit); the learning-rate schedule still spans the step budget, so prefer max_samples
    # where runs must be reproducible.
    max_minutes: float = 0.0
    # -- optimizers: AdamW on dense parameters, a sparse optimizer on sparse embedding tables
    lr: float = 1e-3
    sparse_lr: float = 0.3
    weight_decay: float = 0.01  # AdamW decoupled decay, on dense weights with >= 2 dims only
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    sparse_optimizer: SparseOptimizer = "adagrad"  # why adagrad: train/optim.py
    # -- schedule: linear warmup, then cosine decay to min_lr_ratio * lr, or constant
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    # -- step mechanics
    grad_accum_steps: int = 1
    clip_grad_norm: float = 1.0  # max L2 norm of the dense gradient (0 = no clipping)
    amp: Amp = "off"  # "auto": bf16 on a CPU with native bf16, fp16 + GradScaler on CUDA
    device: Device = "cpu"  # "auto": cuda when available
    seed: int = 0
    num_threads: int = 0  # torch intra-op CPU threads (0 = this process's share: feedrank/threads.py)
    # -- distributed (only used when WORLD_SIZE > 1)
    sparse_sync: SparseSync = "auto"  # how sparse grads are averaged; "auto": ddp on gloo, allgather on nccl
    find_unused_parameters: bool = False
    dist_timeout_s: float = 1800.0  # a collective waiting longer than this fails instead of hanging
    # -- validation and early stopping
    eval_every: int = 0  # evaluate every this many steps (0 = only at the end of each epoch)
    early_stop_metric: str = ""  # a key of the evaluate() dict ("" = never stop early)
    early_stop_mode: Literal["max", "min"] = "max"
    patience: int = 3  # evaluations without improvement before stopping
    min_delta: float = 0.0  # an improvement must beat the best by more than this
    # -- checkpoints, curves, progress
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # newest step checkpoints kept on disk (best.pt is kept apart)
    log_every: int = 10  # steps between training-metric records
    progress: bool = True  # a rich progress bar on rank 0
    plot: bool = True  # write curves.png at the end

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "grad_accum_steps": self.grad_accum_steps}
        positive |= {"log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {value}")
        non_negative = {
            "max_steps": self.max_steps,
            "max_samples": self.max_samples,
            "max_minutes": self.max_minutes,
            "warmup_steps": self.warmup_steps,
            "eval_every": self.eval_every,
            "checkpoint_every": self.checkpoint_every,
            "patience": self.patience,
            "clip_grad_norm": self.clip_grad_norm,
            "weight_decay": self.weight_decay,
            "min_delta": self.min_delta,
            "num_threads": self.num_threads,
        }
        for name, number in non_negative.items():
            if number < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {number}")
        positive_rates = {"lr": self.lr, "sparse_lr": self.sparse_lr, "dist_timeout_s": self.dist_timeout_s}
        for name, rate in positive_rates.items():
            if rate <= 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0, got {rate}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
