"""The forest plot of a champion-versus-challenger comparison: each metric's delta with its interval,
coloured by verdict (compare_report.py draws the other plots through eval/plots.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # compare_report.py defines the rows and imports this module
    from feedrank.experiments.compare_report import MetricRow

DPI = 120
COLORS = {"better": "#2e7d32", "worse": "#c62828", "no significant difference": "#616161"}


def plot_forest(panels: dict[str, dict[str, MetricRow]], path: Path, *, relative: bool, title: str) -> Path:
    """Forest plot: per panel (titled by its key) one line per row, the delta (relative in %, or
    absolute) with its interval, coloured by verdict, against a dashed zero line."""
    cols = min(2, len(panels))
    nrows = -(-len(panels) // cols)
    height = 0.36 * max(len(rows) for rows in panels.values()) + 1.3
    fig = Figure(figsize=(7.0 * cols if cols > 1 else 7.5, height * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    scale = 100.0 if relative else 1.0
    for ax, (panel, rows) in zip(axes, panels.items(), strict=False):
        y = np.arange(len(rows))[::-1]
        for yi, row in zip(y, rows.values(), strict=True):
            e = row.estimate
            value, (low, high) = (e.relative, e.relative_ci) if relative else (e.delta, e.delta_ci)
            if math.isfinite(value):
                ax.plot([low * scale, high * scale], [yi, yi], color=COLORS[e.verdict], linewidth=2)
                ax.plot([value * scale], [yi], marker="o", color=COLORS[e.verdict])
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(y, list(rows), fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("relative delta (%)" if relative else "delta (challenger - champion)")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # the Agg canvas directly: no pyplot state (as in eval/plots.py)
    fig.savefig(path, dpi=DPI, format="png")
    return path
