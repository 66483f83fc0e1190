"""Dead workers' metric files (prometheus_client multiprocess mode) are folded, and nothing is lost.

Workers are real processes writing into one PROMETHEUS_MULTIPROC_DIR; a worker "dies" by exiting.
Each waits on a pipe, not on a clock, so the test does not depend on how fast the box is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from feedrank.serve.metrics import MULTIPROC_ENV, Registry

WORKER = """
import sys
from feedrank.serve.metrics import Registry
count = float(sys.argv[1])
metrics = Registry()
metrics.inc("feedrank_requests_total", {"endpoint": "/v1/feed", "status": "200"}, value=count)
metrics.observe("feedrank_stage_latency_ms", 3.0, {"stage": "total"})
metrics.set_counter("feedrank_cache_hits_total", count)
print("ready", flush=True)
sys.stdin.read()  # until the test closes the pipe: then this worker exits ("dies")
"""


def start_worker(count: int, directory: Path) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", MULTIPROC_ENV: str(directory), "PYTHONPATH": ":".join(sys.path)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    return worker


def stop(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    worker.stdin.close()
    assert worker.wait() == 0


def value(text: str, series: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


def test_dead_workers_files_are_folded_and_their_counts_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    first, second = start_worker(3, tmp_path), start_worker(4, tmp_path)
    stop(first)
    stop(second)
    alive = start_worker(5, tmp_path)
    per_pid = {p.name for p in tmp_path.glob("*.db")}
    assert len(per_pid) == 9  # 3 workers x (counter, histogram, summed gauge)

    rendered = Registry().render()  # any worker's /metrics
    left = {p.name for p in tmp_path.glob("*.db")}
    assert left == {f"{kind}_{alive.pid}.db" for kind in ("counter", "histogram", "gauge_sum")} | {
        "counter_archive.db",
        "histogram_archive.db",
        "gauge_sum_archive.db",
    }
    for text in (rendered, Registry().render()):  # a second render counts nothing twice
        assert value(text, 'feedrank_requests_total{endpoint="/v1/feed",status="200"}') == 12
        assert value(text, 'feedrank_stage_latency_ms_count{stage="total"}') == 3
        assert value(text, 'feedrank_stage_latency_ms_bucket{stage="total",le="5"}') == 3
        assert value(text, "feedrank_cache_hits_total") == 12

    stop(alive)
    restarted = start_worker(1, tmp_path)  # uvicorn's replacement worker
    text = Registry().render()
    assert value(text, 'feedrank_requests_total{endpoint="/v1/feed",status="200"}') == 13
    assert value(text, 'feedrank_stage_latency_ms_count{stage="total"}') == 4
    assert {p.name for p in tmp_path.glob("*_[0-9]*.db")} == {
        f"{kind}_{restarted.pid}.db" for kind in ("counter", "histogram", "gauge_sum")
    }
    stop(restarted)
