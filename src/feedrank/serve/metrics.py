"""The service's counters and latency histograms, on prometheus_client, rendered as Prometheus text.

One process: a private `CollectorRegistry` per `Registry`. Several uvicorn workers (`feedrank
serve --workers N`): the CLI sets PROMETHEUS_MULTIPROC_DIR before the workers start, each worker's
values go to files there (prometheus_client's multiprocess mode), and /metrics on any worker sums
every worker's series. Values kept elsewhere and mirrored here (`set_counter`, e.g. the cache's
own counters) are per-process gauges summed over the workers. The files of workers that died are
folded into archive files on every render (serve/metrics_files.py), so restarts do not pile them up.

The text keeps one layout in both modes: labels sorted by name (`le` last), values in %g.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from feedrank.serve.metrics_files import fold_dead_workers

LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No *_created series: they would double the number of series for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def fold_dead_worker_files() -> int:
    """Multiprocess mode: fold the metric files of dead workers (serve/metrics_files.py)."""
    return fold_dead_workers(Path(os.environ[MULTIPROC_ENV])) if multiprocess() else 0


def _render(labels: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((k, v) for k, v in labels if k != "le")
    pairs += [(k, v) for k, v in labels if k == "le"]
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


def _order(sample: Sample) -> tuple[str, list[tuple[str, str]], float]:
    """Series by name and labels; a histogram's buckets by their bound."""
    others = sorted((k, v) for k, v in sample.labels.items() if k != "le")
    return sample.name, others, float(sample.labels.get("le", "0").replace("+Inf", "inf"))


def _le(value: str) -> str:
    return value if value == "+Inf" else f"{float(value):g}"


class Registry:
    """Counters, mirrored counters and millisecond histograms by name; thread-safe.

    A metric's label names are those of its first use (every use of a name passes the same keys).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registry = CollectorRegistry()
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1.0) -> None:
        metric = self._metric(Counter, name, labels)
        (metric.labels(**labels) if labels else metric).inc(value)  # type: ignore[union-attr]

    def set_counter(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Mirror a counter kept elsewhere (e.g. the cache's own stats); summed over workers."""
        metric = self._metric(Gauge, name, labels)
        (metric.labels(**labels) if labels else metric).set(value)  # type: ignore[union-attr]

    def observe(self, name: str, value_ms: float, labels: dict[str, str] | None = None) -> None:
        metric = self._metric(Histogram, name, labels)
        (metric.labels(**labels) if labels else metric).observe(value_ms)  # type: ignore[union-attr]

    def _metric(
        self, kind: type[Counter | Gauge | Histogram], name: str, labels: dict[str, str] | None
    ) -> Counter | Gauge | Histogram:
        metric = self._metrics.get(name)
        if metric is not None:
            return metric
        with self._lock:
            if name not in self._metrics:
                names = sorted(labels or {})
                help_text = self._help.get(name, name)
                if kind is Histogram:
                    made: Counter | Gauge | Histogram = Histogram(
                        name, help_text, names, registry=self._registry, buckets=LATENCY_BUCKETS_MS
                    )
                elif kind is Gauge:
                    made = Gauge(name, help_text, names, registry=self._registry, multiprocess_mode="sum")
                else:
                    made = Counter(name, help_text, names, registry=self._registry)
                self._metrics[name] = made
            return self._metrics[name]

    def render(self) -> str:
        if multiprocess():
            fold_dead_worker_files()
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            families: list[Metric] = list(registry.collect())
        else:
            families = list(self._registry.collect())
        lines: list[str] = []
        for family in sorted(families, key=lambda f: f.name):
            kind = "counter" if family.type == "gauge" else family.type  # mirrored counters
            name = family.name + ("_total" if family.type == "counter" else "")
            if family.type == "gauge" and family.name.endswith("_total"):
                name = family.name
            lines += [f"# HELP {name} {family.documentation}", f"# TYPE {name} {kind}"]
            for sample in sorted(family.samples, key=_order):
                labels = [(k, _le(v) if k == "le" else v) for k, v in sample.labels.items()]
                lines.append(f"{sample.name}{_render(labels)} {sample.value:g}")
        return "\n".join(lines) + "\n"
