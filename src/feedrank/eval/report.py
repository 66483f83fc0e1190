"""Writing an offline evaluation: JSON for machines, Markdown for people, PNG plots beside them.

Systems are always columns side by side, the model next to the baselines and (in the simulator)
the oracle, so a reader compares them at a glance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from feedrank.eval.next_click import NextClickReport
from feedrank.eval.offline import OfflineReport
from feedrank.eval.plots import plot_metric_at_k, plot_reliability, plot_system_comparison
from feedrank.eval.served_report import gap_rows, served_json, served_markdown

RETRIEVAL_ROWS = ("recall", "ndcg", "hit_rate", "utility", "coverage")
IMPRESSION_ROWS = (
    "auc",
    "gauc",
    "mrr",
    "ndcg@5",
    "ndcg@10",
    "precision@5",
    "value_ndcg@10",
    "slate_value_share",
)


def write_report(report: OfflineReport, out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and the plots into `out_dir`; returns the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    ks = sorted(
        {int(k.split("@")[1]) for m in report.retrieval.values() for k in m if k.startswith("recall@")}
    )
    curves = {name: {k: m[f"recall@{k}"] for k in ks} for name, m in report.retrieval.items()}
    paths["recall_at_k"] = plot_metric_at_k(curves, out_dir / "retrieval_recall_at_k.png", metric="recall")
    if any("utility@10" in m for m in report.retrieval.values()):
        utility = {name: {k: m[f"utility@{k}"] for k in ks} for name, m in report.retrieval.items()}
        paths["utility_at_k"] = plot_metric_at_k(
            utility, out_dir / "retrieval_utility_at_k.png", metric="utility"
        )
    shown = [
        m for m in ("auc", "gauc", "ndcg@10", "value_ndcg@10", "slate_value_share") if _everywhere(report, m)
    ]
    paths["impressions"] = plot_system_comparison(
        report.impressions,
        out_dir / "impressions_comparison.png",
        metrics=shown,
        title="Ranking within impressions",
    )
    if report.rerank:
        paths["rerank"] = plot_system_comparison(
            report.rerank,
            out_dir / "rerank_effect.png",
            metrics=[
                m
                for m in (
                    "intra_list_diversity",
                    "catalog_coverage",
                    "publisher_exposure_gini",
                    "clickbait_share",
                    "hit_rate@k",
                )
                if all(m in r for r in report.rerank.values())
            ],
            title="Re-ranking: effect on the feed (same candidates)",
        )
    if report.reliability is not None:
        paths["reliability"] = plot_reliability(
            {"ranker (click)": report.reliability}, out_dir / "reliability.png"
        )
    paths["json"] = out_dir / "report.json"
    paths["json"].write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text(to_markdown(report, {k: p.name for k, p in paths.items()}), encoding="utf-8")
    return paths


def _everywhere(report: OfflineReport, metric: str) -> bool:
    return all(metric in m for m in report.impressions.values())


def to_json(report: OfflineReport) -> dict[str, Any]:
    return {
        "run": report.run,
        "data": report.data,
        "kind": report.kind,
        "retrieval": report.retrieval,
        "impressions": report.impressions,
        "calibration": report.calibration,
        "reliability": None if report.reliability is None else report.reliability.to_dicts(),
        "oracle_share": report.oracle_share,
        "weight_sweep": report.sweep,
        "rerank_effect": report.rerank,
        "served": None if report.served is None else served_json(report.served),
        "notes": report.notes,
    }


def to_markdown(report: OfflineReport, files: dict[str, str]) -> str:
    lines = [
        f"# Offline evaluation of `{report.run}`",
        "",
        f"Data: `{report.data}` ({report.kind} run). Every system is scored on the same rows.",
        "",
        "## Retrieval over the live catalog",
        "",
        "Sampled test requests with a click; each system ranks every item live at the request time.",
        "`utility@K` is the mean ground-truth utility of the top K (simulator only).",
        "",
    ]
    retrieval_metrics = [
        k
        for k in next(iter(report.retrieval.values()), {})
        if k.split("@")[0] in RETRIEVAL_ROWS or k == "mrr"
    ]
    lines += table(report.retrieval, retrieval_metrics)
    lines += ["", f"![recall@K]({files['recall_at_k']})"]
    if "utility_at_k" in files:
        lines += [f"![utility@K]({files['utility_at_k']})"]
    lines += ["", "## Ranking within impressions", ""]
    lines += table(report.impressions, [m for m in IMPRESSION_ROWS if _everywhere(report, m)])
    lines += ["", f"![impressions]({files['impressions']})", ""]
    if report.served is not None:  # the served feed right beside the within-impression rows
        lines += gap_rows(report.impressions.get("ranker", {}), report.served, "served (ranker)")
        lines += served_markdown(report.served)
    if report.calibration is not None:
        lines += ["## Calibration of the ranker's click probability", "", "| measure | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in report.calibration.items()]
        lines += ["", f"![reliability]({files['reliability']})", ""]
    if report.oracle_share:
        lines += [
            "## Fraction of the oracle achieved",
            "",
            "Each system's value divided by the oracle's (the simulator's expected utility). Against logged",
            "clicks a system can beat the oracle (clicks also depend on what the logging policy chose to",
            "show); utility@K and the slate value cannot, so those are the honest ceilings.",
            "",
        ]
        retrieval_share = {k: v for k, v in report.oracle_share.items() if not k.startswith("impressions/")}
        impression_share = {
            k.removeprefix("impressions/"): v
            for k, v in report.oracle_share.items()
            if k.startswith("impressions/")
        }
        lines += ["Retrieval:", ""]
        lines += table(retrieval_share, [f"utility@{k}" for k in (10, 100, 500)] + ["recall@100", "ndcg@10"])
        lines += ["", "Within impressions:", ""]
        lines += table(impression_share, ["gauc", "ndcg@10", "value_ndcg@10", "slate_value_share"])
        lines += [""]
    if report.sweep:
        lines += [
            "## Engagement-weight sweep (validation part)",
            "",
            "The ranker's heads combined with each weighting; judged by the share of the oracle's slate "
            "value (simulator) and value-weighted nDCG@10 (logs).",
            "",
        ]
        cols = list(dict.fromkeys(k for row in report.sweep for k in row if k != "weighting"))
        lines += ["| weighting | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for row in report.sweep:
            lines.append(f"| {row['weighting']} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        best = max(report.sweep, key=lambda r: r.get("slate_value_share", r["value_ndcg@10"]))
        lines += ["", f"Best weighting: **{best['weighting']}**.", ""]
    if report.rerank:
        lines += [
            "## Re-ranking: effect on the feed",
            "",
            "Sampled test requests replayed through serving: two-tower candidates over the live catalog,",
            "ranker scores, then each re-ranking configuration on the same candidates (top 20).",
            "",
        ]
        metrics = list(next(iter(report.rerank.values())))
        lines += table(report.rerank, metrics)
        lines += ["", f"![re-ranking]({files['rerank']})", ""]
    for note in report.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def table(results: dict[str, dict[str, float]], metrics: list[str]) -> list[str]:
    """A Markdown table: one row per metric, one column per system."""
    names = list(results)
    out = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for metric in metrics:
        out.append(f"| {metric} | " + " | ".join(_fmt(results[n].get(metric)) for n in names) + " |")
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_next_click_report(report: NextClickReport, out_dir: Path) -> dict[str, Path]:
    """next_click.md / next_click.json / next_click.png: systems side by side, overall and by segment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = ["hr@10", "hr@20", "ndcg@10", "mrr@20"]
    paths = {
        "plot": plot_system_comparison(
            report.overall,
            out_dir / "next_click.png",
            metrics=metrics,
            title="Next click over the live catalog",
        ),
        "json": out_dir / "next_click.json",
        "markdown": out_dir / "next_click.md",
    }
    paths["json"].write_text(json.dumps(report.__dict__, indent=2, default=str) + "\n", encoding="utf-8")
    a, b = report.blend_weights
    window = f"{report.blend_window_min} min" if report.blend_window_min != 60 else "hour"
    lines = [
        f"# Next-click evaluation of `{report.run}`",
        "",
        f"Data: `{report.data}`. {report.num_events:,} sampled test clicks; for each, every system ranks",
        "the live catalog (items with an event in the 48 h before the click). Mean ± standard error.",
        f"{report.not_live_share:.1%} of the clicked items were not live yet (a miss for every system).",
        f"Blend: {a:g}·log(1 + clicks in the last {window}) + {b:g}·log(1 + co-visits), tuned on validation.",
        f"Cold items / users: first event at or after the train cut ({report.train_cut or 'unknown'}).",
        "",
    ]
    lines += _se_table(report.overall, metrics)
    lines += ["", f"![next click]({paths['plot'].name})", ""]
    if report.valid_ndcg:  # where the blend was tuned: in-sample for it
        valid = ", ".join(f"{name} {value:.4f}" for name, value in report.valid_ndcg.items())
        lines += [f"NDCG@10 on the validation clicks the blend was tuned on: {valid}.", ""]
    if report.paired:
        lines += _paired_section(report)
    for segment, results in report.segments.items():
        events = int(next(iter(results.values())).get("events", 0))
        lines += [f"## {segment} ({events:,} clicks)", ""]
        lines += _se_table(results, metrics)
        lines.append("")
    if report.candidate_recall:
        paths["candidates_plot"] = _plot_candidate_recall(report, out_dir / "next_click_candidates.png")
        lines += _candidate_recall_section(report, paths["candidates_plot"].name)
    paths["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def _paired_section(report: NextClickReport) -> list[str]:
    """Each model against each baseline on the same clicks: NDCG@10 difference ± paired SE."""
    segments = list(report.paired)
    lines = [
        "## Paired differences (NDCG@10, same clicks)",
        "",
        "Model minus baseline over the clicks both ranked, ± the standard error of the per-click",
        "differences; relative = difference / the baseline's mean.",
        "",
        "| pair | " + " | ".join(segments) + " |",
        "|---|" + "---:|" * len(segments),
    ]
    for pair in report.paired[segments[0]]:
        cells = []
        for segment in segments:
            row = report.paired[segment].get(pair)
            cells.append(
                "-" if row is None else f"{row['diff']:+.4f} ± {row['diff_se']:.4f} ({row['relative']:+.1%})"
            )
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _recall_ns(report: NextClickReport) -> list[int]:
    some = next(iter(report.candidate_recall.values()))["ANN"]
    return sorted(int(k.split("@")[1]) for k in some if k.startswith("recall@") and not k.endswith("_se"))


def _candidate_recall_section(report: NextClickReport, plot_name: str) -> list[str]:
    """Recall of the clicked item among N candidates: the ANN alone beside the union of sources."""
    ns = _recall_ns(report)
    segments = list(report.candidate_recall)
    quotas = ", ".join(f"{name} {q}" for name, q in report.quotas.items())
    lines = [
        "## Candidate generation: the ANN alone and the union of sources",
        "",
        "Share of the clicked items found among the N candidates; a click on an item that was not",
        "live is a miss for both. ANN: the two-tower's top N over the live catalog. Union: the",
        "candidate sources (`feedrank.candidates`) merged to N with their quotas scaled to N.",
        f"Relative quotas: {quotas}. Mean ± standard error.",
        "",
        "| N | " + " | ".join(f"ANN ({s}) | union ({s})" for s in segments) + " |",
        "|---:|" + "---:|---:|" * len(segments),
    ]
    for n in ns:
        cells = []
        for segment in segments:
            for generator in ("ANN", "union"):
                row = report.candidate_recall[segment][generator]
                cells.append(f"{row[f'recall@{n}']:.4f} ± {row[f'recall@{n}_se']:.4f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return [*lines, "", f"![candidate recall]({plot_name})", ""]


def _plot_candidate_recall(report: NextClickReport, path: Path) -> Path:
    ns = _recall_ns(report)
    curves = {
        f"{generator} ({segment})": {n: results[generator][f"recall@{n}"] for n in ns}
        for segment, results in report.candidate_recall.items()
        for generator in ("ANN", "union")
    }
    return plot_metric_at_k(curves, path, metric="recall", title="Clicked item among N candidates")


def _se_table(results: dict[str, dict[str, float]], metrics: list[str]) -> list[str]:
    out = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for system, row in results.items():
        cells = [f"{row[m]:.4f} ± {row[f'{m}_se']:.4f}" for m in metrics]
        out.append(f"| {system} | " + " | ".join(cells) + " |")
    return out
