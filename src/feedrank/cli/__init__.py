"""The `feedrank` command line: wiring only; every command calls one library function."""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

from feedrank.cli import data, demo, evaluate, experiment, serving, simulate, train
from feedrank.cli.console import console, err_console
from feedrank.errors import FeedrankError

app = typer.Typer(
    name="feedrank",
    help="A news-feed ranking system: simulate or import logs, train, evaluate, bundle, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.command(name="evaluate")(evaluate.evaluate_command)
app.command(name="compare")(experiment.compare_command)
app.add_typer(experiment.abtest_app, name="abtest")
app.command(name="bundle")(serving.bundle_command)
app.command(name="sign-bundle")(serving.sign_bundle_command)
app.command(name="serve")(serving.serve_command)
app.add_typer(serving.index_app, name="index")
app.command(name="simulate")(simulate.simulate_command)
app.command(name="demo")(demo.demo_command)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point: bad input and bad configuration end in one clear line, never a traceback."""
    try:
        app(standalone_mode=False)
    except FeedrankError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    console.file.flush()
