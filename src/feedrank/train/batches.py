"""Batches: the in-memory `TensorBatchSource`, and what the loop needs from any batch.

What a batch must support (any of):
- a Tensor, a Mapping / list / tuple of tensors, or a dataclass whose fields are tensors
  (nested freely): the loop moves it with `move_to` and counts its examples with `count_examples`;
- any other object with `.to(device) -> same type` and `__len__ -> number of examples`.
Non-tensor leaves (ints, strings, None) are passed through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor

from feedrank.errors import ConfigError

B = TypeVar("B")


def map_tensors(batch: B, fn: Callable[[Tensor], Tensor], other: Callable[[Any], Any] | None = None) -> B:
    """`batch` with `fn` applied to every tensor in it (the same structure, a new object), and
    `other` (default: keep) to every other leaf."""
    result: Any
    if isinstance(batch, Tensor):
        result = fn(batch)
    elif isinstance(batch, Mapping):
        result = type(batch)({k: map_tensors(v, fn, other) for k, v in batch.items()})  # type: ignore[call-arg]
    elif isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        result = type(batch)(map_tensors(v, fn, other) for v in batch)
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: map_tensors(getattr(batch, f.name), fn, other) for f in dataclasses.fields(batch)}
        result = dataclasses.replace(batch, **changes)
    else:
        result = batch if other is None else other(batch)
    return result  # type: ignore[no-any-return]


def move_to(batch: B, device: torch.device) -> B:
    """`batch` with every tensor on `device` (no copy for tensors already there)."""
    return map_tensors(
        batch,
        lambda t: t.to(device, non_blocking=True),
        lambda leaf: leaf.to(device) if hasattr(leaf, "to") else leaf,
    )


def take(batch: B, index: Tensor) -> B:
    """The examples `index` (dim 0 of every tensor) of `batch`."""
    return map_tensors(batch, lambda t: t[index])


def count_examples(batch: object) -> int:
    """Number of examples in `batch`: `len()` if it defines it, else the first tensor's dim 0."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        values: list[object] = list(batch.values())
    elif isinstance(batch, (list, tuple)):
        values = list(batch)
    elif hasattr(batch, "__len__"):
        return len(batch)
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        values = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    else:
        values = []
    for value in values:
        if isinstance(value, (Tensor, Mapping, list, tuple)) or dataclasses.is_dataclass(value):
            return count_examples(value)
    raise TypeError(f"cannot count the examples of a {type(batch).__name__}: give it __len__")


def leading_lengths(batch: object, name: str = "") -> dict[str, int]:
    """Dim 0 of every tensor in `batch`, by its path (`user.hist_item`, `labels`, ...)."""
    if isinstance(batch, Tensor):
        return {name: int(batch.shape[0])}
    if isinstance(batch, Mapping):
        parts: list[tuple[str, object]] = [(str(k), v) for k, v in batch.items()]
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        parts = [(f.name, getattr(batch, f.name)) for f in dataclasses.fields(batch)]
    else:
        parts = []
    out: dict[str, int] = {}
    for key, value in parts:
        out.update(leading_lengths(value, f"{name}.{key}" if name else key))
    return out


class TensorBatchSource(Generic[B]):
    """Batches sliced from one in-memory batch of all N examples: a dict of equally long tensors or
    a typed batch (a dataclass of them, e.g. `RankerBatch`); each batch has the type of the whole.

    Each epoch the N examples are shuffled with a generator seeded by (seed, epoch) — the same
    permutation on every rank — and cut into consecutive batches of `batch_size` (per rank).
    Batch k of the epoch goes to rank k % world_size, so the ranks' i-th batches together are
    exactly the i-th batch of one process with batch_size * world_size: a DDP run sees the same
    global batches as a single-process run. Each rank gets num_batches(rank, world_size) batches;
    the trailing examples that do not fill a global batch are dropped when `drop_last` (the
    default), so every rank takes the same number of steps. Memory: no copies beyond one batch.
    """

    def __init__(
        self,
        tensors: B,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        lengths = leading_lengths(tensors)
        if not lengths or len(set(lengths.values())) != 1:
            raise ConfigError(f"TensorBatchSource needs tensors of one common length, got {lengths}")
        if batch_size < 1:
            raise ConfigError(f"TensorBatchSource batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_examples = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.num_examples

    def num_batches(self, rank: int, world_size: int) -> int:
        _check_rank(rank, world_size)
        if self.drop_last:
            return self.num_examples // (self.batch_size * world_size)
        total = -(-self.num_examples // self.batch_size)  # the last batch may be short
        return len(range(rank, total, world_size))

    def batches(self, epoch: int, rank: int, world_size: int, start: int = 0) -> Iterator[B]:
        order = self.order(epoch)
        for i in range(start, self.num_batches(rank, world_size)):
            k = i * world_size + rank  # the global index of this rank's i-th batch
            index = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield take(self.tensors, index)

    def order(self, epoch: int) -> Tensor:
        """The example order of `epoch`: (N,) int64, a permutation when shuffling."""
        if not self.shuffle:
            return torch.arange(self.num_examples)
        # Seeding by (seed, epoch) rather than advancing one generator makes any epoch
        # reproducible on its own, which is what exact resume mid-run needs.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_examples, generator=generator)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
