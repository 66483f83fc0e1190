"""Every next-click blend of the old and the new grid, and each component, on validation and test.

    .venv/bin/python bench/next_click_blend_grid.py SPLIT --valid 3000 --test 5000 --out grid.json

Walks the next-click protocol's own event stream (`ClickStream`) over seeded samples of the
validation and test clicks of SPLIT and scores, for each click, recent popularity (10 min, 1 h,
24 h), co-visitation with the previous click, every point of the old (a, b) grid (a, b in
{0, 0.25, ..., 4}, popularity over 1 h) and every point of `eval/blend.py`'s grid. Prints, with
and without each session's first click, the components, the blend each grid would tune on the
validation clicks and what it scores on the test clicks; writes every mean and standard error.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.artifacts.store import build_space
from feedrank.data.features import FeatureConfig
from feedrank.data.split import open_split
from feedrank.eval.blend import blend_grid
from feedrank.eval.next_click import sample_clicks
from feedrank.eval.next_click_stream import POP_WINDOWS_MIN, ClickStream, TargetState, rank_metrics

OLD_GRID = [
    (a, b) for a in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0) for b in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0) if a or b
]
Scorer = Callable[[TargetState], np.ndarray]


def _pop(minutes: int) -> Scorer:
    return lambda state: state.pop[minutes]


def _old(a: float, b: float) -> Scorer:
    return lambda state: a * np.log1p(state.pop[60]) + b * np.log1p(state.covis)


def systems() -> dict[str, Scorer]:
    out: dict[str, Scorer] = {f"pop{m}": _pop(m) for m in POP_WINDOWS_MIN}
    out["covis"] = lambda state: state.covis
    out |= {f"old({a}, {b})": _old(a, b) for a, b in OLD_GRID}
    out |= {f"new({w.window_min}, {w.a}, {w.b})": w.scores for w in blend_grid()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", type=Path)
    parser.add_argument("--valid", type=int, default=3_000)
    parser.add_argument("--test", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("blend_grid.json"))
    args = parser.parse_args()
    start = time.monotonic()
    parts = open_split(args.split)
    space = build_space(args.split, FeatureConfig())
    events = pl.concat([d.read("impressions") for d in parts.values()]).select(
        "user_id", "item_id", "ts", "clicked"
    )
    rng = np.random.default_rng(0)
    samples = {
        "valid": sample_clicks(parts["valid"].read("impressions"), args.valid, rng),
        "test": sample_clicks(parts["test"].read("impressions"), args.test, rng),
    }
    stream = ClickStream(space, events, 48.0, 30.0)
    scorers = systems()
    results: dict[str, dict[str, list[float]]] = {}
    for part, clicks in samples.items():
        stream.reset()
        values: dict[str, list[float]] = {k: [] for k in scorers}
        first: list[bool] = []
        for _, state in stream.walk(clicks):
            first.append(state.session_first)
            for name, score in scorers.items():
                values[name].append(rank_metrics(score(state), state.target)["ndcg@10"])
        session_first = np.array(first)
        for skip in (False, True):
            keep = ~session_first if skip else np.ones_like(session_first)
            results[f"{part}|skip={skip}"] = {
                k: [
                    float(np.mean(np.array(v)[keep])),
                    float(np.std(np.array(v)[keep], ddof=1) / np.sqrt(keep.sum())),
                ]
                for k, v in values.items()
            }
    for skip in (False, True):
        valid, test = results[f"valid|skip={skip}"], results[f"test|skip={skip}"]
        print(f"== skip session first: {skip}")
        for name in ("pop10", "pop60", "pop1440", "covis"):
            v, t = valid[name], test[name]
            print(f"{name:10s} valid {v[0]:.4f} ± {v[1]:.4f}  test {t[0]:.4f} ± {t[1]:.4f}")
        for prefix in ("old", "new"):
            best = max((k for k in valid if k.startswith(prefix)), key=lambda k: valid[k][0])
            print(
                f"tuned {best:28s} valid {valid[best][0]:.4f}  test {test[best][0]:.4f} ± {test[best][1]:.4f}"
            )
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"{time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
