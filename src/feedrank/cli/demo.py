"""`feedrank demo`: the README's main job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feedrank.cli.console import console, item_bars, progress_bar
from feedrank.config import load_config

if TYPE_CHECKING:
    from rich.progress import Progress


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Working directory for every artifact.")] = Path(
        "runs/demo"
    ),
    preset: Annotated[
        str, typer.Option(help="Simulated world size: tiny, small (default), medium, large.")
    ] = "small",
    config: Annotated[
        Path | None, typer.Option(help="TOML with DemoConfig tables: sim, retrieval, ranker.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a field: sim.seed=7, ranker.train.epochs=1, ... (`feedrank config show demo`).",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline on the built-in simulated world and print a summary.

    Simulate → import → split → describe → train the two-tower → train the ranker → evaluate.

    Example: feedrank demo --out runs/demo --preset tiny --set ranker.train.epochs=1
    """
    from feedrank.cli.render import feeds_table, served_table, side_by_side, summary_table
    from feedrank.pipeline import STEPS, DemoConfig, run_demo

    cfg = load_config(DemoConfig, config, set_, base=DemoConfig.for_preset(preset))
    bar: Progress | None = None

    def on_step(name: str) -> None:
        console.rule(f"[bold]{STEPS.index(name) + 1}/{len(STEPS)} {name}")

    def on_simulate(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar()
            bar.start()
            bar.add_task("simulate", total=total)
        bar.update(bar.task_ids[0], completed=min(done, total))
        if done >= total:
            bar.stop()

    # A bar for each long library loop (source replay, catalog retrieval, served feeds, ...) as it
    # runs; the training loops silence them under their own bars.
    with item_bars():
        result = run_demo(out, cfg, on_step=on_step, on_simulate=on_simulate)
    if bar is not None:
        bar.stop()
    console.rule("[bold]summary")
    console.print(side_by_side(result.stats, title="Data (simulated world, split by time)"))
    console.print(summary_table(result.report))
    served = served_table(result.report)
    if served is not None:
        console.print(served)
    console.print(feeds_table(result.feeds, bundle=result.bundle))
    timings = ", ".join(f"{step} {sec:.0f} s" for step, sec in result.seconds.items())
    console.print(f"[green]done[/] in {sum(result.seconds.values()):.0f} s ({timings})")
    console.print(f"full report: {result.report_path}")
