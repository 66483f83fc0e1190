"""`feedrank simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feedrank.cli.console import console, progress_bar
from feedrank.config import load_config


def simulate_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the simulated log and its world.")],
    preset: Annotated[
        str, typer.Option(help="World size: tiny, small (the default world) or medium.")
    ] = "small",
    config: Annotated[Path | None, typer.Option(help="TOML file with SimConfig fields.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a SimConfig field: key=value (`feedrank config show sim` lists them)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Simulate a feed world with known ground truth and write its log as a canonical dataset.

    Example: feedrank simulate --out runs/sim --preset small --set seed=7 --set num_days=5
    """
    from feedrank.sim import SimConfig, simulate

    cfg = load_config(SimConfig, config, set_, base=SimConfig.preset(preset))
    with progress_bar() as bar:
        task = bar.add_task("simulating", total=cfg.num_impressions)
        ds = simulate(cfg, out, overwrite=overwrite, progress=lambda n: bar.update(task, completed=n))
        bar.update(task, total=ds.rows("impressions"), completed=ds.rows("impressions"))
    console.print(f"[green]simulated[/] {ds.path}: {ds.rows('impressions'):,} impressions")
