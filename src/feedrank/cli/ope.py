"""`feedrank abtest ope`: do the off-policy estimators' intervals cover the truth in the simulator?"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from feedrank.cli.console import console
from feedrank.config import load_config
from feedrank.errors import ConfigError


def ope_command(
    seeds: Annotated[int, typer.Option(help="Simulated worlds and logs, one per seed.")] = 24,
    preset: Annotated[str, typer.Option(help="World size of each seed (tiny, small, ...).")] = "tiny",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a SimConfig field: warmup_days=0, ...")
    ] = None,
    slot: Annotated[int, typer.Option(help="Feed slot whose decisions are evaluated.")] = 0,
    alpha: Annotated[float, typer.Option(help="1 - confidence level of the intervals.")] = 0.05,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write ope.md here.")] = None,
) -> None:
    """Check IPS, SNIPS, DR and DM in the simulator: over seeds, how often each interval covers the truth.

    Every seed simulates a world and its log, estimates three target policies' click rates from the
    log and compares each interval with the exactly known value.

    Example: feedrank abtest ope --seeds 24 --preset tiny --set warmup_days=0
    """
    from feedrank.experiments.ope_validation import coverage_by_estimator, render_summary, summarize, validate
    from feedrank.sim import SimConfig

    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha!r}: must be in (0, 1)")
    base = SimConfig.preset(preset)
    configured = load_config(SimConfig, None, set_, base=base)
    overrides = {
        f.name: getattr(configured, f.name)
        for f in dataclasses.fields(SimConfig)
        if getattr(configured, f.name) != getattr(base, f.name)
    }
    with tempfile.TemporaryDirectory(prefix="feedrank-ope-") as work, console.status(f"{seeds} seeds"):
        summary = summarize(
            validate(range(seeds), work, preset=preset, overrides=overrides, slot=slot, alpha=alpha)
        )
    coverage = coverage_by_estimator(summary)
    level = f"{1 - alpha:.0%}"
    lines = [
        render_summary(summary),
        f"Coverage of the {level} intervals over every policy and seed (nominal {level}):",
        "",
        "| estimator | coverage |",
        "|---|---:|",
        *(f"| {name} | {share:.1%} |" for name, share in coverage.items()),
        "",
    ]
    text = "\n".join(lines)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "ope.md").write_text(text, encoding="utf-8")
        console.print(f"[green]report[/] {out / 'ope.md'}")
