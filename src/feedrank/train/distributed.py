"""One process or many: the process group, DDP wrapping, sparse-gradient sync and a local launcher.

`train()` reads the torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):
with WORLD_SIZE > 1 it joins a process group — gloo on CPU, NCCL on CUDA — and wraps the Task in
DistributedDataParallel. The group then lives as long as the process (destroyed at exit), so
several train() calls in one job share it. `spawn_local` starts N such processes on this machine.

Sparse gradients: DDP all-reduces sparse gradients with gloo (verified: 2 CPU ranks equal one
process, tests/train/test_distributed.py). NCCL has no sparse all-reduce, so with NCCL
(`sparse_sync="auto"`) the sparse tables are kept out of DDP and their gradients are averaged by
`allreduce_sparse_grads`, an all-gather of each rank's coalesced (indices, values). That path is
backend-agnostic and tested on gloo; it has not been run on NCCL here (no GPU on the dev machine).
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from feedrank.artifacts.train_config import Device, SparseSync
from feedrank.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None when not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: Device, local_rank: int = 0) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("TrainConfig.device is 'cuda' but torch.cuda.is_available() is False")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(preference: Device, timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (or use one already initialised)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistContext(0, 0, 1, resolve_device(preference), None)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # The group outlives this train() call: a second call in the same job (retrieval, then the
        # ranker) reuses it, because re-creating a group on the same MASTER_PORT can race.
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
        atexit.register(_destroy_process_group)
    ctx = DistContext(dist.get_rank(), local_rank, dist.get_world_size(), device, dist.get_backend())
    log.info("rank %d of %d on %s (%s)", ctx.rank, ctx.world_size, device, ctx.backend)
    return ctx


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(
    module: nn.Module,
    ctx: DistContext,
    sparse: Sequence[nn.Parameter],
    sparse_sync: SparseSync,
    find_unused_parameters: bool,
) -> tuple[nn.Module, bool]:
    """`module` in DDP when distributed; also whether sparse grads need `allreduce_sparse_grads`."""
    if not ctx.distributed:
        return module, False
    manual = bool(sparse) and (
        sparse_sync == "allgather" or (sparse_sync == "auto" and ctx.backend == "nccl")
    )
    if manual:
        sparse_ids = {id(p) for p in sparse}
        ignored = [name for name, p in module.named_parameters() if id(p) in sparse_ids]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
        for p in sparse:  # DDP broadcasts rank 0's weights at construction, but not ignored ones
            dist.broadcast(p.data, src=0)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    wrapped = DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
    return wrapped, manual


def allreduce_sparse_grads(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Replace each sparse gradient by its mean over ranks (all-gather of indices and values).

    Each rank sends its coalesced gradient padded to the largest nnz of any rank: traffic is
    world_size x max nnz x row size per table, independent of the table's number of rows.
    """
    for p in params:
        grad = p.grad
        if grad is None:  # this rank's batches never touched the table: contribute nothing
            grad = torch.sparse_coo_tensor(
                torch.empty((1, 0), dtype=torch.long, device=p.device),
                torch.empty((0, *p.shape[1:]), dtype=p.dtype, device=p.device),
                p.shape,
            )
        grad = grad.coalesce()
        indices, values = grad.indices(), grad.values()  # (sparse_dim, nnz), (nnz, *row)
        count = torch.tensor([indices.shape[1]], device=p.device)
        counts = [torch.zeros_like(count) for _ in range(ctx.world_size)]
        dist.all_gather(counts, count)
        sizes = [int(c.item()) for c in counts]
        pad = max(sizes) - indices.shape[1]
        indices = torch.nn.functional.pad(indices, (0, pad))
        values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
        all_indices = [torch.empty_like(indices) for _ in range(ctx.world_size)]
        all_values = [torch.empty_like(values) for _ in range(ctx.world_size)]
        dist.all_gather(all_indices, indices)
        dist.all_gather(all_values, values)
        merged_indices = torch.cat([i[:, :n] for i, n in zip(all_indices, sizes, strict=True)], dim=1)
        merged_values = torch.cat([v[:n] for v, n in zip(all_values, sizes, strict=True)])
        p.grad = torch.sparse_coo_tensor(merged_indices, merged_values / ctx.world_size, p.shape).coalesce()


def broadcast_floats(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Rank 0's `values` on every rank (identity when not distributed)."""
    if not ctx.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=ctx.device)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.tolist()]


def min_over_ranks(value: int, ctx: DistContext) -> int:
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def gather_to_all(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, indexed by rank (small objects only: RNG states)."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def free_port() -> int:
    """A TCP port free on localhost right now (another process may still take it: tests only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_local(fn: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run `fn(rank, *args)` in `world_size` fresh local processes with the torchrun environment set.

    `fn` must be importable (a module-level function). Each process gets cpu_count // world_size
    intra-op threads, as torchrun would, so the ranks do not fight over cores. Raises when any
    process fails.
    """
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // world_size)
    with tempfile.TemporaryDirectory(prefix="feedrank-spawn-") as sync_dir:
        args_ = (fn, world_size, port, threads, Path(sync_dir), args)
        mp.spawn(_run_rank, args=args_, nprocs=world_size, join=True)  # type: ignore[attr-defined,no-untyped-call]


def _run_rank(
    rank: int,
    fn: Callable[..., None],
    world_size: int,
    port: int,
    threads: int,
    sync_dir: Path,
    args: tuple[Any, ...],
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(threads)
    fn(rank, *args)
    if dist.is_initialized():
        _leave_together(rank, world_size, sync_dir)
    # The rank's work is done and on disk. Leave without interpreter finalization: a gloo worker
    # thread still alive when C++ destructors run at exit aborts the process ("terminate called
    # without an active exception", SIGABRT; seen once in CI under load after every rank had
    # passed the rendezvous above), which failed a run whose results were already complete.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _leave_together(rank: int, world_size: int, sync_dir: Path, timeout_s: float = 120.0) -> None:
    """Tear the process group down in step, then exit with rank 0 last.

    A rank that closes its gloo sockets while a peer is still reading the last message of a
    collective can make that peer abort ("terminate called without an active exception", seen in
    CI under load), and rank 0 hosts the TCP store the others talk to. So: a gloo barrier; a file
    rendezvous proving every rank has returned from it; destroy; rank 0 waits until every rank has
    destroyed its group before it exits.
    """
    dist.barrier()
    _arrive_and_wait(sync_dir, "barrier", rank, world_size, timeout_s)
    dist.destroy_process_group()
    (sync_dir / f"destroyed.{rank}").touch()
    if rank == 0:
        _arrive_and_wait(sync_dir, "destroyed", None, world_size, timeout_s)


def _arrive_and_wait(sync_dir: Path, stage: str, rank: int | None, world_size: int, timeout_s: float) -> None:
    if rank is not None:
        (sync_dir / f"{stage}.{rank}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(sync_dir.glob(f"{stage}.*"))) < world_size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every rank reached {stage!r} within {timeout_s:.0f} s")
        time.sleep(0.01)
