"""A seed ensemble of rankers served through the same path, against each single seed, paired.

    python screen.py PART REQUESTS OUT.json BUNDLE_SEED0 BUNDLE_SEED1 [BUNDLE_SEED2 ...]

Every bundle must share the split and the two-tower (train_variant.py builds them with
`train.seed=S`). The systems: each seed's bundle as it is, and "ensemble": the first bundle with
its ranker replaced by the mean of the rankers' head probabilities (logit of the mean sigmoid,
so the serving code's sigmoid gives the mean back), served through the same Recommender path.
Prints each system's share of the oracle's utility@20, HR@10 and new-user overlap, and the
ensemble's share minus each seed's and minus their mean, request by request (paired), overall and
per segment. The panel is cut to 50 users.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from feedrank.bundle import load_bundle
from feedrank.eval import served
from feedrank.eval.served_metrics import paired_share
from feedrank.eval.served_path import SERVED, RecommenderServer


class MeanProbability(nn.Module):
    """Logits whose sigmoid is the mean of the members' head probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, inputs: Any) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(inputs)) for m in self.members]).mean(dim=0)
        return torch.logit(p.clamp(1e-7, 1 - 1e-7))


def _ensemble(paths: list[str]) -> Any:
    def make(_b: Any) -> RecommenderServer:
        server = RecommenderServer(load_bundle(paths[0]), name="ensemble")
        members = [load_bundle(p).ranker.eval() for p in paths]
        server.recommender.catalog._ranker = MeanProbability(members).eval()
        return server

    return make


def main() -> None:
    part, requests, out, paths = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    extra = [
        (lambda _b, i=i, p=p: RecommenderServer(load_bundle(p), name=f"seed {i}"))
        for i, p in enumerate(paths)
        if i > 0
    ]
    start = time.time()
    report = served.evaluate_served(
        paths[0],
        options=served.ServedOptions(part=part, requests=requests, panel_users=50),
        extra=[*extra, _ensemble(paths)],
    )
    arrays, masks = report.per_request, report.masks
    oracle = arrays["oracle"]["utility@20"]
    ok = np.isfinite(oracle)
    singles = [SERVED] + [f"seed {i}" for i in range(1, len(paths))]
    mean_single = np.mean([arrays[s]["utility@20"] for s in singles], axis=0)
    ens = arrays["ensemble"]["utility@20"]
    rows: dict[str, Any] = {}
    for system, metrics in report.systems.items():
        row = {
            k: metrics.get(k)
            for k in ("utility_share@20", "utility_share@20_se", "hr@10", "new_user_overlap@10")
        }
        row["panel_jaccard@10"] = report.panel.get(system, {}).get("jaccard@10")
        for seg, per in report.segments.items():
            row[f"share_{seg}"] = per.get(system, {}).get("utility_share@20")
        rows[system] = row
        print(system, json.dumps(row), flush=True)
    paired: dict[str, Any] = {}
    for seg, mask in masks.items():
        m = ok & mask
        if m.sum() < 3:
            continue
        paired[seg] = {s: paired_share(ens[m], arrays[s]["utility@20"][m], oracle[m]) for s in singles}
        paired[seg]["mean of seeds"] = paired_share(ens[m], mean_single[m], oracle[m])
    print("ensemble minus", json.dumps(paired), flush=True)
    per_request = {s: {m: v.tolist() for m, v in a.items()} for s, a in arrays.items()}
    out.write_text(json.dumps({"part": part, "bundles": paths, "systems": rows, "paired": paired,
                               "per_request": per_request}))  # fmt: skip
    print("seconds", round(time.time() - start))


if __name__ == "__main__":
    main()
