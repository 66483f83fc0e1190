"""Served share of the oracle's utility@20 for bundles and feed-score weights on the same requests.

    python screen.py PART REQUESTS OUT.json BASE_BUNDLE [NAME=BUNDLE[@WEIGHTS_JSON] ...]

unshown_negatives/served_screen.py with two additions: a variant may serve a bundle with other
head weights of the feed score (`b_x@{"click": 0, "long_dwell": 2, "share": 5, "hide": -1}`), and
each variant's paired difference from the base is also given per segment (new / returning /
heavy / light readers). The panel is cut to 50 users; the share does not depend on it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from feedrank.bundle import load_bundle
from feedrank.eval import served
from feedrank.eval.served_path import RecommenderServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unshown_negatives"))
from served_screen import paired_share


def _server(name: str, spec: str) -> Any:
    path, _, weights = spec.partition("@")
    parsed = json.loads(weights) if weights else None
    return lambda _b: RecommenderServer(load_bundle(path), name=name, weights=parsed)


def main() -> None:
    part, requests, out, base = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    variants = dict(arg.split("=", 1) for arg in sys.argv[5:])
    start = time.time()
    report = served.evaluate_served(
        base,
        options=served.ServedOptions(part=part, requests=requests, panel_users=50),
        extra=[_server(name, spec) for name, spec in variants.items()],
    )
    arrays, masks = report.per_request, report.masks
    oracle = arrays["oracle"]["utility@20"]
    ok = np.isfinite(oracle)
    base_u = arrays["served (ranker)"]["utility@20"]
    rows: dict[str, Any] = {}
    for system, metrics in report.systems.items():
        row: dict[str, Any] = {
            k: metrics.get(k)
            for k in ("utility_share@20", "utility_share@20_se", "hr@10", "new_user_overlap@10")
        }
        row["panel_jaccard@10"] = report.panel.get(system, {}).get("jaccard@10")
        if system not in ("served (ranker)", "oracle"):
            u = arrays[system]["utility@20"]
            row["minus_base"] = paired_share(u[ok], base_u[ok], oracle[ok])
            for seg, mask in masks.items():
                m = ok & mask
                if seg != "all" and m.sum() > 2:
                    row[f"minus_base_{seg}"] = paired_share(u[m], base_u[m], oracle[m])
        for seg, per in report.segments.items():
            row[f"share_{seg}"] = per.get(system, {}).get("utility_share@20")
        rows[system] = row
        print(system, json.dumps(row), flush=True)
    per_request = {s: {m: v.tolist() for m, v in a.items()} for s, a in arrays.items()}
    out.write_text(json.dumps({"part": part, "base": base, "variants": variants, "systems": rows,
                               "per_request": per_request}))  # fmt: skip
    print("seconds", round(time.time() - start))


if __name__ == "__main__":
    main()
