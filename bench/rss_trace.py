"""Where a feedrank command's memory goes: RSS beside its log lines and named phases.

    PYTHONPATH=src python bench/rss_trace.py -v train retrieval --data SPLIT --out RUN

runs `python -m feedrank ARGS` in this process and writes to stderr, with seconds since start and
RSS in MiB: every log line (with the peak since the previous one), a tick every `TICK` seconds
(default 10), and the entry and exit of each function named in `WRAP` ("module:function" or
"module:Class.attribute", space-separated; a cached property is timed where it is built) with
its peak. RSS is sampled every 50 ms from /proc/self/status; above `CAP_MIB` (default 5800) the
process exits at once with 137, as bench_scale's cap does (the machine is shared). Run it under
`/usr/bin/time -v` for the kernel's own peak.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import runpy
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = time.time()
_peak = [0.0, 0.0]  # since the last report, over the whole run


def rss_mib() -> float:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def _say(text: str) -> None:
    sys.stderr.write(f"[{time.time() - START:7.1f}s rss {rss_mib():7.0f}] {text}\n")


def _sample(cap: float) -> None:
    while True:
        now = rss_mib()
        _peak[0], _peak[1] = max(_peak[0], now), max(_peak[1], now)
        if now > cap:
            _say(f"KILLED above the cap of {cap:.0f} MiB")
            sys.stderr.flush()
            os._exit(137)
        time.sleep(0.05)


def _tick(every: float) -> None:
    while True:
        time.sleep(every)
        _say("tick")


class _Lines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _say(f"peak-since-last {_peak[0]:7.0f} | {record.getMessage()[:200]}")
        _peak[0] = 0.0


def _timed(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _peak[0], began = 0.0, time.time()
        _say(f"> {name}")
        out = inner(*args, **kwargs)
        _say(f"< {name} {time.time() - began:.1f}s, peak {_peak[0]:.0f}")
        return out

    return wrapper


def wrap(spec: str) -> None:
    """Time `module:function` or `module:Class.attribute` (a method or a cached property)."""
    module_name, qualname = spec.split(":")
    module = importlib.import_module(module_name)
    if "." in qualname:
        owner, attr = getattr(module, qualname.split(".")[0]), qualname.split(".")[1]
        found = owner.__dict__[attr]
        if isinstance(found, functools.cached_property):
            prop = functools.cached_property(_timed(qualname, found.func))
            prop.__set_name__(owner, attr)
            setattr(owner, attr, prop)
        else:
            setattr(owner, attr, _timed(qualname, found))
        return
    found = getattr(module, qualname)
    timed = _timed(qualname, found)
    for loaded in list(sys.modules.values()):  # the name where it was imported, too
        if loaded is not None and getattr(loaded, qualname, None) is found:
            setattr(loaded, qualname, timed)


def main() -> None:
    threading.Thread(target=_sample, args=(float(os.environ.get("CAP_MIB", "5800")),), daemon=True).start()
    threading.Thread(target=_tick, args=(float(os.environ.get("TICK", "10")),), daemon=True).start()
    logging.getLogger().addHandler(_Lines())
    logging.getLogger().setLevel(logging.INFO)
    for name in (
        "feedrank.cli.train",
        "feedrank.train.run",
        "feedrank.train.validation",
        "feedrank.eval.catalog",
    ):
        importlib.import_module(name)  # so that `wrap` finds the names they imported
    for spec in os.environ.get("WRAP", "").split():
        wrap(spec)
    sys.argv = ["feedrank", *sys.argv[1:]]
    try:
        runpy.run_module("feedrank", run_name="__main__")
    finally:
        _say(f"END, peak {_peak[1]:.0f} MiB")


if __name__ == "__main__":
    main()
