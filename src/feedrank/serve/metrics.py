"""A small Prometheus text-format registry: counters and latency histograms, thread-safe.

Enough for /metrics (requests, latency by stage, cache hits/misses/fallbacks, degradations)
without another dependency.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _render(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [*labels, *extra]
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)  # bucket counts + sum
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1.0) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value

    def set_counter(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Mirror a counter kept elsewhere (e.g. the cache's own stats)."""
        with self._lock:
            self._counters[name][_labels(labels)] = value

    def observe(self, name: str, value_ms: float, labels: dict[str, str] | None = None) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._histograms[name]
            if key not in series:
                series[key] = [0.0] * (len(LATENCY_BUCKETS_MS) + 2)  # buckets, +Inf, sum
            counts = series[key]
            counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value_ms)] += 1
            counts[-1] += value_ms

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {self._help.get(name, name)}", f"# TYPE {name} counter"]
                lines += [f"{name}{_render(k)} {v:g}" for k, v in sorted(series.items())]
            for name, histogram in sorted(self._histograms.items()):
                lines += [f"# HELP {name} {self._help.get(name, name)}", f"# TYPE {name} histogram"]
                for key, counts in sorted(histogram.items()):
                    cumulative = 0.0
                    for bound, count in zip((*LATENCY_BUCKETS_MS, float("inf")), counts[:-1], strict=True):
                        cumulative += count
                        le = "+Inf" if bound == float("inf") else f"{bound:g}"
                        lines.append(f"{name}_bucket{_render(key, (('le', le),))} {cumulative:g}")
                    lines.append(f"{name}_sum{_render(key)} {counts[-1]:g}")
                    lines.append(f"{name}_count{_render(key)} {cumulative:g}")
        return "\n".join(lines) + "\n"
