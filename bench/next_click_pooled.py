"""Ranker against the tuned blend on next-click NDCG@10, pooled over several simulated worlds.

    .venv/bin/python bench/next_click_pooled.py --seeds 21 22 23 24 25 26 --root runs/seeds

For each seed: the main job on that world (`feedrank demo --out ROOT/sSEED --set sim.seed=SEED`,
skipped when ROOT/sSEED/ranker exists), then the next-click protocol on its ranker run, keeping
every test click's NDCG@10 so the ranker - blend difference is paired click by click. Prints one
line per world and the pooled difference with its standard error; writes ROOT/pooled.json. Choose
the seeds before looking: adding worlds until a difference turns significant is not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from feedrank.eval import next_click


def per_click_ndcg(run: Path, options: next_click.NextClickOptions) -> dict[str, list[float]]:
    """NDCG@10 of each kept test click for the ranker, the blend and the two-tower."""
    captured: dict[str, Any] = {}
    evaluate = next_click._evaluate

    def keep_per_event(*args: Any, **kwargs: Any) -> Any:
        captured["per_event"] = evaluate(*args, **kwargs)
        return captured["per_event"]

    next_click._evaluate = keep_per_event
    try:
        next_click.evaluate_next_click(run, options=options)
    finally:
        next_click._evaluate = evaluate
    per_event = captured["per_event"]
    keep = per_event.keep
    return {s: per_event.metrics[s]["ndcg@10"][keep].tolist() for s in ("ranker", "blend", "two-tower")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--root", type=Path, default=Path("runs/seeds"))
    parser.add_argument("--pool", choices=("union", "ann"), default="union", help="what the ranker re-scores")
    parser.add_argument("--candidates", type=int, default=500, help="size of the ranker's pool")
    parser.add_argument("--ranker", default="ranker", help="the ranker run's folder in each world")
    parser.add_argument("--tag", default="pooled", help="name of the JSON written under ROOT")
    args = parser.parse_args()
    options = next_click.NextClickOptions(ranker_pool=args.pool, ranker_candidates=args.candidates)
    results: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        out = args.root / f"s{seed}"
        if not (out / "ranker").exists():
            cmd = [sys.executable, "-m", "feedrank", "demo", "--out", str(out), "--set", f"sim.seed={seed}"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results[str(seed)] = per_click_ndcg(out / args.ranker, options)
        ranker, blend = np.array(results[str(seed)]["ranker"]), np.array(results[str(seed)]["blend"])
        diff = ranker - blend
        print(
            f"seed {seed}: {diff.size} clicks, ranker {ranker.mean():.4f}, blend {blend.mean():.4f}, "
            f"ranker - blend {diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.4f}",
            flush=True,
        )
    (args.root / f"{args.tag}.json").write_text(json.dumps(results))
    diffs = np.concatenate([np.array(r["ranker"]) - np.array(r["blend"]) for r in results.values()])
    se = diffs.std(ddof=1) / np.sqrt(diffs.size)
    print(f"pooled: {diffs.size} clicks, ranker - blend {diffs.mean():+.4f} ± {se:.4f}")


if __name__ == "__main__":
    main()
