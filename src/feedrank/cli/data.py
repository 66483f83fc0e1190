"""`feedrank data import|split|describe`."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feedrank.cli.console import console, working

if TYPE_CHECKING:
    from feedrank.data.dataset import Dataset

app = typer.Typer(
    help="Import logs into canonical tables, split them by time, describe them.", no_args_is_help=True
)


class SourceFormat(StrEnum):
    mind = "mind"
    ebnerd = "ebnerd"
    globo = "globo"
    parquet = "parquet"
    csv = "csv"


@app.command("import")
def import_command(
    source: Annotated[
        Path, typer.Argument(help="Input directory (or, for parquet/csv, a single impressions file).")
    ],
    fmt: Annotated[SourceFormat, typer.Option("--format", "-f", help="Log format of SOURCE.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the canonical dataset.")],
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad row instead of quarantining it.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    max_line_bytes: Annotated[
        int, typer.Option(help="Longest text line accepted; longer lines are quarantined.")
    ] = 1 << 20,
) -> None:
    """Validate every row of a log and write canonical tables; bad rows go to OUT/quarantine.jsonl.

    Example: feedrank data import ../shared/data/mind-small-sample --format mind --out runs/mind
    """
    from feedrank.data.sources.base import ImportOptions, import_source
    from feedrank.data.sources.registry import adapter_for

    options = ImportOptions(strict=strict, overwrite=overwrite, max_line_bytes=max_line_bytes)
    with working(f"importing {source} ({fmt.value})"):
        ds = import_source(adapter_for(fmt.value), source, out, options)
    _print_import_summary(ds)


def _print_import_summary(ds: Dataset) -> None:
    m = ds.manifest
    tables = ", ".join(f"{name} {info['rows']:,}" for name, info in m["tables"].items())
    console.print(f"[green]imported[/] {ds.path}: {tables}")
    for rec in m.get("reconciliation", []):
        console.print(
            f"  {rec['file']}: {rec['read']:,} {rec['unit']}s read = {rec['kept']:,} kept"
            f" + {rec['quarantined']:,} quarantined"
        )
    q = m.get("quarantine", {})
    if q.get("count"):
        console.print(f"  [yellow]{q['count']:,} rows quarantined[/] → {ds.path / 'quarantine.jsonl'}")
        for reason, count in q["by_reason"].items():
            console.print(f"    {count:,} × {reason}")
    for note in m.get("notes", []):
        console.print(f"  note: {note}")


@app.command("split")
def split_command(
    data: Annotated[Path, typer.Argument(help="Canonical dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for train/, valid/, test/.")],
    valid_frac: Annotated[float, typer.Option(help="Share of requests in valid (by time).")] = 0.1,
    test_frac: Annotated[float, typer.Option(help="Share of requests in test (the latest).")] = 0.1,
    valid_start: Annotated[
        datetime | None, typer.Option(help="Explicit valid start (UTC); wins over fractions.")
    ] = None,
    test_start: Annotated[
        datetime | None, typer.Option(help="Explicit test start (UTC); wins over fractions.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Split by time into train / valid / test; a request never straddles two parts.

    Example: feedrank data split runs/mind --out runs/mind-split --valid-frac 0.1 --test-frac 0.2
    """
    from feedrank.data.dataset import Dataset
    from feedrank.data.split import SPLIT_MANIFEST, SplitSpec, split_dataset

    spec = SplitSpec(
        valid_frac=valid_frac, test_frac=test_frac, valid_start=valid_start, test_start=test_start
    )
    with working(f"splitting {data}"):
        out_dir = split_dataset(Dataset.open(data), out, spec, overwrite=overwrite)
    summary = json.loads((out_dir / SPLIT_MANIFEST).read_text())
    console.print(
        f"[green]split[/] {out_dir}: valid from {summary['valid_start']}, test from {summary['test_start']}; "
        + ", ".join(f"{k} {v:,} impressions" for k, v in summary["impressions"].items())
    )


@app.command("describe")
def describe_command(
    data: Annotated[Path, typer.Argument(help="Canonical dataset or split directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Rows, requests, users, items, CTR, dwell quantiles, share/hide rates, time span, quarantine.

    Example: feedrank data describe runs/mind --json
    """
    from feedrank.cli.render import describe_table, side_by_side
    from feedrank.data.dataset import Dataset
    from feedrank.data.describe import describe
    from feedrank.data.split import SPLIT_MANIFEST, open_split

    if (data / SPLIT_MANIFEST).is_file():
        stats = {part: describe(ds) for part, ds in open_split(data).items()}
        if as_json:
            typer.echo(json.dumps(stats, indent=2))
        else:
            console.print(side_by_side(stats, title=str(data)))
        return
    one = describe(Dataset.open(data))
    if as_json:
        typer.echo(json.dumps(one, indent=2))
    else:
        console.print(describe_table(one, title=str(data)))
