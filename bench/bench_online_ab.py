"""Benchmark: a simulated online A/B test of 50,000 users over 7 simulated days (default world).

    .venv/bin/python bench/bench_online_ab.py --bundle runs/demo/bundle --users 50000 --days 7

By default both arms run the full batched serving path (control: the bundle's ranker scoring with
the click head only; treatment: its default feed score), the expensive case. Prints wall time,
requests/s, ranker rows/s and peak RSS as one JSON line and writes the A/B report to --out.

`--aa-seeds N` then runs N small A/A tests (the same ranker in both arms, `--aa-users` users over
`--aa-days` days) and reports the share whose primary metric came out significant at 0.05.
`--variants` runs each policy variant against `--control` and correlates the offline metrics of
the ranker run's evaluation report with the online lift in time spent (Spearman).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import torch

from feedrank.bundle import load_bundle
from feedrank.experiments.online_ab import ABConfig, BundlePolicy, simulate_ab, world_of_bundle
from feedrank.experiments.online_report import write_report
from feedrank.experiments.online_stats import PRIMARY, agreement, analyze, offline_metrics


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--control", default="clicks-only", help="policy variant of the control arm")
    ap.add_argument("--treatment", default="ranker", help="policy variant of the treatment arm")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--requests-per-user-day", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-online-ab"))
    ap.add_argument("--skip-main", action="store_true", help="only the A/A and variant runs")
    ap.add_argument("--aa-seeds", type=int, default=0)
    ap.add_argument("--aa-users", type=int, default=2_000)
    ap.add_argument("--aa-days", type=float, default=2.0)
    ap.add_argument("--variants", nargs="*", default=[], help="e.g. ranker clicks-only two-tower random")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    world = world_of_bundle(load_bundle(args.bundle))
    rerank = not args.no_rerank

    def run(control: str, treatment: str, config: ABConfig, out: Path | None) -> dict[str, object]:
        started = time.perf_counter()
        arms = [BundlePolicy(args.bundle, v, candidates=args.candidates, rerank=rerank, seed=config.seed)
                for v in (control, treatment)]  # fmt: skip
        load_s = time.perf_counter() - started
        result = simulate_ab(world, arms[0], arms[1], config)
        report = analyze(result)
        if out is not None:
            write_report(report, out)
        s = result.stats
        primary = report.metric(PRIMARY)
        return {
            "control": control,
            "treatment": treatment,
            "users": config.num_users,
            "days": config.days,
            "load_s": round(load_s, 2),
            "wall_s": round(s["wall_s"], 1),
            "requests": int(s["requests"]),
            "requests_per_s": round(s["requests"] / s["wall_s"], 1),
            "rows_ranked": int(s["rows_ranked"]),
            "rows_per_s": round(s["rows_ranked"] / s["wall_s"]),
            "impressions": int(s["impressions"]),
            "lift": round(primary.lift, 4),
            "ci": [round(primary.ci_low, 4), round(primary.ci_high, 4)],
            "p_value": primary.p_value,
            "mde": round(primary.mde, 4),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }

    base = ABConfig(
        num_users=args.users,
        days=args.days,
        requests_per_user_day=args.requests_per_user_day,
        seed=args.seed,
    )
    if not args.skip_main:
        print(json.dumps({"run": "main", **run(args.control, args.treatment, base, args.out)}), flush=True)
    if args.aa_seeds:
        small = ABConfig(num_users=args.aa_users, days=args.aa_days)
        p_values = []
        for seed in range(args.aa_seeds):
            row = run("ranker", "ranker", ABConfig(**{**small.__dict__, "seed": seed}), None)
            p_values.append(float(row["p_value"]))  # type: ignore[arg-type]
        share = sum(p < 0.05 for p in p_values) / len(p_values)
        print(
            json.dumps(
                {"run": "aa", "seeds": args.aa_seeds, "significant_share": share, "p_values": p_values}
            )
        )
    if args.variants:
        lifts = {}
        for variant in args.variants:
            row = run(args.control, variant, base, args.out / f"vs-{variant}")
            lifts[variant] = float(row["lift"])  # type: ignore[arg-type]
            print(json.dumps({"run": "variant", **row}), flush=True)
        report_json = Path(load_bundle(args.bundle).manifest["runs"]["ranker"]) / "eval" / "report.json"
        offline = offline_metrics(json.loads(report_json.read_text(encoding="utf-8")))
        table = agreement(offline, lifts)
        print(json.dumps({"run": "agreement", "lifts": lifts, "offline": offline, "spearman": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
