"""Paired NDCG@10 difference (mean ± standard error) of two runs' ranker on the same clicks.

    .venv/bin/python scripts/experiments/real_news/paired.py ROOT/rk-A ROOT/rk-B [valid|test] [system]
"""
import sys
import numpy as np
a, b = (np.load(f"{p}/{sys.argv[3] if len(sys.argv) > 3 else 'valid'}_ndcg.npz", allow_pickle=True) for p in sys.argv[1:3])
system = sys.argv[4] if len(sys.argv) > 4 else "ranker"
d = b[system] - a["ranker"]
warm = a["warm"]
for label, m in (("all", np.ones_like(warm)), ("warm", warm), ("cold", ~warm)):
    x = d[m]
    print(f"{label}: {sys.argv[2]} - {sys.argv[1]} = {x.mean():+.4f} ± {x.std(ddof=1) / np.sqrt(x.size):.4f} (n={x.size})")
