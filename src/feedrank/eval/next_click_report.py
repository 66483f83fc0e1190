"""Writing a next-click evaluation: next_click.md / .json / .png, systems side by side with SEs."""

from __future__ import annotations

import json
from pathlib import Path

from feedrank.eval.next_click import NextClickReport
from feedrank.eval.plots import plot_metric_at_k, plot_system_comparison


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
    if report.served_paired:
        lines += _served_paired_section(report, metrics)
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


def _served_paired_section(report: NextClickReport, metrics: list[str]) -> list[str]:
    """The serving path against the offline ranker on the same clicks: difference ± paired SE."""
    lines = [
        "## The serving path against the offline ranker (same clicks)",
        "",
        "Served minus offline over the same sampled clicks, ± the standard error of the per-click",
        "differences: a difference within about two of them is one the clicks cannot tell from zero.",
        "",
        "| pair | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for pair, row in report.served_paired.items():
        cells = [f"{row[m]:+.4f} ± {row[f'{m}_se']:.4f}" for m in metrics]
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
