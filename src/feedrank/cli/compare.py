"""`feedrank compare CHAMPION CHALLENGER`: is the challenger better than the model in production?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from feedrank.cli.console import console


def compare_command(
    champion: Annotated[Path, typer.Argument(help="The model in production: a bundle or a ranker run.")],
    challenger: Annotated[Path, typer.Argument(help="The candidate: a bundle or a ranker run.")],
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Split to compare on (default: the challenger's).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Report directory (default: runs/compare/CHAMPION-vs-CHALLENGER)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the query sample and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (at least 100).")] = 1000,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    unit: Annotated[Literal["user", "request"], typer.Option(help="What the bootstrap resamples.")] = "user",
    max_queries: Annotated[int, typer.Option(help="Test requests with clicks ranked for retrieval.")] = 2000,
) -> None:
    """Score champion and challenger on the same test requests; paired intervals, segments, SHIP or HOLD.

    Writes report.md, report.html (one self-contained file), report.json and PNG plots.

    Example: feedrank compare runs/demo/bundle runs/v2-bundle --data runs/demo/split --out runs/compare
    """
    from feedrank.experiments.compare import CompareOptions, compare
    from feedrank.experiments.compare_report import render_decision, write_comparison

    options = CompareOptions(
        max_queries=max_queries, num_resamples=resamples, confidence=confidence, seed=seed, unit=unit
    )
    with console.status(f"comparing {champion} (champion) with {challenger} (challenger)"):
        report = compare(champion, challenger, data, options)
        default = Path("runs/compare") / f"{champion.name}-vs-{challenger.name}"
        paths = write_comparison(report, out or default)
    console.print(render_decision(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"[green]report[/] {paths['markdown']} (HTML {paths['html'].name}, JSON, plots beside it)")
