"""The command line: the main job runs, bad input ends in one clear line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_sample


def feedrank(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from feedrank.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_demo_runs_the_pipeline_on_the_simulated_world(tmp_path: Path) -> None:
    result = feedrank("demo", "--out", str(tmp_path / "demo"), "--preset", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "impressions" in result.stdout and "done in" in result.stdout
    assert "Offline evaluation on the test part" in result.stdout
    for line in ("two-tower", "ranker", "oracle", "recent"):
        assert line in result.stdout
    for part in ("train", "valid", "test"):
        assert (tmp_path / "demo" / "split" / part / "manifest.json").is_file()
    assert (tmp_path / "demo" / "ranker" / "eval" / "report.md").is_file()
    assert (tmp_path / "demo" / "bundle" / "manifest.json").is_file()
    assert "Feeds from the HTTP service" in result.stdout and "brand" not in result.stderr


def test_import_split_describe(tmp_path: Path) -> None:
    mind = shared_sample("mind-small-sample")
    out = tmp_path / "mind"
    result = feedrank("data", "import", str(mind), "--format", "mind", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "189,359 impression tokens read = 189,359 kept + 0 quarantined" in result.stdout
    result = feedrank("data", "split", str(out), "--out", str(tmp_path / "split"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = feedrank("data", "describe", str(out), "--json", cwd=tmp_path)
    stats = json.loads(result.stdout)
    assert (stats["impressions"], stats["requests"], stats["clicks"]) == (189_359, 5_000, 7_542)
    result = feedrank("data", "describe", str(tmp_path / "split"), "--json", cwd=tmp_path)
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
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = feedrank(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_strict_import_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    src = tmp_path / "impressions.csv"
    src.write_text("request_id,user_id,item_id,ts,clicked\nr1,u1,a,2024-01-01T00:00:00,1\nr1,u1,b,soon,0\n")
    args = ["data", "import", str(src), "--format", "csv", "--out", str(tmp_path / "o"), "--strict"]
    result = feedrank(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "impressions.csv: row 3: field 'ts': value 'soon': cannot be read as a timestamp" in result.stderr
    assert not (tmp_path / "o").exists()


def test_every_command_has_an_example_in_its_help(tmp_path: Path) -> None:
    for command in (["simulate"], ["demo"], ["data", "import"], ["data", "split"], ["data", "describe"]):
        result = feedrank(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "Example: feedrank" in result.stdout, command
