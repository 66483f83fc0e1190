"""The real-data benchmark: the Globo.com G1 slice, end to end, with wall time and peak RSS per step.

    .venv/bin/python bench/real_news.py --root runs/real_news

Steps, each a `feedrank` command in a child process under `/usr/bin/time -v` (its wall time and
peak RSS are read from there), `nice`d, with its address space capped by `prlimit --as`:

1. import   `feedrank data import ../shared/data/globo-g1-dev --format globo`
2. split    train = days 1-6 (from 2017-10-01 03:00 UTC), validation = day 7 (2017-10-07 UTC),
            test = day 8 (2017-10-08 UTC); sessions that span a cut go to the later part
3. retrieval `feedrank train retrieval` on the clicks of the last 24 hours of the train part,
            zero-initialised id rows, early stopping on next-click NDCG@10 of validation clicks
4. ranker   `feedrank train ranker` on the last 6 hours of the train part, every click a
            next-click query with the click-only defaults: 5 live-catalog negatives and 10 drawn
            from the click's own candidate pool (replayed forward in time), inputs built per
            batch; the news columns (NEWS_FEATURES + NEWS_NOW_NAMES), a listwise term on the
            click head, no source columns, no tower vectors, one epoch (ranker "LFe1" of
            docs/real_news.md, session 6); same selection metric
5. evaluate `feedrank evaluate RANKER --protocol next-click`: on sampled test-day clicks, every
            baseline (recent popularity over 10 min / 1 h / 24 h, co-visitation with the previous
            click, their blend tuned on validation-day clicks), the two-tower and the ranker,
            overall and for cold/warm items and users, with standard errors; the baselines'
            validation-day NDCG@10 beside

Model training uses limited settings (`--retrieval-set`, `--ranker-set`, defaults below) because
the defaults do not fit this 2-core, shared box: the ranker on the whole click-only log grew to
23 GB before its example building was bounded. Everything is tuned on validation only; the test
day is reported as it comes. Writes ROOT/bench.json (per-step wall time, peak RSS, exit status;
the next-click report's headline) and prints a summary; the report itself is ROOT/eval/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from feedrank.data.history import NEWS_FEATURES, NEWS_NOW_NAMES

REPO = Path(__file__).resolve().parents[1]
FEEDRANK = [sys.executable, "-m", "feedrank"]
SLICE = REPO.parent / "shared" / "data" / "globo-g1-dev"
VALID_START = "2017-10-07T00:00:00"
TEST_START = "2017-10-08T00:00:00"

# Limited settings that fit the box (see the module docstring); override with --*-set.
RETRIEVAL_SET = (
    "train.max_steps=300",
    "train.eval_every=100",
    "train.patience=2",
    "train.progress=false",
    # Zero-initialised id rows: an article first seen after the train cut (two thirds of the test
    # day's clicks) and the user histories full of them look up the "unknown" row, not a random
    # vector; and the clicks of the last 24 h only: the items read the day after next are those
    # of the latest day. Measured on the validation day with the train cut a day earlier (the
    # test day's distance from its cut): warm-item NDCG@10 0.0003 (chance) -> 0.022
    # (docs/real_news.md, "Session 8").
    "model.embedding_init=zero",
    "loss.train_window_h=24",
)
RANKER_SET = (
    "loss.train_window_h=6",
    "loss.max_clicks=0",  # every click of the window (the default keeps the latest 20,000)
    "loss.listwise_weight=1",
    "counters=[" + ",".join(f'"{name}"' for name in NEWS_FEATURES + NEWS_NOW_NAMES) + "]",
    "sources=[]",
    "model.tower_inputs=false",
    "model.counter_norm=layer",  # the normalisation docs/real_news.md's ranker E was measured with
    "train.epochs=1",
    "train.eval_every=400",
    "train.patience=2",
    "train.progress=false",
)


def timed(name: str, command: list[str], log_dir: Path, cap_gb: float) -> dict[str, Any]:
    """Run `command` niced, capped and under /usr/bin/time -v; its wall time, peak RSS and status."""
    time_file = log_dir / f"{name}.time"
    capped = ["prlimit", f"--as={int(cap_gb * 2**30)}", "--"] if cap_gb > 0 else []
    full = ["nice", "-n", "5", "/usr/bin/time", "-v", "-o", str(time_file), *capped, *command]
    print(f"[{name}] {' '.join(command)}", flush=True)
    start = time.monotonic()
    with (log_dir / f"{name}.log").open("w", encoding="utf-8") as log:
        status = subprocess.run(full, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, check=False).returncode
    wall = time.monotonic() - start
    text = time_file.read_text(encoding="utf-8") if time_file.exists() else ""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    step = {
        "command": " ".join(command),
        "status": status,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(int(rss.group(1)) / 1024) if rss else None,
    }
    print(f"[{name}] status {status}, {wall:.0f} s, peak RSS {step['peak_rss_mib']} MiB", flush=True)
    return step


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def _commands(args: argparse.Namespace, root: Path) -> dict[str, list[str]]:
    """Each step's feedrank command line, in order."""
    data, split, retrieval, ranker = (str(root / n) for n in ("data", "split", "retrieval", "ranker"))
    evaluate = ["--out", str(root / "eval"), "--max-events", str(args.max_events)]
    evaluate += ["--valid-events", str(args.valid_events)]
    if args.skip_session_first:
        evaluate.append("--skip-session-first")
    cuts = ["--valid-start", VALID_START, "--test-start", TEST_START, "--overwrite"]
    retrieval_set, ranker_set = _sets(args.retrieval_set), _sets(args.ranker_set)
    return {
        "import": [
            *FEEDRANK,
            "data",
            "import",
            str(args.slice),
            "--format",
            "globo",
            "--out",
            data,
            "--overwrite",
        ],
        "split": [*FEEDRANK, "data", "split", data, "--out", split, *cuts],
        "retrieval": [*FEEDRANK, "train", "retrieval", "--data", split, "--out", retrieval, *retrieval_set],
        "ranker": [
            *FEEDRANK,
            "train",
            "ranker",
            "--data",
            split,
            "--retrieval",
            retrieval,
            "--out",
            ranker,
            *ranker_set,
        ],
        "evaluate": [*FEEDRANK, "evaluate", str(root / args.evaluate), "--protocol", "next-click", *evaluate],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "real_news")
    parser.add_argument("--slice", type=Path, default=Path(os.environ.get("FEEDRANK_GLOBO", SLICE)))
    parser.add_argument("--max-events", type=int, default=5_000, help="sampled test-day clicks")
    parser.add_argument("--valid-events", type=int, default=3_000, help="validation clicks for the blend")
    parser.add_argument("--retrieval-set", nargs="*", default=list(RETRIEVAL_SET))
    parser.add_argument("--ranker-set", nargs="*", default=list(RANKER_SET))
    parser.add_argument("--skip-session-first", action="store_true", help="next-click: drop session starts")
    parser.add_argument("--cap-gb", type=float, default=12.0, help="address-space cap per step (0: none)")
    parser.add_argument(
        "--evaluate", choices=("ranker", "retrieval"), default="ranker", help="the run next-click ranks with"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="steps not to run (e.g. ranker)")
    parser.add_argument("--from-step", default="import", help="resume at this step (earlier outputs kept)")
    args = parser.parse_args()
    root: Path = args.root
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    steps = _commands(args, root)
    names = list(steps)
    if args.from_step not in steps:
        parser.error(f"--from-step must be one of {names}")
    bench_file = root / "bench.json"
    results: dict[str, Any] = json.loads(bench_file.read_text()) if bench_file.exists() else {}
    results.setdefault("steps", {})
    started = time.monotonic()
    for name in names[names.index(args.from_step) :]:
        if name in args.skip:
            continue
        if name in ("retrieval", "ranker"):
            shutil.rmtree(root / name, ignore_errors=True)  # a fresh run, not a resumed one
        step = timed(name, steps[name], logs, args.cap_gb)
        results["steps"][name] = step
        bench_file.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        if step["status"] != 0:
            print(f"step {name} failed; see {logs / (name + '.log')}", file=sys.stderr)
            return 1
    results["total_wall_s"] = round(sum(s["wall_s"] for s in results["steps"].values()), 1)
    results["this_invocation_s"] = round(time.monotonic() - started, 1)
    report_file = root / "eval" / "next_click.json"
    if "evaluate" in args.skip:  # the steps' timings alone (an earlier report would be stale)
        bench_file.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(results, indent=2))
        return 0
    report = json.loads(report_file.read_text(encoding="utf-8"))
    results["next_click"] = {
        "events": report["num_events"],
        "blend": {"weights": report["blend_weights"], "window_min": report["blend_window_min"]},
        "valid_ndcg@10": report.get("valid_ndcg", {}),
        "test_ndcg@10": {s: [m["ndcg@10"], m["ndcg@10_se"]] for s, m in report["overall"].items()},
        # model − baseline over the same clicks: [difference, paired SE, relative]
        "test_paired_ndcg@10": {
            segment: {pair: [d["diff"], d["diff_se"], d["relative"]] for pair, d in pairs.items()}
            for segment, pairs in report.get("paired", {}).items()
        },
    }
    bench_file.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
