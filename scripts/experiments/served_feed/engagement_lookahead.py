"""The served-feed evaluation with the clickbait guardrail's click rates and dwell from all the
bundle's events (the look-ahead before 2026-12-05) and from the events before each request only
(now the default), on the same requests; prints each one's served-feed rows as JSON.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/experiments/served_feed/engagement_lookahead.py \
        runs/demo/bundle [REQUESTS]
"""

from __future__ import annotations

import json
import sys
import time

from feedrank.eval.served import ServedOptions, evaluate_served


def main() -> None:
    bundle = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
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
