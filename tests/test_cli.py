"""The command line: the main job runs, bad input ends in one clear line, never a traceback.

Commands run in this process (`run_cli`): no subprocess and no time limit, so a loaded machine
makes them slower, never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from feedrank.cli import app
from tests.conftest import run_cli, shared_sample


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


Feedrank = Callable[..., Result]


@pytest.fixture
def feedrank(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Feedrank:
    """Run `feedrank ARGS` with `tmp_path` as the working directory (relative paths land there)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        return Result(*run_cli(capsys, *args))

    return run


# The tiny world, made smaller still: the test checks that every stage runs and reports, not what
# the models learn (docs/evaluation.md has that), so one short epoch of each model is enough.
SMALL_DEMO = [
    "--preset",
    "tiny",
    "--set",
    "sim.num_impressions=8000",
    "--set",
    "retrieval.train.epochs=1",
    "--set",
    "ranker.train.epochs=1",
    "--set",
    "ranker.loss.catalog_negatives=5",
]


@pytest.mark.slow
def test_demo_runs_the_pipeline_on_the_simulated_world(feedrank: Feedrank, tmp_path: Path) -> None:
    result = feedrank("demo", "--out", str(tmp_path / "demo"), *SMALL_DEMO)
    assert result.returncode == 0, result.stderr
    assert "impressions" in result.stdout and "done in" in result.stdout
    assert "Offline evaluation on the test part" in result.stdout
    assert "Served feed" in result.stdout and "through the serving path" in result.stdout
    assert "served feeds (requests)" in result.stdout  # the long loops draw progress bars
    for line in ("two-tower", "ranker", "oracle", "recent"):
        assert line in result.stdout
    for part in ("train", "valid", "test"):
        assert (tmp_path / "demo" / "split" / part / "manifest.json").is_file()
    assert (tmp_path / "demo" / "ranker" / "eval" / "report.md").is_file()
    assert (tmp_path / "demo" / "bundle" / "manifest.json").is_file()
    assert "Feeds from the HTTP service" in result.stdout and "brand" not in result.stderr


@pytest.mark.slow
def test_import_split_describe(feedrank: Feedrank, tmp_path: Path) -> None:
    mind = shared_sample("mind-small-sample")
    out = tmp_path / "mind"
    result = feedrank("data", "import", str(mind), "--format", "mind", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "189,359 impression tokens read = 189,359 kept + 0 quarantined" in result.stdout
    result = feedrank("data", "split", str(out), "--out", str(tmp_path / "split"))
    assert result.returncode == 0, result.stderr
    result = feedrank("data", "describe", str(out), "--json")
    stats = json.loads(result.stdout)
    assert (stats["impressions"], stats["requests"], stats["clicks"]) == (189_359, 5_000, 7_542)
    result = feedrank("data", "describe", str(tmp_path / "split"), "--json")
    parts = json.loads(result.stdout)
    assert sum(p["impressions"] for p in parts.values()) == 189_359


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "import", "nowhere", "--format", "csv", "--out", "o"], "error: input not found: nowhere"),
        (["data", "describe", "nowhere"], "error: dataset directory not found: nowhere"),
        (["simulate", "--out", "s", "--set", "nope=1"], "unknown key 'nope'"),
        (["evaluate", "r", "--protocol", "next-click", "--quota", "bogus=1"], "--quota 'bogus=1'"),
    ],
)
def test_errors_are_one_clear_line(feedrank: Feedrank, args: list[str], message: str) -> None:
    result = feedrank(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_strict_import_stops_at_the_first_bad_row(feedrank: Feedrank, tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    src.write_text("request_id,user_id,item_id,ts,clicked\nr1,u1,a,2024-01-01T00:00:00,1\nr1,u1,b,soon,0\n")
    result = feedrank("data", "import", str(src), "--format", "csv", "--out", str(tmp_path / "o"), "--strict")
    assert result.returncode == 2
    assert "impressions.csv: row 3: field 'ts': value 'soon': cannot be read as a timestamp" in result.stderr
    assert not (tmp_path / "o").exists()


def leaf_commands(command: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    children = getattr(command, "commands", None)
    if not children:
        yield prefix
        return
    for name, sub in sorted(children.items()):
        yield from leaf_commands(sub, (*prefix, name))


def test_every_command_has_an_example_in_its_help(feedrank: Feedrank) -> None:
    commands = list(leaf_commands(typer.main.get_command(app)))
    assert ("train", "ranker") in commands and ("config", "show") in commands
    for command in commands:
        result = feedrank(*command, "--help")
        assert result.returncode == 0
        assert "Example: feedrank" in result.stdout, command
