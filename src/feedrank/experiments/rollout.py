"""Staged rollout plans: how much traffic a new ranker gets, for how long, and what stops it.

A rollout is a sequence of stages (default: a 0.1 % canary for 24 h, a 5 % experiment for a week,
ramps to 25 % and 50 %, then 100 %). In a stage the new version serves `share` of the traffic and a
control of `control_share` (default: an equal share, or the rest of the traffic above 50 %) keeps
the current one. Each stage watches checks (error rate, a metric sanity check, the primary metric,
guardrails such as hide rate or clickbait exposure) and stops when one is worse than its threshold
with significance; it also stops on operational limits (p99 latency over budget, sample-ratio
mismatch). For every check a stage must power, the time to detect its degradation is the A/B
sample size (ab_plan.plan) divided by the stage's traffic:

    hours = 24 · (n_control + n_treatment) / (units_per_day · (share + control_share))

so halving the share doubles the time. A stage lasts max(min_hours, slowest check), and is flagged
when a check cannot reach power within max_hours (its power at max_hours is reported). Checks are
one-sided (stop when worse) unless `two_sided`; the primary metric is two-sided by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from feedrank.errors import ConfigError
from feedrank.experiments.ab_plan import ContinuousMetric, Design, Metric, ProportionMetric, plan


@dataclass(frozen=True)
class Check:
    """A metric a stage watches. `worse_by`: the degradation it must catch, relative to the
    baseline (0.1 = 10 % worse) or absolute; `unit`: what one observation is (a user over the
    stage, or a request, whose count per day comes from the config)."""

    name: str
    metric: Metric
    worse_by: float
    relative: bool = True
    higher_is_worse: bool = True
    two_sided: bool = False
    unit: Literal["user", "request"] = "user"

    def rule(self, alpha: float) -> str:
        """The stop condition in words."""
        size = f"{self.worse_by:.1%}" if self.relative else f"{self.worse_by:g} (absolute)"
        side = "two-sided" if self.two_sided else "one-sided"
        direction = "higher" if self.higher_is_worse else "lower"
        return f"{self.metric.name} {direction} than control by {size} or more, {side} p < {alpha:g}"


@dataclass(frozen=True)
class Stage:
    """One step of the rollout; `checks` name the checks whose effects it must be able to detect."""

    name: str
    share: float
    min_hours: float
    max_hours: float
    checks: tuple[str, ...] = ()
    control_share: float | None = None

    @property
    def control(self) -> float:
        return min(self.share, 1.0 - self.share) if self.control_share is None else self.control_share


DEFAULT_CHECKS: tuple[Check, ...] = (
    # Baselines are placeholders of the default simulated world's order; replace them with values
    # measured from your logs (ab_metrics.metric_from_logs) before trusting the durations.
    Check("error_rate", ProportionMetric(0.002, name="error rate"), 0.002, relative=False, unit="request"),
    Check(
        "click_sanity",
        ProportionMetric(0.35, name="requests with a click"),
        0.2,
        higher_is_worse=False,
        unit="request",
    ),
    Check(
        "primary",
        ContinuousMetric(19.3, 76.0, name="dwell s per user-day"),
        0.02,
        higher_is_worse=False,
        two_sided=True,
    ),
    Check("hide_rate", ProportionMetric(0.035, name="requests with a hide"), 0.1, unit="request"),
    Check("clickbait_exposure", ContinuousMetric(0.12, 0.08, name="clickbait share of feed"), 0.05),
)
DAY_H = 24.0
PRIMARY_CHECK = "primary"  # the check whose metric `with_primary_metric` replaces
DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage("canary", 0.001, DAY_H, 2 * DAY_H, ("error_rate", "click_sanity")),
    Stage("experiment", 0.05, 7 * DAY_H, 14 * DAY_H, ("primary", "hide_rate", "clickbait_exposure")),
    Stage("ramp 25%", 0.25, DAY_H, 3 * DAY_H, ("error_rate", "hide_rate")),
    Stage("ramp 50%", 0.5, DAY_H, 3 * DAY_H, ("error_rate", "hide_rate")),
    Stage("full", 1.0, DAY_H, DAY_H),
)


@dataclass(frozen=True)
class RolloutConfig:
    """Traffic (users and requests per day at 100 %), test levels, the latency budget, the checks
    and the stages."""

    users_per_day: float = 1_000_000.0
    requests_per_day: float = 10_000_000.0
    alpha: float = 0.05
    power: float = 0.8
    p99_latency_budget_ms: float = 50.0
    checks: tuple[Check, ...] = DEFAULT_CHECKS
    stages: tuple[Stage, ...] = field(default=DEFAULT_STAGES)

    def __post_init__(self) -> None:
        if not (self.users_per_day > 0 and self.requests_per_day > 0 and self.p99_latency_budget_ms > 0):
            raise ConfigError("users_per_day, requests_per_day and p99_latency_budget_ms must be positive")
        names = {c.name for c in self.checks}
        for stage in self.stages:
            if not (0 < stage.share <= 1 and 0 <= stage.control <= 1 - stage.share + 1e-12):
                raise ConfigError(f"stage {stage.name!r}: share {stage.share!r} / control {stage.control!r}")
            if not 0 < stage.min_hours <= stage.max_hours:
                raise ConfigError(f"stage {stage.name!r}: needs 0 < min_hours <= max_hours")
            unknown = set(stage.checks) - names
            if unknown:
                raise ConfigError(
                    f"stage {stage.name!r}: unknown checks {sorted(unknown)}; known: {sorted(names)}"
                )
            if stage.checks and stage.control == 0:
                raise ConfigError(f"stage {stage.name!r}: checks need a control (control_share > 0)")


@dataclass(frozen=True)
class CheckTime:
    """Hours a check needs in a stage to reach the configured power, and its power at max_hours."""

    name: str
    hours_needed: float
    power_at_max: float


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    hours: float  # planned duration: max(min_hours, slowest check), at most max_hours
    checks: tuple[CheckTime, ...]
    stop_conditions: tuple[str, ...]

    @property
    def reaches_power(self) -> bool:
        return all(c.hours_needed <= self.stage.max_hours for c in self.checks)


@dataclass(frozen=True)
class RolloutPlan:
    config: RolloutConfig
    stages: tuple[StagePlan, ...]

    @property
    def total_hours(self) -> float:
        return sum(s.hours for s in self.stages)


def check_time(check: Check, stage: Stage, config: RolloutConfig) -> CheckTime:
    """Hours for `stage` to detect `check`'s degradation at the configured alpha and power."""
    units = config.users_per_day if check.unit == "user" else config.requests_per_day
    control = stage.control
    design = Design(
        alpha=config.alpha,
        power=config.power,
        two_sided=check.two_sided,
        relative=check.relative,
        treatment_fraction=stage.share / (stage.share + control),
        traffic_share=min(stage.share + control, 1.0),
        units_per_day=units,
    )
    effect = check.worse_by if check.higher_is_worse else -check.worse_by
    needed = plan(check.metric, design, effect=effect).days
    at_max = plan(check.metric, design, effect=effect, days=stage.max_hours / DAY_H).power
    return CheckTime(check.name, math.inf if needed is None else needed * DAY_H, at_max)


def with_primary_metric(config: RolloutConfig, metric: Metric) -> RolloutConfig:
    """`config` with the metric of its `primary` check replaced (e.g. one measured from your logs)."""
    if not any(c.name == PRIMARY_CHECK for c in config.checks):
        raise ConfigError(f"the rollout config has no check named {PRIMARY_CHECK!r} to give a metric to")
    checks = tuple(replace(c, metric=metric) if c.name == PRIMARY_CHECK else c for c in config.checks)
    return replace(config, checks=checks)


def plan_rollout(config: RolloutConfig | None = None) -> RolloutPlan:
    """Durations, power and stop conditions of every stage of `config` (default: RolloutConfig())."""
    config = config or RolloutConfig()
    by_name = {c.name: c for c in config.checks}
    stages = []
    for stage in config.stages:
        times = tuple(check_time(by_name[name], stage, config) for name in stage.checks)
        slowest = max((t.hours_needed for t in times), default=0.0)
        stops = [f"p99 latency above {config.p99_latency_budget_ms:g} ms"]
        if stage.control > 0:
            # A broken split (bucketing bug, crashing clients) invalidates every comparison.
            stops.append("sample ratio mismatch: chi-square p < 0.001 on units per arm")
            stops += [by_name[name].rule(config.alpha) for name in stage.checks]
        else:
            stops.append("error rate above the last stage's treatment rate")
        hours = min(max(stage.min_hours, slowest), stage.max_hours)
        stages.append(StagePlan(stage, hours, times, tuple(stops)))
    return RolloutPlan(config, tuple(stages))


def render_rollout(result: RolloutPlan) -> str:
    """Markdown: one row per stage (traffic, planned hours, hours each check needs, stop
    conditions), flagged stages marked UNDERPOWERED with their power at max_hours."""
    c = result.config
    lines = [
        f"Traffic: {c.users_per_day:,.0f} users/day, {c.requests_per_day:,.0f} requests/day; "
        f"alpha {c.alpha:g}, power {c.power:.0%}.",
        "",
        "| stage | new / control traffic | planned | max | time to detect (power) | stop if |",
        "|---|---|---|---|---|---|",
    ]
    for s in result.stages:
        detect = "<br>".join(
            f"{t.name}: {_hours(t.hours_needed)} ({t.power_at_max:.0%} at max)"
            + ("" if t.hours_needed <= s.stage.max_hours else " **UNDERPOWERED**")
            for t in s.checks
        )
        lines.append(
            f"| {s.stage.name} | {s.stage.share:.1%} / {s.stage.control:.1%} | {_hours(s.hours)} "
            f"| {_hours(s.stage.max_hours)} | {detect or '-'} | {'<br>'.join(s.stop_conditions)} |"
        )
    lines += ["", f"Total planned time: {_hours(result.total_hours)}."]
    flagged = [s.stage.name for s in result.stages if not s.reaches_power]
    if flagged:
        lines.append(f"Underpowered stages (raise their share or max duration): {', '.join(flagged)}.")
    return "\n".join(lines) + "\n"


def _hours(hours: float) -> str:
    if math.isinf(hours):
        return "never"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / DAY_H:.1f} d"
