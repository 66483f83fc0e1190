"""INT8 dynamic quantization of the serving MLPs: the change in accuracy and in latency.

    .venv/bin/python bench/bench_quantization.py --bundle runs/demo/bundle --repeats 200

Accuracy: AUC, GAUC and nDCG@10 of the ranker's feed score on the bundle's split's test part,
float32 against INT8 (towers and ranker both quantized), same rows. Latency: the ranker on 500
candidates and the user tower on one user, medians over `--repeats`, both variants interleaved in
the same run (one torch thread, as the service runs), reported as a ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feedrank.bundle import load_bundle
from feedrank.data.split import open_split
from feedrank.eval.impressions import evaluate_impressions
from feedrank.eval.model_scorer import RankerScorer
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.ranker import RankerInputs
from feedrank.serve.quantize import quantize_linear_int8


def accuracy(bundle: Any, towers: Any, ranker: Any, test: Any) -> dict[str, float]:
    scorer = RankerScorer(bundle.space, towers, ranker, bundle.ranker_cfg.weights.as_dict())
    metrics, _ = evaluate_impressions(test, {"ranker": scorer}, bundle.ranker_cfg.weights.as_dict())
    return {k: metrics["ranker"][k] for k in ("auc", "gauc", "ndcg@10", "value_ndcg@10")}


def latency_inputs(bundle: Any, n: int) -> tuple[UserInputs, RankerInputs]:
    space = bundle.space
    rng = np.random.default_rng(0)
    rows = rng.choice(len(space.catalog), size=min(n, len(space.catalog)), replace=False)
    now = np.full(rows.size, bundle.snapshot_us, dtype=np.int64)
    items = ItemInputs.from_arrays(space.item_arrays(rows, now))
    user_ids = space.users.user_ids[:1]
    import polars as pl

    users = UserInputs.from_arrays(space.user_arrays(pl.Series(user_ids.tolist()), now[:1]))
    with torch.no_grad():
        user = bundle.towers.user(users)
        item = bundle.towers.item(items)
    names = bundle.ranker_cfg.counters  # the columns this bundle's ranker was trained on
    counters = space.past.features(names, np.full(rows.size, 0), rows, now, space.catalog)
    ranker_inputs = RankerInputs(
        user_emb=user.expand(rows.size, -1),
        item_emb=item,
        publisher=items.publisher,
        category=items.category,
        content_type=items.content_type,
        freshness=items.freshness,
        counters=torch.from_numpy(counters),
    )
    return users, ranker_inputs


@torch.no_grad()
def timings(
    models: dict[str, tuple[Any, Any]], user: UserInputs, ranked: RankerInputs, repeats: int
) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        name: {"ranker_ms": [], "user_tower_ms": []} for name in models
    }
    for _ in range(repeats):  # interleaved, so both variants see the same machine load
        for name, (towers, ranker) in models.items():
            t0 = time.perf_counter()
            ranker(ranked)
            samples[name]["ranker_ms"].append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            towers.user(user)
            samples[name]["user_tower_ms"].append((time.perf_counter() - t0) * 1e3)
    return {name: {k: float(np.median(v)) for k, v in s.items()} for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quantization.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(args.bundle)
    test = open_split(Path(bundle.manifest["data"]["split"]))["test"].read("impressions")
    int8 = (quantize_linear_int8(bundle.towers), quantize_linear_int8(bundle.ranker))
    models = {"float32": (bundle.towers, bundle.ranker), "int8": int8}
    result: dict[str, Any] = {"accuracy": {n: accuracy(bundle, t, r, test) for n, (t, r) in models.items()}}
    user, ranked = latency_inputs(bundle, args.candidates)
    result["latency_ms"] = timings(models, user, ranked, args.repeats)
    lat = result["latency_ms"]
    result["speedup"] = {k: lat["float32"][k] / lat["int8"][k] for k in lat["float32"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
