"""The `feedrank` command line: wiring only; every command calls one library function.

Command modules import the library inside their command bodies, so that `feedrank --help` and
every subcommand's help load neither torch nor matplotlib nor FastAPI (tests/test_cli_usage.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape

from feedrank.cli import abtest, compare, configs, data, demo, evaluate, ope, serving, simulate, train
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
app.command(name="compare")(compare.compare_command)
abtest.abtest_app.command("ope")(ope.ope_command)
app.add_typer(abtest.abtest_app, name="abtest")
app.command(name="bundle")(serving.bundle_command)
app.command(name="sign-bundle")(serving.sign_bundle_command)
app.command(name="serve")(serving.serve_command)
app.add_typer(serving.index_app, name="index")
app.command(name="simulate")(simulate.simulate_command)
app.command(name="demo")(demo.demo_command)
app.add_typer(configs.app, name="config")

USAGE_EXIT = 2


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: bad usage, bad input and bad configuration end in one clear line, never a traceback.

    Usage errors (an unknown command or option, a missing one, a value that does not parse) exit 2
    like bad input; typer 0.29 raises them as its own bundled click exceptions, all TyperException.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="feedrank", standalone_mode=False)
    except FeedrankError as exc:
        _fail(str(exc), USAGE_EXIT)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help, as click does
            if exc.format_message().strip():  # (typer's rich help has printed itself already)
                typer.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        _fail(exc.format_message(), exc.exit_code)
    console.file.flush()


def _fail(message: str, code: int) -> None:
    one_line = " ".join(message.split())
    err_console.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    sys.exit(code)
