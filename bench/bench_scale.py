"""Scale benchmark: wall time and peak RSS of each pipeline step, against the number of rows.

    .venv/bin/python bench/bench_scale.py sim --impressions 1000000 --out /tmp/scale
    .venv/bin/python bench/bench_scale.py sim --preset medium --out /tmp/scale        # 10M impressions
    .venv/bin/python bench/bench_scale.py real ../shared/data/globo-g1-dev/clicks.parquet --out /tmp/scale
    .venv/bin/python bench/bench_scale.py real ../shared/data/globo-g1-dev --format globo --defaults \
        --out /tmp/scale
    .venv/bin/python bench/bench_scale.py plot --out /tmp/scale                       # scale.png

A case runs simulate (sim only) → import → split → train retrieval → train ranker (1 epoch each;
`--defaults`: every default setting, as a new user runs them) → evaluate (the ranker, or the
retrieval run alone when the ranker failed), each step as its own `feedrank` process, so its
peak RSS is its own. RSS is also sampled from /proc every 0.2 s over the process and its
children; a step that passes `--cap-gb` is killed (the machine is shared) and recorded as such,
and the steps after it are skipped. The real slice is evaluated with the next-click protocol
(`--max-events`), a simulated world with the offline one.
Each step runs under `/usr/bin/time -v` and appends one JSON line to OUT/results.jsonl: case,
rows (impressions), step, wall_s, cpu_s (user + system), peak_rss_mib (time's maximum resident
set size), sampled_rss_mib, status, and the 1-minute load average at the step's start and end.
`plot` draws every recorded step's time and memory against rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

PRESET_IMPRESSIONS = {"tiny": 20_000, "small": 250_000, "medium": 10_000_000, "large": 100_000_000}
FEEDRANK = [sys.executable, "-m", "feedrank"]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and all its descendants, in KiB (0 once it is gone)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total


def load_average() -> float:
    """The machine's 1-minute load average (the box is shared: it says how loaded a step ran)."""
    return round(os.getloadavg()[0], 2)


def run_step(args: list[str], cap_gb: float, log_path: Path) -> dict[str, Any]:
    """Run one step under `/usr/bin/time -v`; its wall time, peak RSS (time's maximum resident
    set size where time wrote it, else the sampled one) and how it ended."""
    time_path = log_path.with_suffix(".time")
    timed = ["/usr/bin/time", "-v", "-o", str(time_path)] if Path("/usr/bin/time").exists() else []
    load_start = load_average()
    start = time.perf_counter()
    with log_path.open("w") as log:
        # Its own process group, so that a kill above the cap reaches the step under `time`.
        proc = subprocess.Popen([*timed, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        peak, status = 0, "ok"
        while proc.poll() is None:
            peak = max(peak, rss_kib(proc.pid))
            if peak > cap_gb * 2**20:
                os.killpg(proc.pid, signal.SIGKILL)
                status = f"killed above {cap_gb} GB"
                break
            time.sleep(0.2)
        rc = proc.wait()
    wall = time.perf_counter() - start
    if status == "ok" and rc != 0:
        status = f"exit {rc}"
    sampled = round(peak / 1024)
    text = time_path.read_text() if time_path.is_file() else ""
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    # CPU seconds (user + system) of the step: on a box other jobs load, wall time stretches with
    # the load while the CPU time the step needed does not (much).
    cpu = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu), 1) if cpu else None,
        "peak_rss_mib": round(int(found.group(1)) / 1024) if found else sampled,
        "sampled_rss_mib": sampled,
        "status": status,
        "load_start": load_start,
        "load_end": load_average(),
    }


def pipeline(
    case: str, src: Path | None, rows: int, work: Path, opts: argparse.Namespace
) -> list[tuple[str, list[str]]]:
    sim, data, split = work / "sim", work / "data", work / "split"
    tt, ranker = work / "retrieval", work / "ranker"
    steps: list[tuple[str, list[str]]] = []
    if src is None:
        preset = opts.preset or "medium"
        steps.append(
            (
                "simulate",
                [
                    *FEEDRANK,
                    "simulate",
                    "--preset",
                    preset,
                    "--set",
                    f"num_impressions={rows}",
                    "--out",
                    str(sim),
                ],
            )
        )
        src = sim
    fmt = opts.format or ("parquet" if src.suffix == ".parquet" or src == sim else "csv")
    steps += [
        ("import", [*FEEDRANK, "data", "import", str(src), "--format", fmt, "--out", str(data)]),
        ("split", [*FEEDRANK, "data", "split", str(data), "--out", str(split)]),
        (
            "train retrieval",
            [
                *FEEDRANK,
                "-v",
                "train",
                "retrieval",
                "--data",
                str(split),
                "--out",
                str(tt),
                *opts.retrieval_set,
            ],
        ),
        (
            "train ranker",
            [
                *FEEDRANK,
                "-v",
                "train",
                "ranker",
                "--data",
                str(split),
                "--retrieval",
                str(tt),
                "--out",
                str(ranker),
                *opts.ranker_set,
            ],
        ),
    ]
    evaluate = [*FEEDRANK, "-v", "evaluate", "RANKER_OR_RETRIEVAL"]
    if case == "real":
        evaluate += ["--protocol", "next-click", "--max-events", str(opts.max_events)]
    steps.append(("evaluate", evaluate))
    return steps


def run_case(case: str, src: Path | None, rows: int, opts: argparse.Namespace) -> None:
    out: Path = opts.out
    work = out / f"{case}-{rows}"
    work.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    for name, args in pipeline(case, src, rows, work, opts):
        target = Path(args[args.index("--out") + 1]) if "--out" in args else None
        if target is not None and target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        if "RANKER_OR_RETRIEVAL" in args:  # evaluate the retrieval run alone when the ranker failed
            ranker_ok = (work / "ranker" / "run.json").is_file()
            args = [
                str(work / ("ranker" if ranker_ok else "retrieval")) if a == "RANKER_OR_RETRIEVAL" else a
                for a in args
            ]
        record = {
            "case": case,
            "rows": rows,
            "step": name,
            **run_step(args, opts.cap_gb, work / f"{name.replace(' ', '_')}.log"),
        }
        record["command"] = " ".join(a if a != sys.executable else "python" for a in args)
        print(json.dumps(record), flush=True)
        with results.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if record["status"] != "ok":
            print(f"{name} did not finish ({record['status']}); see {work}", file=sys.stderr)
            if name != "train ranker":  # every other step feeds the next
                break


def plot(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for step in dict.fromkeys(r["step"] for r in records):
        for case, marker in (("sim", "o"), ("real", "*")):
            pts = sorted(
                (r["rows"], r["wall_s"], r["peak_rss_mib"], r["status"])
                for r in records
                if r["step"] == step and r["case"] == case
            )
            if not pts:
                continue
            label = f"{step} ({'simulated' if case == 'sim' else 'real slice'})"
            done = [p for p in pts if p[3] == "ok"]
            line = ax_t.plot([p[0] for p in done], [p[1] for p in done], marker=marker, label=label)[0]
            ax_m.plot(
                [p[0] for p in done], [p[2] / 1024 for p in done], marker=marker, color=line.get_color()
            )
            for p in pts:  # a step that did not finish: a cross at where it was stopped, not a point
                if p[3] != "ok":
                    for ax, y in ((ax_t, p[1]), (ax_m, p[2] / 1024)):
                        ax.plot([p[0]], [y], marker="x", markersize=9, color=line.get_color())
                        ax.annotate(f"{step}: stopped", (p[0], y), fontsize=7)
    for ax, title in ((ax_t, "wall time (s)"), (ax_m, "peak RSS (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("impressions (rows)")
        ax.set_title(title)
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3)
    ax_m.axhline(3.0, color="grey", linestyle="--", linewidth=0.8)
    ax_t.legend(fontsize=7)
    fig.suptitle("feedrank pipeline cost against log size (2-core shared box)")
    fig.tight_layout()
    path = out / "scale.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", choices=["sim", "real", "plot"])
    parser.add_argument("source", nargs="?", type=Path, help="real: the click log (parquet)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESET_IMPRESSIONS), default=None)
    parser.add_argument("--impressions", type=int, default=0, help="sim: rows (default: the preset's)")
    parser.add_argument("--cap-gb", type=float, default=6.0, help="kill a step above this RSS")
    parser.add_argument("--max-events", type=int, default=20_000, help="real: next-click test clicks")
    parser.add_argument("--retrieval-set", action="append", default=[], help="KEY=VALUE for train retrieval")
    parser.add_argument("--ranker-set", action="append", default=[], help="KEY=VALUE for train ranker")
    parser.add_argument("--format", default=None, help="import format (default: parquet or csv by suffix)")
    parser.add_argument(
        "--defaults", action="store_true", help="train both models with their default settings (no --set)"
    )
    opts = parser.parse_args()
    # 1 whole epoch of each model unless told otherwise (the cost of an epoch is what scales with
    # rows): no sample, click or row budget.
    one_epoch = {
        "retrieval_set": ["train.epochs=1", "train.max_samples=0"],
        "ranker_set": ["train.epochs=1", "loss.max_clicks=0", "loss.max_rows=0"],
    }
    for name in ("retrieval_set", "ranker_set"):
        values = getattr(opts, name) or ([] if opts.defaults else one_epoch[name])
        setattr(opts, name, [arg for v in values for arg in ("--set", v)])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if opts.case == "plot":
        print(plot(opts.out))
        return
    if opts.case == "real":
        if opts.source is None:
            parser.error("real needs the click log")
        log = opts.source / "clicks.parquet" if opts.source.is_dir() else opts.source
        rows = pl.scan_parquet(log).select(pl.len()).collect().item()
        run_case("real", opts.source, rows, opts)
    else:
        rows = opts.impressions or PRESET_IMPRESSIONS[opts.preset or "medium"]
        run_case("sim", None, rows, opts)


if __name__ == "__main__":
    main()
