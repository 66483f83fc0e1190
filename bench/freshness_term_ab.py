"""In-process A/B of the two-tower's (B, B) freshness term: bucket-and-gather vs the step function.

    .venv/bin/python bench/freshness_term_ab.py 2      # intra-op threads

Builds the training benchmark's two-tower case (batch 1,024, catalog-like ids) once, then times
forward + backward of the retrieval loss on alternating batches with the two implementations of
`TwoTower.score_at`, so both see the same load: a ratio from one process is robust on a shared box
where separate runs differ by +-30 %. The optimizer step, identical for both, is not timed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
import bench_training as bt
from feedrank.models.two_tower import TwoTower


def bucket_and_gather(
    self: TwoTower, user_emb: Tensor, content: Tensor, published_us: Tensor, ts_us: Tensor
) -> Tensor:
    """The definition: every (row, item) pair's bucket, then a gather (the code before 309b4a2)."""
    buckets = self.item_tower.freshness_bucket(published_us[None, :], ts_us[:, None])
    fresh = user_emb @ self.item_tower.freshness.weight.T
    return (user_emb @ content.T + torch.gather(fresh, 1, buckets)) / self.cfg.temperature


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    torch.set_num_threads(threads)
    task, data, _ = bt.build_case("two_tower", 1024 * steps, 1024, 0, bt.CATALOG_ITEMS)
    step_function = TwoTower.score_at
    times: dict[str, list[float]] = {"bucket-and-gather": [], "step function": []}
    for i, batch in enumerate(list(data.batches(0, 0, 1))[:steps]):
        name = "bucket-and-gather" if i % 2 == 0 else "step function"
        TwoTower.score_at = bucket_and_gather if i % 2 == 0 else step_function  # type: ignore[method-assign]
        task.model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = task.loss(batch)
        loss.backward()
        times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v[3:]) for k, v in times.items()}  # the first steps warm up
    for name, median in medians.items():
        print(f"{threads} thread(s), {name}: forward + backward median {median * 1e3:.1f} ms")
    ratio = medians["bucket-and-gather"] / medians["step function"]
    print(f"ratio bucket-and-gather / step function: {ratio:.3f}")


if __name__ == "__main__":
    main()
