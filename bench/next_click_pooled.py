"""Ranker against the tuned blend on next-click NDCG@10, pooled over several simulated worlds.

    .venv/bin/python bench/next_click_pooled.py --seeds 21 22 23 24 25 26 --root runs/seeds

For each seed: the main job on that world (`feedrank demo --out ROOT/sSEED --set sim.seed=SEED`,
skipped when ROOT/sSEED/ranker exists), then the next-click protocol on its ranker run, keeping
every test click's NDCG@10 so the ranker - blend difference is paired click by click. Prints one
line per world and the pooled difference with its standard error; writes ROOT/pooled.json. Choose
the seeds before looking: adding worlds until a difference turns significant is not a test.

`--models-only` runs only the main job's steps that the protocol reads (simulate, import, split,
the two-tower, the ranker and its click calibration, with the demo's configuration and seeds), not
its offline evaluation, bundle and service: the same models in about half the time.
`--train NAME --set KEY=VALUE ...` also trains, in each world, a ranker ROOT/sSEED/NAME with the
demo's ranker config and those overrides (skipped when it exists), for `--ranker NAME`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from feedrank.artifacts.config import RankerRunConfig
from feedrank.artifacts.store import load_retrieval
from feedrank.config import apply_overrides
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.eval import next_click
from feedrank.eval.calibrate import CALIBRATION_FILE, calibrate_ranker
from feedrank.eval.next_click_report import write_next_click_report
from feedrank.pipeline import DemoConfig
from feedrank.sim import simulate
from feedrank.train.run import train_ranker, train_retrieval
from feedrank.train.validation import ranker_validator, retrieval_validator


def per_click_ndcg(
    run: Path, options: next_click.NextClickOptions, report_dir: Path | None = None
) -> dict[str, list[float]]:
    """NDCG@10 of each kept test click for the ranker, the blend and the two-tower; the protocol's
    whole report goes to `report_dir` (next_click.md, .json) when one is given."""
    captured: dict[str, Any] = {}
    evaluate = next_click.evaluate_clicks

    def keep_per_event(*args: Any, **kwargs: Any) -> Any:
        captured["per_event"] = evaluate(*args, **kwargs)
        return captured["per_event"]

    next_click.evaluate_clicks = keep_per_event
    try:
        report = next_click.evaluate_next_click(run, options=options)
    finally:
        next_click.evaluate_clicks = evaluate
    if report_dir is not None:
        write_next_click_report(report, report_dir)
    per_event = captured["per_event"]
    keep = per_event.keep
    systems = ("ranker", "ranker (feed score)", "blend", "two-tower")
    return {s: per_event.metrics[s]["ndcg@10"][keep].tolist() for s in systems if s in per_event.metrics}


def train_models(out: Path, seed: int) -> None:
    """The main job's steps up to the calibrated ranker, as `feedrank demo --set sim.seed=SEED`
    runs them, into OUT (sim/, data/, split/, retrieval/, ranker/)."""
    cfg = apply_overrides(DemoConfig.for_preset("small"), [f"sim.seed={seed}"])
    simulate(cfg.sim, out / "sim", overwrite=True)
    data = import_source(import_tabular, out / "sim", out / "data", ImportOptions(overwrite=True))
    split_dir = split_dataset(data, out / "split", SplitSpec(), overwrite=True)
    shutil.rmtree(out / "retrieval", ignore_errors=True)
    validator = retrieval_validator(open_split(split_dir))
    train_retrieval(split_dir, out / "retrieval", cfg.retrieval, make_evaluate=validator)
    train_world_ranker(out, "ranker", cfg.ranker)


def train_world_ranker(out: Path, name: str, ranker_cfg: RankerRunConfig) -> None:
    """A ranker trained and calibrated on OUT's split and two-tower, into OUT/NAME (whose earlier
    contents, an unfinished run's checkpoints say, are removed first)."""
    shutil.rmtree(out / name, ignore_errors=True)
    towers, _ = load_retrieval(out / "retrieval")
    validator = ranker_validator(open_split(out / "split"), towers, ranker_cfg.weights.as_dict())
    train_ranker(out / "split", out / "retrieval", out / name, ranker_cfg, make_evaluate=validator)
    calibrate_ranker(out / name)


def done(run: Path) -> bool:
    """A ranker run that finished: its click calibration is the last thing written."""
    return (run / CALIBRATION_FILE).is_file()


def plot_worlds(results: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Each world's mean NDCG@10 of every system side by side, with standard-error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = list(next(iter(results.values())))
    fig = Figure(figsize=(max(6.0, 1.1 * len(results)), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(systems)
    for k, system in enumerate(systems):
        values = [np.array(r[system]) for r in results.values()]
        means = [v.mean() for v in values]
        errors = [v.std(ddof=1) / np.sqrt(v.size) for v in values]
        x = np.arange(len(results)) + (k - (len(systems) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errors, capsize=2, label=system)
    ax.set_xticks(np.arange(len(results)), [f"seed {s}" for s in results])
    ax.set_ylabel("next-click NDCG@10")
    ax.legend(fontsize=8, ncols=len(systems), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--root", type=Path, default=Path("runs/seeds"))
    parser.add_argument("--pool", choices=("union", "ann"), default="union", help="what the ranker re-scores")
    parser.add_argument("--candidates", type=int, default=500, help="size of the ranker's pool")
    parser.add_argument("--ranker", default="ranker", help="the ranker run's folder in each world")
    parser.add_argument("--tag", default="pooled", help="name of the JSON written under ROOT")
    parser.add_argument("--plot", type=Path, help="PNG of each world's NDCG@10 side by side")
    parser.add_argument(
        "--models-only", action="store_true", help="train the models alone, not the whole main job"
    )
    parser.add_argument("--train", metavar="NAME", help="train a ranker ROOT/sSEED/NAME in each world")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the demo's ranker config for --train (loss.catalog_negatives=50, ...)",
    )
    parser.add_argument("--report", action="store_true", help="write each world's report to RANKER/eval")
    parser.add_argument(
        "--versus",
        metavar="TAG",
        help="also print this ranker minus the ranker of ROOT/TAG.json (an earlier run over the same seeds)",
    )
    args = parser.parse_args()
    if args.overrides and not args.train:
        parser.error("--set needs --train NAME")
    options = next_click.NextClickOptions(ranker_pool=args.pool, ranker_candidates=args.candidates)
    results: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        out = args.root / f"s{seed}"
        if args.models_only and not done(out / "ranker"):
            train_models(out, seed)
        elif not args.models_only and not (out / "ranker").exists():
            cmd = [sys.executable, "-m", "feedrank", "demo", "--out", str(out), "--set", f"sim.seed={seed}"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if args.train and not done(out / args.train):
            train_world_ranker(out, args.train, apply_overrides(DemoConfig().ranker, args.overrides))
        report_dir = out / args.ranker / "eval" if args.report else None
        results[str(seed)] = per_click_ndcg(out / args.ranker, options, report_dir)
        ranker, blend = np.array(results[str(seed)]["ranker"]), np.array(results[str(seed)]["blend"])
        diff = ranker - blend
        print(
            f"seed {seed}: {diff.size} clicks, ranker {ranker.mean():.4f}, blend {blend.mean():.4f}, "
            f"ranker - blend {diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.4f}",
            flush=True,
        )
    (args.root / f"{args.tag}.json").write_text(json.dumps(results))
    diffs = np.concatenate([np.array(r["ranker"]) - np.array(r["blend"]) for r in results.values()])
    se = diffs.std(ddof=1) / np.sqrt(diffs.size)
    print(f"pooled: {diffs.size} clicks, ranker - blend {diffs.mean():+.4f} ± {se:.4f}")
    # Worlds as the unit: the spread between worlds, not only between clicks, in the error.
    by_world = np.array([np.mean(np.array(r["ranker"]) - np.array(r["blend"])) for r in results.values()])
    if by_world.size > 1:
        world_se = by_world.std(ddof=1) / np.sqrt(by_world.size)
        print(
            f"per world: mean {by_world.mean():+.4f} ± {world_se:.4f} over {by_world.size} worlds, "
            f"ranker ahead in {int((by_world > 0).sum())}"
        )
    if args.plot:
        plot_worlds(results, args.plot)
    if all("ranker (feed score)" in r for r in results.values()):
        feed = np.concatenate(
            [np.array(r["ranker (feed score)"]) - np.array(r["blend"]) for r in results.values()]
        )
        feed_se = feed.std(ddof=1) / np.sqrt(feed.size)
        print(f"pooled: ranker by its feed score - blend {feed.mean():+.4f} ± {feed_se:.4f}")
    if args.versus:
        print_versus(results, json.loads((args.root / f"{args.versus}.json").read_text()), args.versus)


def print_versus(results: dict[str, dict[str, list[float]]], other: dict[str, Any], tag: str) -> None:
    """This run's ranker minus another run's ranker over the same worlds' same test clicks."""
    diffs = []
    for seed, systems in results.items():
        mine, theirs = np.array(systems["ranker"]), np.array(other[seed]["ranker"])
        if mine.size != theirs.size or not np.array_equal(systems["blend"], other[seed]["blend"]):
            raise SystemExit(f"seed {seed}: {tag}.json was measured on other clicks")
        diff = mine - theirs
        diffs.append(diff)
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        print(f"seed {seed}: ranker - {tag} ranker {diff.mean():+.4f} ± {se:.4f}")
    pooled = np.concatenate(diffs)
    se = pooled.std(ddof=1) / np.sqrt(pooled.size)
    print(f"pooled: ranker - {tag} ranker {pooled.mean():+.4f} ± {se:.4f} over {pooled.size} clicks")


if __name__ == "__main__":
    main()
