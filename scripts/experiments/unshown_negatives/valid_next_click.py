"""Next-click NDCG@10 on the VALIDATION clicks, paired between ranker runs of one world.

    python valid_next_click.py WORLD RANKER [RANKER ...] [--versus REFERENCE]

WORLD is a demo run (split/, retrieval/, RANKER/ folders). The protocol is
bench/next_click_pooled.py's (the ranker re-scores the union of the sources, 500, ranked by its
click head and by its feed score), with the validation clicks in the test clicks' place, so that
ranker variants are screened without reading the test day. The blend is tuned on the same clicks
it is scored on here: its row is a reference, not a result. Per-click values go to
WORLD/valid_next_click_RANKER.json; each ranker is printed minus the reference, click by click.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from feedrank.eval import next_click
from next_click_pooled import per_click_ndcg


def on_validation(run: Path) -> dict[str, list[float]]:
    """per_click_ndcg with the protocol's second click sample (the test clicks) drawn from the
    validation impressions, which its first sample (the blend's tuning clicks) reads."""
    sample = next_click.sample_clicks
    seen: dict[str, Any] = {}

    def validation_twice(impressions: Any, n: int, rng: np.random.Generator) -> Any:
        seen.setdefault("valid", impressions)
        return sample(seen["valid"], n, rng)

    next_click.sample_clicks = validation_twice
    try:
        return per_click_ndcg(run, next_click.NextClickOptions())
    finally:
        next_click.sample_clicks = sample


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("world", type=Path)
    parser.add_argument("rankers", nargs="+")
    parser.add_argument("--versus", help="reference ranker (its JSON is read when present)")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    for name in [args.versus, *args.rankers] if args.versus else args.rankers:
        path = args.world / f"valid_next_click_{name}.json"
        if not path.is_file():
            path.write_text(json.dumps(on_validation(args.world / name)))
        results[name] = json.loads(path.read_text())
    for name, systems in results.items():
        line = [f"{name}: {len(systems['ranker'])} valid clicks"]
        for system in ("ranker", "ranker (feed score)", "blend"):
            v = np.array(systems[system])
            line.append(f"{system} {v.mean():.4f} ± {v.std(ddof=1) / np.sqrt(v.size):.4f}")
        if args.versus and name != args.versus:
            for system in ("ranker", "ranker (feed score)"):
                d = np.array(systems[system]) - np.array(results[args.versus][system])
                line.append(
                    f"{system} - {args.versus} {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(d.size):.4f}"
                )
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
