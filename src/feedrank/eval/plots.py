"""PNG charts for evaluation reports: reliability, system comparison, training curves, metric vs K.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never pyplot: no
global figure state, no GUI backend, safe in threads and in the service. Every writer creates the
parent directory and returns the path it wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DPI = 120
LOSS_FIRST = ("loss",)  # metric names drawn first in training curves


def plot_reliability(
    tables: Mapping[str, pl.DataFrame], path: Path | str, title: str = "Reliability diagram"
) -> Path:
    """Reliability diagram of one or more systems: observed rate vs mean prediction per bin.

    Args:
        tables: system name -> `calibration.reliability_table(...)` output (columns
            mean_predicted, observed_rate, count).
        path: PNG file to write.
    """
    fig = Figure(figsize=(6.0, 7.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, table in tables.items():
        pred = table.get_column("mean_predicted").to_numpy()
        top.plot(pred, table.get_column("observed_rate").to_numpy(), marker="o", label=name)
        bottom.plot(pred, table.get_column("count").to_numpy(), marker=".", label=name)
    # Zoom to the populated range: click rates live near zero, where a [0, 1] frame shows nothing.
    top_value = max(
        [
            float(t.get_column(c).to_numpy().max(initial=0.0))
            for t in tables.values()
            for c in ("mean_predicted", "observed_rate")
        ],
        default=1.0,
    )
    limit = min(1.0, 1.1 * top_value) if top_value > 0 else 1.0
    top.set(title=title, ylabel="observed rate", xlim=(0, limit), ylim=(0, limit))
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set(xlabel="mean predicted probability", ylabel="rows per bin", yscale="log")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_system_comparison(
    results: Mapping[str, Mapping[str, float]],
    path: Path | str,
    metrics: Sequence[str] | None = None,
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    title: str = "Systems compared",
) -> Path:
    """Grouped bars: one group per metric, one bar per system, optional confidence intervals.

    Args:
        results: system name -> metric name -> value.
        metrics: metrics to draw, in order; default: those every system reports, in the first
            system's order.
        intervals: system -> metric -> (low, high), drawn as error bars (e.g. bootstrap CIs).
    """
    systems = list(results)
    if metrics is None:
        first = results[systems[0]] if systems else {}
        metrics = [m for m in first if all(m in results[s] for s in systems)]
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(metrics))
    fig = Figure(figsize=(max(6.0, 1.2 * len(metrics) * max(len(systems), 1) * 0.5 + 3), 4.5))
    ax = fig.subplots()
    for i, system in enumerate(systems):
        values = np.array([results[system].get(m, np.nan) for m in metrics], dtype=np.float64)
        yerr = None
        if intervals is not None and system in intervals:
            # A metric without an interval gets a zero-length error bar.
            bounds = np.array(
                [intervals[system].get(m, (v, v)) for m, v in zip(metrics, values, strict=True)]
            )
            yerr = np.vstack([values - bounds[:, 0], bounds[:, 1] - values])  # (2, M)
        bars = ax.bar(
            x + (i - (len(systems) - 1) / 2) * width, values, width, yerr=yerr, capsize=3, label=system
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, list(metrics), rotation=30, ha="right")
    ax.set(title=title, ylabel="value")
    ax.margins(y=0.15)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(metrics_jsonl: Path | str, path: Path | str, title: str = "Training curves") -> Path:
    """One panel per metric name, one line per split, from a metrics JSONL file.

    Args:
        metrics_jsonl: records {"step": int, "split": str, "name": str, "value": float}, one per line.
        path: PNG file to write.
    """
    records = pl.read_ndjson(metrics_jsonl).select("step", "split", "name", "value").drop_nulls()
    names = sorted(records.get_column("name").unique().to_list(), key=lambda n: (n not in LOSS_FIRST, n))
    cols = min(3, max(len(names), 1))
    rows = -(-max(len(names), 1) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        of_name = records.filter(pl.col("name") == name)
        for split in sorted(of_name.get_column("split").unique().to_list()):
            curve = of_name.filter(pl.col("split") == split).sort("step")
            ax.plot(curve.get_column("step").to_numpy(), curve.get_column("value").to_numpy(), label=split)
        ax.set(title=name, xlabel="step", ylabel=name)
        ax.legend()
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if not names:
        logger.warning("%s holds no metric records; the figure is empty", metrics_jsonl)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_metric_at_k(
    curves: Mapping[str, Mapping[int, float]],
    path: Path | str,
    metric: str = "recall",
    title: str | None = None,
) -> Path:
    """Metric@K against K (log scale), one line per system.

    Args:
        curves: system name -> {K: value}, e.g. {k: summary[f"recall@{k}"] for k in ks}.
        metric: the metric's name, for the axis label and default title.
    """
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.subplots()
    for system, by_k in curves.items():
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k] for k in ks], marker="o", label=system)
    ax.set_xscale("log")
    all_ks = sorted({k for by_k in curves.values() for k in by_k})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set(title=title or f"{metric}@K", xlabel="K", ylabel=f"{metric}@K")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Figure, path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attaches the Agg canvas, so no pyplot backend is involved
    fig.savefig(out, dpi=DPI, format="png")
    logger.info("wrote %s", out)
    return out
