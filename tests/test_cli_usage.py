"""The command line as a new user meets it: usage errors in one line, fast help, config keys, ports.

Everything here runs `main(argv)` in this process, except the help checks, which need a fresh
interpreter to see what importing the CLI loads (no wall clock: they look at sys.modules).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from feedrank.cli.configs import KINDS, config_items, write_toml
from feedrank.config import load_config
from feedrank.errors import ConfigError
from tests.conftest import run_cli

run = run_cli


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["data", "import", "x", "--format", "tsv", "--out", "o"], ["'--format'", "'tsv'"]),  # wrong value
        (["data", "import", "x", "--out", "o"], ["Missing option '--format'"]),  # missing option
        (["data", "describe", "x", "--bogus"], ["No such option: --bogus"]),  # unknown option
        (["serve", "B", "--port", "abc"], ["'--port'"]),  # a value that does not parse
        (["trian"], ["No such command 'trian'", "'train'"]),  # mistyped command, with the fix
        (["data", "splt"], ["No such command 'splt'"]),
        (["evaluate"], ["Missing argument"]),  # missing argument
        (["train", "ranker", "--data", "d", "--out", "o"], ["Missing option '--retrieval'"]),
        (["config", "show", "nope"], ["config kind 'nope'"]),  # a library error, same shape
    ],
)
def test_a_usage_error_is_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], args: list[str], names: list[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0]
    assert "fmt" not in lines[0] and "Traceback" not in err and out == ""


def test_a_bare_group_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "data")
    assert code == 2 and "import" in out + err and "split" in out + err and "error" not in out + err


HEAVY = ("torch", "matplotlib", "fastapi", "uvicorn", "polars", "faiss", "feedrank.train", "feedrank.eval")

HELP_SCRIPT = """
import contextlib, io, json, sys
from feedrank.cli import app, main
import typer.main

def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, [*prefix, name])

heavy = tuple(sys.argv[1].split(","))
first = {}
for path in paths(typer.main.get_command(app), []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*path, "--help"])
    assert "Usage" in out.getvalue(), path
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy))
    first[" ".join(path) or "(root)"] = loaded
print(json.dumps(first))
"""


def test_help_of_every_command_loads_no_heavy_module() -> None:
    """`feedrank --help` and each subcommand's help import neither torch nor matplotlib nor FastAPI
    (nor polars, faiss or the training and evaluation code): that is what makes help answer at once."""
    done = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, ",".join(HEAVY)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert {"(root)", "train ranker", "serve", "abtest simulate", "config show"} <= set(loaded)
    assert {command: mods for command, mods in loaded.items() if mods} == {}


def test_the_help_check_sees_a_heavy_import() -> None:
    script = "import sys, feedrank.cli, feedrank.cli.serving; import torch; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_config_show_prints_a_config_file_that_loads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    code, out, _ = run(capsys, "config", "show", kind)
    assert code == 0 and out.startswith(f"# {kind}: every key and its default")
    defaults = KINDS[kind][1]()
    path = tmp_path / f"{kind}.toml"
    path.write_text(out, encoding="utf-8")
    assert tomllib.loads(out)  # valid TOML
    assert config_items(load_config(type(defaults), path)) == config_items(defaults)  # every key and value


def test_config_show_names_nested_keys_as_set_reaches_them(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "config", "show", "ranker")
    tables = tomllib.loads(out)
    assert tables["train"]["epochs"] == 3 and tables["loss"]["catalog_negatives"] == -1  # auto
    assert "[train]" in out and "[model]" in out


def test_the_index_setting_that_tune_writes_is_what_bundle_reads(tmp_path: Path) -> None:
    from feedrank.index import IndexSpec

    chosen = IndexSpec(kind="ivf", nlist=137, nprobe=8)
    path = write_toml(chosen, tmp_path / "index.toml", "feedrank index tune B\nuse: feedrank bundle")
    assert path.read_text(encoding="utf-8").startswith("# feedrank index tune B\n# use: feedrank bundle\n")
    assert load_config(IndexSpec, path) == chosen


def test_bundle_refuses_two_index_settings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["bundle", "--ranker", "r", "--out", "o", "--index", "ivf", "--index-config", "i.toml"]
    code, _, err = run(capsys, *args)
    assert code == 2 and "give one of them" in err


def test_a_busy_port_is_one_clear_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "serve", str(tmp_path / "no-bundle"), "--port", str(port))
    assert code == 2 and out == ""
    assert (
        err.strip()
        == f"error: port {port} on 127.0.0.1 is in use: stop what listens there or pass another --port"
    )


def test_a_free_port_passes_the_check() -> None:
    from feedrank.cli.serving import check_port_free

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port)  # nothing listens: no error
    with pytest.raises(ConfigError, match="expected a TCP port"):
        check_port_free("127.0.0.1", 70000)
