"""Training curves: a metrics JSONL appended during the run, and a PNG drawn from it at the end.

One JSON object per line:

    {"step": 120, "epoch": 0, "split": "train", "name": "loss", "value": 0.4812,
     "samples_per_s": 20480.5, "wall_s": 3.91}

`step` is the optimizer step after which the value was measured; train values are rank 0's local
means over the steps since the previous record; `samples_per_s` counts examples of all ranks
over that window (for "valid" records: since the start); `wall_s` is training time in seconds
since the run began, summed over resumes.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from matplotlib.figure import Figure

Split = Literal["train", "valid"]


class MetricsLog:
    """Appends metric records to a JSONL file (a no-op when not `enabled`, i.e. off rank 0)."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.lines = 0

    def start(self, keep_lines: int) -> None:
        """Keep the first `keep_lines` records of an existing file (those a checkpoint covers)."""
        self.lines = keep_lines
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self.path.read_text(encoding="utf-8").splitlines()[:keep_lines] if self.path.exists() else []
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(
        self,
        *,
        step: int,
        epoch: int,
        split: Split,
        values: Mapping[str, float],
        samples_per_s: float,
        wall_s: float,
    ) -> None:
        records = [
            {
                "step": step,
                "epoch": epoch,
                "split": split,
                "name": name,
                "value": float(value),
                "samples_per_s": round(samples_per_s, 3),
                "wall_s": round(wall_s, 4),
            }
            for name, value in values.items()
        ]
        self.lines += len(records)
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(metrics_path: Path, png_path: Path) -> None:
    """Draw training loss and every validation metric against step into `png_path`."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in read_metrics(metrics_path):
        series[(r["split"], r["name"])].append((r["step"], r["value"]))
    panels = [("train", "loss"), *sorted(k for k in series if k[0] == "valid")]
    figure = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
    for i, key in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        points = series.get(key, [])
        axes.plot([s for s, _ in points], [v for _, v in points], marker="." if len(points) < 50 else "")
        axes.set_title(f"{key[0]} {key[1]}")
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    tmp = png_path.with_name(f".{png_path.name}.{os.getpid()}.tmp")
    figure.savefig(tmp, dpi=100, format="png")
    tmp.replace(png_path)
