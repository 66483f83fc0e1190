"""A/B plans for people: a markdown table of a `Plan` and a PNG of power curves.

    text = render_plan(plan(metric, design, effect=0.005))
    plot_power_curves(metric, design, "runs/abtest/power.png", days=(7, 14, 28))

Figures use the Agg canvas directly (see eval/plots.py), never pyplot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from feedrank.errors import ConfigError
from feedrank.eval.plots import save_figure
from feedrank.experiments.ab_plan import (
    ContinuousMetric,
    Design,
    Metric,
    Plan,
    ProportionMetric,
    plan,
    power_at,
)


def render_plan(result: Plan) -> str:
    """A markdown table of the plan (and of the same plan without CUPED when there is one)."""
    plans = [result] + ([result.without_cuped] if result.without_cuped else [])
    head = ["", "with CUPED", "without CUPED"] if len(plans) == 2 else ["", "value"]
    m, d = result.metric, result.design
    test = f"{'two' if d.two_sided else 'one'}-sided z-test, alpha {d.alpha:g}"
    if isinstance(m, ProportionMetric):
        base = f"{m.name}: rate {m.baseline:.4g} ({m.method} variance)"
    else:
        base = f"{m.name}: mean {m.mean:.4g}, sd {m.sd:.4g} per unit"
    traffic = "-"
    if d.units_per_day:
        traffic = f"{d.traffic_share:.1%} of {d.units_per_day:,.0f}/day, {d.treatment_fraction:.0%} treated"

    def row(label: str, fmt: str, getter: str) -> list[str]:
        values = [getattr(p, getter) for p in plans]
        return [label, *("-" if v is None else format(v, fmt) for v in values)]

    rows = [
        ["metric", *([base] * len(plans))],
        ["test", *([test] * len(plans))],
        ["CUPED variance reduction", *(f"{_reduction(p.metric):.1%}" for p in plans)],
        ["solved for", *(p.solved_for.replace("_", " ") for p in plans)],
        row("effect (relative)", "+.3%", "effect_relative"),
        row("effect (absolute)", "+.4g", "effect_absolute"),
        row("power", ".1%", "power"),
        row("control units", ",d", "n_control"),
        row("treatment units", ",d", "n_treatment"),
        row("total units", ",d", "n_total"),
        ["traffic", *([traffic] * len(plans))],
        row("days", ".1f", "days"),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _base(metric: Metric) -> float:
    return abs(metric.baseline if isinstance(metric, ProportionMetric) else metric.mean)


def _reduction(metric: Metric) -> float:
    return metric.variance_reduction if isinstance(metric, ContinuousMetric) else 0.0


def plot_power_curves(
    metric: Metric,
    design: Design,
    path: Path | str,
    days: Sequence[float] = (7, 14, 28),
    effects: Sequence[float] | None = None,
    max_effect: float | None = None,
) -> Path:
    """Two panels: power against the effect (relative or absolute as `design.relative` says), one
    line per duration in `days`; and power against days, one line per effect in `effects`
    (default: the MDE of each duration in `days`). Needs `design.units_per_day`.
    """
    if design.units_per_day is None:
        raise ConfigError("power curves need units_per_day")
    if not days:
        raise ConfigError("power curves need at least one duration")

    def power(effect: float, num_days: float) -> float:
        n_control = design.units_in_days(num_days) * (1 - design.treatment_fraction)
        return power_at(metric, effect, max(n_control, 1.0), design) if effect else 0.0

    def mde(num_days: float) -> float:
        return plan(metric, design, days=num_days).effect_absolute / (
            _base(metric) if design.relative else 1.0
        )

    # Default range: twice the MDE of the shortest test, so every curve gets near power 1.
    top = max_effect if max_effect is not None else 2 * mde(min(days))
    grid = np.linspace(0.0, top, 101)[1:]
    # Default effects: each duration's MDE, so each right-hand curve crosses the target at its day.
    effects = list(effects) if effects is not None else [mde(t) for t in days]
    fig = Figure(figsize=(11.0, 4.5))
    left, right = fig.subplots(1, 2)
    scale, unit = (100.0, "relative effect (%)") if design.relative else (1.0, "absolute effect")
    for num_days in days:
        left.plot(grid * scale, [power(e, num_days) for e in grid], label=f"{num_days:g} days")
    span = np.linspace(max(min(days) / 8, 0.25), 2 * max(days), 120)
    for effect in effects:
        label = f"{effect * scale:+.3g}{'%' if design.relative else ''}"
        right.plot(span, [power(effect, t) for t in span], label=label)
    for ax in (left, right):
        ax.axhline(design.power, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    name = metric.name
    left.set(title=f"{name}: power vs effect", xlabel=unit, ylabel="power")
    right.set(title=f"{name}: power vs duration", xlabel="days", ylabel="power")
    fig.suptitle(
        f"{'two' if design.two_sided else 'one'}-sided alpha {design.alpha:g}, "
        f"{design.traffic_share:.1%} of {design.units_per_day:,.0f} units/day"
    )
    fig.tight_layout()
    return save_figure(fig, path)
