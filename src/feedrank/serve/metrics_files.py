"""The metric files of uvicorn workers that have died (prometheus_client multiprocess mode).

Each worker writes its series to files named after its pid in PROMETHEUS_MULTIPROC_DIR, and
/metrics sums every file there. A worker that dies (a crash, a SIGKILL, uvicorn restarting it)
leaves its files behind, so a restarted pool piles up files that every scrape reads. Its counts
must still be counted (a counter that drops is a reset), so a dead worker's counter, histogram
and summed-gauge files are folded into one archive file per kind (`counter_archive.db`, ...,
which the collector sums like any worker's) and removed; its live-gauge files are dropped
(`mark_process_dead`, what prometheus_client prescribes for those). Every worker folds at startup
and on every /metrics render, under a file lock, so two workers never fold the same file.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger(__name__)
ARCHIVE = "archive"
FOLDED = ("counter", "histogram", "gauge_sum")  # kinds whose values add up across processes


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fold_dead_workers(path: Path, alive: Callable[[int], bool] = pid_alive) -> int:
    """Fold the files of dead processes in `path` into the archive files; returns how many."""
    folded = 0
    with (path / ".fold.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dead: set[int] = set()
        for file in sorted(path.glob("*.db")):
            kind, _, pid_text = file.stem.rpartition("_")
            if not pid_text.isdigit() or alive(int(pid_text)):
                continue
            dead.add(int(pid_text))
            if kind in FOLDED:
                _fold(file, path / f"{kind}_{ARCHIVE}.db")
                folded += 1
        for pid in dead:  # live gauges: their worker is gone, so are they
            mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
        for file in path.glob("*.db"):  # kinds not summed across processes (min, max, all): dropped
            kind, _, pid_text = file.stem.rpartition("_")
            if pid_text.isdigit() and int(pid_text) in dead:
                file.unlink()
    if folded:
        log.info("folded %d metric file(s) of dead workers in %s", folded, path)
    return folded


def _fold(file: Path, archive: Path) -> None:
    """Add every value of `file` to `archive`, then remove `file`. The file is renamed first, so
    a scrape in between misses its values for a moment rather than counting them twice."""
    moving = file.with_suffix(".folding")
    file.rename(moving)
    values = MmapedDict.read_all_values_from_file(str(moving))  # type: ignore[no-untyped-call]
    into = MmapedDict(str(archive))  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp, _ in values:
            total, _ = into.read_value(key)  # type: ignore[no-untyped-call]
            into.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        into.close()  # type: ignore[no-untyped-call]
    moving.unlink()
