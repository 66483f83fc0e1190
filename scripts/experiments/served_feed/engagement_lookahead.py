"""The served-feed evaluation with the clickbait guardrail's click rates and dwell from all the
bundle's events (the look-ahead before 2026-12-05) and from the events before each request only
(now the default), on the same requests; prints each one's served-feed rows as JSON, after what
counting the past events costs (`--cost-only`: that alone).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/experiments/served_feed/engagement_lookahead.py \
        runs/demo/bundle [REQUESTS] [--cost-only]
"""

from __future__ import annotations

import json
import sys
import time

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.served import ServedOptions, evaluate_served
from feedrank.eval.served_engagement import EngagementAsOf
from feedrank.eval.served_requests import sample_requests


def cost(bundle_path: str, requests: int) -> None:
    """Seconds to index the bundle's events, and for one `at` call per sampled request in order."""
    bundle = load_bundle(bundle_path)
    started = time.perf_counter()
    stats = EngagementAsOf(bundle)
    build = time.perf_counter() - started
    test = open_split(bundle.manifest["data"]["split"])["test"]
    sample = sample_requests(test.read("impressions"), test.read("users"), requests, 0)
    started = time.perf_counter()
    for now in sample.ts_us.tolist():
        stats.at(int(now), len(bundle.space.catalog))
    calls = time.perf_counter() - started
    print(f"{stats.ts_us.size:,} events, {stats.num_items:,} items: index {build:.2f} s, "
          f"{len(sample):,} calls {calls:.2f} s", flush=True)  # fmt: skip


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    bundle = args[0]
    requests = int(args[1]) if len(args) > 1 else 1000
    cost(bundle, requests)
    if "--cost-only" in sys.argv:
        return
    for past in (False, True):
        started = time.perf_counter()
        options = ServedOptions(requests=requests, panel_users=200, past_engagement=past)
        report = evaluate_served(bundle, options=options)
        served, panel = report.systems["served (ranker)"], report.panel["served (ranker)"]
        row = {"past_engagement": past, "wall_s": time.perf_counter() - started, **served}
        row |= {f"panel_{k}": v for k, v in panel.items()}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
