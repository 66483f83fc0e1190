"""Paired NDCG@10 difference of two exp_tt8.py runs' two-towers on the same clicks (one day).

python scripts/experiments/real_news/paired_tt8.py runs/tt8/A runs/tt8/B [--day 2017-10-07]
"""

from __future__ import annotations

import argparse

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("a")
parser.add_argument("b")
parser.add_argument("--day", default="2017-10-07")
parser.add_argument("--system", default="two-tower")
args = parser.parse_args()
a, b = (np.load(f"{p}/day_ndcg_{args.day}.npz") for p in (args.a, args.b))
assert np.array_equal(a["warm"], b["warm"]), "not the same clicks"
d = b[args.system] - a["two-tower"]
warm = a["warm"]
for label, m in (("all", np.ones_like(warm)), ("warm", warm), ("cold", ~warm)):
    x = d[m]
    se = x.std(ddof=1) / np.sqrt(x.size)
    z = x.mean() / se if se else 0.0
    print(f"{label:5s} {args.b} - {args.a}: {x.mean():+.5f} ± {se:.5f} ({z:+.1f} SE, n={x.size})")
