"""Optimizers, the learning-rate schedule and gradient clipping.

Two optimizers: AdamW over dense parameters, and a sparse optimizer over embedding tables with
sparse gradients (Adagrad by default; SparseAdam optional). Both are plain torch optimizers, so
their state_dict() goes into the checkpoint as is.

Why Adagrad by default: at its best learning rate it reaches a validation loss at least as low
as SparseAdam's on bench/sparse_optimizer_bench.py, a step costs the same, it keeps one float of
state per weight instead of SparseAdam's two, and its per-row accumulator suits news: a row seen
for the first time (a fresh item) takes full-size steps. sparse_lr 0.3 sits near the best rate for
tables initialised N(0, 1) like nn.Embedding's default. The measurements: BENCHMARKS.md, "Sparse
optimizer".

The schedule is a pure function of the global step (nanoGPT style), so its whole state is the
step counter saved in the checkpoint; there is no scheduler object to save.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from feedrank.artifacts.train_config import TrainConfig


@dataclass
class Optimizers:
    """The dense (AdamW) and sparse optimizers; either is None when it has no parameters."""

    dense: torch.optim.Optimizer | None
    sparse: torch.optim.Optimizer | None

    def all(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.dense, self.sparse) if opt is not None]

    def zero_grad(self) -> None:
        for opt in self.all():
            opt.zero_grad(set_to_none=True)


def build_optimizers(
    sparse: Sequence[nn.Parameter], dense: Sequence[nn.Parameter], config: TrainConfig
) -> Optimizers:
    """AdamW over `dense` (decay only on weights with >= 2 dims) and the sparse optimizer."""
    dense_opt: torch.optim.Optimizer | None = None
    if dense:
        # Biases and norm gains are not decayed: shrinking them to 0 only adds bias (nanoGPT).
        groups = [
            {"params": [p for p in dense if p.dim() >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in dense if p.dim() < 2], "weight_decay": 0.0},
        ]
        dense_opt = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=config.lr, betas=config.betas, eps=config.eps
        )
    sparse_opt: torch.optim.Optimizer | None = None
    if sparse:
        # Opt out explicitly (the default) of per-tensor sparse invariant checks: they cost a pass
        # over every gradient, and torch warns on each run until the choice is made explicit.
        torch.sparse.check_sparse_tensor_invariants.disable()
        if config.sparse_optimizer == "sparse_adam":
            sparse_opt = torch.optim.SparseAdam(list(sparse), lr=config.sparse_lr, betas=config.betas)
        else:
            # Sparse gradients admit no weight decay in either optimizer: decay would touch
            # every row on every step, which is exactly the dense work sparse tables avoid.
            sparse_opt = torch.optim.Adagrad(list(sparse), lr=config.sparse_lr, eps=1e-10)
    return Optimizers(dense=dense_opt, sparse=sparse_opt)


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of both base learning rates for 0-based optimizer step `step`.

    Linear warmup over `warmup_steps`, then constant or a cosine decay that reaches
    `min_lr_ratio` at `total_steps`.
    """
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    progress = min(1.0, max(0.0, progress))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def set_learning_rates(optimizers: Optimizers, factor: float, config: TrainConfig) -> None:
    for opt, base in ((optimizers.dense, config.lr), (optimizers.sparse, config.sparse_lr)):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = base * factor


def clip_dense_grads(params: Sequence[nn.Parameter], max_norm: float) -> float:
    """Clip the dense gradient to L2 norm `max_norm` (0 = don't) and return its norm before.

    Sparse gradients are left alone on purpose: `clip_grad_norm_` cannot take them, and both
    sparse optimizers divide each row's step by that row's own gradient history, so the size of
    a sparse step is already bounded by sparse_lr whatever the raw gradient scale.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.nn.utils.get_total_norm(grads))
