"""`feedrank evaluate`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feedrank.cli.console import console, item_bars, progress_bar, stages
from feedrank.errors import ConfigError

if TYPE_CHECKING:
    from feedrank.candidates import SourcesConfig


def evaluate_command(
    run: Annotated[Path, typer.Argument(help="Training run (retrieval or ranker).")],
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Split to evaluate on (default: the run's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report directory (default: RUN/eval).")
    ] = None,
    max_queries: Annotated[int, typer.Option(help="Test requests ranked against the full catalog.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 0,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Bundle serving the served-feed rows (default: one written from the run)."),
    ] = None,
    served_requests: Annotated[
        int, typer.Option(help="Test requests sent through the serving path (0: no served-feed rows).")
    ] = 1000,
    posterior_oracle: Annotated[
        bool,
        typer.Option(
            help="Simulator: add the posterior oracle's served row, the best feed the log allows "
            "(about 1 s per request)."
        ),
    ] = False,
    protocol: Annotated[str, typer.Option(help="offline (default) or next-click.")] = "offline",
    max_events: Annotated[int, typer.Option(help="next-click: sampled test clicks.")] = 20_000,
    valid_events: Annotated[
        int, typer.Option(help="next-click: sampled validation clicks the blend is tuned on.")
    ] = 5_000,
    skip_session_first: Annotated[
        bool, typer.Option(help="next-click: skip each session's first click.")
    ] = False,
    quota: Annotated[
        list[str] | None,
        typer.Option(
            help="next-click: relative quota of a candidate source, NAME=N (ann, trending, covis, fresh)."
        ),
    ] = None,
) -> None:
    """Evaluate a run beside the baselines (and the oracle in the simulator); write a report.

    Example: feedrank evaluate runs/ranker --out runs/ranker/eval
    Example: feedrank evaluate runs/demo/ranker --bundle runs/demo/bundle --served-requests 2000
    Example: feedrank evaluate runs/demo/ranker --bundle runs/demo/bundle --posterior-oracle
    Example: feedrank evaluate runs/globo/ranker --protocol next-click --bundle runs/globo/bundle
    Example: feedrank evaluate runs/ranker --protocol next-click --max-events 20000
    Example: feedrank evaluate runs/ranker --protocol next-click --quota covis=0 --out /tmp/nocovis
    """
    if protocol not in ("offline", "next-click"):
        raise ConfigError(f"--protocol {protocol!r}: expected offline or next-click")
    from feedrank.eval.next_click import NextClickOptions, evaluate_next_click
    from feedrank.eval.next_click_report import write_next_click_report
    from feedrank.eval.offline import EvalOptions, evaluate_run
    from feedrank.eval.report import write_report

    if protocol == "next-click":
        options = NextClickOptions(
            max_events=max_events,
            valid_events=valid_events,
            skip_session_first=skip_session_first,
            seed=seed,
            sources=_quotas(quota or []),
        )
        with stages(), progress_bar() as bar:
            task = bar.add_task("next-click: test clicks ranked", total=None)
            progress = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
            if bundle is not None:  # the same clicks through the bundle's serving path too
                from feedrank.eval.served_next_click import evaluate_next_click_served

                result = evaluate_next_click_served(run, bundle, data, options, on_click=progress)
            else:
                result = evaluate_next_click(run, data, options, on_click=progress)
            paths = write_next_click_report(result, out or run / "eval")
        console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, highlight=False)
        return
    console.print(f"evaluating {run} (the stages below, a bar for each long one)")
    with stages(), item_bars():
        offline = EvalOptions(
            max_queries=max_queries,
            seed=seed,
            served_requests=served_requests,
            served_posterior=posterior_oracle,
        )
        report = evaluate_run(run, data, offline, bundle=bundle)
        paths = write_report(report, out or run / "eval")
    console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"[green]report[/] {paths['markdown']} (JSON {paths['json'].name}, plots beside it)")


def _quotas(pairs: list[str]) -> SourcesConfig:
    """SourcesConfig with the given NAME=N quotas replaced."""
    from feedrank.candidates import SourcesConfig

    known = SourcesConfig().quotas()
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known or not value.strip().isdigit():
            raise ConfigError(f"--quota {pair!r}: expected NAME=N with NAME in {', '.join(known)} and N >= 0")
        changes[name] = int(value)
    return dataclasses.replace(SourcesConfig(), **changes)
