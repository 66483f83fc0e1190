"""Per-item progress: library loops report to whoever installed a reporter; the CLI draws bars."""

from __future__ import annotations

from feedrank.cli.console import _ItemBars
from feedrank.progress import advance, reporting, silenced


def test_reports_reach_the_installed_reporter_only() -> None:
    seen: list[tuple[str, int, int]] = []
    advance("nobody listens", 1, 2)  # no reporter: nothing happens
    with reporting(lambda *args: seen.append(args)):
        advance("requests", 1, 2)
        with silenced():
            advance("hidden", 1, 1)
        advance("requests", 2, 2)
    advance("after", 1, 1)
    assert seen == [("requests", 1, 2), ("requests", 2, 2)]


def test_the_bars_stop_when_every_task_is_done_and_start_again() -> None:
    bars = _ItemBars()
    bars("first", 0, 3)
    bars("second", 1, 2)
    assert bars.bar.live.is_started and set(bars.tasks) == {"first", "second"}
    bars("first", 3, 3)
    assert bars.bar.live.is_started  # "second" still runs
    bars("second", 2, 2)
    assert not bars.bar.live.is_started and bars.tasks == {} and not bars.bar.tasks
    bars("third", 1, 4)  # a later loop gets a display of its own
    assert bars.bar.live.is_started and list(bars.tasks) == ["third"]
    bars.close()
    assert not bars.bar.live.is_started
