"""The two small contracts the training loop is written against: `Task` and `BatchSource`.

A **Task** is a network plus its loss (torchrec's split: network, task, wrapper):

    class ClickTask(nn.Module):                     # an nn.Module only if the loss has parameters
        def __init__(self, model: Ranker) -> None:
            super().__init__()
            self.model = model                      # the network; evaluate() and bundles use it
        def loss(self, batch: RankBatch) -> tuple[Tensor, dict[str, float]]:
            logits = self.model(batch)              # (B, num_heads)
            loss = weighted_bce(logits, batch.labels)
            return loss, {"bce": loss.item()}

`loss` must reach the network through `self.model(...)` (or through submodules of the Task), so
that under DistributedDataParallel the loop can wrap it: the loop calls `task.loss` inside a DDP
forward over the Task's parameters. A Task whose loss has learnable parameters (a temperature)
must be an nn.Module owning `model` as a submodule; otherwise a plain object is fine.

**Sparse parameters.** Embedding tables built with `nn.Embedding(..., sparse=True)` or
`nn.EmbeddingBag(..., sparse=True)` get sparse gradients and go to the sparse optimizer; all other
parameters go to AdamW. A Task may instead define `sparse_parameters() -> Iterable[Parameter]`
(see `HasSparseParameters`). A sparse table must not also be used densely (e.g. tied to an
output projection), because one parameter cannot mix sparse and dense gradients.

A **BatchSource** yields the batches of one rank for one epoch, deterministically from its seed;
`feedrank.train.batches.TensorBatchSource` is the in-memory implementation and documents the
sharding rule every source must follow for DDP runs to equal single-process runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from torch import Tensor, nn

BatchT_co = TypeVar("BatchT_co", covariant=True)
BatchT_contra = TypeVar("BatchT_contra", contravariant=True)


class Task(Protocol[BatchT_contra]):
    """A network and the loss that trains it."""

    @property
    def model(self) -> nn.Module:
        """The network: what evaluate() receives and what a bundle saves."""
        ...

    def loss(self, batch: BatchT_contra) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss to minimise (a 0-dim tensor, mean over the batch) and scalars to log.

        The loop logs the returned loss as "loss" (a logged value named "loss" is ignored) and
        each other scalar under its own name, as means over micro-batches between records.

        The loss must be a *mean* over the examples of the batch: gradient accumulation and DDP
        average it over micro-batches and ranks, which equals one big batch only for means.
        """
        ...


@runtime_checkable
class HasSparseParameters(Protocol):
    """Optional Task method: name the parameters that receive sparse gradients yourself."""

    def sparse_parameters(self) -> Iterable[nn.Parameter]: ...


class BatchSource(Protocol[BatchT_co]):
    """The training batches of every (epoch, rank): deterministic given the source's seed.

    Rules that make resume exact and DDP equal to one process:
    - `batches(epoch, rank, world_size, start)` yields the same batches for the same arguments,
      from the source's own seeded generator (never the global RNG); `start` skips the first
      `start` batches of that rank without changing the rest.
    - Batch sizes are per rank; the global batch of one optimizer step is the per-rank batch x
      world_size x grad_accum_steps.
    - If every rank's k-th batch together form the k-th global batch of a single process whose
      batch is world_size times larger, DDP reproduces that single-process run (up to float
      rounding). TensorBatchSource does this by dealing consecutive batches round-robin.
    """

    def batches(self, epoch: int, rank: int, world_size: int, start: int = 0) -> Iterator[BatchT_co]:
        """Batches of `rank` in `epoch` (0-based), from batch index `start` on."""
        ...

    def num_batches(self, rank: int, world_size: int) -> int:
        """How many batches `batches(...)` yields for `rank` per epoch (with start=0)."""
        ...


def split_parameters(task: object, root: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(sparse, dense) trainable parameters of `root`, each parameter once.

    Sparse: `task.sparse_parameters()` if the Task defines it, else the weights of every
    nn.Embedding / nn.EmbeddingBag with `sparse=True` found in `root`. Dense: everything else that
    requires a gradient.
    """
    if isinstance(task, HasSparseParameters):
        sparse = list(task.sparse_parameters())
    else:
        sparse = [
            cast(nn.Parameter, m.weight)
            for m in root.modules()
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse and m.weight.requires_grad
        ]
    sparse_ids = {id(p) for p in sparse}
    unique_sparse = list({id(p): p for p in sparse}.values())
    dense = [p for p in root.parameters() if p.requires_grad and id(p) not in sparse_ids]
    return unique_sparse, dense


class TaskModule(nn.Module):
    """The Task as one nn.Module whose forward is `task.loss`: what DDP wraps and the loop calls.

    DDP only synchronises gradients when the forward goes through the DDP wrapper, while a Task's
    loss calls its network directly; routing `loss` through this module's forward fixes that.
    Its only submodule is the trained root (the Task if it is an nn.Module, else task.model).
    """

    def __init__(self, task: Task[Any]) -> None:
        super().__init__()
        self.root = task if isinstance(task, nn.Module) else task.model
        self._loss = task.loss  # a bound method, not a submodule: parameters are registered once

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return self._loss(batch)
