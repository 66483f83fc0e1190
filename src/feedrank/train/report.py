"""What a run reports: `TrainResult`, the metric window behind each log record, the progress bar."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one `train()` call (bench-friendly: plain numbers)."""

    steps: int  # optimizer steps taken in total (over resumes)
    epochs: int  # epochs completed
    samples: int  # training examples consumed in total, all ranks together
    samples_per_s: float  # examples per second of this call's training time, all ranks together
    wall_s: float  # seconds this call spent in the training loop (after setup)
    best_metric: float | None  # best value of early_stop_metric (None without one)
    best_step: int  # step where best_metric was measured (-1 if none)
    stopped_early: bool
    peak_rss_mib: float  # peak resident memory of this process, MiB
    checkpoint: Path  # the final checkpoint (written by rank 0)
    # Torch intra-op threads the run used. Float sums split across threads add up in another order,
    # so a rerun is bitwise identical only at the same count; the automatic choice depends on the
    # load (feedrank/threads.py), so rerun with train.num_threads set to this value.
    threads: int


class MetricWindow:
    """Means of the logged values since the last record, and the examples/s over that time.

    Loss and the Task's values are averaged over micro-batches; grad_norm and lr over steps.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.batch_sums: dict[str, float] = defaultdict(float)
        self.step_sums: dict[str, float] = defaultdict(float)
        self.batches = 0
        self.steps = 0
        self.samples = 0
        self.step_samples = 0
        self.started = time.perf_counter()

    def add_batch(self, loss: float, values: Mapping[str, float], samples: int) -> None:
        self.batch_sums["loss"] += loss
        for name, value in values.items():
            if name != "loss":  # the returned loss is logged as "loss"; a Task's own copy is redundant
                self.batch_sums[name] += float(value)
        self.batches += 1
        self.step_samples += samples

    def step_done(self, grad_norm: float, lr: float) -> int:
        """Close one optimizer step; return the examples it consumed (all ranks)."""
        self.step_sums["grad_norm"] += grad_norm
        self.step_sums["lr"] += lr
        self.steps += 1
        done, self.step_samples = self.step_samples, 0
        self.samples += done
        return done

    def means(self) -> dict[str, float]:
        means = {name: total / max(1, self.batches) for name, total in self.batch_sums.items()}
        return means | {name: total / max(1, self.steps) for name, total in self.step_sums.items()}

    def samples_per_s(self) -> float:
        return self.samples / max(1e-9, time.perf_counter() - self.started)

    def state_dict(self) -> dict[str, Any]:
        """The running sums since the last record: a checkpoint between two records carries them,
        so the first record after a resume averages the same steps as an uninterrupted run."""
        return {
            "batch_sums": dict(self.batch_sums),
            "step_sums": dict(self.step_sums),
            "batches": self.batches,
            "steps": self.steps,
            "samples": self.samples,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reset()
        self.batch_sums.update({str(k): float(v) for k, v in state["batch_sums"].items()})
        self.step_sums.update({str(k): float(v) for k, v in state["step_sums"].items()})
        self.batches, self.steps = int(state["batches"]), int(state["steps"])
        self.samples = int(state["samples"])


def describe_parameters(sparse: Sequence[nn.Parameter], dense: Sequence[nn.Parameter]) -> str:
    """Number of sparse-table and dense weights and their memory in MiB."""
    parts = []
    for label, params in (("sparse", sparse), ("dense", dense)):
        count = sum(p.numel() for p in params)
        size = sum(p.numel() * p.element_size() for p in params)
        parts.append(f"{label} {count:,} ({size / 2**20:.1f} MiB)")
    return ", ".join(parts)


def warn_about_dense_tables(root: nn.Module, min_rows: int = 100_000) -> None:
    """Warn about big embedding tables with dense gradients: each step then updates every row."""
    for name, m in root.named_modules():
        is_table = isinstance(m, (nn.Embedding, nn.EmbeddingBag))
        if is_table and not m.sparse and m.weight.requires_grad and m.num_embeddings >= min_rows:
            log.warning(
                "embedding %s (%d rows) has dense gradients: every step updates all its rows; "
                "sparse=True is much faster on CPU",
                name,
                m.num_embeddings,
            )


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB): VmHWM on Linux, which, unlike ru_maxrss, does
    not inherit the parent's peak across fork + exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class _Bar:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self.progress, self.task_id = progress, task_id

    def update(self, step: int, loss: float, samples_per_s: float) -> None:
        self.progress.update(
            self.task_id, completed=step, loss=f"{loss:.4f}", rate=f"{samples_per_s:,.0f} samples/s"
        )

    def note(self, text: str) -> None:
        """Say `text` at the end of the bar (it stays when the bar is done): why training stopped."""
        self.progress.update(self.task_id, note=text)


@contextmanager
def progress_bar(*, enabled: bool, total: int, done: int) -> Iterator[_Bar]:
    """A rich bar of optimizer steps with the loss and samples/s (hidden when not `enabled`)."""
    bar = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        disable=not enabled,
    )
    task_id = bar.add_task("train", total=total, completed=done, loss="-", rate="-", note="")
    with bar:
        yield _Bar(bar, task_id)
