"""`feedrank demo`: the README's main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from feedrank.cli.console import console, progress_bar
from feedrank.cli.render import side_by_side
from feedrank.config import load_config
from feedrank.pipeline import run_demo
from feedrank.sim import SimConfig


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Working directory for every artifact.")] = Path(
        "runs/demo"
    ),
    preset: Annotated[str, typer.Option(help="Simulated world size: tiny, small or medium.")] = "small",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a SimConfig field: key=value.")
    ] = None,
) -> None:
    """Run the whole pipeline on the built-in simulated world and print a summary.

    Example: feedrank demo --out runs/demo --preset tiny
    """
    sim_config = load_config(SimConfig, None, set_, base=SimConfig.preset(preset))
    with progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def report(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                for other in tasks.values():  # a new step means the previous ones are complete
                    bar.update(
                        other, completed=bar.tasks[other].total or 1, total=bar.tasks[other].total or 1
                    )
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done)

        result = run_demo(out, sim_config, progress=report)
        for task in tasks.values():
            bar.update(task, completed=bar.tasks[task].total or 1, total=bar.tasks[task].total or 1)
    console.print(side_by_side(result.stats, title=f"feedrank demo: {result.out_dir}"))
    timings = ", ".join(f"{step} {sec:.1f} s" for step, sec in result.seconds.items())
    console.print(f"[green]done[/] in {sum(result.seconds.values()):.1f} s ({timings})")
