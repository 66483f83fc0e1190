"""`feedrank train retrieval|ranker`.

Library modules load inside each command, so that `--help` answers without importing torch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feedrank.cli.console import console, item_bars, stages
from feedrank.config import load_config

if TYPE_CHECKING:
    from feedrank.artifacts.train_config import TrainConfig
    from feedrank.data.dataset import Dataset
    from feedrank.train.report import TrainResult

app = typer.Typer(help="Train the two-tower retrieval model or the multi-task ranker.", no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Split directory (feedrank data split).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run directory (created; resumable).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file with the run config.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config field: key=value (dots nest). Every key and its default: "
        "`feedrank config show retrieval` (or ranker).",
    ),
]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the newest checkpoint in OUT.")]


@app.command("retrieval")
def retrieval_command(
    data: DataOpt, out: OutOpt, config: ConfigOpt = None, set_: SetOpt = None, resume: ResumeOpt = False
) -> None:
    """Train the two-tower on the train part; early-stop on valid recall@100 (next-click NDCG@10 of
    validation clicks on a click-only log).

    Example: feedrank train retrieval --data runs/demo/split --out runs/retrieval --set train.epochs=4
    """
    from feedrank.artifacts.config import RetrievalRunConfig
    from feedrank.data.split import open_split
    from feedrank.train.run import describe_tables, train_retrieval
    from feedrank.train.validation import retrieval_validator

    cfg = load_config(RetrievalRunConfig, config, set_)
    console.print(describe_tables(cfg.features, cfg.model.embed_dim))
    parts = open_split(data)
    cfg = replace(cfg, train=_select_on(parts, cfg.train))
    validator = retrieval_validator(parts)
    with stages():
        result = train_retrieval(data, out, cfg, make_evaluate=validator, resume=resume)
    _print_result("retrieval", out, result, cfg.train)


@app.command("ranker")
def ranker_command(
    data: DataOpt,
    out: OutOpt,
    retrieval: Annotated[Path, typer.Option("--retrieval", "-r", help="Retrieval run whose towers to use.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    calibrate: Annotated[
        bool, typer.Option(help="Fit the click probability's calibration on validation impressions.")
    ] = True,
) -> None:
    """Train the ranker over a retrieval run's frozen towers; early-stop on valid GAUC (next-click
    NDCG@10 on a click-only log); then calibrate its click probability on validation impressions.

    Example: feedrank train ranker --data runs/demo/split --retrieval runs/retrieval --out runs/ranker
    """
    from feedrank.artifacts.config import RankerRunConfig
    from feedrank.artifacts.store import load_retrieval
    from feedrank.data.split import open_split
    from feedrank.train.run import train_ranker
    from feedrank.train.validation import ranker_validator

    cfg = load_config(RankerRunConfig, config, set_)
    towers, _ = load_retrieval(retrieval)
    parts = open_split(data)
    cfg = replace(cfg, train=_select_on(parts, cfg.train))
    validator = ranker_validator(parts, towers, cfg.weights.as_dict())
    console.print("preparing the ranker's examples (the stages below; the training bar follows)")
    with stages(), item_bars():
        result = train_ranker(data, retrieval, out, cfg, make_evaluate=validator, resume=resume)
    _print_result("ranker", out, result, cfg.train)
    if calibrate and int(os.environ.get("RANK", "0")) == 0:
        _calibrate(out)


def _calibrate(out: Path) -> None:
    from feedrank.eval.calibrate import calibrate_ranker

    fit = calibrate_ranker(out)
    if not fit["fitted"]:
        console.print(f"click calibration not fitted: {fit['reason']}")
        return
    before, after = fit["before"], fit["after"]
    console.print(
        f"click calibration (Platt, held-out validation impressions): calibration ratio "
        f"{before['calibration_ratio']:.3f} -> {after['calibration_ratio']:.3f}, "
        f"NE {before['ne']:.4f} -> {after['ne']:.4f}; plot in {out / 'calibration.png'}"
    )


def _select_on(parts: dict[str, Dataset], train: TrainConfig) -> TrainConfig:
    """Early stopping on click-only data: the next-click validation metric (never NaN there)."""
    from feedrank.train.validation import selection_metric

    metric = selection_metric(parts, train.early_stop_metric)
    if metric != train.early_stop_metric:
        console.print(f"click-only data: early stopping on {metric} instead of {train.early_stop_metric}")
    return replace(train, early_stop_metric=metric)


def _print_result(kind: str, out: Path, result: TrainResult, train: TrainConfig) -> None:
    logging.getLogger(__name__).debug("%s", result)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 speaks for all
    if result.stopped_early:
        console.print(
            f"[yellow]stopped early[/] at step {result.steps:,}: valid {train.early_stop_metric} did not "
            f"improve for {train.patience} evaluations; the run keeps the best step's weights"
        )
    best = (
        f", best {train.early_stop_metric or 'metric'} {result.best_metric:.4f} at step {result.best_step}"
        if result.best_metric is not None
        else ""
    )
    console.print(
        f"[green]trained[/] {kind} → {out}: {result.steps:,} steps, {result.samples_per_s:,.0f} samples/s"
        f"{best}; peak RSS {result.peak_rss_mib:,.0f} MiB; {result.threads} thread(s); "
        f"curves in {out / 'curves.png'}"
    )
