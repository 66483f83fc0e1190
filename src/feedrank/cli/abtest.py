"""`feedrank abtest plan|rollout|simulate`: plan, stage and simulate A/B tests (`ope`: cli/ope.py).

Library modules load inside each command, so that `--help` answers without importing them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from feedrank.cli.console import console, progress_bar
from feedrank.config import load_config
from feedrank.errors import ConfigError
from feedrank.experiments.variants import VARIANTS

if TYPE_CHECKING:
    from feedrank.experiments.ab_metrics import UserMetric
    from feedrank.experiments.ab_plan import Metric


abtest_app = typer.Typer(
    help="Plan, stage, simulate and pre-check A/B tests of a new ranker.", no_args_is_help=True
)


# The metric options of `plan` and `rollout` (rollout: the primary check's metric).
MeanOption = Annotated[float | None, typer.Option(help="Continuous metric: control mean per unit (user).")]
SdOption = Annotated[float | None, typer.Option(help="Continuous metric: standard deviation per unit.")]
VarianceReductionOption = Annotated[
    float, typer.Option(help="Continuous metric: CUPED variance reduction rho^2 in [0, 1).")
]
DataOption = Annotated[
    Path | None, typer.Option("--data", "-d", help="Measure the metric from this dataset or split.")
]
MetricOption = Annotated[str, typer.Option(help="With --data: dwell_per_day, clicks_per_day or ctr.")]
PreDaysOption = Annotated[float, typer.Option(help="With --data: CUPED pre-period in days (0: none).")]
PostDaysOption = Annotated[float, typer.Option(help="With --data: the measured window in days.")]


# ------------------------------------------------------------------------------- abtest plan
def _metric(
    baseline: float | None,
    mean: float | None,
    sd: float | None,
    variance_reduction: float,
    data: Path | None,
    metric: str,
    pre_days: float,
    post_days: float,
) -> Metric:
    """The metric to plan for: a rate (--baseline), a given mean/sd, or one measured from logs."""
    from feedrank.experiments.ab_metrics import metric_from_logs, read_impressions
    from feedrank.experiments.ab_plan import ContinuousMetric, ProportionMetric

    given = [name for name, on in (("--baseline", baseline), ("--mean/--sd", mean), ("--data", data)) if on]
    if len(given) != 1:
        raise ConfigError(f"give exactly one of --baseline, --mean/--sd or --data (got {given or 'none'})")
    if baseline is not None:
        return ProportionMetric(baseline, name="rate")
    if mean is not None or data is None:
        if sd is None or mean is None:
            raise ConfigError("--mean needs --sd (the standard deviation per unit)")
        return ContinuousMetric(mean, sd, variance_reduction, name="metric")
    name = _user_metric(metric)  # before reading the logs: a typo should not wait for them
    measured, cuped = metric_from_logs(read_impressions(data), name, post_days=post_days, pre_days=pre_days)
    line = f"{metric} over the last {post_days:g} days of {data}: "
    line += f"mean {measured.mean:.4g}, sd {measured.sd:.4g} per user"
    if cuped is not None:
        line += (
            f"; CUPED against the {pre_days:g} days before: theta {cuped.theta:.3f}, rho {cuped.rho:.3f}, "
            f"variance reduction {cuped.variance_reduction:.1%} ({cuped.num_with_pre:,} of "
            f"{cuped.num_units:,} users had a pre-period)"
        )
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    return measured


def _user_metric(name: str) -> UserMetric:
    from feedrank.experiments.ab_metrics import USER_METRICS

    for known in USER_METRICS:
        if known == name:
            return known
    raise ConfigError(f"--metric {name!r}: expected one of {', '.join(USER_METRICS)}")


@abtest_app.command("plan")
def plan_command(
    effect: Annotated[
        float | None, typer.Option(help="Effect to detect, relative to the baseline (0.005 = +0.5 %).")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Instead of (or with) --effect: the test's length in days.")
    ] = None,
    baseline: Annotated[float | None, typer.Option(help="Proportion metric: control rate in (0, 1).")] = None,
    method: Annotated[
        Literal["pooled", "arcsine"], typer.Option(help="Proportion metric: variance method.")
    ] = "pooled",
    mean: MeanOption = None,
    sd: SdOption = None,
    variance_reduction: VarianceReductionOption = 0.0,
    data: DataOption = None,
    metric: MetricOption = "dwell_per_day",
    pre_days: PreDaysOption = 0.0,
    post_days: PostDaysOption = 3.5,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power to reach.")] = 0.8,
    one_sided: Annotated[bool, typer.Option(help="One-sided test in the effect's direction.")] = False,
    units_per_day: Annotated[
        float | None, typer.Option(help="Randomization units reaching the product per day.")
    ] = None,
    traffic_share: Annotated[float, typer.Option(help="Share of those units in the test.")] = 1.0,
    treatment_fraction: Annotated[float, typer.Option(help="Share of the test's units treated.")] = 0.5,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write plan.md and power.png (needs --units-per-day).")
    ] = None,
) -> None:
    """Sample size per arm, duration and MDE of an A/B test; the power curves with --out.

    Give --effect for the sample size, --days for the MDE, both for the power. The metric is a
    rate (--baseline), a mean and sd (--mean/--sd), or measured per user from logs (--data).

    Example: feedrank abtest plan --baseline 0.05 --effect 0.005 --units-per-day 1000000
    Example: feedrank abtest plan --data runs/demo/split --metric dwell_per_day --pre-days 3.5
    --post-days 3.5 --effect 0.05 --units-per-day 50000 --out runs/abplan
    """
    from feedrank.experiments.ab_plan import Design, ProportionMetric, plan
    from feedrank.experiments.ab_report import plot_power_curves, render_plan

    if effect is not None and not effect > 0:
        raise ConfigError(f"--effect {effect!r}: the effect to detect must be positive (0.005 = +0.5 %)")
    if days is not None and not days > 0:
        raise ConfigError(f"--days {days!r}: must be positive")
    if days is not None and units_per_day is None:
        raise ConfigError("--days needs --units-per-day (how many units a day brings)")
    if out is not None and units_per_day is None:
        raise ConfigError("--out draws power curves over days: give --units-per-day")
    chosen = _metric(baseline, mean, sd, variance_reduction, data, metric, pre_days, post_days)
    if isinstance(chosen, ProportionMetric):
        chosen = dataclasses.replace(chosen, method=method)
    design = Design(
        alpha=alpha,
        power=power,
        two_sided=not one_sided,
        treatment_fraction=treatment_fraction,
        traffic_share=traffic_share,
        units_per_day=units_per_day,
    )
    text = render_plan(plan(chosen, design, effect=effect, days=days))
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.md").write_text(text, encoding="utf-8")
        curves = plot_power_curves(chosen, design, out / "power.png")
        console.print(f"[green]plan[/] {out / 'plan.md'}, power curves {curves}")


# ---------------------------------------------------------------------------- abtest rollout
@abtest_app.command("rollout")
def rollout_command(
    config: Annotated[
        Path | None, typer.Option(help="TOML with RolloutConfig fields (stages, checks, traffic).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a field: users_per_day=50000, ...")
    ] = None,
    mean: MeanOption = None,
    sd: SdOption = None,
    variance_reduction: VarianceReductionOption = 0.0,
    data: DataOption = None,
    metric: MetricOption = "dwell_per_day",
    pre_days: PreDaysOption = 0.0,
    post_days: PostDaysOption = 3.5,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write rollout.md here.")] = None,
) -> None:
    """The staged rollout (canary, experiment, ramps, full): hours per stage and what stops it.

    Without --config the default stages and checks; --mean/--sd or --data replace the primary
    check's metric (dwell per user-day by default) with yours.

    Example: feedrank abtest rollout --set users_per_day=50000 --set requests_per_day=500000
    Example: feedrank abtest rollout --config rollout.toml --data runs/demo/split --pre-days 3.5
    """
    from feedrank.experiments.rollout import RolloutConfig, plan_rollout, render_rollout, with_primary_metric

    rollout = load_config(RolloutConfig, config, set_)
    if mean is not None or data is not None:
        primary = _metric(None, mean, sd, variance_reduction, data, metric, pre_days, post_days)
        name = f"{metric} per user" if data is not None else "primary metric"
        rollout = with_primary_metric(rollout, dataclasses.replace(primary, name=name))
    text = render_rollout(plan_rollout(rollout))
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "rollout.md").write_text(text, encoding="utf-8")
        console.print(f"[green]rollout plan[/] {out / 'rollout.md'}")


# --------------------------------------------------------------------------- abtest simulate
@abtest_app.command("simulate")
def simulate_command(
    control: Annotated[Path, typer.Argument(help="Bundle serving the control arm.")],
    treatment: Annotated[Path, typer.Argument(help="Bundle serving the treatment arm.")],
    days: Annotated[float, typer.Option(help="Simulated days (the last days of the world).")] = 7.0,
    users: Annotated[int, typer.Option(help="Users in the experiment (both arms).")] = 10_000,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report directory (default: runs/abtest).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of population, arms, traffic and responses.")] = 0,
    world: Annotated[
        Path | None, typer.Option(help="Simulated world (default: the one behind TREATMENT's data).")
    ] = None,
    control_policy: Annotated[str, typer.Option(help=f"Control variant: {', '.join(VARIANTS)}.")] = "ranker",
    treatment_policy: Annotated[str, typer.Option(help="Treatment variant (as control's).")] = "ranker",
    k: Annotated[int, typer.Option(help="Items per feed.")] = 10,
    candidates: Annotated[int, typer.Option(help="ANN candidates per request.")] = 100,
    rerank: Annotated[bool, typer.Option(help="Serving re-ranker on or off.")] = True,
    requests_per_user_day: Annotated[
        float | None, typer.Option(help="Traffic per user (default: the world's own rate).")
    ] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (as bench_online_ab.py).")] = 1,
    control_set: Annotated[
        list[str] | None,
        typer.Option(
            "--control-set",
            help="Override a serving setting of the control arm (as `feedrank serve --set`): "
            'rerank.order=["drop","freshness","clickbait","cap"], ...',
        ),
    ] = None,
    treatment_set: Annotated[
        list[str] | None,
        typer.Option("--treatment-set", help="Override a serving setting of the treatment arm."),
    ] = None,
) -> None:
    """Run an online A/B test in the simulator: both bundles serve users, the world answers.

    Writes report.md, report.json, daily.png and lift.png; prints the lifts with 95% CIs.

    Example: feedrank abtest simulate runs/demo/bundle runs/v2-bundle --days 7 --users 10000 --out runs/ab
    Example: feedrank abtest simulate runs/old/bundle runs/demo/bundle --days 2
    --control-set 'rerank.order=["drop","freshness","clickbait","cap"]' --out runs/ab-fixed-vs-old
    """
    import torch

    from feedrank.experiments.online_ab import ABConfig, simulate_bundles
    from feedrank.experiments.online_report import to_markdown, write_report
    from feedrank.experiments.online_stats import analyze

    config = ABConfig(num_users=users, days=days, k=k, requests_per_user_day=requests_per_user_day, seed=seed)
    # Batches are small (one simulated hour of one arm): a second thread mostly waits on a shared box.
    torch.set_num_threads(threads)
    with progress_bar() as bar:
        task = bar.add_task("simulated hours", total=round(days * 24))
        result = simulate_bundles(
            control,
            treatment,
            config,
            world=world,
            policies=(control_policy, treatment_policy),
            candidates=candidates,
            rerank=rerank,
            serve_sets=(control_set or [], treatment_set or []),
            on_hour=lambda done, total: bar.update(task, completed=done, total=total),
        )
    report = analyze(result)
    paths = write_report(report, out or Path("runs/abtest"))
    console.print(to_markdown(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"[green]report[/] {paths['md']} (JSON {paths['json'].name}, plots beside it)")
