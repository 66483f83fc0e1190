"""The transformer history encoder vs the mean: validation quality, user-tower latency, step time.

    .venv/bin/python bench/bench_history_encoder.py --repeats 3          # 3 training seeds
    .venv/bin/python bench/bench_history_encoder.py --quick              # smoke: tiny world, 1 seed

1. Quality. The default simulated world (preset "small", simulator seed 0) is simulated, imported
   through the validating Parquet adapter and split by time. For each seed the two-tower is
   trained with history_encoder="mean" and with "transformer", everything else the default
   RetrievalRunConfig (early stopping on valid recall@100, patience 2, the best epoch's weights
   kept), and the kept model is scored by `retrieval_validator` on every valid request with a
   click (max_queries 10**9): nDCG@10, recall@100, MRR against the live catalog. The seed sets
   both the weight init (torch.manual_seed before the model is built) and TrainConfig.seed.
2. Latency of the user tower (eval mode, no_grad): ms per request at batch 1 and ms per 1,000
   users at batch 1,000, users with full 50-item histories, median over many calls, the two
   encoders alternating in rounds so both see the same machine load.
3. Training step time of the transformer with and without gradient checkpointing (and the mean for
   reference): the real train() loop and RetrievalTask on synthetic batches of 1024 clicks with
   full histories and the default 9 hard negatives (bench/common.py), each configuration in a
   fresh process (its peak RSS is its own).

Everything runs with `--threads` torch threads (default 1: on the shared 2-core machine a second
intra-op thread stalls whenever another process holds a core). The rule: the transformer becomes
the default only if it lifts validation nDCG@10 by at least 2% (mean relative lift over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from common import (
    build_world,
    machine,
    median,
    peak_rss_mib,
    run_child,
    spread,
    synthetic_retrieval_examples,
    timed_train,
)
from feedrank.artifacts.config import RetrievalRunConfig
from feedrank.artifacts.store import build_space, build_two_tower, load_retrieval
from feedrank.data.split import open_split
from feedrank.eval.catalog import click_queries
from feedrank.train import TensorBatchSource
from feedrank.train.batches import take
from feedrank.train.retrieval_task import RetrievalTask
from feedrank.train.run import train_retrieval
from feedrank.train.validation import retrieval_validator

log = logging.getLogger("bench_history_encoder")

ENCODERS = ("mean", "transformer")
LIFT_RULE = 0.02  # the transformer becomes the default only above this relative nDCG@10 lift


def run_config(
    encoder: str, seed: int, threads: int, batch: int, checkpointing: bool = False
) -> RetrievalRunConfig:
    base = RetrievalRunConfig()
    model = dataclasses.replace(base.model, history_encoder=encoder, gradient_checkpointing=checkpointing)  # type: ignore[arg-type]
    train = dataclasses.replace(base.train, seed=seed, num_threads=threads, progress=False, plot=False)
    return dataclasses.replace(base, model=model, train=train, batch_size=batch)


# --------------------------------------------------------------------------- 1. quality


def quality(
    split_dir: Path, seeds: list[int], threads: int, batch: int, max_queries: int
) -> list[dict[str, Any]]:
    """Train both encoders per seed; metrics of the kept (best-epoch) model on all valid requests."""
    parts = open_split(split_dir)
    space = build_space(split_dir, RetrievalRunConfig().features)
    evaluate = retrieval_validator(parts, max_queries=max_queries)(space)  # built once: same queries
    valid = parts["valid"].read("impressions")
    queries = click_queries(space, valid, max_queries, seed=0)
    users = space.user_arrays(pl.Series(queries.user_ids, dtype=pl.String), queries.ts_us)
    lengths = (users["hist_item"] > 0).sum(1)
    log.warning(
        "%d valid requests with a click; history length at request time: mean %.1f, median %.0f, %.0f%% full",
        len(queries), lengths.mean(), np.median(lengths), 100 * (lengths == space.config.history_len).mean(),
    )  # fmt: skip

    def make_evaluate(_: object) -> Callable[[torch.nn.Module], dict[str, float]]:
        return evaluate

    rows = []
    for seed in seeds:
        for encoder in ENCODERS:
            cfg = run_config(encoder, seed, threads, batch)
            with tempfile.TemporaryDirectory(prefix="bench-hist-run-") as tmp:
                torch.manual_seed(seed)  # train_retrieval builds the model from the global RNG
                started = time.perf_counter()
                result = train_retrieval(split_dir, Path(tmp), cfg, make_evaluate=make_evaluate, space=space)
                seconds = time.perf_counter() - started
                model, _ = load_retrieval(Path(tmp))
                with torch.no_grad():
                    metrics = evaluate(model)
            row = {
                "seed": seed,
                "encoder": encoder,
                **metrics,
                "steps": result.steps,
                "best_step": result.best_step,
                "stopped_early": result.stopped_early,
                "train_s": seconds,
            }
            rows.append(row)
            log.warning(
                "seed %d %-11s ndcg@10 %.4f recall@100 %.4f mrr %.4f (%d steps, best at %d, %.0f s)",
                seed, encoder, row["ndcg@10"], row["recall@100"], row["mrr"], result.steps,
                result.best_step, seconds,
            )  # fmt: skip
    return rows


def summarize_quality(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["seed"], r["encoder"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out: dict[str, Any] = {}
    for metric in ("ndcg@10", "recall@100", "mrr"):
        lifts = [by[s, "transformer"][metric] / by[s, "mean"][metric] - 1.0 for s in seeds]
        out[metric] = {
            enc: {
                "mean": statistics.fmean(by[s, enc][metric] for s in seeds),
                "range": spread([by[s, enc][metric] for s in seeds]),
            }
            for enc in ENCODERS
        }
        out[metric]["lift"] = {
            "mean": statistics.fmean(lifts),
            "std": statistics.stdev(lifts) if len(lifts) > 1 else 0.0,
            "range": spread(lifts),
            "per_seed": lifts,
        }
    lift = out["ndcg@10"]["lift"]["mean"]
    out["verdict"] = (
        f"transformer lifts valid nDCG@10 by {lift:+.1%} (mean over {len(seeds)} seed(s)); the rule asks "
        f">= {LIFT_RULE:+.0%}: {'switch the default to transformer' if lift >= LIFT_RULE else 'keep mean'}"
    )
    return out


# --------------------------------------------------------------------------- 2. latency


def latency(threads: int, rounds: int, calls_single: int, calls_batch: int) -> dict[str, Any]:
    """Median ms of one user-tower call (eval, no_grad) per encoder at batch 1 and batch 1,000."""
    torch.set_num_threads(threads)
    features = RetrievalRunConfig().features
    towers = {}
    for encoder in ENCODERS:
        torch.manual_seed(0)
        towers[encoder] = build_two_tower(run_config(encoder, 0, threads, 1024)).eval()
    data = synthetic_retrieval_examples(1000, features, seed=1)
    batches = {
        1: take(data.user, torch.arange(1)),
        1000: data.user,
    }
    calls = {1: calls_single, 1000: calls_batch}
    samples: dict[tuple[str, int], list[float]] = {(e, b): [] for e in ENCODERS for b in batches}
    with torch.no_grad():
        for _ in range(rounds):
            for size, users in batches.items():
                for encoder, model in towers.items():
                    model.user(users)  # warm
                    for _ in range(calls[size]):
                        started = time.perf_counter()
                        model.user(users)
                        samples[encoder, size].append((time.perf_counter() - started) * 1e3)
    out: dict[str, Any] = {}
    for size in batches:
        per = {e: median(samples[e, size]) for e in ENCODERS}
        out[f"batch_{size}"] = {
            **{f"{e}_ms": per[e] for e in ENCODERS},
            "extra_ms": per["transformer"] - per["mean"],
            "ratio": per["transformer"] / per["mean"],
            "calls": len(samples["mean", size]),
        }
    return out


# --------------------------------------------------------------------------- 3. step time


def step_child(
    encoder: str, checkpointing: bool, threads: int, batch: int, warmup: int, steps: int
) -> dict[str, Any]:
    """Training steps of one configuration in this (fresh) process: samples/s, step ms, peak RSS."""
    torch.set_num_threads(threads)
    cfg = run_config(encoder, 0, threads, batch, checkpointing)
    torch.manual_seed(0)
    model = build_two_tower(cfg)
    data = TensorBatchSource(
        synthetic_retrieval_examples(batch * (warmup + steps), cfg.features), batch, seed=0
    )
    config = dataclasses.replace(
        cfg.train, epochs=1, max_steps=warmup + steps, early_stop_metric="", log_every=10**9
    )
    result = timed_train(RetrievalTask(model, cfg.loss), data, config, warmup, max_seconds=60.0)
    return {**result, "encoder": encoder, "checkpointing": checkpointing, "peak_rss_mib": peak_rss_mib()}


def step_times(args: argparse.Namespace) -> dict[str, Any]:
    configs = [("mean", False), ("transformer", False), ("transformer", True)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.step_repeats):
        for encoder, ckpt in configs:
            child = [
                "--encoder", encoder, "--threads", str(args.threads), "--batch", str(args.step_batch),
                "--warmup", str(args.warmup), "--steps", str(args.steps),
            ] + (["--checkpointing"] if ckpt else [])  # fmt: skip
            result = run_child(Path(__file__), child)
            key = f"{encoder}{' + checkpointing' if ckpt else ''}"
            runs.setdefault(key, []).append(result)
            log.warning(
                "%-28s %7.1f ms/step  %7.0f samples/s  peak RSS %4.0f MiB",
                key, result["step_ms_median"], result["samples_per_s"], result["peak_rss_mib"],
            )  # fmt: skip
    summary = {
        key: {
            "step_ms_median": median([r["step_ms_median"] for r in rs]),
            "samples_per_s": median([r["samples_per_s"] for r in rs]),
            "peak_rss_mib": median([r["peak_rss_mib"] for r in rs]),
        }
        for key, rs in runs.items()
    }
    keys = list(runs)
    ratios = {
        f"{num} / {den} (step time)": median(
            [a["step_ms_median"] / b["step_ms_median"] for a, b in zip(runs[num], runs[den], strict=True)]
        )
        for num, den in ((keys[1], keys[0]), (keys[2], keys[1]))
    }
    return {"configs": summary, "ratios": ratios}


# --------------------------------------------------------------------------- driver


def print_report(report: dict[str, Any]) -> None:
    out = sys.stdout
    if "quality" in report:
        q = report["quality"]
        out.write("\nvalidation (all valid requests with a click), mean [min, max] over seeds\n")
        for metric in ("ndcg@10", "recall@100", "mrr"):
            cells = []
            for e in ENCODERS:
                lo, hi = q[metric][e]["range"]
                cells.append(f"{e} {q[metric][e]['mean']:.4f} [{lo:.4f}, {hi:.4f}]")
            lift = q[metric]["lift"]
            out.write(f"  {metric:<11} {'   '.join(cells)}   lift {lift['mean']:+.2%} ± {lift['std']:.2%}\n")
        out.write(f"verdict: {q['verdict']}\n")
    if "latency" in report:
        out.write("\nuser tower latency (eval, no_grad, full 50-item histories), median ms per call\n")
        for size, r in report["latency"].items():
            out.write(
                f"  {size:<10} mean {r['mean_ms']:.3f}  transformer {r['transformer_ms']:.3f}  "
                f"extra {r['extra_ms']:+.3f} ms  ({r['ratio']:.2f}x, {r['calls']} calls each)\n"
            )
    if "steps" in report:
        out.write("\ntraining step (batch of synthetic full histories), median over fresh processes\n")
        for key, r in report["steps"]["configs"].items():
            out.write(
                f"  {key:<28} {r['step_ms_median']:7.1f} ms/step {r['samples_per_s']:8.0f} samples/s "
                f"peak RSS {r['peak_rss_mib']:5.0f} MiB\n"
            )
        for label, ratio in report["steps"]["ratios"].items():
            out.write(f"  {label}: {ratio:.2f}x\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="training seeds (0, 1, ...) for the quality part"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: tiny world, 1 seed, few calls and steps"
    )
    parser.add_argument("--preset", default="small", help="simulator preset of the world (default: small)")
    parser.add_argument("--split", type=Path, help="reuse this split directory instead of simulating")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads everywhere")
    parser.add_argument("--max-queries", type=int, default=10**9, help="valid requests to score (all)")
    parser.add_argument("--parts", default="quality,latency,steps", help="which parts to run")
    parser.add_argument("--rounds", type=int, default=5, help="latency: alternating rounds")
    parser.add_argument("--step-repeats", type=int, default=3, help="step time: fresh processes per config")
    parser.add_argument("--step-batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--json-out", type=Path, help="also write the full results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--encoder", default="mean", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("feedrank").setLevel(logging.ERROR)
    if args.child:
        result = step_child(
            args.encoder, args.checkpointing, args.threads, args.batch, args.warmup, args.steps
        )
        print(json.dumps(result))
        return
    batch, calls = 1024, (200, 20)
    if args.quick:
        args.repeats, args.preset, args.rounds, args.step_repeats = 1, "tiny", 1, 1
        args.warmup, args.steps, calls, batch = 1, 3, (20, 2), 256  # the tiny world has < 1024 clicks
    parts = set(args.parts.split(","))
    report: dict[str, Any] = {}
    torch.set_num_threads(args.threads)
    if "quality" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-hist-world-") as tmp:
            split_dir = args.split or build_world(Path(tmp), args.preset)
            rows = quality(split_dir, list(range(args.repeats)), args.threads, batch, args.max_queries)
        report["quality"] = {**summarize_quality(rows), "runs": rows}
    if "latency" in parts:
        report["latency"] = latency(args.threads, args.rounds, *calls)
    if "steps" in parts:
        report["steps"] = step_times(args)
    print_report(report)
    full = {
        "benchmark": "history_encoder",
        "args": {k: str(v) for k, v in vars(args).items()},
        **machine(),
        **report,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(full))


if __name__ == "__main__":
    main()
