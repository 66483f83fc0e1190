"""Do the off-policy estimators cover the truth? Repeated simulated worlds and logs, one answer.

    results = validate(range(40), work_dir=tmp)          # 40 seeds of the 'tiny' preset
    print(render_summary(summarize(results)))

Each seed simulates a world and its log (`SimConfig.preset(preset, seed=seed, **overrides)`), takes
one decision per request at `slot`, evaluates the `world_policies` targets with IPS, SNIPS, DR and
DM, and compares each (1 - alpha) interval with the policy's exact value (ope_sim). DR and DM run
with two reward models: `item`, an `ItemClickModel` cross-fitted over `folds` folds of requests
(the rows of one fold are scored by a model fitted on the impressions of the others), and `world`,
the true click probability with per-item logit noise (`noisy_truth_model`: a decent model).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.experiments.ope import (
    F64,
    BanditData,
    Estimate,
    ItemClickModel,
    ScoreFn,
    SoftmaxPolicy,
    direct_method,
    doubly_robust,
    ips,
    snips,
)
from feedrank.experiments.ope_sim import (
    PolicyValue,
    evaluate_policies,
    logged_slot,
    noisy_truth_model,
    world_policies,
)
from feedrank.sim import SimConfig, World, simulate


@dataclass(frozen=True)
class SeedResult:
    seed: int
    policy: str
    truth: float
    estimates: dict[str, Estimate]


def evaluate_log(
    dataset: Dataset,
    world: World,
    policies: Mapping[str, SoftmaxPolicy],
    *,
    slot: int = 0,
    folds: int = 2,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, dict[str, Estimate]]]:
    """policy -> (true value, estimator -> estimate) on one simulated log."""
    impressions = dataset.read("impressions")
    logged = logged_slot(impressions, world, slot)
    request = impressions.get_column("request_id").str.slice(1).cast(pl.Int64).to_numpy()
    fold_of = np.random.default_rng([seed, 7]).integers(0, folds, int(request.max()) + 1)
    items = world.item_index(impressions.get_column("item_id"))
    positions = impressions.get_column("position").to_numpy().astype(np.int64)
    clicked = impressions.get_column("clicked").to_numpy()
    parts: dict[str, list[tuple[PolicyValue, int]]] = {p: [] for p in policies}
    for k in range(folds):
        rows = np.flatnonzero(fold_of[logged.request] == k)
        train = fold_of[request] != k
        models: dict[str, ScoreFn] = {
            "item": ItemClickModel(slot=slot).fit(
                items[train], positions[train], clicked[train], world.num_items
            ),
            "world": noisy_truth_model(world, seed=seed, slot=slot),
        }
        for name, value in evaluate_policies(world, logged.take(rows), policies, models).items():
            parts[name].append((value, rows.size))
    out = {}
    for name, pieces in parts.items():
        merged = PolicyValue(
            BanditData(*(np.concatenate([getattr(p.data, f) for p, _ in pieces]) for f in _FIELDS)),
            sum(p.truth * n for p, n in pieces) / sum(n for _, n in pieces),
            {m: _concat([p.models[m] for p, _ in pieces]) for m in pieces[0][0].models},
        )
        found = {"ips": ips(merged.data, alpha), "snips": snips(merged.data, alpha)}
        for m in merged.models:
            data = merged.with_model(m)
            found[f"dr[{m}]"], found[f"dm[{m}]"] = doubly_robust(data, alpha), direct_method(data, alpha)
        out[name] = (merged.truth, found)
    return out


_FIELDS = ("reward", "propensity", "target_prob")


def _concat(pairs: list[tuple[F64, F64]]) -> tuple[F64, F64]:
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


def validate(
    seeds: Iterable[int],
    work_dir: Path | str,
    *,
    preset: str = "tiny",
    overrides: Mapping[str, Any] | None = None,
    slot: int = 0,
    alpha: float = 0.05,
) -> list[SeedResult]:
    """Simulate one world and log per seed under `work_dir` (removed again), and evaluate the
    `world_policies` targets on it; see the module docstring."""
    results = []
    for seed in seeds:
        out = Path(work_dir) / f"ope_seed_{seed}"
        dataset = simulate(SimConfig.preset(preset, seed=seed, **(overrides or {})), out, overwrite=True)
        try:
            world = World.load(dataset.path)
            found = evaluate_log(
                dataset, world, world_policies(world, seed), slot=slot, alpha=alpha, seed=seed
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
        results += [SeedResult(seed, name, truth, est) for name, (truth, est) in found.items()]
    return results


def summarize(results: Iterable[SeedResult]) -> pl.DataFrame:
    """One row per (policy, estimator): seeds, coverage of the truth by the interval, mean truth,
    bias, RMSE and sd of the error (estimate - truth), mean interval width and mean effective
    sample size."""
    rows = [
        {
            "policy": r.policy,
            "estimator": name,
            "truth": r.truth,
            "error": e.value - r.truth,
            "covered": e.covers(r.truth),
            "width": e.ci_high - e.ci_low,
            "ess": e.effective_sample_size,
        }
        for r in results
        for name, e in r.estimates.items()
    ]
    return (
        pl.DataFrame(rows)
        .group_by("policy", "estimator", maintain_order=True)
        .agg(
            seeds=pl.len(),
            coverage=pl.col("covered").mean(),
            truth=pl.col("truth").mean(),
            bias=pl.col("error").mean(),
            rmse=(pl.col("error") ** 2).mean().sqrt(),
            error_sd=pl.col("error").std(),
            ci_width=pl.col("width").mean(),
            ess=pl.col("ess").mean(),
        )
    )


def coverage_by_estimator(summary: pl.DataFrame) -> dict[str, float]:
    """Estimator -> share of its intervals (over every policy and seed of `summary`) that covered
    the truth: the one number per estimator to hold against the nominal level."""
    pooled = summary.group_by("estimator", maintain_order=True).agg(
        ((pl.col("coverage") * pl.col("seeds")).sum() / pl.col("seeds").sum()).alias("coverage")
    )
    return dict(zip(pooled["estimator"].to_list(), pooled["coverage"].to_list(), strict=True))


def render_summary(summary: pl.DataFrame) -> str:
    """The summary as a markdown table."""
    cols = [
        "policy",
        "estimator",
        "seeds",
        "coverage",
        "truth",
        "bias",
        "rmse",
        "error_sd",
        "ci_width",
        "ess",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in summary.select(cols).iter_rows():
        policy, estimator, seeds, coverage, *rest = row
        values = [f"{v:.4f}" for v in rest[:-1]] + [f"{rest[-1]:.0f}"]
        lines.append(f"| {policy} | {estimator} | {seeds} | {coverage:.1%} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"
