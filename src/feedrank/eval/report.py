"""Writing an offline evaluation: JSON for machines, Markdown for people, PNG plots beside them.

Systems are always columns side by side, the model next to the baselines and (in the simulator)
the oracle, so a reader compares them at a glance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
