"""Served share of the oracle's utility@20 for several bundles on the same sampled requests, paired.

    python served_screen.py PART REQUESTS OUT.json BASE_BUNDLE [NAME=BUNDLE ...]

`evaluate_served` on BASE_BUNDLE (the oracle and the requests come from it; every bundle must be
built on the same split), with each NAME=BUNDLE served beside it through the same path. Prints each
system's share with its standard error and each variant's share minus the base's, request by
request (the delta method on the ratio of means: the same oracle denominator). The panel is cut
to 50 users to save time; the share, HR@10 and new-user overlap do not depend on it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from feedrank.bundle import load_bundle
from feedrank.eval import served
from feedrank.eval.served_path import RecommenderServer


def paired_share(variant: np.ndarray, base: np.ndarray, oracle: np.ndarray) -> tuple[float, float]:
    """(share(variant) - share(base), its standard error) over the same requests and oracle."""
    x = variant - base
    r = x.mean() / oracle.mean()
    se = (x - r * oracle).std(ddof=1) / (np.sqrt(x.size) * oracle.mean())
    return float(r), float(se)


def main() -> None:
    part, requests, out, base = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    variants = dict(arg.split("=", 1) for arg in sys.argv[5:])
    extra = [
        (lambda _b, name=name, path=path: RecommenderServer(load_bundle(path), name=name))
        for name, path in variants.items()
    ]
    start = time.time()
    report = served.evaluate_served(
        base, options=served.ServedOptions(part=part, requests=requests, panel_users=50), extra=extra
    )
    arrays = report.per_request
    oracle = arrays["oracle"]["utility@20"]
    ok = np.isfinite(oracle)
    lines = {}
    for system, metrics in report.systems.items():
        row = {
            k: metrics.get(k)
            for k in (
                "utility_share@20",
                "utility_share@20_se",
                "hr@10",
                "hr@10_se",
                "new_user_overlap@10",
                "new_user_overlap@10_se",
            )
        }
        row["panel_jaccard@10"] = report.panel.get(system, {}).get("jaccard@10")
        if system not in ("served (ranker)", "oracle"):
            d, se = paired_share(
                arrays[system]["utility@20"][ok], arrays["served (ranker)"]["utility@20"][ok], oracle[ok]
            )
            row["share_minus_base"], row["share_minus_base_se"] = d, se
        lines[system] = row
        print(system, json.dumps(row), flush=True)
    per_request = {s: {m: v.tolist() for m, v in a.items()} for s, a in arrays.items()}
    out.write_text(
        json.dumps(
            {
                "part": part,
                "requests": requests,
                "base": base,
                "variants": variants,
                "systems": lines,
                "per_request": per_request,
            }
        )
    )
    print("seconds", round(time.time() - start))


if __name__ == "__main__":
    main()
