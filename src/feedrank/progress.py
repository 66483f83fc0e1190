"""Per-item progress of long library loops, for whoever shows it (the CLI draws rich bars).

A loop over many items (requests replayed, queries ranked, systems scored) calls
`advance(task, done, total)` as items complete; it costs a context-variable read unless a caller
installed a reporter with `reporting(...)`. The training loop silences reports while it draws its
own bar (`silenced()`), so validation inside it does not start a second display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Reporter = Callable[[str, int, int], None]  # (task, items done, items in all)

_reporter: ContextVar[Reporter | None] = ContextVar("feedrank_progress", default=None)


def advance(task: str, done: int, total: int) -> None:
    """`done` of `total` items of `task` are complete (done == total: the task is over)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(task, done, total)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send the `advance` calls made inside the body (in this thread) to `reporter` (None: nowhere)."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


@contextmanager
def silenced() -> Iterator[None]:
    """No reports inside the body."""
    with reporting(None):
        yield
