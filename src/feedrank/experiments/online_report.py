"""Writing a simulated A/B test's report: report.md, report.json, daily.png and lift.png."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from feedrank.eval.plots import DPI, plot_system_comparison
from feedrank.experiments.online_stats import PRIMARY, ABReport


def write_report(report: ABReport, out_dir: Path | str) -> dict[str, Path]:
    """report.md, report.json, daily.png (both arms per day with CIs) and lift.png into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    intervals = {"lift": {m.name: (m.ci_low, m.ci_high) for m in report.metrics}}
    paths = {
        "daily": _plot_daily(report, out / "daily.png"),
        "lift": plot_system_comparison(
            {"lift": {m.name: m.lift for m in report.metrics}},
            out / "lift.png",
            intervals=intervals,
            title="Lift of treatment over control, 95% CI",
        ),
        "json": out / "report.json",
        "md": out / "report.md",
    }
    data = {**asdict(report), "metrics": [asdict(m) for m in report.metrics]}
    paths["json"].write_text(json.dumps(_finite(data), indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(to_markdown(report), encoding="utf-8")
    return paths


def to_markdown(report: ABReport) -> str:
    s, cfg = report.setup, report.setup["config"]
    start = datetime.fromtimestamp(s["start_s"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Simulated A/B test",
        "",
        *(f"- {arm}: `{a['policy']}` ({_settings(a)})" for arm, a in report.arms.items()),
        f"- {s['users_control']:,} control and {s['users_treatment']:,} treatment users with a request "
        f"(split check p = {report.sample_ratio_p:.2f}); {cfg['days']:g} days from {start}; "
        f"{s['requests']:,.0f} requests of {cfg['k']} items; seed {cfg['seed']}; "
        f"simulated in {s['wall_s']:.0f} s",
        "",
        "| metric | control | treatment | lift | 95% CI | p-value | significant | MDE (80% power) |",
        "|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for m in report.metrics:
        name = f"**{m.name}**" if m.name == PRIMARY else m.name
        p = "< 0.0001" if m.p_value < 1e-4 else f"{m.p_value:.4f}"
        lines.append(
            f"| {name} | {m.control:.4g} | {m.treatment:.4g} | {m.lift:+.2%} "
            f"| [{m.ci_low:+.2%}, {m.ci_high:+.2%}] | {p} | {'**yes**' if m.significant else 'no'} "
            f"| {m.mde:.2%} |"
        )
    gini_c, gini_t = report.diversity["control"], report.diversity["treatment"]
    lines += [
        "",
        f"Publisher exposure Gini (0 = every publisher shown equally): control {gini_c:.3f}, "
        f"treatment {gini_t:.3f}.",
        "",
        "Per user over the whole test; lift = treatment / control - 1. Significant: p < 0.05 (Welch's "
        "t-test; CTR: z-test with delta-method variance). MDE: the smallest lift this many users "
        "detect with 80% power. Requests/user is a check: it must not differ.",
        "",
        "![per day](daily.png)",
        "",
        "![lift](lift.png)",
        "",
    ]
    return "\n".join(lines)


def _settings(arm: Mapping[str, Any]) -> str:
    text = f"{arm['candidates']} candidates, re-ranking {'on' if arm['rerank'] else 'off'}"
    if arm["rerank"] and "rerank_order" in arm:
        text += f" ({', '.join(arm['rerank_order'])})"
    if arm.get("serve_set"):
        text += "; serving overrides " + " ".join(f"`{item}`" for item in arm["serve_set"])
    return text


def _plot_daily(report: ABReport, path: Path) -> Path:
    fig = Figure(figsize=(10.0, 4.0))
    for ax, (metric, arms) in zip(fig.subplots(1, len(report.daily)), report.daily.items(), strict=True):
        for arm, rows in arms.items():
            values = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
            days = np.arange(1, len(values) + 1)
            ax.plot(days, values[:, 0], marker="o", label=arm)
            ax.fill_between(days, values[:, 1], values[:, 2], alpha=0.25)
        ax.set(title=f"{metric} per day, 95% CI", xlabel="day", ylabel=metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # the Agg canvas directly, never pyplot (as eval/plots.py)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return float(value) if isinstance(value, np.floating) else value
