"""The served feed in the written reports: its own section, and the gap table that puts the
served rows beside the within-impression rows, so "ranks logged slates well" and "serves a good
feed" are read together."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Any

from feedrank.eval.served import ServedReport

SERVED_ROWS = (
    "utility@10",
    "utility@20",
    "utility_share@10",
    "utility_share@20",
    "hr@10",
    "hr@20",
    "ndcg@10",
    "mrr@20",
    "new_user_overlap@10",
    "anonymous_overlap@10",
    "new_feed_share@20",
    "utility_share@20_minus_served",
    "posterior_ess",
    "posterior_ess_share",
    "posterior_events",
)
PANEL_ROWS = ("jaccard@10", "jaccard_all_pairs", "distinct_items", "top_item_feed_share", "live_coverage")


def served_json(report: ServedReport) -> dict[str, Any]:
    """The report's summaries; its per-request arrays stay in memory (ServedReport.per_request)."""
    data = asdict(replace(report, per_request={}, masks={}))
    del data["per_request"], data["masks"]
    return data


def served_markdown(report: ServedReport) -> list[str]:
    """The served-feed section: systems side by side, the panel, then one table per segment."""
    systems = list(report.systems)
    lines = [
        "## The served feed (through the serving path)",
        "",
        f"{report.requests:,} sampled requests of the {report.part} part, each sent through the service's",
        "own `Recommender.recommend_batch` (candidate union → ranker → re-ranker) at its own time, beside",
        "a brand-new user id with the same demographics and one with none, at the same time",
        "(`eval/served.py`). The oracle serves the k items of highest ground-truth utility among the",
        "items live then; for a brand-new user, of highest utility expected from the demographics",
        "under the simulator's model of a new user (`sim/prior.py`). utility@K: mean ground-truth",
        "utility of the feed's top K; utility_share@K: that over the oracle's on the same requests;",
        "hr/ndcg/mrr: where the user's next click landed (requests with one); new_user_overlap@10:",
        "Jaccard of the top 10 with the new user's (same demographics); anonymous_overlap@10: with",
        "the new user's without demographics; new_feed_share@20: the known user's utility@20 of the",
        "new user's feed over the oracle's. Mean ± standard error.",
        "",
    ]
    if "posterior oracle" in report.systems:
        lines += [
            "The posterior oracle serves the best feed a model could build from the log alone: it knows",
            "the simulator's model and only what the log shows about the user before the request, and",
            "ranks by the utility expected under the posterior of their interests (`sim/posterior.py`).",
            "utility_share@20_minus_served: a system's share minus the served feed's, paired by request;",
            "posterior_ess: its sampler's effective sample size (of 1,024 draws or more).",
            "",
        ]
    lines += _se_table(report.systems, [m for m in SERVED_ROWS if _anywhere(report.systems, m)], systems)
    cover = ", ".join(
        f"{name} {row['coverage@10']:.4f} ({int(row['distinct@10'])} items)"
        for name, row in report.systems.items()
    )
    lines += ["", f"Catalog coverage of the top 10 over all requests: {cover}.", ""]
    if report.panel:
        some = next(iter(report.panel.values()))
        lines += [
            f"Known users compared at shared times: {int(some.get('users', 0))} users of the sample, served",
            f"together at {int(some.get('times', 0))} request times spread over the sample. jaccard@10: mean",
            "inter-user Jaccard of the top 10 over disjoint pairs (± standard error); jaccard_all_pairs:",
            "over every pair; distinct_items: across all their top-10s; top_item_feed_share: share of",
            "feeds holding the most common item; live_coverage: distinct items over the live catalog.",
            "",
        ]
        lines += _se_table(
            report.panel, [m for m in PANEL_ROWS if _anywhere(report.panel, m)], list(report.panel)
        )
        lines.append("")
    for segment, results in report.segments.items():
        count = int(next(iter(results.values())).get("requests", 0))
        lines += [f"### {segment} ({count:,} requests)", ""]
        lines += _se_table(results, [m for m in SERVED_ROWS if _anywhere(results, m)], list(results))
        lines.append("")
    return lines


def gap_rows(impressions: dict[str, float], served: ServedReport, system: str) -> list[str]:
    """The model within logged impressions beside the same model's served feed, one table."""
    row = served.systems.get(system, {})
    panel = served.panel.get(system, {})
    oracle = served.systems.get("oracle", {})
    pairs = [
        ("within impressions", "GAUC", impressions.get("gauc")),
        ("within impressions", "nDCG@10", impressions.get("ndcg@10")),
        ("within impressions", "share of the oracle's slate value", impressions.get("slate_value_share")),
        ("served feed", "share of the oracle's utility@20", _pm(row, "utility_share@20")),
        ("served feed", "share of the oracle's utility@10", _pm(row, "utility_share@10")),
        ("served feed", "HR@10 of the next click", _pm(row, "hr@10")),
        ("served feed", "inter-user Jaccard of the top 10", _pm(panel, "jaccard@10")),
        ("served feed", "overlap with a brand-new user's top 10", _pm(row, "new_user_overlap@10")),
        ("served feed", "the same, the oracle's own feeds", _pm(oracle, "new_user_overlap@10")),
        ("served feed", "overlap with a new user without demographics", _pm(row, "anonymous_overlap@10")),
        ("served feed", "the same, the oracle's own feeds", _pm(oracle, "anonymous_overlap@10")),
        ("served feed", "catalog coverage of the top 10", row.get("coverage@10")),
    ]
    lines = [
        "## Ranking logged slates vs serving a feed",
        "",
        "The same models, measured twice: re-ordering the slates the logging policy chose (within",
        "impressions) and building the feed the service returns (served feed, section below).",
        "",
        "| view | measure | value |",
        "|---|---|---:|",
    ]
    lines += [f"| {view} | {name} | {_fmt(value)} |" for view, name, value in pairs if value is not None]
    return [*lines, ""]


def _pm(row: dict[str, float], metric: str) -> str | None:
    if metric not in row:
        return None
    return f"{_fmt(row[metric])} ± {_fmt(row.get(f'{metric}_se'))}"


def _anywhere(results: dict[str, dict[str, float]], metric: str) -> bool:
    return any(metric in r and not _missing(r[metric]) for r in results.values())


def _se_table(results: dict[str, dict[str, float]], metrics: list[str], systems: list[str]) -> list[str]:
    out = ["| metric | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
    for metric in metrics:
        cells = []
        for system in systems:
            row = results.get(system, {})
            value, se = row.get(metric), row.get(f"{metric}_se")
            cells.append(_fmt(value) if _missing(se) else f"{_fmt(value)} ± {_fmt(se)}")
        out.append(f"| {metric} | " + " | ".join(cells) + " |")
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
