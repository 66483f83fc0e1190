"""Shared rich consoles, the progress bar style of every long-running command, and stage lines.

Library code reports its stages through `logging` (INFO on the "feedrank" logger); a command that
runs for long shows them as they come (`stages`), under a spinner with the elapsed time when
nothing else draws on the terminal (`working`). Long library loops also report per item
(`feedrank.progress`); `item_bars` draws a bar for each while it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class _StageLines(logging.Handler):
    """Prints each INFO record of the feedrank logger as one dim line with the time since start."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.started = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        elapsed = time.perf_counter() - self.started
        console.print(
            f"[dim]{elapsed:6.1f} s  {escape(record.getMessage())}[/]", highlight=False, soft_wrap=True
        )


@contextmanager
def stages() -> Iterator[None]:
    """While the body runs, print the stages the library logs (INFO) as they start.

    With --verbose the root handler already prints them: nothing is added then.
    """
    logger = logging.getLogger("feedrank")
    if logging.getLogger().isEnabledFor(logging.INFO):
        yield
        return
    handler = _StageLines()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root handler prints warnings only: it must not print these
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextmanager
def working(title: str) -> Iterator[None]:
    """A spinner with `title` and the elapsed time, and the stages printed above it.

    Not around code that draws its own progress bar (training): rich shows one live display at once.
    """
    spinner = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with stages(), spinner:
        spinner.add_task(title, total=None)
        yield


class _ItemBars:
    """A `feedrank.progress` reporter: one bar per task, drawn while any task runs.

    The display starts with the first report and stops when every task it shows is complete, so
    that whatever draws next (the training loop's bar) has the terminal to itself; the completed
    bars stay printed. Updates are drawn at most every 0.1 s per task.
    """

    def __init__(self) -> None:
        self.bar = progress_bar()
        self.tasks: dict[str, TaskID] = {}
        self.drawn: dict[str, float] = {}
        self.finished: set[str] = set()

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            if not self.tasks:
                self.bar.start()
            self.tasks[task] = self.bar.add_task(task, total=total)
            self.drawn[task] = 0.0
        now = time.perf_counter()
        if done < total and now - self.drawn[task] < 0.1:
            return
        self.drawn[task] = now
        self.bar.update(self.tasks[task], completed=done, total=total)
        if done >= total:
            self.finished.add(task)
        if self.finished >= self.tasks.keys():
            self.close()

    def close(self) -> None:
        if self.tasks:
            self.bar.stop()
            for task_id in self.tasks.values():
                self.bar.remove_task(task_id)
            self.tasks.clear()
            self.finished.clear()


@contextmanager
def item_bars() -> Iterator[None]:
    """While the body runs, a bar for every long library loop (`feedrank.progress`) as it runs.

    Not around code that draws its own progress display the whole time (rich shows one live
    display at once); the training loop silences these reports while its bar is up.
    """
    from feedrank.progress import reporting

    bars = _ItemBars()
    try:
        with reporting(bars):
            yield
    finally:
        bars.close()
