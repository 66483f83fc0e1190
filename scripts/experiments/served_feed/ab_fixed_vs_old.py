"""Issue 15's online A/B: the fixed system against the system as it was when the issue was filed,
and each against recent popularity served through the same path; rerun it whenever the fixed
system improves.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/experiments/served_feed/ab_fixed_vs_old.py runs/demo \
        [--users 10000] [--days 2] [--requests 1000] [--tests old-vs-fixed ...]

DEMO is a `feedrank demo` output of the current code: its ranker and bundle are the fixed system.
The old system is rebuilt in DEMO/old on the same split and two-tower with main 0e82ede's
defaults, which the issue's fixes changed:
- ranker: `model.counter_norm=layer` (a LayerNorm across each row's counters),
  `train.patience=1` (early stopping after one evaluation without a gain), and two defaults that
  came after the session-7 run of this script: `counters` without the category-affinity columns
  (AFFINITY_NAMES, e487257) and `loss.unshown_heads` = every head (0e82ede counted the 50 catalog
  negatives in every head's loss; session 8's default counts them in the click head's only);
- serving: the re-ranking order drop, freshness, clickbait, cap (a second freshness decay).
Every other default of 0e82ede is today's for this world (the ranker's negatives resolve to the
same counts: 50 catalog negatives per click, no pool or popular ones). Steps (each skipped when
its output exists; --force redoes them), all with the command line a user would type, under
DEMO/issue15/:

1. old/ranker: `feedrank train ranker --data DEMO/split --retrieval DEMO/retrieval --set ...`
2. old/bundle: `feedrank bundle --ranker old/ranker`
3. within impressions (test part): `feedrank evaluate RANKER --served-requests 0` for the old
   ranker (and for the fixed one unless the demo's DEMO/ranker/eval/report.json exists)
4. the served feed (test part, `evaluate_served`): each bundle with its own re-ranking order
5. three simulated A/B tests (`feedrank abtest simulate`, same seed, users and days):
   old -> fixed, popularity-served -> fixed, popularity-served -> old; the popularity arm
   serves through the fixed bundle's candidates with today's re-ranking default.
Then summary-USERSu-DAYSd-seedSEED.md: within-impression and served rows side by side, and each
test's lifts with their 95 % intervals (--tests picks some of the three).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from feedrank.data.history import COUNTER_NAMES, RECENCY_NAMES
from feedrank.models.ranker import HEADS

OLD_RANKER = [
    "--set", "model.counter_norm=layer",
    "--set", "train.patience=1",
    "--set", "counters=" + json.dumps(list(COUNTER_NAMES + RECENCY_NAMES), separators=(",", ":")),
    "--set", "loss.unshown_heads=" + json.dumps(list(HEADS), separators=(",", ":")),
]  # fmt: skip
OLD_ORDER = ("drop", "freshness", "clickbait", "cap")
OLD_RERANK = "rerank.order=" + json.dumps(list(OLD_ORDER), separators=(",", ":"))
TESTS = {  # name: (control bundle key, control policy, treatment bundle key, treatment policy)
    "old-vs-fixed": ("old", "ranker", "fixed", "ranker"),
    "popularity-vs-fixed": ("fixed", "popularity-served", "fixed", "ranker"),
    "popularity-vs-old": ("fixed", "popularity-served", "old", "ranker"),
}
METRICS = ("time spent (s/user)", "CTR", "clicks/user", "shares/user", "hides/user", "requests/user")


def feedrank(*args: str) -> None:
    command = [sys.executable, "-m", "feedrank", *args]
    print("$ feedrank " + " ".join(args), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def step(path: Path, force: bool) -> bool:
    """True when `path` must be (re)built."""
    if path.exists() and force:
        shutil.rmtree(path)
    return not path.exists()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=1000, help="served-feed requests per system")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tests", nargs="+", choices=list(TESTS), default=list(TESTS))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    demo, root = args.demo, args.demo / "issue15"
    old = demo / "old"
    bundles = {"fixed": demo / "bundle", "old": old / "bundle"}
    serve_sets: dict[str, list[str]] = {"fixed": [], "old": [OLD_RERANK]}
    root.mkdir(parents=True, exist_ok=True)

    if step(old / "ranker" / "model.pt", args.force):
        shutil.rmtree(old / "ranker", ignore_errors=True)
        feedrank("train", "ranker", "--data", str(demo / "split"), "--retrieval", str(demo / "retrieval"),
                 "--out", str(old / "ranker"), *OLD_RANKER)  # fmt: skip
    if step(bundles["old"], args.force):
        feedrank("bundle", "--ranker", str(old / "ranker"), "--out", str(bundles["old"]))
    within = {}
    for name, run in (("fixed", demo / "ranker"), ("old", old / "ranker")):
        out = root / f"eval-{name}"
        if name == "fixed" and (run / "eval" / "report.json").exists() and not args.force:
            out = run / "eval"  # the demo's own evaluation: the same within-impression rows
        elif step(out / "report.json", args.force):
            feedrank("evaluate", str(run), "--served-requests", "0", "--out", str(out))
        within[name] = json.loads((out / "report.json").read_text())["impressions"]["ranker"]

    served = {name: served_feed(bundles[name], serve_sets[name], root / f"served-{name}.json", args)
              for name in bundles}  # fmt: skip

    tests = {}
    size = f"{args.users}u-{args.days:g}d-seed{args.seed}"
    for name in args.tests:
        control, c_policy, treatment, t_policy = TESTS[name]
        out = root / f"ab-{name}-{size}"
        if step(out / "report.json", args.force):
            feedrank(
                "abtest", "simulate", str(bundles[control]), str(bundles[treatment]),
                "--control-policy", c_policy, "--treatment-policy", t_policy,
                *[a for s in serve_sets[control] if c_policy == "ranker" for a in ("--control-set", s)],
                *[a for s in serve_sets[treatment] for a in ("--treatment-set", s)],
                "--users", str(args.users), "--days", f"{args.days:g}", "--seed", str(args.seed),
                "--out", str(out),
            )  # fmt: skip
        tests[name] = json.loads((out / "report.json").read_text())
    text = summary(within, served, tests, args)
    (root / f"summary-{size}.md").write_text(text, encoding="utf-8")
    print(text)


def served_feed(bundle: Path, serve_set: list[str], path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The served feed's rows of `bundle` served with `serve_set` (cached in `path`)."""
    if path.exists() and not args.force:
        cached: dict[str, Any] = json.loads(path.read_text())
        return cached
    from feedrank.config import apply_overrides
    from feedrank.eval.served import ServedOptions, evaluate_served
    from feedrank.serve.settings import ServeSettings

    started = time.perf_counter()
    settings = apply_overrides(ServeSettings(), serve_set)
    report = evaluate_served(bundle, options=ServedOptions(requests=args.requests), settings=settings)
    rows = report.systems["served (ranker)"] | {
        f"panel_{k}": v for k, v in report.panel["served (ranker)"].items()
    }
    rows["wall_s"] = time.perf_counter() - started
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    how = " ".join(serve_set) or "defaults"
    print(f"served feed of {bundle} ({how}): {rows['wall_s']:.0f} s", flush=True)
    return rows


def summary(
    within: dict[str, dict[str, float]],
    served: dict[str, dict[str, Any]],
    tests: dict[str, dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    def pm(row: dict[str, Any], key: str) -> str:
        se = row.get(f"{key}_se")
        return f"{row[key]:.3f} ± {se:.3f}" if se is not None and math.isfinite(se) else f"{row[key]:.3f}"

    lines = [
        f"# Issue 15 A/B on {args.demo}: fixed (current defaults) vs old (0e82ede defaults)",
        "",
        "| test part | old | fixed |",
        "|---|---:|---:|",
    ]
    for key, label in (("gauc", "GAUC"), ("ndcg@10", "nDCG@10"), ("slate_value_share", "slate value share")):
        old, fixed = within["old"][key], within["fixed"][key]
        lines.append(f"| within impressions: {label} | {old:.4f} | {fixed:.4f} |")
    for key, label in (
        ("utility_share@20", "served: share of the oracle's utility@20"),
        ("hr@10", "served: HR@10 of the next click"),
        ("new_user_overlap@10", "served: overlap with a new user's top 10"),
        ("panel_jaccard@10", "served: panel inter-user Jaccard of the top 10"),
    ):
        lines.append(f"| {label} | {pm(served['old'], key)} | {pm(served['fixed'], key)} |")
    lines += [
        "",
        f"Simulated A/B tests: {args.users:,} users, {args.days:g} days, seed {args.seed}.",
        "",
        "| test | metric | control | treatment | lift | 95% CI | p |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for name, report in tests.items():
        for metric in report["metrics"]:
            if metric["name"] not in METRICS:
                continue
            ci = f"[{metric['ci_low']:+.2%}, {metric['ci_high']:+.2%}]"
            p = "< 0.0001" if metric["p_value"] < 1e-4 else f"{metric['p_value']:.4f}"
            lines.append(
                f"| {name} | {metric['name']} | {metric['control']:.4g} | {metric['treatment']:.4g} | "
                f"{metric['lift']:+.2%} | {ci} | {p} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
